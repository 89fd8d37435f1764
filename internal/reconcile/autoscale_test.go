package reconcile

import (
	"testing"
	"time"

	"github.com/moe-serving/moe/internal/spec"
)

func TestAutoscaler(t *testing.T) {
	ss := &spec.ScaleSettings{Type: spec.ScaleTargetUtilization, MinInstances: 1, MaxInstances: 5, TargetUtilizationPercentage: 70}
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		name    string
		load    []float64 // one sample per second, ending at "now"
		current int
		want    int
	}{
		{"NoDataKeepsCurrent", nil, 2, 2},
		{"IdleScalesToMin", repeat(0, 60), 3, 1},
		{"SteadyLoadAtTarget", repeat(1.4, 60), 2, 2},                                  // 1.4 / (1×0.7) = 2
		{"SteadyLoadAboveTarget", repeat(2.1, 60), 2, 3},                               // 2.1 / 0.7 = 3
		{"ClampedToMax", repeat(10, 60), 2, 5},                                         // wants 15
		{"BurstPanicsUpWithinSeconds", append(repeat(0.5, 54), repeat(4, 6)...), 1, 5}, // panic window wants 6 ≥ 2×1
		{"ShortDipDoesNotFlapDown", append(repeat(2.1, 55), repeat(0, 5)...), 3, 3},    // stable avg still ≈ 1.9 → 3
	} {
		t.Run(tc.name, func(t *testing.T) {
			var a Autoscaler
			now := t0
			for i, c := range tc.load {
				now = t0.Add(time.Duration(i) * time.Second)
				a.Observe("ep/blue", now, c)
			}
			if got := a.Desired("ep/blue", ss, 1, tc.current, now); got != tc.want {
				t.Errorf("Desired = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestAutoscalerPanicHoldsCount(t *testing.T) {
	ss := &spec.ScaleSettings{Type: spec.ScaleTargetUtilization, MinInstances: 1, MaxInstances: 10, TargetUtilizationPercentage: 100}
	var a Autoscaler
	t0 := time.Unix(0, 0)
	for i := range 6 {
		a.Observe("k", t0.Add(time.Duration(i)*time.Second), 4)
	}
	now := t0.Add(5 * time.Second)
	if got := a.Desired("k", ss, 1, 1, now); got != 4 {
		t.Fatalf("burst: Desired = %d, want 4", got)
	}
	// load vanishes: while panicking the count must not drop
	for i := 6; i < 20; i++ {
		a.Observe("k", t0.Add(time.Duration(i)*time.Second), 0)
	}
	if got := a.Desired("k", ss, 1, 4, t0.Add(19*time.Second)); got < 4 {
		t.Errorf("scaled down to %d during panic", got)
	}
	// after the stable window the count follows the (zero) load down
	for i := 20; i < 130; i++ {
		a.Observe("k", t0.Add(time.Duration(i)*time.Second), 0)
	}
	if got := a.Desired("k", ss, 1, 4, t0.Add(129*time.Second)); got != 1 {
		t.Errorf("after the burst: Desired = %d, want 1", got)
	}
}

func repeat(v float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}
