// Package storetest is the conformance suite every store.Store
// implementation must pass: storetest.Run(t, open).
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/moe-serving/moe/internal/spec"
	"github.com/moe-serving/moe/internal/store"
)

// Opener opens a fresh, empty store for one subtest. Reopen, if the
// implementation supports it, reopens the same store after Close (for
// durability checks); it may be nil. OpenReplica, if the implementation
// serves several processes at once, opens a second Store on the same data
// as s, as another replica would (its own connections and listener); the
// suite then checks that writes on one wake Subscribe on the other within
// a second and that optimistic concurrency holds across them. It may be
// nil.
type Opener struct {
	Open        func(t *testing.T) store.Store
	Reopen      func(t *testing.T, old store.Store) store.Store
	OpenReplica func(t *testing.T, s store.Store) store.Store
}

func ep(name string) *store.Endpoint {
	return &store.Endpoint{Spec: spec.Endpoint{Name: name, AuthMode: spec.AuthKey}, PrimaryKey: "sealed-p", SecondaryKey: "sealed-s", State: spec.StateSucceeded}
}

func dep(endpoint, name string) *store.Deployment {
	return &store.Deployment{Endpoint: endpoint, Name: name, State: spec.StateCreating,
		Desired: store.Revision{Generation: 1, Spec: spec.Deployment{Name: name, EndpointName: endpoint, InstanceCount: 1}, Artifacts: store.Artifacts{Model: "sha256:aa"}}}
}

