package gateway

import "math/rand/v2"

// pickWeighted chooses a deployment name at random, in proportion to the
// positive weights of traffic. ok is false when no weight is positive. It
// uses math/rand/v2's global generator, which is per-thread and takes no lock.
func pickWeighted(traffic []Weight) (name string, ok bool) {
	total := 0
	for _, w := range traffic {
		if w.Percent > 0 {
			total += w.Percent
		}
	}
	if total == 0 {
		return "", false
	}
	n := rand.IntN(total)
	for _, w := range traffic {
		if w.Percent <= 0 {
			continue
		}
		if n < w.Percent {
			return w.Deployment, true
		}
		n -= w.Percent
	}
	panic("unreachable") // n < total = sum of the positive weights
}

// leastOutstanding picks the instance with the fewest requests in flight,
// by the power of two random choices: two distinct instances at random, the
// less loaded one wins (ties go to the first drawn, itself random). With two
// instances that is an exact comparison; with more it avoids both a scan and
// the herd that an exact minimum sends to one instance. It returns nil for no
// instances.
func leastOutstanding(ins []*Instance) *Instance {
	switch n := len(ins); n {
	case 0:
		return nil
	case 1:
		return ins[0]
	default:
		i := rand.IntN(n)
		j := rand.IntN(n - 1)
		if j >= i {
			j++
		}
		a, b := ins[i], ins[j]
		if b.Outstanding.Load() < a.Outstanding.Load() {
			return b
		}
		return a
	}
}
