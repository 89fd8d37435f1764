package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/moe-serving/moe/internal/logfile"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/moe-serving/moe/internal/api"
	"github.com/moe-serving/moe/internal/auth"
	"github.com/moe-serving/moe/internal/gateway"
	"github.com/moe-serving/moe/internal/metrics"
	"github.com/moe-serving/moe/internal/oidc"
	"github.com/moe-serving/moe/internal/pki"
	"github.com/moe-serving/moe/internal/routesource"
	"github.com/moe-serving/moe/internal/store"
	"github.com/moe-serving/moe/internal/store/postgres"
	"github.com/moe-serving/moe/internal/tracing"
)

// gatewayCmd is `moe gateway`: the scoring gateway alone, as one of several
// replicas in a Kubernetes cluster. Routes come from the shared PostgreSQL
// store (read only), instance addresses from the EndpointSlices of the model
// Services the Kubernetes runner creates (ready endpoints only). Auth,
// traffic split, mirroring, limits and metrics are those of `moe serve`'s
// gateway: the same gateway.Server and the same route builder.
type gatewayCmd struct {
	logOut        *logfile.Buffered
	app           *app
	gatewayAddr   string
	adminAddr     string
	region        string
	domain        string
	storeURL      string
	masterKeyFile string
	tokenKeys     string
	logFormat     string
	logLevel      string
	tlsCert       string
	tlsKey        string
	oidc          oidc.Config
	oidcClaim     string
	otlp          string
	kubeconfig    string
	namespace     string
	shutdownDelay time.Duration
	resync        time.Duration
	peersService  string
	pprof         bool
	peersNS       string

	dir      string
	logger   *slog.Logger
	box      *auth.Box
	signer   *gatewaySigner
	verifier *oidc.Verifier
	ca       *pki.Authority
	tracing  *tracing.Provider
	slices   *routesource.Slices
	peers    *routesource.Peers
	store    store.Store
	follower *routesource.Follower
	gw       *gateway.Server
	adminSrv *http.Server
	gwLn     net.Listener
	adminLn  net.Listener
	draining atomic.Bool // set on shutdown: the admin /-/ready fails
}

