package routesource

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/moe-serving/moe/internal/reconcile"
	k8srunner "github.com/moe-serving/moe/internal/runner/kubernetes"
)

func ptr[T any](v T) *T { return &v }

// pod names as the ReplicaSet controller makes them for generation gen
func podName(endpoint, deployment string, gen int64, suffix string) string {
	return k8srunner.NamesFor(endpoint, deployment).Set(gen) + "-7d9f8b6c5-" + suffix
}

type ep struct {
	pod                         string
	addr                        string
	ready, terminating, serving *bool
	kind                        string // default Pod
}

func slice(endpoint, deployment string, port *int32, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "s", Labels: map[string]string{
			k8srunner.LabelManagedBy: k8srunner.ManagedBy, k8srunner.LabelRole: "model",
			k8srunner.LabelEndpoint: endpoint, k8srunner.LabelDeployment: deployment,
			discoveryv1.LabelServiceName: k8srunner.NamesFor(endpoint, deployment).Service(),
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr(PortName), Port: port, Protocol: ptr(corev1.ProtocolTCP)}},
	}
	for _, e := range eps {
		kind := e.kind
		if kind == "" {
			kind = "Pod"
		}
		var addrs []string
		if e.addr != "" {
			addrs = []string{e.addr}
		}
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  addrs,
			Conditions: discoveryv1.EndpointConditions{Ready: e.ready, Serving: e.serving, Terminating: e.terminating},
			TargetRef:  &corev1.ObjectReference{Kind: kind, Name: e.pod, Namespace: "moe-models"},
		})
	}
	return s
}

func TestSliceInstances(t *testing.T) {
	yes, no := ptr(true), ptr(false)
	p1 := podName("shop", "blue", 3, "abcde")
	p2 := podName("shop", "blue", 3, "fghij")
	p3 := podName("shop", "blue", 12, "klmno")
	p4 := podName("shop", "blue", 3, "pqrst")
	p5 := podName("shop", "blue", 3, "uvwxy")
	s := slice("shop", "blue", ptr(int32(5001)),
		ep{pod: p1, addr: "10.244.0.7", ready: yes},
		ep{pod: p2, addr: "10.244.0.8", ready: no, serving: no},                                       // readiness probe failing
		ep{pod: p3, addr: "10.244.0.9"},                                                               // ready absent: true, as the API says
		ep{pod: p4, addr: "10.244.0.10", ready: no, serving: yes, terminating: yes},                   // draining
		ep{pod: p5, ready: yes},                                                                       // no address yet
		ep{pod: "someone-else-7d9f8b6c5-zzzzz", addr: "10.244.0.11", ready: yes},                      // not this deployment's naming
		ep{pod: "shop-blue-node", addr: "10.244.0.12", ready: yes, kind: "Node"},                      // not a pod
		ep{pod: k8srunner.NamesFor("shop", "blue").Base + "-gX-1-2", addr: "10.244.0.13", ready: yes}, // no generation
	)
	got := SliceInstances(s)
	want := []reconcile.Instance{
		{ID: p1, Endpoint: "shop", Deployment: "blue", Generation: 3, Phase: reconcile.PhaseReady, Addr: "10.244.0.7:5001"},
		{ID: p2, Endpoint: "shop", Deployment: "blue", Generation: 3, Phase: reconcile.PhaseStarting, Reason: "pod is not ready"},
		{ID: p3, Endpoint: "shop", Deployment: "blue", Generation: 12, Phase: reconcile.PhaseReady, Addr: "10.244.0.9:5001"},
		{ID: p4, Endpoint: "shop", Deployment: "blue", Generation: 3, Phase: reconcile.PhaseStopping, Reason: "pod is terminating"},
		{ID: p5, Endpoint: "shop", Deployment: "blue", Generation: 3, Phase: reconcile.PhaseStarting, Reason: "no address or port in the EndpointSlice yet"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}
}

func TestSliceInstances_NoPortOrLabels(t *testing.T) {
	p := podName("shop", "blue", 1, "abcde")
	// The controller publishes a slice before it knows the port (pods
	// not yet created with the named port): nothing is routable.
	for _, in := range SliceInstances(slice("shop", "blue", nil, ep{pod: p, addr: "10.0.0.1", ready: ptr(true)})) {
		if in.Phase == reconcile.PhaseReady {
			t.Errorf("ready without a port: %+v", in)
		}
	}
	s := slice("shop", "blue", ptr(int32(5001)), ep{pod: p, addr: "10.0.0.1", ready: ptr(true)})
	delete(s.Labels, k8srunner.LabelDeployment)
	if got := SliceInstances(s); len(got) != 0 {
		t.Errorf("a slice without the deployment label gave %+v", got)
	}
}

func TestSliceInstances_IPv6(t *testing.T) {
	p := podName("shop", "blue", 1, "abcde")
	s := slice("shop", "blue", ptr(int32(5001)), ep{pod: p, addr: "fd00::7", ready: ptr(true)})
	s.AddressType = discoveryv1.AddressTypeIPv6
	if got := SliceInstances(s); len(got) != 1 || got[0].Addr != "[fd00::7]:5001" {
		t.Errorf("got %+v", got)
	}
}

// A pod shows in two slices while the controller moves it: one instance,
// the ready entry winning; names with dashes and long names map back
// through the hashed naming, not by splitting on dashes.
func TestMergeInstances(t *testing.T) {
	long := "an-endpoint-with-a-rather-long-name-indeed"
	pa := podName(long, "blue-green", 2, "abcde")
	pb := podName("shop", "blue", 1, "fghij")
	a := slice(long, "blue-green", ptr(int32(5001)), ep{pod: pa, addr: "10.0.0.1", ready: ptr(true)})
	a2 := slice(long, "blue-green", ptr(int32(5001)), ep{pod: pa, addr: "10.0.0.1", ready: ptr(false)})
	b := slice("shop", "blue", ptr(int32(5001)), ep{pod: pb, addr: "10.0.0.2", ready: ptr(false)})
	for _, order := range [][]*discoveryv1.EndpointSlice{{a, a2, b}, {b, a2, a}} {
		got := MergeInstances(order)
		if len(got) != 2 {
			t.Fatalf("got %+v", got)
		}
		byID := map[string]reconcile.Instance{got[0].ID: got[0], got[1].ID: got[1]}
		if in := byID[pa]; in.Phase != reconcile.PhaseReady || in.Generation != 2 || in.Endpoint != long || in.Deployment != "blue-green" {
			t.Errorf("pod a: %+v", in)
		}
		if in := byID[pb]; in.Phase != reconcile.PhaseStarting || in.Generation != 1 {
			t.Errorf("pod b: %+v", in)
		}
	}
}

func TestGenerationOf(t *testing.T) {
	prefix := k8srunner.NamesFor("shop", "blue").Base + "-g"
	for pod, want := range map[string]int64{
		prefix + "1-5d4c-abcde":  1,
		prefix + "42-5d4c-abcde": 42,
		prefix + "x-5d4c-abcde":  0,
		prefix:                   0,
		"other-g1-5d4c-abcde":    0,
	} {
		if got := generationOf(pod, prefix); got != want {
			t.Errorf("generationOf(%q) = %d, want %d", pod, got, want)
		}
	}
}
