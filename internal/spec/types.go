package spec

import (
	"encoding/json"
	"strings"
)

// Auth modes of an endpoint, as written in YAML.
const (
	AuthKey      = "key"
	AuthAMLToken = "aml_token"
	AuthAADToken = "aad_token"
)

// Provisioning states shared by endpoints and deployments.
const (
	StateCreating  = "Creating"
	StateUpdating  = "Updating"
	StateDeleting  = "Deleting"
	StateSucceeded = "Succeeded"
	StateFailed    = "Failed"
)

// Endpoint is a managedOnlineEndpoint (facts/v2-endpoints.md §1.1).
type Endpoint struct {
	Name                string            `json:"name"`
	Description         string            `json:"description,omitempty"`
	Tags                map[string]string `json:"tags,omitempty"`
	AuthMode            string            `json:"auth_mode,omitempty"`
	Traffic             map[string]int    `json:"traffic,omitempty"`
	MirrorTraffic       map[string]int    `json:"mirror_traffic,omitempty"`
	PublicNetworkAccess string            `json:"public_network_access,omitempty"`
	// Properties is a free string map. moe reads its own options from keys
	// prefixed "moe." (see PassModelStatus).
	Properties map[string]string `json:"properties,omitempty"`
	// Identity and Compute are accepted for compatibility and not applied.
	Identity *Identity `json:"identity,omitempty"`
	Compute  string    `json:"compute,omitempty"`
	Kind     string    `json:"kind,omitempty"`
}

// PropPassModelStatus is the endpoint property that, when "true", makes the
// gateway pass a model's non-2xx status through unchanged instead of turning
// it into 424 as Azure's managed front end does.
const PropPassModelStatus = "moe.pass_model_status"

// PropMaxRequestsPerSecond is the endpoint property that caps the whole
// endpoint's requests per second (429 beyond it). Absent means no limit;
// Azure's own default endpoint limit is 500/s.
const PropMaxRequestsPerSecond = "moe.max_requests_per_second"

// PassModelStatus reports whether the endpoint asks for model statuses to
// pass through unchanged.
func (e *Endpoint) PassModelStatus() bool {
	return strings.EqualFold(e.Properties[PropPassModelStatus], "true")
}

// Identity is the endpoint's managed identity (not applied by moe).
type Identity struct {
	Type                   string           `json:"type,omitempty"`
	UserAssignedIdentities []map[string]any `json:"user_assigned_identities,omitempty"`
}

// Deployment is a managedOnlineDeployment (facts/v2-endpoints.md §2.1), or a
// kubernetesOnlineDeployment when Type is "kubernetes".
type Deployment struct {
	Name                      string             `json:"name"`
	EndpointName              string             `json:"endpoint_name"`
	Type                      string             `json:"type,omitempty"`
	Description               string             `json:"description,omitempty"`
	Tags                      map[string]string  `json:"tags,omitempty"`
	Properties                map[string]string  `json:"properties,omitempty"`
	Model                     *Model             `json:"model,omitempty"`
	ModelMountPath            string             `json:"model_mount_path,omitempty"`
	CodeConfiguration         *CodeConfiguration `json:"code_configuration,omitempty"`
	Environment               *Environment       `json:"environment,omitempty"`
	EnvironmentVariables      map[string]string  `json:"environment_variables,omitempty"`
	InstanceType              string             `json:"instance_type,omitempty"`
	InstanceCount             int                `json:"instance_count"`
	AppInsightsEnabled        bool               `json:"app_insights_enabled,omitempty"`
	ScaleSettings             *ScaleSettings     `json:"scale_settings,omitempty"`
	RequestSettings           *RequestSettings   `json:"request_settings,omitempty"`
	LivenessProbe             *Probe             `json:"liveness_probe,omitempty"`
	ReadinessProbe            *Probe             `json:"readiness_probe,omitempty"`
	EgressPublicNetworkAccess string             `json:"egress_public_network_access,omitempty"`
	DataCollector             map[string]any     `json:"data_collector,omitempty"`
	PrivateNetworkConnection  *bool              `json:"private_network_connection,omitempty"`
	Resources                 *Resources         `json:"resources,omitempty"`
}

