package routesource

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/moe-serving/moe/internal/auth"
	"github.com/moe-serving/moe/internal/gateway"
	"github.com/moe-serving/moe/internal/reconcile"
	"github.com/moe-serving/moe/internal/spec"
	"github.com/moe-serving/moe/internal/store"
	"github.com/moe-serving/moe/internal/store/sqlite"
)

// fakeSource is an instance source the test sets by hand.
type fakeSource struct {
	mu      sync.Mutex
	ins     []reconcile.Instance
	changes chan struct{}
}

func newFakeSource() *fakeSource { return &fakeSource{changes: make(chan struct{}, 1)} }

func (f *fakeSource) set(ins ...reconcile.Instance) {
	f.mu.Lock()
	f.ins = ins
	f.mu.Unlock()
	select {
	case f.changes <- struct{}{}:
	default:
	}
}

func (f *fakeSource) Instances() []reconcile.Instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]reconcile.Instance(nil), f.ins...)
}

// flakyStore fails reads while down is set.
type flakyStore struct {
	store.Store
	mu   sync.Mutex
	down bool
}

func (s *flakyStore) setDown(v bool) {
	s.mu.Lock()
	s.down = v
	s.mu.Unlock()
}

func (s *flakyStore) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return errors.New("connection refused")
	}
	return nil
}

func (s *flakyStore) ListEndpoints(ctx context.Context) ([]*store.Endpoint, error) {
	if err := s.err(); err != nil {
		return nil, err
	}
	return s.Store.ListEndpoints(ctx)
}

func (s *flakyStore) ListDeployments(ctx context.Context, ep string) ([]*store.Deployment, error) {
	if err := s.err(); err != nil {
		return nil, err
	}
	return s.Store.ListDeployments(ctx, ep)
}

func newBox(t testing.TB) *auth.Box {
	t.Helper()
	key := make([]byte, auth.BoxKeySize)
	rand.Read(key)
	b, err := auth.BoxFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func openKeys(box *auth.Box) reconcile.KeyOpener {
	return func(e *store.Endpoint) (auth.Secret, auth.Secret, error) {
		p, err := box.Open(e.PrimaryKey)
		if err != nil {
			return "", "", fmt.Errorf("endpoint %q: open primary key: %w", e.Spec.Name, err)
		}
		s, err := box.Open(e.SecondaryKey)
		if err != nil {
			return "", "", fmt.Errorf("endpoint %q: open secondary key: %w", e.Spec.Name, err)
		}
		return auth.Secret(p), auth.Secret(s), nil
	}
}

// seed writes endpoint Shop (key auth, 100 % to blue) with deployments
// blue and green at generation 1 active, as the control plane would.
func seed(t testing.TB, st store.Store, box *auth.Box) {
	t.Helper()
	ctx := context.Background()
	p, _ := box.Seal([]byte("primary-key-0123456789"))
	s, _ := box.Seal([]byte("secondary-key-0123456789"))
	e := &store.Endpoint{Spec: spec.Endpoint{Name: "Shop", AuthMode: "key", Traffic: map[string]int{"blue": 100}},
		PrimaryKey: p, SecondaryKey: s, State: "Succeeded"}
	if err := st.CreateEndpoint(ctx, e); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"blue", "green"} {
		r := store.Revision{Generation: 1, Spec: spec.Deployment{Name: name, EndpointName: "Shop", Type: spec.TypeManaged,
			Environment:       &spec.Environment{Image: "python:3.12-slim"},
			CodeConfiguration: &spec.CodeConfiguration{Code: "src", ScoringScript: "score.py"},
			InstanceType:      "Standard_DS3_v2", InstanceCount: 1}}
		if err := st.CreateDeployment(ctx, &store.Deployment{Endpoint: "Shop", Name: name, Desired: r, Active: &r, State: "Succeeded"}); err != nil {
			t.Fatal(err)
		}
	}
}

