package gateway

import (
	"sync/atomic"
	"time"

	"github.com/moe-serving/moe/internal/auth"
)

// Table is an immutable snapshot of everything the gateway routes on. The
// control plane builds a new Table on every change and hands it over with
// Server.SetRoutes; the gateway never mutates one (except the per-instance
// load counters, which are atomics).
type Table struct {
	// Endpoints by name (lower case).
	Endpoints map[string]*Endpoint
}

// Endpoint is one endpoint's routing and auth data.
type Endpoint struct {
	Name string
	// AuthMode is "key", "aml_token" or "aad_token".
	AuthMode string
	// PrimaryKey and SecondaryKey authenticate "key" endpoints; either works.
	PrimaryKey, SecondaryKey auth.Secret
	// Traffic lists deployments with a positive weight; weights sum to 100
	// (or the list is empty: no deployment takes unnamed traffic).
	Traffic []Weight
	// Mirror, if non-nil, names the shadow deployment and its percentage
	// (at most 50, as Azure): that share of the requests routed by weight
	// (never those naming a deployment by header) is copied to the shadow
	// asynchronously; see Config.MirrorWorkers.
	Mirror *Weight
	// MaxRequestsPerSecond, if positive, limits the requests the endpoint
	// accepts per second (a token bucket holding one second's worth, so a
	// burst of that many passes at once); over it, requests get 429 with
	// x-moe-limit: max_requests_per_second. Zero means no limit. Azure
	// applies 500 per second to every managed endpoint by default; moe
	// enforces a limit only when one is set (endpoint property
	// moe.max_requests_per_second).
	MaxRequestsPerSecond int
	// PassModelStatus passes a model's non-2xx status through unchanged
	// instead of answering 424.
	PassModelStatus bool
	// Deployments by name (lower case), including 0 % ones, which can be
	// reached with the azureml-model-deployment header.
	Deployments map[string]*Deployment
}

// Weight is a deployment's share of traffic, in percent.
type Weight struct {
	Deployment string
	Percent    int
}

// Deployment is one deployment's instances and request settings.
type Deployment struct {
	Name string
	// RequestTimeout bounds a request end to end (408 when exceeded).
	RequestTimeout time.Duration
	// MaxConcurrentPerInstance is
	// request_settings.max_concurrent_requests_per_instance: the requests
	// an instance runs at once (0 means 1, Azure's default). Requests
	// beyond it queue; more than 2 × MaxConcurrentPerInstance ×
	// len(Instances) in flight and queued get 429.
	MaxConcurrentPerInstance int
	// Instances are the ready instances; empty means none can serve now.
	// An instance belongs to one deployment.
	Instances []*Instance
}

// Instance is one ready model host.
type Instance struct {
	// ID names the instance in logs and headers.
	ID string
	// Addr is host:port of the instance's HTTP listener.
	Addr string
	// Outstanding counts requests in flight to this instance. It is also
	// the instance's concurrency semaphore: the gateway takes a slot with a
	// compare-and-swap that keeps it at most the deployment's
	// MaxConcurrentPerInstance. Keep the same *Instance across tables
	// (as BuildRoutes does) so that slots taken under one table are
	// counted under the next.
	Outstanding atomic.Int64
}

// routing is the gateway's private view of a Table: the table and, for
// each endpoint and deployment in it, the state that outlives tables
// (queues, pending counts, rate buckets, mirror counters). SetRoutes
// builds one per table and publishes both at once.
type routing struct {
	table *Table
	deps  map[*Deployment]*depState
	eps   map[*Endpoint]*epState
	// byName holds the states of the table's deployments and of
	// deployments that left it while requests still held them.
	byName   map[depKey]*depState
	epByName map[string]*epState
}

// newRouting builds the routing for t, reusing old's states by name so that
// counts and queues carry over.
func newRouting(t *Table, old *routing) *routing {
	rt := &routing{
		table:    t,
		deps:     map[*Deployment]*depState{},
		eps:      make(map[*Endpoint]*epState, len(t.Endpoints)),
		byName:   map[depKey]*depState{},
		epByName: make(map[string]*epState, len(t.Endpoints)),
	}
	for ek, ep := range t.Endpoints {
		es := rt.epByName[ek]
		if es == nil {
			if old != nil {
				es = old.epByName[ek]
			}
			if es == nil {
				es = &epState{}
			}
			rt.epByName[ek] = es
		}
		rt.eps[ep] = es
		for dk, d := range ep.Deployments {
			k := depKey{ek, dk}
			st := rt.byName[k]
			if st == nil {
				if old != nil {
					st = old.byName[k]
				}
				if st == nil {
					st = &depState{key: k}
				}
				rt.byName[k] = st
			}
			rt.deps[d] = st
		}
	}
	if old != nil {
		for k, st := range old.byName {
			if rt.byName[k] != nil {
				continue
			}
			if st.held.Load() > 0 {
				rt.byName[k] = st
			} else {
				st.dropped.Store(true)
			}
		}
	}
	return rt
}
