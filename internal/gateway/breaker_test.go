package gateway

// Like gateway_test.go, these tests put httptest backends where model hosts
// would be: the gateway owes an instance plain HTTP, and the real host is
// tested in internal/host.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// send is do without t.Fatal, for goroutines.
func send(ctx context.Context, c *http.Client, base string, cl call) (answer, error) {
	body := cl.body
	if body == nil {
		body = strings.NewReader(`{"data": [[1, 2, 3]]}`)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+cl.path, body)
	if err != nil {
		return answer{}, err
	}
	req.Host = cl.host
	if cl.key != "" {
		req.Header.Set("Authorization", "Bearer "+cl.key)
	}
	for k, v := range cl.header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}, err
}

// waitFor polls cond until it holds or 5 s pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// gate is a model-host stand-in whose requests block until let through
// (one per value sent on next, or all once open is closed) or cancelled.
// It records the x-request-id of each request as it arrives.
type gate struct {
	*backend
	next    chan struct{}
	open    chan struct{}
	mu      sync.Mutex
	arrived []string
}

func newGate(t testing.TB, name string) *gate {
	g := &gate{next: make(chan struct{}), open: make(chan struct{})}
	g.backend = newBackend(t, name, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		g.mu.Lock()
		g.arrived = append(g.arrived, r.Header.Get("X-Request-Id"))
		g.mu.Unlock()
		select {
		case <-g.next:
		case <-g.open:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, `"`+name+`"`)
	})
	t.Cleanup(g.release)
	return g
}

func (g *gate) release() {
	select {
	case <-g.open:
	default:
		close(g.open)
	}
}

func (g *gate) arrivals() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.arrived...)
}

// state returns the gateway's queue state of a deployment.
func state(s *Server, endpoint, deployment string) *depState {
	return s.rt.Load().byName[depKey{endpoint, deployment}]
}

// assertIdle checks, after the server-side handlers finished, that no slot,
// pending count or queue entry is left over.
func assertIdle(t *testing.T, s *Server, st *depState, ins ...*Instance) {
	t.Helper()
	idle := func() bool {
		for _, in := range ins {
			if in.Outstanding.Load() != 0 {
				return false
			}
		}
		return st.held.Load() == 0 && st.waiting.Load() == 0
	}
	deadline := time.Now().Add(5 * time.Second)
	for !idle() {
		if time.Now().After(deadline) {
			for _, in := range ins {
				t.Errorf("instance %s: %d outstanding; want 0", in.ID, in.Outstanding.Load())
			}
			t.Fatalf("deployment %v: held %d, waiting %d; want 0, 0", st.key, st.held.Load(), st.waiting.Load())
		}
		time.Sleep(time.Millisecond)
	}
}

type observations struct {
	mu  sync.Mutex
	all []Observation
}

func (o *observations) add(x *Observation) {
	o.mu.Lock()
	o.all = append(o.all, *x)
	o.mu.Unlock()
}

func (o *observations) list() []Observation {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Observation(nil), o.all...)
}

func scoreCall(endpoint string) call {
	return call{host: endpoint + testHostSuffix, path: "/score", key: endpoint + "-primary"}
}

func withID(cl call, id string) call {
	cl.header = map[string]string{"X-Request-Id": id}
	return cl
}

