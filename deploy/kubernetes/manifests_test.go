package kubernetes

// Applies the kustomize base to a real kube-apiserver (internal/k8stest,
// etcd + kube-apiserver only; gated by MOE_TEST_K8S=1) with strict field
// validation, then checks the RBAC by impersonating the service accounts:
// the control plane's account runs the Kubernetes runner for real in
// moe-models, and neither account can do more than it needs. No pod runs
// (no kubelet): the moe images are never pulled here.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/moe-serving/moe/internal/k8stest"
	"github.com/moe-serving/moe/internal/reconcile"
	k8srunner "github.com/moe-serving/moe/internal/runner/kubernetes"
	"github.com/moe-serving/moe/internal/spec"
	"github.com/moe-serving/moe/internal/store"
)

func TestMain(m *testing.M) { k8stest.Main(m, k8stest.Options{}) }

type kustomization struct {
	Resources []string `json:"resources"`
	Images    []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

// build does the little of `kustomize build` this base uses: concatenate
// the resources and apply the image overrides.
func build(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	raw, err := Files.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := sigsyaml.Unmarshal(raw, &k); err != nil {
		t.Fatal(err)
	}
	var out []*unstructured.Unstructured
	for _, res := range k.Resources {
		b, err := Files.ReadFile(res)
		if err != nil {
			t.Fatalf("kustomization.yaml lists %s: %v", res, err)
		}
		dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for {
			var obj map[string]any
			if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", res, err)
			}
			if obj == nil {
				continue
			}
			u := &unstructured.Unstructured{Object: obj}
			for _, path := range [][]string{{"spec", "template", "spec", "containers"}, {"spec", "template", "spec", "initContainers"}} {
				cs, _, _ := unstructured.NestedSlice(u.Object, path...)
				for _, c := range cs {
					c := c.(map[string]any)
					for _, im := range k.Images {
						if c["image"] == im.Name {
							c["image"] = im.NewName + ":" + im.NewTag
						}
					}
				}
				if cs != nil {
					unstructured.SetNestedSlice(u.Object, cs, path...)
				}
			}
			out = append(out, u)
		}
	}
	return out
}

func TestManifestsApply(t *testing.T) {
	c := k8stest.Get(t)
	ctx := context.Background()
	objs := build(t)
	dc, err := discovery.NewDiscoveryClientForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, u := range objs {
		gvk := u.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s %s: %v", gvk, u.GetName(), err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if ns := u.GetNamespace(); ns != "" {
			ri = dyn.Resource(m.Resource).Namespace(ns)
		}
		// Server-side apply (idempotent, like kubectl apply
		// --server-side), strict: an unknown or misspelt field is an error.
		body, err := u.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		force := true
		if _, err := ri.Patch(ctx, u.GetName(), types.ApplyPatchType, body,
			metav1.PatchOptions{FieldValidation: "Strict", FieldManager: "moe-test", Force: &force}); err != nil {
			t.Fatalf("apply %s %s/%s: %v", gvk.Kind, u.GetNamespace(), u.GetName(), err)
		}
		kinds[gvk.Kind]++
		if gvk.Kind == "Deployment" {
			cs, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
			if img := cs[0].(map[string]any)["image"]; !strings.HasPrefix(img.(string), "ghcr.io/moe-serving/moe:") {
				t.Errorf("%s: image %v not overridden", u.GetName(), img)
			}
		}
	}
	t.Logf("applied %d objects: %v", len(objs), kinds)
	for _, k := range []string{"Namespace", "ServiceAccount", "Role", "RoleBinding", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget"} {
		if kinds[k] == 0 {
			t.Errorf("no %s in the manifests", k)
		}
	}
	gw, err := c.Client.AppsV1().Deployments("moe-system").Get(ctx, "moe-gateway", metav1.GetOptions{})
	if err != nil || *gw.Spec.Replicas < 2 {
		t.Fatalf("gateway: %v %v", gw, err)
	}

	t.Run("rbac", func(t *testing.T) { testRBAC(t, c) })
	t.Run("runner as the control plane", func(t *testing.T) { testRunnerAsControlPlane(t, c) })
}

