package gateway

// httptest backends stand in for the live and shadow model hosts (the real
// host is tested in internal/host).

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// shadowHost records what a shadow stand-in received, by request id.
type shadowHost struct {
	*backend
	mu     sync.Mutex
	bodies map[string]string
	auth   atomic.Int64 // requests that carried an Authorization header
}

func newShadow(t testing.TB, answer func(w http.ResponseWriter, r *http.Request)) *shadowHost {
	sh := &shadowHost{bodies: map[string]string{}}
	sh.backend = newBackend(t, "green", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		sh.mu.Lock()
		sh.bodies[r.Header.Get("X-Request-Id")] = string(b)
		sh.mu.Unlock()
		if r.Header.Get("Authorization") != "" {
			sh.auth.Add(1)
		}
		if answer != nil {
			answer(w, r)
			return
		}
		_, _ = io.WriteString(w, `"green"`)
	})
	return sh
}

// mirrorGateway serves endpoint "fraud": blue takes all traffic, green
// (shadow) none, and pct % of blue's requests are mirrored to green.
func mirrorGateway(t *testing.T, cfg Config, blue *backend, green *shadowHost, pct int) (*Server, string, *http.Client, *observations) {
	t.Helper()
	var obs observations
	cfg.Observer = obs.add
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	shadow := deployment("green", 5*time.Second, green.instance("green-0"))
	shadow.MaxConcurrentPerInstance = 100
	ep := newKeyEndpoint("fraud", []Weight{{"blue", 100}}, deployment("blue", 5*time.Second, blue.instance("blue-0")), shadow)
	ep.Deployments["blue"].MaxConcurrentPerInstance = 100
	if pct > 0 {
		ep.Mirror = &Weight{Deployment: "green", Percent: pct}
	}
	s, gw := newGateway(t, cfg, table(ep))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s, gw.URL, gw.Client(), &obs
}

func waitMirrorIdle(t *testing.T, s *Server) {
	t.Helper()
	waitFor(t, "the mirror workers to finish", func() bool { return s.mirror.pending.Load() == 0 })
}

func TestMirror_Share(t *testing.T) {
	blue := newBackend(t, "blue", nil)
	green := newShadow(t, nil)
	s, base, c, obs := mirrorGateway(t, Config{}, blue, green, 30)

	const n = 400
	for i := range n {
		cl := withID(scoreCall("fraud"), fmt.Sprint("r", i))
		cl.body = strings.NewReader(fmt.Sprintf(`{"data": [[%d]]}`, i))
		if i%2 == 1 {
			cl.bodyLen = -1 // chunked: the copy is taken as the body streams
		}
		a := do(t, c, base, cl)
		if a.status != 200 || a.body != `"blue"` {
			t.Fatalf("request %d: status %d, body %s; want the live answer", i, a.status, a.body)
		}
	}
	waitMirrorIdle(t, s)
	sent, dropped, failed := s.MirrorStats("fraud")
	if dropped != 0 || failed != 0 {
		t.Errorf("dropped %d, failed %d; want 0 with a fast shadow", dropped, failed)
	}
	if share := float64(sent) / n; share < 0.2 || share > 0.4 {
		t.Errorf("%d of %d requests mirrored (%.2f); want 0.30 ± 0.10", sent, n, share)
	}
	green.mu.Lock()
	for id, body := range green.bodies {
		var i int
		if _, err := fmt.Sscanf(id, "r%d", &i); err != nil {
			t.Errorf("shadow got request id %q; want the live request's", id)
			continue
		}
		if want := fmt.Sprintf(`{"data": [[%d]]}`, i); body != want {
			t.Errorf("shadow copy of %s has body %q; want %q", id, body, want)
		}
	}
	if uint64(len(green.bodies)) != sent {
		t.Errorf("shadow received %d copies; MirrorStats says %d sent", len(green.bodies), sent)
	}
	green.mu.Unlock()
	if green.auth.Load() != 0 {
		t.Errorf("%d shadow copies carried the caller's Authorization header", green.auth.Load())
	}
	var mirrored int
	for _, o := range obs.list() {
		if o.Mirrored {
			mirrored++
			if o.Deployment != "green" || o.Status != 200 || o.Instance != "green-0" {
				t.Errorf("mirrored observation %+v; want green, green-0, 200", o)
			}
		}
	}
	if uint64(mirrored) != sent {
		t.Errorf("%d observations with Mirrored; want %d", mirrored, sent)
	}
}

func TestMirror_HeaderTargetedNotMirrored(t *testing.T) {
	blue := newBackend(t, "blue", nil)
	green := newShadow(t, nil)
	s, base, c, _ := mirrorGateway(t, Config{}, blue, green, 50)
	for i := range 100 {
		dep := "blue"
		if i%10 == 0 {
			dep = "green" // the shadow can be called directly
		}
		cl := scoreCall("fraud")
		cl.header = map[string]string{"azureml-model-deployment": dep}
		if a := do(t, c, base, cl); a.status != 200 || a.body != `"`+dep+`"` {
			t.Fatalf("request to %s: status %d, body %s", dep, a.status, a.body)
		}
	}
	waitMirrorIdle(t, s)
	if sent, dropped, failed := s.MirrorStats("fraud"); sent+dropped+failed != 0 {
		t.Errorf("MirrorStats = %d, %d, %d; want no copies of header-targeted requests", sent, dropped, failed)
	}
	if n := green.hits.Load(); n != 10 {
		t.Errorf("shadow got %d requests; want only the 10 sent to it directly", n)
	}
}

