// Package k8stest starts a real Kubernetes control plane on loopback for
// tests: etcd and kube-apiserver always, and optionally
// kube-controller-manager, kube-scheduler and kwok with one fake node, so
// Deployments really create ReplicaSets, Pods (marked Running and Ready by
// kwok) and EndpointSlices, and the garbage collector follows owner
// references. There is no kubelet and no container runtime: nothing in a
// pod runs, so no test can send a request through a pod.
//
// The binaries come from scripts/k8s-build (built from the Go module proxy
// and cached under $HOME/.cache/moe-k8s). The gate:
//
//   - MOE_TEST_K8S unset: tests that need a cluster are skipped, with a
//     message that says how to run them.
//   - MOE_TEST_K8S=1: they run; missing binaries fail the test run (so CI
//     cannot silently stop running them). MOE_K8S_BIN overrides the folder.
//
// The cached binaries alone do not enable the tests: a control plane costs
// about 3 s and 300–600 MB per test package, which `go test ./...` on a
// developer's machine should not pay by surprise.
//
// Every process runs in its own process group with a parent-death signal
// (SIGKILL), so a test binary that dies (a -timeout panic, kill -9) takes
// them along; Stop ends them with SIGTERM, then SIGKILL, and removes the
// temp folder. Use one cluster per package (Main in TestMain) and a fresh
// namespace per test (Cluster.Namespace).
package k8stest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Versions built by scripts/k8s-build; keep in step with it.
const (
	K8sVersion  = "1.37.2"
	EtcdVersion = "3.6.16"
	KwokVersion = "0.8.0"
)

// EnvGate is the variable that enables cluster tests.
const EnvGate = "MOE_TEST_K8S"

// Enabled reports whether cluster tests should run.
func Enabled() bool { return os.Getenv(EnvGate) == "1" }

// BinDir is where the binaries are: $MOE_K8S_BIN, or the folder
// scripts/k8s-build fills under $MOE_K8S_CACHE or $HOME/.cache/moe-k8s.
func BinDir() string {
	if d := os.Getenv("MOE_K8S_BIN"); d != "" {
		return d
	}
	cache := os.Getenv("MOE_K8S_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "moe-k8s")
	}
	return filepath.Join(cache, fmt.Sprintf("k8s-%s-etcd-%s-kwok-%s", K8sVersion, EtcdVersion, KwokVersion))
}

// Options choose what runs besides etcd and kube-apiserver.
type Options struct {
	// Controllers adds kube-controller-manager, kube-scheduler and kwok
	// with one fake node (FakeNode): ReplicaSets, Pods, EndpointSlices and
	// garbage collection happen as in a real cluster.
	Controllers bool
}

// FakeNode is the name of the kwok node when Options.Controllers is set.
const FakeNode = "kwok-node-0"

