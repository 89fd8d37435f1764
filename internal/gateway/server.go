package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Config configures a [Server]. The zero value works: a gateway for
// <endpoint>.local.inference.localhost with the defaults stated per field.
type Config struct {
	// Region is the second DNS label of scoring hosts. Default "local".
	Region string
	// Domain is what follows "inference." in scoring hosts: endpoints are
	// <endpoint>.<Region>.inference.<Domain>. Default "localhost".
	Domain string
	// MaxBodyBytes bounds a request body; larger ones get 413. Default
	// 100 MiB (the Azure inference image's nginx client_max_body_size).
	MaxBodyBytes int64
	// Logger receives one access line per scoring request (Info) and
	// failures. Default slog.Default().
	Logger *slog.Logger
	// VerifyToken, if set, checks a bearer token for an aml_token or
	// aad_token endpoint; a non-nil error means 401. Nil means such
	// endpoints reject every request with 401. It is called concurrently.
	VerifyToken func(endpoint, authMode, token string) error
	// Transport carries requests to instances. Default: moe's instance
	// client (client.go), which sends requests with small bodies on the
	// request's goroutine over pooled keep-alive connections, and an
	// *http.Transport for streamed bodies and shadow copies, tuned for many
	// keep-alive connections to few hosts, HTTP/1.1 only, no proxy, no
	// transparent compression (bodies pass through as bytes).
	Transport http.RoundTripper

	// ReadHeaderTimeout bounds reading a request's headers, from the end
	// of the TLS handshake (which it bounds too); a client that sends them
	// slowly (slowloris) is disconnected when it passes. Default 10 s.
	ReadHeaderTimeout time.Duration
	// MaxHeaderBytes bounds the request line and headers together; larger
	// requests get 431 (net/http allows 4 KiB of slack over it). Default
	// 64 KiB.
	MaxHeaderBytes int
	// ReadTimeout bounds reading a whole request, body included. Default
	// 5 min. There is no write timeout: the deployment's request timeout
	// bounds each answer.
	ReadTimeout time.Duration
	// IdleTimeout bounds a keep-alive connection between requests. Default
	// 2 min.
	IdleTimeout time.Duration
	// Observer, if set, receives every finished scoring request (see
	// Observation). It is called synchronously on the request's goroutine.
	Observer func(*Observation)
	// MirrorWorkers is how many shadow copies (Endpoint.Mirror) are sent
	// at once, and MirrorQueue how many more wait for a worker; a copy
	// that finds the queue full is dropped and counted (MirrorStats), so
	// a slow shadow never slows live traffic. The workers start with the
	// first copy and stop on Shutdown. Defaults 8 and 64.
	MirrorWorkers, MirrorQueue int
	// MirrorMaxBodyBytes bounds the body of a mirrored request, which the
	// gateway keeps in memory for the copy while the live request streams
	// it; requests with larger bodies are not mirrored (counted as
	// dropped). At most (MirrorWorkers + MirrorQueue) bodies are held.
	// Default 1 MiB.
	MirrorMaxBodyBytes int64
	// ShutdownDelay is how long Shutdown keeps serving, with /-/ready
	// failing, before it closes the listeners, so that load balancers stop
	// sending traffic first. Zero means no delay, right for a single local
	// gateway; behind a load balancer use a few seconds.
	ShutdownDelay time.Duration
	// Tracer, if set, traces scoring requests: a server span "score" per
	// request, child of the caller's W3C traceparent, and a client span
	// "upstream" per call to an instance, whose id the instance gets as its
	// traceparent (see trace.go). Nil turns tracing off at no cost: no
	// spans, and the caller's traceparent and tracestate are forwarded
	// unchanged. It must be safe for concurrent use (OpenTelemetry tracers
	// are).
	Tracer trace.Tracer
	// Ready, if set, is asked by /-/ready: a non-nil error fails it (503,
	// with the error's text), e.g. while a standalone gateway has not
	// loaded its first route table. Nil: ready until Shutdown.
	Ready func() error
}

const (
	defaultRegion            = "local"
	defaultDomain            = "localhost"
	defaultMaxBodyBytes      = 100 << 20
	defaultReadHeaderTimeout = 10 * time.Second
	defaultReadTimeout       = 5 * time.Minute
	defaultIdleTimeout       = 2 * time.Minute
	defaultMaxHeaderBytes    = 64 << 10
	defaultMirrorWorkers     = 8
	defaultMirrorQueue       = 64
	defaultMirrorMaxBody     = 1 << 20
)

