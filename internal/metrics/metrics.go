package metrics

import (
	"maps"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moe-serving/moe/internal/gateway"
	"github.com/moe-serving/moe/internal/reconcile"
)

// Config says where the figures read at scrape time come from. Every field
// is optional: a nil func leaves its metrics out. The funcs are called on
// the scraping goroutine, concurrently with each other and with Observe.
type Config struct {
	// Routes returns the gateway's current route table
	// (reconcile.Reconciler.Routes); nil until the first table is built. It
	// gives requests in flight per deployment, zero rows for
	// deployments without instances, and lets Metrics forget the request
	// series of endpoints and deployments that no longer exist.
	Routes func() *gateway.Table
	// Queued returns how many requests wait in the gateway's queue for a
	// slot on the deployment's instances (moe_requests_queued, left out
	// while nil). Names are as in the route table.
	Queued func(endpoint, deployment string) int64
	// Instances lists the runner's instances (reconcile.Runner.Instances).
	Instances func() []reconcile.Instance
	// Usage reports the instances' CPU and memory (local.Runner.Usage).
	Usage func() []Usage
	// Mirror reports an endpoint's shadow copies as running totals: sent
	// (the shadow answered 2xx), dropped (never reached it) and failed
	// (reached it, got an error) — gateway.Server.MirrorStats. It is asked
	// for the endpoints of Routes' table.
	Mirror func(endpoint string) (sent, dropped, failed uint64)
}

// Usage is one instance's resource use (host process and workers), as the
// runner measures it; see local.Usage, which has the same fields.
type Usage struct {
	Instance, Endpoint, Deployment string
	// CPUSeconds is cumulative user + system CPU time.
	CPUSeconds float64
	// ResidentBytes is resident memory (VmRSS summed over processes).
	ResidentBytes int64
	// Processes counts host + workers; 0 when the host is not running.
	Processes int
	// CPULimitCores and MemoryLimitBytes are the instance type's size (0
	// when unknown), the denominators of Azure's utilisation percentages.
	CPULimitCores    float64
	MemoryLimitBytes int64
}

// Label names and fixed label values.
const (
	labelEndpoint   = "endpoint"
	labelDeployment = "deployment"
	labelInstance   = "instance"
	labelCode       = "code"
	labelModelCode  = "model_code"
	labelPhase      = "phase"
	labelReason     = "reason"
	labelState      = "state"

	phaseTotal    = "total"
	phaseOverhead = "overhead"
	phaseModel    = "model"

	// ReasonTimeout is the reason label of 408s: the deployment's
	// request_settings.request_timeout_ms ran out.
	ReasonTimeout = "request_timeout_ms"
	// reasonUnknownLimit labels a 429 whose Observation named no limit.
	reasonUnknownLimit = "unknown"
)

// LatencyBuckets are the upper bounds, in seconds, of the latency
// histograms: from 100 µs (gateway overhead) to 180 s (the longest request
// timeout Azure allows).
var LatencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 180}

// Metrics holds moe's Prometheus metrics. Build it with [New]; it is safe
// for concurrent use.
type Metrics struct {
	cfg Config

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	queue    *prometheus.HistogramVec
	rejected *prometheus.CounterVec
	mirrored *prometheus.CounterVec

	// series caches the children of one endpoint and deployment. Readers
	// load the map without locking; writers copy it under mu.
	series cowMap[seriesKey, *series]
}