// Run runs the suite.
func Run(t *testing.T, o Opener) {
	ctx := context.Background()
	t.Run("EndpointCRUD", func(t *testing.T) {
		s := o.Open(t)
		e := ep("alpha")
		if err := s.CreateEndpoint(ctx, e); err != nil {
			t.Fatal(err)
		}
		if e.Version != 1 || e.CreatedAt.IsZero() {
			t.Errorf("after create: version %d created %v", e.Version, e.CreatedAt)
		}
		if err := s.CreateEndpoint(ctx, ep("alpha")); !errors.Is(err, store.ErrConflict) {
			t.Errorf("duplicate create: got %v, want ErrConflict", err)
		}
		got, err := s.GetEndpoint(ctx, "alpha")
		if err != nil || got.Spec.Name != "alpha" || got.PrimaryKey != "sealed-p" {
			t.Fatalf("get: %+v, %v", got, err)
		}
		got.Spec.Traffic = map[string]int{"blue": 100}
		if err := s.UpdateEndpoint(ctx, got); err != nil {
			t.Fatal(err)
		}
		if got.Version != 2 {
			t.Errorf("version after update = %d, want 2", got.Version)
		}
		stale := *got
		stale.Version = 1
		if err := s.UpdateEndpoint(ctx, &stale); !errors.Is(err, store.ErrConflict) {
			t.Errorf("stale update: got %v, want ErrConflict", err)
		}
		again, _ := s.GetEndpoint(ctx, "alpha")
		if again.Spec.Traffic["blue"] != 100 {
			t.Errorf("traffic not stored: %v", again.Spec.Traffic)
		}
		if _, err := s.GetEndpoint(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("get missing: got %v, want ErrNotFound", err)
		}
		missing := ep("nope")
		if err := s.UpdateEndpoint(ctx, missing); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("update missing: got %v, want ErrNotFound", err)
		}
		if err := s.DeleteEndpoint(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("delete missing: got %v, want ErrNotFound", err)
		}
	})
	t.Run("ListOrdered", func(t *testing.T) {
		s := o.Open(t)
		for _, n := range []string{"charlie", "alpha", "bravo"} {
			if err := s.CreateEndpoint(ctx, ep(n)); err != nil {
				t.Fatal(err)
			}
		}
		list, err := s.ListEndpoints(ctx)
		if err != nil || len(list) != 3 || list[0].Spec.Name != "alpha" || list[2].Spec.Name != "charlie" {
			t.Fatalf("list = %v, %v", list, err)
		}
	})
	t.Run("DeploymentCRUD", func(t *testing.T) {
		s := o.Open(t)
		if err := s.CreateDeployment(ctx, dep("ghost", "blue")); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("deployment without endpoint: got %v, want ErrNotFound", err)
		}
		s.CreateEndpoint(ctx, ep("alpha"))
		s.CreateEndpoint(ctx, ep("beta"))
		for _, d := range []*store.Deployment{dep("alpha", "green"), dep("alpha", "blue"), dep("beta", "blue")} {
			if err := s.CreateDeployment(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.CreateDeployment(ctx, dep("alpha", "blue")); !errors.Is(err, store.ErrConflict) {
			t.Errorf("duplicate deployment: got %v", err)
		}
		list, _ := s.ListDeployments(ctx, "alpha")
		if len(list) != 2 || list[0].Name != "blue" || list[1].Name != "green" {
			t.Errorf("list alpha = %v", list)
		}
		all, _ := s.ListDeployments(ctx, "")
		if len(all) != 3 || all[2].Endpoint != "beta" {
			t.Errorf("list all = %v", all)
		}
		d, err := s.GetDeployment(ctx, "alpha", "blue")
		if err != nil || d.Desired.Artifacts.Model != "sha256:aa" {
			t.Fatalf("get = %+v, %v", d, err)
		}
		d.Active = &d.Desired
		d.State = spec.StateSucceeded
		if err := s.UpdateDeployment(ctx, d); err != nil {
			t.Fatal(err)
		}
		stale := *d
		stale.Version--
		if err := s.UpdateDeployment(ctx, &stale); !errors.Is(err, store.ErrConflict) {
			t.Errorf("stale deployment update: got %v", err)
		}
		d2, _ := s.GetDeployment(ctx, "alpha", "blue")
		if d2.Active == nil || d2.State != spec.StateSucceeded {
			t.Errorf("update not stored: %+v", d2)
		}
		if err := s.DeleteDeployment(ctx, "alpha", "green"); err != nil {
			t.Fatal(err)
		}
		if err := s.DeleteDeployment(ctx, "alpha", "green"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("second delete: got %v", err)
		}
		if err := s.DeleteEndpoint(ctx, "alpha"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetDeployment(ctx, "alpha", "blue"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("deployment survived its endpoint: %v", err)
		}
		if rest, _ := s.ListDeployments(ctx, ""); len(rest) != 1 {
			t.Errorf("deleting alpha touched other endpoints: %v", rest)
		}
	})
	t.Run("Subscribe", func(t *testing.T) {
		s := o.Open(t)
		ch, stop := s.Subscribe()
		defer stop()
		if err := s.CreateEndpoint(ctx, ep("alpha")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ch:
		case <-time.After(time.Second):
			t.Fatal("no change notification within 1s")
		}
		// a failed write notifies nobody
		s.CreateEndpoint(ctx, ep("alpha"))
		select {
		case <-ch:
			t.Error("notified for a failed write")
		case <-time.After(50 * time.Millisecond):
		}
	})
	if o.Reopen != nil {
		t.Run("SurvivesReopen", func(t *testing.T) {
			s := o.Open(t)
			s.CreateEndpoint(ctx, ep("alpha"))
			s.CreateDeployment(ctx, dep("alpha", "blue"))
			s = o.Reopen(t, s)
			if _, err := s.GetDeployment(ctx, "alpha", "blue"); err != nil {
				t.Fatalf("after reopen: %v", err)
			}
		})
	}
	t.Run("ConcurrentUpdates", func(t *testing.T) {
		s := o.Open(t)
		concurrentUpdates(t, s, s)
	})
	if o.OpenReplica != nil {
		t.Run("Replicas", func(t *testing.T) { replicas(t, o) })
	}
}

// waitNotified fails t unless ch fires within a second.
func waitNotified(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(time.Second):
		t.Fatalf("no change notification within 1s after %s", what)
	}
}

// drain empties a subscription of wake-ups that are already pending.
func drain(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		case <-time.After(20 * time.Millisecond):
			return
		}
	}
}