// TestMirror_ShadowDoesNotHurtLive measures the live p99 without and with a
// mirror to a shadow that sleeps 2 s or fails, in the same test: the
// answers stay the live ones and the p99 moves by at most a small bound.
func TestMirror_ShadowDoesNotHurtLive(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(w http.ResponseWriter, r *http.Request)
	}{
		{"sleeps 2s", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
		}},
		{"returns 500", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "shadow broke", http.StatusInternalServerError)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			blue := newBackend(t, "blue", nil)
			green := newShadow(t, tc.answer)
			s, base, c, _ := mirrorGateway(t, Config{}, blue, green, 0)
			const n = 200
			run := func() []time.Duration {
				lat := make([]time.Duration, n)
				for i := range n {
					start := time.Now()
					a := do(t, c, base, scoreCall("fraud"))
					lat[i] = time.Since(start)
					if a.status != 200 || a.body != `"blue"` {
						t.Fatalf("status %d, body %s; want the live answer", a.status, a.body)
					}
				}
				slices.Sort(lat)
				return lat
			}
			run() // warm up connections
			before := run()
			mirrored := *s.rt.Load().table.Endpoints["fraud"] // same deployments, plus a mirror
			mirrored.Mirror = &Weight{Deployment: "green", Percent: 50}
			s.SetRoutes(table(&mirrored))
			start := time.Now()
			after := run()
			el := time.Since(start)
			p99b, p99a := before[n*99/100], after[n*99/100]
			t.Logf("live p50 %v → %v, p99 %v → %v (200 requests in %v with the mirror)", before[n/2], after[n/2], p99b, p99a, el)
			if bound := 2*p99b + 25*time.Millisecond; p99a > bound {
				t.Errorf("live p99 with the mirror %v; want at most %v (2 × %v without + 25ms)", p99a, bound, p99b)
			}
			sent, dropped, failed := s.MirrorStats("fraud")
			t.Logf("mirror: sent %d, dropped %d, failed %d", sent, dropped, failed)
			switch tc.name {
			case "sleeps 2s":
				// 8 workers and 64 queue places, for about 100 copies in
				// far less than 2 s: the rest are dropped.
				if dropped == 0 || sent != 0 {
					t.Errorf("sent %d, dropped %d; want drops and nothing answered yet", sent, dropped)
				}
			case "returns 500":
				waitMirrorIdle(t, s)
				sent, dropped, failed = s.MirrorStats("fraud")
				if failed < 60 || sent != 0 || dropped != 0 {
					t.Errorf("sent %d, dropped %d, failed %d; want about 100 failed, nothing else", sent, dropped, failed)
				}
			}
		})
	}
}

// TestMirror_BodyLimit checks that bodies over MirrorMaxBodyBytes are not
// mirrored (counted as dropped) while the live request gets all of its body.
func TestMirror_BodyLimit(t *testing.T) {
	blue := newBackend(t, "blue", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprint(w, len(b))
	})
	green := newShadow(t, nil)
	s, base, c, _ := mirrorGateway(t, Config{MirrorMaxBodyBytes: 1024}, blue, green, 50)
	big := strings.Repeat("x", 4096)
	for i := range 40 {
		cl := scoreCall("fraud")
		cl.body = strings.NewReader(big)
		if i%2 == 1 {
			cl.bodyLen = -1
		}
		if a := do(t, c, base, cl); a.status != 200 || a.body != "4096" {
			t.Fatalf("live request: status %d, body %s; want all 4096 bytes to reach it", a.status, a.body)
		}
	}
	waitMirrorIdle(t, s)
	sent, dropped, failed := s.MirrorStats("fraud")
	if sent != 0 || failed != 0 || dropped < 8 {
		t.Errorf("sent %d, dropped %d, failed %d; want about 20 dropped and none sent", sent, dropped, failed)
	}
	if green.hits.Load() != 0 {
		t.Errorf("shadow got %d requests; want none", green.hits.Load())
	}
}

// TestMirror_ShutdownStopsWorkers checks that Shutdown cancels copies on
// their way and returns with the workers stopped, and that every copy is
// accounted for.
func TestMirror_ShutdownStopsWorkers(t *testing.T) {
	blue := newBackend(t, "blue", nil)
	var cancelled atomic.Int64
	green := newShadow(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(time.Minute):
		case <-r.Context().Done():
			cancelled.Add(1)
		}
	})
	s, base, c, _ := mirrorGateway(t, Config{MirrorWorkers: 2, MirrorQueue: 2}, blue, green, 50)
	for range 40 {
		do(t, c, base, scoreCall("fraud"))
	}
	waitFor(t, "both workers to reach the shadow", func() bool { return green.hits.Load() == 2 })
	start := time.Now()
	if err := s.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("Shutdown took %v; want the copies cancelled at once", el)
	}
	if n := s.mirror.pending.Load(); n != 0 {
		t.Errorf("%d copies still pending after Shutdown", n)
	}
	waitFor(t, "the shadow to see both copies cancelled", func() bool { return cancelled.Load() == 2 })
	sent, dropped, failed := s.MirrorStats("fraud")
	if sent != 0 || failed != 2 || dropped == 0 {
		t.Errorf("sent %d, dropped %d, failed %d; want the 2 cancelled copies failed and the rest dropped", sent, dropped, failed)
	}
	// A mirrored request after Shutdown (on a handler still running) is
	// dropped, and starts nothing.
	if a := do(t, c, base, scoreCall("fraud")); a.status != 200 {
		t.Errorf("status %d after Shutdown on the test listener; want 200", a.status)
	}
	if s.mirror.pending.Load() != 0 {
		t.Error("a copy was queued after Shutdown")
	}
}