// New builds the metrics and registers them with reg (a
// prometheus.NewRegistry() in `moe serve`; tests use their own). It fails
// only if reg already holds metrics of the same names.
func New(reg prometheus.Registerer, cfg Config) (*Metrics, error) {
	ed := []string{labelEndpoint, labelDeployment}
	m := &Metrics{
		cfg: cfg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moe_requests_total",
			Help: "Scoring requests answered by the gateway, by status code sent to the client and status code of the model (empty when no instance answered). Shadow copies are not counted (see moe_mirror_responses_total).",
		}, []string{labelEndpoint, labelDeployment, labelCode, labelModelCode}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "moe_request_duration_seconds",
			Help:    "Scoring request latency by phase: total (as the gateway saw it), overhead (gateway + queue = total - model) and model (host + run(), only for requests sent to an instance).",
			Buckets: LatencyBuckets,
		}, append(ed, labelPhase)),
		queue: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "moe_request_queue_seconds",
			Help:    "Time scoring requests waited for an instance slot (part of overhead).",
			Buckets: LatencyBuckets,
		}, ed),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moe_requests_rejected_total",
			Help: "Scoring requests refused by the gateway: 429 by the limit that was full, 408 when request_timeout_ms ran out (reason=\"request_timeout_ms\").",
		}, append(ed, labelReason)),
		mirrored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "moe_mirror_responses_total",
			Help: "Shadow copies of scoring requests answered by a mirror deployment, by status code.",
		}, append(ed, labelCode)),
	}
	// one collector for all, so that series of deleted deployments are
	// forgotten before the vectors are collected, in the same scrape
	if err := reg.Register((*collector)(m)); err != nil {
		return nil, err
	}
	return m, nil
}

// Observe records one finished scoring request. It is the gateway's
// Config.Observer: it runs synchronously on the request's goroutine, does
// not keep o, and allocates only the first time it sees an endpoint,
// deployment, status pair or limit.
func (m *Metrics) Observe(o *gateway.Observation) {
	s := m.seriesOf(o.Endpoint, o.Deployment)
	s.requests.Add(1)
	if o.ModelStatus >= 500 {
		s.modelErrors.Add(1)
	}
	reachedModel := o.Model > 0 || o.ModelStatus != 0
	if reachedModel {
		s.record(o.Model)
	}
	timeout := o.Status == 408 && o.ModelStatus == 0 // a model's own 408 is not a timeout
	switch {
	case o.Status == 429:
		s.rejected429.Add(1)
	case timeout:
		s.timeouts.Add(1)
	}
	if o.Mirrored {
		s.mirrorCounter(o.Status).Inc()
		return
	}
	s.codeCounter(o.Status, o.ModelStatus).Inc()
	s.total.Observe(o.Total.Seconds())
	s.overhead.Observe(o.Overhead().Seconds())
	if reachedModel && s.model != nil { // nil: no deployment, refused before routing
		s.model.Observe(o.Model.Seconds())
	}
	if s.queue != nil && (o.Instance != "" || o.Queue > 0) {
		s.queue.Observe(o.Queue.Seconds())
	}
	switch {
	case o.Status == 429:
		limit := o.Limit
		if limit == "" {
			limit = reasonUnknownLimit
		}
		s.rejectedCounter(limit).Inc()
	case timeout:
		s.rejectedCounter(ReasonTimeout).Inc()
	}
}

type seriesKey struct{ endpoint, deployment string }

// series is the resolved children and diagnose counters of one endpoint and
// deployment (deployment "" for requests refused before one was picked).
type series struct {
	m                             *Metrics
	key                           seriesKey
	total, overhead, model, queue prometheus.Observer

	codes    codeList
	rejects  cowMap[string, prometheus.Counter]
	mirrorBy cowMap[int, prometheus.Counter]

	// for Counters (client requests and shadow copies alike)
	requests, timeouts, rejected429, modelErrors atomic.Int64
	models                                       modelRing
}

type codeKey struct{ status, model int }

func (m *Metrics) seriesOf(endpoint, deployment string) *series {
	k := seriesKey{endpoint, deployment}
	if s, ok := m.series.load(k); ok {
		return s
	}
	return m.series.loadOrStore(k, func() *series {
		s := &series{
			m: m, key: k,
			total:    m.duration.WithLabelValues(endpoint, deployment, phaseTotal),
			overhead: m.duration.WithLabelValues(endpoint, deployment, phaseOverhead),
		}
		if deployment != "" { // without one, no instance: no model or queue time
			s.model = m.duration.WithLabelValues(endpoint, deployment, phaseModel)
			s.queue = m.queue.WithLabelValues(endpoint, deployment)
		}
		return s
	})
}