func impersonate(c *k8stest.Cluster, sa string) *rest.Config {
	cfg := rest.CopyConfig(c.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:moe-system:" + sa}
	return cfg
}

func testRBAC(t *testing.T, c *k8stest.Cluster) {
	ctx := context.Background()
	for _, tc := range []struct {
		sa                                     string
		ns, group, resource, subresource, verb string
		allowed                                bool
	}{
		{"moe-control-plane", "moe-models", "apps", "deployments", "", "create", true},
		{"moe-control-plane", "moe-models", "apps", "deployments", "scale", "update", true},
		{"moe-control-plane", "moe-models", "", "pods", "", "watch", true},
		{"moe-control-plane", "moe-models", "", "pods", "log", "get", true},
		{"moe-control-plane", "moe-models", "", "secrets", "", "create", true},
		{"moe-control-plane", "moe-system", "coordination.k8s.io", "leases", "", "update", true},
		// not more than that
		{"moe-control-plane", "moe-models", "", "secrets", "", "list", false},
		{"moe-control-plane", "moe-models", "", "pods", "", "create", false},
		{"moe-control-plane", "moe-models", "", "pods", "exec", "create", false},
		{"moe-control-plane", "moe-system", "apps", "deployments", "", "update", false},
		{"moe-control-plane", "moe-system", "", "secrets", "", "get", false},
		{"moe-control-plane", "default", "apps", "deployments", "", "create", false},
		{"moe-control-plane", "moe-models", "rbac.authorization.k8s.io", "roles", "", "create", false},
		{"moe-gateway", "moe-models", "discovery.k8s.io", "endpointslices", "", "watch", true},
		{"moe-gateway", "moe-system", "discovery.k8s.io", "endpointslices", "", "watch", true}, // --peers-service
		{"moe-gateway", "moe-system", "", "secrets", "", "get", false},
		{"moe-gateway", "moe-system", "discovery.k8s.io", "endpointslices", "", "create", false},
		{"moe-gateway", "moe-models", "", "pods", "", "list", false},
		{"moe-gateway", "moe-models", "", "secrets", "", "get", false},
		{"moe-gateway", "moe-models", "apps", "deployments", "", "update", false},
	} {
		cs, err := kubernetes.NewForConfig(impersonate(c, tc.sa))
		if err != nil {
			t.Fatal(err)
		}
		rev, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: tc.ns, Group: tc.group, Resource: tc.resource, Subresource: tc.subresource, Verb: tc.verb}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if rev.Status.Allowed != tc.allowed {
			t.Errorf("%s %s %s/%s in %s: allowed=%v, want %v", tc.sa, tc.verb, tc.resource, tc.subresource, tc.ns, rev.Status.Allowed, tc.allowed)
		}
	}
}

// testRunnerAsControlPlane runs the Kubernetes runner with the control
// plane's service account: every call it makes is allowed by the Role.
// Without controllers nothing creates pods; the instance stays a
// placeholder, which is enough to prove the permissions.
func testRunnerAsControlPlane(t *testing.T, c *k8stest.Cluster) {
	cs, err := kubernetes.NewForConfig(impersonate(c, "moe-control-plane"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := k8srunner.New(ctx, k8srunner.Config{Client: cs, Namespace: "moe-models", MoeImage: "ghcr.io/moe-serving/moe:latest",
		ControlPlaneURL: "https://moe-control-plane.moe-system.svc:8442", Credential: k8srunner.RandomCredential})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rev := store.Revision{Generation: 1, Spec: spec.Deployment{Name: "blue", EndpointName: "shop", Type: spec.TypeManaged,
		Environment: &spec.Environment{Image: "python:3.12-slim"}, InstanceType: "Standard_DS2_v2", InstanceCount: 1,
		CodeConfiguration: &spec.CodeConfiguration{Code: "src", ScoringScript: "score.py"}}}
	if err := r.Start(ctx, reconcile.InstanceSpec{ID: "blue-1", Endpoint: "shop", Deployment: "blue", Revision: rev}); err != nil {
		t.Fatalf("start as moe-control-plane: %v", err)
	}
	if ins := r.Instances(); len(ins) != 1 || ins[0].ID != "blue-1" {
		t.Fatalf("instances %+v", ins)
	}
	if _, err := r.Logs("shop", "blue", "", 10); err == nil || !strings.Contains(err.Error(), "no pods yet") {
		t.Errorf("logs: %v", err)
	}
	if err := r.Stop(ctx, "blue-1"); err != nil {
		t.Fatalf("stop as moe-control-plane: %v", err)
	}
	for _, what := range []func() error{
		func() error {
			_, err := c.Client.AppsV1().Deployments("moe-models").Get(ctx, k8srunner.NamesFor("shop", "blue").Set(1), metav1.GetOptions{})
			return err
		},
		func() error {
			_, err := c.Client.CoreV1().ConfigMaps("moe-models").Get(ctx, k8srunner.NamesFor("shop", "blue").Anchor(), metav1.GetOptions{})
			return err
		},
	} {
		if err := what(); err == nil {
			t.Error(fmt.Errorf("object still there after the last stop"))
		}
	}
}