// TestBreaker_QueueThen429 is Azure's contract with
// max_concurrent_requests_per_instance 1 and one instance: the 1st request
// runs, the 2nd queues, the 3rd gets 429 at once with headers naming the
// limit, and the queued one is served when the slot frees.
func TestBreaker_QueueThen429(t *testing.T) {
	g := newGate(t, "slow")
	in := g.instance("slow-0")
	var obs observations
	s, gw := newGateway(t, Config{Observer: obs.add}, table(newKeyEndpoint("fraud", []Weight{{"slow", 100}}, deployment("slow", 5*time.Second, in))))
	c := gw.Client()
	st := state(s, "fraud", "slow")

	results := make(chan answer, 2)
	for i, want := range []func() bool{
		func() bool { return len(g.arrivals()) == 1 },
		func() bool { return st.waiting.Load() == 1 },
	} {
		go func() {
			a, err := send(t.Context(), c, gw.URL, withID(scoreCall("fraud"), fmt.Sprint("r", i)))
			if err != nil {
				t.Error(err)
			}
			results <- a
		}()
		waitFor(t, fmt.Sprintf("request %d to run or queue", i+1), want)
	}

	start := time.Now()
	a := do(t, c, gw.URL, scoreCall("fraud"))
	if el := time.Since(start); el > time.Second {
		t.Errorf("3rd request answered after %v; want at once", el)
	}
	if a.status != http.StatusTooManyRequests {
		t.Fatalf("3rd request: status %d; want 429 (body %s)", a.status, a.body)
	}
	for k, want := range map[string]string{
		"ms-azureml-model-error-reason": "too_many_pending_requests",
		"x-moe-limit":                   "max_concurrent_requests_per_instance",
		"Retry-After":                   "1",
		"azureml-model-deployment":      "slow",
	} {
		if got := a.header.Get(k); got != want {
			t.Errorf("429 header %s = %q; want %q", k, got, want)
		}
	}
	if msg := a.message(t); !strings.Contains(msg, `"slow"`) || !strings.Contains(msg, "max_concurrent_requests_per_instance (1)") {
		t.Errorf("429 message %q; want the deployment and the limit", msg)
	}
	if len(g.arrivals()) != 1 {
		t.Errorf("the instance got %d requests; want 1 (the 2nd is queued)", len(g.arrivals()))
	}

	g.release()
	for range 2 {
		if a := <-results; a.status != 200 || a.body != `"slow"` {
			t.Errorf("status %d, body %s; want 200 from slow", a.status, a.body)
		}
	}
	assertIdle(t, s, st, in)

	var limited, queued int
	for _, o := range obs.list() {
		if o.Status == 429 && o.Limit == limitConcurrency {
			limited++
		}
		if o.Status == 200 && o.Queue > 0 {
			queued++
		}
	}
	if limited != 1 || queued != 1 {
		t.Errorf("observations: %d with 429 and Limit %q, %d served after queueing; want 1 and 1: %+v", limited, limitConcurrency, queued, obs.list())
	}
}

// TestBreaker_QueuedTimeout checks that waiting counts against
// request_timeout_ms: a queued request behind a slot held past its deadline
// gets 408, leaves the queue, and the next request still works. (With one
// timeout for all, the slot holder's own deadline comes first; here the
// timeout is lowered by an update while the first request runs.)
func TestBreaker_QueuedTimeout(t *testing.T) {
	g := newGate(t, "slow")
	in := g.instance("slow-0")
	s, gw := newGateway(t, Config{}, table(newKeyEndpoint("fraud", []Weight{{"slow", 100}}, deployment("slow", 5*time.Second, in))))
	c := gw.Client()
	st := state(s, "fraud", "slow")

	first := make(chan answer, 1)
	go func() {
		a, err := send(t.Context(), c, gw.URL, scoreCall("fraud"))
		if err != nil {
			t.Error(err)
		}
		first <- a
	}()
	waitFor(t, "the first request to run", func() bool { return len(g.arrivals()) == 1 })
	s.SetRoutes(table(newKeyEndpoint("fraud", []Weight{{"slow", 100}}, deployment("slow", 200*time.Millisecond, in))))

	start := time.Now()
	a := do(t, c, gw.URL, scoreCall("fraud"))
	el := time.Since(start)
	if a.status != http.StatusRequestTimeout {
		t.Fatalf("queued request: status %d; want 408 (body %s)", a.status, a.body)
	}
	if el < 150*time.Millisecond || el > 3*time.Second {
		t.Errorf("408 after %v; want about 200ms", el)
	}
	if msg := a.message(t); !strings.Contains(msg, "queue") || !strings.Contains(msg, "200 ms") {
		t.Errorf("408 message %q; want it to say the request waited in the queue, and the timeout", msg)
	}
	if n := len(g.arrivals()); n != 1 {
		t.Errorf("the instance got %d requests; want 1 (the 408 never reached it)", n)
	}
	if st.waiting.Load() != 0 || st.held.Load() != 1 {
		t.Errorf("after the 408: waiting %d, held %d; want 0, 1", st.waiting.Load(), st.held.Load())
	}
	g.release()
	if a := <-first; a.status != 200 {
		t.Errorf("first request: status %d; want 200", a.status)
	}
	if a := do(t, c, gw.URL, scoreCall("fraud")); a.status != 200 || a.body != `"slow"` {
		t.Errorf("next request: status %d, body %s; want 200", a.status, a.body)
	}
	assertIdle(t, s, st, in)
}