// setTraffic updates the endpoint's traffic, as `moe online-endpoint update
// --traffic` on any control-plane replica would.
func setTraffic(t testing.TB, st store.Store, traffic map[string]int) {
	t.Helper()
	ctx := context.Background()
	e, err := st.GetEndpoint(ctx, "Shop")
	if err != nil {
		t.Fatal(err)
	}
	e.Spec.Traffic = traffic
	if err := st.UpdateEndpoint(ctx, e); err != nil {
		t.Fatal(err)
	}
}

// setActive makes generation gen the deployment's active revision.
func setActive(t testing.TB, st store.Store, deployment string, gen int64) {
	t.Helper()
	ctx := context.Background()
	d, err := st.GetDeployment(ctx, "Shop", deployment)
	if err != nil {
		t.Fatal(err)
	}
	r := d.Desired
	r.Generation = gen
	d.Desired, d.Active = r, &r
	if err := st.UpdateDeployment(ctx, d); err != nil {
		t.Fatal(err)
	}
}

// tables records every table the follower publishes.
type tables struct {
	mu   sync.Mutex
	last *gateway.Table
	n    int
}

func (tb *tables) set(t *gateway.Table) {
	tb.mu.Lock()
	tb.last, tb.n = t, tb.n+1
	tb.mu.Unlock()
}

func (tb *tables) get() *gateway.Table {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return tb.last
}

