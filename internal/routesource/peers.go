package routesource

import (
	"errors"
	"log/slog"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"

	"github.com/moe-serving/moe/internal/gateway"
)

// Peers counts the gateway replicas that share the traffic: the ready
// endpoints of the gateway's own Service (its EndpointSlices), so each
// replica can enforce its share of an endpoint's limits (see ShareLimits).
// It needs get, list and watch on endpointslices in that namespace.
type Peers struct{ *sliceWatch }

// NewPeers starts watching the EndpointSlices of Service service in
// namespace; call WaitForSync before trusting Count, and Close when done.
func NewPeers(client kubernetes.Interface, namespace, service string, log *slog.Logger) (*Peers, error) {
	if client == nil || namespace == "" || service == "" {
		return nil, errors.New("routesource: peers need a Kubernetes client, a namespace and a Service name")
	}
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: service}).String()
	w, err := newSliceWatch(client, namespace, sel, 10*time.Minute, log)
	if err != nil {
		return nil, err
	}
	return &Peers{w}, nil
}

// Count is the number of ready, not terminating endpoints (one per pod),
// at least 1: this replica counts even before its own readiness shows.
func (p *Peers) Count() int { return max(1, CountReady(p.list())) }

// CountReady counts the distinct ready, not terminating endpoints of slices.
func CountReady(slices []*discoveryv1.EndpointSlice) int {
	seen := map[string]bool{}
	for _, s := range slices {
		for _, e := range s.Endpoints {
			if e.Conditions.Terminating != nil && *e.Conditions.Terminating || e.Conditions.Ready != nil && !*e.Conditions.Ready || len(e.Addresses) == 0 {
				continue
			}
			key := e.Addresses[0]
			if e.TargetRef != nil {
				key = e.TargetRef.Name
			}
			seen[key] = true
		}
	}
	return len(seen)
}

// ShareLimits scales a freshly built table to this replica's share when n
// gateway replicas split the traffic evenly (a Kubernetes Service does so
// roughly): each endpoint's MaxRequestsPerSecond and each deployment's
// MaxConcurrentPerInstance (and so the 2 × concurrency × instances cap
// behind the 429) are divided by n, rounded up, so together the replicas
// enforce about the configured limit. Rounding up never lets a limit reach
// 0; with a per-instance concurrency below n, the replicas together may run
// up to n requests at once on an instance (its host queues them).
func ShareLimits(t *gateway.Table, n int) {
	if n <= 1 || t == nil {
		return
	}
	div := func(v int) int { return (v + n - 1) / n }
	for _, e := range t.Endpoints {
		if e.MaxRequestsPerSecond > 0 {
			e.MaxRequestsPerSecond = div(e.MaxRequestsPerSecond)
		}
		for _, d := range e.Deployments {
			d.MaxConcurrentPerInstance = div(max(1, d.MaxConcurrentPerInstance))
		}
	}
}