// TestBreaker_ClientLeavesQueue checks that a client that hangs up while
// queued leaves the queue at once, not at its timeout.
func TestBreaker_ClientLeavesQueue(t *testing.T) {
	g := newGate(t, "slow")
	in := g.instance("slow-0")
	s, gw := newGateway(t, Config{}, table(newKeyEndpoint("fraud", []Weight{{"slow", 100}}, deployment("slow", 30*time.Second, in))))
	c := gw.Client()
	st := state(s, "fraud", "slow")

	first := make(chan answer, 1)
	go func() {
		a, _ := send(t.Context(), c, gw.URL, scoreCall("fraud"))
		first <- a
	}()
	waitFor(t, "the first request to run", func() bool { return len(g.arrivals()) == 1 })

	ctx, cancel := context.WithCancel(t.Context())
	gone := make(chan error, 1)
	go func() {
		_, err := send(ctx, c, gw.URL, scoreCall("fraud"))
		gone <- err
	}()
	waitFor(t, "the second request to queue", func() bool { return st.waiting.Load() == 1 })
	cancel()
	if err := <-gone; err == nil {
		t.Error("cancelled request succeeded")
	}
	waitFor(t, "the cancelled request to leave the queue", func() bool {
		return st.waiting.Load() == 0 && st.held.Load() == 1
	})
	g.release()
	if a := <-first; a.status != 200 {
		t.Errorf("first request: status %d; want 200", a.status)
	}
	if n := len(g.arrivals()); n != 1 {
		t.Errorf("the instance got %d requests; want 1", n)
	}
	assertIdle(t, s, st, in)
}

// TestBreaker_FIFO checks that queued requests get slots in arrival order.
func TestBreaker_FIFO(t *testing.T) {
	g := newGate(t, "slow")
	in := g.instance("slow-0")
	d := deployment("slow", 30*time.Second, in)
	d.MaxConcurrentPerInstance = 3 // 3 slots, 3 queue places
	s, gw := newGateway(t, Config{}, table(newKeyEndpoint("fraud", []Weight{{"slow", 100}}, d)))
	c := gw.Client()
	st := state(s, "fraud", "slow")

	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			a, err := send(t.Context(), c, gw.URL, withID(scoreCall("fraud"), fmt.Sprint("r", i)))
			if err != nil || a.status != 200 {
				t.Errorf("r%d: status %d, err %v; want 200", i, a.status, err)
			}
		})
		if i < 3 {
			waitFor(t, fmt.Sprintf("r%d to run", i), func() bool { return len(g.arrivals()) == i+1 })
		} else {
			waitFor(t, fmt.Sprintf("r%d to queue", i), func() bool { return st.waiting.Load() == int64(i-2) })
		}
	}
	for i := 3; i < 6; i++ {
		g.next <- struct{}{} // one running request finishes
		waitFor(t, fmt.Sprintf("r%d to run", i), func() bool { return len(g.arrivals()) == i+1 })
	}
	if got := g.arrivals()[3:]; strings.Join(got, ",") != "r3,r4,r5" {
		t.Errorf("queued requests ran in order %v; want r3, r4, r5", got)
	}
	g.release()
	wg.Wait()
	assertIdle(t, s, st, in)
}

