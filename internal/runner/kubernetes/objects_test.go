package kubernetes

// Pure unit tests: building objects from a revision needs no API server.
// What the server thinks of them (validation, defaulting) is checked in
// cluster_test.go, which creates them for real.

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/moe-serving/moe/internal/spec"
	"github.com/moe-serving/moe/internal/store"
)

var testSettings = Settings{Namespace: "ns", MoeImage: "registry.example/moe:1.2.3", ControlPlaneURL: "http://moe-control-plane.moe-system.svc:8080"}

func revision(gen int64, mut func(*spec.Deployment)) store.Revision {
	d := spec.Deployment{
		Name: "blue", EndpointName: "My-Endpoint", Type: spec.TypeManaged,
		Environment:       &spec.Environment{Image: "python:3.12-slim"},
		CodeConfiguration: &spec.CodeConfiguration{Code: "src", ScoringScript: "score.py"},
		InstanceType:      "Standard_DS3_v2", InstanceCount: 2,
		EnvironmentVariables: map[string]string{"B": "2", "A": "1", "WORKER_COUNT": "3"},
		ReadinessProbe:       &spec.Probe{InitialDelay: 7, Period: 3, Timeout: 4, SuccessThreshold: 2, FailureThreshold: 5},
		LivenessProbe:        &spec.Probe{InitialDelay: 11, Period: 13, Timeout: 2, SuccessThreshold: 1, FailureThreshold: 6},
		RequestSettings:      &spec.RequestSettings{RequestTimeoutMS: 90000, MaxConcurrentRequestsPerInstance: 1},
	}
	if mut != nil {
		mut(&d)
	}
	return store.Revision{Generation: gen, Spec: d, Artifacts: store.Artifacts{Model: "sha256:aa", Code: "sha256:bb"}}
}

func TestBuildDeployment(t *testing.T) {
	d, err := BuildDeployment(testSettings, "My-Endpoint", "blue", revision(4, nil), 2)
	if err != nil {
		t.Fatal(err)
	}
	n := NamesFor("My-Endpoint", "blue")
	if d.Name != n.Set(4) || !strings.HasSuffix(d.Name, "-g4") {
		t.Errorf("name %q", d.Name)
	}
	if *d.Spec.Replicas != 2 || d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 0 {
		t.Errorf("replicas/strategy: %d %v", *d.Spec.Replicas, d.Spec.Strategy.RollingUpdate)
	}
	for _, l := range []map[string]string{d.Labels, d.Spec.Template.Labels, d.Spec.Selector.MatchLabels} {
		if l[LabelEndpoint] != "my-endpoint" || l[LabelDeployment] != "blue" || l[LabelGeneration] != "4" || l[LabelManagedBy] != "moe" {
			t.Errorf("labels %v", l)
		}
	}
	if d.Annotations[AnnEndpointName] != "My-Endpoint" {
		t.Errorf("annotations %v", d.Annotations)
	}
	ps := d.Spec.Template.Spec
	if *ps.AutomountServiceAccountToken || *ps.TerminationGracePeriodSeconds != 100 {
		t.Errorf("automount %v grace %d", *ps.AutomountServiceAccountToken, *ps.TerminationGracePeriodSeconds)
	}
	ic := ps.InitContainers[0]
	env := map[string]string{}
	for _, e := range ic.Env {
		env[e.Name] = e.Value
	}
	if ic.Image != testSettings.MoeImage || env[EnvModelDigest] != "sha256:aa" || env[EnvCodeDigest] != "sha256:bb" ||
		env[EnvControlPlaneURL] != testSettings.ControlPlaneURL || env[EnvCredentialFile] != CredentialDir+"/token" || env[EnvGeneration] != "4" {
		t.Errorf("init container %s env %v", ic.Image, env)
	}
	c := ps.Containers[0]
	if c.Image != "python:3.12-slim" || c.Command[0] != BinDir+"/moe" || c.Command[1] != "host" {
		t.Errorf("host container %s %v", c.Image, c.Command)
	}
	cmd := strings.Join(c.Command, " ")
	for _, want := range []string{"--addr 0.0.0.0:5001", "--scoring-script score.py", "--workers 3", "--error-file /dev/termination-log"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("command %q lacks %q", cmd, want)
		}
	}
	if c.Env[0].Name != "A" || c.Env[1].Name != "B" {
		t.Errorf("env not sorted: %v", c.Env)
	}
	rp, lp := c.ReadinessProbe, c.LivenessProbe
	if rp.HTTPGet.Path != "/-/ready" || rp.InitialDelaySeconds != 7 || rp.PeriodSeconds != 3 || rp.TimeoutSeconds != 4 || rp.SuccessThreshold != 2 || rp.FailureThreshold != 5 {
		t.Errorf("readiness %+v", rp)
	}
	if lp.HTTPGet.Path != "/" || lp.InitialDelaySeconds != 11 || lp.PeriodSeconds != 13 || lp.SuccessThreshold != 1 || lp.FailureThreshold != 6 {
		t.Errorf("liveness %+v", lp)
	}
	if q := c.Resources.Limits[corev1.ResourceCPU]; q.MilliValue() != 4000 {
		t.Errorf("cpu limit %s", q.String())
	}
	if q := c.Resources.Requests[corev1.ResourceMemory]; q.Value() != 14<<30 {
		t.Errorf("memory request %s", q.String())
	}
}

