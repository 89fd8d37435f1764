package kubernetes

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/moe-serving/moe/internal/sku"
	"github.com/moe-serving/moe/internal/spec"
	"github.com/moe-serving/moe/internal/store"
)

// Labels and annotations on every object the runner creates. Label values
// are the lowercased moe names (moe names are case-insensitive and already
// DNS labels); the annotations keep the names as the user wrote them.
const (
	LabelManagedBy  = "app.kubernetes.io/managed-by"
	ManagedBy       = "moe"
	LabelComponent  = "app.kubernetes.io/component"
	LabelEndpoint   = "moe.dev/endpoint"
	LabelDeployment = "moe.dev/deployment"
	LabelGeneration = "moe.dev/generation"
	// LabelRole says what an object is: "endpoint" and "deployment"
	// (the owner anchors), "model" (Deployments, pods, Services, Secrets).
	LabelRole = "moe.dev/role"

	AnnEndpointName   = "moe.dev/endpoint-name"
	AnnDeploymentName = "moe.dev/deployment-name"
	// AnnDeletionCost is the ReplicaSet controller's hint: on scale-down it
	// removes pods with the lowest cost first (among equally ready pods).
	AnnDeletionCost = "controller.kubernetes.io/pod-deletion-cost"
)

// Container, volume and path names inside a model pod. The container names
// match the local runner's log names (get-logs --container).
const (
	ContainerHost = "inference-server"
	ContainerInit = "storage-initializer"

	BinDir        = "/opt/moe/bin"
	ModelDir      = "/var/azureml-app/azureml-models"
	CodeDir       = "/var/azureml-app/code"
	CredentialDir = "/var/run/secrets/moe"
	// CredentialKey is the key (and file name) of the credential in its Secret.
	CredentialKey = "token"
	// CAKey is the key (and file name) of the PEM certificates that the
	// storage initializer trusts for the control plane's TLS, in the same
	// Secret; absent when Config.ControlPlaneCA is empty.
	CAKey = "ca.crt"
)

// Environment of the storage-initializer container: the contract between
// this runner and `moe storage-init` (the command the init container runs).
// It must copy its own executable to $MOE_BIN_DIR/moe, then fetch each
// digest with GET $MOE_CONTROL_PLANE_URL/v1/artifacts/<digest> (a tar, as
// POST /v1/artifacts took it) sending "Authorization: Bearer <contents of
// $MOE_CREDENTIAL_FILE>", and unpack the model into $MOE_MODEL_DIR and the
// code into $MOE_CODE_DIR. The credential is valid for this one deployment
// (endpoint, deployment, generation) and its digests only. On failure it
// writes a one-line reason to /dev/termination-log and exits non-zero;
// the runner shows that line to the user. $MOE_CONTROL_PLANE_CA_FILE, when
// the file exists, holds PEM certificates to trust for the control plane's
// TLS besides the system's.
const (
	EnvControlPlaneURL = "MOE_CONTROL_PLANE_URL"
	EnvControlPlaneCA  = "MOE_CONTROL_PLANE_CA_FILE"
	EnvCredentialFile  = "MOE_CREDENTIAL_FILE"
	EnvBinDir          = "MOE_BIN_DIR"
	EnvModelDigest     = "MOE_MODEL_DIGEST"
	EnvCodeDigest      = "MOE_CODE_DIGEST"
	EnvCondaDigest     = "MOE_CONDA_DIGEST"
	EnvModelDir        = "MOE_MODEL_DIR"
	EnvCodeDir         = "MOE_CODE_DIR"
	EnvEndpoint        = "MOE_ENDPOINT"
	EnvDeployment      = "MOE_DEPLOYMENT"
	EnvGeneration      = "MOE_GENERATION"
	EnvInstance        = "MOE_INSTANCE"
)

// Names derives the Kubernetes names for one moe deployment. Every name
// carries a hash of the full (endpoint, deployment) pair, so truncation and
// "a-b"/"c" versus "a"/"b-c" never collide.
type Names struct {
	Endpoint, Deployment string // lowercased moe names
	Base                 string
}

// NamesFor returns the names for endpoint/deployment.
func NamesFor(endpoint, deployment string) Names {
	ep, dep := strings.ToLower(endpoint), strings.ToLower(deployment)
	sum := sha256.Sum256([]byte(ep + "/" + dep))
	b := ep + "-" + dep
	if len(b) > 40 {
		b = strings.TrimRight(b[:40], "-")
	}
	return Names{Endpoint: ep, Deployment: dep, Base: b + "-" + hex.EncodeToString(sum[:4])}
}

// EndpointAnchor is the ConfigMap that owns an endpoint's deployment anchors.
func EndpointAnchor(endpoint string) string {
	ep := strings.ToLower(endpoint)
	sum := sha256.Sum256([]byte(ep))
	return "moe-endpoint-" + ep + "-" + hex.EncodeToString(sum[:4])
}

