package spec

import "strings"

// Defaults from facts/v2-endpoints.md §2.4–2.6.
const (
	DefaultRequestTimeoutMS   = 5000
	MaxRequestTimeoutMS       = 180000
	MaxRequestTimeoutK8sMS    = 300000
	DefaultMaxConcurrent      = 1
	DefaultMaxQueueWaitMS     = 500
	DefaultProbeInitialDelay  = 10
	DefaultProbePeriod        = 10
	DefaultProbeTimeout       = 2
	DefaultProbeSuccess       = 1
	DefaultProbeFailure       = 30
	DefaultTargetUtilization  = 70
	DefaultPollingIntervalSec = 1
	MaxInstanceCount          = 50
	ScaleDefault              = "default"
	ScaleTargetUtilization    = "target_utilization"
	TypeManaged               = "managed"
	TypeKubernetes            = "kubernetes"
)

// DefaultProbe returns a probe with Azure's defaults.
func DefaultProbe() *Probe {
	return &Probe{
		InitialDelay:     DefaultProbeInitialDelay,
		Period:           DefaultProbePeriod,
		Timeout:          DefaultProbeTimeout,
		SuccessThreshold: DefaultProbeSuccess,
		FailureThreshold: DefaultProbeFailure,
	}
}

// NormalizeAuthMode maps the spellings Azure's loader accepts (key, Key,
// AMLToken, aml_token, AADToken...) to the YAML form; unknown values are
// returned unchanged for Validate to report.
func NormalizeAuthMode(s string) string {
	switch strings.ToLower(strings.ReplaceAll(s, "_", "")) {
	case "key":
		return AuthKey
	case "amltoken":
		return AuthAMLToken
	case "aadtoken":
		return AuthAADToken
	}
	return s
}

// Default fills in defaults and returns notices for keys moe accepts but
// does not apply.
func (e *Endpoint) Default() []Notice {
	var ns []Notice
	if e.AuthMode == "" {
		e.AuthMode = AuthKey
	}
	e.AuthMode = NormalizeAuthMode(e.AuthMode)
	if e.Identity != nil {
		ns = append(ns, Notice{"identity", "accepted, not applied: moe endpoints have no Azure managed identity"})
	}
	if e.Compute != "" {
		ns = append(ns, Notice{"compute", "accepted, not applied: moe chooses its runner from the server configuration"})
	}
	if strings.EqualFold(e.PublicNetworkAccess, "disabled") {
		ns = append(ns, Notice{"public_network_access", "accepted, not applied: restrict the gateway's listen address instead (moe serve --gateway-addr)"})
	}
	if e.Kind != "" {
		ns = append(ns, Notice{"kind", "accepted, not applied"})
	}
	lower := func(m map[string]int) map[string]int {
		if m == nil {
			return nil
		}
		out := make(map[string]int, len(m))
		// Sorted, so that of "Blue" and "blue" the same one wins every time.
		for _, k := range sortedKeys(m) {
			out[strings.ToLower(k)] = m[k]
		}
		return out
	}
	e.Traffic = lower(e.Traffic)
	e.MirrorTraffic = lower(e.MirrorTraffic)
	for k, v := range e.MirrorTraffic {
		if v == 0 {
			delete(e.MirrorTraffic, k)
		}
	}
	// Empty tables are the same as none (and JSON omits them).
	if len(e.Traffic) == 0 {
		e.Traffic = nil
	}
	if len(e.MirrorTraffic) == 0 {
		e.MirrorTraffic = nil
	}
	return ns
}

