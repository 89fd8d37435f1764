// Package kubernetes is a reconcile.Runner that runs deployment instances
// as pods, through client-go.
//
// # Mapping
//
// The reconciler thinks in instances of (deployment, generation). Here the
// instances of one generation are the pods of one Kubernetes Deployment
// ("set", named <endpoint>-<deployment>-<hash>-g<generation>):
//
//   - Start of an instance scales the set up by one (creating it, its
//     Service and its credential Secret the first time); until a pod
//     exists for it, the instance shows as a placeholder (Starting, with
//     the ID the reconciler chose).
//   - Stop of a pod marks it with the lowest pod-deletion-cost and scales
//     the set down by one, so the ReplicaSet controller removes that pod
//     (or, if another pod is less ready, that one: the count is what
//     matters). At zero the set is deleted; when a moe deployment has no
//     set left, its anchor ConfigMap is deleted, and with it (by owner
//     references and the garbage collector) its Service.
//   - Instances lists pods from informers: phase from the pod's
//     conditions, reasons from container states (image pull, crash loop,
//     OOM, failed storage initializer...), Addr = podIP:port when Ready.
//   - Changes fires on every pod or Deployment event.
//
// Rollouts between generations are the reconciler's (blue/green: the new
// set becomes ready, then the old one drains), so a set's own rolling
// update (maxUnavailable 0, maxSurge 1) only happens when moe itself
// changes the pod template, e.g. a new moe image.
//
// # Ownership
//
// ConfigMap moe-endpoint-<endpoint>-<hash> (role endpoint)
// └── ConfigMap <endpoint>-<deployment>-<hash> (role deployment, the anchor)
//
//	├── Service <endpoint>-<deployment>-<hash>
//	└── Deployment …-g<generation>
//	    ├── Secret …-g<generation>-cred (the per-deployment credential)
//	    └── ReplicaSet → Pods
//
// Deleting either ConfigMap removes everything below it and nothing else.
// Every object carries app.kubernetes.io/managed-by=moe and the
// moe.dev/endpoint, moe.dev/deployment (and moe.dev/generation) labels.
//
// # Pods
//
// The init container "storage-initializer" runs `/moe storage-init` from
// Config.MoeImage: it copies the moe binary into a shared emptyDir and
// fetches the model and code snapshot from the control plane's artifact
// API with the per-deployment credential (see the Env* constants for the
// contract). The main container "inference-server" runs the user's
// environment.image with command `/opt/moe/bin/moe host --addr
// 0.0.0.0:5001 ...`; readiness probes GET /-/ready and liveness GET /, with
// the deployment's probe settings. Resources come from the SKU
// (instance_type) or, for type: kubernetes, from resources.
package kubernetes

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"

	"github.com/moe-serving/moe/internal/reconcile"
)

// Config configures a Runner.
type Config struct {
	Client    kubernetes.Interface
	Namespace string
	// MoeImage is the moe release image; its /moe runs as the
	// storage-initializer and is copied into every model pod.
	MoeImage string
	// MoeImagePullPolicy; default IfNotPresent.
	MoeImagePullPolicy corev1.PullPolicy
	// ControlPlaneURL is the control plane's API as pods reach it, e.g.
	// http://moe-control-plane.moe-system.svc:8080.
	ControlPlaneURL string
	// ControlPlaneCA (PEM) is what model pods trust for ControlPlaneURL's
	// TLS besides the system's roots; stored next to the credential.
	ControlPlaneCA []byte
	// Credential issues the per-deployment credential the storage
	// initializer sends to the artifact API. It is stored in a Secret
	// owned by the generation's Deployment (gone when the set is).
	Credential func(ctx context.Context, endpoint, deployment string, generation int64) (string, error)
	// Port the host listens on in the pod; default 5001.
	Port int32
	// ImagePullSecrets are added to every model pod.
	ImagePullSecrets []string
	// NodeSelector and Tolerations place model pods (e.g. on an
	// inference node pool).
	NodeSelector map[string]string
	Tolerations  []corev1.Toleration
	// UnschedulableTimeout fails an instance whose pod found no node for
	// this long; default 10 minutes; negative: never.
	UnschedulableTimeout time.Duration
	// Resync is the informers' resync period; default 10 minutes.
	Resync time.Duration
	Logger *slog.Logger
}

