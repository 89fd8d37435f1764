package gateway

import (
	"sync/atomic"
	"time"
)

// epState is an endpoint's state that outlives route tables: its rate
// bucket and mirror counters.
type epState struct {
	// tat is the rate bucket's theoretical arrival time (GCRA), in
	// nanoseconds since Server.epoch: the moment the bucket would be full
	// again if no request came.
	tat atomic.Int64

	mirrorSent, mirrorDropped, mirrorFailed atomic.Uint64
}

// allow takes one token from the endpoint's bucket at time now (since
// Server.epoch), for a limit of perSecond requests per second with a
// bucket of one second's worth. It is the generic cell rate algorithm: one
// atomic holds the whole bucket, and a compare-and-swap takes a token, so
// no lock is taken; a CAS only retries when another request took a token
// in between.
func (es *epState) allow(now time.Duration, perSecond int) bool {
	interval := int64(time.Second) / int64(perSecond)
	const burst = int64(time.Second) // one second's worth of tokens
	t := int64(now)
	for {
		tat := es.tat.Load()
		next := max(tat, t) + interval
		if next-t > burst {
			return false
		}
		if es.tat.CompareAndSwap(tat, next) {
			return true
		}
	}
}

// limitRate is the rate-limit step: 429 when the endpoint is over its
// MaxRequestsPerSecond.
func (s *Server) limitRate(x *exchange) error {
	ep := x.endpoint
	if ep.MaxRequestsPerSecond <= 0 {
		return nil
	}
	if x.rt.eps[ep].allow(x.start.Sub(s.epoch), ep.MaxRequestsPerSecond) {
		return nil
	}
	return errRateLimited(ep)
}
