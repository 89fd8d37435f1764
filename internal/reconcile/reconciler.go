package reconcile

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/moe-serving/moe/internal/gateway"
	"github.com/moe-serving/moe/internal/spec"
	"github.com/moe-serving/moe/internal/store"
)

// Reconciler is the loop that applies Plan to every stored deployment.
type Reconciler struct {
	Store  store.Store
	Runner Runner
	// Keys opens sealed endpoint keys for the route table.
	Keys KeyOpener
	// OnRoutes receives every new route table (the gateway's SetRoutes).
	OnRoutes func(*gateway.Table)
	// Queued reports requests waiting in the gateway for a deployment's
	// instances; the autoscaler counts them as demand. Nil means none.
	Queued func(endpoint, deployment string) int64
	// DrainDelay is how long a replaced instance keeps running after the
	// route table without it is published; default 1s.
	DrainDelay time.Duration
	// Interval is the resync period besides change notifications; default 1s.
	Interval time.Duration
	Logger   *slog.Logger

	mu       sync.Mutex
	scaler   Autoscaler
	stopping map[string]bool // instance IDs with a stop in progress
	routes   *gateway.Table
	wg       sync.WaitGroup
}

// Run reconciles until ctx is done, then waits for the stops it started.
// Instances are left running on return: stopping them all is the caller's
// choice (StopAll), so a restart can re-adopt them.
func (r *Reconciler) Run(ctx context.Context) error {
	if r.DrainDelay == 0 {
		r.DrainDelay = time.Second
	}
	if r.Interval == 0 {
		r.Interval = time.Second
	}
	if r.Logger == nil {
		r.Logger = slog.Default()
	}
	r.mu.Lock()
	r.stopping = map[string]bool{}
	r.mu.Unlock()
	changes, cancel := r.Store.Subscribe()
	defer cancel()
	tick := time.NewTicker(r.Interval)
	defer tick.Stop()
	defer r.wg.Wait()
	for {
		if err := r.Pass(ctx); err != nil && ctx.Err() == nil {
			r.Logger.Warn("reconcile pass", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changes:
		case <-r.Runner.Changes():
		case <-tick.C:
		}
	}
}

// Pass runs one reconciliation over every deployment.
func (r *Reconciler) Pass(ctx context.Context) error {
	eps, err := r.Store.ListEndpoints(ctx)
	if err != nil {
		return err
	}
	deps, err := r.Store.ListDeployments(ctx, "")
	if err != nil {
		return err
	}
	observed := r.Runner.Instances()
	r.mu.Lock()
	var live []Instance
	for _, in := range observed {
		if !r.stopping[in.ID] {
			live = append(live, in)
		}
	}
	r.mu.Unlock()
	byDep := map[string][]Instance{}
	for _, in := range live {
		k := key(in.Endpoint, in.Deployment)
		byDep[k] = append(byDep[k], in)
	}
	var errs []error
	known := map[string]bool{}
	var drains []Action
	decs := make([]Decision, len(deps))
	routed := make([]*store.Deployment, len(deps))
	for i, d := range deps {
		k := key(d.Endpoint, d.Name)
		known[k] = true
		decs[i] = Plan(d, byDep[k], r.want(d, byDep[k]), newID(d.Name))
		for _, a := range decs[i].Actions {
			if a.Kind == ActStop && a.Drain {
				drains = append(drains, a) // after the new routes are out
				continue
			}
			r.apply(ctx, a)
		}
		routed[i] = d
		if decs[i].Promote {
			// route to the promoted revision before the store says it is
			// active, so a client that sees "Succeeded" reaches it
			c := *d
			rev := d.Desired
			c.Active = &rev
			routed[i] = &c
		}
	}
	for _, in := range live {
		if !known[key(in.Endpoint, in.Deployment)] {
			r.apply(ctx, Action{Kind: ActStop, ID: in.ID, Drain: in.Phase == PhaseReady})
		}
	}
	// Drained instances are marked stopping now, so the table published
	// below leaves them out; they stop after DrainDelay, once the gateway
	// has stopped sending them requests.
	for _, a := range drains {
		r.apply(ctx, a)
	}
	if r.OnRoutes != nil {
		r.mu.Lock()
		var serving []Instance
		for _, in := range r.Runner.Instances() {
			if !r.stopping[in.ID] {
				serving = append(serving, in)
			}
		}
		t, kerrs := BuildRoutes(eps, routed, serving, r.Keys, r.routes)
		r.routes = t
		r.mu.Unlock()
		errs = append(errs, kerrs...)
		r.OnRoutes(t)
	}
	for i, d := range deps {
		if err := r.record(ctx, d, decs[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// want is the instance count for d's desired revision: instance_count,
// or for target_utilization the autoscaler's decision from the requests in
// flight that the gateway counts per instance.
func (r *Reconciler) want(d *store.Deployment, observed []Instance) int {
	ss := d.Desired.Spec.ScaleSettings
	k := key(d.Endpoint, d.Name)
	if ss == nil || ss.Type != spec.ScaleTargetUtilization || d.Active == nil || d.Active.Generation != d.Desired.Generation {
		r.mu.Lock()
		r.scaler.Forget(k)
		r.mu.Unlock()
		return wantInstances(&d.Desired.Spec)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	inflight, current := 0.0, 0
	if t := r.routes; t != nil {
		if e := t.Endpoints[strings.ToLower(d.Endpoint)]; e != nil {
			if gd := e.Deployments[strings.ToLower(d.Name)]; gd != nil {
				for _, in := range gd.Instances {
					inflight += float64(in.Outstanding.Load())
				}
			}
		}
	}
	if r.Queued != nil {
		inflight += float64(r.Queued(d.Endpoint, d.Name))
	}
	for _, in := range observed {
		if in.Generation == d.Desired.Generation && in.Phase != PhaseFailed {
			current++
		}
	}
	now := time.Now()
	r.scaler.Observe(k, now, inflight)
	maxConc := 1
	if rs := d.Desired.Spec.RequestSettings; rs != nil {
		maxConc = rs.MaxConcurrentRequestsPerInstance
	}
	n := r.scaler.Desired(k, ss, maxConc, current, now)
	if n != current {
		r.Logger.Info("autoscale", "endpoint", d.Endpoint, "deployment", d.Name, "from", current, "to", n, "in_flight", inflight)
	}
	return n
}

// Routes returns the last route table published.
func (r *Reconciler) Routes() *gateway.Table {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.routes
}

func (r *Reconciler) apply(ctx context.Context, a Action) {
	switch a.Kind {
	case ActStart:
		r.Logger.Info("start instance", "endpoint", a.Spec.Endpoint, "deployment", a.Spec.Deployment, "instance", a.Spec.ID, "generation", a.Spec.Revision.Generation)
		if err := r.Runner.Start(ctx, a.Spec); err != nil {
			r.Logger.Error("start instance", "endpoint", a.Spec.Endpoint, "deployment", a.Spec.Deployment, "instance", a.Spec.ID, "err", err)
		}
	case ActStop:
		r.mu.Lock()
		if r.stopping[a.ID] {
			r.mu.Unlock()
			return
		}
		r.stopping[a.ID] = true
		r.mu.Unlock()
		delay := time.Duration(0)
		if a.Drain {
			delay = r.DrainDelay
		}
		r.wg.Go(func() {
			defer func() {
				r.mu.Lock()
				delete(r.stopping, a.ID)
				r.mu.Unlock()
			}()
			if delay > 0 {
				select {
				case <-time.After(delay):
				case <-ctx.Done():
					return
				}
			}
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
			defer cancel()
			r.Logger.Info("stop instance", "instance", a.ID)
			if err := r.Runner.Stop(sctx, a.ID); err != nil {
				r.Logger.Warn("stop instance", "instance", a.ID, "err", err)
			}
		})
	}
}

// record stores the decision's status if it changed.
func (r *Reconciler) record(ctx context.Context, d *store.Deployment, dec Decision) error {
	c := *d
	c.State, c.Error = dec.State, dec.Error
	if dec.State != spec.StateFailed {
		c.Error = ""
	}
	if dec.FailedGeneration != 0 {
		c.FailedGeneration = dec.FailedGeneration
	}
	promoteTraffic := false
	if dec.Promote {
		rev := d.Desired
		c.Active = &rev
		if c.AllTraffic {
			c.AllTraffic = false
			promoteTraffic = true
		}
	}
	if c.State == d.State && c.Error == d.Error && c.FailedGeneration == d.FailedGeneration && !dec.Promote {
		return nil
	}
	if err := r.Store.UpdateDeployment(ctx, &c); err != nil {
		return err
	}
	if dec.Promote {
		r.Logger.Info("deployment ready", "endpoint", d.Endpoint, "deployment", d.Name, "generation", d.Desired.Generation)
	}
	if dec.State == spec.StateFailed && d.State != spec.StateFailed {
		r.Logger.Warn("deployment failed", "endpoint", d.Endpoint, "deployment", d.Name, "err", dec.Error)
	}
	if promoteTraffic {
		return r.allTraffic(ctx, d.Endpoint, d.Name)
	}
	return nil
}

func (r *Reconciler) allTraffic(ctx context.Context, endpoint, deployment string) error {
	for range 5 {
		e, err := r.Store.GetEndpoint(ctx, endpoint)
		if err != nil {
			return err
		}
		t := map[string]int{}
		for k := range maps.Keys(e.Spec.Traffic) {
			t[k] = 0
		}
		t[strings.ToLower(deployment)] = 100
		e.Spec.Traffic = t
		delete(e.Spec.MirrorTraffic, strings.ToLower(deployment))
		if err := r.Store.UpdateEndpoint(ctx, e); errors.Is(err, store.ErrConflict) {
			continue
		} else {
			return err
		}
	}
	return store.ErrConflict
}

func newID(deployment string) func() string {
	return func() string {
		var b [3]byte
		rand.Read(b[:])
		return deployment + "-" + hex.EncodeToString(b[:])
	}
}