func (c *Config) setDefaults() {
	c.Region = strings.ToLower(cmpOr(c.Region, defaultRegion))
	c.Domain = strings.ToLower(strings.TrimSuffix(cmpOr(c.Domain, defaultDomain), "."))
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = defaultMaxBodyBytes
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ReadHeaderTimeout <= 0 {
		c.ReadHeaderTimeout = defaultReadHeaderTimeout
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = defaultReadTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = defaultIdleTimeout
	}
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = defaultMaxHeaderBytes
	}
	if c.MirrorWorkers <= 0 {
		c.MirrorWorkers = defaultMirrorWorkers
	}
	if c.MirrorQueue <= 0 {
		c.MirrorQueue = defaultMirrorQueue
	}
	if c.MirrorMaxBodyBytes <= 0 {
		c.MirrorMaxBodyBytes = defaultMirrorMaxBody
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Server is the gateway. Create it with [New], give it routes with
// [Server.SetRoutes], and serve with [Server.Serve] (or embed
// [Server.Handler]). All methods are safe for concurrent use.
type Server struct {
	cfg  Config
	log  *slog.Logger
	host string // ".<region>.inference.<domain>", lower case

	rt       atomic.Pointer[routing] // the route table and its states
	setMu    sync.Mutex              // serializes SetRoutes
	epoch    time.Time               // origin of the rate buckets' clock
	arrivals atomic.Uint64           // orders queued requests
	draining atomic.Bool             // set by Shutdown: /-/ready fails
	mirror   *mirrorPool

	errTooLarge *statusError
	steps       []func(*exchange) error
	proxy       *httputil.ReverseProxy
	handler     http.Handler
	transport   *http.Transport // the default transport, if ours; closed on Shutdown
	client      *instanceClient // the default instance client (its fallback is transport)
	srv         *http.Server
}

// New returns a gateway with an empty route table (every request is a 404
// until [Server.SetRoutes]).
func New(cfg Config) *Server {
	cfg.setDefaults()
	s := &Server{
		cfg:         cfg,
		log:         cfg.Logger.With("component", "gateway"),
		host:        "." + cfg.Region + ".inference." + cfg.Domain,
		errTooLarge: errBodyTooLarge(cfg.MaxBodyBytes),
		epoch:       time.Now(),
	}
	s.rt.Store(newRouting(&Table{}, nil))
	proxyTransport := cfg.Transport
	if cfg.Transport == nil {
		s.transport = newTransport()
		s.client = newInstanceClient(s.transport)
		cfg.Transport, proxyTransport = s.transport, s.client
	}
	s.mirror = newMirrorPool(s, cfg.Transport)
	errLog := slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	s.proxy = &httputil.ReverseProxy{
		Rewrite:        s.rewrite,
		Transport:      retryTransport{base: proxyTransport},
		BufferPool:     bufferPool{},
		ModifyResponse: s.modifyResponse,
		ErrorHandler:   s.proxyError,
		ErrorLog:       errLog,
	}
	s.steps = s.chain()
	s.handler = http.HandlerFunc(s.serveHTTP)
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          errLog,
	}
	return s
}

// SetRoutes replaces the route table atomically; requests already sent to
// an instance finish on the table they started with, and requests waiting
// in a queue re-pick from t. The gateway does not modify t (apart from the
// instances' Outstanding counters), and neither may the caller after
// handing it over. A nil t routes nothing.
//
// Queues, pending counts, rate buckets and mirror counters belong to
// endpoint and deployment names, not to t: they carry over to the next
// table that has the same names. Instance slots belong to *Instance values,
// so keep the same pointers for the same instances (BuildRoutes does).
func (s *Server) SetRoutes(t *Table) {
	if t == nil {
		t = &Table{}
	}
	s.setMu.Lock()
	defer s.setMu.Unlock()
	old := s.rt.Load()
	s.rt.Store(newRouting(t, old))
	// Waiters look at the new table now. Those that joined a queue after
	// this see the new table when they check it (see waitLoop).
	for _, st := range old.byName {
		st.wakeAll()
	}
}

// Handler returns the gateway's whole request path (the same handler Serve
// uses), for tests and for embedding in another server. It does not enforce
// TLS; Serve does.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve accepts HTTPS connections on l until Shutdown and returns
// http.ErrServerClosed then. tlsConfig must carry the certificate
// (Certificates or GetCertificate); Serve uses a copy with TLS 1.2 as the
// minimum and, when NextProtos is empty, offers h2 and http/1.1. Serve may be
// called for several listeners at once.
func (s *Server) Serve(l net.Listener, tlsConfig *tls.Config) error {
	if tlsConfig == nil {
		return errors.New("gateway: serve: a TLS config is required (the gateway speaks HTTPS only)")
	}
	c := tlsConfig.Clone()
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	if len(c.NextProtos) == 0 {
		c.NextProtos = []string{"h2", "http/1.1"}
	}
	// http.Server sets up HTTP/2 for TLS listeners it did not wrap itself
	// (its TLSConfig stays nil for that reason).
	return s.srv.Serve(tls.NewListener(l, c))
}

// Shutdown stops the gateway in two phases: /-/ready starts failing at
// once, and after Config.ShutdownDelay (cut short if ctx ends) the listeners
// close and Shutdown waits, until ctx ends, for requests in flight, as
// [http.Server.Shutdown] does. It then closes idle connections to instances.
// It returns ctx's error if requests were still running when ctx ended.
// Shadow copies still queued or on their way are abandoned, and the mirror
// workers have stopped when Shutdown returns.
// Hijacked connections are not tracked (the gateway does not hijack).
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	if d := s.cfg.ShutdownDelay; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	err := s.srv.Shutdown(ctx)
	s.mirror.close()
	if s.client != nil {
		s.client.CloseIdleConnections() // the transport's too
	}
	return err
}

// ScoringURI returns an endpoint's scoring URI as clients see it:
// https://<endpoint>.<region>.inference.<domain>[:port]/score, without the
// port when it is 443 (or not positive).
func (s *Server) ScoringURI(endpoint string, port int) string {
	u := "https://" + strings.ToLower(endpoint) + s.host
	if port > 0 && port != 443 {
		u += ":" + strconv.Itoa(port)
	}
	return u + "/score"
}

// serveOwn answers the gateway's own paths under /-/, which are never
// forwarded: /-/healthz (liveness) and /-/ready (fails once Shutdown began,
// and while Config.Ready fails).
func (s *Server) serveOwn(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/-/healthz":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	case "/-/ready":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if s.draining.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("shutting down\n"))
			return
		}
		if s.cfg.Ready != nil {
			if err := s.cfg.Ready(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte("not ready: " + err.Error() + "\n"))
				return
			}
		}
		_, _ = w.Write([]byte("ok\n"))
	default:
		x := &exchange{r: r, requestID: r.Header.Get(hdrRequestID)}
		x.w.ResponseWriter = w
		s.writeError(x, errOwnPath)
	}
}
