package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// ErrInit is wrapped by the error Run returns when the scoring script could
// not be started: interpreter missing, script not found, import error,
// missing init()/run(), or init() raised. `moe host` exits 3 on it, as the
// Azure inference server does.
var ErrInit = errors.New("host: scoring script failed to start")

// Config configures Run. The zero value of every field but CodeDir,
// ScoringScript and Python is usable.
type Config struct {
	// Addr is the listen address, e.g. "127.0.0.1:0". Empty means
	// "127.0.0.1:0".
	Addr string
	// AddrFile, if set, receives the bound "host:port" (written atomically
	// via a temp file and rename) once the host listens.
	AddrFile string
	// ErrorFile, if set, receives a one-paragraph human summary when Run
	// fails to start the scoring script (the ErrInit cases).
	ErrorFile string
	// CodeDir holds the scoring code. It is AML_APP_ROOT, the workers' cwd
	// and on their sys.path. Empty means the host's cwd.
	CodeDir string
	// ScoringScript is the entry script relative to CodeDir (or absolute):
	// AZUREML_ENTRY_SCRIPT. Empty means `import main`, as on Azure.
	ScoringScript string
	// ModelDir is AZUREML_MODEL_DIR: the folder that contains the model
	// folder. Empty leaves the variable unset.
	ModelDir string
	// Python is the interpreter. Empty means "python3" on PATH.
	Python string
	// Workers is WORKER_COUNT; 0 means 1.
	Workers int
	// Env is extra environment for the workers (the deployment's
	// environment_variables), applied on top of the host's environment and
	// under the variables the host sets itself.
	Env map[string]string
	// Logger receives the host's own logs; nil means slog.Default().
	Logger *slog.Logger
	// ScoringTimeout bounds one run() call (SCORING_TIMEOUT_MS): past it the
	// answer is 500 "Scoring timeout after N ms". 0 means
	// Env["SCORING_TIMEOUT_MS"] if set, else one hour.
	ScoringTimeout time.Duration

	// Stderr receives the workers' stdout and stderr (print() output,
	// tracebacks). nil means os.Stderr.
	Stderr io.Writer
	// DrainTimeout bounds how long in-flight requests may take to finish
	// after ctx ends. 0 means 30s.
	DrainTimeout time.Duration
	// Tracer, if set, traces every /score request with a server span
	// "run", child of the request's W3C traceparent (the gateway's
	// upstream span), and scripts that take request_headers get a
	// traceparent naming that span. Nil means off: no spans, and the
	// request's traceparent reaches the script unchanged.
	Tracer trace.Tracer
}

const (
	defaultScoringTimeout = time.Hour
	defaultDrainTimeout   = 30 * time.Second
)

// backstopGrace is how long past the scoring timeout the host waits for
// Python's own alarm before it kills the worker. A variable for tests.
var backstopGrace = 10 * time.Second

// hostRun is the state of one Run call.
type hostRun struct {
	cfg       Config
	log       *slog.Logger
	spec      *workerSpec
	pool      pool
	stopGrace time.Duration
	timeout   time.Duration

	ready      atomic.Bool // every worker finished init() at start
	draining   atomic.Bool
	flags      atomic.Uint32 // ready-frame flags (same for every worker)
	started    chan struct{} // closed once the first worker is ready
	nextID     atomic.Uint64
	version    string
	versionVal []string // x-ms-server-version, shared read-only
}

// Run starts the workers, serves HTTP until ctx is done, then drains:
// readiness fails, in-flight requests finish (bounded by DrainTimeout) and
// the workers stop. The HTTP listener is up (and AddrFile written) before
// the workers finish init(), so liveness answers while a model loads.
//
// If the scoring script fails to start, Run writes ErrorFile and returns an
// error wrapping ErrInit. It returns nil after a clean shutdown.
func Run(ctx context.Context, cfg Config) error {
	h, err := newHostRun(cfg)
	if err != nil {
		return err
	}
	pyDir, err := writePythonFiles()
	if err != nil {
		return err
	}
	defer os.RemoveAll(pyDir)
	h.spec.script = workerFile(pyDir)

	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("host: listen %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           h.handler(),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelWarn),
	}
	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.Serve(ln) }()
	if cfg.AddrFile != "" {
		if err := writeFileAtomic(cfg.AddrFile, []byte(ln.Addr().String())); err != nil {
			_ = srv.Close()
			<-srvErr
			return fmt.Errorf("host: write addr file: %w", err)
		}
	}
	h.log.Info("model host listening", "addr", ln.Addr().String(), "workers", h.spec.workers(), "script", cfg.ScoringScript)

	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer func() {
		stopWorkers()
		wg.Wait()
	}()

	// Start every worker; the first failure is fatal.
	n := h.spec.workers()
	type startResult struct {
		w   *worker
		err error
	}
	results := make(chan startResult, n)
	for i := range n {
		go func() {
			w, err := startWorker(wctx, h.spec, i)
			results <- startResult{w, err}
		}()
	}
	var initErr error
	startCtxDone := false
	for range n {
		var r startResult
		select {
		case r = <-results:
		case <-ctx.Done():
			// Shut down while init() runs: kill the starting workers.
			stopWorkers()
			startCtxDone = true
			r = <-results
		}
		if r.err != nil {
			if initErr == nil && !startCtxDone {
				initErr = r.err
				stopWorkers()
			}
			continue
		}
		if initErr != nil || startCtxDone {
			r.w.stop(0)
			continue
		}
		if h.flags.Load() == 0 {
			h.flags.Store(r.w.flags)
		}
		select {
		case <-h.started:
		default:
			close(h.started)
		}
		wg.Go(func() { h.supervise(wctx, r.w) })
	}
	if initErr != nil {
		h.draining.Store(true)
		_ = srv.Close()
		<-srvErr
		return h.failInit(initErr)
	}
	if !startCtxDone {
		h.ready.Store(true)
		h.log.Info("all workers ready", "workers", n)
	}

	select {
	case <-ctx.Done():
	case err := <-srvErr:
		return fmt.Errorf("host: serve: %w", err)
	}

	// Drain: fail readiness, let in-flight requests finish, stop workers.
	h.draining.Store(true)
	h.ready.Store(false)
	dctx, cancel := context.WithTimeout(context.Background(), h.drainTimeout())
	defer cancel()
	err = srv.Shutdown(dctx)
	if err != nil {
		_ = srv.Close()
	}
	<-srvErr
	stopWorkers()
	wg.Wait()
	h.log.Info("model host stopped")
	if err != nil {
		return fmt.Errorf("host: drain: %w", err)
	}
	return nil
}

