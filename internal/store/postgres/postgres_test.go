package postgres

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moe-serving/moe/internal/spec"
	"github.com/moe-serving/moe/internal/store"
	"github.com/moe-serving/moe/internal/store/postgres/pgtest"
	"github.com/moe-serving/moe/internal/store/storetest"
)

// testURL returns MOE_TEST_POSTGRES_URL or skips the test. scripts/postgres
// starts a private server and sets it.
func testURL(t *testing.T) string {
	t.Helper()
	u := os.Getenv("MOE_TEST_POSTGRES_URL")
	if u == "" {
		t.Skip("set MOE_TEST_POSTGRES_URL to run")
	}
	return u
}

// freshSchema is an empty schema of the test database for one test.
func freshSchema(t *testing.T) string {
	t.Helper()
	return pgtest.Schema(t, testURL(t))
}

// openAt opens a Store at u, closed at cleanup.
func openAt(t *testing.T, u string) *Store {
	t.Helper()
	s, err := Open(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// urls remembers which URL each test store was opened with.
var urls sync.Map // *Store → string

func TestConformance(t *testing.T) {
	testURL(t)
	open := func(t *testing.T, u string) store.Store {
		s := openAt(t, u)
		urls.Store(s, u)
		return s
	}
	storetest.Run(t, storetest.Opener{
		Open: func(t *testing.T) store.Store { return open(t, freshSchema(t)) },
		Reopen: func(t *testing.T, old store.Store) store.Store {
			u, _ := urls.Load(old)
			old.Close()
			return open(t, u.(string))
		},
		OpenReplica: func(t *testing.T, s store.Store) store.Store {
			u, _ := urls.Load(s)
			return open(t, u.(string))
		},
	})
}

func TestOpen_NewerSchemaRefused(t *testing.T) {
	u := freshSchema(t)
	s := openAt(t, u)
	if _, err := s.pool.Exec(context.Background(), `INSERT INTO schema_version (version) VALUES (99)`); err != nil {
		t.Fatal(err)
	}
	if s2, err := Open(context.Background(), u); err == nil {
		s2.Close()
		t.Fatal("opened a database from a newer moe")
	} else if !strings.Contains(err.Error(), "newer than this moe") {
		t.Errorf("err = %v", err)
	}
}

// Replicas that start together migrate once (the advisory lock).
func TestOpen_ConcurrentMigrations(t *testing.T) {
	u := freshSchema(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := Open(context.Background(), u)
			if err != nil {
				errs <- err
				return
			}
			s.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	s := openAt(t, u)
	var n int
	s.pool.QueryRow(context.Background(), `SELECT count(*) FROM schema_version`).Scan(&n)
	if want := len(must(loadMigrations())); n != want {
		t.Errorf("schema_version has %d rows, want %d", n, want)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestOpen_BadURLHidesPassword(t *testing.T) {
	_, err := Open(context.Background(), "postgres://moe:s3cret-pw@127.0.0.1:1/moe?connect_timeout=1&sslmode=disable")
	if err == nil {
		t.Fatal("opened a server that is not there")
	}
	if strings.Contains(err.Error(), "s3cret-pw") {
		t.Errorf("error leaks the password: %v", err)
	}
}

// The listener reconnects after its connection is killed, announces the
// gap, and then relays changes from other replicas again.
func TestListener_Reconnects(t *testing.T) {
	u := freshSchema(t)
	a := openAt(t, u)
	b := openAt(t, u)
	ch, stop := a.Subscribe()
	defer stop()
	ctx := context.Background()

	old := a.listenerPID.Load()
	var killed bool
	if err := b.pool.QueryRow(ctx, `SELECT pg_terminate_backend($1)`, int32(old)).Scan(&killed); err != nil || !killed {
		t.Fatalf("terminate listener backend %d: %v %v", old, killed, err)
	}
	select {
	case <-ch: // the reconnect says "something may have changed"
	case <-time.After(5 * time.Second):
		t.Fatal("no wake-up after the listener reconnected")
	}
	if pid := a.listenerPID.Load(); pid == 0 || pid == old {
		t.Fatalf("listener pid %d after reconnect (was %d)", pid, old)
	}
	if err := b.CreateEndpoint(ctx, &store.Endpoint{Spec: spec.Endpoint{Name: "after"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(time.Second):
		t.Fatal("no change notification within 1s after reconnect")
	}
}

// A listener that hears nothing for keepalive pings its connection and
// keeps relaying afterwards (timeouts do not break the connection).
func TestListener_KeepalivePing(t *testing.T) {
	u := freshSchema(t)
	defer func(k time.Duration) { keepalive = k }(keepalive)
	keepalive = 20 * time.Millisecond
	a := openAt(t, u)
	b := openAt(t, u)
	ch, stop := a.Subscribe()
	defer stop()
	pid := a.listenerPID.Load()
	time.Sleep(300 * time.Millisecond) // many idle timeouts and pings
	if now := a.listenerPID.Load(); now != pid {
		t.Fatalf("listener reconnected while idle (pid %d, was %d)", now, pid)
	}
	if err := b.CreateEndpoint(context.Background(), &store.Endpoint{Spec: spec.Endpoint{Name: "idle"}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(time.Second):
		t.Fatal("no change notification within 1s")
	}
}

func TestClose_StopsListener(t *testing.T) {
	u := freshSchema(t)
	for range 3 {
		s, err := Open(context.Background(), u)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		s.Close() // twice is fine
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "postgres.(*Store).listen") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("listener goroutine still running after Close:\n%s", stacks)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestErrors_NameTheThing(t *testing.T) {
	s := openAt(t, freshSchema(t))
	ctx := context.Background()
	_, err := s.GetDeployment(ctx, "fraud", "blue")
	if !errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), `"blue"`) || !strings.Contains(err.Error(), `"fraud"`) {
		t.Errorf("err = %v", err)
	}
	s.CreateEndpoint(ctx, &store.Endpoint{Spec: spec.Endpoint{Name: "fraud"}})
	err = s.CreateEndpoint(ctx, &store.Endpoint{Spec: spec.Endpoint{Name: "fraud"}})
	if !errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), `create endpoint "fraud"`) {
		t.Errorf("err = %v", err)
	}
}

func TestChannelName(t *testing.T) {
	if got := channelName("public"); got != "moe_store.public" {
		t.Errorf("got %q", got)
	}
	if got := channelName(strings.Repeat("x", 80)); len(got) > 63 {
		t.Errorf("channel %q is longer than an identifier", got)
	}
}
