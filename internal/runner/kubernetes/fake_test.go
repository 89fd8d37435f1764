package kubernetes

// Unit tests with client-go's fake clientset, where a real API server adds
// nothing: configuration checks, and which pod and container get-logs
// reads (the fake answers every log request with "fake logs"; a real
// server without a kubelet could not serve logs at all).

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestNewNeedsConfig(t *testing.T) {
	ctx := context.Background()
	if _, err := New(ctx, Config{}); err == nil {
		t.Error("no client: want an error")
	}
	if _, err := New(ctx, Config{Client: fake.NewClientset(), Namespace: "ns"}); err == nil || !strings.Contains(err.Error(), "MoeImage") {
		t.Errorf("no image/url/credential: %v", err)
	}
}

func TestLogsPicksNewestPod(t *testing.T) {
	n := NamesFor("Shop", "Blue")
	pod := func(name string, gen int64, age time.Duration) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: n.setLabels(gen),
			CreationTimestamp: metav1.NewTime(time.Now().Add(-age))}}
	}
	cs := fake.NewClientset(pod("g1-new", 1, time.Minute), pod("g2-old", 2, time.Hour), pod("g2-new", 2, time.Second))
	// the fake's log requests carry no pod name: answer with the options
	cs.PrependReactor("get", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "log" {
			return false, nil, nil
		}
		o := a.(k8stesting.GenericAction).GetValue().(*corev1.PodLogOptions)
		return true, &runtime.Unknown{Raw: fmt.Appendf(nil, "%s tail=%d", o.Container, *o.TailLines)}, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := New(ctx, Config{Client: cs, Namespace: "ns", MoeImage: "m", ControlPlaneURL: "http://cp", Credential: RandomCredential})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out, err := r.Logs("shop", "blue", "storage-initializer", 10)
	if err != nil || out != "storage-initializer tail=10" {
		t.Fatalf("logs %q %v", out, err)
	}
	if _, err := r.Logs("shop", "blue", "sidecar", 10); err == nil {
		t.Error("unknown container: want an error")
	}
	if _, err := r.Logs("shop", "green", "", 10); err == nil || !strings.Contains(err.Error(), "no pods yet") {
		t.Errorf("no pods: %v", err)
	}
	pods, _ := r.pods.Pods("ns").List(labels.Everything())
	if p := newestPod(pods); p.Name != "g2-new" {
		t.Errorf("newest pod %s, want g2-new", p.Name)
	}
}
