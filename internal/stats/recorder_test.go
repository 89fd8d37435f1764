package stats

import (
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a fake clock safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *clock) now() time.Time        { return time.Unix(0, c.ns.Load()) }
func (c *clock) add(d time.Duration)   { c.ns.Add(int64(d)) }
func (c *clock) set(t time.Time)       { c.ns.Store(t.UnixNano()) }
func ms(f float64) time.Duration       { return time.Duration(f * float64(time.Millisecond)) }
func near(got, want, rel float64) bool { return math.Abs(got-want) <= rel*want }
func at(sec int64) time.Time           { return time.Unix(sec, 0) }
func sum(ps []Point) (n uint64) {
	for _, p := range ps {
		n += p.Requests
	}
	return n
}

// t0 is aligned to 10 s and 60 s so step boundaries are easy to reason about.
var t0 = at(1_700_000_040)

func TestBucketOf(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want int
	}{
		{0, 0},
		{minBound - 1, 0},
		{minBound, 1},
		{2 * minBound, 4}, // three buckets per doubling
		{4*minBound - 1, 6},
		{4 * minBound, 7},
		{time.Hour, numBuckets - 1},
		{-time.Second, 0},
	}
	for _, tt := range tests {
		if got := bucketOf(tt.d); got != tt.want {
			t.Errorf("bucketOf(%v) = %d, want %d", tt.d, got, tt.want)
		}
	}
	for i := 1; i < len(bounds); i++ {
		if r := float64(bounds[i]) / float64(bounds[i-1]); !near(r, math.Cbrt(2), 1e-6) {
			t.Fatalf("bounds[%d]/bounds[%d] = %v, want 2^(1/3)", i, i-1, r)
		}
	}
	if top := time.Duration(bounds[len(bounds)-1]); top < 200*time.Second {
		t.Errorf("largest bound %v; want at least 200s (longest request timeouts)", top)
	}
}

func TestQuantile(t *testing.T) {
	tests := []struct {
		name    string
		samples []time.Duration
		q       float64
		wantMs  float64
	}{
		{"one value", []time.Duration{ms(10)}, 0.5, 10},
		{"uniform 1..100 ms p50", ramp(1, 100), 0.5, 50},
		{"uniform 1..100 ms p90", ramp(1, 100), 0.9, 90},
		{"uniform 1..100 ms p99", ramp(1, 100), 0.99, 99},
		{"two modes p50 in the low one", append(repeat(ms(2), 60), repeat(ms(400), 40)...), 0.5, 2},
		{"two modes p90 in the high one", append(repeat(ms(2), 60), repeat(ms(400), 40)...), 0.9, 400},
		{"beyond the last bound", []time.Duration{time.Hour}, 0.5, float64(bounds[len(bounds)-1]) / 1e6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h histogram
			for _, d := range tt.samples {
				h.add(d)
			}
			got := quantile(h[:], tt.q, uint64(len(tt.samples)))
			if !near(got, tt.wantMs, 0.13) {
				t.Errorf("quantile(%v) = %.3f ms, want %.3f ms ± 13 %%", tt.q, got, tt.wantMs)
			}
		})
	}
	var h histogram
	if got := quantile(h[:], 0.5, 0); got != 0 {
		t.Errorf("empty histogram: %v, want 0", got)
	}
}

func ramp(from, to int) []time.Duration {
	var out []time.Duration
	for i := from; i <= to; i++ {
		out = append(out, ms(float64(i)))
	}
	return out
}

