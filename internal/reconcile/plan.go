// Package reconcile drives stored desired state (endpoints, deployments)
// into running instances through a Runner, reports provisioning states back
// to the store, and builds the gateway's route table from what is ready.
//
// The decision is a pure function, Plan, tested with tables; Reconciler.Run
// is the thin loop that applies its actions.
package reconcile

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/moe-serving/moe/internal/spec"
	"github.com/moe-serving/moe/internal/store"
)

// Phase is an instance's lifecycle phase as a Runner reports it.
type Phase string

// Instance phases.
const (
	// PhaseStarting: the process is starting, preparing its environment,
	// running init(), or restarting after a crash.
	PhaseStarting Phase = "Starting"
	// PhaseReady: the instance serves requests.
	PhaseReady Phase = "Ready"
	// PhaseFailed: the instance could not start (environment, init(),
	// import error...); Reason says why. Runners do not retry it.
	PhaseFailed Phase = "Failed"
	// PhaseStopping: a graceful stop is in progress.
	PhaseStopping Phase = "Stopping"
)

// InstanceSpec is what a Runner needs to start one instance.
type InstanceSpec struct {
	ID         string
	Endpoint   string
	Deployment string
	Revision   store.Revision
}

// Instance is a Runner's view of one instance.
type Instance struct {
	ID         string    `json:"id"`
	Endpoint   string    `json:"endpoint"`
	Deployment string    `json:"deployment"`
	Generation int64     `json:"generation"`
	Addr       string    `json:"addr,omitempty"`
	Phase      Phase     `json:"phase"`
	Reason     string    `json:"reason,omitempty"`
	Restarts   int       `json:"restarts"`
	StartedAt  time.Time `json:"started_at"`
	// Resources describes the instance's CPU/memory limits and whether they
	// are enforced or advisory.
	Resources string `json:"resources,omitempty"`
	// Adopted is true for an instance found running after a restart of the
	// server and taken over rather than restarted.
	Adopted bool `json:"adopted,omitempty"`
}

// Runner runs instances: local processes, or pods on Kubernetes.
// Implementations are safe for concurrent use.
type Runner interface {
	// Start begins starting an instance and returns at once; progress and
	// failure show in Instances. Crashes after the instance was ready are
	// the Runner's to restart (with backoff).
	Start(ctx context.Context, s InstanceSpec) error
	// Stop stops an instance gracefully (in-flight requests finish) and
	// forgets it; it blocks until the instance is gone or ctx is done.
	Stop(ctx context.Context, id string) error
	// Instances lists every known instance.
	Instances() []Instance
	// Changes receives a value (coalesced) when an instance changes phase.
	Changes() <-chan struct{}
}

// ActionKind says what an Action does.
type ActionKind string

// Action kinds.
const (
	ActStart ActionKind = "start"
	ActStop  ActionKind = "stop"
)

// Action is one step for the loop to carry out.
type Action struct {
	Kind ActionKind
	// Spec is set for ActStart.
	Spec InstanceSpec
	// ID is set for ActStop.
	ID string
	// Drain delays a stop so the gateway's new route table (without this
	// instance) is in force before the instance shuts down.
	Drain bool
}

func (a Action) String() string {
	if a.Kind == ActStart {
		return fmt.Sprintf("start %s/%s gen %d", a.Spec.Endpoint, a.Spec.Deployment, a.Spec.Revision.Generation)
	}
	if a.Drain {
		return "drain+stop " + a.ID
	}
	return "stop " + a.ID
}

// Decision is Plan's result: actions plus the deployment status to store.
type Decision struct {
	Actions []Action
	State   string
	Error   string
	// Promote is true when Desired became ready and must become Active.
	Promote bool
	// FailedGeneration is the generation to record as failed (0: none).
	FailedGeneration int64
}