// waitFor polls cond on the latest table until it returns "" or d passes.
func waitFor(t testing.TB, d time.Duration, get func() *gateway.Table, cond func(*gateway.Table) string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		msg := "no table yet"
		if tb := get(); tb != nil {
			msg = cond(tb)
		}
		if msg == "" {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("after %s: %s", d, msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// instanceIDs is "id@addr" of a deployment's routed instances, in order.
func instanceIDs(tb *gateway.Table, endpoint, deployment string) []string {
	e := tb.Endpoints[endpoint]
	if e == nil {
		return nil
	}
	d := e.Deployments[deployment]
	if d == nil {
		return nil
	}
	var out []string
	for _, in := range d.Instances {
		out = append(out, in.ID+"@"+in.Addr)
	}
	return out
}

func wantInstances(endpoint, deployment string, want ...string) func(*gateway.Table) string {
	return func(tb *gateway.Table) string {
		got := instanceIDs(tb, endpoint, deployment)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Sprintf("%s/%s instances %v, want %v", endpoint, deployment, got, want)
		}
		return ""
	}
}

func ready(id, dep string, gen int64, addr string) reconcile.Instance {
	return reconcile.Instance{ID: id, Endpoint: "shop", Deployment: dep, Generation: gen, Phase: reconcile.PhaseReady, Addr: addr}
}

// TestFollower (no cluster, SQLite): the table follows instance changes and
// store changes at once, keeps *gateway.Instance identity, and when the
// store is unreachable keeps the last records while instances still count.
func TestFollower(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "moe.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	box := newBox(t)
	seed(t, st, box)
	flaky := &flakyStore{Store: st}
	src := newFakeSource()
	src.set(ready("b1", "blue", 1, "10.0.0.1:5001"), reconcile.Instance{ID: "b2", Endpoint: "shop", Deployment: "blue", Generation: 1, Phase: reconcile.PhaseStarting})
	var tbs tables
	f := &Follower{Store: flaky, Instances: src.Instances, Changes: src.changes, Keys: openKeys(box), OnRoutes: tbs.set, Resync: time.Hour}
	if err := f.Ready(); !errors.Is(err, ErrNoRoutes) {
		t.Fatalf("Ready before Run = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	waitFor(t, 5*time.Second, tbs.get, wantInstances("shop", "blue", "b1@10.0.0.1:5001"))
	if err := f.Ready(); err != nil {
		t.Fatalf("Ready = %v", err)
	}
	tb := tbs.get()
	e := tb.Endpoints["shop"]
	if !e.PrimaryKey.Equal("primary-key-0123456789") || e.AuthMode != "key" || fmt.Sprint(e.Traffic) != "[{blue 100}]" {
		t.Fatalf("endpoint %+v", e)
	}
	b1 := e.Deployments["blue"].Instances[0]

	// a pod becomes ready: added, and b1 keeps its identity (its slots)
	src.set(ready("b1", "blue", 1, "10.0.0.1:5001"), ready("b2", "blue", 1, "10.0.0.2:5001"))
	waitFor(t, time.Second, tbs.get, wantInstances("shop", "blue", "b1@10.0.0.1:5001", "b2@10.0.0.2:5001"))
	if tbs.get().Endpoints["shop"].Deployments["blue"].Instances[0] != b1 {
		t.Error("b1 lost its *gateway.Instance across tables")
	}

	// a store change: traffic moves to green
	setTraffic(t, st, map[string]int{"blue": 10, "green": 90})
	took := waitFor(t, time.Second, tbs.get, func(tb *gateway.Table) string {
		if got := fmt.Sprint(tb.Endpoints["shop"].Traffic); got != "[{blue 10} {green 90}]" {
			return "traffic " + got
		}
		return ""
	})
	t.Logf("traffic change reflected after %s", took)

	// the store goes away: the last records stay, instances still follow
	flaky.setDown(true)
	src.set(ready("b2", "blue", 1, "10.0.0.2:5001"))
	waitFor(t, time.Second, tbs.get, wantInstances("shop", "blue", "b2@10.0.0.2:5001"))
	if got := fmt.Sprint(tbs.get().Endpoints["shop"].Traffic); got != "[{blue 10} {green 90}]" {
		t.Errorf("traffic during the outage %s", got)
	}
	if err := f.Ready(); err != nil {
		t.Errorf("Ready during a store outage = %v; want ready (serving the last table)", err)
	}
	// back: a change made meanwhile shows (retries, then the resync)
	setTraffic(t, st, map[string]int{"green": 100})
	flaky.setDown(false)
	waitFor(t, 5*time.Second, tbs.get, func(tb *gateway.Table) string {
		if got := fmt.Sprint(tb.Endpoints["shop"].Traffic); got != "[{green 100}]" {
			return "traffic " + got
		}
		return ""
	})

	// a new generation: gen-1 instances no longer route, gen-2 ones do
	src.set(ready("b2", "blue", 1, "10.0.0.2:5001"), ready("b3", "blue", 2, "10.0.0.3:5001"))
	setActive(t, st, "blue", 2)
	waitFor(t, time.Second, tbs.get, wantInstances("shop", "blue", "b3@10.0.0.3:5001"))

	// deleted endpoint: gone from the table (404)
	if err := st.DeleteEndpoint(context.Background(), "Shop"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, tbs.get, func(tb *gateway.Table) string {
		if len(tb.Endpoints) != 0 {
			return fmt.Sprintf("endpoints %v", tb.Endpoints)
		}
		return ""
	})
}

// Before the store was ever read there is no table, and Ready says why.
func TestFollower_NotReadyWithoutStore(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "moe.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	flaky := &flakyStore{Store: st, down: true}
	var tbs tables
	f := &Follower{Store: flaky, Instances: func() []reconcile.Instance { return nil }, Keys: openKeys(newBox(t)), OnRoutes: tbs.set}
	if err := f.Rebuild(context.Background(), true); err == nil {
		t.Fatal("Rebuild with the store down: no error")
	}
	if err := f.Ready(); !errors.Is(err, ErrNoRoutes) || tbs.get() != nil {
		t.Fatalf("Ready = %v, table %v", err, tbs.get())
	}
	flaky.setDown(false)
	if err := f.Rebuild(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if err := f.Ready(); err != nil || tbs.get() == nil {
		t.Fatalf("Ready = %v, table %v", err, tbs.get())
	}
}

// An endpoint whose keys do not open (another master key) is left out of
// the table, not served without auth.
func TestFollower_WrongMasterKey(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "moe.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	seed(t, st, newBox(t))
	var tbs tables
	f := &Follower{Store: st, Instances: func() []reconcile.Instance { return nil }, Keys: openKeys(newBox(t)), OnRoutes: tbs.set}
	if err := f.Rebuild(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	if tb := tbs.get(); tb == nil || tb.Endpoints["shop"] != nil {
		t.Fatalf("table %+v", tb)
	}
}