func newGatewayCmd(a *app) *cobra.Command {
	g := &gatewayCmd{app: a}
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Run only the scoring gateway (a replica in a Kubernetes cluster: routes from the shared store, instances from EndpointSlices)",
		Long: `Run only the scoring gateway, as one of several replicas of a Kubernetes Deployment.

It reads endpoints and deployments from the shared PostgreSQL store (--store;
it never writes) and the ready pods of each deployment from the EndpointSlices
of the model Services in --k8s-namespace, and rebuilds its route table on every
change of either. If the store becomes unreachable it keeps serving the routes
it last read (instances still follow the EndpointSlices). /-/ready fails until
the first route table is built and while shutting down.

It needs the control plane's master key (MOE_MASTER_KEY or --master-key-file)
to open key endpoints' keys and the token signing key set, which it reads from
the store (sealed; or from --token-keys, a folder holding token-keys.json) to
verify aml_tokens; --oidc-* as moe serve for aad_token endpoints.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return g.run(cmd.Context()) },
	}
	f := cmd.Flags()
	f.StringVar(&g.gatewayAddr, "gateway-addr", "127.0.0.1:8443", "scoring gateway listen address (HTTPS)")
	f.StringVar(&g.adminAddr, "admin-addr", "127.0.0.1:9464", "admin listener, plain HTTP: /metrics (Prometheus), /-/healthz and /-/ready (empty disables it)")
	f.BoolVar(&g.pprof, "pprof", false, "also serve the Go profiler (/debug/pprof/) on the admin listener; keep that listener private")
	f.StringVar(&g.region, "region", envOr("MOE_REGION", "local"), "region label of scoring hosts: <endpoint>.<region>.inference.<domain> (env MOE_REGION)")
	f.StringVar(&g.domain, "domain", envOr("MOE_DOMAIN", "localhost"), "domain of scoring hosts (env MOE_DOMAIN)")
	f.StringVar(&g.storeURL, "store", os.Getenv("MOE_STORE"), "the control plane's PostgreSQL store, postgres://... (env MOE_STORE); read only")
	f.StringVar(&g.masterKeyFile, "master-key-file", "", "file with the control plane's master key, which opens endpoint keys (default <data-dir>/master.key; env MOE_MASTER_KEY wins)")
	f.StringVar(&g.tokenKeys, "token-keys", "", "folder holding a token signing key set (token-keys.json, mode 0600 or 0400) to verify aml_tokens with, instead of the control plane's set in the store; re-read when a token names a key it does not hold")
	f.StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	f.StringVar(&g.tlsCert, "tls-cert", "", "serve this certificate (PEM) instead of a generated one; reloaded when it changes")
	f.StringVar(&g.tlsKey, "tls-key", "", "private key (PEM) for --tls-cert")
	addOIDCFlags(f, &g.oidc, &g.oidcClaim)
	f.StringVar(&g.otlp, "otlp-endpoint", os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"), "export spans of scoring requests to this OTLP/HTTP collector (env OTEL_EXPORTER_OTLP_ENDPOINT); empty: no tracing")
	f.StringVar(&g.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file (env KUBECONFIG); empty: the pod's service account (in-cluster)")
	f.StringVar(&g.namespace, "k8s-namespace", envOr("MOE_K8S_NAMESPACE", "moe-models"), "namespace of the model pods and their EndpointSlices (env MOE_K8S_NAMESPACE)")
	f.DurationVar(&g.shutdownDelay, "shutdown-delay", 5*time.Second, "on SIGTERM, keep serving this long with /-/ready failing, so load balancers stop sending traffic first")
	f.StringVar(&g.peersService, "peers-service", os.Getenv("MOE_GATEWAY_SERVICE"), "the gateway replicas' own Service (env MOE_GATEWAY_SERVICE): its ready endpoints are counted and each replica enforces its share of every limit (max_requests_per_second, max_concurrent_requests_per_instance); empty: this replica enforces the whole limits")
	f.StringVar(&g.peersNS, "peers-namespace", "", "namespace of --peers-service (default $POD_NAMESPACE, else the pod's own namespace)")
	f.DurationVar(&g.resync, "resync", 30*time.Second, "rebuild the route table this often even without a change notification")
	return cmd
}

func (g *gatewayCmd) run(ctx context.Context) (err error) {
	tuneGC()
	defer func() {
		if cerr := g.close(); err == nil {
			err = cerr
		}
	}()
	for _, step := range []func() error{g.initLogger, g.initSecrets, g.initPKI, g.initOIDC, g.initTracing, g.initSlices, g.initStore, g.initSigner, g.initGateway, g.initListeners} {
		if err := step(); err != nil {
			return err
		}
	}
	return g.serve(ctx)
}

func (g *gatewayCmd) initLogger() (err error) {
	g.logOut = logfile.NewBuffered(g.app.stderr, 100*time.Millisecond) // no write(2) per access line
	g.logger, err = newLogger(g.logOut, g.logFormat, g.logLevel)
	g.dir = g.app.dir()
	return err
}

func (g *gatewayCmd) initSecrets() (err error) {
	file := g.masterKeyFile
	if file == "" {
		file = filepath.Join(g.dir, "master.key")
	}
	// never create one: a new master key opens no endpoint's keys
	if g.box, err = openMasterKey(file, false); err != nil {
		return err
	}
	return nil
}

// initSigner sets up aml_token verification with the control plane's key
// set: from the store (sealed with the master key; the default), or from
// the --token-keys folder. It never creates keys.
func (g *gatewayCmd) initSigner() error {
	g.signer = &gatewaySigner{log: g.logger.With("component", "auth")}
	if dir := g.tokenKeys; dir != "" {
		g.signer.where = "--token-keys " + dir
		g.signer.open = func(context.Context) (*auth.Signer, error) {
			if _, err := os.Stat(filepath.Join(dir, auth.KeySetFile)); err != nil {
				return nil, err // OpenSigner would create a new set no token was signed with
			}
			return auth.OpenSigner(dir)
		}
	} else {
		g.signer.where, g.signer.stored = "the store", true
		keys := auth.StoredKeySet(g.store, g.box)
		g.signer.open = func(ctx context.Context) (*auth.Signer, error) { return auth.LoadSigner(ctx, keys) }
	}
	if err := g.signer.reload(); err != nil {
		g.logger.Warn("no token signing keys: aml_token endpoints answer 401 until they appear", "token_keys", g.signer.where, "err", err)
	}
	return nil
}

func (g *gatewayCmd) initPKI() error {
	hosts := []string{"localhost", "127.0.0.1", "::1", "*." + g.region + ".inference." + g.domain}
	if h, _, err := net.SplitHostPort(g.gatewayAddr); err == nil && h != "" && h != "0.0.0.0" && h != "::" {
		hosts = append(hosts, h)
	}
	var err error
	if g.ca, err = pki.Open(filepath.Join(g.dir, "pki"), hosts); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	g.ca.Logger = g.logger.With("component", "pki")
	if g.tlsCert != "" || g.tlsKey != "" {
		if err := g.ca.UseFiles(g.tlsCert, g.tlsKey); err != nil {
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
	}
	return nil
}

func (g *gatewayCmd) initOIDC() (err error) {
	g.verifier, err = openOIDC(g.oidc, g.oidcClaim, g.logger)
	return err
}

func (g *gatewayCmd) initTracing() (err error) {
	if g.otlp != "" {
		g.tracing, err = openTracing(g.otlp, g.logger)
	}
	return err
}

func (g *gatewayCmd) initSlices() error {
	var cfg *rest.Config
	var err error
	if g.kubeconfig == "" {
		if cfg, err = rest.InClusterConfig(); err != nil {
			return &usageError{msg: fmt.Sprintf("not running in a Kubernetes pod (%v)", err), hint: "--kubeconfig ~/.kube/config"}
		}
	} else if cfg, err = clientcmd.BuildConfigFromFlags("", g.kubeconfig); err != nil {
		return fmt.Errorf("--kubeconfig: %w", err)
	}
	cfg.UserAgent = "moe-gateway"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	if g.slices, err = routesource.NewSlices(client, g.namespace, 0, g.logger.With("component", "slices")); err != nil {
		return err
	}
	stop := make(chan struct{})
	t := time.AfterFunc(60*time.Second, func() { close(stop) })
	defer t.Stop()
	if !g.slices.WaitForSync(stop) {
		return fmt.Errorf("EndpointSlices in namespace %s: not listed within 60s (is the API server reachable, and may this service account list and watch endpointslices there?)", g.namespace)
	}
	if g.peersService == "" {
		return nil
	}
	ns := g.peersNS
	if ns == "" {
		ns = os.Getenv("POD_NAMESPACE")
	}
	if ns == "" {
		b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
		if err != nil {
			return &usageError{msg: "--peers-service needs the gateway's namespace", hint: "--peers-namespace moe-system"}
		}
		ns = strings.TrimSpace(string(b))
	}
	if g.peers, err = routesource.NewPeers(client, ns, g.peersService, g.logger.With("component", "peers")); err != nil {
		return err
	}
	if !g.peers.WaitForSync(stop) {
		return fmt.Errorf("EndpointSlices of Service %s/%s (--peers-service): not listed within 60s (may this service account list and watch endpointslices in %s?)", ns, g.peersService, ns)
	}
	return nil
}

// initStore opens the shared store, retrying for a minute while it is
// unreachable (the database may start together with the gateway).
func (g *gatewayCmd) initStore() error {
	if !strings.HasPrefix(g.storeURL, "postgres://") && !strings.HasPrefix(g.storeURL, "postgresql://") {
		return &usageError{msg: "--store must be the control plane's postgres:// URL (replicas share the store)", hint: "--store postgres://moe@db:5432/moe"}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		s, err := postgres.Open(ctx, g.storeURL)
		cancel()
		if err == nil {
			g.store = s
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		g.logger.Warn("cannot open the store yet; retrying", "err", err)
		time.Sleep(2 * time.Second)
	}
}

func (g *gatewayCmd) initGateway() error {
	var tracer trace.Tracer // nil: off
	if g.tracing != nil {
		tracer = g.tracing.Tracer()
	}
	g.follower = &routesource.Follower{
		Store:     g.store,
		Instances: g.slices.Instances,
		Changes:   g.slices.Changes(),
		Keys:      (&api.Server{Box: g.box}).OpenKeys,
		Resync:    g.resync,
		Logger:    g.logger.With("component", "routes"),
	}
	if g.peers != nil {
		g.follower.Share, g.follower.ShareChanges = g.peers.Count, g.peers.Changes()
	}
	registry := newMetricsRegistry()
	var gw *gateway.Server // set below; the metrics funcs run only on a scrape
	m, err := metrics.New(registry, metrics.Config{
		Routes:    g.follower.Routes,
		Instances: g.slices.Instances,
		Queued:    func(endpoint, deployment string) int64 { return gw.Queued(endpoint, deployment) },
		Mirror:    func(endpoint string) (sent, dropped, failed uint64) { return gw.MirrorStats(endpoint) },
	})
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	gw = gateway.New(gateway.Config{
		Region: g.region, Domain: g.domain, Logger: g.logger.With("component", "gateway"),
		Observer: m.Observe, Tracer: tracer, ShutdownDelay: g.shutdownDelay,
		VerifyToken: verifyToken(g.signer.Verify, g.verifier, "moe gateway"),
		Ready:       g.follower.Ready,
	})
	g.gw = gw
	g.follower.OnRoutes = gw.SetRoutes
	g.adminSrv = newAdminServer(registry, g.logger, func() error {
		if err := g.follower.Ready(); err != nil {
			return err
		}
		if g.draining.Load() {
			return errors.New("shutting down")
		}
		return nil
	}, g.pprof)
	return nil
}

func (g *gatewayCmd) initListeners() (err error) {
	if g.gwLn, err = net.Listen("tcp", g.gatewayAddr); err != nil {
		return fmt.Errorf("gateway listener: %w", err)
	}
	if g.adminAddr != "" {
		if g.adminLn, err = net.Listen("tcp", g.adminAddr); err != nil {
			return fmt.Errorf("admin listener: %w", err)
		}
	}
	return nil
}

func (g *gatewayCmd) serve(ctx context.Context) error {
	eg, gctx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		if err := g.gw.Serve(g.gwLn, g.ca.ServerTLSConfig()); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("gateway: %w", err)
		}
		return nil
	})
	if g.adminLn != nil {
		eg.Go(func() error {
			if err := g.adminSrv.Serve(g.adminLn); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("admin: %w", err)
			}
			return nil
		})
	}
	eg.Go(func() error { return g.follower.Run(gctx) })
	if g.tokenKeys == "" {
		eg.Go(func() error { g.signer.follow(gctx, g.store); return nil })
	}
	eg.Go(func() error { return g.ca.Run(gctx) })
	if g.verifier != nil {
		eg.Go(func() error { return g.verifier.Run(gctx) })
	}
	eg.Go(func() error {
		<-gctx.Done()
		g.draining.Store(true)
		g.logger.Info("shutting down: /-/ready fails now; draining requests", "delay", g.shutdownDelay)
		sctx, cancel := context.WithTimeout(context.Background(), g.shutdownDelay+30*time.Second)
		defer cancel()
		g.gw.Shutdown(sctx)
		g.adminSrv.Shutdown(sctx)
		return nil
	})
	attrs := []any{"gateway", "https://" + g.gwLn.Addr().String(), "namespace", g.namespace,
		"scoring_uri_example", g.gw.ScoringURI("my-endpoint", g.gwLn.Addr().(*net.TCPAddr).Port)}
	if g.adminLn != nil {
		attrs = append(attrs, "admin", "http://"+g.adminLn.Addr().String())
	}
	g.logger.Info("moe gateway is serving", attrs...)
	return eg.Wait()
}

func (g *gatewayCmd) close() error {
	if g.slices != nil {
		g.slices.Close()
	}
	if g.peers != nil {
		g.peers.Close()
	}
	var err error
	if g.store != nil {
		err = g.store.Close()
	}
	if g.tracing != nil {
		closeTracing(g.tracing, g.logger)
	}
	if g.logOut != nil {
		g.logOut.Close()
	}
	return err
}

// gatewaySigner verifies aml_tokens with the control plane's key set, read
// from the store (or a --token-keys folder) and never created here. After
// a store change, and when a token names a key the set does not hold (at
// most every few seconds), it reads the set again, so a rotation on the
// control plane (`moe token-signing-key rotate`) needs no gateway restart.
type gatewaySigner struct {
	open   func(context.Context) (*auth.Signer, error)
	where  string // for messages: "the store" or "--token-keys DIR"
	stored bool   // the key set is in the store: Reload re-reads it in place
	log    *slog.Logger

	s      atomic.Pointer[auth.Signer]
	mu     sync.Mutex
	lastAt time.Time
}

const gatewaySignerReloadEvery = 5 * time.Second

// reload reads the key set if it exists.
func (r *gatewaySigner) reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastAt = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if s := r.s.Load(); s != nil && r.stored {
		return s.Reload(ctx) // one read when the set did not change
	}
	s, err := r.open(ctx)
	if err != nil {
		return err
	}
	r.s.Store(s)
	return nil
}

// follow reloads the key set after every change of the store.
func (r *gatewaySigner) follow(ctx context.Context, st store.Store) {
	onStoreChange(ctx, st, func() {
		if err := r.reload(); err != nil && ctx.Err() == nil && !errors.Is(err, fs.ErrNotExist) {
			r.log.Warn("re-read token signing keys", "from", r.where, "err", err)
		}
	})
}

func (r *gatewaySigner) Verify(token, endpoint string, now time.Time) error {
	s := r.s.Load()
	if s != nil {
		err := s.Verify(token, endpoint, now)
		if !errors.Is(err, auth.ErrUnknownKey) {
			return err
		}
	}
	r.mu.Lock()
	due := time.Since(r.lastAt) >= gatewaySignerReloadEvery
	r.mu.Unlock()
	if due {
		if err := r.reload(); err != nil {
			r.log.Warn("re-read token signing keys", "from", r.where, "err", err)
		}
	}
	if s = r.s.Load(); s == nil {
		return fmt.Errorf("verify token: %w: this gateway has no token signing keys (from %s)", auth.ErrUnknownKey, r.where)
	}
	return s.Verify(token, endpoint, now)
}
