package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/moe-serving/moe/internal/api"
	"github.com/moe-serving/moe/internal/artifact"
	"github.com/moe-serving/moe/internal/auth"
	"github.com/moe-serving/moe/internal/console"
	"github.com/moe-serving/moe/internal/gateway"
	"github.com/moe-serving/moe/internal/logfile"
	"github.com/moe-serving/moe/internal/metrics"
	"github.com/moe-serving/moe/internal/oidc"
	"github.com/moe-serving/moe/internal/pki"
	"github.com/moe-serving/moe/internal/pyenv"
	"github.com/moe-serving/moe/internal/reconcile"
	"github.com/moe-serving/moe/internal/runner/local"
	"github.com/moe-serving/moe/internal/spec"
	"github.com/moe-serving/moe/internal/stats"
	"github.com/moe-serving/moe/internal/store"
	"github.com/moe-serving/moe/internal/store/postgres"
	"github.com/moe-serving/moe/internal/store/sqlite"
	"github.com/moe-serving/moe/internal/tracing"
)

// serveRunner is what serve needs of a runner: the reconciler's seam and
// get-logs.
type serveRunner interface {
	reconcile.Runner
	Logs(endpoint, deployment, container string, tail int) (string, error)
}

// serveCmd is `moe serve`: control-plane API, reconciler, runner and
// gateway in one process. Its steps run in order: init* build the parts,
// Run serves until the context ends, Close releases in reverse order.
type serveCmd struct {
	logOut      *logfile.Buffered
	app         *app
	apiAddr     string
	gatewayAddr string
	adminAddr   string
	pprof       bool
	adminSet    bool // --admin-addr given: a busy port is an error, not a fallback
	region      string
	domain      string
	python      string
	wheelDir    string
	logFormat   string
	logLevel    string
	tlsCert     string
	tlsKey      string
	tokenTTL    time.Duration
	oidc        oidc.Config
	oidcClaim   string
	verifier    *oidc.Verifier
	otlp        string            // --otlp-endpoint
	tracing     *tracing.Provider // nil when not tracing

	dir      string
	logger   *slog.Logger
	admin    auth.Secret
	readonly auth.Secret
	box      *auth.Box
	signer   *auth.Signer
	ca       *pki.Authority
	store    store.Store
	storeURL string
	// runnerKind is --runner: "local" (processes on this machine) or
	// "kubernetes" (pods; see serve_kubernetes.go).
	runnerKind string
	runner     serveRunner
	local      *local.Runner // nil unless --runner local
	artifacts  *artifact.Store
	kube       kubeSettings // --runner kubernetes and --leader-elect
	gw         *gateway.Server
	recon      *reconcile.Reconciler
	apiSrv     *http.Server
	apiLn      net.Listener
	gwLn       net.Listener

	registry   *prometheus.Registry
	metrics    *metrics.Metrics
	selfOnce   sync.Once
	apiHandler *api.Server
	self       *http.Client
	stats      *stats.Recorder
	observers  []func(*gateway.Observation) // see observe
	adminSrv   *http.Server
	adminLn    net.Listener // nil when --admin-addr is empty
}

