package reconcile

import (
	"math"
	"time"

	"github.com/moe-serving/moe/internal/spec"
)

// Autoscale windows, after Knative's KPA: the stable window averages load
// to scale without flapping; the panic window (a tenth of it) reacts to
// bursts within seconds, and while panicking the count never goes down.
const (
	StableWindow   = 60 * time.Second
	PanicWindow    = 6 * time.Second
	PanicThreshold = 2.0 // panic when the panic-window demand is ≥ 2× the current count
)

// Autoscaler decides instance counts for target_utilization deployments
// from sampled concurrency (requests in flight). It is not safe for
// concurrent use; the reconcile loop owns it.
type Autoscaler struct {
	deps map[string]*scaleState
}

type sample struct {
	at          time.Time
	concurrency float64
}

type scaleState struct {
	samples    []sample
	panicUntil time.Time
	last       int
}

// Observe records the concurrency of one deployment at now.
func (a *Autoscaler) Observe(key string, now time.Time, concurrency float64) {
	if a.deps == nil {
		a.deps = map[string]*scaleState{}
	}
	st := a.deps[key]
	if st == nil {
		st = &scaleState{}
		a.deps[key] = st
	}
	st.samples = append(st.samples, sample{now, concurrency})
	cut := 0
	for cut < len(st.samples) && now.Sub(st.samples[cut].at) > StableWindow {
		cut++
	}
	st.samples = st.samples[cut:]
}

// Forget drops a deployment's state.
func (a *Autoscaler) Forget(key string) { delete(a.deps, key) }

// Desired returns the instance count for a deployment with scale settings
// ss and per-instance concurrency limit maxConc, currently running current
// instances. It returns current unchanged when there is no data yet.
func (a *Autoscaler) Desired(key string, ss *spec.ScaleSettings, maxConc, current int, now time.Time) int {
	st := a.deps[key]
	clamp := func(n int) int { return min(max(n, ss.MinInstances, 1), ss.MaxInstances) }
	if st == nil || len(st.samples) == 0 {
		return clamp(current)
	}
	perInstance := float64(max(maxConc, 1)) * float64(ss.TargetUtilizationPercentage) / 100
	avg := func(window time.Duration) float64 {
		sum, n := 0.0, 0
		for _, s := range st.samples {
			if now.Sub(s.at) <= window {
				sum += s.concurrency
				n++
			}
		}
		if n == 0 {
			return 0
		}
		return sum / float64(n)
	}
	stable := ceil(avg(StableWindow) / perInstance)
	panicN := ceil(avg(PanicWindow) / perInstance)
	if current > 0 && float64(panicN) >= PanicThreshold*float64(current) {
		st.panicUntil = now.Add(StableWindow)
	}
	want := stable
	if now.Before(st.panicUntil) {
		// in panic mode: follow the burst up at once, never scale down
		want = max(panicN, stable, current)
	}
	st.last = clamp(want)
	return st.last
}

// ceil rounds up, ignoring float noise (1.4/0.7 is 2.0000000000000004).
func ceil(x float64) int { return int(math.Ceil(x - 1e-9)) }
