package routesource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/moe-serving/moe/internal/gateway"
	"github.com/moe-serving/moe/internal/reconcile"
	"github.com/moe-serving/moe/internal/store"
)

// Follower keeps a gateway's route table in step with the shared store and
// an instance source (Slices in a cluster): it rebuilds the table with
// reconcile.BuildRoutes on every store change (Store.Subscribe), every
// instance change, and every Resync, and hands it to OnRoutes. It only
// reads the store.
//
// When the store cannot be read, the table is rebuilt from the last records
// read successfully and the current instances — a pod that stops being
// ready still leaves the table — and reading is retried with backoff; until
// the first successful read there is no table and Ready fails.
type Follower struct {
	Store store.Store
	// Instances lists the observed instances; Changes (optional) fires when
	// they change.
	Instances func() []reconcile.Instance
	Changes   <-chan struct{}
	// Keys opens a key endpoint's keys (api.Server.OpenKeys).
	Keys reconcile.KeyOpener
	// Share (optional) is the number of gateway replicas splitting the
	// traffic (Peers.Count); every table is scaled with ShareLimits.
	// ShareChanges fires when it changes.
	Share        func() int
	ShareChanges <-chan struct{}
	// OnRoutes receives every new table (gateway.Server.SetRoutes).
	OnRoutes func(*gateway.Table)
	// Resync rebuilds this often even without a change notification (a
	// missed NOTIFY, a store reconnect); default 30 s.
	Resync time.Duration
	// Timeout bounds one read of the store; default 10 s.
	Timeout time.Duration
	Logger  *slog.Logger

	mu      sync.Mutex // serializes Rebuild and guards what follows
	routes  *gateway.Table
	eps     []*store.Endpoint
	deps    []*store.Deployment
	loaded  bool      // eps/deps were read at least once
	lastErr error     // the last store error (nil after a good read)
	errText string    // BuildRoutes' errors last logged
	readAt  time.Time // last successful store read
	share   int       // the last Share() seen, for the log

	pub    sync.Mutex // guards the copies Routes and Ready read, so they never wait for the store
	pubT   *gateway.Table
	pubErr error
}

// ErrNoRoutes is Ready's error before the first table.
var ErrNoRoutes = errors.New("no route table yet: the store has not been read")

// Run follows until ctx ends, then returns nil.
func (f *Follower) Run(ctx context.Context) error {
	if f.Resync <= 0 {
		f.Resync = 30 * time.Second
	}
	if f.Timeout <= 0 {
		f.Timeout = 10 * time.Second
	}
	if f.Logger == nil {
		f.Logger = slog.Default()
	}
	sub, cancel := f.Store.Subscribe()
	defer cancel()
	changes := f.Changes
	if changes == nil {
		changes = make(chan struct{})
	}
	shareChanges := f.ShareChanges
	if shareChanges == nil {
		shareChanges = make(chan struct{})
	}
	const minRetry = 500 * time.Millisecond
	retry := minRetry
	t := time.NewTimer(0)
	defer t.Stop()
	readStore := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sub:
			readStore = true
		case <-changes:
		case <-shareChanges:
		case <-t.C:
			readStore = true
		}
		if err := f.Rebuild(ctx, readStore); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// Serve what we have; try the store again soon.
			t.Reset(retry)
			retry = min(2*retry, f.Resync)
			readStore = true
			continue
		}
		retry = minRetry
		readStore = false
		t.Reset(f.Resync)
	}
}

// Rebuild builds and publishes a table now: from a fresh read of the store
// when readStore is set (or nothing was read yet), else from the last
// records. It returns the store's error, after publishing a table from the
// last good records if there are any.
func (f *Follower) Rebuild(ctx context.Context, readStore bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var serr error
	if readStore || !f.loaded {
		rctx, cancel := context.WithTimeout(ctx, f.timeout())
		eps, err := f.Store.ListEndpoints(rctx)
		var deps []*store.Deployment
		if err == nil {
			deps, err = f.Store.ListDeployments(rctx, "")
		}
		cancel()
		if err != nil {
			serr = fmt.Errorf("read the store: %w", err)
			if f.lastErr == nil || f.lastErr.Error() != serr.Error() {
				if f.loaded {
					f.logger().Warn("cannot read the store; serving the routes last read from it", "err", err, "last_read", f.readAt)
				} else {
					f.logger().Warn("cannot read the store; no route table yet", "err", err)
				}
			}
			f.lastErr = serr
		} else {
			if f.lastErr != nil {
				f.logger().Info("reading the store again")
			}
			f.eps, f.deps, f.loaded, f.lastErr, f.readAt = eps, deps, true, nil, time.Now()
		}
	}
	if !f.loaded {
		f.pub.Lock()
		f.pubErr = serr
		f.pub.Unlock()
		return serr
	}
	t, errs := reconcile.BuildRoutes(f.eps, f.deps, f.Instances(), f.Keys, f.routes)
	if f.Share != nil {
		n := f.Share()
		if n != f.share {
			f.logger().Info("gateway replicas sharing the traffic; each enforces its share of the limits", "replicas", n)
			f.share = n
		}
		ShareLimits(t, n)
	}
	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	slices.Sort(msgs)
	if text := strings.Join(msgs, "; "); text != f.errText {
		f.errText = text
		for _, e := range errs {
			f.logger().Error("route table", "err", e)
		}
	}
	f.routes = t
	f.pub.Lock()
	f.pubT, f.pubErr = t, serr
	f.pub.Unlock()
	if f.OnRoutes != nil {
		f.OnRoutes(t)
	}
	return serr
}

func (f *Follower) timeout() time.Duration {
	if f.Timeout <= 0 {
		return 10 * time.Second
	}
	return f.Timeout
}

func (f *Follower) logger() *slog.Logger {
	if f.Logger == nil {
		return slog.Default()
	}
	return f.Logger
}

// Routes returns the last table published (nil before the first).
func (f *Follower) Routes() *gateway.Table {
	f.pub.Lock()
	defer f.pub.Unlock()
	return f.pubT
}

// Ready returns nil once a table was published (a later store outage does
// not undo it: the gateway keeps serving the last table), else why not.
func (f *Follower) Ready() error {
	f.pub.Lock()
	defer f.pub.Unlock()
	if f.pubT == nil {
		if f.pubErr != nil {
			return fmt.Errorf("%w (%v)", ErrNoRoutes, f.pubErr)
		}
		return ErrNoRoutes
	}
	return nil
}
