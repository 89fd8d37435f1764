package gateway

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestEpState_Allow(t *testing.T) {
	var es epState
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	t0 := 5 * time.Second
	for i := range 10 {
		if !es.allow(t0, 10) {
			t.Fatalf("request %d of a burst of 10 at 10/s refused; want the bucket's second's worth to pass", i+1)
		}
	}
	if es.allow(t0, 10) {
		t.Error("11th request of the burst allowed; want refused")
	}
	if es.allow(t0+ms(50), 10) {
		t.Error("allowed 50ms later; want refused until 100ms (one token per 100ms)")
	}
	if !es.allow(t0+ms(100), 10) {
		t.Error("refused 100ms later; want one more token")
	}
	if es.allow(t0+ms(101), 10) {
		t.Error("allowed twice within 100ms after the bucket emptied")
	}
	// After a quiet second the bucket is full again, and no fuller.
	later := t0 + 3*time.Second
	n := 0
	for es.allow(later, 10) {
		n++
	}
	if n != 10 {
		t.Errorf("after a quiet period %d requests passed at once; want 10", n)
	}
}

func TestEpState_AllowConcurrent(t *testing.T) {
	var es epState
	var ok atomic.Int64
	var wg sync.WaitGroup
	now := 10 * time.Second
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				if es.allow(now, 500) {
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() != 500 {
		t.Errorf("%d of 8000 simultaneous requests passed a 500/s bucket; want exactly 500", ok.Load())
	}
}

// TestGateway_RateLimit checks the endpoint's requests-per-second limit
// (an httptest backend stands in for the model host): beyond the rate,
// 429 with headers naming the limit; other endpoints are not affected; and
// after a second the endpoint serves again.
func TestGateway_RateLimit(t *testing.T) {
	blue := newBackend(t, "blue", nil)
	limited := newKeyEndpoint("fraud", []Weight{{"blue", 100}}, deployment("blue", 5*time.Second, blue.instance("blue-0")))
	limited.MaxRequestsPerSecond = 20
	free := newKeyEndpoint("other", []Weight{{"blue", 100}}, deployment("blue", 5*time.Second, blue.instance("blue-1")))
	var obs observations
	_, gw := newGateway(t, Config{Observer: obs.add}, table(limited, free))
	c := gw.Client()

	var ok, refused int
	start := time.Now()
	for range 60 {
		a := do(t, c, gw.URL, scoreCall("fraud"))
		switch a.status {
		case 200:
			ok++
		case 429:
			refused++
			for k, want := range map[string]string{
				"x-moe-limit":                   "max_requests_per_second",
				"ms-azureml-model-error-reason": "rate_limited",
				"Retry-After":                   "1",
			} {
				if got := a.header.Get(k); got != want {
					t.Fatalf("429 header %s = %q; want %q", k, got, want)
				}
			}
			if msg := a.message(t); !strings.Contains(msg, "20 requests per second") {
				t.Fatalf("429 message %q; want the limit", msg)
			}
		default:
			t.Fatalf("status %d; want 200 or 429", a.status)
		}
	}
	el := time.Since(start)
	// The bucket holds 20, and refills one every 50ms while the burst runs.
	if maxOK := 20 + int(el/(50*time.Millisecond)) + 1; ok < 20 || ok > maxOK {
		t.Errorf("%d of 60 requests in %v passed a 20/s limit; want 20 to %d", ok, el, maxOK)
	}
	if a := do(t, c, gw.URL, scoreCall("other")); a.status != 200 {
		t.Errorf("endpoint without a limit: status %d; want 200", a.status)
	}
	time.Sleep(time.Second)
	for i := range 10 {
		if a := do(t, c, gw.URL, scoreCall("fraud")); a.status != 200 {
			t.Fatalf("request %d a second later: status %d; want 200", i+1, a.status)
		}
	}
	n := 0
	for _, o := range obs.list() {
		if o.Status == 429 && o.Limit == limitRequestsPerSecond {
			n++
		}
	}
	if n != refused {
		t.Errorf("%d observations with Limit %q; want %d", n, limitRequestsPerSecond, refused)
	}
}

// TestGateway_RateLimitSurvivesSetRoutes checks that a new route table does
// not refill the bucket.
func TestGateway_RateLimitSurvivesSetRoutes(t *testing.T) {
	blue := newBackend(t, "blue", nil)
	mk := func() *Table {
		ep := newKeyEndpoint("fraud", []Weight{{"blue", 100}}, deployment("blue", 5*time.Second, blue.instance("blue-0")))
		ep.MaxRequestsPerSecond = 5
		return table(ep)
	}
	s, gw := newGateway(t, Config{}, mk())
	c := gw.Client()
	codes := map[int]int{}
	for range 20 {
		s.SetRoutes(mk())
		codes[do(t, c, gw.URL, scoreCall("fraud")).status]++
	}
	if codes[http.StatusOK] > 7 || codes[http.StatusTooManyRequests] == 0 {
		t.Errorf("statuses %v with a new table before each request; want about 5 passing at 5/s", codes)
	}
}
