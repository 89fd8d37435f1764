// Package local runs deployment instances as `moe host` processes on this
// machine: it prepares each instance's snapshot and Python environment,
// starts the host, waits for readiness, restarts crashed hosts with backoff
// and stops them gracefully.
package local

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/moe-serving/moe/internal/artifact"
	"github.com/moe-serving/moe/internal/reconcile"
)

// EnvResolver resolves a deployment's environment to a Python interpreter
// (pyenv.Resolver in production).
type EnvResolver interface {
	Resolve(ctx context.Context, condaFile []byte, envVars map[string]string, log io.Writer) (string, error)
}

// Runner is a reconcile.Runner for local processes.
type Runner struct {
	// Exe is the moe binary started as `Exe host ...`; default os.Executable().
	Exe string
	// HostExe, if set, is a moe-host binary started instead of `Exe host`
	// (same code, far less memory per idle instance). Default: moe-host
	// next to Exe, if it is there.
	HostExe string
	// Dir holds per-instance state (Dir/instances) and logs (Dir/logs).
	Dir       string
	Artifacts *artifact.Store
	Env       EnvResolver
	Logger    *slog.Logger
	// MaxLogBytes caps one instance log file; the host rotates it past
	// this size and keeps 3 old files. Default 10 MiB.
	MaxLogBytes int64
	// Cgroups enforces SKU limits where the machine allows; nil disables.
	Cgroups *Cgroups
	// LeaseTimeout is how long a host outlives a server that stopped
	// renewing its lease (a crashed `moe serve`), waiting to be adopted by
	// the next one. Default 30s.
	LeaseTimeout time.Duration
	// OTLPEndpoint, if set, is passed to every host as --otlp-endpoint, so
	// that it exports its spans there (the collector's OTLP/HTTP base
	// URL). Empty means hosts do not trace.
	OTLPEndpoint string

	mu        sync.Mutex
	instances map[string]*proc
	changes   chan struct{}
	wg        sync.WaitGroup
	ctx       context.Context
	cancel    context.CancelFunc
	client    *http.Client
	once      sync.Once
}

var _ reconcile.Runner = (*Runner)(nil)

type proc struct {
	spec     reconcile.InstanceSpec
	state    reconcile.Instance
	pid      int
	exited   chan struct{} // closed when the current process exits
	stopping bool
	cancel   context.CancelFunc
	done     chan struct{} // closed when the supervisor goroutine ends
	adopted  *savedState   // set when taken over from a previous server
}

func (r *Runner) init() {
	r.once.Do(func() {
		if r.Logger == nil {
			r.Logger = slog.Default()
		}
		if r.Exe == "" {
			r.Exe, _ = os.Executable()
		}
		if r.HostExe == "" {
			if p := filepath.Join(filepath.Dir(r.Exe), "moe-host"); r.Exe != "" && isExecutable(p) {
				r.HostExe = p
			}
		}
		if r.MaxLogBytes == 0 {
			r.MaxLogBytes = 10 << 20
		}
		if r.LeaseTimeout == 0 {
			r.LeaseTimeout = 30 * time.Second
		}
		r.instances = map[string]*proc{}
		r.changes = make(chan struct{}, 1)
		r.ctx, r.cancel = context.WithCancel(context.Background())
		r.client = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		r.wg.Go(r.renewLeases)
	})
}

// Changes implements reconcile.Runner.
func (r *Runner) Changes() <-chan struct{} {
	r.init()
	return r.changes
}

func (r *Runner) notify() {
	select {
	case r.changes <- struct{}{}:
	default:
	}
}

