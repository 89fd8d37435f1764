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
	// Mirror, if non-nil, names the shadow deployment and its percentage.
	Mirror *Weight
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
	// MaxConcurrentPerInstance is request_settings.max_concurrent_requests_per_instance.
	MaxConcurrentPerInstance int
	// Instances are the ready instances; empty means none can serve now.
	Instances []*Instance
}

// Instance is one ready model host.
type Instance struct {
	// ID names the instance in logs and headers.
	ID string
	// Addr is host:port of the instance's HTTP listener.
	Addr string
	// Outstanding counts requests in flight to this instance.
	Outstanding atomic.Int64
}