// Anchor is the ConfigMap that owns everything of one moe deployment: its
// Service and one Deployment per generation (which owns its Secret, its
// ReplicaSets and their pods). Deleting it deletes all of them.
func (n Names) Anchor() string { return n.Base }

// Service is the moe deployment's Service (all generations' ready pods).
func (n Names) Service() string { return n.Base }

// Set is the Deployment of one generation.
func (n Names) Set(gen int64) string { return n.Base + "-g" + strconv.FormatInt(gen, 10) }

// Secret holds the per-deployment credential of one generation.
func (n Names) Secret(gen int64) string { return n.Set(gen) + "-cred" }

func (n Names) labels(role string) map[string]string {
	return map[string]string{
		LabelManagedBy: ManagedBy, LabelEndpoint: n.Endpoint, LabelDeployment: n.Deployment, LabelRole: role,
	}
}

func (n Names) setLabels(gen int64) map[string]string {
	l := n.labels("model")
	l[LabelGeneration] = strconv.FormatInt(gen, 10)
	return l
}

// Settings are the runner's cluster-wide choices that shape every pod.
type Settings struct {
	Namespace string
	// MoeImage provides /moe for the storage-initializer.
	MoeImage string
	// ControlPlaneURL is the control plane's API as pods reach it.
	ControlPlaneURL string
	// Port the host listens on inside the pod; default 5001.
	Port int32
	// ImagePullSecrets for the environment images and MoeImage.
	ImagePullSecrets []string
	// ImagePullPolicy for MoeImage; default IfNotPresent.
	MoeImagePullPolicy corev1.PullPolicy
	// NodeSelector and Tolerations place model pods (e.g. on an
	// inference node pool).
	NodeSelector map[string]string
	Tolerations  []corev1.Toleration
}

func (s Settings) port() int32 {
	if s.Port == 0 {
		return 5001
	}
	return s.Port
}

// SpecError is a problem with a deployment's spec that no retry fixes; the
// runner reports it as a Failed instance so the user sees it.
type SpecError struct{ Msg string }

func (e *SpecError) Error() string { return e.Msg }

func specErr(format string, a ...any) error { return &SpecError{Msg: fmt.Sprintf(format, a...)} }

