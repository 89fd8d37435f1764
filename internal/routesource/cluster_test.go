package routesource

// Against a real control plane (internal/k8stest with kube-controller-manager,
// kube-scheduler and kwok): the Kubernetes runner creates Deployments, the
// ReplicaSet controller pods, kwok marks them Running and Ready, and the
// endpointslice controller publishes them — the route table a `moe gateway`
// builds follows. The data path through pods cannot run here: there is no
// kubelet and no container runtime (no images), so nothing listens at the
// pods' addresses; the gateway → host path is covered by the local runner's
// end-to-end tests (cmd/moe).
//
// Run with MOE_TEST_K8S=1 (after scripts/k8s-build); with
// MOE_TEST_POSTGRES_URL (scripts/postgres) the store is PostgreSQL and the
// traffic change comes from a second store client, as from another
// control-plane replica; without it, SQLite in a temp file.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/moe-serving/moe/internal/gateway"
	"github.com/moe-serving/moe/internal/k8stest"
	"github.com/moe-serving/moe/internal/reconcile"
	k8srunner "github.com/moe-serving/moe/internal/runner/kubernetes"
	"github.com/moe-serving/moe/internal/store"
	"github.com/moe-serving/moe/internal/store/postgres"
	"github.com/moe-serving/moe/internal/store/postgres/pgtest"
	"github.com/moe-serving/moe/internal/store/sqlite"
)

func TestMain(m *testing.M) { k8stest.Main(m, k8stest.Options{Controllers: true}) }

