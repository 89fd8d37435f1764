package upgrade

import (
	"strings"
	"testing"
)

// base is a healthy, key-auth ACI service with everything needed for an
// eligible plan; rule tests change one thing.
const base = `"name":"svc-a","computeType":"ACI","state":"Healthy","authEnabled":true,
"scoringUri":"http://svc-a.eastus.azurecontainer.io/score",
"containerResourceRequirements":{"cpu":1,"memoryInGB":1},
"environmentImageRequest":{"driverProgram":"main.py","assets":[{"id":"score.py","unpack":false}],"modelIds":["m:1"],
 "environment":{"python":{"condaDependencies":{"dependencies":["python=3.10"]}},"docker":{"baseImage":"img"}}}`

func mustImport(t *testing.T, fields string) *Service {
	t.Helper()
	s, err := ImportService([]byte("{" + fields + "}"))
	if err != nil {
		t.Fatalf("ImportService: %v", err)
	}
	return s
}

func finding(r *Result, code string) *Finding {
	for i := range r.Findings {
		if r.Findings[i].Code == code {
			return &r.Findings[i]
		}
	}
	return nil
}

// TestPlan_Rules has one case per row of the rule table and per
// "also map" item.
func TestPlan_Rules(t *testing.T) {
	for _, tc := range []struct {
		name     string
		doc      string // fields after base (later keys win)
		keys     bool
		opts     Options
		eligible bool
		code     string
		severity string
		contains string
		check    func(t *testing.T, r *Result)
	}{
		{name: "StateNotHealthy", doc: `"state":"Failed","error":{"code":"E1","message":"boom in init"}`, code: "state", severity: SeverityError, contains: "Failed"},
		{name: "StateMessageCarried", doc: `"state":"Unhealthy","error":{"message":"boom in init"}`, code: "state", severity: SeverityError, contains: "boom in init"},
		{name: "ComputeTypeAMLCompute", doc: `"computeType":"AMLCOMPUTE"`, code: "compute-type", severity: SeverityError, contains: "AMLCOMPUTE"},
		{name: "ComputeTypeCaseInsensitive", doc: `"computeType":"aci"`, eligible: true, code: "sku", severity: SeverityInfo},
		{name: "NoAuth", doc: `"authEnabled":false`, eligible: true, code: "auth-none", severity: SeverityWarning, contains: "clients must now send a key",
			check: func(t *testing.T, r *Result) {
				if r.Endpoint.AuthMode != "key" || r.Keys != nil {
					t.Errorf("auth_mode %q keys %v; want key with new keys", r.Endpoint.AuthMode, r.Keys)
				}
			}},
		{name: "KeyAuthKept", keys: true, eligible: true, code: "auth-key-kept", severity: SeverityInfo,
			check: func(t *testing.T, r *Result) {
				if r.Keys == nil || r.Keys.PrimaryKey != "p" || r.Keys.SecondaryKey != "s" {
					t.Errorf("keys = %+v; want the originals", r.Keys)
				}
			}},
		{name: "KeyAuthNoKeys", eligible: true, code: "auth-key-new", severity: SeverityWarning},
		{name: "TokenAuth", doc: `"computeType":"AKS","authEnabled":false,"aadAuthEnabled":true`, eligible: true, code: "auth-token", severity: SeverityInfo,
			check: func(t *testing.T, r *Result) {
				if r.Endpoint.AuthMode != "aml_token" {
					t.Errorf("auth_mode = %q; want aml_token", r.Endpoint.AuthMode)
				}
			}},
		{name: "AKSAuthDefaultsToKey", doc: `"computeType":"AKS","authEnabled":null`, eligible: true, code: "auth-key-new", severity: SeverityWarning},
		{name: "TLS", doc: `"sslEnabled":true,"sslCertificate":"-----BEGIN","sslKey":"-----BEGIN"`, eligible: true, code: "tls", severity: SeverityInfo, contains: "dropped"},
		{name: "CName", doc: `"cname":"api.contoso.example","scoringUri":"https://api.contoso.example/score"`, eligible: true, code: "cname", severity: SeverityWarning,
			contains: "api.contoso.example/score to the new scoring URI https://svc-a.local.inference.localhost/score"},
		{name: "SKUInTable", doc: `"containerResourceRequirements":{"cpu":2,"memoryInGB":1.5}`, eligible: true, code: "sku", severity: SeverityInfo, contains: "cpu (1, 2], memory (1.2, 1.7] GB",
			check: func(t *testing.T, r *Result) {
				if r.Deployment.InstanceType != "Standard_F2s_v2" {
					t.Errorf("instance_type = %s", r.Deployment.InstanceType)
				}
			}},
		{name: "SKUBoundaryExact", doc: `"containerResourceRequirements":{"cpu":1,"memoryInGB":1.2}`, eligible: true, code: "sku", severity: SeverityInfo, contains: "Standard_DS1_v2"},
		{name: "SKUHole", doc: `"containerResourceRequirements":{"cpu":1.5,"memoryInGB":1.0}`, eligible: true, code: "sku-outside-table", severity: SeverityWarning, contains: "outside the published SKU table"},
		{name: "SKUGPU", doc: `"containerResourceRequirements":{"cpu":1,"memoryInGB":4,"gpu":1}`, eligible: true, code: "sku-outside-table", severity: SeverityWarning, contains: "Standard_NC4as_T4_v3"},
		{name: "SKUTooBig", doc: `"containerResourceRequirements":{"cpu":500,"memoryInGB":1}`, code: "sku-none", severity: SeverityError, contains: "--instance-type"},
		{name: "SKUOverride", doc: `"containerResourceRequirements":{"cpu":500,"memoryInGB":1}`, opts: Options{InstanceType: "standard_ds3_v2"}, eligible: true, code: "sku-override", severity: SeverityInfo,
			check: func(t *testing.T, r *Result) {
				if r.Deployment.InstanceType != "Standard_DS3_v2" {
					t.Errorf("instance_type = %s", r.Deployment.InstanceType)
				}
			}},
		{name: "SKUOverrideUnknown", opts: Options{InstanceType: "Standard_Nope"}, code: "sku-unknown", severity: SeverityError},
		{name: "SKUDefaults", doc: `"containerResourceRequirements":null`, eligible: true, code: "resources-default", severity: SeverityInfo, contains: "cpu 0.1, memoryInGB 0.5"},
		{name: "Encryption", doc: `"encryptionProperties":{"vaultBaseUrl":"https://kv","keyName":"k","keyVersion":"1"}`, code: "encryption", severity: SeverityError, contains: "redeploy"},
		{name: "VNetRefused", doc: `"vnetConfiguration":{"vnetName":"v","subnetName":"s"}`, code: "network-isolation", severity: SeverityError, contains: "--allow-network-isolation"},
		{name: "VNetAllowed", doc: `"vnetConfiguration":{"vnetName":"v","subnetName":"s"}`, opts: Options{AllowNetworkIsolation: true}, eligible: true, code: "network-isolation", severity: SeverityWarning},
		{name: "PrivateIP", doc: `"scoringUri":"http://10.0.0.4:80/score"`, code: "network-isolation", severity: SeverityError},
		{name: "ImageBased", doc: `"imageId":"img:1","environmentImageRequest":null`, code: "image-based", severity: SeverityError, contains: "skeleton",
			check: func(t *testing.T, r *Result) {
				if !r.Skeleton {
					t.Error("Skeleton = false")
				}
			}},
		{name: "ScoringURI", eligible: true, code: "scoring-uri", severity: SeverityInfo, contains: "http://svc-a.eastus.azurecontainer.io/score → https://svc-a.local.inference.localhost/score"},
		{name: "ScoringURIRegion", opts: Options{Region: "westus", Domain: "ml.azure.com"}, eligible: true, code: "scoring-uri", severity: SeverityInfo, contains: "https://svc-a.westus.inference.ml.azure.com/score"},
		{name: "TimeoutClamped", doc: `"scoringTimeoutMs":600000`, eligible: true, code: "scoring-timeout-clamped", severity: SeverityWarning,
			check: func(t *testing.T, r *Result) {
				if got := r.Deployment.RequestSettings.RequestTimeoutMS; got != 180000 {
					t.Errorf("request_timeout_ms = %d", got)
				}
			}},
		{name: "Timeout", doc: `"scoringTimeoutMs":20000`, eligible: true, code: "scoring-timeout", severity: SeverityInfo,
			check: func(t *testing.T, r *Result) {
				if got := r.Deployment.RequestSettings.RequestTimeoutMS; got != 20000 {
					t.Errorf("request_timeout_ms = %d", got)
				}
			}},
		{name: "MaxConcurrent", doc: `"maxConcurrentRequestsPerContainer":"7"`, eligible: true, code: "max-concurrent", severity: SeverityInfo,
			check: func(t *testing.T, r *Result) {
				if got := r.Deployment.RequestSettings.MaxConcurrentRequestsPerInstance; got != 7 {
					t.Errorf("max_concurrent_requests_per_instance = %d", got)
				}
			}},
		{name: "Liveness", doc: `"livenessProbeRequirements":{"periodSeconds":5,"initialDelaySeconds":30,"timeoutSeconds":3,"successThreshold":1,"failureThreshold":4}`, eligible: true, code: "liveness-probe", severity: SeverityInfo,
			check: func(t *testing.T, r *Result) {
				p := r.Deployment.LivenessProbe
				if p.Period != 5 || p.InitialDelay != 30 || p.Timeout != 3 || p.FailureThreshold != 4 {
					t.Errorf("liveness_probe = %+v", p)
				}
			}},
		{name: "NumReplicas", doc: `"computeType":"AKS","numReplicas":4,"autoScaler":{"autoscaleEnabled":false}`, eligible: true, code: "scale", severity: SeverityInfo,
			check: func(t *testing.T, r *Result) {
				if r.Deployment.InstanceCount != 4 || r.Deployment.ScaleSettings.Type != "default" {
					t.Errorf("instance_count %d scale %+v", r.Deployment.InstanceCount, r.Deployment.ScaleSettings)
				}
			}},
		{name: "Autoscaler", doc: `"computeType":"AKS","numReplicas":null,"autoScaler":{"autoscaleEnabled":true,"minReplicas":2,"maxReplicas":6}`, eligible: true, code: "autoscale", severity: SeverityWarning,
			check: func(t *testing.T, r *Result) {
				if r.Deployment.InstanceCount != 2 {
					t.Errorf("instance_count = %d; want the autoscaler minimum", r.Deployment.InstanceCount)
				}
			}},
		{name: "Tags", doc: `"kvTags":{"team":"x"}`, eligible: true, code: "tags", severity: SeverityInfo,
			check: func(t *testing.T, r *Result) {
				if r.Endpoint.Tags["team"] != "x" || r.Deployment.Tags["team"] != "x" {
					t.Errorf("tags %v %v", r.Endpoint.Tags, r.Deployment.Tags)
				}
			}},
		{name: "EnvVars", doc: `"environmentVariables":{"A_B":"1","bad name":"2"}`, eligible: true, code: "environment-variable-invalid", severity: SeverityWarning,
			check: func(t *testing.T, r *Result) {
				if len(r.Deployment.EnvironmentVariables) != 1 || r.Deployment.EnvironmentVariables["A_B"] != "1" {
					t.Errorf("environment_variables = %v", r.Deployment.EnvironmentVariables)
				}
			}},
		{name: "InvalidName", doc: `"name":"x_1"`, code: "name-invalid", severity: SeverityError, contains: `suggested valid name: "x-1"`,
			check: func(t *testing.T, r *Result) {
				if r.Endpoint.Name != "x_1" {
					t.Errorf("endpoint name = %q; the plan must not rename silently", r.Endpoint.Name)
				}
			}},
		{name: "InvalidNameOverridden", doc: `"name":"x_1"`, opts: Options{EndpointName: "x-1-ep", DeploymentName: "blue"}, eligible: true, code: "scoring-uri", severity: SeverityInfo,
			check: func(t *testing.T, r *Result) {
				if r.Endpoint.Name != "x-1-ep" || r.Deployment.Name != "blue" || r.Endpoint.Traffic["blue"] != 100 {
					t.Errorf("names %q/%q traffic %v", r.Endpoint.Name, r.Deployment.Name, r.Endpoint.Traffic)
				}
			}},
		{name: "InvalidOverride", opts: Options{EndpointName: "1bad"}, code: "name-invalid", severity: SeverityError, contains: "--endpoint-name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := base
			if tc.doc != "" {
				doc += "," + tc.doc
			}
			svc := mustImport(t, doc)
			if tc.keys {
				svc.Keys = &Keys{PrimaryKey: "p", SecondaryKey: "s"}
			}
			r := Plan(svc, tc.opts)
			if r.Eligible != tc.eligible {
				t.Errorf("eligible = %v; want %v; findings: %+v", r.Eligible, tc.eligible, r.Findings)
			}
			f := finding(r, tc.code)
			if f == nil {
				t.Fatalf("no %q finding in %+v", tc.code, r.Findings)
			}
			if f.Severity != tc.severity {
				t.Errorf("%s severity = %s; want %s", tc.code, f.Severity, tc.severity)
			}
			if !strings.Contains(f.Message, tc.contains) {
				t.Errorf("%s message %q does not contain %q", tc.code, f.Message, tc.contains)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

func TestSuggestName(t *testing.T) {
	for in, want := range map[string]string{
		"My_Service.v1": "my-service-v1",
		"1abc":          "svc-1abc",
		"a":             "a-v1",
		"__":            "svc",
		"x":             "x-v1",
		"this-is-a-very-long-service-name-indeed": "this-is-a-very-long-service-name",
		"ok-name": "ok-name",
	} {
		got := SuggestName(in)
		if got != want {
			t.Errorf("SuggestName(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestImportService_Lenient(t *testing.T) {
	s, err := ImportService([]byte(`{"name":"a","authEnabled":"true","numReplicas":"3","containerResourceRequirements":{"cpu":"0.5","memoryInGB":1},"unknown":{"deep":[1,2]},"models":[{"name":"m","version":"7"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if !s.AuthEnabled.value() || s.NumReplicas.value() != 3 || s.ContainerResourceRequirements.CPU.float() != 0.5 || s.Models[0].Version != "7" {
		t.Errorf("lenient decode: %+v", s)
	}
	for _, bad := range []string{``, `[]`, `{"name":`, `{"name":{"x":1}}`, `{"numReplicas":1.5}`, `{} {}`} {
		if _, err := ImportService([]byte(bad)); err == nil {
			t.Errorf("ImportService(%q) succeeded; want an error", bad)
		}
	}
}

func TestImportKeys(t *testing.T) {
	k, err := ImportKeys([]byte(`{"primaryKey":"a","secondaryKey":"b"}`))
	if err != nil || k.PrimaryKey != "a" || k.SecondaryKey != "b" {
		t.Errorf("ImportKeys = %+v, %v", k, err)
	}
	if _, err := ImportKeys([]byte(`{"primaryKey":"a"}`)); err == nil {
		t.Error("ImportKeys with one key succeeded")
	}
}

func TestImportDeployConfig(t *testing.T) {
	t.Run("ACITopLevelCMKAndVNet", func(t *testing.T) {
		s, err := ImportDeployConfig("svc-x", []byte(`{"computeType":"aci","vaultBaseUrl":"https://kv","keyName":"k","keyVersion":"1","vnetName":"v","subnetName":"s"}`), nil)
		if err != nil {
			t.Fatal(err)
		}
		if !s.EncryptionProperties.set() || !s.VnetConfiguration.set() || s.ComputeType != "ACI" || s.AuthEnabled.value() {
			t.Errorf("got %+v", s)
		}
	})
	t.Run("AKSDefaults", func(t *testing.T) {
		s, err := ImportDeployConfig("svc-x", []byte(`{"computeType":"aks","gpuCores":2,"keys":{"primaryKey":"p","secondaryKey":"s"}}`), []byte(`{"entryScript":"score.py","sourceDirectory":"src"}`))
		if err != nil {
			t.Fatal(err)
		}
		if !s.AuthEnabled.value() || s.ContainerResourceRequirements.GPU.value() != 2 || s.Keys == nil || s.EntryScript != "score.py" || s.SourceDirectory != "src" {
			t.Errorf("got %+v", s)
		}
	})
	t.Run("TokenAuthTurnsKeyDefaultOff", func(t *testing.T) {
		s, _ := ImportDeployConfig("svc-x", []byte(`{"computeType":"aks","tokenAuthEnabled":true}`), nil)
		if s.AuthEnabled.value() || !s.AADAuthEnabled.value() {
			t.Errorf("got auth %v token %v", s.AuthEnabled.value(), s.AADAuthEnabled.value())
		}
	})
}

func TestLooksLikeDeployConfig(t *testing.T) {
	if !LooksLikeDeployConfig([]byte(`{"computeType":"aci","authEnabled":true}`)) {
		t.Error("deploymentconfig not recognised")
	}
	if LooksLikeDeployConfig([]byte(`{"computeType":"ACI","name":"x","state":"Healthy"}`)) {
		t.Error("service document taken for a deploymentconfig")
	}
}
