package gateway

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Canonical header keys, used directly on header maps to skip
// canonicalisation on the hot path.
const (
	hdrAuthorization   = "Authorization"
	hdrRequestID       = "X-Request-Id"
	hdrClientRequestID = "X-Ms-Client-Request-Id"
	hdrLegacyRequestID = "X-Ms-Request-Id"
	hdrModelDeployment = "Azureml-Model-Deployment"
	hdrErrorStatusCode = "Ms-Azureml-Model-Error-Statuscode"
	hdrErrorReason     = "Ms-Azureml-Model-Error-Reason"
	maxRequestIDLength = 100
	ownPathPrefix      = "/-/"
	accessLogMessage   = "score"
)

// slog keys, fixed across moe.
const (
	keyEndpoint   = "endpoint"
	keyDeployment = "deployment"
	keyInstance   = "instance"
	keyRequestID  = "request_id"
	keyStatus     = "status"
	keyDurationMS = "duration_ms"
	keyErr        = "err"
)

// chain returns the steps of the request path, in order. Each step reads
// and fills the exchange, or returns an error that writeError answers with;
// after the last step the request is forwarded (Server.forward).
//
//  1. request id: keep x-request-id or generate one, echo it (431 if > 100
//     characters); x-ms-client-request-id is checked the same way and
//     forwarded as is.
//  2. route: endpoint from the Host header or the /endpoints/<name>/ path
//     (404); /-/ paths never get here (serveHTTP answers them itself).
//  3. auth: key (constant time) or token (Config.VerifyToken) (401).
//  4. rate limit: the endpoint's MaxRequestsPerSecond, if set (429,
//     x-moe-limit: max_requests_per_second). After auth, so that
//     unauthenticated traffic does not spend the endpoint's budget.
//  5. body limit: Content-Length over the limit is 413 at once; bodies of
//     unknown length are cut by http.MaxBytesReader (413 when it trips).
//  6. deployment: azureml-model-deployment header, else weighted random
//     choice over the traffic table (404).
//  7. admission: the deployment's pending limit, 2 × max_concurrent ×
//     ready instances in flight and queued (429, x-moe-limit:
//     max_concurrent_requests_per_instance; 503 with no ready instance).
//  8. mirror: for requests routed by weight, sample the endpoint's mirror
//     share and start capturing the body for the shadow copy.
//
// forward then, under the deployment's request timeout measured from the
// request's arrival (408), reads a small body of known length into memory
// (body.go), takes a slot on the least loaded instance or waits in the
// deployment's queue for one (breaker.go), and sends the request through
// the reverse proxy and the instance client (client.go), which maps a
// model's non-2xx answer to 424 and an unreachable instance to 502; it gives
// the slot back and hands a mirrored request's copy to the mirror workers.
// serveHTTP wraps it all with one access log line, the Observation and, when
// Config.Tracer is set, the "score" and "upstream" spans (trace.go).
func (s *Server) chain() []func(*exchange) error {
	return []func(*exchange) error{
		s.requestID,
		s.route,
		s.authorize,
		s.limitRate,
		s.limitBody,
		s.pickDeployment,
		s.admit,
		s.sampleMirror,
	}
}

// exchange is the state of one scoring request, allocated once per request
// and carried to the proxy hooks through the request context: from forward
// on, the exchange is that context (it embeds the request's context and
// answers Value(exchangeKey{}) itself), which saves a context.WithValue.
type exchange struct {
	context.Context // set by forward: the request's context, with its deadline
	claim           // route, deployment, admission and instance slot

	w         statusWriter
	r         *http.Request
	start     time.Time
	requestID string
	path      string      // the path forwarded to the instance
	body      *limitBody  // non-nil when the body is cut by MaxBytesReader
	idHeader  []string    // x-request-id value, shared by response and upstream request
	idArr     [1]string   // backs idHeader when the gateway sets it
	depArr    [1]string   // backs the azureml-model-deployment header value
	tee       *teeBody    // captures the body of a mirrored request
	shadow    *Deployment // the mirror's deployment, when mirrored
	keep      keepOpen    // the upstream body, kept open for a dial retry
	pre       preBody     // the body, when read into memory (body.go)
	// for Observation
	sent        time.Time     // when the request went to the instance
	upstream    time.Duration // until the instance's answer headers
	queue       time.Duration // waiting for an instance slot
	modelStatus int
	limit       string
	// spans, nil unless Config.Tracer is set (trace.go)
	span, upSpan trace.Span
}

type exchangeKey struct{}

