// Package storetest is the conformance suite every store.Store
// implementation must pass: storetest.Run(t, open).
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
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
			s.PutSetting(ctx, &store.Setting{Name: "k", Value: []byte("v")})
			s = o.Reopen(t, s)
			if _, err := s.GetDeployment(ctx, "alpha", "blue"); err != nil {
				t.Fatalf("after reopen: %v", err)
			}
			if v, err := s.GetSetting(ctx, "k"); err != nil || string(v.Value) != "v" {
				t.Fatalf("setting after reopen: %+v %v", v, err)
			}
		})
	}
	t.Run("ConcurrentUpdates", func(t *testing.T) {
		s := o.Open(t)
		concurrentUpdates(t, s, s)
	})
	t.Run("Settings", func(t *testing.T) { settings(t, o.Open(t)) })
	if _, ok := o.Open(t).(store.Blobs); ok {
		t.Run("Blobs", func(t *testing.T) { blobs(t, o.Open(t).(store.Blobs)) })
	}
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

	// Settings: a write on one replica wakes and is read by the other;
	// two replicas creating the same setting at once: one wins.
	drain(chB)
	va := &store.Setting{Name: store.SettingTokenKeys, Value: []byte("a")}
	if err := a.PutSetting(ctx, va); err != nil {
		t.Fatal(err)
	}
	waitNotified(t, chB, "put setting on the other replica")
	if err := b.PutSetting(ctx, &store.Setting{Name: store.SettingTokenKeys, Value: []byte("b")}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("second create of a setting on replica b: got %v, want ErrConflict", err)
	}
	if vb, err := b.GetSetting(ctx, store.SettingTokenKeys); err != nil || string(vb.Value) != "a" || vb.Version != va.Version {
		t.Errorf("replica b reads %+v, %v; want a's value at version %d", vb, err, va.Version)
	}
	if ba, ok := a.(store.Blobs); ok {
		bb := b.(store.Blobs)
		data := []byte("a snapshot uploaded through replica a")
		d := digestOf(data)
		if err := ba.PutBlob(ctx, d, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if got := readBlob(t, bb, d); !bytes.Equal(got, data) {
			t.Errorf("replica b reads the blob as %q", got)
		}
	}

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

func settings(t *testing.T, s store.Store) {
	ctx := context.Background()
	if _, err := s.GetSetting(ctx, "absent"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("get absent setting: got %v, want ErrNotFound", err)
	}
	ch, stop := s.Subscribe()
	defer stop()
	v := &store.Setting{Name: "k", Value: []byte{0, 1, 2, 255}}
	if err := s.PutSetting(ctx, v); err != nil {
		t.Fatal(err)
	}
	if v.Version != 1 || v.UpdatedAt.IsZero() {
		t.Errorf("after create: version %d updated %v", v.Version, v.UpdatedAt)
	}
	waitNotified(t, ch, "put setting")
	if err := s.PutSetting(ctx, &store.Setting{Name: "k", Value: []byte("x")}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("create of an existing setting: got %v, want ErrConflict", err)
	}
	stale := *v
	v.Value = []byte("second")
	if err := s.PutSetting(ctx, v); err != nil || v.Version != 2 {
		t.Fatalf("replace: %v, version %d", err, v.Version)
	}
	stale.Value = []byte("lost")
	if err := s.PutSetting(ctx, &stale); !errors.Is(err, store.ErrConflict) {
		t.Errorf("replace at a stale version: got %v, want ErrConflict", err)
	}
	got, err := s.GetSetting(ctx, "k")
	if err != nil || string(got.Value) != "second" || got.Version != 2 {
		t.Errorf("get: %+v %v", got, err)
	}
	// A failed write notifies nobody.
	drain(ch)
	s.PutSetting(ctx, &stale)
	select {
	case <-ch:
		t.Error("notified for a failed setting write")
	case <-time.After(50 * time.Millisecond):
	}
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func readBlob(t *testing.T, s store.Blobs, digest string) []byte {
	t.Helper()
	r, err := s.OpenBlob(context.Background(), digest)
	if err != nil {
		t.Fatalf("open blob: %v", err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read blob: %v", err)
	}
	return b
}

// failingReader yields n bytes and then an error, like a client that
// disconnects mid-upload.
type failingReader struct{ n int }

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errors.New("connection reset")
	}
	k := min(len(p), f.n)
	for i := range p[:k] {
		p[i] = 'x'
	}
	f.n -= k
	return k, nil
}

func blobs(t *testing.T, s store.Blobs) {
	ctx := context.Background()
	// sizes around the chunking: empty, small, exactly 1 MiB, 2.5 MiB
	for _, size := range []int{0, 5, 1 << 20, 5 << 19} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i*7 + i>>11)
		}
		d := digestOf(data)
		if ok, err := s.HasBlob(ctx, d); err != nil || ok {
			t.Fatalf("has before put: %v %v", ok, err)
		}
		if err := s.PutBlob(ctx, d, bytes.NewReader(data)); err != nil {
			t.Fatalf("put %d bytes: %v", size, err)
		}
		if ok, err := s.HasBlob(ctx, d); err != nil || !ok {
			t.Fatalf("has after put: %v %v", ok, err)
		}
		if got := readBlob(t, s, d); !bytes.Equal(got, data) {
			t.Fatalf("%d bytes read back as %d bytes (or different)", size, len(got))
		}
		// storing it again is a no-op
		if err := s.PutBlob(ctx, d, bytes.NewReader(data)); err != nil {
			t.Errorf("second put: %v", err)
		}
	}
	// wrong content: nothing stored
	data := []byte("the real bytes")
	d := digestOf(data)
	if err := s.PutBlob(ctx, d, bytes.NewReader([]byte("other bytes"))); !errors.Is(err, store.ErrDigestMismatch) {
		t.Errorf("put with a wrong digest: got %v, want ErrDigestMismatch", err)
	}
	if ok, _ := s.HasBlob(ctx, d); ok {
		t.Error("a blob whose bytes did not match its digest was stored")
	}
	// a reader that fails half way: nothing stored, and then a good upload works
	if err := s.PutBlob(ctx, d, &failingReader{n: 3 << 19}); err == nil {
		t.Error("put from a failing reader succeeded")
	}
	if ok, _ := s.HasBlob(ctx, d); ok {
		t.Error("a partial upload was stored")
	}
	if err := s.PutBlob(ctx, d, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	// two concurrent puts of the same digest both succeed
	big := bytes.Repeat([]byte("concurrent"), 300000)
	bd := digestOf(big)
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- s.PutBlob(ctx, bd, bytes.NewReader(big)) }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("concurrent put: %v", err)
		}
	}
	if got := readBlob(t, s, bd); !bytes.Equal(got, big) {
		t.Error("concurrent puts: content differs")
	}
	// delete, open absent, bad digests
	if err := s.DeleteBlob(ctx, d); err != nil {
		t.Fatal(err)
	}
	if _, err := s.OpenBlob(ctx, d); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("open deleted blob: got %v, want ErrNotFound", err)
	}
	if err := s.DeleteBlob(ctx, d); err != nil {
		t.Errorf("delete absent blob: %v", err)
	}
	if err := s.PutBlob(ctx, "md5:abc", bytes.NewReader(nil)); err == nil {
		t.Error("put under a malformed digest succeeded")
	}
}
