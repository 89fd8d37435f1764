package spec

import (
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/moe-serving/moe/internal/sku"
)

var nameRE = regexp.MustCompile(`^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$`)

// ValidateName checks an endpoint or deployment name against Azure's rules:
// 3–32 characters, starts with a letter, letters, digits and '-', ends
// alphanumeric. what names the kind of thing ("endpoint", "deployment").
func ValidateName(what, name string) string {
	switch {
	case name == "":
		return "is required"
	case len(name) < 3 || len(name) > 32:
		return "must be at least 3 and at most 32 characters long (got " + itoa(len(name)) + ")"
	case !nameRE.MatchString(name):
		return "must start with an upper- or lowercase letter and only consist of '-'s and alphanumeric characters (" + what + " names become DNS labels)"
	}
	return ""
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate reports every problem with the endpoint at once.
func (e *Endpoint) Validate() error {
	var errs FieldErrors
	if msg := ValidateName("endpoint", e.Name); msg != "" {
		errs.add("name", 0, "%s", msg)
	}
	switch e.AuthMode {
	case AuthKey, AuthAMLToken, AuthAADToken:
	default:
		errs.add("auth_mode", 0, "must be one of key, aml_token, aad_token (got %q)", e.AuthMode)
	}
	if e.PublicNetworkAccess != "" && !oneOfFold(e.PublicNetworkAccess, "enabled", "disabled") {
		errs.add("public_network_access", 0, "must be enabled or disabled (got %q)", e.PublicNetworkAccess)
	}
	if id := e.Identity; id != nil {
		switch strings.ToLower(strings.ReplaceAll(id.Type, "_", "")) {
		case "":
			errs.add("identity.type", 0, "is required with identity: system_assigned or user_assigned")
		case "systemassigned", "none":
		case "userassigned", "systemassigned,userassigned":
			if len(id.UserAssignedIdentities) == 0 {
				errs.add("identity.user_assigned_identities", 0, "is required when identity.type is %s", id.Type)
			}
		default:
			errs.add("identity.type", 0, "must be system_assigned or user_assigned (got %q)", id.Type)
		}
	}
	validateTraffic(&errs, e.Traffic, e.MirrorTraffic)
	for _, k := range sortedKeys(e.Properties) {
		v := e.Properties[k]
		switch k {
		case PropPassModelStatus:
			if v != "true" && v != "false" {
				errs.add("properties."+k, 0, "must be \"true\" or \"false\" (got %q)", v)
			}
		case PropMaxRequestsPerSecond:
			if n, err := strconv.Atoi(v); err != nil || n < 1 {
				errs.add("properties."+k, 0, "must be a positive integer: requests per second for the whole endpoint (got %q)", v)
			}
		default:
			if strings.HasPrefix(k, "moe.") {
				errs.add("properties."+k, 0, "unknown moe property; known: %s, %s", PropMaxRequestsPerSecond, PropPassModelStatus)
			}
		}
	}
	return errs.err()
}

func oneOfFold(s string, values ...string) bool {
	for _, v := range values {
		if strings.EqualFold(s, v) {
			return true
		}
	}
	return false
}

func validateTraffic(errs *FieldErrors, traffic, mirror map[string]int) {
	sum := 0
	for _, k := range sortedKeys(traffic) {
		v := traffic[k]
		if msg := ValidateName("deployment", k); msg != "" {
			errs.add("traffic."+k, 0, "is not a valid deployment name: %s", msg)
		}
		if v < 0 || v > 100 {
			errs.add("traffic."+k, 0, "must be between 0 and 100 (got %d)", v)
		}
		sum += v
	}
	if sum != 0 && sum != 100 {
		errs.add("traffic", 0, "percentages must sum to 0 or 100 (got %d)", sum)
	}
	mirrored := 0
	for _, v := range mirror {
		if v != 0 {
			mirrored++
		}
	}
	if mirrored > 1 {
		errs.add("mirror_traffic", 0, "at most one deployment can receive mirrored traffic (got %d)", mirrored)
	}
	for _, k := range sortedKeys(mirror) {
		v := mirror[k]
		if msg := ValidateName("deployment", k); msg != "" {
			errs.add("mirror_traffic."+k, 0, "is not a valid deployment name: %s", msg)
		}
		if v < 0 || v > 50 {
			errs.add("mirror_traffic."+k, 0, "must be between 0 and 50 (got %d)", v)
		}
		if v != 0 && traffic[k] > 0 {
			errs.add("mirror_traffic."+k, 0, "deployment %q receives live traffic; a deployment is either live or mirror, not both", k)
		}
	}
}

// ValidateTraffic checks a traffic and mirror table on their own (the CLI's
// --traffic / --mirror-traffic).
func ValidateTraffic(traffic, mirror map[string]int) error {
	var errs FieldErrors
	validateTraffic(&errs, traffic, mirror)
	return errs.err()
}

// Validate reports every problem with the deployment at once. It expects
// Default to have run.
func (d *Deployment) Validate() error {
	var errs FieldErrors
	if msg := ValidateName("deployment", d.Name); msg != "" {
		errs.add("name", 0, "%s", msg)
	}
	if msg := ValidateName("endpoint", d.EndpointName); msg != "" {
		errs.add("endpoint_name", 0, "%s", msg)
	}
	switch d.Type {
	case TypeManaged:
	case TypeKubernetes:
		// Kubernetes extra rule (facts §1.2): both names together 6–62.
		if n := len(d.Name) + len(d.EndpointName); d.Name != "" && d.EndpointName != "" && n > 62 {
			errs.add("name", 0, "with endpoint_name must be at most 62 characters long for kubernetes deployments (got %d)", n)
		}
	default:
		errs.add("type", 0, "must be managed or kubernetes (got %q)", d.Type)
	}
	custom := d.Environment != nil && d.Environment.InferenceConfig != nil
	if m := d.Model; m == nil {
		if !custom {
			errs.add("model", 0, "is required: give model.path, the folder or file of your model")
		}
	} else if m.Ref != "" {
		if strings.HasPrefix(m.Ref, "azureml:") || strings.HasPrefix(m.Ref, "azureml://") {
			errs.add("model", 0, "registered model %q cannot be resolved: moe has no model registry; use an inline model with model.path", m.Ref)
		} else {
			errs.add("model", 0, "must be a mapping with path, or an azureml: reference (got %q)", m.Ref)
		}
	} else if m.Path == "" {
		errs.add("model.path", 0, "is required for an inline model")
	}
	if c := d.CodeConfiguration; c == nil {
		if !custom {
			errs.add("code_configuration", 0, "is required: give code (the folder) and scoring_script (relative to it)")
		}
	} else {
		if c.Code == "" {
			errs.add("code_configuration.code", 0, "is required: the folder holding the scoring script")
		} else if strings.HasPrefix(c.Code, "azureml:") {
			errs.add("code_configuration.code", 0, "registered code %q cannot be resolved; give a local folder", c.Code)
		}
		if c.ScoringScript == "" {
			errs.add("code_configuration.scoring_script", 0, "is required: the script with init() and run(), relative to code")
		} else if filepath.IsAbs(c.ScoringScript) || !filepath.IsLocal(c.ScoringScript) {
			errs.add("code_configuration.scoring_script", 0, "must be a path inside the code folder (got %q)", c.ScoringScript)
		}
	}
	if d.Environment == nil {
		errs.add("environment", 0, "is required: give an image and conda_file, or a registered environment")
	} else if env := d.Environment; env.Ref != "" {
		if !strings.HasPrefix(env.Ref, "azureml:") {
			errs.add("environment", 0, "must be a mapping with image and conda_file, or an azureml: reference (got %q)", env.Ref)
		}
	} else {
		switch {
		case env.Image != "" && env.Build != nil:
			errs.add("environment", 0, "image and build are mutually exclusive")
		case env.Image == "" && env.Build == nil:
			errs.add("environment.image", 0, "is required: give the base image (conda_file is installed on top of it), or build")
		}
		if ic := env.InferenceConfig; ic != nil {
			for name, r := range map[string]*Route{"liveness_route": ic.LivenessRoute, "readiness_route": ic.ReadinessRoute, "scoring_route": ic.ScoringRoute} {
				p := "environment.inference_config." + name
				if r == nil {
					errs.add(p, 0, "is required with inference_config")
					continue
				}
				if r.Port < 1 || r.Port > 65535 {
					errs.add(p+".port", 0, "must be between 1 and 65535 (got %d)", r.Port)
				}
				if !strings.HasPrefix(r.Path, "/") {
					errs.add(p+".path", 0, "must start with / (got %q)", r.Path)
				}
			}
		}
	}
	for k := range d.EnvironmentVariables {
		if !envNameRE.MatchString(k) {
			errs.add("environment_variables."+k, 0, "is not a valid environment variable name")
		}
	}
	if d.Type == TypeManaged {
		if d.InstanceType == "" {
			errs.add("instance_type", 0, "is required: pick one of `moe sku list`, e.g. Standard_DS3_v2")
		} else if _, ok := sku.Lookup(d.InstanceType); !ok {
			errs.add("instance_type", 0, "unknown instance type %q: pick one of `moe sku list`", d.InstanceType)
		}
	} else if d.InstanceType != "" {
		if _, ok := sku.Lookup(d.InstanceType); !ok {
			errs.add("instance_type", 0, "unknown instance type %q: pick one of `moe sku list`", d.InstanceType)
		}
	}
	if d.EgressPublicNetworkAccess != "" && !oneOfFold(d.EgressPublicNetworkAccess, "enabled", "disabled") {
		errs.add("egress_public_network_access", 0, "must be enabled or disabled (got %q)", d.EgressPublicNetworkAccess)
	}
	autoscale := d.ScaleSettings != nil && d.ScaleSettings.Type == ScaleTargetUtilization
	if !autoscale && (d.InstanceCount < 1 || d.InstanceCount > MaxInstanceCount) {
		errs.add("instance_count", 0, "must be between 1 and %d (got %d)", MaxInstanceCount, d.InstanceCount)
	}
	if rs := d.RequestSettings; rs != nil {
		limit := MaxRequestTimeoutMS
		if d.Type == TypeKubernetes {
			limit = MaxRequestTimeoutK8sMS
		}
		if rs.RequestTimeoutMS < 1 || rs.RequestTimeoutMS > limit {
			errs.add("request_settings.request_timeout_ms", 0, "must be between 1 and %d (got %d)", limit, rs.RequestTimeoutMS)
		}
		if rs.MaxConcurrentRequestsPerInstance < 1 || rs.MaxConcurrentRequestsPerInstance > 1000 {
			errs.add("request_settings.max_concurrent_requests_per_instance", 0, "must be between 1 and 1000 (got %d)", rs.MaxConcurrentRequestsPerInstance)
		}
		if rs.MaxQueueWaitMS < 0 {
			errs.add("request_settings.max_queue_wait_ms", 0, "must not be negative")
		}
	}
	for name, p := range map[string]*Probe{"liveness_probe": d.LivenessProbe, "readiness_probe": d.ReadinessProbe} {
		if p == nil {
			continue
		}
		for _, f := range []struct {
			key string
			v   int
		}{{"initial_delay", p.InitialDelay}, {"period", p.Period}, {"timeout", p.Timeout}, {"success_threshold", p.SuccessThreshold}, {"failure_threshold", p.FailureThreshold}} {
			if f.v < 1 {
				errs.add(name+"."+f.key, 0, "must be at least 1 (got %d)", f.v)
			}
		}
		if name == "liveness_probe" && p.SuccessThreshold > 1 {
			errs.add(name+".success_threshold", 0, "must be 1 for liveness probes (got %d)", p.SuccessThreshold)
		}
	}
	if ss := d.ScaleSettings; ss != nil {
		switch ss.Type {
		case ScaleDefault:
		case ScaleTargetUtilization:
			if ss.MinInstances < 1 {
				errs.add("scale_settings.min_instances", 0, "must be at least 1 (got %d)", ss.MinInstances)
			}
			if ss.MaxInstances < ss.MinInstances || ss.MaxInstances > MaxInstanceCount {
				errs.add("scale_settings.max_instances", 0, "must be between min_instances (%d) and %d (got %d)", ss.MinInstances, MaxInstanceCount, ss.MaxInstances)
			}
			if ss.PollingInterval < 1 {
				errs.add("scale_settings.polling_interval", 0, "must be at least 1 second (got %d)", ss.PollingInterval)
			}
			if ss.TargetUtilizationPercentage < 1 || ss.TargetUtilizationPercentage > 100 {
				errs.add("scale_settings.target_utilization_percentage", 0, "must be between 1 and 100 (got %d)", ss.TargetUtilizationPercentage)
			}
		default:
			errs.add("scale_settings.type", 0, "must be default or target_utilization (got %q)", ss.Type)
		}
	}
	sort.SliceStable(errs, func(i, j int) bool { return errs[i].Path < errs[j].Path })
	return errs.err()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func itoa(n int) string {
	const digits = "0123456789"
	if n < 10 {
		return digits[n : n+1]
	}
	return itoa(n/10) + digits[n%10:n%10+1]
}