func repeat(d time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

type rec struct {
	at         time.Time
	ep, dep    string
	status     int
	total, mdl time.Duration
}

func TestRecorder_Series(t *testing.T) {
	tests := []struct {
		name        string
		records     []rec
		now         time.Time
		since, step time.Duration
		check       func(t *testing.T, s Series)
	}{
		{
			name: "counts by class and exact status, rates per second",
			records: []rec{
				{t0, "fraud", "blue", 200, ms(10), ms(8)},
				{t0, "fraud", "blue", 200, ms(10), ms(8)},
				{t0.Add(3 * time.Second), "fraud", "blue", 429, ms(1), 0},
				{t0.Add(4 * time.Second), "fraud", "blue", 500, ms(30), ms(29)},
				{t0.Add(5 * time.Second), "fraud", "blue", 401, ms(1), 0},
			},
			now: t0.Add(10 * time.Second), since: 10 * time.Second, step: 10 * time.Second,
			check: func(t *testing.T, s Series) {
				if len(s.Deployments) != 1 || len(s.Deployments[0].Points) != 1 {
					t.Fatalf("want one deployment with one point: %+v", s)
				}
				p := s.Deployments[0].Points[0]
				if !p.Time.Equal(t0) || p.Seconds != 10 || p.Requests != 5 {
					t.Errorf("point %v %ds %d requests, want %v 10s 5", p.Time, p.Seconds, p.Requests, t0)
				}
				if p.RPS != 0.5 || p.OK != 0.2 || p.ClientErrors != 0.2 || p.ServerErrors != 0.1 {
					t.Errorf("rates rps=%v ok=%v 4xx=%v 5xx=%v, want 0.5 0.2 0.2 0.1", p.RPS, p.OK, p.ClientErrors, p.ServerErrors)
				}
				want := map[string]uint64{"200": 2, "401": 1, "429": 1, "500": 1}
				if len(p.Status) != len(want) {
					t.Errorf("status %v, want %v", p.Status, want)
				}
				for k, v := range want {
					if p.Status[k] != v {
						t.Errorf("status[%s] = %d, want %d", k, p.Status[k], v)
					}
				}
				if s.All.Requests != 5 || s.Deployments[0].Requests != 5 {
					t.Errorf("totals all=%d blue=%d, want 5", s.All.Requests, s.Deployments[0].Requests)
				}
			},
		},
		{
			name: "overhead is total minus model; requests that never reached a model stay out of model percentiles",
			records: append(
				recs(t0, "ep", "blue", 200, ms(50), ms(40), 100),
				recs(t0, "ep", "blue", 429, ms(2), 0, 100)...),
			now: t0.Add(time.Minute), since: time.Minute, step: time.Minute,
			check: func(t *testing.T, s Series) {
				p := s.Deployments[0].Points[0]
				if p.Model == nil || !near(p.Model.P50, 40, 0.13) || !near(p.Model.P99, 40, 0.13) {
					t.Errorf("model %+v, want all ≈ 40 ms (the 429s must not count)", p.Model)
				}
				if p.Overhead == nil || !near(p.Overhead.P50, 2, 0.13) || !near(p.Overhead.P90, 10, 0.13) {
					t.Errorf("overhead %+v, want p50 ≈ 2 ms, p90 ≈ 10 ms", p.Overhead)
				}
				if p.Total == nil || !near(p.Total.P50, 2, 0.13) || !near(p.Total.P99, 50, 0.13) {
					t.Errorf("total %+v, want p50 ≈ 2 ms, p99 ≈ 50 ms", p.Total)
				}
			},
		},
		{
			name:    "model time longer than total counts as zero overhead",
			records: []rec{{t0, "ep", "blue", 200, ms(5), ms(6)}},
			now:     t0.Add(time.Second), since: time.Second, step: time.Second,
			check: func(t *testing.T, s Series) {
				if o := s.Deployments[0].Points[0].Overhead; o == nil || o.P99 > minBound.Seconds()*1e3 {
					t.Errorf("overhead %+v, want ≈ 0", o)
				}
			},
		},
		{
			name:    "empty points have no percentiles",
			records: []rec{{t0, "ep", "blue", 200, ms(5), ms(4)}},
			now:     t0.Add(30 * time.Second), since: 30 * time.Second, step: 10 * time.Second,
			check: func(t *testing.T, s Series) {
				ps := s.Deployments[0].Points
				if len(ps) != 3 || ps[0].Total == nil || ps[1].Total != nil || ps[1].Model != nil || ps[2].Requests != 0 {
					t.Errorf("points %+v, want data only in the first of three", ps)
				}
			},
		},
		{
			name: "the current second is left out until it is complete",
			records: []rec{
				{t0, "ep", "blue", 200, ms(1), ms(1)},
				{t0.Add(1500 * time.Millisecond), "ep", "blue", 200, ms(1), ms(1)},
			},
			now: t0.Add(1500 * time.Millisecond), since: 10 * time.Second, step: time.Second,
			check: func(t *testing.T, s Series) {
				if got := s.All.Requests; got != 1 {
					t.Errorf("%d requests, want 1 (the one in the current second is not done)", got)
				}
				if !s.End.Equal(t0.Add(time.Second)) {
					t.Errorf("end %v, want %v", s.End, t0.Add(time.Second))
				}
			},
		},
		{
			name:    "points align to the step and the last one is partial",
			records: []rec{{t0.Add(12 * time.Second), "ep", "blue", 200, ms(1), ms(1)}},
			now:     t0.Add(15 * time.Second), since: 30 * time.Second, step: 10 * time.Second,
			check: func(t *testing.T, s Series) {
				ps := s.Deployments[0].Points
				if len(ps) != 3 {
					t.Fatalf("%d points, want 3", len(ps))
				}
				if !ps[0].Time.Equal(t0.Add(-10*time.Second)) || !ps[2].Time.Equal(t0.Add(10*time.Second)) {
					t.Errorf("times %v .. %v, want %v .. %v", ps[0].Time, ps[2].Time, t0.Add(-10*time.Second), t0.Add(10*time.Second))
				}
				if ps[2].Seconds != 5 || ps[2].RPS != 0.2 {
					t.Errorf("last point %ds rps %v, want 5s and 0.2/s", ps[2].Seconds, ps[2].RPS)
				}
			},
		},
		{
			name: "history older than the window is gone",
			records: []rec{
				{t0, "ep", "blue", 200, ms(1), ms(1)},
				{t0.Add(time.Hour), "ep", "blue", 500, ms(1), ms(1)}, // same ring slot
			},
			now: t0.Add(time.Hour + time.Second), since: 2 * time.Hour, step: time.Minute,
			check: func(t *testing.T, s Series) {
				if s.All.Requests != 1 {
					t.Errorf("%d requests, want only the newest", s.All.Requests)
				}
				if n := len(s.All.Points); n != 60 {
					t.Errorf("%d points, want since clamped to the 1h window: 60", n)
				}
			},
		},
		{
			name: "endpoints are separate and deployments sorted; All merges them",
			records: []rec{
				{t0, "a", "green", 200, ms(100), ms(90)},
				{t0, "a", "blue", 200, ms(1), ms(1)},
				{t0, "a", "blue", 200, ms(1), ms(1)},
				{t0, "b", "blue", 200, ms(1), ms(1)},
				{t0, "a", "", 401, ms(1), 0},
			},
			now: t0.Add(time.Second), since: time.Second, step: time.Second,
			check: func(t *testing.T, s Series) {
				var names []string
				for _, d := range s.Deployments {
					names = append(names, d.Deployment)
				}
				if strings.Join(names, ",") != ",blue,green" {
					t.Errorf("deployments %q, want \"\", blue, green", names)
				}
				p := s.All.Points[0]
				if p.Requests != 4 || p.Status["200"] != 3 || p.Status["401"] != 1 {
					t.Errorf("all %+v, want 4 requests of endpoint a only", p)
				}
				if p.Model == nil || !near(p.Model.P99, 90, 0.26) || !near(p.Model.P50, 1, 0.13) {
					t.Errorf("merged model percentiles %+v, want p50 ≈ 1, p99 ≈ 90", p.Model)
				}
			},
		},
		{
			name:    "unknown endpoint answers empty points, not null",
			records: nil,
			now:     t0, since: time.Minute, step: 10 * time.Second,
			check: func(t *testing.T, s Series) {
				if s.Deployments == nil || len(s.Deployments) != 0 || len(s.All.Points) != 6 {
					t.Errorf("got %+v, want no deployments and 6 empty points", s)
				}
			},
		},
		{
			name: "more than eight distinct statuses in a second count as other",
			records: func() []rec {
				var rs []rec
				for c := 400; c < 410; c++ {
					rs = append(rs, rec{t0, "ep", "blue", c, ms(1), 0})
				}
				return append(rs, rec{t0, "ep", "blue", 42, ms(1), 0})
			}(),
			now: t0.Add(time.Second), since: time.Second, step: time.Second,
			check: func(t *testing.T, s Series) {
				p := s.All.Points[0]
				if p.Status["other"] != 3 || p.Status["400"] != 1 || p.Status["407"] != 1 || p.Requests != 11 || p.ClientErrors != 10 {
					t.Errorf("status %v (4xx/s %v), want 8 kept, 3 other, 10 4xx", p.Status, p.ClientErrors)
				}
			},
		},
		{
			name:    "step is rounded to whole seconds and widened past 3600 points",
			records: nil,
			now:     t0, since: time.Hour, step: 100 * time.Millisecond,
			check: func(t *testing.T, s Series) {
				if s.Step != 1 || len(s.All.Points) != 3600 {
					t.Errorf("step %v, %d points; want 1s and 3600", s.Step, len(s.All.Points))
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock(t0)
			r := New(time.Hour, c.now)
			for _, rc := range tt.records {
				c.set(rc.at)
				r.Record(rc.ep, rc.dep, rc.status, rc.total, rc.mdl)
			}
			c.set(tt.now)
			ep := "ep"
			if len(tt.records) > 0 {
				ep = tt.records[0].ep
			}
			s := r.Series(ep, tt.since, tt.step)
			if s.Endpoint != ep {
				t.Errorf("endpoint %q, want %q", s.Endpoint, ep)
			}
			tt.check(t, s)
		})
	}
}

func recs(at time.Time, ep, dep string, status int, total, model time.Duration, n int) []rec {
	out := make([]rec, n)
	for i := range out {
		out[i] = rec{at, ep, dep, status, total, model}
	}
	return out
}

func TestRecorder_PrunesIdleDeployments(t *testing.T) {
	c := newClock(t0)
	r := New(time.Minute, c.now)
	r.Record("ep", "old", 200, ms(1), ms(1))
	c.add(30 * time.Second)
	r.Record("ep", "new", 200, ms(1), ms(1))
	c.add(45 * time.Second)
	s := r.Series("ep", 0, time.Second)
	if len(s.Deployments) != 1 || s.Deployments[0].Deployment != "new" {
		t.Errorf("deployments %+v, want only new (old recorded nothing for longer than the window)", s.Deployments)
	}
	if n := len(*r.series.Load()); n != 1 {
		t.Errorf("%d series kept, want 1", n)
	}
}

func TestRecorder_Concurrent(t *testing.T) {
	c := newClock(t0)
	r := New(time.Hour, c.now)
	const workers, each = 8, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			dep := []string{"blue", "green"}[w%2]
			for i := range each {
				if i%500 == 0 {
					c.add(time.Second)
				}
				r.Record("ep", dep, 200+100*(i%4), ms(float64(i%50)), ms(float64(i%40)))
			}
		})
	}
	wg.Go(func() { // readers race the writers
		for range 20 {
			r.Series("ep", time.Hour, 10*time.Second)
		}
	})
	wg.Wait()
	c.add(time.Second)
	s := r.Series("ep", time.Hour, 10*time.Second)
	if got := s.All.Requests; got != workers*each {
		t.Errorf("%d requests, want %d", got, workers*each)
	}
	if got := sum(s.Deployments[0].Points) + sum(s.Deployments[1].Points); got != workers*each {
		t.Errorf("%d requests over deployments, want %d", got, workers*each)
	}
}

