// Package routesource feeds a standalone gateway (`moe gateway`, several
// replicas in a cluster): Slices turns the EndpointSlices of the model
// Services that the Kubernetes runner creates into instances, and Follower
// rebuilds the gateway's route table with reconcile.BuildRoutes from the
// shared store and those instances whenever either changes.
package routesource

import (
	"errors"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/moe-serving/moe/internal/reconcile"
	k8srunner "github.com/moe-serving/moe/internal/runner/kubernetes"
)

// PortName is the name of the model Service's port (and of the host
// container's port) whose number the slices carry.
const PortName = "http"

// SliceInstances maps one EndpointSlice of a model Service to instances:
// one per endpoint backed by a pod, Ready (with Addr = address:port) only
// when the endpoint's conditions.ready is true (the API says to read an
// absent ready as true), Stopping when it is terminating, Starting
// otherwise. Endpoint and deployment come from the slice's labels (the
// endpointslice controller copies the Service's labels; the runner
// lowercases names there, which BuildRoutes matches case-insensitively);
// the generation from the pod's name, which is the generation's Kubernetes
// Deployment name (kubernetes.Names.Set) plus ReplicaSet and pod suffixes —
// the slice carries no pod labels, and the gateway need not read pods.
// Endpoints whose generation cannot be told are left out: they cannot be
// matched to a revision anyway.
func SliceInstances(s *discoveryv1.EndpointSlice) []reconcile.Instance {
	ep, dep := s.Labels[k8srunner.LabelEndpoint], s.Labels[k8srunner.LabelDeployment]
	if ep == "" || dep == "" {
		return nil
	}
	var port int32
	for _, p := range s.Ports {
		if p.Name != nil && *p.Name == PortName && p.Port != nil {
			port = *p.Port
		}
	}
	prefix := k8srunner.NamesFor(ep, dep).Base + "-g"
	var out []reconcile.Instance
	for _, e := range s.Endpoints {
		if e.TargetRef == nil || e.TargetRef.Kind != "Pod" {
			continue
		}
		gen := generationOf(e.TargetRef.Name, prefix)
		if gen <= 0 {
			continue
		}
		in := reconcile.Instance{ID: e.TargetRef.Name, Endpoint: ep, Deployment: dep, Generation: gen, Phase: reconcile.PhaseStarting}
		switch {
		case e.Conditions.Terminating != nil && *e.Conditions.Terminating:
			in.Phase, in.Reason = reconcile.PhaseStopping, "pod is terminating"
		case e.Conditions.Ready == nil || *e.Conditions.Ready:
			if len(e.Addresses) > 0 && port > 0 {
				in.Phase = reconcile.PhaseReady
				in.Addr = net.JoinHostPort(e.Addresses[0], strconv.Itoa(int(port)))
			} else {
				in.Reason = "no address or port in the EndpointSlice yet"
			}
		default:
			in.Reason = "pod is not ready"
		}
		out = append(out, in)
	}
	return out
}

// generationOf parses "<prefix><generation>-<replicaset hash>-<suffix>".
func generationOf(pod, prefix string) int64 {
	rest, ok := strings.CutPrefix(pod, prefix)
	if !ok {
		return 0
	}
	digits, _, _ := strings.Cut(rest, "-")
	g, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0
	}
	return g
}

// MergeInstances flattens the instances of several slices (a Service may
// have more than one, and a pod may show in two while the controller moves
// it), one per pod: the ready entry wins, sorted by ID.
func MergeInstances(slices []*discoveryv1.EndpointSlice) []reconcile.Instance {
	byID := map[string]reconcile.Instance{}
	for _, s := range slices {
		for _, in := range SliceInstances(s) {
			if old, ok := byID[in.ID]; ok && old.Phase == reconcile.PhaseReady {
				continue
			}
			byID[in.ID] = in
		}
	}
	out := make([]reconcile.Instance, 0, len(byID))
	for _, in := range byID {
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// sliceWatch is an informer on the EndpointSlices of one namespace that
// match a label selector, with a coalescing change channel: what Slices
// and Peers share.
type sliceWatch struct {
	lister  discoverylisters.EndpointSliceLister
	synced  cache.InformerSynced
	ns      string
	stopCh  chan struct{}
	changes chan struct{}
	log     *slog.Logger
}

func newSliceWatch(client kubernetes.Interface, namespace, selector string, resync time.Duration, log *slog.Logger) (*sliceWatch, error) {
	if log == nil {
		log = slog.Default()
	}
	f := informers.NewSharedInformerFactoryWithOptions(client, resync, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))
	inf := f.Discovery().V1().EndpointSlices()
	w := &sliceWatch{lister: inf.Lister(), synced: inf.Informer().HasSynced, ns: namespace, stopCh: make(chan struct{}), changes: make(chan struct{}, 1), log: log}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { w.notify() },
		UpdateFunc: func(any, any) { w.notify() },
		DeleteFunc: func(any) { w.notify() },
	}); err != nil {
		return nil, err
	}
	f.Start(w.stopCh)
	return w, nil
}

func (w *sliceWatch) notify() {
	select {
	case w.changes <- struct{}{}:
	default:
	}
}

// WaitForSync blocks until the informer has listed the slices once, or
// stop is closed; it reports whether it synced.
func (w *sliceWatch) WaitForSync(stop <-chan struct{}) bool {
	return cache.WaitForCacheSync(stop, w.synced)
}

// Changes receives a value (coalesced) after every slice event.
func (w *sliceWatch) Changes() <-chan struct{} { return w.changes }

// list returns the watched slices (nil, logged, on error).
func (w *sliceWatch) list() []*discoveryv1.EndpointSlice {
	ls, err := w.lister.EndpointSlices(w.ns).List(labels.Everything())
	if err != nil {
		w.log.Warn("list EndpointSlices", "err", err)
		return nil
	}
	return ls
}

// Close stops the informer.
func (w *sliceWatch) Close() { close(w.stopCh) }

// Slices watches the EndpointSlices of the model Services in one namespace
// (those labelled app.kubernetes.io/managed-by=moe, moe.dev/role=model) with
// an informer. It needs get, list and watch on endpointslices there, and
// nothing else.
type Slices struct{ *sliceWatch }

// NewSlices starts the informer; call WaitForSync before trusting
// Instances, and Close when done. resync 0 means 10 minutes.
func NewSlices(client kubernetes.Interface, namespace string, resync time.Duration, log *slog.Logger) (*Slices, error) {
	if client == nil || namespace == "" {
		return nil, errors.New("routesource: a Kubernetes client and namespace are required")
	}
	if resync <= 0 {
		resync = 10 * time.Minute
	}
	sel := labels.SelectorFromSet(labels.Set{k8srunner.LabelManagedBy: k8srunner.ManagedBy, k8srunner.LabelRole: "model"}).String()
	w, err := newSliceWatch(client, namespace, sel, resync, log)
	if err != nil {
		return nil, err
	}
	return &Slices{w}, nil
}

// Instances lists the instances of every watched slice (see
// SliceInstances and MergeInstances).
func (s *Slices) Instances() []reconcile.Instance { return MergeInstances(s.list()) }
