package routesource

import (
	"errors"
	"log/slog"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/moe-serving/moe/internal/gateway"
)

// Peers counts the gateway replicas that share the traffic: the ready
// endpoints of the gateway's own Service (its EndpointSlices), so each
// replica can enforce its share of an endpoint's limits (see ShareLimits).
// It needs get, list and watch on endpointslices in that namespace.
type Peers struct {
	lister  discoverylisters.EndpointSliceLister
	synced  cache.InformerSynced
	ns      string
	stopCh  chan struct{}
	changes chan struct{}
	log     *slog.Logger
}

// NewPeers starts watching the EndpointSlices of Service service in
// namespace; Close stops it.
func NewPeers(client kubernetes.Interface, namespace, service string, log *slog.Logger) (*Peers, error) {
	if client == nil || namespace == "" || service == "" {
		return nil, errors.New("routesource: peers need a Kubernetes client, a namespace and a Service name")
	}
	if log == nil {
		log = slog.Default()
	}
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: service}).String()
	f := informers.NewSharedInformerFactoryWithOptions(client, 10*time.Minute, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sel }))
	inf := f.Discovery().V1().EndpointSlices()
	p := &Peers{lister: inf.Lister(), synced: inf.Informer().HasSynced, ns: namespace, stopCh: make(chan struct{}), changes: make(chan struct{}, 1), log: log}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { p.notify() },
		UpdateFunc: func(any, any) { p.notify() },
		DeleteFunc: func(any) { p.notify() },
	}); err != nil {
		return nil, err
	}
	f.Start(p.stopCh)
	return p, nil
}

func (p *Peers) notify() {
	select {
	case p.changes <- struct{}{}:
	default:
	}
}

// WaitForSync blocks until the informer has listed the slices once, or
// stop is closed; it reports whether it synced.
func (p *Peers) WaitForSync(stop <-chan struct{}) bool { return cache.WaitForCacheSync(stop, p.synced) }

// Changes receives a value (coalesced) after every slice event.
func (p *Peers) Changes() <-chan struct{} { return p.changes }

// Count is the number of ready, not terminating endpoints (one per pod),
// at least 1: this replica counts even before its own readiness shows.
func (p *Peers) Count() int {
	ls, err := p.lister.EndpointSlices(p.ns).List(labels.Everything())
	if err != nil {
		p.log.Warn("list gateway EndpointSlices", "err", err)
		return 1
	}
	return max(1, CountReady(ls))
}

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

// Close stops the informer.
func (p *Peers) Close() { close(p.stopCh) }

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
