package gateway

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A request whose instance refuses the connection (a killed host still in
// the route table) goes to another ready instance instead of failing. The
// httptest backend stands in for a model host, tested in its own package.
func TestRetryOnRefusedConnection(t *testing.T) {
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "[1]")
	}))
	defer live.Close()
	// an address nobody listens on
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()

	s := New(Config{})
	deadIn := &Instance{ID: "dead", Addr: dead}
	liveIn := &Instance{ID: "live", Addr: strings.TrimPrefix(live.URL, "http://")}
	s.SetRoutes(&Table{Endpoints: map[string]*Endpoint{"ep": {
		Name: "ep", AuthMode: "key", PrimaryKey: "k0123456789abcdef",
		Traffic:     []Weight{{Deployment: "blue", Percent: 100}},
		Deployments: map[string]*Deployment{"blue": {Name: "blue", RequestTimeout: 5 * time.Second, MaxConcurrentPerInstance: 4, Instances: []*Instance{deadIn, liveIn}}},
	}}})
	h := s.Handler()
	for i := range 50 {
		req := httptest.NewRequest(http.MethodPost, "https://ep.local.inference.localhost/score", strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer k0123456789abcdef")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 || rec.Body.String() != "[1]" {
			t.Fatalf("request %d: %d %s; want 200 from the live instance", i, rec.Code, rec.Body)
		}
	}
	if deadIn.Outstanding.Load() != 0 || liveIn.Outstanding.Load() != 0 {
		t.Errorf("slots leaked: dead %d live %d", deadIn.Outstanding.Load(), liveIn.Outstanding.Load())
	}

	// no other instance: the refusal is a 502
	s.SetRoutes(&Table{Endpoints: map[string]*Endpoint{"ep": {
		Name: "ep", AuthMode: "key", PrimaryKey: "k0123456789abcdef",
		Traffic:     []Weight{{Deployment: "blue", Percent: 100}},
		Deployments: map[string]*Deployment{"blue": {Name: "blue", RequestTimeout: 5 * time.Second, MaxConcurrentPerInstance: 4, Instances: []*Instance{deadIn}}},
	}}})
	req := httptest.NewRequest(http.MethodPost, "https://ep.local.inference.localhost/score", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer k0123456789abcdef")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadGateway || deadIn.Outstanding.Load() != 0 {
		t.Errorf("only a dead instance: %d (slots %d), want 502", rec.Code, deadIn.Outstanding.Load())
	}
}