func (s *series) codeCounter(status, model int) prometheus.Counter {
	k := codeKey{status, model}
	if c := s.codes.load(k); c != nil {
		return c
	}
	s.codes.mu.Lock()
	defer s.codes.mu.Unlock()
	if c := s.codes.load(k); c != nil {
		return c
	}
	mc := ""
	if model != 0 {
		mc = strconv.Itoa(model)
	}
	c := s.m.requests.WithLabelValues(s.key.endpoint, s.key.deployment, strconv.Itoa(status), mc)
	var old []codeEntry
	if p := s.codes.p.Load(); p != nil {
		old = *p
	}
	n := append(old[:len(old):len(old)], codeEntry{k, c})
	s.codes.p.Store(&n)
	return c
}

// codeList is a copy-on-write list of a deployment's status pairs: a
// deployment sees a handful, and scanning a few pairs of ints beats hashing.
type codeList struct {
	p  atomic.Pointer[[]codeEntry]
	mu sync.Mutex
}

type codeEntry struct {
	k codeKey
	c prometheus.Counter
}

func (l *codeList) load(k codeKey) prometheus.Counter {
	if p := l.p.Load(); p != nil {
		for i := range *p {
			if (*p)[i].k == k {
				return (*p)[i].c
			}
		}
	}
	return nil
}

func (s *series) rejectedCounter(reason string) prometheus.Counter {
	if c, ok := s.rejects.load(reason); ok {
		return c
	}
	return s.rejects.loadOrStore(reason, func() prometheus.Counter {
		return s.m.rejected.WithLabelValues(s.key.endpoint, s.key.deployment, reason)
	})
}

func (s *series) mirrorCounter(status int) prometheus.Counter {
	if c, ok := s.mirrorBy.load(status); ok {
		return c
	}
	return s.mirrorBy.loadOrStore(status, func() prometheus.Counter {
		return s.m.mirrored.WithLabelValues(s.key.endpoint, s.key.deployment, strconv.Itoa(status))
	})
}

// forget drops the series of endpoints and deployments that t no longer
// routes (deleted ones), from the cache and from the exported metrics. A
// request still in flight to one of them recreates its series; counters
// that reappear start from zero, which rate() and increase() handle.
func (m *Metrics) forget(t *gateway.Table) {
	cur := m.series.snapshot()
	var gone []seriesKey
	for k := range cur {
		if !routed(t, k) {
			gone = append(gone, k)
		}
	}
	if len(gone) == 0 {
		return
	}
	m.series.deleteKeys(gone)
	for _, k := range gone {
		l := prometheus.Labels{labelEndpoint: k.endpoint, labelDeployment: k.deployment}
		m.requests.DeletePartialMatch(l)
		m.duration.DeletePartialMatch(l)
		m.queue.DeletePartialMatch(l)
		m.rejected.DeletePartialMatch(l)
		m.mirrored.DeletePartialMatch(l)
	}
}

// cowMap is a copy-on-write map: load is a plain map read of an immutable
// snapshot (no lock, no allocation); stores copy the map under a mutex, so
// it suits keys that are added rarely and read on every request.
type cowMap[K comparable, V any] struct {
	p  atomic.Pointer[map[K]V]
	mu sync.Mutex
}

func (c *cowMap[K, V]) load(k K) (V, bool) {
	if m := c.p.Load(); m != nil {
		v, ok := (*m)[k]
		return v, ok
	}
	var zero V
	return zero, false
}

// loadOrStore returns k's value, storing mk() first if k is absent.
func (c *cowMap[K, V]) loadOrStore(k K, mk func() V) V {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.snapshot()
	if v, ok := old[k]; ok {
		return v
	}
	n := make(map[K]V, len(old)+1)
	maps.Copy(n, old)
	v := mk()
	n[k] = v
	c.p.Store(&n)
	return v
}

// snapshot returns the current map, which callers must not modify.
func (c *cowMap[K, V]) snapshot() map[K]V {
	if m := c.p.Load(); m != nil {
		return *m
	}
	return nil
}

func (c *cowMap[K, V]) deleteKeys(ks []K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := maps.Clone(c.snapshot())
	for _, k := range ks {
		delete(n, k)
	}
	c.p.Store(&n)
}