// Plan decides, for one stored deployment and the instances observed for
// it, which instances to start and stop and what status to record. It is
// pure: newID supplies instance IDs. want is the instance count for the
// Desired revision (instance_count, or the autoscaler's decision).
//
// Rules: the Desired revision gets instance_count instances. While it is
// not ready, the Active revision (if any) keeps serving with its own count.
// When every Desired instance is ready, Desired is promoted and the old
// instances drain and stop. If a Desired instance fails to start, the
// generation is marked failed (not retried), its instances stop, and the
// Active revision keeps serving.
func Plan(d *store.Deployment, observed []Instance, want int, newID func() string) Decision {
	g := d.Desired.Generation
	var cur, act, stale []Instance
	activeGen := int64(-1)
	if d.Active != nil {
		activeGen = d.Active.Generation
	}
	for _, in := range observed {
		switch {
		case in.Generation == g:
			cur = append(cur, in)
		case in.Generation == activeGen:
			act = append(act, in)
		default:
			stale = append(stale, in)
		}
	}
	var dec Decision
	for _, in := range stale {
		dec.Actions = append(dec.Actions, Action{Kind: ActStop, ID: in.ID, Drain: in.Phase == PhaseReady})
	}
	start := func(rev store.Revision, n int) {
		for range n {
			dec.Actions = append(dec.Actions, Action{Kind: ActStart, Spec: InstanceSpec{ID: newID(), Endpoint: d.Endpoint, Deployment: d.Name, Revision: rev}})
		}
	}
	// scale keeps n live instances of one revision: replaces failed ones,
	// starts missing ones, stops extras (not-ready first).
	scale := func(rev store.Revision, ins []Instance, n int, drain bool) {
		var live []Instance
		for _, in := range ins {
			if in.Phase == PhaseFailed {
				dec.Actions = append(dec.Actions, Action{Kind: ActStop, ID: in.ID})
				continue
			}
			live = append(live, in)
		}
		if len(live) < n {
			start(rev, n-len(live))
			return
		}
		sort.SliceStable(live, func(i, j int) bool { return live[i].Phase != PhaseReady && live[j].Phase == PhaseReady })
		for _, in := range live[:len(live)-n] {
			dec.Actions = append(dec.Actions, Action{Kind: ActStop, ID: in.ID, Drain: drain && in.Phase == PhaseReady})
		}
	}
	want = max(want, 1)
	switch {
	case d.FailedGeneration == g:
		// The desired revision failed: stop what is left of it; keep the
		// active revision (if any) at its count.
		for _, in := range cur {
			dec.Actions = append(dec.Actions, Action{Kind: ActStop, ID: in.ID})
		}
		if d.Active != nil && activeGen != g {
			scale(*d.Active, act, wantInstances(&d.Active.Spec), true)
		}
		dec.State, dec.Error = spec.StateFailed, d.Error
	case activeGen == g:
		scale(d.Desired, cur, want, true)
		dec.State = spec.StateSucceeded
	default:
		var failed []string
		ready := 0
		for _, in := range cur {
			switch in.Phase {
			case PhaseFailed:
				failed = append(failed, in.Reason)
			case PhaseReady:
				ready++
			}
		}
		if len(failed) > 0 {
			dec.FailedGeneration = g
			dec.State = spec.StateFailed
			dec.Error = failed[0]
			if d.Active != nil {
				dec.Error = fmt.Sprintf("update failed, the previous version keeps serving: %s", failed[0])
				scale(*d.Active, act, wantInstances(&d.Active.Spec), true)
			}
			for _, in := range cur {
				dec.Actions = append(dec.Actions, Action{Kind: ActStop, ID: in.ID})
			}
			return dec
		}
		if ready >= want && len(cur) >= want {
			dec.Promote = true
			dec.State = spec.StateSucceeded
			scale(d.Desired, cur, want, true)
			for _, in := range act {
				dec.Actions = append(dec.Actions, Action{Kind: ActStop, ID: in.ID, Drain: in.Phase == PhaseReady})
			}
			return dec
		}
		if d.Active == nil {
			dec.State = spec.StateCreating
		} else {
			dec.State = spec.StateUpdating
			scale(*d.Active, act, wantInstances(&d.Active.Spec), true)
		}
		if len(cur) < want {
			start(d.Desired, want-len(cur))
		}
	}
	return dec
}

// wantInstances is the instance count a revision runs at without autoscaling.
func wantInstances(s *spec.Deployment) int {
	if s.ScaleSettings != nil && s.ScaleSettings.Type == spec.ScaleTargetUtilization {
		return max(s.ScaleSettings.MinInstances, 1)
	}
	return max(s.InstanceCount, 1)
}

// key identifies a deployment.
func key(endpoint, deployment string) string {
	return strings.ToLower(endpoint) + "/" + strings.ToLower(deployment)
}