func newServeCmd(a *app) *cobra.Command {
	s := &serveCmd{app: a}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the control plane, gateway and local runner (embedded defaults)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s.adminSet = cmd.Flags().Changed("admin-addr")
			return s.run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&s.apiAddr, "api-addr", "127.0.0.1:8442", "control-plane API listen address (port 0 picks a free port)")
	f.StringVar(&s.gatewayAddr, "gateway-addr", "127.0.0.1:8443", "scoring gateway listen address (port 0 picks a free port; empty: no gateway, e.g. a control plane behind separate `moe gateway` replicas)")
	f.StringVar(&s.adminAddr, "admin-addr", "127.0.0.1:9464", "admin listener, plain HTTP: /metrics (Prometheus) and /-/healthz (port 0 picks a free port; empty disables it)")
	f.BoolVar(&s.pprof, "pprof", false, "also serve the Go profiler (/debug/pprof/) on the admin listener; keep that listener private")
	f.StringVar(&s.runnerKind, "runner", envOr("MOE_RUNNER", "local"), "where deployments run: local (processes on this machine) or kubernetes (pods; see the --k8s-* flags) (env MOE_RUNNER)")
	f.StringVar(&s.region, "region", envOr("MOE_REGION", "local"), "region label of scoring hosts: <endpoint>.<region>.inference.<domain> (env MOE_REGION)")
	f.StringVar(&s.domain, "domain", envOr("MOE_DOMAIN", "localhost"), "domain of scoring hosts (env MOE_DOMAIN)")
	f.StringVar(&s.storeURL, "store", os.Getenv("MOE_STORE"), "state store: empty for SQLite in the data dir, or a postgres:// URL (env MOE_STORE) so several servers share one state")
	f.StringVar(&s.python, "python", os.Getenv("MOE_PYTHON"), "use this Python interpreter for every deployment (env MOE_PYTHON); default: resolve from each conda file")
	f.StringVar(&s.wheelDir, "wheel-dir", os.Getenv("MOE_WHEEL_DIR"), "local wheel folder for offline environment builds (env MOE_WHEEL_DIR)")
	f.StringVar(&s.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&s.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&s.tlsCert, "tls-cert", "", "serve this certificate (PEM) instead of the generated one; reloaded when it changes")
	f.StringVar(&s.tlsKey, "tls-key", "", "private key (PEM) for --tls-cert")
	f.DurationVar(&s.tokenTTL, "token-ttl", time.Hour, "lifetime of aml_token access tokens")
	addOIDCFlags(f, &s.oidc, &s.oidcClaim)
	f.StringVar(&s.otlp, "otlp-endpoint", os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"), "export spans of scoring requests (gateway and model hosts) to this OTLP/HTTP collector, e.g. http://127.0.0.1:4318 (env OTEL_EXPORTER_OTLP_ENDPOINT); empty: no tracing")
	s.kube.flags(f)
	return cmd
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func (s *serveCmd) run(ctx context.Context) (err error) {
	tuneGC()
	defer func() {
		if cerr := s.close(); err == nil {
			err = cerr
		}
	}()
	for _, step := range []func() error{s.initDir, s.initLogger, s.initSecrets, s.initPKI, s.initOIDC, s.initStore, s.initSharedSecrets, s.initTracing, s.initRunner, s.initMetrics, s.initGateway, s.initAPI, s.initListeners} {
		if err := step(); err != nil {
			return err
		}
	}
	return s.serve(ctx)
}

func (s *serveCmd) initDir() error {
	s.dir = s.app.dir()
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	return nil
}

func (s *serveCmd) initLogger() (err error) {
	// buffered: the access log would otherwise cost a write(2) per request
	s.logOut = logfile.NewBuffered(s.app.stderr, 100*time.Millisecond)
	s.logger, err = newLogger(s.logOut, s.logFormat, s.logLevel)
	return err
}

func (s *serveCmd) initSecrets() (err error) {
	s.box, err = openMasterKey(filepath.Join(s.dir, "master.key"), true)
	return err
}

// initSharedSecrets loads the API credentials and the aml_token signing key
// set from the store (sealed with the master key), where every control-plane
// and gateway replica finds the same ones; the first replica to start
// creates them. A data dir from before the shared store keeps its
// credentials and key set: they become the stored ones.
func (s *serveCmd) initSharedSecrets() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var replaced bool
	var err error
	if s.admin, s.readonly, replaced, err = auth.LoadOrCreateSharedCredential(ctx, s.store, s.box, s.dir); err != nil {
		return fmt.Errorf("admin credential: %w", err)
	}
	if replaced {
		s.logger.Warn("the admin or read-only credential in the data dir was not the store's; the data dir's files now hold the store's", "data_dir", s.dir)
	}
	keys := auth.StoredKeySet(s.store, s.box)
	if data, err := auth.ReadSecretFile(filepath.Join(s.dir, "signing", auth.KeySetFile)); err == nil {
		if _, _, err := keys.Load(ctx); errors.Is(err, fs.ErrNotExist) {
			if err := auth.ImportKeySet(ctx, keys, data); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("token signing key: %w", err)
			}
			s.logger.Info("token signing key set moved from the data dir into the store", "file", filepath.Join(s.dir, "signing", auth.KeySetFile))
		}
	}
	if s.signer, err = auth.OpenSharedSigner(ctx, keys); err != nil {
		return fmt.Errorf("token signing key: %w", err)
	}
	return nil
}

// onStoreChange calls f after every change notification of st until ctx
// ends (the signing-key reloads of moe serve and moe gateway).
func onStoreChange(ctx context.Context, st store.Store, f func()) {
	ch, stop := st.Subscribe()
	defer stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			f()
		}
	}
}

// followSigningKeys reloads the token signing key set after every store
// change, so tokens this replica issues are signed with the key another
// replica rotated to (the reload is one read when nothing changed).
func (s *serveCmd) followSigningKeys(ctx context.Context) {
	onStoreChange(ctx, s.store, func() {
		if err := s.signer.Reload(ctx); err != nil && ctx.Err() == nil {
			s.logger.Warn("reload token signing keys", "err", err)
		}
	})
}

