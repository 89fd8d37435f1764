package metrics

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/moe-serving/moe/internal/api"
	"github.com/moe-serving/moe/internal/gateway"
	"github.com/moe-serving/moe/internal/reconcile"
)

func newMetrics(t testing.TB, cfg Config) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := New(reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

// script is a mix of what the gateway reports: answers, auth failures,
// model errors (424 with model status 500), timeouts, 429s, shadow copies.
func script() []gateway.Observation {
	ms := time.Millisecond
	ok := gateway.Observation{Endpoint: "ep", Deployment: "blue", Instance: "blue-0", Status: 200, ModelStatus: 200, Total: 12 * ms, Model: 10 * ms}
	var obs []gateway.Observation
	for range 5 {
		obs = append(obs, ok)
	}
	obs = append(obs,
		gateway.Observation{Endpoint: "ep", Status: 401, Total: ms / 10},
		gateway.Observation{Endpoint: "ep", Status: 401, Total: ms / 10},
		gateway.Observation{Status: 404, Total: ms / 10},
		gateway.Observation{Endpoint: "ep", Deployment: "blue", Instance: "blue-0", Status: 424, ModelStatus: 500, Total: 30 * ms, Model: 29 * ms},
		gateway.Observation{Endpoint: "ep", Deployment: "blue", Instance: "blue-0", Status: 408, Total: 100 * ms, Model: 99 * ms},
		gateway.Observation{Endpoint: "ep", Deployment: "blue", Instance: "blue-0", Status: 429, Limit: "max_concurrent_requests_per_instance", Total: 2 * ms, Queue: ms},
		gateway.Observation{Endpoint: "ep", Deployment: "blue", Status: 429, Total: ms},
		gateway.Observation{Endpoint: "ep", Deployment: "green", Instance: "green-0", Status: 200, ModelStatus: 200, Total: 3 * ms, Model: 2 * ms, Mirrored: true},
		gateway.Observation{Endpoint: "ep", Deployment: "green", Instance: "green-0", Status: 408, Total: 300 * ms, Model: 299 * ms, Mirrored: true},
		// a model's own 408, passed through: not a gateway timeout
		gateway.Observation{Endpoint: "ep", Deployment: "blue", Instance: "blue-0", Status: 408, ModelStatus: 408, Total: 5 * ms, Model: 4 * ms},
	)
	return obs
}

func TestMetrics_Observe(t *testing.T) {
	m, reg := newMetrics(t, Config{})
	for _, o := range script() {
		m.Observe(&o)
	}
	want := `
# HELP moe_requests_total Scoring requests answered by the gateway, by status code sent to the client and status code of the model (empty when no instance answered). Shadow copies are not counted (see moe_mirror_responses_total).
# TYPE moe_requests_total counter
moe_requests_total{code="200",deployment="blue",endpoint="ep",model_code="200"} 5
moe_requests_total{code="401",deployment="",endpoint="ep",model_code=""} 2
moe_requests_total{code="404",deployment="",endpoint="",model_code=""} 1
moe_requests_total{code="408",deployment="blue",endpoint="ep",model_code=""} 1
moe_requests_total{code="408",deployment="blue",endpoint="ep",model_code="408"} 1
moe_requests_total{code="424",deployment="blue",endpoint="ep",model_code="500"} 1
moe_requests_total{code="429",deployment="blue",endpoint="ep",model_code=""} 2
# HELP moe_requests_rejected_total Scoring requests refused by the gateway: 429 by the limit that was full, 408 when request_timeout_ms ran out (reason="request_timeout_ms").
# TYPE moe_requests_rejected_total counter
moe_requests_rejected_total{deployment="blue",endpoint="ep",reason="max_concurrent_requests_per_instance"} 1
moe_requests_rejected_total{deployment="blue",endpoint="ep",reason="request_timeout_ms"} 1
moe_requests_rejected_total{deployment="blue",endpoint="ep",reason="unknown"} 1
# HELP moe_mirror_responses_total Shadow copies of scoring requests answered by a mirror deployment, by status code.
# TYPE moe_mirror_responses_total counter
moe_mirror_responses_total{code="200",deployment="green",endpoint="ep"} 1
moe_mirror_responses_total{code="408",deployment="green",endpoint="ep"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "moe_requests_total", "moe_requests_rejected_total", "moe_mirror_responses_total"); err != nil {
		t.Error(err)
	}

	// histogram sample counts per phase
	counts := histogramCounts(t, reg, "moe_request_duration_seconds")
	for k, want := range map[string]uint64{
		"ep/blue/total": 10, "ep/blue/overhead": 10, "ep/blue/model": 8, // 5 ok, 424, 408, passed-through 408
		"ep//total": 2, "ep//overhead": 2, "//total": 1,
	} {
		if got := counts[k]; got != want {
			t.Errorf("moe_request_duration_seconds %s count = %d, want %d (all: %v)", k, got, want, counts)
		}
	}
	if _, ok := counts["ep//model"]; ok {
		t.Error("requests refused before a deployment was picked have a model-time series")
	}
	if counts["ep/green/total"] != 0 {
		t.Error("shadow copies must not count as client latency")
	}
	q := histogramCounts(t, reg, "moe_request_queue_seconds")
	if q["ep/blue"] != 9 { // 8 sent to the instance + the 429 that waited
		t.Errorf("queue observations = %v, want ep/blue 9", q)
	}
}

// histogramCounts returns sample counts by "endpoint/deployment[/phase]".
func histogramCounts(t *testing.T, reg *prometheus.Registry, name string) map[string]uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range mt.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			k := l["endpoint"] + "/" + l["deployment"]
			if p, ok := l["phase"]; ok {
				k += "/" + p
			}
			out[k] = mt.GetHistogram().GetSampleCount()
		}
	}
	return out
}

func TestMetrics_Counters(t *testing.T) {
	m, _ := newMetrics(t, Config{})
	for _, o := range script() {
		m.Observe(&o)
	}
	// 100 more requests with model times 1..100 ms: p99 over all kept
	// times is then 99 ms
	for i := 1; i <= 100; i++ {
		m.Observe(&gateway.Observation{Endpoint: "ep", Deployment: "blue", Instance: "blue-0", Status: 200, ModelStatus: 200, Model: time.Duration(i) * time.Millisecond, Total: time.Duration(i+1) * time.Millisecond})
	}
	got := m.Counters("ep", "blue")
	want := api.Counters{Requests: 110, Timeouts408: 1, Rejected429: 2, ModelErrors: 1, ModelP99MS: 99}
	if got != want {
		t.Errorf("Counters(ep, blue) = %+v, want %+v", got, want)
	}
	if got, want := m.Counters("ep", "green"), (api.Counters{Requests: 2, Timeouts408: 1, ModelP99MS: 299}); got != want {
		t.Errorf("Counters(ep, green) = %+v, want the shadow copies counted: %+v", got, want)
	}
	if got := m.Counters("ep", "nope"); got != (api.Counters{}) {
		t.Errorf("Counters of an unseen deployment = %+v, want zero", got)
	}
}

func TestModelRing_Wraps(t *testing.T) {
	var s series
	for range ringSize * 3 {
		s.record(time.Second)
	}
	for range ringSize / 2 {
		s.record(time.Millisecond)
	}
	// half the ring is 1 s: p99 is 1 s
	if got := s.models.p99(); got != time.Second {
		t.Errorf("p99 = %v, want 1s", got)
	}
}

func routeTable() *gateway.Table {
	b0, b1 := &gateway.Instance{ID: "blue-0"}, &gateway.Instance{ID: "blue-1"}
	b0.Outstanding.Store(3)
	b1.Outstanding.Store(1)
	return &gateway.Table{Endpoints: map[string]*gateway.Endpoint{
		"ep": {Name: "ep", Deployments: map[string]*gateway.Deployment{
			"blue":  {Name: "blue", MaxConcurrentPerInstance: 2, Instances: []*gateway.Instance{b0, b1}},
			"green": {Name: "green", MaxConcurrentPerInstance: 1},
		}},
	}}
}

func TestMetrics_ScrapeTime(t *testing.T) {
	table := routeTable()
	_, reg := newMetrics(t, Config{
		Routes: func() *gateway.Table { return table },
		Queued: func(endpoint, deployment string) int64 {
			if endpoint == "ep" && deployment == "blue" {
				return 5
			}
			return 0
		},
		Instances: func() []reconcile.Instance {
			return []reconcile.Instance{
				{ID: "blue-0", Endpoint: "ep", Deployment: "blue", Phase: reconcile.PhaseReady, Restarts: 2},
				{ID: "blue-1", Endpoint: "ep", Deployment: "blue", Phase: reconcile.PhaseReady},
				{ID: "blue-2", Endpoint: "ep", Deployment: "blue", Phase: reconcile.PhaseStarting},
			}
		},
		Usage: func() []Usage {
			return []Usage{
				{Instance: "blue-0", Endpoint: "ep", Deployment: "blue", CPUSeconds: 12.5, ResidentBytes: 300 << 20, Processes: 3, CPULimitCores: 4, MemoryLimitBytes: 14 << 30},
				{Instance: "blue-2", Endpoint: "ep", Deployment: "blue", CPULimitCores: 4, MemoryLimitBytes: 14 << 30},
			}
		},
		Mirror: func(endpoint string) (sent, dropped, failed uint64) {
			if endpoint == "ep" {
				return 10, 2, 1
			}
			return 0, 0, 0
		},
	})
	want := `
# HELP moe_requests_in_flight Scoring requests running on the deployment's instances (holding one of their max_concurrent_requests_per_instance slots).
# TYPE moe_requests_in_flight gauge
moe_requests_in_flight{deployment="blue",endpoint="ep"} 4
moe_requests_in_flight{deployment="green",endpoint="ep"} 0
# HELP moe_requests_queued Scoring requests waiting in the gateway for a free instance slot.
# TYPE moe_requests_queued gauge
moe_requests_queued{deployment="blue",endpoint="ep"} 5
moe_requests_queued{deployment="green",endpoint="ep"} 0
# HELP moe_instances Instances of the deployment: state="ready" serve traffic, state="total" counts every instance (starting, failed and stopping too).
# TYPE moe_instances gauge
moe_instances{deployment="blue",endpoint="ep",state="ready"} 2
moe_instances{deployment="blue",endpoint="ep",state="total"} 3
moe_instances{deployment="green",endpoint="ep",state="ready"} 0
moe_instances{deployment="green",endpoint="ep",state="total"} 0
# HELP moe_instance_phase 1 for each instance, labelled with its phase (Starting, Ready, Failed, Stopping).
# TYPE moe_instance_phase gauge
moe_instance_phase{deployment="blue",endpoint="ep",instance="blue-0",phase="Ready"} 1
moe_instance_phase{deployment="blue",endpoint="ep",instance="blue-1",phase="Ready"} 1
moe_instance_phase{deployment="blue",endpoint="ep",instance="blue-2",phase="Starting"} 1
# HELP moe_instance_restarts_total Times the instance's model host was restarted after it exited or failed its liveness probe.
# TYPE moe_instance_restarts_total counter
moe_instance_restarts_total{deployment="blue",endpoint="ep",instance="blue-0"} 2
moe_instance_restarts_total{deployment="blue",endpoint="ep",instance="blue-1"} 0
moe_instance_restarts_total{deployment="blue",endpoint="ep",instance="blue-2"} 0
# HELP moe_instance_cpu_seconds_total User + system CPU time of the instance's host process and Python workers.
# TYPE moe_instance_cpu_seconds_total counter
moe_instance_cpu_seconds_total{deployment="blue",endpoint="ep",instance="blue-0"} 12.5
# HELP moe_instance_resident_memory_bytes Resident memory of the instance's host process and Python workers (VmRSS, summed).
# TYPE moe_instance_resident_memory_bytes gauge
moe_instance_resident_memory_bytes{deployment="blue",endpoint="ep",instance="blue-0"} 3.145728e+08
# HELP moe_instance_processes Live processes of the instance (host + workers).
# TYPE moe_instance_processes gauge
moe_instance_processes{deployment="blue",endpoint="ep",instance="blue-0"} 3
moe_instance_processes{deployment="blue",endpoint="ep",instance="blue-2"} 0
# HELP moe_instance_cpu_limit_cores vCPUs of the instance's instance_type (enforced with cgroups where available).
# TYPE moe_instance_cpu_limit_cores gauge
moe_instance_cpu_limit_cores{deployment="blue",endpoint="ep",instance="blue-0"} 4
moe_instance_cpu_limit_cores{deployment="blue",endpoint="ep",instance="blue-2"} 4
# HELP moe_instance_memory_limit_bytes Memory of the instance's instance_type (enforced with cgroups where available).
# TYPE moe_instance_memory_limit_bytes gauge
moe_instance_memory_limit_bytes{deployment="blue",endpoint="ep",instance="blue-0"} 1.5032385536e+10
moe_instance_memory_limit_bytes{deployment="blue",endpoint="ep",instance="blue-2"} 1.5032385536e+10
# HELP moe_mirror_sent_total Shadow copies of the endpoint's requests that the mirror deployment answered with 2xx.
# TYPE moe_mirror_sent_total counter
moe_mirror_sent_total{endpoint="ep"} 10
# HELP moe_mirror_dropped_total Shadow copies that never reached the mirror deployment (body too large, mirror queue full, shadow at its pending limit or without a ready instance).
# TYPE moe_mirror_dropped_total counter
moe_mirror_dropped_total{endpoint="ep"} 2
# HELP moe_mirror_failed_total Shadow copies that reached the mirror deployment and got an error, a non-2xx answer or its request timeout.
# TYPE moe_mirror_failed_total counter
moe_mirror_failed_total{endpoint="ep"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"moe_requests_in_flight", "moe_requests_queued", "moe_instances", "moe_instance_phase", "moe_instance_restarts_total",
		"moe_instance_cpu_seconds_total", "moe_instance_resident_memory_bytes", "moe_instance_processes",
		"moe_instance_cpu_limit_cores", "moe_instance_memory_limit_bytes", "moe_mirror_sent_total", "moe_mirror_dropped_total", "moe_mirror_failed_total"); err != nil {
		t.Error(err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestMetrics_ForgetsDeletedDeployments(t *testing.T) {
	table := routeTable()
	m, reg := newMetrics(t, Config{Routes: func() *gateway.Table { return table }})
	for _, o := range []gateway.Observation{
		{Endpoint: "ep", Deployment: "blue", Instance: "blue-0", Status: 200, ModelStatus: 200},
		{Endpoint: "ep", Deployment: "old", Instance: "old-0", Status: 200, ModelStatus: 200},
		{Endpoint: "gone", Status: 401},
		{Status: 404},
	} {
		m.Observe(&o)
	}
	want := `
# HELP moe_requests_total Scoring requests answered by the gateway, by status code sent to the client and status code of the model (empty when no instance answered). Shadow copies are not counted (see moe_mirror_responses_total).
# TYPE moe_requests_total counter
moe_requests_total{code="200",deployment="blue",endpoint="ep",model_code="200"} 1
moe_requests_total{code="404",deployment="",endpoint="",model_code=""} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "moe_requests_total"); err != nil {
		t.Error(err)
	}
	if m.Counters("ep", "old").Requests != 0 {
		t.Error("a deleted deployment's counters survived")
	}
	// it comes back (from zero) when traffic reaches it again
	m.Observe(&gateway.Observation{Endpoint: "ep", Deployment: "blue", Instance: "blue-0", Status: 200, ModelStatus: 200})
	if got := testutil.ToFloat64(m.requests.WithLabelValues("ep", "blue", "200", "200")); got != 2 {
		t.Errorf("blue 200s = %v, want 2", got)
	}
}

func TestMetrics_ObserveConcurrent(t *testing.T) {
	m, _ := newMetrics(t, Config{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				dep := []string{"a", "b", "c"}[(g+i)%3]
				m.Observe(&gateway.Observation{Endpoint: "ep", Deployment: dep, Instance: dep + "-0", Status: 200 + i%2*224, ModelStatus: 200 + i%2*300, Model: time.Millisecond, Total: 2 * time.Millisecond})
			}
		})
	}
	wg.Wait()
	var total float64
	for _, dep := range []string{"a", "b", "c"} {
		total += testutil.ToFloat64(m.requests.WithLabelValues("ep", dep, "200", "200"))
		total += testutil.ToFloat64(m.requests.WithLabelValues("ep", dep, "424", "500"))
		if c := m.Counters("ep", dep); c.ModelErrors == 0 || c.ModelP99MS != 1 {
			t.Errorf("Counters(ep, %s) = %+v", dep, c)
		}
	}
	if total != 8000 {
		t.Errorf("counted %v requests, want 8000", total)
	}
}

func TestMetrics_ObserveDoesNotAllocate(t *testing.T) {
	m, _ := newMetrics(t, Config{})
	obs := script()
	for _, o := range obs {
		m.Observe(&o) // first sight of each label set allocates
	}
	allocs := testing.AllocsPerRun(1000, func() {
		for i := range obs {
			m.Observe(&obs[i])
		}
	})
	if allocs != 0 {
		t.Errorf("Observe allocates %v times per %d requests, want 0", allocs, len(obs))
	}
}

func TestNew_RegistersOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(reg, Config{}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(reg, Config{}); err == nil {
		t.Error("registering twice in one registry succeeded")
	}
}

func BenchmarkObserve(b *testing.B) {
	m, _ := newMetrics(b, Config{})
	o := gateway.Observation{Endpoint: "ep", Deployment: "blue", Instance: "blue-0", Status: 200, ModelStatus: 200, Total: 12 * time.Millisecond, Model: 10 * time.Millisecond}
	m.Observe(&o)
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.Observe(&o)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			o := o
			for pb.Next() {
				m.Observe(&o)
			}
		})
	})
}