// Default fills in defaults and returns notices for keys moe accepts but
// does not apply.
func (d *Deployment) Default() []Notice {
	var ns []Notice
	if d.Type == "" {
		d.Type = TypeManaged
	}
	if strings.EqualFold(d.Type, TypeManaged) || strings.EqualFold(d.Type, TypeKubernetes) {
		d.Type = strings.ToLower(d.Type)
	}
	if d.RequestSettings == nil {
		d.RequestSettings = &RequestSettings{}
	}
	rs := d.RequestSettings
	if rs.RequestTimeoutMS == 0 {
		rs.RequestTimeoutMS = DefaultRequestTimeoutMS
	}
	if rs.MaxConcurrentRequestsPerInstance == 0 {
		rs.MaxConcurrentRequestsPerInstance = DefaultMaxConcurrent
	}
	if rs.MaxQueueWaitMS != 0 {
		ns = append(ns, Notice{"request_settings.max_queue_wait_ms", "deprecated and not applied: queued requests wait up to request_timeout_ms"})
	}
	for _, p := range []**Probe{&d.LivenessProbe, &d.ReadinessProbe} {
		if *p == nil {
			*p = DefaultProbe()
			continue
		}
		def := DefaultProbe()
		q := *p
		if q.InitialDelay == 0 {
			q.InitialDelay = def.InitialDelay
		}
		if q.Period == 0 {
			q.Period = def.Period
		}
		if q.Timeout == 0 {
			q.Timeout = def.Timeout
		}
		if q.SuccessThreshold == 0 {
			q.SuccessThreshold = def.SuccessThreshold
		}
		if q.FailureThreshold == 0 {
			q.FailureThreshold = def.FailureThreshold
		}
	}
	if d.ScaleSettings == nil {
		d.ScaleSettings = &ScaleSettings{Type: ScaleDefault}
	}
	ss := d.ScaleSettings
	if ss.Type == "" {
		ss.Type = ScaleDefault
	}
	if ss.Type == ScaleDefault {
		ss.MinInstances, ss.MaxInstances, ss.PollingInterval, ss.TargetUtilizationPercentage = 0, 0, 0, 0
	} else if ss.Type == ScaleTargetUtilization {
		if d.Type != TypeKubernetes {
			ns = append(ns, Notice{"scale_settings.type", "target_utilization on a managed deployment: moe autoscales it, but az ml accepts it for kubernetes deployments only"})
		}
		if ss.MinInstances == 0 {
			ss.MinInstances = 1
		}
		if ss.MaxInstances == 0 {
			ss.MaxInstances = max(ss.MinInstances, 1)
		}
		if ss.PollingInterval == 0 {
			ss.PollingInterval = DefaultPollingIntervalSec
		}
		if ss.TargetUtilizationPercentage == 0 {
			ss.TargetUtilizationPercentage = DefaultTargetUtilization
		}
	}
	if d.AppInsightsEnabled {
		ns = append(ns, Notice{"app_insights_enabled", "accepted, not applied: use moe's Prometheus metrics and logs"})
	}
	if d.EgressPublicNetworkAccess != "" && !strings.EqualFold(d.EgressPublicNetworkAccess, "enabled") {
		ns = append(ns, Notice{"egress_public_network_access", "accepted, not applied: moe does not isolate instance egress"})
	}
	if d.DataCollector != nil {
		ns = append(ns, Notice{"data_collector", "accepted, not applied: request/response capture is not implemented"})
	}
	if d.PrivateNetworkConnection != nil {
		ns = append(ns, Notice{"private_network_connection", "accepted, not applied"})
	}
	if d.ModelMountPath != "" {
		ns = append(ns, Notice{"model_mount_path", "accepted, not applied by the local runner: AZUREML_MODEL_DIR points at the snapshot"})
	}
	if env := d.Environment; env != nil {
		if env.Ref != "" {
			ns = append(ns, Notice{"environment", "registered environment " + env.Ref + " is not resolved: the server's Python interpreter is used"})
		}
		if env.Image != "" {
			ns = append(ns, Notice{"environment.image", "not pulled by the local runner: the environment runs on a Python interpreter resolved from the conda file"})
		}
		if env.Build != nil {
			ns = append(ns, Notice{"environment.build", "accepted, not applied by the local runner: no container engine"})
		}
	}
	if d.Resources != nil && d.Type != TypeKubernetes {
		ns = append(ns, Notice{"resources", "only applies to kubernetes deployments; instance_type sets the resources"})
	}
	return ns
}