// Runner is a reconcile.Runner for Kubernetes. Create it with New.
type Runner struct {
	cfg      Config
	settings Settings
	factory  informers.SharedInformerFactory
	pods     corelisters.PodLister
	deps     appslisters.DeploymentLister
	stopCh   chan struct{}
	changes  chan struct{}

	// op serializes changes to sets (scale, create, delete).
	op sync.Mutex

	mu        sync.Mutex
	sets      map[string]*set // by Deployment name
	failed    map[string]reconcile.Instance
	everReady map[types.UID]bool
}

// set is one Deployment: one generation of one moe deployment.
type set struct {
	name                 string
	endpoint, deployment string // as the user wrote them
	gen                  int64
	uid                  types.UID
	replicas             int32
	pending              []string // IDs from Start not yet backed by a pod
	budget               time.Duration
	resources            string
}

var _ reconcile.Runner = (*Runner)(nil)

// New starts informers on the namespace's moe-managed pods and Deployments,
// waits for them to sync and adopts the sets found (a restarted control
// plane takes over what the previous one created).
func New(ctx context.Context, cfg Config) (*Runner, error) {
	if cfg.Client == nil || cfg.Namespace == "" {
		return nil, errors.New("kubernetes runner: Client and Namespace are required")
	}
	if cfg.MoeImage == "" || cfg.ControlPlaneURL == "" || cfg.Credential == nil {
		return nil, errors.New("kubernetes runner: MoeImage, ControlPlaneURL and Credential are required (model pods fetch their snapshot from the control plane)")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.UnschedulableTimeout == 0 {
		cfg.UnschedulableTimeout = 10 * time.Minute
	}
	if cfg.Resync == 0 {
		cfg.Resync = 10 * time.Minute
	}
	r := &Runner{
		cfg: cfg,
		settings: Settings{Namespace: cfg.Namespace, MoeImage: cfg.MoeImage, ControlPlaneURL: cfg.ControlPlaneURL,
			Port: cfg.Port, ImagePullSecrets: cfg.ImagePullSecrets, MoeImagePullPolicy: cfg.MoeImagePullPolicy,
			NodeSelector: cfg.NodeSelector, Tolerations: cfg.Tolerations},
		stopCh:    make(chan struct{}),
		changes:   make(chan struct{}, 1),
		sets:      map[string]*set{},
		failed:    map[string]reconcile.Instance{},
		everReady: map[types.UID]bool{},
	}
	sel := labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy, LabelRole: "model"}).String()
	r.factory = informers.NewSharedInformerFactoryWithOptions(cfg.Client, cfg.Resync,
		informers.WithNamespace(cfg.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sel }))
	podInf := r.factory.Core().V1().Pods()
	depInf := r.factory.Apps().V1().Deployments()
	r.pods, r.deps = podInf.Lister(), depInf.Lister()
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { r.podEvent(o) },
		UpdateFunc: func(_, o any) { r.podEvent(o) },
		DeleteFunc: func(o any) { r.podDeleted(o) },
	}); err != nil {
		return nil, err
	}
	if _, err := depInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { r.notify() },
		UpdateFunc: func(any, any) { r.notify() },
		DeleteFunc: func(o any) { r.depDeleted(o) },
	}); err != nil {
		return nil, err
	}
	r.factory.Start(r.stopCh)
	for typ, ok := range r.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			r.Close()
			return nil, fmt.Errorf("kubernetes runner: %v informer did not sync: %w", typ, context.Cause(ctx))
		}
	}
	ds, err := r.deps.Deployments(cfg.Namespace).List(labels.Everything())
	if err != nil {
		r.Close()
		return nil, err
	}
	r.mu.Lock()
	for _, d := range ds {
		r.adoptLocked(d)
	}
	pods, _ := r.pods.Pods(cfg.Namespace).List(labels.Everything())
	for _, p := range pods {
		if c := condition(p, corev1.PodReady); c != nil && c.Status == corev1.ConditionTrue {
			r.everReady[p.UID] = true
		}
	}
	n := len(r.sets)
	r.mu.Unlock()
	if n > 0 {
		cfg.Logger.Info("kubernetes runner: adopted existing deployments", "namespace", cfg.Namespace, "sets", n)
	}
	return r, nil
}

// Close stops the informers. Pods keep running: a restarted control plane
// adopts them.
func (r *Runner) Close() {
	select {
	case <-r.stopCh:
	default:
		close(r.stopCh)
	}
	r.factory.Shutdown()
}

