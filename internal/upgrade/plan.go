package upgrade

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/moe-serving/moe/internal/sku"
	"github.com/moe-serving/moe/internal/spec"
)

// Severities of a Finding.
const (
	SeverityError   = "error"
	SeverityWarning = "warning"
	SeverityInfo    = "info"
)

// Finding is one statement of a plan: something refused (error), something
// the user must act on (warning), or a mapping worth knowing (info). Field is
// the v1 field it is about (a JSON path in the service document), or "".
type Finding struct {
	Severity string `json:"severity"`
	Code     string `json:"code"`
	Message  string `json:"message"`
	Field    string `json:"field"`
}

// Options tune Plan. The zero value plans with the service's own names, the
// SKU table, network-isolated services refused, and scoring URIs under
// "local"/"localhost".
type Options struct {
	// EndpointName and DeploymentName override the names (default: the
	// service name). They are checked like the defaults.
	EndpointName   string
	DeploymentName string
	// InstanceType overrides the SKU table (--instance-type).
	InstanceType string
	// AllowNetworkIsolation lets a VNet-injected or private service through
	// with a warning instead of refusing it.
	AllowNetworkIsolation bool
	// Region and Domain form the new scoring URI
	// https://<endpoint>.<Region>.inference.<Domain>/score. Defaults: "local",
	// "localhost".
	Region string
	Domain string
}

// Result is the plan for one v1 service. Its JSON form is the stable output
// of `moe upgrade plan -o json`.
type Result struct {
	Service       string           `json:"service"`
	ComputeType   string           `json:"compute_type"`
	Eligible      bool             `json:"eligible"`
	Endpoint      *spec.Endpoint   `json:"endpoint"`
	Deployment    *spec.Deployment `json:"deployment"`
	OldScoringURI string           `json:"old_scoring_uri"`
	NewScoringURI string           `json:"new_scoring_uri"`
	Findings      []Finding        `json:"findings"`

	// Keys are the original keys to keep, or nil when the new endpoint must
	// generate its own. Never serialised.
	Keys *Keys `json:"-"`
	// Skeleton is true when Deployment is a placeholder to finish by hand
	// (image-based services).
	Skeleton bool `json:"-"`
	// ImageID is the image a refused image-based service was deployed from.
	ImageID string `json:"-"`
	// CondaDependencies is the service's inline conda environment (JSON), for
	// export to write as conda.yaml when the artifacts hold none.
	CondaDependencies json.RawMessage `json:"-"`
}