func TestNames(t *testing.T) {
	long := strings.Repeat("a", 32)
	for _, tc := range [][2]string{{"ep1", "blue"}, {long, long}, {"A-b", "c"}, {"a", "b-c"}} {
		n := NamesFor(tc[0], tc[1])
		for _, name := range []string{n.Anchor(), n.Service(), n.Set(1234567890), n.Secret(99), EndpointAnchor(tc[0])} {
			if errs := validation.IsDNS1035Label(name); len(errs) > 0 && name != n.Secret(99) {
				t.Errorf("%q: %v", name, errs)
			}
			if len(name) > 63 {
				t.Errorf("%q is %d long", name, len(name))
			}
		}
	}
	if NamesFor("A-b", "c").Base == NamesFor("a", "b-c").Base {
		t.Error("names collide")
	}
	if NamesFor("EP", "Blue").Base != NamesFor("ep", "blue").Base {
		t.Error("names must be case-insensitive like moe's")
	}
}

func TestResources(t *testing.T) {
	gpu := revision(1, func(d *spec.Deployment) { d.InstanceType = "Standard_NC6s_v3" }).Spec
	rr, desc, err := Resources(&gpu)
	if err != nil {
		t.Fatal(err)
	}
	if q := rr.Limits["nvidia.com/gpu"]; q.Value() != 1 || !strings.Contains(desc, "nvidia.com/gpu 1") {
		t.Errorf("gpu: %v %q", rr.Limits, desc)
	}
	k := revision(1, func(d *spec.Deployment) {
		d.Type = spec.TypeKubernetes
		d.Resources = &spec.Resources{Requests: map[string]string{"cpu": "250m", "memory": "1Gi"}, Limits: map[string]string{"memory": "2Gi", "gpu": "1"}}
	}).Spec
	rr, desc, err = Resources(&k)
	if err != nil {
		t.Fatal(err)
	}
	if q := rr.Requests[corev1.ResourceCPU]; q.MilliValue() != 250 {
		t.Errorf("cpu %s", q.String())
	}
	if _, ok := rr.Limits["nvidia.com/gpu"]; !ok || !strings.Contains(desc, "cpu 250m (request, no limit)") {
		t.Errorf("limits %v desc %q", rr.Limits, desc)
	}
	kdef := revision(1, func(d *spec.Deployment) { d.Type = spec.TypeKubernetes; d.InstanceType = "" }).Spec
	if rr, _, err := Resources(&kdef); err != nil || rr.Requests.Memory().String() != "2Gi" {
		t.Errorf("default instance type: %v %v", rr, err)
	}
	for name, mut := range map[string]func(*spec.Deployment){
		"bad quantity": func(d *spec.Deployment) {
			d.Type = spec.TypeKubernetes
			d.Resources = &spec.Resources{Limits: map[string]string{"memory": "lots"}}
		},
		"request over limit": func(d *spec.Deployment) {
			d.Type = spec.TypeKubernetes
			d.Resources = &spec.Resources{Requests: map[string]string{"memory": "4Gi"}, Limits: map[string]string{"memory": "2Gi"}}
		},
		"unknown sku": func(d *spec.Deployment) { d.InstanceType = "Standard_Nope" },
	} {
		sp := revision(1, mut).Spec
		var se *SpecError
		if _, _, err := Resources(&sp); !errors.As(err, &se) {
			t.Errorf("%s: want a SpecError, got %v", name, err)
		}
	}
}

func TestBuildDeploymentSpecErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		mut  func(*spec.Deployment)
		want string
	}{
		"no image":      {func(d *spec.Deployment) { d.Environment.Image = "" }, "environment.image is required"},
		"build context": {func(d *spec.Deployment) { d.Environment = &spec.Environment{Build: &spec.Build{Path: "."}} }, "does not build images"},
		"workers":       {func(d *spec.Deployment) { d.EnvironmentVariables["WORKER_COUNT"] = "x" }, "WORKER_COUNT"},
		"custom container": {func(d *spec.Deployment) {
			d.Environment.InferenceConfig = &spec.InferenceConfig{ScoringRoute: &spec.Route{Port: 8000, Path: "/"}}
		}, "custom container"},
	} {
		_, err := BuildDeployment(testSettings, "ep", "blue", revision(1, tc.mut), 1)
		var se *SpecError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want a SpecError with %q", name, err, tc.want)
		}
	}
}
