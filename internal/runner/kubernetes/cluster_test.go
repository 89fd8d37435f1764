package kubernetes

// Tests against a real control plane (internal/k8stest): etcd,
// kube-apiserver, kube-controller-manager (deployment, replicaset,
// endpointslice controllers and the garbage collector), kube-scheduler and
// kwok, which marks pods on its fake node Running and Ready. Gated by
// MOE_TEST_K8S=1; skipped otherwise.
//
// What cannot run here: no kubelet and no container runtime, so no image is
// pulled and nothing inside a pod runs — the storage-initializer, `moe
// host` and the data path (gateway → pod) are not exercised; the local
// runner's end-to-end tests cover the gateway → host path. Pod IPs are
// kwok's made-up 10.244.x.y. Failures a kubelet would report (image pull,
// crash loop, OOM) are written by the test itself as the kubelet would,
// on pods bound to a second node that kwok does not manage.

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/moe-serving/moe/internal/k8stest"
	"github.com/moe-serving/moe/internal/reconcile"
	"github.com/moe-serving/moe/internal/spec"
	"github.com/moe-serving/moe/internal/store"
	"github.com/moe-serving/moe/internal/store/sqlite"
)

func TestMain(m *testing.M) { k8stest.Main(m, k8stest.Options{Controllers: true}) }