// marshalIndent encodes v as indented JSON without
// HTML escaping (so "<artifacts>" stays readable), with a final newline.
func marshalIndent(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Refused reports whether the plan has an error finding.
func (r *Result) Refused() bool { return !r.Eligible }

// DefaultImage is the environment image used when the v1 service names no
// base image (v1 used an AzureML base image implicitly).
const DefaultImage = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"

// Paths in a planned deployment are relative to the artifacts folder.
const (
	// DefaultModelPath is where the model files are expected.
	DefaultModelPath = "model"
	// DefaultCondaFile is the conda file name expected or generated.
	DefaultCondaFile = "conda.yaml"
	// DefaultScoringScript is assumed when the service does not record it.
	DefaultScoringScript = "score.py"
)

type planner struct {
	svc  *Service
	opts Options
	r    *Result
	ep   *spec.Endpoint
	dep  *spec.Deployment
}

func (p *planner) add(sev, code, field, format string, args ...any) {
	p.r.Findings = append(p.r.Findings, Finding{Severity: sev, Code: code, Message: fmt.Sprintf(format, args...), Field: field})
}

// Plan maps a v1 service to the endpoint and deployment moe would create,
// applying the upgrade rules (issue 6, facts v1-services.md §5) and listing
// every decision as a Finding. It never fails: what cannot be upgraded is an
// error finding and Eligible is false. Endpoint and Deployment are always
// set (for a refused service, the closest mapping, or a skeleton), defaulted
// with spec's Default.
func Plan(svc *Service, opts Options) *Result {
	if opts.Region == "" {
		opts.Region = "local"
	}
	if opts.Domain == "" {
		opts.Domain = "localhost"
	}
	r := &Result{Service: svc.Name, ComputeType: strings.ToUpper(svc.ComputeType), OldScoringURI: svc.ScoringURI, Findings: []Finding{}}
	p := &planner{svc: svc, opts: opts, r: r, ep: &spec.Endpoint{}, dep: &spec.Deployment{}}
	r.Endpoint, r.Deployment = p.ep, p.dep

	p.names()
	p.preconditions()
	p.network()
	p.auth()
	p.tls()
	p.resources()
	p.scale()
	p.requests()
	p.code()
	p.metadata()
	p.finish()
	return r
}

// names sets endpoint and deployment names: the options, else the service
// name; invalid names are errors with a suggestion, never silently fixed.
func (p *planner) names() {
	name := p.svc.Name
	if name == "" && p.opts.EndpointName == "" {
		p.add(SeverityError, "name-missing", "name", "the service document has no name; pass --endpoint-name and --deployment-name")
	}
	p.ep.Name = firstNonEmpty(p.opts.EndpointName, name)
	p.dep.Name = firstNonEmpty(p.opts.DeploymentName, name)
	p.dep.EndpointName = p.ep.Name
	p.ep.Traffic = map[string]int{strings.ToLower(p.dep.Name): 100}
	for _, n := range []struct{ what, value, flag, given string }{
		{"endpoint", p.ep.Name, "--endpoint-name", p.opts.EndpointName},
		{"deployment", p.dep.Name, "--deployment-name", p.opts.DeploymentName},
	} {
		if n.value == "" {
			continue
		}
		if msg := spec.ValidateName(n.what, n.value); msg != "" {
			src := "service name"
			field := "name"
			if n.given != "" {
				src, field = n.flag, ""
			}
			p.add(SeverityError, "name-invalid", field, "%s name %q (from the %s) %s; suggested valid name: %q (pass %s %s)",
				n.what, n.value, src, msg, SuggestName(n.value), n.flag, SuggestName(n.value))
		}
	}
}

func (p *planner) preconditions() {
	svc := p.svc
	switch strings.ToUpper(svc.ComputeType) {
	case "ACI", "AKS":
	case "":
		p.add(SeverityError, "compute-type", "computeType", "the service has no computeType; only ACI and AKS web services can be upgraded")
	default:
		p.add(SeverityError, "compute-type", "computeType", "computeType %q cannot be upgraded: only ACI and AKS web services can (AKSENDPOINT and other compute types are not supported)", svc.ComputeType)
	}
	if svc.Source == SourceDeployConfig {
		p.add(SeverityInfo, "state-unknown", "", "described by deploy-time files: the running service's state cannot be checked; make sure it is Healthy before moving clients")
	} else if svc.State == "" {
		p.add(SeverityWarning, "state-unknown", "state", "the service document has no state; only Healthy services should be upgraded")
	} else if !strings.EqualFold(svc.State, "Healthy") {
		msg := fmt.Sprintf("the service is %s, not Healthy: only healthy services can be upgraded", svc.State)
		if e := svc.Error; e != nil {
			var parts []string
			for _, s := range []string{e.Code, e.Message} {
				if s != "" {
					parts = append(parts, s)
				}
			}
			for _, d := range e.Details {
				parts = append(parts, strings.TrimSpace(d.Code+" "+d.Message))
			}
			if len(parts) > 0 {
				msg += "; the service reports: " + strings.Join(parts, ": ")
			}
		}
		p.add(SeverityError, "state", "state", "%s; fix or redeploy it in v1 first", msg)
	}
	if svc.ImageID != "" && svc.EnvironmentImageRequest == nil && svc.Environment == nil {
		p.r.Skeleton = true
		p.r.ImageID = svc.ImageID
		p.add(SeverityError, "image-based", "imageId",
			"the service was deployed from image %q (deploy_from_image / deploy_from_model), which the upgrade does not support; export writes a skeleton endpoint.yml and deployment.yml to finish by hand", svc.ImageID)
	}
	if svc.EncryptionProperties.set() {
		p.add(SeverityError, "encryption", "encryptionProperties",
			"customer-managed key encryption (key %q in %s) is not supported on managed online endpoints; redeploy the v1 service without encryptionProperties (drop vaultBaseUrl/keyName/keyVersion from deploymentconfig.json) and run the upgrade again, or deploy to v2 directly",
			p.svc.EncryptionProperties.KeyName, p.svc.EncryptionProperties.VaultBaseURL)
	}
}

func (p *planner) network() {
	svc := p.svc
	var why, field string
	switch {
	case svc.VnetConfiguration.set():
		why = fmt.Sprintf("the service is injected into virtual network %q, subnet %q", svc.VnetConfiguration.VnetName, svc.VnetConfiguration.SubnetName)
		field = "vnetConfiguration"
	case isPrivateHost(svc.ScoringURI):
		why = "the scoring URI is on a private address (" + svc.ScoringURI + ")"
		field = "scoringUri"
	case svc.PublicFQDN == "" && isPrivateIP(svc.PublicIP):
		why = "the service's IP address is private (" + svc.PublicIP + ")"
		field = "publicIp"
	default:
		return
	}
	if p.opts.AllowNetworkIsolation {
		p.add(SeverityWarning, "network-isolation", field,
			"%s: network isolation must be configured on the new side (managed endpoint network isolation, or restrict moe's gateway listen address); the new endpoint is public until you do", why)
		return
	}
	p.add(SeverityError, "network-isolation", field,
		"%s: upgrading a network-isolated service needs --allow-network-isolation, and network isolation must then be configured on the new side; redeploying with the v2 CLI is the recommended path", why)
}

func (p *planner) auth() {
	svc := p.svc
	keyAuth := svc.AuthEnabled.value()
	if svc.AuthEnabled == nil && strings.EqualFold(svc.ComputeType, "AKS") && !svc.AADAuthEnabled.value() {
		keyAuth = true // AKS default
	}
	token := svc.AADAuthEnabled.value()
	p.ep.AuthMode = spec.AuthKey
	switch {
	case token && keyAuth:
		p.add(SeverityWarning, "auth-both", "aadAuthEnabled", "the service has both key and token auth enabled (v1 forbids this); the new endpoint uses key auth")
	case token:
		p.ep.AuthMode = spec.AuthAMLToken
		p.add(SeverityInfo, "auth-token", "aadAuthEnabled", "token auth becomes auth_mode aml_token: clients fetch tokens from the new endpoint (get-credentials) instead of the v1 service")
		return
	case !keyAuth:
		if svc.Keys != nil {
			p.r.Keys = svc.Keys
			p.add(SeverityWarning, "auth-none", "authEnabled", "the service had no authentication; managed endpoints always require it: auth_mode key with the supplied keys, and clients must now send a key")
		} else {
			p.add(SeverityWarning, "auth-none", "authEnabled", "the service had no authentication; managed endpoints always require it: auth_mode key with new keys, and clients must now send a key")
		}
		return
	}
	if svc.Keys != nil {
		p.r.Keys = svc.Keys
		p.add(SeverityInfo, "auth-key-kept", "authEnabled", "key auth keeps the original primary and secondary keys: clients need no change")
	} else {
		p.add(SeverityWarning, "auth-key-new", "authEnabled", "key auth, but the original keys were not supplied (--keys keys.json from listKeys): the new endpoint gets new keys and clients must be given them")
	}
}

func (p *planner) tls() {
	svc := p.svc
	if svc.SSLEnabled.value() || svc.SSLCertificate != "" || svc.SSLKey != "" {
		p.add(SeverityInfo, "tls", "sslEnabled", "TLS is automatic on the new endpoint; the v1 certificate and key are dropped")
	}
	if svc.CName != "" {
		p.add(SeverityWarning, "cname", "cname", "custom DNS name %q is not supported: clients must move from %s to the new scoring URI %s",
			svc.CName, firstNonEmpty(svc.ScoringURI, "https://"+svc.CName+"/score"), p.newURI())
	}
}

// v1 SDK defaults for a missing resource request (facts §3.1).
const (
	defaultCPU    = "0.1"
	defaultMemory = "0.5"
)

func (p *planner) resources() {
	svc := p.svc
	res := svc.ContainerResourceRequirements
	if res == nil {
		res = &Resources{}
	}
	cpu, mem := res.CPU, res.MemoryInGB
	var defaulted []string
	if cpu == nil {
		v := optNum(defaultCPU)
		cpu = &v
		defaulted = append(defaulted, "cpu "+defaultCPU)
	}
	if mem == nil {
		v := optNum(defaultMemory)
		mem = &v
		defaulted = append(defaulted, "memoryInGB "+defaultMemory)
	}
	gpu := res.GPU.value()
	if p.opts.InstanceType != "" {
		s, ok := sku.Lookup(p.opts.InstanceType)
		if !ok {
			p.dep.InstanceType = p.opts.InstanceType
			p.add(SeverityError, "sku-unknown", "", "--instance-type %q is not a known instance type: pick one of `moe sku list`", p.opts.InstanceType)
			return
		}
		p.dep.InstanceType = s.Name
		p.add(SeverityInfo, "sku-override", "containerResourceRequirements", "instance_type %s set by --instance-type (the service requested cpu %s, memory %s GB)", s.Name, *cpu, *mem)
		return
	}
	if len(defaulted) > 0 {
		p.add(SeverityInfo, "resources-default", "containerResourceRequirements", "no resource request given; using the v1 defaults (%s)", strings.Join(defaulted, ", "))
	}
	if res.CPULimit != nil || res.MemoryInGBLim != nil {
		p.add(SeverityInfo, "resource-limits", "containerResourceRequirements", "cpuLimit/memoryInGBLimit are not used: the instance type is chosen from the requests, and a managed instance has the whole VM")
	}
	if res.FPGA.value() > 0 {
		p.add(SeverityWarning, "fpga", "containerResourceRequirements.fpga", "FPGA devices are not available on managed online endpoints")
	}
	s, row, inTable, err := sku.Suggest(cpu.float(), mem.float(), gpu)
	if err != nil {
		p.add(SeverityError, "sku-none", "containerResourceRequirements", "no instance type for cpu %s, memory %s GB, gpu %d: %v; pass --instance-type", *cpu, *mem, gpu, trimSKUErr(err))
		return
	}
	p.dep.InstanceType = s.Name
	if inTable {
		p.add(SeverityInfo, "sku", "containerResourceRequirements", "cpu %s, memory %s GB → instance_type %s (published table row: %s)", *cpu, *mem, s.Name, row)
		return
	}
	p.add(SeverityWarning, "sku-outside-table", "containerResourceRequirements", "cpu %s, memory %s GB, gpu %d is outside the published SKU table: %s (moe's policy; --instance-type overrides)", *cpu, *mem, gpu, strings.TrimPrefix(row, "outside the published table: "))
}

func trimSKUErr(err error) string {
	if errors.Is(err, sku.ErrNoSKU) {
		return "no instance type of the catalog is large enough"
	}
	return strings.TrimPrefix(err.Error(), "sku: ")
}

func (p *planner) scale() {
	svc := p.svc
	p.dep.ScaleSettings = &spec.ScaleSettings{Type: spec.ScaleDefault}
	p.dep.InstanceCount = 1
	if !strings.EqualFold(svc.ComputeType, "AKS") {
		if strings.EqualFold(svc.ComputeType, "ACI") {
			p.add(SeverityInfo, "scale", "", "an ACI service runs one container: instance_count 1 (3 or more are recommended for production)")
		}
		return
	}
	as := svc.AutoScaler
	autoscale := as != nil && as.AutoscaleEnabled.value() || svc.NumReplicas == nil && (as == nil || as.AutoscaleEnabled == nil)
	if n := svc.NumReplicas.value(); n > 0 && !(as != nil && as.AutoscaleEnabled.value()) {
		p.dep.InstanceCount = p.clampCount(n, "numReplicas")
		p.add(SeverityInfo, "scale", "numReplicas", "numReplicas %d → instance_count %d", n, p.dep.InstanceCount)
		return
	}
	if !autoscale {
		p.add(SeverityInfo, "scale", "numReplicas", "no replica count given: instance_count 1")
		return
	}
	lo, hi, target := 1, 10, 70
	if as != nil {
		lo = max(as.MinReplicas.value(), 1)
		if as.MaxReplicas.value() > 0 {
			hi = as.MaxReplicas.value()
		}
		if as.TargetUtilization.value() > 0 {
			target = as.TargetUtilization.value()
		}
	}
	p.dep.InstanceCount = p.clampCount(lo, "autoScaler.minReplicas")
	p.add(SeverityWarning, "autoscale", "autoScaler",
		"the AKS autoscaler (%d–%d replicas at %d%% utilization) has no counterpart on a managed deployment (scale_settings.type must be default): instance_count %d (the minimum); add an autoscale rule on the new deployment to scale up to %d",
		lo, hi, target, p.dep.InstanceCount, hi)
}

func (p *planner) clampCount(n int, field string) int {
	if n > spec.MaxInstanceCount {
		p.add(SeverityWarning, "instance-count-clamped", field, "%d replicas exceed the managed limit: instance_count %d", n, spec.MaxInstanceCount)
		return spec.MaxInstanceCount
	}
	return n
}

func (p *planner) requests() {
	svc := p.svc
	rs := &spec.RequestSettings{}
	p.dep.RequestSettings = rs
	aks := strings.EqualFold(svc.ComputeType, "AKS")
	switch t := svc.ScoringTimeoutMs; {
	case t != nil && t.value() > spec.MaxRequestTimeoutMS:
		rs.RequestTimeoutMS = spec.MaxRequestTimeoutMS
		p.add(SeverityWarning, "scoring-timeout-clamped", "scoringTimeoutMs", "scoringTimeoutMs %d exceeds the managed maximum: request_timeout_ms clamped to %d", t.value(), spec.MaxRequestTimeoutMS)
	case t != nil && t.value() > 0:
		rs.RequestTimeoutMS = t.value()
		p.add(SeverityInfo, "scoring-timeout", "scoringTimeoutMs", "scoringTimeoutMs %d → request_timeout_ms %d", t.value(), t.value())
	case aks:
		rs.RequestTimeoutMS = 60000
		p.add(SeverityInfo, "scoring-timeout", "scoringTimeoutMs", "no scoringTimeoutMs: the v1 AKS default 60000 → request_timeout_ms 60000 (the v2 default would be 5000)")
	}
	if m := svc.MaxConcurrentRequestsPerContainer; m != nil && m.value() > 0 {
		rs.MaxConcurrentRequestsPerInstance = min(m.value(), 1000)
		if m.value() > 1000 {
			p.add(SeverityWarning, "max-concurrent-clamped", "maxConcurrentRequestsPerContainer", "maxConcurrentRequestsPerContainer %d clamped to 1000", m.value())
		} else {
			p.add(SeverityInfo, "max-concurrent", "maxConcurrentRequestsPerContainer", "maxConcurrentRequestsPerContainer %d → max_concurrent_requests_per_instance %d", m.value(), m.value())
		}
	}
	if q := svc.MaxQueueWaitMs; q != nil && q.value() > 0 && q.value() != 500 {
		p.add(SeverityInfo, "max-queue-wait", "maxQueueWaitMs", "maxQueueWaitMs %d is not mapped (deprecated on managed endpoints): queued requests wait up to request_timeout_ms", q.value())
	}
	if lp := svc.LivenessProbeRequirements; lp != nil {
		pr := probe(lp)
		if pr.SuccessThreshold != 0 && pr.SuccessThreshold != 1 {
			p.add(SeverityWarning, "liveness-probe", "livenessProbeRequirements.successThreshold", "successThreshold %d is not allowed on a liveness probe: set to 1", pr.SuccessThreshold)
			pr.SuccessThreshold = 1
		}
		p.dep.LivenessProbe = pr
		p.add(SeverityInfo, "liveness-probe", "livenessProbeRequirements", "livenessProbeRequirements → liveness_probe")
	}
	if rp := svc.ReadinessProbeRequirements; rp != nil {
		p.dep.ReadinessProbe = probe(rp)
		p.add(SeverityInfo, "readiness-probe", "readinessProbeRequirements", "readinessProbeRequirements → readiness_probe")
	}
}

func probe(r *ProbeRequirements) *spec.Probe {
	pos := func(n *optInt) int { return max(n.value(), 0) }
	return &spec.Probe{
		InitialDelay:     pos(r.InitialDelaySeconds),
		Period:           pos(r.PeriodSeconds),
		Timeout:          pos(r.TimeoutSeconds),
		SuccessThreshold: pos(r.SuccessThreshold),
		FailureThreshold: pos(r.FailureThreshold),
	}
}

// code maps the model, scoring code and environment. Paths are relative to
// the artifacts folder (see DefaultModelPath and friends).
func (p *planner) code() {
	svc := p.svc
	eir := svc.EnvironmentImageRequest

	// Model.
	models := svc.Models
	if len(models) == 0 && eir != nil {
		models = eir.Models
	}
	if len(models) == 0 && eir != nil {
		for _, id := range eir.ModelIDs {
			n, v, _ := strings.Cut(id, ":")
			models = append(models, Model{ID: id, Name: n, Version: optString(v)})
		}
	}
	m := &spec.Model{Path: DefaultModelPath}
	switch len(models) {
	case 0:
		p.add(SeverityWarning, "model-unknown", "models", "the service names no model: put the model files in the artifacts folder under %s/", DefaultModelPath)
	case 1:
		m.Name, m.Version = models[0].Name, string(models[0].Version)
		if m.Name == "" {
			m.Name, _, _ = strings.Cut(models[0].ID, ":")
		}
		p.add(SeverityInfo, "model", "models", "model %s → inline model from the artifacts folder (%s/)", modelID(models[0]), DefaultModelPath)
	default:
		ids := make([]string, len(models))
		for i, mo := range models {
			ids[i] = modelID(mo)
		}
		p.add(SeverityWarning, "model-multiple", "models",
			"the service uses %d models (%s) but a deployment holds one: put them all under %s/ in the v1 layout (<name>/<version>/...) so AZUREML_MODEL_DIR-relative paths keep working",
			len(models), strings.Join(ids, ", "), DefaultModelPath)
	}
	p.dep.Model = m

	// Scoring code.
	script, dir := svc.EntryScript, svc.SourceDirectory
	if eir != nil && script == "" && dir == "" {
		for _, a := range eir.Assets {
			if a.ID == "" || a.ID == eir.DriverProgram && strings.Contains(a.MimeType, "python") {
				continue
			}
			if a.Unpack.value() {
				dir = a.ID
			} else if strings.HasSuffix(strings.ToLower(a.ID), ".py") && script == "" {
				script = a.ID
			}
		}
	}
	dir = cleanRel(dir)
	if dir == "" {
		dir = "."
	}
	if script == "" {
		script = DefaultScoringScript
		p.add(SeverityWarning, "entry-script-assumed", "environmentImageRequest.assets", "the service does not record its entry script: assumed %s in %s (check it against the artifacts folder)", script, path.Join("<artifacts>", dir))
	}
	if s := cleanRel(script); s != "" {
		script = s
	} else {
		script = path.Base(strings.ReplaceAll(script, `\`, "/"))
	}
	p.dep.CodeConfiguration = &spec.CodeConfiguration{Code: dir, ScoringScript: script}

	// Environment.
	env := svc.Environment
	if eir != nil && eir.Environment != nil {
		env = eir.Environment
	}
	e := &spec.Environment{}
	p.dep.Environment = e
	switch {
	case eir != nil && eir.EnvironmentReference != nil && eir.EnvironmentReference.Name != "":
		ref := eir.EnvironmentReference
		e.Ref = "azureml:" + ref.Name
		if ref.Version != "" {
			e.Ref += ":" + string(ref.Version)
		}
		p.add(SeverityWarning, "environment-reference", "environmentImageRequest.environmentReference",
			"environment %s is a registered (or curated) environment: it must exist under that name in v2, and moe does not resolve it (the server's Python interpreter is used); replace it with image + conda_file to be exact", e.Ref)
	case env != nil:
		e.Image = DefaultImage
		if env.Docker != nil && env.Docker.BaseImage != "" {
			e.Image = env.Docker.BaseImage
			if env.Docker.Registry != nil && env.Docker.Registry.Address != "" && !strings.Contains(e.Image, "/") {
				e.Image = env.Docker.Registry.Address + "/" + e.Image
			}
		} else {
			p.add(SeverityInfo, "environment-image", "environment.docker.baseImage", "no base image given: using %s", DefaultImage)
		}
		if env.Docker != nil && (env.Docker.BaseDockerfile != "" || len(env.Docker.BuildContext) > 0 && string(env.Docker.BuildContext) != "null") {
			p.add(SeverityWarning, "environment-dockerfile", "environment.docker.baseDockerfile", "a custom Dockerfile is not carried over: build the image yourself and set environment.image, or use environment.build")
		}
		if env.Docker != nil && env.Docker.Registry != nil && env.Docker.Registry.Address != "" {
			p.add(SeverityWarning, "environment-registry", "environment.docker.baseImageRegistry", "the base image comes from registry %s: the new side must be able to pull from it (registry credentials are not carried over)", env.Docker.Registry.Address)
		}
		py := env.Python
		switch {
		case py != nil && py.UserManagedDependencies.value():
			p.add(SeverityInfo, "environment-user-managed", "environment.python.userManagedDependencies", "user-managed dependencies: no conda file, the image must hold every package")
		case svc.CondaFile != "":
			e.CondaFile = firstNonEmpty(cleanRel(svc.CondaFile), DefaultCondaFile)
		case py != nil && py.CondaDependenciesFile != "":
			e.CondaFile = firstNonEmpty(cleanRel(py.CondaDependenciesFile), DefaultCondaFile)
		case py != nil && len(py.CondaDependencies) > 0 && string(py.CondaDependencies) != "null":
			e.CondaFile = DefaultCondaFile
			p.r.CondaDependencies = py.CondaDependencies
			p.add(SeverityInfo, "environment", "environment", "environment %s → image %s + conda_file %s (export writes it from the service's conda dependencies unless the artifacts hold one)", envID(env), e.Image, DefaultCondaFile)
		default:
			e.CondaFile = DefaultCondaFile
			p.add(SeverityWarning, "environment-conda-missing", "environment.python.condaDependencies", "the environment lists no conda dependencies: put %s in the artifacts folder", DefaultCondaFile)
		}
		p.envVars("environment.environmentVariables", env.EnvironmentVariables)
	default:
		e.Image = DefaultImage
		e.CondaFile = firstNonEmpty(cleanRel(svc.CondaFile), DefaultCondaFile)
		if svc.CondaFile != "" {
			p.add(SeverityInfo, "environment-conda-file", "condaFile", "inferenceconfig.json condaFile %s → image %s + conda_file %s from the artifacts folder", svc.CondaFile, DefaultImage, e.CondaFile)
		} else if !p.r.Skeleton {
			p.add(SeverityWarning, "environment-unknown", "environment", "the service describes no environment: using %s with %s from the artifacts folder", DefaultImage, e.CondaFile)
		}
	}
	p.envVars("environmentVariables", svc.EnvironmentVariables)
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (p *planner) envVars(field string, vars map[string]string) {
	if len(vars) == 0 {
		return
	}
	var kept []string
	for _, k := range sortedKeys(vars) {
		if !envNameRE.MatchString(k) {
			p.add(SeverityWarning, "environment-variable-invalid", field+"."+k, "environment variable %q is not a valid name and is dropped", k)
			continue
		}
		if p.dep.EnvironmentVariables == nil {
			p.dep.EnvironmentVariables = map[string]string{}
		}
		p.dep.EnvironmentVariables[k] = vars[k]
		kept = append(kept, k)
	}
	if len(kept) > 0 {
		p.add(SeverityInfo, "environment-variables", field, "%s → environment_variables", strings.Join(kept, ", "))
	}
}

func (p *planner) metadata() {
	svc := p.svc
	if len(svc.KVTags) > 0 {
		p.ep.Tags = copyMap(svc.KVTags)
		p.dep.Tags = copyMap(svc.KVTags)
		p.add(SeverityInfo, "tags", "kvTags", "kvTags → tags of the endpoint and the deployment")
	}
	p.ep.Description = svc.Description
	p.dep.Description = svc.Description
	if svc.AppInsightsEnabled.value() {
		p.dep.AppInsightsEnabled = true
		p.add(SeverityInfo, "app-insights", "appInsightsEnabled", "appInsightsEnabled → app_insights_enabled (on moe: use its Prometheus metrics and logs)")
	}
	if dc := svc.DataCollection; dc != nil && (dc.StorageEnabled.value() || dc.EventHubEnabled.value()) {
		p.add(SeverityWarning, "data-collection", "dataCollection", "model data collection has no direct counterpart (v2 data_collector works differently): not carried over")
	}
}

func (p *planner) finish() {
	r := p.r
	r.NewScoringURI = p.newURI()
	old := firstNonEmpty(r.OldScoringURI, "(unknown)")
	r.Findings = append(r.Findings, Finding{Severity: SeverityInfo, Code: "scoring-uri", Field: "scoringUri",
		Message: fmt.Sprintf("the scoring URI changes: %s → %s", old, r.NewScoringURI)})
	p.ep.Default()
	p.dep.Default()
	var fe spec.FieldErrors
	for _, x := range []struct {
		what string
		err  error
	}{{"endpoint", p.ep.Validate()}, {"deployment", p.dep.Validate()}} {
		if x.err == nil {
			continue
		}
		if !errors.As(x.err, &fe) {
			r.Findings = append(r.Findings, Finding{SeverityError, "spec-invalid", x.what + ": " + x.err.Error(), ""})
			continue
		}
		for _, e := range fe {
			if e.Path == "name" || e.Path == "endpoint_name" || strings.HasPrefix(e.Path, "traffic.") && hasCode(r.Findings, "name-invalid") || e.Path == "instance_type" && p.dep.InstanceType != "" && hasCode(r.Findings, "sku-unknown") {
				continue // already reported with a suggestion
			}
			if e.Path == "instance_type" && hasCode(r.Findings, "sku-none") {
				continue
			}
			r.Findings = append(r.Findings, Finding{SeverityError, "spec-invalid", fmt.Sprintf("%s.%s: %s", x.what, e.Path, e.Message), ""})
		}
	}
	r.Eligible = !hasSeverity(r.Findings, SeverityError)
}

func (p *planner) newURI() string {
	return "https://" + strings.ToLower(p.ep.Name) + "." + p.opts.Region + ".inference." + p.opts.Domain + "/score"
}

// SuggestName turns any string into a valid endpoint/deployment name (see
// spec.ValidateName): lower case, letters, digits and '-', starting with a
// letter, 3–32 characters. It is a suggestion for the user, never applied
// silently.
func SuggestName(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
			dash = false
		default:
			if !dash && b.Len() > 0 {
				b.WriteByte('-')
				dash = true
			}
		}
	}
	out := strings.Trim(b.String(), "-")
	if out == "" || out[0] < 'a' || out[0] > 'z' {
		out = "svc-" + out
	}
	if len(out) > 32 {
		out = out[:32]
	}
	out = strings.TrimRight(out, "-")
	for len(out) < 3 {
		out += "-v1"
		out = strings.TrimLeft(out, "-")
	}
	return out
}

func hasSeverity(fs []Finding, sev string) bool {
	for _, f := range fs {
		if f.Severity == sev {
			return true
		}
	}
	return false
}

func hasCode(fs []Finding, code string) bool {
	for _, f := range fs {
		if f.Code == code {
			return true
		}
	}
	return false
}

func modelID(m Model) string {
	if m.ID != "" {
		return m.ID
	}
	if m.Version != "" {
		return m.Name + ":" + string(m.Version)
	}
	return m.Name
}

func envID(e *EnvironmentDefinition) string {
	if e.Name == "" {
		return "(unnamed)"
	}
	if e.Version != "" {
		return e.Name + ":" + string(e.Version)
	}
	return e.Name
}

// cleanRel returns p as a clean slash-separated path inside its base, or ""
// when it is empty, absolute, or escapes the base.
func cleanRel(p string) string {
	if p == "" {
		return ""
	}
	p = path.Clean(strings.ReplaceAll(p, `\`, "/"))
	if p == "." || path.IsAbs(p) || strings.HasPrefix(p, "../") || p == ".." || len(p) > 1 && p[1] == ':' {
		return ""
	}
	return p
}

func isPrivateHost(uri string) bool {
	u, err := url.Parse(uri)
	if err != nil {
		return false
	}
	return isPrivateIP(u.Hostname())
}

func isPrivateIP(s string) bool {
	ip := net.ParseIP(s)
	return ip != nil && (ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast())
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