func (s *serveCmd) initPKI() error {
	hosts := []string{"localhost", "127.0.0.1", "::1", "*." + s.region + ".inference." + s.domain}
	for _, addr := range []string{s.apiAddr, s.gatewayAddr} {
		if h, _, err := net.SplitHostPort(addr); err == nil && h != "" && h != "0.0.0.0" && h != "::" {
			hosts = append(hosts, h)
		}
	}
	var err error
	if s.ca, err = pki.Open(filepath.Join(s.dir, "pki"), hosts); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	s.ca.Logger = s.logger.With("component", "pki")
	if s.tlsCert != "" || s.tlsKey != "" {
		if err := s.ca.UseFiles(s.tlsCert, s.tlsKey); err != nil {
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
	}
	return nil
}

func (s *serveCmd) initStore() error {
	var err error
	switch {
	case s.storeURL == "":
		s.store, err = sqlite.Open(filepath.Join(s.dir, "moe.db"))
	case strings.HasPrefix(s.storeURL, "postgres://") || strings.HasPrefix(s.storeURL, "postgresql://"):
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s.store, err = postgres.Open(ctx, s.storeURL)
	default:
		return &usageError{msg: "--store must be empty (SQLite) or a postgres:// URL", hint: "--store postgres://moe@127.0.0.1:5432/moe"}
	}
	return err
}

// initRunner builds the runner --runner names, and the Kubernetes client
// when --leader-elect needs one.
func (s *serveCmd) initRunner() error {
	s.artifacts = &artifact.Store{Dir: filepath.Join(s.dir, "artifacts")}
	switch s.runnerKind {
	case "local":
		if err := s.initLocalRunner(); err != nil {
			return err
		}
	case "kubernetes":
		// pods download snapshots: keep the uploaded bytes (see KeepTar),
		// in the shared store when there is one (every replica serves them)
		if b, ok := s.store.(store.Blobs); ok {
			s.artifacts.Shared = b
		} else {
			s.artifacts.KeepTar = true
		}
		if err := s.initKubernetesRunner(); err != nil {
			return err
		}
	default:
		return &usageError{msg: fmt.Sprintf("--runner %q: must be local or kubernetes", s.runnerKind), hint: "--runner kubernetes --k8s-namespace moe-models"}
	}
	return s.initLeaderElection()
}

func (s *serveCmd) initLocalRunner() error {
	lr := &local.Runner{
		Dir:       s.dir,
		Artifacts: s.artifacts,
		Env: &pyenv.Resolver{Explicit: s.python, CacheDir: filepath.Join(s.dir, "envs"), WheelDir: s.wheelDir,
			Logger: s.logger.With("component", "pyenv")},
		Logger:       s.logger.With("component", "runner"),
		Cgroups:      &local.Cgroups{},
		OTLPEndpoint: s.otlp,
	}
	lr.Cgroups.Setup()
	if lr.Cgroups.Why != "" {
		s.logger.Info("instance CPU and memory limits are " + lr.Cgroups.Why)
	}
	s.local, s.runner = lr, lr
	return nil
}

// initMetrics builds the Prometheus registry behind the admin listener's
// /metrics and moe's metrics in it, and makes them a gateway observer.
func (s *serveCmd) initMetrics() error {
	s.registry = newMetricsRegistry()
	var err error
	s.metrics, err = metrics.New(s.registry, metrics.Config{
		Routes: func() *gateway.Table {
			if s.recon == nil {
				return nil
			}
			return s.recon.Routes()
		},
		Instances: s.runner.Instances,
		Queued: func(endpoint, deployment string) int64 {
			if s.gw == nil {
				return 0
			}
			return s.gw.Queued(endpoint, deployment)
		},
		Usage: func() []metrics.Usage {
			if s.local == nil {
				return nil // Kubernetes: the cluster's own metrics (cAdvisor)
			}
			us := s.local.Usage()
			out := make([]metrics.Usage, len(us))
			for i, u := range us {
				out[i] = metrics.Usage(u)
			}
			return out
		},
		Mirror: func(endpoint string) (sent, dropped, failed uint64) { return s.gw.MirrorStats(endpoint) },
	})
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	s.observers = append(s.observers, s.metrics.Observe)
	// the console's charts: a per-second ring buffer of the last hour
	s.stats = stats.New(time.Hour, nil)
	s.observers = append(s.observers, func(o *gateway.Observation) {
		if !o.Mirrored {
			s.stats.Record(o.Endpoint, o.Deployment, o.Status, o.Total, o.Model)
		}
	})
	s.adminSrv = newAdminServer(s.registry, s.logger, nil, s.pprof)
	return nil
}

// observe is the gateway's Observer: it hands every finished scoring
// request to each of s.observers in turn, on the request's goroutine.
func (s *serveCmd) observe(o *gateway.Observation) {
	for _, f := range s.observers {
		f(o)
	}
}

func (s *serveCmd) initOIDC() (err error) {
	s.verifier, err = openOIDC(s.oidc, s.oidcClaim, s.logger)
	return err
}

// initTracing opens span export when --otlp-endpoint is set; the runner
// hands the same endpoint to every model host.
func (s *serveCmd) initTracing() error {
	if s.otlp == "" {
		return nil
	}
	var err error
	s.tracing, err = openTracing(s.otlp, s.logger)
	return err
}

func (s *serveCmd) initGateway() error {
	var tracer trace.Tracer // nil: off
	if s.tracing != nil {
		tracer = s.tracing.Tracer()
	}
	s.gw = gateway.New(gateway.Config{
		Region: s.region, Domain: s.domain, Logger: s.logger.With("component", "gateway"),
		Observer: s.observe, Tracer: tracer,
		VerifyToken: verifyToken(s.signer.Verify, s.verifier, "moe serve"),
	})
	return nil
}

func (s *serveCmd) initAPI() error {
	srv := &api.Server{
		Store: s.store, Artifacts: s.artifacts, Box: s.box, Signer: s.signer, TokenTTL: s.tokenTTL,
		Admin: s.admin, ReadOnly: s.readonly, Location: s.region,
		ScoringURI: func(endpoint string) string { return s.gw.ScoringURI(endpoint, s.gatewayPort()) },
		Instances: func(ep, dep string) []reconcile.Instance {
			var out []reconcile.Instance
			for _, in := range s.runner.Instances() {
				if in.Endpoint == ep && in.Deployment == dep {
					out = append(out, in)
				}
			}
			return out
		},
		Logs:         s.runner.Logs,
		ArtifactAuth: s.artifactAuth(),
		Counters:     s.metrics.Counters,
		Logger:       s.logger.With("component", "api"),
	}
	s.apiHandler = srv
	s.recon = &reconcile.Reconciler{Store: s.store, Runner: s.runner, Keys: srv.OpenKeys, OnRoutes: s.gw.SetRoutes, Queued: s.gw.Queued,
		Logger: s.logger.With("component", "reconciler")}
	con := console.New(console.Config{Logger: s.logger.With("component", "console"), Invoke: s.invoke})
	srv.Extra = map[string]http.Handler{"GET /v1/stats": s.stats.Handler(), "POST /console/api/invoke": con}
	root := http.NewServeMux()
	root.Handle("GET /console/", con) // static files: no secrets, no credential needed
	root.Handle("GET /console", con)
	root.Handle("/", srv.Handler()) // /v1/* and the console's invoke, behind the credential check
	s.apiSrv = &http.Server{Handler: root, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		TLSConfig: s.ca.ServerTLSConfig(), ErrorLog: slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn)}
	return nil
}