// TestBreaker_NoLeak runs 200 requests that succeed, time out (on the
// instance), are refused with 429 or are cancelled by their clients, and
// checks that every slot, pending count and queue entry is given back.
func TestBreaker_NoLeak(t *testing.T) {
	be := newBackend(t, "blue", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		d := time.Duration(rand.IntN(120)) * time.Millisecond
		if r.Header.Get("X-Fast") != "" {
			d = 0
		}
		select {
		case <-time.After(d):
			_, _ = io.WriteString(w, `"blue"`)
		case <-r.Context().Done():
		}
	})
	ins := []*Instance{be.instance("blue-0"), be.instance("blue-1")}
	d := deployment("blue", 100*time.Millisecond, ins...)
	d.MaxConcurrentPerInstance = 2
	var queued atomic.Int64
	s, gw := newGateway(t, Config{Logger: slog.New(slog.DiscardHandler), Observer: func(o *Observation) {
		if o.Queue > 0 {
			queued.Add(1)
		}
	}}, table(newKeyEndpoint("fraud", []Weight{{"blue", 100}}, d)))
	c := gw.Client()

	var mu sync.Mutex
	statuses := map[int]int{}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			for next.Add(1) <= 200 {
				ctx := t.Context()
				if rand.IntN(4) == 0 { // a client that gives up
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, time.Duration(rand.IntN(80))*time.Millisecond)
					defer cancel()
				}
				a, err := send(ctx, c, gw.URL, scoreCall("fraud"))
				status := a.status
				if err != nil {
					status = -1
				}
				mu.Lock()
				statuses[status]++
				mu.Unlock()
				if status == 429 {
					time.Sleep(time.Duration(5+rand.IntN(20)) * time.Millisecond) // back off, as clients should
				}
			}
		})
	}
	wg.Wait()
	t.Logf("statuses (-1: client gave up): %v; queue waits seen: %d", statuses, queued.Load())
	for status := range statuses {
		switch status {
		case -1, 200, 408, 429:
		default:
			t.Errorf("got status %d %d times; want only 200, 408, 429 or a cancelled client", status, statuses[status])
		}
	}
	assertIdle(t, s, state(s, "fraud", "blue"), ins...)
	cl := scoreCall("fraud")
	cl.header = map[string]string{"X-Fast": "1"}
	if a := do(t, c, gw.URL, cl); a.status != 200 {
		t.Errorf("after the mix: status %d; want 200", a.status)
	}
}

// TestBreaker_QueuedRequestsRepick checks that SetRoutes wakes queued
// requests, which re-pick from the new table: a new instance serves them at
// once, and a request routed by weight follows the traffic to another
// deployment when its own is gone. A request naming a deployment that is
// gone gets 404.
func TestBreaker_QueuedRequestsRepick(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header map[string]string
		next   func(slow *Deployment, fast *backend) *Table
		status int
		body   string
	}{
		{"instance added", nil, func(slow *Deployment, fast *backend) *Table {
			d := deployment("slow", 5*time.Second, append(slow.Instances, fast.instance("fast-0"))...)
			return table(newKeyEndpoint("fraud", []Weight{{"slow", 100}}, d))
		}, 200, `"fast"`},
		{"deployment replaced", nil, func(slow *Deployment, fast *backend) *Table {
			return table(newKeyEndpoint("fraud", []Weight{{"fast", 100}}, deployment("fast", 5*time.Second, fast.instance("fast-0"))))
		}, 200, `"fast"`},
		{"named deployment gone", map[string]string{"azureml-model-deployment": "slow"}, func(slow *Deployment, fast *backend) *Table {
			return table(newKeyEndpoint("fraud", []Weight{{"fast", 100}}, deployment("fast", 5*time.Second, fast.instance("fast-0"))))
		}, 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGate(t, "slow")
			fast := newBackend(t, "fast", nil)
			slowIn := g.instance("slow-0")
			slow := deployment("slow", 5*time.Second, slowIn)
			s, gw := newGateway(t, Config{}, table(newKeyEndpoint("fraud", []Weight{{"slow", 100}}, slow)))
			c := gw.Client()
			st := state(s, "fraud", "slow")

			first := make(chan answer, 1)
			go func() {
				a, _ := send(t.Context(), c, gw.URL, scoreCall("fraud"))
				first <- a
			}()
			waitFor(t, "the first request to run", func() bool { return len(g.arrivals()) == 1 })
			queued := make(chan answer, 1)
			go func() {
				cl := scoreCall("fraud")
				cl.header = tc.header
				a, err := send(t.Context(), c, gw.URL, cl)
				if err != nil {
					t.Error(err)
				}
				queued <- a
			}()
			waitFor(t, "the second request to queue", func() bool { return st.waiting.Load() == 1 })
			next := tc.next(slow, fast)
			s.SetRoutes(next)
			select {
			case a := <-queued:
				if a.status != tc.status || (tc.body != "" && a.body != tc.body) {
					t.Errorf("queued request: status %d, body %s; want %d %s", a.status, a.body, tc.status, tc.body)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("the queued request was not re-picked after SetRoutes")
			}
			g.release()
			if a := <-first; a.status != 200 || a.body != `"slow"` {
				t.Errorf("first request: status %d, body %s; want 200 from slow", a.status, a.body)
			}
			var all []*Instance
			for _, d := range next.Endpoints["fraud"].Deployments {
				all = append(all, d.Instances...)
			}
			assertIdle(t, s, st, append(all, slowIn)...)
		})
	}
}