// BuildDeployment returns the Deployment for one generation of a moe
// deployment, with the given replica count. It returns a *SpecError when
// the spec cannot run on Kubernetes.
func BuildDeployment(st Settings, endpoint, deployment string, rev store.Revision, replicas int32) (*appsv1.Deployment, error) {
	n := NamesFor(endpoint, deployment)
	sp := rev.Spec
	if sp.Environment == nil || sp.Environment.Image == "" {
		if sp.Environment != nil && sp.Environment.Build != nil {
			return nil, specErr("environment.build is not supported on Kubernetes: moe does not build images in the cluster; build and push the image yourself and set environment.image")
		}
		return nil, specErr("environment.image is required on Kubernetes: the pod runs that image (with moe's host injected); give an image that has Python and your scoring script's dependencies")
	}
	if sp.Environment.InferenceConfig != nil {
		return nil, specErr("environment.inference_config (a custom container) is not supported on Kubernetes yet; use a scoring script with code_configuration")
	}
	res, _, err := Resources(&sp)
	if err != nil {
		return nil, err
	}
	workers := 1
	if w, ok := sp.EnvironmentVariables["WORKER_COUNT"]; ok {
		if v, err := strconv.Atoi(w); err == nil && v > 0 {
			workers = v
		} else {
			return nil, specErr("environment_variables.WORKER_COUNT must be a positive integer (got %q)", w)
		}
	}
	python := "python3"
	if p := sp.EnvironmentVariables["MOE_PYTHON"]; p != "" {
		python = p
	}
	script := ""
	if sp.CodeConfiguration != nil {
		script = sp.CodeConfiguration.ScoringScript
	}
	modelDir := ModelDir
	if sp.ModelMountPath != "" {
		modelDir = sp.ModelMountPath
	}
	gen := strconv.FormatInt(rev.Generation, 10)
	port := st.port()

	var env []corev1.EnvVar
	keys := make([]string, 0, len(sp.EnvironmentVariables))
	for k := range sp.EnvironmentVariables {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, corev1.EnvVar{Name: k, Value: sp.EnvironmentVariables[k]})
	}
	ids := []corev1.EnvVar{
		{Name: EnvEndpoint, Value: endpoint},
		{Name: EnvDeployment, Value: deployment},
		{Name: EnvGeneration, Value: gen},
		{Name: EnvInstance, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
	}
	env = append(env, ids...)
	initEnv := append([]corev1.EnvVar{
		{Name: EnvControlPlaneURL, Value: st.ControlPlaneURL},
		{Name: EnvCredentialFile, Value: CredentialDir + "/" + CredentialKey},
		{Name: EnvControlPlaneCA, Value: CredentialDir + "/" + CAKey},
		{Name: EnvBinDir, Value: BinDir},
		{Name: EnvModelDigest, Value: rev.Artifacts.Model},
		{Name: EnvCodeDigest, Value: rev.Artifacts.Code},
		{Name: EnvCondaDigest, Value: rev.Artifacts.Conda},
		{Name: EnvModelDir, Value: modelDir},
		{Name: EnvCodeDir, Value: CodeDir},
	}, ids...)

	rp, lp := sp.ReadinessProbe, sp.LivenessProbe
	if rp == nil {
		rp = spec.DefaultProbe()
	}
	if lp == nil {
		lp = spec.DefaultProbe()
	}
	// In-flight requests finish before the pod is killed: the request
	// timeout plus a margin for the host's own shutdown.
	grace := int64(30)
	if rs := sp.RequestSettings; rs != nil && rs.RequestTimeoutMS > 0 {
		grace = max(grace, int64(rs.RequestTimeoutMS+999)/1000+10)
	}
	f := false
	t := true
	nonRoot := int64(65532)
	pullSecrets := make([]corev1.LocalObjectReference, 0, len(st.ImagePullSecrets))
	for _, s := range st.ImagePullSecrets {
		pullSecrets = append(pullSecrets, corev1.LocalObjectReference{Name: s})
	}
	pullPolicy := st.MoeImagePullPolicy
	if pullPolicy == "" {
		pullPolicy = corev1.PullIfNotPresent
	}
	mode := int32(0o440)
	labels := n.setLabels(rev.Generation)
	ann := map[string]string{AnnEndpointName: endpoint, AnnDeploymentName: deployment}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: n.Set(rev.Generation), Namespace: st.Namespace, Labels: labels, Annotations: ann},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxUnavailable: ptr(intstr.FromInt32(0)),
					MaxSurge:       ptr(intstr.FromInt32(1)),
				},
			},
			RevisionHistoryLimit: ptr(int32(2)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: ann},
				Spec: corev1.PodSpec{
					AutomountServiceAccountToken:  &f, // the model needs no Kubernetes API access
					EnableServiceLinks:            &f,
					TerminationGracePeriodSeconds: &grace,
					ImagePullSecrets:              pullSecrets,
					NodeSelector:                  st.NodeSelector,
					Tolerations:                   st.Tolerations,
					Volumes: []corev1.Volume{
						{Name: "moe-bin", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
						{Name: "model", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
						{Name: "code", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
						{Name: "credential", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: n.Secret(rev.Generation), DefaultMode: &mode}}},
					},
					InitContainers: []corev1.Container{{
						Name:                     ContainerInit,
						Image:                    st.MoeImage,
						ImagePullPolicy:          pullPolicy,
						Command:                  []string{"/moe", "storage-init"},
						Env:                      initEnv,
						TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
						VolumeMounts: []corev1.VolumeMount{
							{Name: "moe-bin", MountPath: BinDir},
							{Name: "model", MountPath: modelDir},
							{Name: "code", MountPath: CodeDir},
							{Name: "credential", MountPath: CredentialDir, ReadOnly: true},
						},
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
						},
						SecurityContext: &corev1.SecurityContext{
							RunAsNonRoot: &t, RunAsUser: &nonRoot, AllowPrivilegeEscalation: &f, ReadOnlyRootFilesystem: &t,
							Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
					}},
					Containers: []corev1.Container{{
						Name:  ContainerHost,
						Image: sp.Environment.Image,
						Command: []string{BinDir + "/moe", "host",
							"--addr", fmt.Sprintf("0.0.0.0:%d", port),
							"--code-dir", CodeDir,
							"--scoring-script", script,
							"--model-dir", modelDir,
							"--python", python,
							"--workers", strconv.Itoa(workers),
							// the host's start failure summary becomes the
							// container's termination message
							"--error-file", "/dev/termination-log",
						},
						Env:                      env,
						Ports:                    []corev1.ContainerPort{{Name: "http", ContainerPort: port, Protocol: corev1.ProtocolTCP}},
						Resources:                res,
						TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
						ReadinessProbe:           probe(rp, "/-/ready", rp.SuccessThreshold),
						// liveness: success_threshold must be 1 in Kubernetes
						LivenessProbe: probe(lp, "/", 1),
						VolumeMounts: []corev1.VolumeMount{
							{Name: "moe-bin", MountPath: BinDir, ReadOnly: true},
							{Name: "model", MountPath: modelDir, ReadOnly: true},
							{Name: "code", MountPath: CodeDir, ReadOnly: true},
						},
						SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &f},
					}},
				},
			},
		},
	}
	return d, nil
}

