package stats

import "time"

// The latency histogram has fixed log-spaced buckets: bucket 0 holds
// durations below minBound, bucket i (1 ≤ i < numBuckets-1) holds
// [bound(i-1), bound(i)), and the last bucket holds everything from
// bound(numBuckets-2) up. Bounds grow by 2^(1/3) (≈ 26 %), so a percentile
// interpolated inside its bucket is off by less than one bucket width (and
// typically a few percent when many requests fall in it), from 50 µs to
// about 210 s. A histogram is a fixed array: merging and clearing cost
// no allocation.
const (
	numBuckets = 68
	minBound   = 50 * time.Microsecond
)

// bounds[i] is the exclusive upper bound of bucket i, in nanoseconds.
var bounds = func() [numBuckets - 1]int64 {
	var b [numBuckets - 1]int64
	// 2^(1/3) steps computed by repeated multiplication of the three
	// residues, so each doubling lands exactly on minBound·2^k.
	third := [3]float64{1, 1.2599210498948732, 1.5874010519681994}
	for i := range b {
		b[i] = int64(float64(minBound) * float64(int64(1)<<(i/3)) * third[i%3])
	}
	return b
}()

// histogram counts durations per bucket.
type histogram [numBuckets]uint32

// bucketOf returns the bucket index of d by binary search over bounds.
func bucketOf(d time.Duration) int {
	ns := int64(d)
	lo, hi := 0, len(bounds) // answer in [lo, hi]
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if ns < bounds[mid] {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

func (h *histogram) add(d time.Duration) { h[bucketOf(d)]++ }

// quantile returns the q-quantile (0 < q ≤ 1) of the histogram h holding
// total values, in milliseconds, linearly interpolated inside its bucket as
// Prometheus' histogram_quantile does; the open last bucket answers its
// lower bound. It returns 0 for an empty histogram.
func quantile[T uint32 | uint64](h []T, q float64, total uint64) float64 {
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var cum float64
	for i, c := range h {
		if c == 0 {
			continue
		}
		if cum+float64(c) >= rank {
			lo := lowerBound(i)
			if i == numBuckets-1 {
				return lo / 1e6
			}
			hi := float64(bounds[i])
			return (lo + (hi-lo)*(rank-cum)/float64(c)) / 1e6
		}
		cum += float64(c)
	}
	return lowerBound(numBuckets-1) / 1e6
}

func lowerBound(i int) float64 {
	if i == 0 {
		return 0
	}
	return float64(bounds[i-1])
}
