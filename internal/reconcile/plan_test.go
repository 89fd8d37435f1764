package reconcile

import (
	"cmp"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/moe-serving/moe/internal/spec"
	"github.com/moe-serving/moe/internal/store"
)

func rev(gen int64, count int) store.Revision {
	return store.Revision{Generation: gen, Spec: spec.Deployment{Name: "blue", EndpointName: "ep", InstanceCount: count}}
}

func inst(id string, gen int64, ph Phase) Instance {
	return Instance{ID: id, Endpoint: "ep", Deployment: "blue", Generation: gen, Phase: ph, Addr: "127.0.0.1:1", Reason: "reason of " + id}
}

// summary renders actions compactly: "start g2", "stop a", "drain a".
func summary(acts []Action) []string {
	var out []string
	for _, a := range acts {
		switch {
		case a.Kind == ActStart:
			out = append(out, fmt.Sprintf("start g%d", a.Spec.Revision.Generation))
		case a.Drain:
			out = append(out, "drain "+a.ID)
		default:
			out = append(out, "stop "+a.ID)
		}
	}
	slices.Sort(out)
	return out
}

func TestPlan(t *testing.T) {
	active := func(r store.Revision) *store.Revision { return &r }
	for _, tc := range []struct {
		name        string
		dep         store.Deployment
		observed    []Instance
		want        []string
		state       string
		promote     bool
		failedGen   int64
		errContains string
		wantN       int // 0: from the spec
	}{
		{
			name:  "CreateStartsInstanceCount",
			dep:   store.Deployment{Desired: rev(1, 2), State: spec.StateCreating},
			want:  []string{"start g1", "start g1"},
			state: spec.StateCreating,
		},
		{
			name:     "CreateWaitsWhileStarting",
			dep:      store.Deployment{Desired: rev(1, 2)},
			observed: []Instance{inst("a", 1, PhaseReady), inst("b", 1, PhaseStarting)},
			state:    spec.StateCreating,
		},
		{
			name:     "CreatePromotesWhenAllReady",
			dep:      store.Deployment{Desired: rev(1, 2)},
			observed: []Instance{inst("a", 1, PhaseReady), inst("b", 1, PhaseReady)},
			state:    spec.StateSucceeded, promote: true,
		},
		{
			name:     "CreateFailsOnInitFailure",
			dep:      store.Deployment{Desired: rev(1, 2)},
			observed: []Instance{inst("a", 1, PhaseFailed), inst("b", 1, PhaseStarting)},
			want:     []string{"stop a", "stop b"},
			state:    spec.StateFailed, failedGen: 1, errContains: "reason of a",
		},
		{
			name:     "FailedGenerationIsNotRetried",
			dep:      store.Deployment{Desired: rev(1, 1), FailedGeneration: 1, State: spec.StateFailed, Error: "boom"},
			state:    spec.StateFailed,
			observed: nil, errContains: "boom",
		},
		{
			name:     "SteadyStateReplacesCrashedAndKeepsCount",
			dep:      store.Deployment{Desired: rev(1, 2), Active: active(rev(1, 2))},
			observed: []Instance{inst("a", 1, PhaseReady), inst("b", 1, PhaseFailed)},
			want:     []string{"start g1", "stop b"},
			state:    spec.StateSucceeded,
		},
		{
			name:     "ScaleDownStopsNotReadyFirst",
			dep:      store.Deployment{Desired: rev(1, 1), Active: active(rev(1, 1))},
			observed: []Instance{inst("a", 1, PhaseReady), inst("b", 1, PhaseStarting)},
			want:     []string{"stop b"},
			state:    spec.StateSucceeded,
		},
		{
			name:     "ScaleDownDrainsReady",
			dep:      store.Deployment{Desired: rev(1, 1), Active: active(rev(1, 1))},
			observed: []Instance{inst("a", 1, PhaseReady), inst("b", 1, PhaseReady)},
			want:     []string{"drain a"},
			state:    spec.StateSucceeded,
		},
		{
			name:     "UpdateStartsNewBesideOld",
			dep:      store.Deployment{Desired: rev(2, 1), Active: active(rev(1, 1))},
			observed: []Instance{inst("old", 1, PhaseReady)},
			want:     []string{"start g2"},
			state:    spec.StateUpdating,
		},
		{
			name:     "UpdatePromotesAndDrainsOld",
			dep:      store.Deployment{Desired: rev(2, 1), Active: active(rev(1, 1))},
			observed: []Instance{inst("old", 1, PhaseReady), inst("new", 2, PhaseReady)},
			want:     []string{"drain old"},
			state:    spec.StateSucceeded, promote: true,
		},
		{
			name:     "FailedUpdateKeepsOldServing",
			dep:      store.Deployment{Desired: rev(2, 1), Active: active(rev(1, 1))},
			observed: []Instance{inst("old", 1, PhaseReady), inst("new", 2, PhaseFailed)},
			want:     []string{"stop new"},
			state:    spec.StateFailed, failedGen: 2, errContains: "previous version keeps serving",
		},
		{
			name:     "AfterFailedUpdateOldCountIsKept",
			dep:      store.Deployment{Desired: rev(2, 1), Active: active(rev(1, 2)), FailedGeneration: 2, State: spec.StateFailed, Error: "x"},
			observed: []Instance{inst("old", 1, PhaseReady)},
			want:     []string{"start g1"},
			state:    spec.StateFailed,
		},
		{
			name:     "StaleGenerationsStop",
			dep:      store.Deployment{Desired: rev(3, 1), Active: active(rev(3, 1))},
			observed: []Instance{inst("cur", 3, PhaseReady), inst("ancient", 1, PhaseReady), inst("bad", 2, PhaseFailed)},
			want:     []string{"drain ancient", "stop bad"},
			state:    spec.StateSucceeded,
		},
		{
			name:     "AutoscalerGrowsSteadyDeployment",
			dep:      store.Deployment{Desired: rev(1, 1), Active: active(rev(1, 1))},
			observed: []Instance{inst("a", 1, PhaseReady)},
			want:     []string{"start g1", "start g1"},
			state:    spec.StateSucceeded, wantN: 3,
		},
		{
			name: "AutoscaleStartsMinInstances",
			dep: store.Deployment{Desired: store.Revision{Generation: 1, Spec: spec.Deployment{
				ScaleSettings: &spec.ScaleSettings{Type: spec.ScaleTargetUtilization, MinInstances: 2, MaxInstances: 4}}}},
			want:  []string{"start g1", "start g1"},
			state: spec.StateCreating,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.dep.Endpoint, tc.dep.Name = "ep", "blue"
			n := 0
			dec := Plan(&tc.dep, tc.observed, cmp.Or(tc.wantN, wantInstances(&tc.dep.Desired.Spec)), func() string { n++; return fmt.Sprintf("id%d", n) })
			if got := summary(dec.Actions); !slices.Equal(got, tc.want) {
				t.Errorf("actions = %v; want %v", got, tc.want)
			}
			if dec.State != tc.state || dec.Promote != tc.promote || dec.FailedGeneration != tc.failedGen {
				t.Errorf("state %q promote %v failedGen %d; want %q %v %d", dec.State, dec.Promote, dec.FailedGeneration, tc.state, tc.promote, tc.failedGen)
			}
			if !strings.Contains(dec.Error, tc.errContains) {
				t.Errorf("error %q does not contain %q", dec.Error, tc.errContains)
			}
		})
	}
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