// Instances implements reconcile.Runner.
func (r *Runner) Instances() []reconcile.Instance {
	r.init()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]reconcile.Instance, 0, len(r.instances))
	for _, p := range r.instances {
		out = append(out, p.state)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (r *Runner) setState(p *proc, f func(s *reconcile.Instance)) {
	r.mu.Lock()
	f(&p.state)
	r.mu.Unlock()
	r.notify()
}

// LogDir is where a deployment's logs live.
func (r *Runner) LogDir(endpoint, deployment string) string {
	return filepath.Join(r.Dir, "logs", endpoint, deployment)
}

// Start implements reconcile.Runner.
func (r *Runner) Start(_ context.Context, s reconcile.InstanceSpec) error {
	r.init()
	ctx, cancel := context.WithCancel(r.ctx)
	p := &proc{spec: s, cancel: cancel, done: make(chan struct{}), state: reconcile.Instance{
		ID: s.ID, Endpoint: s.Endpoint, Deployment: s.Deployment, Generation: s.Revision.Generation,
		Phase: reconcile.PhaseStarting, StartedAt: time.Now().UTC(),
	}}
	r.mu.Lock()
	if _, dup := r.instances[s.ID]; dup {
		r.mu.Unlock()
		cancel()
		return fmt.Errorf("instance %s already exists", s.ID)
	}
	r.instances[s.ID] = p
	r.mu.Unlock()
	r.notify()
	r.wg.Go(func() {
		defer close(p.done)
		r.supervise(ctx, p)
	})
	return nil
}

// Stop implements reconcile.Runner.
func (r *Runner) Stop(ctx context.Context, id string) error {
	r.init()
	r.mu.Lock()
	p := r.instances[id]
	if p == nil {
		r.mu.Unlock()
		return nil
	}
	p.stopping = true
	p.state.Phase = reconcile.PhaseStopping
	pid, exited := p.pid, p.exited
	r.mu.Unlock()
	r.notify()
	if pid > 0 && exited != nil {
		syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-ctx.Done():
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	p.cancel()
	<-p.done
	r.mu.Lock()
	delete(r.instances, id)
	r.mu.Unlock()
	os.RemoveAll(filepath.Join(r.Dir, "instances", id))
	if r.Cgroups != nil {
		r.Cgroups.Remove(id)
	}
	r.notify()
	return nil
}

// Close stops every instance (gracefully, bounded by ctx) and the runner.
func (r *Runner) Close(ctx context.Context) error {
	r.init()
	var wg sync.WaitGroup
	for _, in := range r.Instances() {
		wg.Go(func() { r.Stop(ctx, in.ID) })
	}
	wg.Wait()
	r.cancel()
	r.wg.Wait()
	return nil
}

// supervise prepares and runs one instance until it is stopped.
func (r *Runner) supervise(ctx context.Context, p *proc) {
	s := p.spec
	log := slog.New(r.Logger.Handler()).With("endpoint", s.Endpoint, "deployment", s.Deployment, "instance", s.ID)
	var args, env []string
	backoff := time.Second
	if a := p.adopted; a != nil {
		// taken over from a previous server: watch it like our own; if it
		// dies, restart it from its saved command line
		args, env = a.Args, a.Env
		err := r.watchAdopted(ctx, p, a)
		if ctx.Err() != nil || r.isStopping(p) {
			return
		}
		log.Warn("adopted instance exited; restarting", "err", err)
		r.setState(p, func(st *reconcile.Instance) {
			st.Phase, st.Reason, st.Addr = reconcile.PhaseStarting, "restarting after: "+err.Error(), ""
			st.Restarts++
		})
		r.restartLoop(ctx, p, args, env, 1, backoff, log)
		return
	}
	dir := r.LogDir(s.Endpoint, s.Deployment)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.fail(p, fmt.Sprintf("create log folder: %v", err))
		return
	}
	prov, err := os.OpenFile(filepath.Join(dir, "storage-initializer.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		r.fail(p, fmt.Sprintf("open provisioning log: %v", err))
		return
	}
	args, env, err = r.prepare(ctx, s, prov)
	if err != nil {
		fmt.Fprintf(prov, "%s %s: FAILED: %v\n", stamp(), s.ID, err)
		prov.Close()
		r.fail(p, err.Error())
		return
	}
	fmt.Fprintf(prov, "%s %s: starting model host\n", stamp(), s.ID)
	prov.Close()
	r.restartLoop(ctx, p, args, env, 0, backoff, log)
}

// restartLoop runs the host until stopped, restarting it with backoff when
// it exits. A host that never became ready on its first attempt fails the
// instance instead.
func (r *Runner) restartLoop(ctx context.Context, p *proc, args, env []string, first int, backoff time.Duration, log *slog.Logger) {
	for attempt := first; ; attempt++ {
		ready, err := r.runOnce(ctx, p, args, env)
		if ctx.Err() != nil || r.isStopping(p) {
			return
		}
		if !ready && attempt == 0 {
			// never became ready: a start failure, not a crash
			r.fail(p, err.Error())
			return
		}
		log.Warn("instance exited; restarting", "err", err, "backoff", backoff)
		r.setState(p, func(st *reconcile.Instance) {
			st.Phase, st.Reason, st.Addr = reconcile.PhaseStarting, "restarting after: "+err.Error(), ""
			st.Restarts++
		})
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		if ready {
			backoff = time.Second
		} else {
			backoff = min(backoff*2, 30*time.Second)
		}
	}
}

func (r *Runner) isStopping(p *proc) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return p.stopping
}

func (r *Runner) fail(p *proc, reason string) {
	r.setState(p, func(st *reconcile.Instance) { st.Phase, st.Reason, st.Addr = reconcile.PhaseFailed, reason, "" })
}

func stamp() string { return time.Now().UTC().Format(time.RFC3339) }

// prepare resolves the snapshot paths and the environment into host args.
func (r *Runner) prepare(ctx context.Context, s reconcile.InstanceSpec, prov io.Writer) ([]string, []string, error) {
	rev := s.Revision
	a := rev.Artifacts
	fmt.Fprintf(prov, "%s %s: preparing generation %d\n", stamp(), s.ID, rev.Generation)
	modelDir, err := r.Artifacts.Local(ctx, a.Model)
	if err != nil {
		return nil, nil, fmt.Errorf("model snapshot %s is missing from the artifact store: %w", a.Model, err)
	}
	codeDir, err := r.Artifacts.Local(ctx, a.Code)
	if err != nil {
		return nil, nil, fmt.Errorf("code snapshot %s is missing from the artifact store: %w", a.Code, err)
	}
	fmt.Fprintf(prov, "%s %s: model snapshot %s -> AZUREML_MODEL_DIR=%s\n", stamp(), s.ID, a.Model, modelDir)
	fmt.Fprintf(prov, "%s %s: code snapshot %s\n", stamp(), s.ID, a.Code)
	var conda []byte
	if a.Conda != "" {
		cdir, err := r.Artifacts.Local(ctx, a.Conda)
		if err != nil {
			return nil, nil, fmt.Errorf("conda snapshot %s: %w", a.Conda, err)
		}
		entries, err := os.ReadDir(cdir)
		if err != nil || len(entries) != 1 {
			return nil, nil, fmt.Errorf("conda snapshot %s is missing or malformed", a.Conda)
		}
		if conda, err = os.ReadFile(filepath.Join(cdir, entries[0].Name())); err != nil {
			return nil, nil, err
		}
	}
	envVars := rev.Spec.EnvironmentVariables
	python, err := r.Env.Resolve(ctx, conda, envVars, prov)
	if err != nil {
		if strings.HasPrefix(err.Error(), "environment") {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("environment: %w", err)
	}
	workers := 1
	if w, ok := envVars["WORKER_COUNT"]; ok {
		if n, err := strconv.Atoi(w); err == nil && n > 0 {
			workers = n
		} else {
			return nil, nil, fmt.Errorf("environment_variables.WORKER_COUNT must be a positive integer (got %q)", w)
		}
	}
	idir := filepath.Join(r.Dir, "instances", s.ID)
	if err := os.MkdirAll(idir, 0o700); err != nil {
		return nil, nil, err
	}
	r.touchLease(s.ID)
	script := ""
	if rev.Spec.CodeConfiguration != nil {
		script = rev.Spec.CodeConfiguration.ScoringScript
	}
	args := []string{"host",
		"--addr", "127.0.0.1:0",
		"--addr-file", filepath.Join(idir, "addr"),
		"--error-file", filepath.Join(idir, "error"),
		"--code-dir", codeDir,
		"--scoring-script", script,
		"--model-dir", modelDir,
		"--python", python,
		"--workers", strconv.Itoa(workers),
		"--lease-file", filepath.Join(idir, "lease"),
		"--lease-timeout", r.LeaseTimeout.String(),
	}
	if r.OTLPEndpoint != "" {
		args = append(args, "--otlp-endpoint", r.OTLPEndpoint)
	}
	env := os.Environ()
	for k, v := range envVars {
		env = append(env, k+"="+v)
	}
	env = append(env, "MOE_INSTANCE="+s.ID, "MOE_ENDPOINT="+s.Endpoint, "MOE_DEPLOYMENT="+s.Deployment)
	return args, env, nil
}

// runOnce runs the host process until it exits; ready reports whether it
// became ready first. The returned error says why it ended.
func (r *Runner) runOnce(ctx context.Context, p *proc, args, env []string) (ready bool, err error) {
	s := p.spec
	idir := filepath.Join(r.Dir, "instances", s.ID)
	addrFile, errFile := filepath.Join(idir, "addr"), filepath.Join(idir, "error")
	os.Remove(addrFile)
	os.Remove(errFile)
	logPath := filepath.Join(r.LogDir(s.Endpoint, s.Deployment), s.ID+".log")
	// The host writes (and rotates) logPath itself; its raw stderr only
	// catches what comes before that (flag errors, Go panics).
	logf, err := os.OpenFile(filepath.Join(idir, "stderr"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return false, err
	}
	defer logf.Close()
	if !slices.Contains(args, "--log-file") { // saved args of adopted instances have it
		args = append(args[:len(args):len(args)], "--log-file", logPath, "--log-max-bytes", strconv.FormatInt(r.MaxLogBytes, 10))
	}
	cmd := exec.Command(r.Exe, args...)
	if r.HostExe != "" && len(args) > 0 && args[0] == "host" {
		cmd = exec.Command(r.HostExe, args[1:]...)
	}
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return false, fmt.Errorf("start model host: %w", err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	r.mu.Lock()
	p.pid, p.exited = cmd.Process.Pid, exited
	r.mu.Unlock()
	r.limit(p, cmd.Process.Pid)

	spec := s.Revision.Spec
	budget := 310 * time.Second
	if rp := spec.ReadinessProbe; rp != nil {
		budget = time.Duration(rp.InitialDelay+rp.Period*rp.FailureThreshold) * time.Second
	}
	deadline := time.Now().Add(budget)
	addr := ""
	poll := time.NewTicker(25 * time.Millisecond)
	defer poll.Stop()
	for !ready {
		select {
		case <-exited:
			return false, r.exitReason(waitErr, errFile, logPath)
		case <-ctx.Done():
			cmd.Process.Kill()
			<-exited
			return false, ctx.Err()
		case <-poll.C:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return false, fmt.Errorf("not ready after %s (readiness_probe initial_delay + period × failure_threshold); see get-logs", budget)
		}
		if addr == "" {
			b, err := os.ReadFile(addrFile)
			if err != nil || len(b) == 0 {
				continue
			}
			addr = strings.TrimSpace(string(b))
		}
		resp, err := r.client.Get("http://" + addr + "/-/ready")
		if err != nil {
			continue
		}
		resp.Body.Close()
		ready = resp.StatusCode == http.StatusOK
	}
	r.setState(p, func(st *reconcile.Instance) { st.Phase, st.Addr, st.Reason = reconcile.PhaseReady, addr, "" })
	r.save(p, savedState{Spec: s, PID: cmd.Process.Pid, Addr: addr, Args: args, Env: env})
	r.watch(ctx, p, addr, exited, func() { cmd.Process.Kill() })
	<-exited
	return true, r.exitReason(waitErr, errFile, logPath)
}

// exitReason explains a host exit from its error file or its last log lines.
func (r *Runner) exitReason(waitErr error, errFile, logPath string) error {
	if b, err := os.ReadFile(errFile); err == nil && len(bytes.TrimSpace(b)) > 0 {
		return errors.New(strings.TrimSpace(string(b)))
	}
	tail := tailLines(logPath, 5)
	if extra := tailLines(filepath.Join(filepath.Dir(errFile), "stderr"), 5); extra != "" {
		tail += extra
	}
	if tail != "" {
		return fmt.Errorf("model host exited (%v); last log lines:\n%s", waitErr, tail)
	}
	return fmt.Errorf("model host exited (%v)", waitErr)
}

// Logs returns the last tail lines (all when tail <= 0) of a deployment's
// logs: container "inference-server" (the newest instance's host and
// worker output) or "storage-initializer" (the provisioning log).
func (r *Runner) Logs(endpoint, deployment, container string, tail int) (string, error) {
	dir := r.LogDir(endpoint, deployment)
	switch container {
	case "", "inference-server":
		entries, err := os.ReadDir(dir)
		if err != nil {
			return "", fmt.Errorf("no logs yet for deployment %q (endpoint %q); try again later", deployment, endpoint)
		}
		var newest string
		var newestT time.Time
		for _, e := range entries {
			if !strings.HasSuffix(e.Name(), ".log") || e.Name() == "storage-initializer.log" {
				continue
			}
			if fi, err := e.Info(); err == nil && fi.ModTime().After(newestT) {
				newest, newestT = e.Name(), fi.ModTime()
			}
		}
		if newest == "" {
			return "", fmt.Errorf("no inference-server logs yet for deployment %q (endpoint %q); try again later", deployment, endpoint)
		}
		return tailLines(filepath.Join(dir, newest), tail), nil
	case "storage-initializer":
		return tailLines(filepath.Join(dir, "storage-initializer.log"), tail), nil
	}
	return "", fmt.Errorf("unknown container %q: use inference-server or storage-initializer", container)
}

func tailLines(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if n > 0 && len(lines) > n {
			lines = lines[1:]
		}
	}
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