func (r *Runner) adoptLocked(d *appsv1.Deployment) *set {
	if s := r.sets[d.Name]; s != nil {
		return s
	}
	gen, err := strconv.ParseInt(d.Labels[LabelGeneration], 10, 64)
	if err != nil || d.DeletionTimestamp != nil {
		return nil
	}
	s := &set{name: d.Name, endpoint: d.Annotations[AnnEndpointName], deployment: d.Annotations[AnnDeploymentName],
		gen: gen, uid: d.UID, budget: 310 * time.Second}
	if d.Spec.Replicas != nil {
		s.replicas = *d.Spec.Replicas
	}
	if b, err := time.ParseDuration(d.Annotations[annBudget]); err == nil {
		s.budget = b
	}
	s.resources = d.Annotations[annResources]
	r.sets[d.Name] = s
	return s
}

// Annotations the runner keeps on a set for its own restart.
const (
	annBudget    = "moe.dev/readiness-budget"
	annResources = "moe.dev/resources"
)

func (r *Runner) notify() {
	select {
	case r.changes <- struct{}{}:
	default:
	}
}

func (r *Runner) podEvent(o any) {
	if p, ok := o.(*corev1.Pod); ok {
		if c := condition(p, corev1.PodReady); c != nil && c.Status == corev1.ConditionTrue {
			r.mu.Lock()
			r.everReady[p.UID] = true
			r.mu.Unlock()
		}
	}
	r.notify()
}

func (r *Runner) podDeleted(o any) {
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	if p, ok := o.(*corev1.Pod); ok {
		r.mu.Lock()
		delete(r.everReady, p.UID)
		r.mu.Unlock()
	}
	r.notify()
}

// depDeleted forgets a set deleted behind our back (kubectl delete), so
// the reconciler sees its instances gone and starts new ones.
func (r *Runner) depDeleted(o any) {
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	if d, ok := o.(*appsv1.Deployment); ok {
		r.mu.Lock()
		if s := r.sets[d.Name]; s != nil && s.uid == d.UID {
			delete(r.sets, d.Name)
		}
		r.mu.Unlock()
	}
	r.notify()
}

// Changes implements reconcile.Runner.
func (r *Runner) Changes() <-chan struct{} { return r.changes }