// Cluster is a running control plane.
type Cluster struct {
	// Config reaches the API server as a member of system:masters.
	Config *rest.Config
	Client kubernetes.Interface
	// Kubeconfig is a kubeconfig file with the same identity as Config,
	// for processes a test starts (e.g. `moe serve --kubeconfig`).
	Kubeconfig string
	// Dir holds the PKI, etcd's data and each process's log (<name>.log).
	Dir  string
	opts Options

	mu    sync.Mutex
	procs []*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start starts a cluster. Call Stop when done, even after an error-free
// test failure; Start itself cleans up when it fails.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	bin := BinDir()
	need := []string{"etcd", "kube-apiserver"}
	if opts.Controllers {
		need = append(need, "kube-controller-manager", "kube-scheduler", "kwok", "kwok-stages.yaml")
	}
	for _, n := range need {
		if _, err := os.Stat(filepath.Join(bin, n)); err != nil {
			return nil, fmt.Errorf("k8stest: %s is missing from %s: run scripts/k8s-build (about 6 min once, then cached; 8.5 min with the controllers)", n, bin)
		}
	}
	sweep()
	dir, err := os.MkdirTemp("", "moe-k8stest-")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return nil, err
	}
	c = &Cluster{Dir: dir, opts: opts}
	defer func() {
		if err != nil {
			c.Stop()
			c = nil
		}
	}()
	p, err := writePKI(dir)
	if err != nil {
		return nil, err
	}

	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdClient := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	etcdPeer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	if err := c.run("etcd", filepath.Join(bin, "etcd"),
		"--name=test", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdClient, "--advertise-client-urls="+etcdClient,
		"--listen-peer-urls="+etcdPeer, "--initial-advertise-peer-urls="+etcdPeer,
		"--initial-cluster=test="+etcdPeer, "--unsafe-no-fsync", "--log-level=warn",
	); err != nil {
		return nil, err
	}
	apiPort := strconv.Itoa(ports[2])
	host := "https://127.0.0.1:" + apiPort
	if err := c.run("kube-apiserver", filepath.Join(bin, "kube-apiserver"),
		"--etcd-servers="+etcdClient,
		"--bind-address=127.0.0.1", "--secure-port="+apiPort,
		// Loopback pitfall: 127.0.0.1 is refused as the advertised address
		// unless the endpoint reconciler is off.
		"--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
		"--tls-cert-file="+p.serverCert, "--tls-private-key-file="+p.serverKey,
		"--client-ca-file="+p.caCert,
		"--token-auth-file="+p.tokens, "--authorization-mode=RBAC",
		"--service-account-issuer="+host,
		"--service-account-key-file="+p.saPub, "--service-account-signing-key-file="+p.saKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--disable-admission-plugins=ServiceAccount",
		"--cert-dir="+filepath.Join(dir, "kas-certs"),
	); err != nil {
		return nil, err
	}
	c.Config = &rest.Config{
		Host:            host,
		BearerToken:     p.adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: []byte(p.caPEM)},
		QPS:             200,
		Burst:           400,
	}
	if err := c.waitReady(ctx, "/readyz", 60*time.Second); err != nil {
		return nil, err
	}
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return nil, err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	c.Kubeconfig = kubeconfig
	if err := os.WriteFile(kubeconfig, fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: %q, certificate-authority: %q}