func exchangeFrom(ctx context.Context) *exchange {
	return ctx.Value(exchangeKey{}).(*exchange)
}

// Value makes the exchange the context that carries it.
func (x *exchange) Value(key any) any {
	if _, ok := key.(exchangeKey); ok {
		return x
	}
	return x.Context.Value(key)
}

func (x *exchange) endpointName() string {
	if x.endpoint == nil {
		return ""
	}
	return x.endpoint.Name
}

func (x *exchange) deploymentName() string {
	if x.deployment == nil {
		return ""
	}
	return x.deployment.Name
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, ownPathPrefix) {
		s.serveOwn(w, r)
		return
	}
	x := &exchange{r: r, start: time.Now()}
	x.w.ResponseWriter = w
	if s.cfg.Tracer != nil {
		s.startScoreSpan(x)
	}
	defer s.finish(x) // also runs when the proxy aborts with http.ErrAbortHandler
	for _, step := range s.steps {
		if err := step(x); err != nil {
			s.writeError(x, err)
			return
		}
	}
	s.forward(x)
}

// forward takes an instance slot (or waits for one) and sends the request
// to that instance, all under the deployment's request timeout, measured
// from the request's arrival. It runs only for admitted requests.
func (s *Server) forward(x *exchange) {
	defer x.unadmit()
	x.Context = x.r.Context()
	if d := x.deployment.RequestTimeout; d > 0 {
		var cancel context.CancelFunc
		x.Context, cancel = context.WithDeadlineCause(x.Context, x.start.Add(d), errDeadline)
		defer cancel()
	}
	var ctx context.Context = x
	d := x.deployment
	if err := preread(ctx, x); err != nil {
		s.writeError(x, err)
		return
	}
	defer s.releasePre(x) // after the proxy and mirrorCopy, also when the proxy aborts
	err := s.acquire(ctx, &x.claim)
	x.queue = x.queued
	if err != nil {
		s.writeError(x, err)
		return
	}
	// Deferred: the reverse proxy aborts with a panic (http.ErrAbortHandler)
	// when a stream breaks after the answer started.
	defer s.release(&x.claim)
	if x.deployment != d {
		// Re-picked from a new route table while queued.
		x.w.Header()[hdrModelDeployment] = []string{x.deployment.Name}
	}
	if x.span != nil {
		ctx = s.startUpstreamSpan(ctx, x)
		defer endUpstreamSpan(x) // deferred, as release
	}
	x.sent = time.Now()
	s.proxy.ServeHTTP(&x.w, x.r.WithContext(ctx))
	if x.upstream == 0 {
		x.upstream = time.Since(x.sent) // no answer: the time spent trying
	}
	if x.shadow != nil {
		s.mirrorCopy(x)
	}
}

func (s *Server) finish(x *exchange) {
	s.logAccess(x)
	s.observe(x)
	if x.span != nil {
		endScoreSpan(x)
	}
}

func (s *Server) logAccess(x *exchange) {
	ctx := x.r.Context()
	if !s.log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	var instance string
	if x.instance != nil {
		instance = x.instance.ID
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, accessLogMessage,
		slog.String(keyEndpoint, x.endpointName()),
		slog.String(keyDeployment, x.deploymentName()),
		slog.String(keyInstance, instance),
		slog.String(keyRequestID, x.requestID),
		slog.Int(keyStatus, x.w.status),
		slog.Float64(keyDurationMS, float64(time.Since(x.start).Microseconds())/1000))
}

// requestID is step 1.
func (s *Server) requestID(x *exchange) error {
	h := x.r.Header
	if v := h[hdrRequestID]; len(v) > 0 && v[0] != "" {
		if len(v[0]) > maxRequestIDLength {
			x.requestID = newRequestID()
			x.w.Header()[hdrRequestID] = []string{x.requestID}
			return errRequestIDTooLong
		}
		x.requestID = v[0]
		if len(v) == 1 {
			x.idHeader = v // read-only from here on
		}
	} else {
		x.requestID = newRequestID()
	}
	if x.idHeader == nil {
		x.idArr[0] = x.requestID
		x.idHeader = x.idArr[:]
	}
	x.w.Header()[hdrRequestID] = x.idHeader
	for _, k := range [...]string{hdrClientRequestID, hdrLegacyRequestID} {
		if v := h[k]; len(v) > 0 && len(v[0]) > maxRequestIDLength {
			return errClientRequestIDTooLong
		}
	}
	return nil
}