func TestRecorder_RecordDoesNotAllocate(t *testing.T) {
	r := New(time.Hour, nil)
	r.Record("ep", "blue", 200, ms(3), ms(2)) // the first request allocates the ring
	if n := testing.AllocsPerRun(1000, func() { r.Record("ep", "blue", 200, ms(3), ms(2)) }); n != 0 {
		t.Errorf("Record allocates %v times per call, want 0", n)
	}
}

func BenchmarkRecorder_Record(b *testing.B) {
	r := New(time.Hour, nil)
	statuses := []int{200, 200, 200, 429, 500}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			r.Record("fraud", "blue", statuses[i%len(statuses)], ms(12), ms(9))
			i++
		}
	})
}

func TestHandler(t *testing.T) {
	c := newClock(t0)
	r := New(time.Hour, c.now)
	r.Record("fraud", "blue", 200, ms(20), ms(15))
	c.add(5 * time.Second)
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()

	tests := []struct {
		name, query string
		method      string
		status      int
		wantBody    string
	}{
		{"series as JSON", "?endpoint=fraud&since=1m&step=10s", "GET", 200, `"deployment":"blue"`},
		{"defaults to 1h in 10s steps", "?endpoint=fraud", "GET", 200, `"step_seconds":10`},
		{"endpoint is required", "", "GET", 400, "endpoint is required"},
		{"bad since", "?endpoint=fraud&since=yesterday", "GET", 400, `since: \"yesterday\" is not a duration`},
		{"negative step", "?endpoint=fraud&step=-1s", "GET", 400, "must be positive"},
		{"only GET", "?endpoint=fraud", "POST", 405, "MethodNotAllowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), tt.method, srv.URL+"/v1/stats"+tt.query, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var raw json.RawMessage
			if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if resp.StatusCode != tt.status || !strings.Contains(string(raw), tt.wantBody) {
				t.Errorf("%d %s, want %d containing %s", resp.StatusCode, raw, tt.status, tt.wantBody)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
		})
	}

	var s Series
	resp, err := http.Get(srv.URL + "/v1/stats?endpoint=fraud&since=10s&step=10s")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	if s.All.Requests != 1 || s.Deployments[0].Points[0].Model == nil || !near(s.Deployments[0].Points[0].Model.P50, 15, 0.13) {
		t.Errorf("decoded %+v, want one request with model p50 ≈ 15 ms", s)
	}
}