func (s *serveCmd) gatewayPort() int {
	if s.gwLn == nil {
		return 0
	}
	return s.gwLn.Addr().(*net.TCPAddr).Port
}

func (s *serveCmd) initListeners() error {
	var err error
	if s.apiLn, err = net.Listen("tcp", s.apiAddr); err != nil {
		return fmt.Errorf("api listener: %w", err)
	}
	info := serverInfo{API: "https://" + s.apiLn.Addr().String(), Region: s.region, Domain: s.domain, PID: os.Getpid()}
	if s.gatewayAddr != "" {
		if s.gwLn, err = net.Listen("tcp", s.gatewayAddr); err != nil {
			return fmt.Errorf("gateway listener: %w", err)
		}
		info.Gateway = s.gwLn.Addr().String()
	}
	if s.adminAddr != "" {
		if s.adminLn, err = net.Listen("tcp", s.adminAddr); errors.Is(err, syscall.EADDRINUSE) && !s.adminSet {
			// the default port is taken (another moe serve, a test):
			// metrics move rather than the server failing
			s.adminLn, err = net.Listen("tcp", "127.0.0.1:0")
			if err == nil {
				s.logger.Warn("admin listener: default address "+s.adminAddr+" is in use; serving /metrics on "+s.adminLn.Addr().String()+" instead (set --admin-addr)", "admin", s.adminLn.Addr().String())
			}
		}
		if err != nil {
			return fmt.Errorf("admin listener: %w", err)
		}
		info.Admin = "http://" + s.adminLn.Addr().String()
	}
	b, _ := json.MarshalIndent(info, "", "  ")
	tmp := filepath.Join(s.dir, serverInfoFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.dir, serverInfoFile))
}

