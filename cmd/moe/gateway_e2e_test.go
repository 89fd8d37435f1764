package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/moe-serving/moe/internal/auth"
	"github.com/moe-serving/moe/internal/k8stest"
	"github.com/moe-serving/moe/internal/moetest"
	"github.com/moe-serving/moe/internal/pki"
	"github.com/moe-serving/moe/internal/spec"
	"github.com/moe-serving/moe/internal/store"
	"github.com/moe-serving/moe/internal/store/postgres"
	"github.com/moe-serving/moe/internal/store/postgres/pgtest"
)

// TestGatewayProcess runs a real `moe gateway` against a real kube-apiserver
// (internal/k8stest, no controllers: no pods, so no ready instances) and
// PostgreSQL: /-/ready once the store is read, 404 for an unknown endpoint,
// 401 for a wrong key, 503 for a known endpoint with no ready pod, an
// endpoint created by another store client served within a second, metrics
// on the admin listener, and a clean exit on SIGTERM. The data path through
// pods cannot run here (no kubelet, no images); the gateway → host path is
// covered by TestEndToEnd with the local runner, and route tables following
// EndpointSlices by internal/routesource's cluster test.
func TestGatewayProcess(t *testing.T) {
	if !k8stest.Enabled() {
		t.Skipf("needs a real Kubernetes API server: set %s=1 after scripts/k8s-build", k8stest.EnvGate)
	}
	base := os.Getenv("MOE_TEST_POSTGRES_URL")
	if base == "" {
		t.Skip("needs PostgreSQL: set MOE_TEST_POSTGRES_URL (scripts/postgres run -- go test ...)")
	}
	bin := moetest.Binary(t)
	ctx := context.Background()
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	c, err := k8stest.Start(sctx, k8stest.Options{})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	ns := c.Namespace(t)
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	moetest.WriteFile(t, kubeconfig, fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: %q, certificate-authority-data: %q}
users:
- name: admin
  user: {token: %q}
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
`, c.Config.Host, base64.StdEncoding.EncodeToString(c.Config.CAData), c.Config.BearerToken))

	// the shared store, in a schema of its own, seeded as the control plane would
	storeURL := pgtest.Schema(t, base)
	writer, err := postgres.Open(ctx, storeURL)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	key := make([]byte, auth.BoxKeySize)
	rand.Read(key)
	box, err := auth.BoxFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	createKeyEndpoint := func(name string) {
		t.Helper()
		p, _ := box.Seal([]byte("primary-key-0123456789"))
		s, _ := box.Seal([]byte("secondary-key-0123456789"))
		e := &store.Endpoint{Spec: spec.Endpoint{Name: name, AuthMode: "key", Traffic: map[string]int{"blue": 100}},
			PrimaryKey: p, SecondaryKey: s, State: "Succeeded"}
		if err := writer.CreateEndpoint(ctx, e); err != nil {
			t.Fatal(err)
		}
		r := store.Revision{Generation: 1, Spec: spec.Deployment{Name: "blue", EndpointName: name, InstanceCount: 1}}
		if err := writer.CreateDeployment(ctx, &store.Deployment{Endpoint: name, Name: "blue", Desired: r, Active: &r, State: "Succeeded"}); err != nil {
			t.Fatal(err)
		}
	}
	createKeyEndpoint("shop")

	ports := make([]string, 2)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().String()
		l.Close()
	}
	gwAddr, adminAddr := ports[0], ports[1]
	var log bytes.Buffer
	cmd := exec.Command(bin, "gateway", "--data-dir", filepath.Join(dir, "data"),
		"--gateway-addr", gwAddr, "--admin-addr", adminAddr, "--store", storeURL,
		"--kubeconfig", kubeconfig, "--k8s-namespace", ns, "--shutdown-delay", "0",
		"--peers-service", "moe-gateway", "--peers-namespace", ns)
	cmd.Env = append(os.Environ(), "MOE_MASTER_KEY="+base64.StdEncoding.EncodeToString(key))
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("moe gateway log:\n%s", log.String())
		}
	}()

	// the gateway's certificate is generated under its data dir
	var client *http.Client
	deadline := time.Now().Add(30 * time.Second)
	for client == nil {
		if pool, err := pki.LoadCertPool(filepath.Join(dir, "data", "pki")); err == nil {
			client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
				DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, network, gwAddr)
				},
			}}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no CA in the gateway's data dir")
		}
		time.Sleep(50 * time.Millisecond)
	}
	get := func(host, path, bearer string) (int, string) {
		t.Helper()
		method := http.MethodGet
		if path == "/score" {
			method = http.MethodPost
		}
		req, _ := http.NewRequest(method, "https://"+host+path, strings.NewReader(`{"data":[1]}`))
		req.Header.Set("Content-Type", "application/json")
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for {
		code, body := get("localhost", "/-/ready", "")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/-/ready: %d %s", code, body)
		}
		select {
		case <-exited:
			t.Fatalf("moe gateway exited: %v", waitErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
	if resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + adminAddr + "/-/ready"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("admin /-/ready: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	if code, body := get("nope.local.inference.localhost", "/score", "primary-key-0123456789"); code != http.StatusNotFound {
		t.Errorf("unknown endpoint: %d %s, want 404", code, body)
	}
	if code, body := get("shop.local.inference.localhost", "/score", "wrong-key-0123456789"); code != http.StatusUnauthorized {
		t.Errorf("wrong key: %d %s, want 401", code, body)
	}
	if code, body := get("shop.local.inference.localhost", "/score", "secondary-key-0123456789"); code != http.StatusServiceUnavailable {
		t.Errorf("known endpoint without ready pods: %d %s, want 503", code, body)
	}

	// another control-plane replica creates an endpoint: served within a second
	createKeyEndpoint("fraud")
	start := time.Now()
	for {
		code, body := get("fraud.local.inference.localhost", "/score", "primary-key-0123456789")
		if code == http.StatusServiceUnavailable {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("new endpoint after %s: %d %s, want 503", time.Since(start), code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("endpoint created in the store was routed after %s", time.Since(start).Round(time.Millisecond))

	// aml_token: the gateway verifies with the control plane's key set,
	// read from the store (sealed with the master key): created after the
	// gateway started, then rotated; each is followed within a second.
	tokEP := &store.Endpoint{Spec: spec.Endpoint{Name: "tok", AuthMode: "aml_token", Traffic: map[string]int{"blue": 100}}, State: "Succeeded"}
	if err := writer.CreateEndpoint(ctx, tokEP); err != nil {
		t.Fatal(err)
	}
	r := store.Revision{Generation: 1, Spec: spec.Deployment{Name: "blue", EndpointName: "tok", InstanceCount: 1}}
	if err := writer.CreateDeployment(ctx, &store.Deployment{Endpoint: "tok", Name: "blue", Desired: r, Active: &r, State: "Succeeded"}); err != nil {
		t.Fatal(err)
	}
	signer, err := auth.OpenSharedSigner(ctx, auth.StoredKeySet(writer, box)) // as the first control plane does
	if err != nil {
		t.Fatal(err)
	}
	issue := func() string {
		tok, err := signer.Issue("tok", time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok.AccessToken.Reveal()
	}
	accepted := func(what, tok string) {
		t.Helper()
		start := time.Now()
		for {
			code, body := get("tok.local.inference.localhost", "/score", tok)
			if code == http.StatusServiceUnavailable {
				t.Logf("%s accepted after %s", what, time.Since(start).Round(time.Millisecond))
				return
			}
			if time.Since(start) > time.Second {
				t.Fatalf("%s after %s: %d %s, want 503 (authenticated, no ready pod)", what, time.Since(start), code, body)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	first := issue()
	accepted("a token of the key set stored after the gateway started", first)
	if code, _ := get("tok.local.inference.localhost", "/score", first[:len(first)-6]+"AAAAAA"); code != http.StatusUnauthorized {
		t.Errorf("a forged token: %d, want 401", code)
	}
	if err := signer.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	accepted("a token of the rotated key", issue())
	accepted("a token of the previous key", first)

	// limits: each replica enforces its share. An endpoint limited to 10
	// requests per second (bucket of one second's worth): alone, this
	// gateway lets a burst of 10 through (503: no pod) and refuses the
	// rest (429); once the gateway Service's EndpointSlice shows 2 ready
	// replicas, 5.
	limited := &store.Endpoint{Spec: spec.Endpoint{Name: "limited", AuthMode: "key", Traffic: map[string]int{"blue": 100},
		Properties: map[string]string{spec.PropMaxRequestsPerSecond: "10"}}, State: "Succeeded"}
	limited.PrimaryKey, _ = box.Seal([]byte("primary-key-0123456789"))
	limited.SecondaryKey, _ = box.Seal([]byte("secondary-key-0123456789"))
	if err := writer.CreateEndpoint(ctx, limited); err != nil {
		t.Fatal(err)
	}
	burst := func() (passed int) {
		t.Helper()
		for range 15 {
			code, body := get("limited.local.inference.localhost", "/score", "primary-key-0123456789")
			switch code {
			case http.StatusServiceUnavailable:
				passed++
			case http.StatusTooManyRequests:
			default:
				t.Fatalf("limited endpoint: %d %s", code, body)
			}
		}
		return passed
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for start := time.Now(); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Since(start) > 5*time.Second {
				t.Fatalf("%s: not after 5s", what)
			}
		}
	}
	waitFor("the limited endpoint routed", func() bool {
		code, _ := get("limited.local.inference.localhost", "/score", "primary-key-0123456789")
		return code == http.StatusServiceUnavailable
	})
	time.Sleep(1100 * time.Millisecond) // a full bucket again
	if n := burst(); n < 10 || n > 11 {
		t.Errorf("one gateway replica: %d of 15 requests passed the 10/s limit, want 10", n)
	}
	yes := true
	peers := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "moe-gateway-abcde", Labels: map[string]string{discoveryv1.LabelServiceName: "moe-gateway"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &yes}},
			{Addresses: []string{"10.0.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: &yes}},
		},
	}
	if _, err := c.Client.DiscoveryV1().EndpointSlices(ns).Create(ctx, peers, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("the gateway counts 2 replicas", func() bool { return strings.Contains(log.String(), `replicas=2`) })
	time.Sleep(1100 * time.Millisecond)
	if n := burst(); n < 5 || n > 6 {
		t.Errorf("two gateway replicas: this one let %d of 15 requests pass the 10/s limit, want its share, 5", n)
	}

	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + adminAddr + "/metrics")
	if err != nil {
		cmd.Process.Signal(syscall.SIGQUIT)
		time.Sleep(time.Second)
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(m), `endpoint="shop"`) || !strings.Contains(string(m), `code="503"`) {
		t.Errorf("metrics without shop's 503:\n%s", m)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("exit after SIGTERM: %v", waitErr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("still running 20s after SIGTERM")
	}
}