func newRunner(t *testing.T, c *k8stest.Cluster, ns string, mut func(*Config)) *Runner {
	t.Helper()
	cfg := Config{Client: c.Client, Namespace: ns, MoeImage: "registry.example/moe:test",
		ControlPlaneURL: "http://moe-control-plane.moe-system.svc:8080", Credential: RandomCredential}
	if mut != nil {
		mut(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// eventually polls cond until it returns "" (or fails the test with the
// last message after d).
func eventually(t *testing.T, d time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func instancesOf(r *Runner, gen int64) []reconcile.Instance {
	var out []reconcile.Instance
	for _, in := range r.Instances() {
		if gen == 0 || in.Generation == gen {
			out = append(out, in)
		}
	}
	return out
}

func allReady(r *Runner, gen int64, n int) string {
	ins := instancesOf(r, gen)
	ready := 0
	for _, in := range ins {
		if in.Phase == reconcile.PhaseReady && strings.HasPrefix(in.Addr, "10.244.") && strings.HasSuffix(in.Addr, ":5001") {
			ready++
		}
	}
	if ready != n || len(ins) != n {
		return fmt.Sprintf("want %d ready instances of gen %d, got %+v", n, gen, ins)
	}
	return ""
}

func is(endpoint, deployment, id string, rev store.Revision) reconcile.InstanceSpec {
	return reconcile.InstanceSpec{ID: id, Endpoint: endpoint, Deployment: deployment, Revision: rev}
}

// TestClusterLifecycle: Start/Stop map onto Deployments, pods become
// instances with addresses, a second generation gets its own set, and the
// last Stop removes everything the runner created — by owner references and
// the garbage collector — and nothing else.
func TestClusterLifecycle(t *testing.T) {
	c := k8stest.Get(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	cs := c.Client
	// Bystanders with the same labels that the runner did not create.
	n := NamesFor("Shop", "Blue")
	bystander := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "bystander", Namespace: ns, Labels: n.labels("model")}}
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, bystander, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r := newRunner(t, c, ns, nil)
	rev1 := revision(1, nil)
	for _, id := range []string{"blue-a", "blue-b"} {
		if err := r.Start(ctx, is("Shop", "Blue", id, rev1)); err != nil {
			t.Fatal(err)
		}
	}
	// At once: two placeholders with the reconciler's IDs.
	if ins := instancesOf(r, 1); len(ins) != 2 {
		t.Fatalf("want 2 instances at once, got %+v", ins)
	}
	eventually(t, 30*time.Second, func() string { return allReady(r, 1, 2) })
	ins := instancesOf(r, 1)
	for _, in := range ins {
		if in.Endpoint != "Shop" || in.Deployment != "Blue" || !strings.HasPrefix(in.ID, n.Set(1)+"-") || !strings.Contains(in.Resources, "cpu 4") {
			t.Errorf("instance %+v", in)
		}
	}

	// The objects, as the server stored them.
	dep, err := cs.AppsV1().Deployments(ns).Get(ctx, n.Set(1), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	anchorCM, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, n.Anchor(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(dep.OwnerReferences) != 1 || dep.OwnerReferences[0].UID != anchorCM.UID || *dep.Spec.Replicas != 2 {
		t.Errorf("deployment owners %v replicas %d", dep.OwnerReferences, *dep.Spec.Replicas)
	}
	sec, err := cs.CoreV1().Secrets(ns).Get(ctx, n.Secret(1), metav1.GetOptions{})
	if err != nil || len(sec.Data[CredentialKey]) != 64 || sec.OwnerReferences[0].UID != dep.UID {
		t.Errorf("secret %v %v", sec, err)
	}
	svc, err := cs.CoreV1().Services(ns).Get(ctx, n.Service(), metav1.GetOptions{})
	if err != nil || svc.Spec.ClusterIP == "" || svc.OwnerReferences[0].UID != anchorCM.UID {
		t.Fatalf("service %v %v", svc, err)
	}
	epAnchor, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, EndpointAnchor("Shop"), metav1.GetOptions{})
	if err != nil || anchorCM.OwnerReferences[0].UID != epAnchor.UID {
		t.Fatalf("endpoint anchor %v %v", epAnchor, err)
	}
	// The endpointslice controller lists both ready pods for the Service.
	eventually(t, 30*time.Second, func() string { return readyEndpoints(cs, ns, n.Service(), 2) })

	// Stop one named pod: the set shrinks and that pod goes.
	victim := ins[1].ID
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := r.Stop(sctx, victim); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods(ns).Get(ctx, victim, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		p, _ := cs.CoreV1().Pods(ns).Get(ctx, victim, metav1.GetOptions{})
		if p == nil || p.DeletionTimestamp == nil {
			t.Errorf("stopped pod %s still there: %v", victim, err)
		}
	}
	eventually(t, 30*time.Second, func() string { return allReady(r, 1, 1) })

	// A second generation: its own set, same Service.
	rev2 := revision(2, func(d *spec.Deployment) { d.Environment.Image = "python:3.13-slim" })
	if err := r.Start(ctx, is("Shop", "Blue", "blue-c", rev2)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() string { return allReady(r, 2, 1) })
	eventually(t, 30*time.Second, func() string { return readyEndpoints(cs, ns, n.Service(), 2) })
	// Retire generation 1: its set and Secret go, the Service stays.
	if err := r.Stop(sctx, instancesOf(r, 1)[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AppsV1().Deployments(ns).Get(ctx, n.Set(1), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("gen 1 deployment: %v", err)
	}
	eventually(t, 30*time.Second, func() string {
		if _, err := cs.CoreV1().Secrets(ns).Get(ctx, n.Secret(1), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Sprintf("gen 1 secret not garbage-collected: %v", err)
		}
		return ""
	})
	if _, err := cs.CoreV1().Services(ns).Get(ctx, n.Service(), metav1.GetOptions{}); err != nil {
		t.Fatalf("service gone with generation 1: %v", err)
	}

	// The last instance: everything the runner created goes.
	if err := r.Stop(sctx, instancesOf(r, 2)[0].ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() string {
		var left []string
		if l, _ := cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{}); len(l.Items) > 0 {
			left = append(left, fmt.Sprintf("%d deployments", len(l.Items)))
		}
		if l, _ := cs.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{}); len(l.Items) > 0 {
			left = append(left, fmt.Sprintf("%d replicasets", len(l.Items)))
		}
		if l, _ := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); len(l.Items) > 0 {
			left = append(left, fmt.Sprintf("%d pods", len(l.Items)))
		}
		if l, _ := cs.CoreV1().Services(ns).List(ctx, metav1.ListOptions{}); len(l.Items) > 0 {
			left = append(left, fmt.Sprintf("%d services", len(l.Items)))
		}
		if l, _ := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: LabelManagedBy + "=moe"}); len(l.Items) > 0 {
			left = append(left, fmt.Sprintf("%d secrets", len(l.Items)))
		}
		if l, _ := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: LabelManagedBy + "=moe"}); len(l.Items) != 1 {
			left = append(left, fmt.Sprintf("configmaps %v (want only the bystander)", names(l.Items)))
		}
		if len(left) > 0 {
			return "left behind: " + strings.Join(left, ", ")
		}
		return ""
	})
	if got := r.Instances(); len(got) != 0 {
		t.Errorf("instances after the last stop: %+v", got)
	}
}