// Model is an inline model (path, optional name/version/type) or a reference
// to a registered model ("azureml:name:version"), kept in Ref.
type Model struct {
	Ref         string `json:"-"`
	Name        string `json:"name,omitempty"`
	Version     string `json:"version,omitempty"`
	Path        string `json:"path,omitempty"`
	Type        string `json:"type,omitempty"`
	Description string `json:"description,omitempty"`
}

// MarshalJSON writes a reference as a plain string, as `az ml` shows it.
func (m Model) MarshalJSON() ([]byte, error) {
	if m.Ref != "" {
		return json.Marshal(m.Ref)
	}
	type plain Model
	return json.Marshal(plain(m))
}

// UnmarshalJSON accepts both forms.
func (m *Model) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		*m = Model{}
		return json.Unmarshal(b, &m.Ref)
	}
	type plain Model
	return json.Unmarshal(b, (*plain)(m))
}

// CodeConfiguration names the scoring code folder and the script in it.
type CodeConfiguration struct {
	Code          string `json:"code"`
	ScoringScript string `json:"scoring_script"`
}

// Environment is an inline environment (image + conda file, or build
// context) or a reference to a registered one, kept in Ref.
type Environment struct {
	Ref             string            `json:"-"`
	Name            string            `json:"name,omitempty"`
	Version         string            `json:"version,omitempty"`
	Description     string            `json:"description,omitempty"`
	Image           string            `json:"image,omitempty"`
	CondaFile       string            `json:"conda_file,omitempty"`
	Build           *Build            `json:"build,omitempty"`
	InferenceConfig *InferenceConfig  `json:"inference_config,omitempty"`
	OSType          string            `json:"os_type,omitempty"`
	Datastore       string            `json:"datastore,omitempty"`
	Tags            map[string]string `json:"tags,omitempty"`
}

// MarshalJSON writes a reference as a plain string.
func (e Environment) MarshalJSON() ([]byte, error) {
	if e.Ref != "" {
		return json.Marshal(e.Ref)
	}
	type plain Environment
	return json.Marshal(plain(e))
}

// UnmarshalJSON accepts both forms.
func (e *Environment) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		*e = Environment{}
		return json.Unmarshal(b, &e.Ref)
	}
	type plain Environment
	return json.Unmarshal(b, (*plain)(e))
}

// Build is a Docker build context for an environment.
type Build struct {
	Path           string `json:"path,omitempty"`
	DockerfilePath string `json:"dockerfile_path,omitempty"`
}

// InferenceConfig holds a custom container's routes.
type InferenceConfig struct {
	LivenessRoute  *Route `json:"liveness_route,omitempty"`
	ReadinessRoute *Route `json:"readiness_route,omitempty"`
	ScoringRoute   *Route `json:"scoring_route,omitempty"`
}

// Route is a port and path inside a custom container.
type Route struct {
	Port int    `json:"port"`
	Path string `json:"path"`
}

// ScaleSettings selects fixed instances ("default") or autoscaling
// ("target_utilization").
type ScaleSettings struct {
	Type                        string `json:"type"`
	MinInstances                int    `json:"min_instances,omitempty"`
	MaxInstances                int    `json:"max_instances,omitempty"`
	PollingInterval             int    `json:"polling_interval,omitempty"`
	TargetUtilizationPercentage int    `json:"target_utilization_percentage,omitempty"`
}

// RequestSettings bound a deployment's requests (facts §2.4).
type RequestSettings struct {
	RequestTimeoutMS                 int `json:"request_timeout_ms"`
	MaxConcurrentRequestsPerInstance int `json:"max_concurrent_requests_per_instance"`
	MaxQueueWaitMS                   int `json:"max_queue_wait_ms,omitempty"`
}

// Probe is a liveness or readiness probe (facts §2.5); durations in seconds.
type Probe struct {
	InitialDelay     int `json:"initial_delay"`
	Period           int `json:"period"`
	Timeout          int `json:"timeout"`
	SuccessThreshold int `json:"success_threshold"`
	FailureThreshold int `json:"failure_threshold"`
}

// Resources are Kubernetes deployment requests and limits.
type Resources struct {
	Requests map[string]string `json:"requests,omitempty"`
	Limits   map[string]string `json:"limits,omitempty"`
}