// TestBreaker_SwapsUnderQueuedLoad swaps between two tables that share an
// instance while many requests queue; every request is answered with 200 or
// 429 and nothing is left held.
func TestBreaker_SwapsUnderQueuedLoad(t *testing.T) {
	be := newBackend(t, "blue", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(2 * time.Millisecond)
		_, _ = io.WriteString(w, `"blue"`)
	})
	i0, i1, i2 := be.instance("blue-0"), be.instance("blue-1"), be.instance("blue-2")
	tableA := table(newKeyEndpoint("fraud", []Weight{{"blue", 100}}, deployment("blue", 5*time.Second, i0, i1)))
	tableB := table(newKeyEndpoint("fraud", []Weight{{"blue", 100}}, deployment("blue", 5*time.Second, i1, i2)))
	s, gw := newGateway(t, Config{Logger: slog.New(slog.DiscardHandler)}, tableA)
	c := gw.Client()

	stop := make(chan struct{})
	var swaps sync.WaitGroup
	swaps.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			if i%2 == 0 {
				s.SetRoutes(tableB)
			} else {
				s.SetRoutes(tableA)
			}
		}
	})
	var ok, limited atomic.Int64
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			for range 25 {
				a, err := send(t.Context(), c, gw.URL, scoreCall("fraud"))
				switch {
				case err != nil:
					t.Error(err)
				case a.status == 200:
					ok.Add(1)
				case a.status == 429:
					limited.Add(1)
				default:
					t.Errorf("status %d: %s; want 200 or 429", a.status, a.body)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	swaps.Wait()
	t.Logf("200: %d, 429: %d", ok.Load(), limited.Load())
	if ok.Load() == 0 {
		t.Error("no request succeeded")
	}
	for _, in := range []*Instance{i0, i1, i2} {
		if n := in.Outstanding.Load(); n > 1 {
			t.Errorf("instance %s: %d outstanding; want at most 1 (and 0 once idle)", in.ID, n)
		}
	}
	assertIdle(t, s, state(s, "fraud", "blue"), i0, i1, i2)
}

// TestBreaker_SlotLimitHolds checks the semaphore directly: however many
// goroutines race, an instance never runs more than the limit.
func TestBreaker_SlotLimitHolds(t *testing.T) {
	ins := []*Instance{{ID: "a"}, {ID: "b"}, {ID: "c"}}
	var peak [3]atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 2000 {
				in := takeSlot(ins, 2)
				if in == nil {
					continue
				}
				n := in.Outstanding.Load()
				i := in.ID[0] - 'a'
				for {
					p := peak[i].Load()
					if n <= p || peak[i].CompareAndSwap(p, n) {
						break
					}
				}
				in.Outstanding.Add(-1)
			}
		})
	}
	wg.Wait()
	for i, in := range ins {
		if p := peak[i].Load(); p > 2 {
			t.Errorf("instance %s peaked at %d in flight; want at most 2", in.ID, p)
		}
		if n := in.Outstanding.Load(); n != 0 {
			t.Errorf("instance %s: %d outstanding; want 0", in.ID, n)
		}
	}
}
