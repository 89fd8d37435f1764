package routesource

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/moe-serving/moe/internal/gateway"
	"github.com/moe-serving/moe/internal/k8stest"
	"github.com/moe-serving/moe/internal/reconcile"
	"github.com/moe-serving/moe/internal/spec"
)

func TestShareLimits(t *testing.T) {
	build := func() *gateway.Table {
		return &gateway.Table{Endpoints: map[string]*gateway.Endpoint{
			"a": {MaxRequestsPerSecond: 10, Deployments: map[string]*gateway.Deployment{"blue": {MaxConcurrentPerInstance: 4}, "green": {MaxConcurrentPerInstance: 1}, "zero": {}}},
			"b": {Deployments: map[string]*gateway.Deployment{}},
		}}
	}
	for _, c := range []struct {
		n                         int
		rps, blue, green, zero, b int
	}{
		{1, 10, 4, 1, 0, 0},
		{2, 5, 2, 1, 1, 0},
		{3, 4, 2, 1, 1, 0},
		{20, 1, 1, 1, 1, 0},
	} {
		tb := build()
		ShareLimits(tb, c.n)
		a := tb.Endpoints["a"]
		got := []int{a.MaxRequestsPerSecond, a.Deployments["blue"].MaxConcurrentPerInstance, a.Deployments["green"].MaxConcurrentPerInstance, a.Deployments["zero"].MaxConcurrentPerInstance, tb.Endpoints["b"].MaxRequestsPerSecond}
		want := []int{c.rps, c.blue, c.green, c.zero, c.b}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%d replicas: rps, blue, green, zero, b = %v, want %v", c.n, got, want)
		}
	}
}

func TestCountReady(t *testing.T) {
	yes, no := true, false
	ep := func(pod string, ready, terminating *bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{Addresses: []string{"10.0.0." + pod[len(pod)-1:]}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: pod},
			Conditions: discoveryv1.EndpointConditions{Ready: ready, Terminating: terminating}}
	}
	slices := []*discoveryv1.EndpointSlice{
		{Endpoints: []discoveryv1.Endpoint{ep("gw-1", &yes, nil), ep("gw-2", nil, nil), ep("gw-3", &no, nil), ep("gw-4", &yes, &yes)}},
		{Endpoints: []discoveryv1.Endpoint{ep("gw-1", &yes, nil)}}, // the same pod in a second slice
	}
	if n := CountReady(slices); n != 2 {
		t.Errorf("CountReady = %d, want 2 (gw-1 once, gw-2 with ready unset; not the unready or terminating ones)", n)
	}
}

// TestClusterPeers: the gateway replicas are counted from their Service's
// EndpointSlices as the endpointslice controller publishes them (real
// kube-apiserver, controllers and kwok pods), and the follower's tables
// carry each replica's share of the limits, following scale and readiness.
func TestClusterPeers(t *testing.T) {
	c := k8stest.Get(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	labels := map[string]string{"app": "moe-gateway"}
	if _, err := c.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "moe-gateway"},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "https", Port: 443, TargetPort: intstr.FromInt32(8443)}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	replicas := int32(2)
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "moe-gateway"},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "moe", Image: "registry.example/moe:test", Ports: []corev1.ContainerPort{{Name: "https", ContainerPort: 8443}}}}}}},
	}
	if _, err := c.Client.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err := NewPeers(c.Client, ns, "moe-gateway", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	stop := make(chan struct{})
	time.AfterFunc(30*time.Second, func() { close(stop) })
	if !p.WaitForSync(stop) {
		t.Fatal("peers did not sync")
	}

	gwStore, writer := testStores(t)
	box := newBox(t)
	seed(t, writer, box)
	e, _ := writer.GetEndpoint(ctx, "Shop")
	e.Spec.Properties = map[string]string{spec.PropMaxRequestsPerSecond: "10"}
	if err := writer.UpdateEndpoint(ctx, e); err != nil {
		t.Fatal(err)
	}
	d, _ := writer.GetDeployment(ctx, "Shop", "blue")
	d.Active.Spec.RequestSettings = &spec.RequestSettings{RequestTimeoutMS: 5000, MaxConcurrentRequestsPerInstance: 4}
	if err := writer.UpdateDeployment(ctx, d); err != nil {
		t.Fatal(err)
	}
	var tbs tables
	f := &Follower{Store: gwStore, Instances: func() []reconcile.Instance { return nil }, Keys: openKeys(box), OnRoutes: tbs.set, Resync: time.Hour,
		Share: p.Count, ShareChanges: p.Changes()}
	fctx, fcancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- f.Run(fctx) }()
	defer func() {
		fcancel()
		<-done
	}()
	limits := func(rps, conc int) func(*gateway.Table) string {
		return func(tb *gateway.Table) string {
			e := tb.Endpoints["shop"]
			if e == nil || e.MaxRequestsPerSecond != rps || e.Deployments["blue"].MaxConcurrentPerInstance != conc {
				return fmt.Sprintf("want %d/s and %d per instance (%d replicas counted)", rps, conc, p.Count())
			}
			return ""
		}
	}
	took := waitFor(t, 60*time.Second, tbs.get, limits(5, 2))
	t.Logf("2 gateway pods ready: limits halved after %s", took.Round(time.Millisecond))

	replicas = 3
	if _, err := c.Client.AppsV1().Deployments(ns).Update(ctx, dep, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, tbs.get, limits(4, 2))

	pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=moe-gateway"})
	if err != nil || len(pods.Items) != 3 {
		t.Fatalf("pods: %d %v", len(pods.Items), err)
	}
	setPodReady(t, c, ns, pods.Items[0].Name, false)
	setPodReady(t, c, ns, pods.Items[1].Name, false)
	took = waitFor(t, 30*time.Second, tbs.get, limits(10, 4))
	t.Logf("two gateway pods unready: the last one enforces the whole limits after %s", took.Round(time.Millisecond))
}
