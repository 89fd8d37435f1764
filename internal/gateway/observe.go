package gateway

import "time"

// Observation describes one finished scoring request, for metrics, the
// console's charts, diagnose and the autoscaler. The gateway fills it from
// the exchange without allocating and calls Config.Observer synchronously
// at the end of every request (after the answer is written), so observers
// must be fast and must not keep the pointer. Shadow copies are observed
// too, on the mirror worker that sent them, with Mirrored set.
type Observation struct {
	Endpoint, Deployment, Instance string
	// Status is what the client got; ModelStatus is the instance's own
	// status (0 when no instance answered).
	Status, ModelStatus int
	// Limit names the limit that made the gateway refuse the request with
	// 429 ("" otherwise): "max_concurrent_requests_per_instance" (the
	// deployment's pending limit) or "max_requests_per_second" (the
	// endpoint's rate limit).
	Limit string
	// Total is the whole request as the gateway saw it; Model is the time
	// from sending to the instance until its answer's headers (host + run());
	// Queue is the time spent waiting for an instance slot. Overhead is
	// Total - Model.
	Total, Model, Queue time.Duration
	// Mirrored is set on observations of shadow copies. Their answer goes
	// to no client: Status is the shadow's own status (not mapped to
	// 424), or the gateway's (408, 429, 502, 503; 499 on shutdown) when
	// the copy got no answer.
	Mirrored bool
}

// Overhead is the gateway's share of the latency (auth, routing, queueing,
// proxying).
func (o *Observation) Overhead() time.Duration { return o.Total - o.Model }

func (s *Server) observe(x *exchange) {
	if s.cfg.Observer == nil {
		return
	}
	o := Observation{
		Endpoint: x.endpointName(), Deployment: x.deploymentName(),
		Status: x.w.status, ModelStatus: x.modelStatus, Limit: x.limit,
		Total: time.Since(x.start), Model: x.upstream, Queue: x.queue,
	}
	if x.instance != nil {
		o.Instance = x.instance.ID
	}
	s.cfg.Observer(&o)
}