func (s *serveCmd) serve(ctx context.Context) error {
	if s.local != nil {
		if n := s.local.Recover(ctx); n > 0 {
			s.logger.Info("adopted instances left running by a previous server", "count", n)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := s.apiSrv.Serve(tls.NewListener(s.apiLn, s.apiSrv.TLSConfig))
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("api: %w", err)
	})
	if s.gwLn != nil {
		g.Go(func() error {
			err := s.gw.Serve(s.gwLn, s.ca.ServerTLSConfig())
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return fmt.Errorf("gateway: %w", err)
		})
	}
	if s.adminLn != nil {
		g.Go(func() error {
			if err := s.adminSrv.Serve(s.adminLn); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("admin: %w", err)
			}
			return nil
		})
	}
	g.Go(func() error { return s.runReconciler(gctx) })
	g.Go(func() error { s.followSigningKeys(gctx); return nil })
	g.Go(func() error { return s.ca.Run(gctx) })
	if s.verifier != nil {
		g.Go(func() error { return s.verifier.Run(gctx) })
	}
	g.Go(func() error {
		<-gctx.Done()
		s.logger.Info("shutting down: draining the gateway, then stopping instances")
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s.gw.Shutdown(sctx)
		s.apiSrv.Shutdown(sctx)
		s.adminSrv.Shutdown(sctx)
		return nil
	})
	gwURL := "(none: --gateway-addr is empty)"
	if s.gwLn != nil {
		gwURL = "https://" + s.gwLn.Addr().String()
	}
	s.logger.Info("moe is serving", "api", "https://"+s.apiLn.Addr().String(), "gateway", gwURL, "runner", s.runnerKind,
		"scoring_uri_example", s.gw.ScoringURI("my-endpoint", s.gatewayPort()), "data_dir", s.dir, "pid", strconv.Itoa(os.Getpid()))
	return g.Wait()
}

func (s *serveCmd) close() error {
	var errs []error
	if s.local != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		errs = append(errs, s.local.Close(ctx))
		cancel()
	}
	if s.kube.runner != nil {
		s.kube.runner.Close() // pods keep running; the next leader adopts them
	}
	if s.store != nil {
		errs = append(errs, s.store.Close())
	}
	if s.tracing != nil {
		closeTracing(s.tracing, s.logger)
	}
	if s.dir != "" && s.apiLn != nil {
		os.Remove(filepath.Join(s.dir, serverInfoFile))
	}
	if s.logOut != nil {
		s.logOut.Close()
	}
	return errors.Join(errs...)
}

// invoke scores a request for the console's test form, server side, with
// the endpoint's own credential (the browser never sees it), through the
// gateway like any client.
func (s *serveCmd) invoke(ctx context.Context, endpoint, deployment string, body []byte) (int, http.Header, []byte, error) {
	if s.gwLn == nil {
		return 0, nil, nil, errors.New("this server runs no gateway (--gateway-addr is empty): score through the moe gateway service")
	}
	e, err := s.store.GetEndpoint(ctx, endpoint)
	if err != nil {
		return 0, nil, nil, err
	}
	var bearer string
	switch e.Spec.AuthMode {
	case spec.AuthKey:
		p, _, err := s.apiHandler.OpenKeys(e)
		if err != nil {
			return 0, nil, nil, err
		}
		bearer = p.Reveal()
	case spec.AuthAMLToken:
		t, err := s.signer.Issue(e.Spec.Name, time.Minute, time.Now())
		if err != nil {
			return 0, nil, nil, err
		}
		bearer = t.AccessToken.Reveal()
	default:
		return 0, nil, nil, fmt.Errorf("endpoint %q uses %s: the console cannot get a token from your identity provider", endpoint, e.Spec.AuthMode)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.gw.ScoringURI(e.Spec.Name, s.gatewayPort()), bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+bearer)
	if deployment != "" {
		req.Header.Set("azureml-model-deployment", deployment)
	}
	resp, err := s.selfClient().Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return resp.StatusCode, resp.Header, b, err
}

// selfClient reaches this server's gateway over TLS, trusting its CA.
func (s *serveCmd) selfClient() *http.Client {
	s.selfOnce.Do(func() {
		gw := s.gwLn.Addr().String()
		d := &net.Dialer{Timeout: 5 * time.Second}
		s.self = &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: s.ca.CertPool(), MinVersion: tls.VersionTLS12},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, gw)
			},
		}}
	})
	return s.self
}
