package reconcile

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/moe-serving/moe/internal/auth"
	"github.com/moe-serving/moe/internal/gateway"
	"github.com/moe-serving/moe/internal/spec"
	"github.com/moe-serving/moe/internal/store"
	"github.com/moe-serving/moe/internal/store/sqlite"
)

// fakeRunner stands in below the Runner seam (the local runner is tested
// with real processes in its own package and end to end).
type fakeRunner struct {
	mu      sync.Mutex
	ins     map[string]Instance
	stopped []string
	changes chan struct{}
}

func (f *fakeRunner) Start(_ context.Context, s InstanceSpec) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ins[s.ID] = Instance{ID: s.ID, Endpoint: s.Endpoint, Deployment: s.Deployment, Generation: s.Revision.Generation, Phase: PhaseReady, Addr: "127.0.0.1:1"}
	return nil
}

func (f *fakeRunner) Stop(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.ins, id)
	f.stopped = append(f.stopped, id)
	return nil
}

func (f *fakeRunner) Instances() []Instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Instance
	for _, in := range f.ins {
		out = append(out, in)
	}
	return out
}

func (f *fakeRunner) Changes() <-chan struct{} { return f.changes }

// A drained instance leaves the route table in the same pass that decides
// to stop it, and is stopped only after DrainDelay: the gateway never sends
// a request to an instance that is shutting down.
func TestPassDrainsBeforeStopping(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "moe.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.CreateEndpoint(ctx, &store.Endpoint{Spec: spec.Endpoint{Name: "ep", AuthMode: spec.AuthAMLToken, Traffic: map[string]int{"blue": 100}}, State: spec.StateSucceeded})
	rev := store.Revision{Generation: 1, Spec: spec.Deployment{Name: "blue", EndpointName: "ep", InstanceCount: 1}}
	st.CreateDeployment(ctx, &store.Deployment{Endpoint: "ep", Name: "blue", Desired: rev, Active: &rev, State: spec.StateSucceeded})
	fr := &fakeRunner{ins: map[string]Instance{}, changes: make(chan struct{})}
	for _, id := range []string{"a", "b"} { // one too many: scale down
		fr.ins[id] = Instance{ID: id, Endpoint: "ep", Deployment: "blue", Generation: 1, Phase: PhaseReady, Addr: "127.0.0.1:" + id}
	}
	var tables []*gateway.Table
	r := &Reconciler{Store: st, Runner: fr, DrainDelay: 300 * time.Millisecond,
		Keys:     func(*store.Endpoint) (auth.Secret, auth.Secret, error) { return "", "", nil },
		OnRoutes: func(t *gateway.Table) { tables = append(tables, t) }}
	r.stopping = map[string]bool{}
	r.Logger = discard()
	if err := r.Pass(ctx); err != nil {
		t.Fatal(err)
	}
	ins := tables[len(tables)-1].Endpoints["ep"].Deployments["blue"].Instances
	if len(ins) != 1 {
		t.Fatalf("route table after deciding the drain has %d instances, want 1", len(ins))
	}
	fr.mu.Lock()
	early := len(fr.stopped)
	fr.mu.Unlock()
	if early != 0 {
		t.Errorf("an instance was stopped before the drain delay")
	}
	r.wg.Wait()
	if len(fr.stopped) != 1 || fr.stopped[0] == ins[0].ID {
		t.Errorf("stopped %v; want the instance that left the table (kept %s)", fr.stopped, ins[0].ID)
	}
}