func probe(p *spec.Probe, path string, success int) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("http")}},
		InitialDelaySeconds: int32(p.InitialDelay),
		PeriodSeconds:       int32(max(p.Period, 1)),
		TimeoutSeconds:      int32(max(p.Timeout, 1)),
		SuccessThreshold:    int32(max(success, 1)),
		FailureThreshold:    int32(max(p.FailureThreshold, 1)),
	}
}

// DefaultInstanceType is what a kubernetes deployment without resources or
// a known instance_type gets, like Azure Arc's "defaultinstancetype".
var DefaultInstanceType = corev1.ResourceRequirements{
	Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("2Gi")},
	Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("2Gi")},
}

// Resources maps a deployment's instance_type (managed) or resources
// (kubernetes) to the host container's requests and limits, and describes
// them for Instance.Resources. A managed SKU reserves the whole instance:
// requests equal limits (Guaranteed QoS), GPUs as nvidia.com/gpu.
func Resources(sp *spec.Deployment) (corev1.ResourceRequirements, string, error) {
	if sp.Type == spec.TypeKubernetes && sp.Resources != nil && (len(sp.Resources.Requests) > 0 || len(sp.Resources.Limits) > 0) {
		var rr corev1.ResourceRequirements
		var err error
		if rr.Requests, err = resourceList("resources.requests", sp.Resources.Requests); err != nil {
			return rr, "", err
		}
		if rr.Limits, err = resourceList("resources.limits", sp.Resources.Limits); err != nil {
			return rr, "", err
		}
		for name, req := range rr.Requests {
			if lim, ok := rr.Limits[name]; ok && req.Cmp(lim) > 0 {
				return rr, "", specErr("resources.requests.%s (%s) is more than resources.limits.%s (%s)", name, req.String(), name, lim.String())
			}
		}
		return rr, describe(rr), nil
	}
	s, ok := sku.Lookup(sp.InstanceType)
	if !ok {
		if sp.Type == spec.TypeKubernetes {
			rr := *DefaultInstanceType.DeepCopy()
			return rr, describe(rr), nil
		}
		return corev1.ResourceRequirements{}, "", specErr("instance_type %q is not a known instance type; run `moe sku list`", sp.InstanceType)
	}
	l := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewMilliQuantity(s.MilliCPU(), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(s.MemoryBytes(), resource.BinarySI),
	}
	if s.GPU > 0 {
		l["nvidia.com/gpu"] = *resource.NewQuantity(int64(s.GPU), resource.DecimalSI)
	}
	rr := corev1.ResourceRequirements{Requests: l, Limits: l.DeepCopy()}
	return rr, describe(rr), nil
}

func resourceList(field string, m map[string]string) (corev1.ResourceList, error) {
	if len(m) == 0 {
		return nil, nil
	}
	l := corev1.ResourceList{}
	for k, v := range m {
		name := k
		if strings.EqualFold(k, "gpu") {
			name = "nvidia.com/gpu"
		}
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return nil, specErr("%s.%s: %q is not a Kubernetes quantity (examples: 500m, 2, 1.5Gi)", field, k, v)
		}
		l[corev1.ResourceName(name)] = q
	}
	return l, nil
}

func describe(rr corev1.ResourceRequirements) string {
	var parts []string
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, "nvidia.com/gpu"} {
		if q, ok := rr.Limits[name]; ok {
			parts = append(parts, fmt.Sprintf("%s %s", name, q.String()))
		} else if q, ok := rr.Requests[name]; ok {
			parts = append(parts, fmt.Sprintf("%s %s (request, no limit)", name, q.String()))
		}
	}
	if len(parts) == 0 {
		return "no limits (Kubernetes defaults of the namespace)"
	}
	return strings.Join(parts, ", ") + " (enforced by Kubernetes)"
}

// buildService returns the moe deployment's Service: every generation's
// ready pods on port 80. The gateway reads its EndpointSlices.
func buildService(st Settings, n Names, endpoint, deployment string) *corev1.Service {
	sel := n.labels("model")
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: n.Service(), Namespace: st.Namespace, Labels: n.labels("model"),
			Annotations: map[string]string{AnnEndpointName: endpoint, AnnDeploymentName: deployment}},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: sel,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP}},
		},
	}
}

func anchor(st Settings, name, role string, labels map[string]string, data map[string]string) *corev1.ConfigMap {
	l := map[string]string{}
	for k, v := range labels {
		l[k] = v
	}
	l[LabelRole] = role
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: st.Namespace, Labels: l},
		Data:       data,
	}
}

func ownerRef(kind, apiVersion string, m metav1.Object) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: m.GetName(), UID: m.GetUID()}
}

func ptr[T any](v T) *T { return &v }