// concurrentUpdates has goroutines on each store increment one counter
// with read-modify-write, retrying on ErrConflict; no increment may be
// lost.
func concurrentUpdates(t *testing.T, stores ...store.Store) {
	ctx := context.Background()
	if err := stores[0].CreateEndpoint(ctx, ep("counter")); err != nil {
		t.Fatal(err)
	}
	const workers, each = 4, 5
	var wg sync.WaitGroup
	errs := make(chan error, workers*len(stores))
	for _, s := range stores {
		for range workers {
			wg.Go(func() {
				for i := 0; i < each; {
					e, err := s.GetEndpoint(ctx, "counter")
					if err != nil {
						errs <- err
						return
					}
					if e.Spec.Traffic == nil {
						e.Spec.Traffic = map[string]int{}
					}
					e.Spec.Traffic["blue"]++
					switch err := s.UpdateEndpoint(ctx, e); {
					case errors.Is(err, store.ErrConflict):
					case err != nil:
						errs <- err
						return
					default:
						i++
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	e, err := stores[0].GetEndpoint(ctx, "counter")
	if err != nil {
		t.Fatal(err)
	}
	want := workers * each * len(stores)
	if e.Spec.Traffic["blue"] != want || e.Version != int64(want)+1 {
		t.Errorf("counter = %d at version %d, want %d at version %d (lost updates)", e.Spec.Traffic["blue"], e.Version, want, want+1)
	}
}

func replicas(t *testing.T, o Opener) {
	ctx := context.Background()
	a := o.Open(t)
	b := o.OpenReplica(t, a)
	chA, stopA := a.Subscribe()
	defer stopA()
	chB, stopB := b.Subscribe()
	defer stopB()

	// A write on one replica wakes the other, and the other reads it.
	if err := a.CreateEndpoint(ctx, ep("alpha")); err != nil {
		t.Fatal(err)
	}
	waitNotified(t, chB, "create endpoint on the other replica")
	if _, err := b.GetEndpoint(ctx, "alpha"); err != nil {
		t.Fatalf("replica b: %v", err)
	}
	if err := b.CreateDeployment(ctx, dep("alpha", "blue")); err != nil {
		t.Fatal(err)
	}
	waitNotified(t, chA, "create deployment on the other replica")

	// Optimistic concurrency across replicas: both read version 1, the
	// first writer wins, the second gets ErrConflict.
	ea, _ := a.GetEndpoint(ctx, "alpha")
	eb, _ := b.GetEndpoint(ctx, "alpha")
	ea.State, eb.State = spec.StateUpdating, spec.StateDeleting
	if err := a.UpdateEndpoint(ctx, ea); err != nil {
		t.Fatal(err)
	}
	if err := b.UpdateEndpoint(ctx, eb); !errors.Is(err, store.ErrConflict) {
		t.Errorf("stale endpoint update on replica b: got %v, want ErrConflict", err)
	}
	da, _ := a.GetDeployment(ctx, "alpha", "blue")
	db, _ := b.GetDeployment(ctx, "alpha", "blue")
	if err := b.UpdateDeployment(ctx, db); err != nil {
		t.Fatal(err)
	}
	if err := a.UpdateDeployment(ctx, da); !errors.Is(err, store.ErrConflict) {
		t.Errorf("stale deployment update on replica a: got %v, want ErrConflict", err)
	}

	// A delete on one replica is seen by the other.
	drain(chB)
	if err := a.DeleteEndpoint(ctx, "alpha"); err != nil {
		t.Fatal(err)
	}
	waitNotified(t, chB, "delete endpoint on the other replica")
	if err := b.UpdateDeployment(ctx, db); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("update of a deployment deleted on replica a: got %v, want ErrNotFound", err)
	}

	// A failed write on one replica wakes nobody on the other.
	drain(chA)
	drain(chB)
	if err := a.CreateDeployment(ctx, dep("alpha", "green")); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deployment of a deleted endpoint: got %v, want ErrNotFound", err)
	}
	select {
	case <-chB:
		t.Error("replica b notified for a failed write on replica a")
	case <-time.After(200 * time.Millisecond):
	}

	// Read-modify-write from both replicas at once loses nothing.
	concurrentUpdates(t, a, b)

	// Every subscriber on every replica is woken, many times over.
	for i := range 3 {
		drain(chA)
		drain(chB)
		if err := b.CreateEndpoint(ctx, ep(fmt.Sprintf("e%d", i))); err != nil {
			t.Fatal(err)
		}
		waitNotified(t, chA, fmt.Sprintf("create endpoint e%d on the other replica", i))
		waitNotified(t, chB, fmt.Sprintf("create endpoint e%d on this replica", i))
	}
}