func newHostRun(cfg Config) (*hostRun, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "host")
	python := cfg.Python
	if python == "" {
		python = "python3"
	}
	codeDir := cfg.CodeDir
	if codeDir == "" {
		codeDir = "."
	}
	codeDir, err := filepath.Abs(codeDir)
	if err != nil {
		return nil, fmt.Errorf("host: code dir: %w", err)
	}
	timeout := cfg.ScoringTimeout
	if timeout <= 0 {
		timeout = defaultScoringTimeout
		if v, ok := cfg.Env["SCORING_TIMEOUT_MS"]; ok {
			if ms, err := strconv.Atoi(v); err == nil && ms > 0 {
				timeout = time.Duration(ms) * time.Millisecond
			}
		}
	}
	stderr := cfg.Stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	workers := cfg.Workers
	if workers <= 0 {
		workers = 1
	}
	h := &hostRun{
		cfg:       cfg,
		log:       log,
		stopGrace: 10 * time.Second,
		timeout:   timeout,
		started:   make(chan struct{}),
		version:   serverVersion(),
	}
	h.versionVal = []string{h.version}
	h.spec = &workerSpec{
		python:   python,
		dir:      codeDir,
		stderr:   stderr,
		log:      log,
		backstop: timeout + backstopGrace,
		n:        workers,
	}
	h.spec.env = workerEnv(cfg, codeDir, workers, timeout)
	return h, nil
}

func (s *workerSpec) workers() int { return s.n }

// workerEnv is the host's environment, then cfg.Env, then the variables
// the host owns.
func workerEnv(cfg Config, codeDir string, workers int, timeout time.Duration) []string {
	m := map[string]string{}
	for _, kv := range os.Environ() {
		for i := 0; i < len(kv); i++ {
			if kv[i] == '=' {
				m[kv[:i]] = kv[i+1:]
				break
			}
		}
	}
	for k, v := range cfg.Env {
		m[k] = v
	}
	m["AML_APP_ROOT"] = codeDir
	if cfg.ScoringScript != "" {
		m["AZUREML_ENTRY_SCRIPT"] = cfg.ScoringScript
	} else {
		delete(m, "AZUREML_ENTRY_SCRIPT")
	}
	if cfg.ModelDir != "" {
		if abs, err := filepath.Abs(cfg.ModelDir); err == nil {
			m["AZUREML_MODEL_DIR"] = abs
		} else {
			m["AZUREML_MODEL_DIR"] = cfg.ModelDir
		}
	}
	m["WORKER_COUNT"] = strconv.Itoa(workers)
	m["SCORING_TIMEOUT_MS"] = strconv.FormatInt(timeout.Milliseconds(), 10)
	m["PYTHONUNBUFFERED"] = "1"
	env := make([]string, 0, len(m))
	for k, v := range m {
		env = append(env, k+"="+v)
	}
	sort.Strings(env)
	return env
}

func (h *hostRun) drainTimeout() time.Duration {
	if h.cfg.DrainTimeout > 0 {
		return h.cfg.DrainTimeout
	}
	return defaultDrainTimeout
}

// failInit writes the error file and returns the ErrInit-wrapping error.
func (h *hostRun) failInit(err error) error {
	var ie *initError
	summary := err.Error()
	if errors.As(err, &ie) {
		summary = ie.Summary
	}
	script := h.cfg.ScoringScript
	if script == "" {
		script = "main.py"
	}
	text := fmt.Sprintf("The scoring script %s failed to start: %s See the instance log for the full traceback.\n", script, ensurePeriod(summary))
	h.log.Error("scoring script failed to start", "err", summary)
	if h.cfg.ErrorFile != "" {
		if werr := writeFileAtomic(h.cfg.ErrorFile, []byte(text)); werr != nil {
			h.log.Error("write error file", "err", werr)
		}
	}
	return fmt.Errorf("%w: %s", ErrInit, summary)
}

func ensurePeriod(s string) string {
	if s == "" {
		return "unknown error."
	}
	switch s[len(s)-1] {
	case '.', '!', '?':
		return s
	}
	return s + "."
}

// writeFileAtomic writes data to a temp file next to path and renames it.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		os.Remove(f.Name())
		return err
	}
	return nil
}