// testStores returns the store the gateway reads and the one another
// control-plane replica writes: two PostgreSQL clients on a fresh schema
// when MOE_TEST_POSTGRES_URL is set, else one SQLite store for both.
func testStores(t *testing.T) (gw, writer store.Store) {
	t.Helper()
	base := os.Getenv("MOE_TEST_POSTGRES_URL")
	if base == "" {
		st, err := sqlite.Open(filepath.Join(t.TempDir(), "moe.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		t.Log("store: SQLite (set MOE_TEST_POSTGRES_URL for PostgreSQL with two clients)")
		return st, st
	}
	u := pgtest.Schema(t, base)
	ctx := context.Background()
	open := func() store.Store {
		s, err := postgres.Open(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	t.Log("store: PostgreSQL, two clients")
	return open(), open()
}

func setPodReady(t *testing.T, c *k8stest.Cluster, ns, pod string, ready bool) {
	t.Helper()
	ctx := context.Background()
	p, err := c.Client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.PodReady || p.Status.Conditions[i].Type == corev1.ContainersReady {
			p.Status.Conditions[i].Status = st
			p.Status.Conditions[i].LastTransitionTime = metav1.Now()
		}
	}
	for i := range p.Status.ContainerStatuses {
		p.Status.ContainerStatuses[i].Ready = ready
	}
	if _, err := c.Client.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// podsOf is the routed instance IDs of shop/blue (pod names).
func podsOf(tb *gateway.Table) []string {
	var out []string
	if e := tb.Endpoints["shop"]; e != nil {
		if d := e.Deployments["blue"]; d != nil {
			for _, in := range d.Instances {
				out = append(out, in.ID)
			}
		}
	}
	return out
}

// TestClusterRoutesFollowEndpointSlices: the route table of the gateway
// component (EndpointSlices + store → BuildRoutes) adds a pod when it
// becomes ready, drops it when it becomes unready or is deleted, switches
// to a new generation, and reflects a traffic change written by another
// store client within a second.
func TestClusterRoutesFollowEndpointSlices(t *testing.T) {
	c := k8stest.Get(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	gwStore, writer := testStores(t)
	box := newBox(t)
	seed(t, writer, box)

	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	runner, err := k8srunner.New(rctx, k8srunner.Config{Client: c.Client, Namespace: ns, MoeImage: "registry.example/moe:test",
		ControlPlaneURL: "http://moe-control-plane.moe-system.svc:8442", Credential: k8srunner.RandomCredential})
	rcancel()
	if err != nil {
		t.Fatal(err)
	}
	defer runner.Close()

	sl, err := NewSlices(c.Client, ns, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sl.Close()
	stop := make(chan struct{})
	time.AfterFunc(30*time.Second, func() { close(stop) })
	if !sl.WaitForSync(stop) {
		t.Fatal("slices did not sync")
	}
	var tbs tables
	f := &Follower{Store: gwStore, Instances: sl.Instances, Changes: sl.Changes(), Keys: openKeys(box), OnRoutes: tbs.set, Resync: time.Hour}
	fctx, fcancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- f.Run(fctx) }()
	defer func() {
		fcancel()
		<-done
	}()
	// the store is read: the endpoint is routed, with no instance yet (503)
	waitFor(t, 5*time.Second, tbs.get, func(tb *gateway.Table) string {
		if e := tb.Endpoints["shop"]; e == nil || e.Deployments["blue"] == nil || len(e.Deployments["blue"].Instances) != 0 {
			return fmt.Sprintf("want shop/blue without instances, got %+v", tb.Endpoints)
		}
		return ""
	})

	d, err := writer.GetDeployment(ctx, "Shop", "blue")
	if err != nil {
		t.Fatal(err)
	}
	gen1 := *d.Active
	n := k8srunner.NamesFor("Shop", "blue")
	for _, id := range []string{"blue-a", "blue-b"} {
		if err := runner.Start(ctx, reconcile.InstanceSpec{ID: id, Endpoint: "Shop", Deployment: "blue", Revision: gen1}); err != nil {
			t.Fatal(err)
		}
	}
	// pods become ready → instances appear, at the pods' addresses
	start := time.Now()
	waitFor(t, 60*time.Second, tbs.get, func(tb *gateway.Table) string {
		ins := tb.Endpoints["shop"].Deployments["blue"].Instances
		if len(ins) != 2 {
			return fmt.Sprintf("want 2 instances, got %v", podsOf(tb))
		}
		for _, in := range ins {
			if !strings.HasPrefix(in.ID, n.Set(1)+"-") || !strings.HasPrefix(in.Addr, "10.244.") || !strings.HasSuffix(in.Addr, ":5001") {
				return fmt.Sprintf("instance %s at %s", in.ID, in.Addr)
			}
		}
		return ""
	})
	t.Logf("2 pods routed %s after Start", time.Since(start).Round(time.Millisecond))
	pods := podsOf(tbs.get())
	// the runner sees the same pods at the same addresses
	for _, in := range runner.Instances() {
		found := false
		for _, gi := range tbs.get().Endpoints["shop"].Deployments["blue"].Instances {
			found = found || (gi.ID == in.ID && gi.Addr == in.Addr)
		}
		if !found {
			t.Errorf("runner instance %+v is not in the table", in)
		}
	}

	// one pod's readiness probe fails → it leaves the table
	setPodReady(t, c, ns, pods[0], false)
	took := waitFor(t, 30*time.Second, tbs.get, func(tb *gateway.Table) string {
		if got := podsOf(tb); len(got) != 1 || got[0] != pods[1] {
			return fmt.Sprintf("after %s turned unready: %v", pods[0], got)
		}
		return ""
	})
	t.Logf("unready pod left the table after %s", took.Round(time.Millisecond))

	// the other pod is deleted → it leaves; its replacement comes in ready
	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, pods[1], metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, tbs.get, func(tb *gateway.Table) string {
		got := podsOf(tb)
		if len(got) != 1 || got[0] == pods[0] || got[0] == pods[1] {
			return fmt.Sprintf("after deleting %s: %v, want only its replacement", pods[1], got)
		}
		return ""
	})
	replacement := podsOf(tbs.get())[0]

	// the unready pod recovers → back in
	setPodReady(t, c, ns, pods[0], true)
	waitFor(t, 30*time.Second, tbs.get, func(tb *gateway.Table) string {
		if got := podsOf(tb); len(got) != 2 || !(got[0] == pods[0] && got[1] == replacement || got[1] == pods[0] && got[0] == replacement) {
			return fmt.Sprintf("after %s recovered: %v, want it and %s", pods[0], got, replacement)
		}
		return ""
	})

	// a new generation: its pod is ready but not routed until the store
	// makes it active; then only it is
	gen2 := gen1
	gen2.Generation = 2
	if err := runner.Start(ctx, reconcile.InstanceSpec{ID: "blue-c", Endpoint: "Shop", Deployment: "blue", Revision: gen2}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, func() *gateway.Table { return &gateway.Table{} }, func(*gateway.Table) string {
		for _, in := range sl.Instances() {
			if in.Generation == 2 && in.Phase == reconcile.PhaseReady {
				return ""
			}
		}
		return fmt.Sprintf("no ready generation-2 endpoint in the slices: %+v", sl.Instances())
	})
	if got := podsOf(tbs.get()); len(got) != 2 || !strings.HasPrefix(got[0], n.Set(1)+"-") || !strings.HasPrefix(got[1], n.Set(1)+"-") {
		t.Fatalf("before the switch, want the 2 generation-1 pods, got %v", got)
	}
	setActive(t, writer, "blue", 2)
	took = waitFor(t, time.Second, tbs.get, func(tb *gateway.Table) string {
		if got := podsOf(tb); len(got) != 1 || !strings.HasPrefix(got[0], n.Set(2)+"-") {
			return fmt.Sprintf("after activating generation 2: %v", got)
		}
		return ""
	})
	t.Logf("generation switch reflected after %s", took.Round(time.Millisecond))

	// a traffic update by another store client: within a second
	setTraffic(t, writer, map[string]int{"blue": 30, "green": 70})
	took = waitFor(t, time.Second, tbs.get, func(tb *gateway.Table) string {
		if got := fmt.Sprint(tb.Endpoints["shop"].Traffic); got != "[{blue 30} {green 70}]" {
			return "traffic " + got
		}
		return ""
	})
	t.Logf("traffic update reflected after %s", took.Round(time.Millisecond))
}
