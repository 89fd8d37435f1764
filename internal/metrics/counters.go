package metrics

import (
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/moe-serving/moe/internal/api"
)

// ringSize is how many recent model times a deployment keeps for its p99.
const ringSize = 1024

// modelRing keeps the model time of the last ringSize requests that reached
// an instance. Writers overwrite the oldest slot; a reader may see a slot
// mid-rewrite by a concurrent request, which only mixes one new time in.
type modelRing struct {
	next  atomic.Uint64
	slots [ringSize]atomic.Int64
}

func (s *series) record(d time.Duration) {
	i := s.models.next.Add(1) - 1
	s.models.slots[i%ringSize].Store(int64(d))
}

// p99 returns the 99th percentile (nearest rank) of the kept model times, 0
// when there are none.
func (r *modelRing) p99() time.Duration {
	n := min(r.next.Load(), ringSize)
	if n == 0 {
		return 0
	}
	v := make([]int64, n)
	for i := range v {
		v[i] = r.slots[i].Load()
	}
	slices.Sort(v)
	return time.Duration(v[int(math.Ceil(0.99*float64(n)))-1])
}

// Counters returns what the gateway counted for a deployment since moe
// serve started (or since the deployment was last recreated): requests
// (shadow copies included), gateway timeouts (408), 429s, model errors
// (model status ≥ 500) and the p99 of the model time over the last 1024
// requests that reached an instance. It is api.Server.Counters, for
// diagnose. Names are compared as the gateway reports them (as stored).
func (m *Metrics) Counters(endpoint, deployment string) api.Counters {
	s, ok := m.series.load(seriesKey{endpoint, deployment})
	if !ok {
		return api.Counters{}
	}
	return api.Counters{
		Requests:    s.requests.Load(),
		Timeouts408: s.timeouts.Load(),
		Rejected429: s.rejected429.Load(),
		ModelErrors: s.modelErrors.Load(),
		ModelP99MS:  float64(s.models.p99().Microseconds()) / 1000,
	}
}