// route is step 2.
func (s *Server) route(x *exchange) error {
	p := x.r.URL.Path
	name, byHost := endpointFromHost(x.r.Host, s.host)
	if byHost {
		switch p {
		case "/score", "/swagger.json", "/":
			x.path = p
		default:
			return errNoRoute(p)
		}
	} else {
		var ok bool
		if name, x.path, ok = endpointFromPath(p); !ok {
			return errNoRoute(p)
		}
	}
	x.rt = s.rt.Load()
	x.epKey = strings.ToLower(name)
	ep := x.rt.table.Endpoints[x.epKey]
	if ep == nil {
		return errEndpointNotFound(name)
	}
	x.endpoint = ep
	return nil
}

// authorize is step 3. Both keys are always compared, so the time taken
// does not tell which one matched.
func (s *Server) authorize(x *exchange) error {
	token, ok := bearerToken(x.r.Header[hdrAuthorization])
	if !ok {
		return errMissingAuth
	}
	ep := x.endpoint
	switch ep.AuthMode {
	case "", "key":
		primary := ep.PrimaryKey.Equal(token)
		secondary := ep.SecondaryKey.Equal(token)
		if !primary && !secondary {
			return errBadCredentials
		}
	case "aml_token", "aad_token":
		if s.cfg.VerifyToken == nil {
			return &statusError{status: http.StatusUnauthorized, message: errBadCredentials.message,
				cause: errors.New("no token verifier configured")}
		}
		if err := s.cfg.VerifyToken(ep.Name, ep.AuthMode, token); err != nil {
			return &statusError{status: http.StatusUnauthorized, message: errBadCredentials.message, cause: err}
		}
	default:
		return &statusError{status: http.StatusUnauthorized, message: errBadCredentials.message,
			cause: errors.New("unknown auth mode " + ep.AuthMode)}
	}
	return nil
}

// bearerToken returns the token of a single "Bearer <token>" header value.
func bearerToken(v []string) (string, bool) {
	const scheme = "bearer "
	if len(v) != 1 || len(v[0]) <= len(scheme) || !strings.EqualFold(v[0][:len(scheme)], scheme) {
		return "", false
	}
	t := strings.TrimSpace(v[0][len(scheme):])
	return t, t != ""
}

// limitBody is step 5.
func (s *Server) limitBody(x *exchange) error {
	r := x.r
	if r.ContentLength > s.cfg.MaxBodyBytes {
		return s.errTooLarge
	}
	if r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody {
		x.body = &limitBody{rc: http.MaxBytesReader(x.w.ResponseWriter, r.Body, s.cfg.MaxBodyBytes)}
		r.Body = x.body
	}
	return nil
}

// limitBody notes that http.MaxBytesReader cut the body, which the proxy
// otherwise only sees as some transport error, possibly from another
// goroutine (the transport's body writer).
type limitBody struct {
	rc       io.ReadCloser
	exceeded atomic.Bool
}

func (b *limitBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			b.exceeded.Store(true)
		}
	}
	return n, err
}

func (b *limitBody) Close() error { return b.rc.Close() }

func (x *exchange) bodyTooLarge() bool { return x.body != nil && x.body.exceeded.Load() }

// pickDeployment is step 6. A deployment named in the header is served even
// at 0 % traffic; the header is forwarded unchanged.
func (s *Server) pickDeployment(x *exchange) error {
	ep := x.endpoint
	if v := x.r.Header[hdrModelDeployment]; len(v) > 0 && strings.TrimSpace(v[0]) != "" {
		name := strings.TrimSpace(v[0])
		x.depKey = strings.ToLower(name)
		d := ep.Deployments[x.depKey]
		if d == nil {
			return errDeploymentNotFound(ep.Name, name)
		}
		x.deployment = d
	} else {
		name, ok := pickWeighted(ep.Traffic)
		if !ok {
			return errNoPositiveWeight
		}
		x.weighted = true
		x.depKey = strings.ToLower(name)
		d := ep.Deployments[x.depKey]
		if d == nil {
			// The table names a deployment it does not describe:
			// nothing can serve it.
			return errNoReadyInstance(name)
		}
		x.deployment = d
	}
	x.depArr[0] = x.deployment.Name
	x.w.Header()[hdrModelDeployment] = x.depArr[:]
	return nil
}

// admit is step 7 (see claim.admit).
func (s *Server) admit(x *exchange) error { return x.claim.admit() }

// statusWriter records the status for the access log. Unwrap lets
// http.ResponseController (used by the reverse proxy to flush) reach the
// real writer.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
