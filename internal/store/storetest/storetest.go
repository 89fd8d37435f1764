// Package storetest is the conformance suite every store.Store
// implementation must pass: storetest.Run(t, open).
package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/moe-serving/moe/internal/spec"
	"github.com/moe-serving/moe/internal/store"
)

// Opener opens a fresh, empty store for one subtest. Reopen, if the
// implementation supports it, reopens the same store after Close (for
// durability checks); it may be nil.
type Opener struct {
	Open   func(t *testing.T) store.Store
	Reopen func(t *testing.T, old store.Store) store.Store
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
}