func names(cms []corev1.ConfigMap) []string {
	var out []string
	for _, c := range cms {
		out = append(out, c.Name)
	}
	return out
}

func readyEndpoints(cs kubernetes.Interface, ns, svc string, n int) string {
	l, err := cs.DiscoveryV1().EndpointSlices(ns).List(context.Background(), metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return err.Error()
	}
	ready := 0
	for _, s := range l.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready {
				ready++
			}
		}
	}
	if ready != n {
		return fmt.Sprintf("service %s: want %d ready endpoints, got %d", svc, n, ready)
	}
	return ""
}

// manualNode is a Ready node kwok does not manage: pods bound to it get
// no status but what the test writes, as a kubelet would.
func manualNode(t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	ctx := context.Background()
	name := "manual-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"pool": name}}}
	if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	capacity := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourceMemory: resource.MustParse("256Gi"), corev1.ResourcePods: resource.MustParse("110")}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		node.Status = corev1.NodeStatus{Capacity: capacity, Allocatable: capacity,
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
				LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}}
		_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return name
}

// TestClusterStatusPropagation: pod states written the way a kubelet
// writes them reach Instances through the informers, with reasons a user
// can act on; Changes fires for each.
func TestClusterStatusPropagation(t *testing.T) {
	c := k8stest.Get(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	cs := c.Client
	node := manualNode(t, cs)
	r := newRunner(t, c, ns, func(cfg *Config) {
		cfg.NodeSelector = map[string]string{"pool": node}
		// the node has no kubelet: tolerate the taints the node lifecycle
		// controller may add
		cfg.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
	})
	rev := revision(1, nil)
	if err := r.Start(ctx, is("Shop", "Red", "red-a", rev)); err != nil {
		t.Fatal(err)
	}
	var pod *corev1.Pod
	eventually(t, 30*time.Second, func() string {
		l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil || len(l.Items) != 1 || l.Items[0].Spec.NodeName != node {
			return fmt.Sprintf("want one pod scheduled on %s: %v", node, err)
		}
		pod = &l.Items[0]
		return ""
	})
	drain(r)
	for _, step := range []struct {
		name   string
		status corev1.PodStatus
		phase  reconcile.Phase
		reason string
	}{
		{"init image pull backoff", corev1.PodStatus{Phase: corev1.PodPending,
			InitContainerStatuses: []corev1.ContainerStatus{{Name: ContainerInit, Image: "registry.example/moe:test",
				State: waiting("ImagePullBackOff", `Back-off pulling image "registry.example/moe:test"`)}}},
			reconcile.PhaseFailed, "cannot pull moe's own image"},
		{"host image pull backoff", corev1.PodStatus{Phase: corev1.PodPending,
			InitContainerStatuses: []corev1.ContainerStatus{{Name: ContainerInit, Ready: true, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: ContainerHost, Image: "python:3.12-slim",
				State: waiting("ImagePullBackOff", `Back-off pulling image "python:3.12-slim": not found`)}}},
			reconcile.PhaseFailed, `cannot pull environment.image "python:3.12-slim"`},
		{"oom crash loop", corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.9",
			InitContainerStatuses: []corev1.ContainerStatus{{Name: ContainerInit, Ready: true, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: ContainerHost, Image: "python:3.12-slim", RestartCount: 2,
				State:                waiting("CrashLoopBackOff", "back-off 20s"),
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}}}}},
			reconcile.PhaseFailed, "ran out of memory (OOMKilled)"},
		{"ready", corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.9", PodIPs: []corev1.PodIP{{IP: "10.0.0.9"}},
			Conditions:            []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			InitContainerStatuses: []corev1.ContainerStatus{{Name: ContainerInit, Ready: true, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: ContainerHost, Image: "python:3.12-slim", Ready: true,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}}},
			reconcile.PhaseReady, ""},
		{"crash after ready: a restart, not a failure", corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.9",
			Conditions:            []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: corev1.ConditionFalse}},
			InitContainerStatuses: []corev1.ContainerStatus{{Name: ContainerInit, Ready: true, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: ContainerHost, Image: "python:3.12-slim", RestartCount: 1,
				State:                waiting("CrashLoopBackOff", "back-off 10s"),
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled"}}}}},
			reconcile.PhaseStarting, "restarting after: the model host ran out of memory"},
	} {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Status = step.status
		if _, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		select {
		case <-r.Changes():
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no change notification", step.name)
		}
		eventually(t, 10*time.Second, func() string {
			ins := r.Instances()
			if len(ins) != 1 || ins[0].ID != pod.Name || ins[0].Phase != step.phase || !strings.Contains(ins[0].Reason, step.reason) {
				return fmt.Sprintf("%s: want %s %q, got %+v", step.name, step.phase, step.reason, ins)
			}
			return ""
		})
		t.Logf("%s: %s %q", step.name, step.phase, r.Instances()[0].Reason)
	}
}