users:
- name: admin
  user: {token: %q}
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
`, host, p.caCert, p.adminToken), 0o600); err != nil {
		return nil, err
	}
	if !opts.Controllers {
		return c, nil
	}

	// Create the node before anything schedules: pods created before it
	// sit in scheduler back-off for 5–20 s.
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:        FakeNode,
		Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
		Labels:      map[string]string{"type": "kwok", "kubernetes.io/hostname": FakeNode},
	}}
	if _, err := c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("k8stest: create fake node: %w", err)
	}
	cports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	if err := c.run("kube-controller-manager", filepath.Join(bin, "kube-controller-manager"),
		"--kubeconfig="+kubeconfig, "--authentication-kubeconfig="+kubeconfig, "--authorization-kubeconfig="+kubeconfig,
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(cports[0]), "--leader-elect=false",
		"--service-account-private-key-file="+p.saKey, "--root-ca-file="+p.caCert,
		"--use-service-account-credentials=false",
		"--cert-dir="+filepath.Join(dir, "kcm-certs"),
		// react at once in tests
		"--concurrent-deployment-syncs=10", "--concurrent-replicaset-syncs=10", "--concurrent-gc-syncs=10",
	); err != nil {
		return nil, err
	}
	if err := c.run("kube-scheduler", filepath.Join(bin, "kube-scheduler"),
		"--kubeconfig="+kubeconfig, "--authentication-kubeconfig="+kubeconfig, "--authorization-kubeconfig="+kubeconfig,
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(cports[1]), "--leader-elect=false",
		"--cert-dir="+filepath.Join(dir, "sched-certs"),
	); err != nil {
		return nil, err
	}
	if err := c.run("kwok", filepath.Join(bin, "kwok"),
		"--kubeconfig="+kubeconfig, "--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
		"--node-ip=127.0.0.1", "--cidr=10.244.0.0/16",
		"--config="+filepath.Join(bin, "kwok-stages.yaml"),
	); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, FakeNode, metav1.GetOptions{})
		if err == nil && nodeReady(n) {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("k8stest: fake node not Ready after 60s (kwok log: %s)", filepath.Join(dir, "kwok.log"))
		}
		if err := c.exited(); err != nil {
			return nil, err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return c, nil
}

func nodeReady(n *corev1.Node) bool {
	for _, cd := range n.Status.Conditions {
		if cd.Type == corev1.NodeReady && cd.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// Controllers reports whether the controllers and kwok run.
func (c *Cluster) Controllers() bool { return c.opts.Controllers }

// run starts one process in its own process group, killed if the test
// process dies.
func (c *Cluster) run(name, path string, args ...string) error {
	logf, err := os.Create(filepath.Join(c.Dir, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = c.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("k8stest: start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	return nil
}

// exited returns an error naming a process that ended on its own.
func (c *Cluster) exited() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		select {
		case <-p.done:
			return fmt.Errorf("k8stest: %s exited (%v); last log lines:\n%s", p.name, p.err, tail(filepath.Join(c.Dir, p.name+".log"), 15))
		default:
		}
	}
	return nil
}

func (c *Cluster) waitReady(ctx context.Context, path string, budget time.Duration) error {
	tc, err := rest.TransportFor(c.Config)
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: tc, Timeout: 2 * time.Second}
	deadline := time.Now().Add(budget)
	for {
		if err := c.exited(); err != nil {
			return err
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.Config.Host+path, nil)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("k8stest: kube-apiserver not ready after %s (log: %s):\n%s", budget, filepath.Join(c.Dir, "kube-apiserver.log"), tail(filepath.Join(c.Dir, "kube-apiserver.log"), 15))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop ends every process (controllers first, etcd last) and removes Dir
// unless MOE_TEST_K8S_KEEP=1.
func (c *Cluster) Stop() {
	if c == nil {
		return
	}
	c.mu.Lock()
	procs := c.procs
	c.procs = nil
	c.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
	if os.Getenv("MOE_TEST_K8S_KEEP") == "1" {
		fmt.Fprintf(os.Stderr, "k8stest: kept %s (logs and etcd data)\n", c.Dir)
		return
	}
	os.RemoveAll(c.Dir)
}

// Namespace creates a namespace with a unique name for one test. With
// controllers running, it is deleted at the end of the test (and its
// contents garbage-collected); without them deletion would stay
// Terminating forever, so it is left in the throw-away etcd.
func (c *Cluster) Namespace(t testing.TB) string {
	t.Helper()
	var b [4]byte
	rand.Read(b[:])
	name := "t-" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 50 {
		name = name[:50]
	}
	name = strings.TrimRight(name, "-") + "-" + hex.EncodeToString(b[:])
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := c.Client.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	if c.opts.Controllers {
		t.Cleanup(func() {
			err := c.Client.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				t.Logf("delete namespace %s: %v", name, err)
			}
		})
	}
	return name
}

var (
	shared    *Cluster
	sharedErr error
)

// Main runs a package's tests with one shared cluster when the gate is
// set, and stops it afterwards, whatever the tests did. Use it as
//
//	func TestMain(m *testing.M) { k8stest.Main(m, k8stest.Options{}) }
func Main(m *testing.M, opts Options) {
	code := func() int {
		if Enabled() {
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			shared, sharedErr = Start(ctx, opts)
			cancel()
			if sharedErr == nil {
				fmt.Fprintf(os.Stderr, "k8stest: Kubernetes %s control plane (controllers: %v) ready in %s at %s\n", K8sVersion, opts.Controllers, time.Since(start).Round(time.Millisecond), shared.Config.Host)
			}
			defer shared.Stop()
		}
		return m.Run()
	}()
	os.Exit(code)
}

// Get returns the package's shared cluster (see Main). It skips the test
// when the gate is not set and fails it when the cluster could not start.
func Get(t testing.TB) *Cluster {
	t.Helper()
	if !Enabled() {
		t.Skipf("needs a real Kubernetes API server: set %s=1 after scripts/k8s-build (binaries in %s)", EnvGate, BinDir())
	}
	if sharedErr != nil {
		t.Fatalf("k8stest: %v", sharedErr)
	}
	if shared == nil {
		t.Fatal("k8stest: no cluster: call k8stest.Main from TestMain")
	}
	return shared
}

// sweep removes the temp folders of test processes that died without
// cleaning up (their control-plane processes died with them, by the
// parent-death signal).
func sweep() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "moe-k8stest-*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "owner.pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(d)
		}
	}
}

// freePorts finds n free loopback ports (held open together so they are
// distinct).
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