// Instances implements reconcile.Runner.
func (r *Runner) Instances() []reconcile.Instance {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	// Sets created by another control-plane replica (before a leader
	// handover) are adopted as they appear.
	if ds, err := r.deps.Deployments(r.cfg.Namespace).List(labels.Everything()); err == nil {
		for _, d := range ds {
			if r.sets[d.Name] == nil && d.DeletionTimestamp == nil {
				r.adoptLocked(d)
			}
		}
	}
	var out []reconcile.Instance
	for _, in := range r.failed {
		out = append(out, in)
	}
	for _, s := range r.sets {
		pods, _ := r.pods.Pods(r.cfg.Namespace).List(labels.SelectorFromSet(NamesFor(s.endpoint, s.deployment).setLabels(s.gen)))
		var ins []reconcile.Instance
		for _, p := range pods {
			if p.DeletionTimestamp != nil {
				continue // on its way out: not an instance any more
			}
			in := podInstance(p, podView{EverReady: r.everReady[p.UID], Budget: s.budget,
				Unschedulable: r.cfg.UnschedulableTimeout, Now: now}, r.settings.port())
			in.Endpoint, in.Deployment, in.Resources = s.endpoint, s.deployment, s.resources
			ins = append(ins, in)
		}
		// A set shows exactly `replicas` instances: surplus pods (a
		// rolling update's surge, a scale-down in progress) are hidden,
		// ready ones shown first; missing pods show as placeholders.
		sort.SliceStable(ins, func(i, j int) bool {
			ri, rj := ins[i].Phase == reconcile.PhaseReady, ins[j].Phase == reconcile.PhaseReady
			if ri != rj {
				return ri
			}
			return ins[i].StartedAt.Before(ins[j].StartedAt)
		})
		want := int(s.replicas)
		if len(ins) > want {
			ins = ins[:want]
		}
		missing := want - len(ins)
		if len(s.pending) > missing {
			s.pending = s.pending[len(s.pending)-missing:]
		}
		phase, reason := reconcile.PhaseStarting, "waiting for Kubernetes to create the pod"
		if missing > 0 {
			if d, err := r.deps.Deployments(r.cfg.Namespace).Get(s.name); err == nil {
				for _, c := range d.Status.Conditions {
					if c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue {
						// e.g. a ResourceQuota, a LimitRange or Pod Security
						// admission refusing the pod
						phase, reason = reconcile.PhaseFailed, "Kubernetes refuses to create the pod: "+c.Message+"; ask the cluster's operator (quota, limits or pod security of namespace "+r.cfg.Namespace+")"
					}
				}
			}
		}
		for i := range missing {
			id := ""
			if i < len(s.pending) {
				id = s.pending[i]
			} else {
				id = fmt.Sprintf("%s-pending-%d", s.name, i)
			}
			ins = append(ins, reconcile.Instance{ID: id, Endpoint: s.endpoint, Deployment: s.deployment, Generation: s.gen,
				Phase: phase, Reason: reason, Resources: s.resources})
		}
		out = append(out, ins...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Start implements reconcile.Runner: one more pod in the generation's set.
func (r *Runner) Start(ctx context.Context, is reconcile.InstanceSpec) error {
	n := NamesFor(is.Endpoint, is.Deployment)
	gen := is.Revision.Generation
	setName := n.Set(gen)
	dep, err := BuildDeployment(r.settings, is.Endpoint, is.Deployment, is.Revision, 0)
	var se *SpecError
	if errors.As(err, &se) {
		// No retry fixes the spec: show it as a failed instance so the
		// reconciler fails the generation with this reason.
		r.mu.Lock()
		r.failed[is.ID] = reconcile.Instance{ID: is.ID, Endpoint: is.Endpoint, Deployment: is.Deployment, Generation: gen,
			Phase: reconcile.PhaseFailed, Reason: se.Msg, StartedAt: time.Now().UTC()}
		r.mu.Unlock()
		r.notify()
		return nil
	}
	if err != nil {
		return err
	}
	_, desc, _ := Resources(&is.Revision.Spec)
	budget := readinessBudget(&is.Revision.Spec)
	dep.Annotations[annBudget] = budget.String()
	dep.Annotations[annResources] = desc

	r.op.Lock()
	defer r.op.Unlock()
	r.mu.Lock()
	s := r.sets[setName]
	var replicas int32
	if s != nil {
		replicas = s.replicas + 1
	}
	r.mu.Unlock()
	if s != nil {
		if err := r.scale(ctx, setName, replicas); err != nil {
			return err
		}
		r.mu.Lock()
		s.replicas = replicas
		s.pending = append(s.pending, is.ID)
		r.mu.Unlock()
		r.notify()
		return nil
	}
	created, err := r.createSet(ctx, n, is, dep)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.sets[setName] = &set{name: setName, endpoint: is.Endpoint, deployment: is.Deployment, gen: gen, uid: created.UID,
		replicas: 1, pending: []string{is.ID}, budget: budget, resources: desc}
	r.mu.Unlock()
	r.notify()
	return nil
}

// createSet creates (or reuses) the anchors and Service, then the set with
// zero replicas, its credential Secret, and scales it to one: a pod never
// starts before its credential exists.
func (r *Runner) createSet(ctx context.Context, n Names, is reconcile.InstanceSpec, dep *appsv1.Deployment) (*appsv1.Deployment, error) {
	ns := r.cfg.Namespace
	epAnchor, err := r.ensureConfigMap(ctx, anchor(r.settings, EndpointAnchor(is.Endpoint), "endpoint",
		map[string]string{LabelManagedBy: ManagedBy, LabelEndpoint: n.Endpoint},
		map[string]string{"endpoint": is.Endpoint}), nil)
	if err != nil {
		return nil, err
	}
	depAnchor, err := r.ensureConfigMap(ctx, anchor(r.settings, n.Anchor(), "deployment", n.labels("deployment"),
		map[string]string{"endpoint": is.Endpoint, "deployment": is.Deployment}), epAnchor)
	if err != nil {
		return nil, err
	}
	svc := buildService(r.settings, n, is.Endpoint, is.Deployment)
	svc.OwnerReferences = []metav1.OwnerReference{ownerRef("ConfigMap", "v1", depAnchor)}
	svcs := r.cfg.Client.CoreV1().Services(ns)
	if err := createOwned(ctx, depAnchor.UID,
		func() (metav1.Object, error) { return svcs.Create(ctx, svc, metav1.CreateOptions{}) },
		func() (metav1.Object, error) { return svcs.Get(ctx, svc.Name, metav1.GetOptions{}) },
		func(uid types.UID) error { return svcs.Delete(ctx, svc.Name, deleteUID(uid)) }); err != nil {
		return nil, fmt.Errorf("create service %s: %w", svc.Name, err)
	}
	dep.OwnerReferences = []metav1.OwnerReference{ownerRef("ConfigMap", "v1", depAnchor)}
	deps := r.cfg.Client.AppsV1().Deployments(ns)
	var created *appsv1.Deployment
	if err := createOwned(ctx, depAnchor.UID,
		func() (metav1.Object, error) {
			d, err := deps.Create(ctx, dep, metav1.CreateOptions{})
			created = d
			return d, err
		},
		func() (metav1.Object, error) {
			d, err := deps.Get(ctx, dep.Name, metav1.GetOptions{})
			created = d
			return d, err
		},
		func(uid types.UID) error { return deps.Delete(ctx, dep.Name, deleteUID(uid)) }); err != nil {
		return nil, fmt.Errorf("create deployment %s: %w", dep.Name, err)
	}
	gen := is.Revision.Generation
	token, err := r.cfg.Credential(ctx, is.Endpoint, is.Deployment, gen)
	if err != nil {
		return nil, fmt.Errorf("issue credential for %s/%s: %w", is.Endpoint, is.Deployment, err)
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: n.Secret(gen), Namespace: ns, Labels: n.setLabels(gen),
			OwnerReferences: []metav1.OwnerReference{ownerRef("Deployment", "apps/v1", created)}},
		Type:       corev1.SecretTypeOpaque,
		StringData: map[string]string{CredentialKey: token},
	}
	if len(r.cfg.ControlPlaneCA) > 0 {
		sec.StringData[CAKey] = string(r.cfg.ControlPlaneCA)
	}
	if _, err := r.cfg.Client.CoreV1().Secrets(ns).Create(ctx, sec, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
		_, err = r.cfg.Client.CoreV1().Secrets(ns).Update(ctx, sec, metav1.UpdateOptions{})
		if err != nil {
			return nil, fmt.Errorf("update secret %s: %w", sec.Name, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("create secret %s: %w", sec.Name, err)
	}
	replicas := int32(1)
	if created.Spec.Replicas != nil {
		replicas = *created.Spec.Replicas + 1
	}
	if err := r.scale(ctx, created.Name, replicas); err != nil {
		return nil, err
	}
	return created, nil
}

func (r *Runner) ensureConfigMap(ctx context.Context, c *corev1.ConfigMap, owner *corev1.ConfigMap) (*corev1.ConfigMap, error) {
	api := r.cfg.Client.CoreV1().ConfigMaps(r.cfg.Namespace)
	if owner != nil {
		c.OwnerReferences = []metav1.OwnerReference{ownerRef("ConfigMap", "v1", owner)}
	}
	got, err := api.Get(ctx, c.Name, metav1.GetOptions{})
	if err == nil && got.DeletionTimestamp == nil {
		return got, nil
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, err
	}
	if err == nil { // being deleted: wait for it to go, then recreate
		if err := waitGone(ctx, func() error { _, err := api.Get(ctx, c.Name, metav1.GetOptions{}); return err }); err != nil {
			return nil, err
		}
	}
	got, err = api.Create(ctx, c, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return api.Get(ctx, c.Name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("create configmap %s: %w", c.Name, err)
	}
	return got, nil
}

// createOwned creates an object owned by owner. If one exists already and
// has the same owner (left by a control plane that crashed mid-way), it is
// reused. If its owner is another (a deleted anchor whose dependents the
// garbage collector has not removed yet), it is deleted (by UID: only that
// stale object) and created anew: reusing it would lose it to the
// collector a moment later.
func createOwned(ctx context.Context, owner types.UID, create, get func() (metav1.Object, error), del func(types.UID) error) error {
	for {
		_, err := create()
		if !apierrors.IsAlreadyExists(err) {
			return err
		}
		o, err := get()
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		for _, ref := range o.GetOwnerReferences() {
			if ref.UID == owner && o.GetDeletionTimestamp() == nil {
				return nil
			}
		}
		if o.GetDeletionTimestamp() == nil {
			if err := del(o.GetUID()); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				return fmt.Errorf("remove stale %s: %w", o.GetName(), err)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s is left over from a deleted owner and still being removed: %w", o.GetName(), context.Cause(ctx))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func deleteUID(uid types.UID) metav1.DeleteOptions {
	bg := metav1.DeletePropagationBackground
	return metav1.DeleteOptions{PropagationPolicy: &bg, Preconditions: &metav1.Preconditions{UID: &uid}}
}

func waitGone(ctx context.Context, get func() error) error {
	for {
		err := get()
		if apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// scale sets a Deployment's replicas through the scale subresource (what
// an HPA would drive).
func (r *Runner) scale(ctx context.Context, name string, replicas int32) error {
	api := r.cfg.Client.AppsV1().Deployments(r.cfg.Namespace)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sc, err := api.GetScale(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if sc.Spec.Replicas == replicas {
			return nil
		}
		sc.Spec.Replicas = replicas
		_, err = api.UpdateScale(ctx, name, &autoscalingv1.Scale{ObjectMeta: sc.ObjectMeta, Spec: sc.Spec}, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("scale %s to %d: %w", name, replicas, err)
	}
	return nil
}

// Stop implements reconcile.Runner: one pod fewer in its set; the set goes
// at zero, and the moe deployment's Service and anchor with its last set.
// It blocks until the pod is gone (or, when the ReplicaSet controller
// chose another, less ready pod, until the set has shrunk), or ctx ends.
func (r *Runner) Stop(ctx context.Context, id string) error {
	r.mu.Lock()
	if _, ok := r.failed[id]; ok {
		delete(r.failed, id)
		r.mu.Unlock()
		r.notify()
		return nil
	}
	r.mu.Unlock()

	r.op.Lock()
	s, pod := r.find(ctx, id)
	if s == nil {
		r.op.Unlock()
		return nil // unknown: already gone
	}
	ns := r.cfg.Namespace
	if pod != nil {
		patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:"-2147483648"}}}`, AnnDeletionCost)
		if _, err := r.cfg.Client.CoreV1().Pods(ns).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
			r.cfg.Logger.Warn("kubernetes runner: mark pod for removal", "pod", pod.Name, "err", err)
		}
	}
	r.mu.Lock()
	replicas := max(s.replicas-1, 0)
	r.mu.Unlock()
	var err error
	if replicas == 0 {
		err = r.deleteSet(ctx, s)
	} else {
		err = r.scale(ctx, s.name, replicas)
	}
	if err == nil || apierrors.IsNotFound(err) {
		err = nil
		r.mu.Lock()
		s.replicas = replicas
		if i := indexOf(s.pending, id); i >= 0 {
			s.pending = append(s.pending[:i], s.pending[i+1:]...)
		}
		if replicas == 0 {
			delete(r.sets, s.name)
		}
		r.mu.Unlock()
	}
	r.op.Unlock()
	r.notify()
	if err != nil || pod == nil {
		return err
	}
	sel := labels.SelectorFromSet(NamesFor(s.endpoint, s.deployment).setLabels(s.gen))
	for {
		p, gerr := r.pods.Pods(ns).Get(pod.Name)
		if apierrors.IsNotFound(gerr) || (gerr == nil && p.UID != pod.UID) {
			return nil
		}
		if replicas > 0 {
			live := 0
			ps, _ := r.pods.Pods(ns).List(sel)
			for _, p := range ps {
				if p.DeletionTimestamp == nil {
					live++
				}
			}
			if live <= int(replicas) && (gerr != nil || p.DeletionTimestamp == nil) {
				return nil // another pod went instead; the count is right
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pod %s still terminating: %w", pod.Name, context.Cause(ctx))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// find returns the set of an instance ID and its pod (nil for a placeholder).
func (r *Runner) find(ctx context.Context, id string) (*set, *corev1.Pod) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.sets {
		if indexOf(s.pending, id) >= 0 || strings.HasPrefix(id, s.name+"-pending-") {
			return s, nil
		}
	}
	p, err := r.pods.Pods(r.cfg.Namespace).Get(id)
	if err != nil {
		r.mu.Unlock()
		p, err = r.cfg.Client.CoreV1().Pods(r.cfg.Namespace).Get(ctx, id, metav1.GetOptions{})
		r.mu.Lock()
		if err != nil {
			return nil, nil
		}
	}
	for _, s := range r.sets {
		if p.Labels[LabelGeneration] == strconv.FormatInt(s.gen, 10) &&
			p.Labels[LabelEndpoint] == strings.ToLower(s.endpoint) && p.Labels[LabelDeployment] == strings.ToLower(s.deployment) {
			return s, p
		}
	}
	return nil, nil
}

func indexOf(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

// deleteSet deletes a set (the garbage collector removes its ReplicaSets,
// pods and Secret), then the moe deployment's anchor when no other set of
// it is left, then the endpoint's anchor when it has no deployment left.
func (r *Runner) deleteSet(ctx context.Context, s *set) error {
	ns := r.cfg.Namespace
	bg := metav1.DeletePropagationBackground
	err := r.cfg.Client.AppsV1().Deployments(ns).Delete(ctx, s.name, metav1.DeleteOptions{PropagationPolicy: &bg,
		Preconditions: &metav1.Preconditions{UID: &s.uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete deployment %s: %w", s.name, err)
	}
	n := NamesFor(s.endpoint, s.deployment)
	others, err := r.cfg.Client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(n.labels("model")).String()})
	if err != nil {
		return err
	}
	for _, d := range others.Items {
		if d.Name != s.name && d.DeletionTimestamp == nil {
			return nil
		}
	}
	r.mu.Lock()
	for _, o := range r.sets {
		if o != s && strings.EqualFold(o.endpoint, s.endpoint) && strings.EqualFold(o.deployment, s.deployment) {
			r.mu.Unlock()
			return nil
		}
	}
	r.mu.Unlock()
	cm := r.cfg.Client.CoreV1().ConfigMaps(ns)
	if err := cm.Delete(ctx, n.Anchor(), metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete configmap %s: %w", n.Anchor(), err)
	}
	deps, err := cm.List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(labels.Set{
		LabelManagedBy: ManagedBy, LabelRole: "deployment", LabelEndpoint: n.Endpoint}).String()})
	if err != nil {
		return err
	}
	for _, d := range deps.Items {
		if d.Name != n.Anchor() && d.DeletionTimestamp == nil {
			return nil
		}
	}
	if err := cm.Delete(ctx, EndpointAnchor(s.endpoint), metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete configmap %s: %w", EndpointAnchor(s.endpoint), err)
	}
	return nil
}

// Logs returns the last tail lines (all when tail <= 0) of a container of
// the newest pod of a deployment's newest generation: "inference-server"
// (default) or "storage-initializer". Same contract as the local runner's.
func (r *Runner) Logs(endpoint, deployment, container string, tail int) (string, error) {
	switch container {
	case "":
		container = ContainerHost
	case ContainerHost, ContainerInit:
	default:
		return "", fmt.Errorf("unknown container %q: use inference-server or storage-initializer", container)
	}
	n := NamesFor(endpoint, deployment)
	pods, err := r.pods.Pods(r.cfg.Namespace).List(labels.SelectorFromSet(n.labels("model")))
	if err != nil || len(pods) == 0 {
		return "", fmt.Errorf("no pods yet for deployment %q (endpoint %q); try again later", deployment, endpoint)
	}
	pod := newestPod(pods)
	opts := &corev1.PodLogOptions{Container: container}
	if tail > 0 {
		t := int64(tail)
		opts.TailLines = &t
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	rc, err := r.cfg.Client.CoreV1().Pods(r.cfg.Namespace).GetLogs(pod.Name, opts).Stream(ctx)
	if err != nil {
		return "", fmt.Errorf("logs of pod %s (%s): %w", pod.Name, container, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 16<<20))
	return string(b), err
}

// newestPod is the newest pod of the newest generation.
func newestPod(pods []*corev1.Pod) *corev1.Pod {
	sort.Slice(pods, func(i, j int) bool {
		gi, _ := strconv.ParseInt(pods[i].Labels[LabelGeneration], 10, 64)
		gj, _ := strconv.ParseInt(pods[j].Labels[LabelGeneration], 10, 64)
		if gi != gj {
			return gi > gj
		}
		return pods[j].CreationTimestamp.Before(&pods[i].CreationTimestamp)
	})
	return pods[0]
}

// RandomCredential is a Config.Credential for tests and for control planes
// that verify credentials by looking them up in the Secret.
func RandomCredential(context.Context, string, string, int64) (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}