func drain(r *Runner) {
	for {
		select {
		case <-r.Changes():
		default:
			return
		}
	}
}

// TestClusterUnschedulable: the real scheduler's message becomes the reason.
func TestClusterUnschedulable(t *testing.T) {
	c := k8stest.Get(t)
	ns := c.Namespace(t)
	r := newRunner(t, c, ns, func(cfg *Config) { cfg.NodeSelector = map[string]string{"pool": "gpu-a100"} })
	if err := r.Start(context.Background(), is("Shop", "Green", "green-a", revision(1, nil))); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() string {
		ins := r.Instances()
		if len(ins) != 1 || ins[0].Phase != reconcile.PhaseStarting || !strings.Contains(ins[0].Reason, "waiting for a node with room for this instance: 0/") {
			return fmt.Sprintf("got %+v", ins)
		}
		return ""
	})
	t.Logf("reason: %s", r.Instances()[0].Reason)
}

// TestClusterAdoption: a new runner (a restarted control plane) takes over
// the sets and pods of the previous one and can stop them.
func TestClusterAdoption(t *testing.T) {
	c := k8stest.Get(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	r1 := newRunner(t, c, ns, nil)
	for _, id := range []string{"a", "b"} {
		if err := r1.Start(ctx, is("Shop", "Blue", id, revision(3, nil))); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 30*time.Second, func() string { return allReady(r1, 3, 2) })
	r1.Close()
	r2 := newRunner(t, c, ns, nil)
	if msg := allReady(r2, 3, 2); msg != "" {
		t.Fatal("adopted: " + msg)
	}
	if got, want := instancesOf(r2, 3)[0].Resources, instancesOf(r1, 3)[0].Resources; got != want || got == "" {
		t.Errorf("resources after adoption %q, want %q", got, want)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, in := range instancesOf(r2, 3) {
		if err := r2.Stop(sctx, in.ID); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 30*time.Second, func() string {
		if l, _ := c.Client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{}); len(l.Items) > 1 { // kube-root-ca.crt stays
			return fmt.Sprintf("configmaps left: %v", names(l.Items))
		}
		return ""
	})
}

// TestClusterSpecError: a spec that cannot run on Kubernetes fails its
// instance at once, with the reason, and creates nothing.
func TestClusterSpecError(t *testing.T) {
	c := k8stest.Get(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	r := newRunner(t, c, ns, nil)
	rev := revision(1, func(d *spec.Deployment) { d.Environment = &spec.Environment{CondaFile: "conda.yaml"} })
	if err := r.Start(ctx, is("Shop", "Blue", "x", rev)); err != nil {
		t.Fatal(err)
	}
	ins := r.Instances()
	if len(ins) != 1 || ins[0].Phase != reconcile.PhaseFailed || !strings.Contains(ins[0].Reason, "environment.image is required") {
		t.Fatalf("got %+v", ins)
	}
	if l, _ := c.Client.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{}); len(l.Items) != 0 {
		t.Errorf("created %d deployments", len(l.Items))
	}
	if err := r.Stop(ctx, "x"); err != nil || len(r.Instances()) != 0 {
		t.Errorf("stop: %v %+v", err, r.Instances())
	}
}

// TestClusterReconciler drives the runner with the real reconciler and a
// SQLite store: create, scale, update (a new generation rolls out while the
// old one serves), a failed update (the old generation keeps serving) and
// delete, as a user would with moe's CLI.
func TestClusterReconciler(t *testing.T) {
	c := k8stest.Get(t)
	ns := c.Namespace(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := c.Client
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "moe.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := newRunner(t, c, ns, nil)
	rec := &reconcile.Reconciler{Store: st, Runner: r, Interval: 200 * time.Millisecond, DrainDelay: 100 * time.Millisecond}
	done := make(chan struct{})
	go func() { rec.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	if err := st.CreateEndpoint(ctx, &store.Endpoint{Spec: spec.Endpoint{Name: "shop", AuthMode: spec.AuthKey}, State: spec.StateSucceeded}); err != nil {
		t.Fatal(err)
	}
	d := &store.Deployment{Endpoint: "shop", Name: "blue", Desired: revision(1, func(d *spec.Deployment) { d.InstanceCount = 2 }), State: spec.StateCreating}
	if err := st.CreateDeployment(ctx, d); err != nil {
		t.Fatal(err)
	}
	n := NamesFor("shop", "blue")
	waitState := func(what string, gen int64, state string) *store.Deployment {
		t.Helper()
		var got *store.Deployment
		eventually(t, 60*time.Second, func() string {
			got, err = st.GetDeployment(ctx, "shop", "blue")
			if err != nil {
				return err.Error()
			}
			if got.State != state || got.Active == nil || got.Active.Generation != gen {
				active := int64(0)
				if got.Active != nil {
					active = got.Active.Generation
				}
				return fmt.Sprintf("%s: want %s with active gen %d, got %s active %d (%s)", what, state, gen, got.State, active, got.Error)
			}
			return ""
		})
		return got
	}
	replicas := func(gen int64) string {
		dep, err := cs.AppsV1().Deployments(ns).Get(ctx, n.Set(gen), metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		return fmt.Sprintf("%d/%d", dep.Status.ReadyReplicas, *dep.Spec.Replicas)
	}
	expectSets := func(want ...string) {
		t.Helper()
		eventually(t, 60*time.Second, func() string {
			l, err := cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return err.Error()
			}
			var got []string
			for _, dd := range l.Items {
				got = append(got, fmt.Sprintf("%s %d/%d", strings.TrimPrefix(dd.Name, n.Base+"-"), dd.Status.ReadyReplicas, *dd.Spec.Replicas))
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				return fmt.Sprintf("sets %v, want %v", got, want)
			}
			return ""
		})
	}

	got := waitState("create", 1, spec.StateSucceeded)
	expectSets("g1 2/2")
	t.Logf("created: %s, gen 1 %s", got.State, replicas(1))

	// scale: instance_count 2 → 3 (same generation: the set scales)
	update := func(mut func(*store.Deployment)) {
		t.Helper()
		for {
			cur, err := st.GetDeployment(ctx, "shop", "blue")
			if err != nil {
				t.Fatal(err)
			}
			mut(cur)
			if err := st.UpdateDeployment(ctx, cur); err == nil {
				return
			}
		}
	}
	update(func(cur *store.Deployment) {
		cur.Desired.Spec.InstanceCount = 3
		cur.Active.Spec.InstanceCount = 3
	})
	expectSets("g1 3/3")

	// update: a new generation (new image) rolls out, then the old set goes
	update(func(cur *store.Deployment) {
		cur.Desired = revision(2, func(d *spec.Deployment) { d.InstanceCount = 3; d.Environment.Image = "python:3.13-slim" })
		cur.State = spec.StateUpdating
	})
	waitState("update", 2, spec.StateSucceeded)
	expectSets("g2 3/3")
	dep, _ := cs.AppsV1().Deployments(ns).Get(ctx, n.Set(2), metav1.GetOptions{})
	if img := dep.Spec.Template.Spec.Containers[0].Image; img != "python:3.13-slim" {
		t.Errorf("gen 2 image %q", img)
	}

	// a failed update: the old generation keeps serving
	update(func(cur *store.Deployment) {
		cur.Desired = revision(3, func(d *spec.Deployment) { d.InstanceCount = 3; d.Environment.Image = "" })
		cur.State = spec.StateUpdating
	})
	eventually(t, 60*time.Second, func() string {
		got, _ := st.GetDeployment(ctx, "shop", "blue")
		if got.State != spec.StateFailed || !strings.Contains(got.Error, "the previous version keeps serving: environment.image is required") {
			return fmt.Sprintf("failed update: %s %q", got.State, got.Error)
		}
		return ""
	})
	expectSets("g2 3/3")

	// delete: everything goes
	if err := st.DeleteDeployment(ctx, "shop", "blue"); err != nil {
		t.Fatal(err)
	}
	expectSets()
	eventually(t, 60*time.Second, func() string {
		l, _ := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: LabelManagedBy + "=moe"})
		s, _ := cs.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
		p, _ := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if len(l.Items)+len(s.Items)+len(p.Items) > 0 {
			return fmt.Sprintf("left: %d configmaps, %d services, %d pods", len(l.Items), len(s.Items), len(p.Items))
		}
		return ""
	})
}

// TestClusterRecreateRightAfterDelete: a deployment deleted and created
// again at once must not reuse the old Service, which the garbage
// collector is about to remove with the old anchor.
func TestClusterRecreateRightAfterDelete(t *testing.T) {
	c := k8stest.Get(t)
	ns := c.Namespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cs := c.Client
	r := newRunner(t, c, ns, nil)
	n := NamesFor("Shop", "Blue")
	for round := range 3 {
		if err := r.Start(ctx, is("Shop", "Blue", fmt.Sprint("x", round), revision(1, nil))); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, func() string { return allReady(r, 1, 1) })
		if round < 2 {
			if err := r.Stop(ctx, instancesOf(r, 1)[0].ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(time.Second) // give the collector time to do the wrong thing
	anchorCM, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, n.Anchor(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := cs.CoreV1().Services(ns).Get(ctx, n.Service(), metav1.GetOptions{})
	if err != nil || svc.OwnerReferences[0].UID != anchorCM.UID {
		t.Fatalf("service after recreate: %v %v", svc, err)
	}
	if msg := readyEndpoints(cs, ns, n.Service(), 1); msg != "" {
		eventually(t, 30*time.Second, func() string { return readyEndpoints(cs, ns, n.Service(), 1) })
	}
}

// TestClusterQuotaRefusesPods: when admission refuses the pods (here a
// ResourceQuota; Pod Security works the same way), the ReplicaSet
// controller's failure reaches the instance.
func TestClusterQuotaRefusesPods(t *testing.T) {
	c := k8stest.Get(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	q := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "small", Namespace: ns},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourceLimitsMemory: resource.MustParse("1Gi")}}}
	if _, err := c.Client.CoreV1().ResourceQuotas(ns).Create(ctx, q, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// admission enforces a quota once its controller has computed it
	eventually(t, 30*time.Second, func() string {
		q, err := c.Client.CoreV1().ResourceQuotas(ns).Get(ctx, "small", metav1.GetOptions{})
		if err != nil || len(q.Status.Hard) == 0 {
			return fmt.Sprintf("quota not computed yet: %v", err)
		}
		return ""
	})
	r := newRunner(t, c, ns, nil)
	if err := r.Start(ctx, is("Shop", "Blue", "big", revision(1, nil))); err != nil { // DS3_v2: 14 GiB
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() string {
		ins := r.Instances()
		if len(ins) != 1 || ins[0].Phase != reconcile.PhaseFailed || !strings.Contains(ins[0].Reason, "exceeded quota") {
			return fmt.Sprintf("got %+v", ins)
		}
		return ""
	})
	t.Logf("reason: %s", r.Instances()[0].Reason)
}
