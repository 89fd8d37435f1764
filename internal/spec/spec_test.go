package spec

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

const minimalDeployment = `
name: blue
endpoint_name: my-endpoint
model:
  path: model
code_configuration:
  code: code
  scoring_script: score.py
environment:
  image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest
  conda_file: conda.yaml
instance_type: Standard_DS3_v2
instance_count: 1
`

func mustDeployment(t *testing.T, yml string, opts DecodeOptions) *Deployment {
	t.Helper()
	d, _, err := DecodeDeployment([]byte(yml), opts)
	if err != nil {
		t.Fatalf("DecodeDeployment: %v", err)
	}
	return d
}

// wantErr checks that err is FieldErrors and that its text holds every sub.
func wantErr(t *testing.T, err error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error; want %q", subs)
	}
	var fes FieldErrors
	if !errors.As(err, &fes) {
		t.Fatalf("error %T is not FieldErrors: %v", err, err)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error does not contain %q:\n%v", s, err)
		}
	}
}

func TestBlueDeploymentSample(t *testing.T) {
	base := "/src/azureml-examples/cli/endpoints/online/managed/sample"
	v, _, err := decodeFixture(t, "deployment-blue.good.yml", DecodeOptions{BaseDir: base})
	if err != nil {
		t.Fatal(err)
	}
	d := v.(*Deployment)
	want := &Deployment{
		Name:              "blue",
		EndpointName:      "my-endpoint",
		Type:              TypeManaged,
		Model:             &Model{Path: "/src/azureml-examples/cli/endpoints/online/model-1/model"},
		CodeConfiguration: &CodeConfiguration{Code: "/src/azureml-examples/cli/endpoints/online/model-1/onlinescoring", ScoringScript: "score.py"},
		Environment: &Environment{
			CondaFile: "/src/azureml-examples/cli/endpoints/online/model-1/environment/conda.yaml",
			Image:     "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest",
		},
		InstanceType:    "Standard_DS3_v2",
		InstanceCount:   1,
		ScaleSettings:   &ScaleSettings{Type: ScaleDefault},
		RequestSettings: &RequestSettings{RequestTimeoutMS: 5000, MaxConcurrentRequestsPerInstance: 1},
		LivenessProbe:   DefaultProbe(),
		ReadinessProbe:  DefaultProbe(),
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("got  %s\nwant %s", jsonString(t, d), jsonString(t, want))
	}
}

func TestResolvePaths(t *testing.T) {
	d := &Deployment{
		Model:             &Model{Path: "m"},
		CodeConfiguration: &CodeConfiguration{Code: "../code", ScoringScript: "score.py"},
		Environment:       &Environment{CondaFile: "env/conda.yaml", Build: &Build{Path: "ctx", DockerfilePath: "Dockerfile"}},
	}
	d.ResolvePaths("/base/dir")
	if d.Model.Path != "/base/dir/m" || d.CodeConfiguration.Code != "/base/code" ||
		d.Environment.CondaFile != "/base/dir/env/conda.yaml" || d.Environment.Build.Path != "/base/dir/ctx" {
		t.Errorf("relative paths not resolved: %s", jsonString(t, d))
	}
	if d.CodeConfiguration.ScoringScript != "score.py" || d.Environment.Build.DockerfilePath != "Dockerfile" {
		t.Errorf("paths relative to another folder were changed: %s", jsonString(t, d))
	}
	// Absolute paths, URIs, azureml: ids and references stay as written.
	for _, p := range []string{"/abs/model", "azureml:code:1", "azureml://datastores/x/paths/y", "https://example.com/m.pkl", ""} {
		d := &Deployment{Model: &Model{Path: p}, CodeConfiguration: &CodeConfiguration{Code: p}}
		d.ResolvePaths("/base")
		if d.Model.Path != p || d.CodeConfiguration.Code != p {
			t.Errorf("ResolvePaths changed %q to %q / %q", p, d.Model.Path, d.CodeConfiguration.Code)
		}
	}
	ref := &Deployment{Model: &Model{Ref: "azureml:m:1"}, Environment: &Environment{Ref: "azureml:e:1"}}
	ref.ResolvePaths("/base")
	if ref.Model.Path != "" || ref.Environment.CondaFile != "" {
		t.Errorf("references got paths: %s", jsonString(t, ref))
	}
	// Without BaseDir, paths stay as written.
	d = mustDeployment(t, minimalDeployment, DecodeOptions{})
	if d.Model.Path != "model" || d.CodeConfiguration.Code != "code" || d.Environment.CondaFile != "conda.yaml" {
		t.Errorf("paths changed without BaseDir: %s", jsonString(t, d))
	}
}

func TestDeploymentDefaults(t *testing.T) {
	d := mustDeployment(t, minimalDeployment, DecodeOptions{})
	if d.Type != TypeManaged {
		t.Errorf("Type = %q; want managed", d.Type)
	}
	if want := (&RequestSettings{RequestTimeoutMS: 5000, MaxConcurrentRequestsPerInstance: 1}); !reflect.DeepEqual(d.RequestSettings, want) {
		t.Errorf("RequestSettings = %+v; want %+v", d.RequestSettings, want)
	}
	want := &Probe{InitialDelay: 10, Period: 10, Timeout: 2, SuccessThreshold: 1, FailureThreshold: 30}
	if !reflect.DeepEqual(d.LivenessProbe, want) || !reflect.DeepEqual(d.ReadinessProbe, want) {
		t.Errorf("probes = %+v / %+v; want %+v", d.LivenessProbe, d.ReadinessProbe, want)
	}
	if d.LivenessProbe == d.ReadinessProbe {
		t.Error("liveness and readiness share one Probe")
	}
	if want := (&ScaleSettings{Type: ScaleDefault}); !reflect.DeepEqual(d.ScaleSettings, want) {
		t.Errorf("ScaleSettings = %+v; want %+v", d.ScaleSettings, want)
	}

	// A partial probe keeps its values and gets defaults for the rest.
	d = mustDeployment(t, minimalDeployment+"readiness_probe:\n  period: 3\n  failure_threshold: 5\nrequest_settings:\n  max_concurrent_requests_per_instance: 8\n", DecodeOptions{})
	if want := (&Probe{InitialDelay: 10, Period: 3, Timeout: 2, SuccessThreshold: 1, FailureThreshold: 5}); !reflect.DeepEqual(d.ReadinessProbe, want) {
		t.Errorf("ReadinessProbe = %+v; want %+v", d.ReadinessProbe, want)
	}
	if rs := d.RequestSettings; rs.RequestTimeoutMS != 5000 || rs.MaxConcurrentRequestsPerInstance != 8 {
		t.Errorf("RequestSettings = %+v", rs)
	}

	// type: default drops autoscale fields, as Azure's loader does.
	d = mustDeployment(t, minimalDeployment+"scale_settings:\n  min_instances: 2\n  max_instances: 4\n", DecodeOptions{})
	if want := (&ScaleSettings{Type: ScaleDefault}); !reflect.DeepEqual(d.ScaleSettings, want) {
		t.Errorf("ScaleSettings = %+v; want %+v", d.ScaleSettings, want)
	}

	// target_utilization (kubernetes) gets Azure's autoscale defaults.
	d = mustDeployment(t, minimalDeployment+"type: kubernetes\nscale_settings:\n  type: target_utilization\n", DecodeOptions{})
	if want := (&ScaleSettings{Type: ScaleTargetUtilization, MinInstances: 1, MaxInstances: 1, PollingInterval: 1, TargetUtilizationPercentage: 70}); !reflect.DeepEqual(d.ScaleSettings, want) {
		t.Errorf("ScaleSettings = %+v; want %+v", d.ScaleSettings, want)
	}
}

func TestEndpointDefaults(t *testing.T) {
	for in, want := range map[string]string{
		"":          AuthKey,
		"key":       AuthKey,
		"Key":       AuthKey,
		"aml_token": AuthAMLToken,
		"AMLToken":  AuthAMLToken,
		"aad_token": AuthAADToken,
		"AADToken":  AuthAADToken,
	} {
		yml := "name: my-endpoint\n"
		if in != "" {
			yml += "auth_mode: " + in + "\n"
		}
		e, _, err := DecodeEndpoint([]byte(yml), DecodeOptions{})
		if err != nil {
			t.Errorf("auth_mode %q: %v", in, err)
			continue
		}
		if e.AuthMode != want {
			t.Errorf("auth_mode %q became %q; want %q", in, e.AuthMode, want)
		}
	}
	e, _, err := DecodeEndpoint([]byte("name: my-endpoint\ntraffic: {Blue: 100, GREEN: 0}\nmirror_traffic: {Green: 0}\n"), DecodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]int{"blue": 100, "green": 0}; !reflect.DeepEqual(e.Traffic, want) {
		t.Errorf("Traffic = %v; want %v (keys lower-cased)", e.Traffic, want)
	}
	if e.MirrorTraffic != nil {
		t.Errorf("MirrorTraffic = %#v; want nil (0 entries removed)", e.MirrorTraffic)
	}
}

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		want string // substring of the message; "" means valid
	}{
		{"", "is required"},
		{"ab", "(got 2)"},
		{"abc", ""},
		{"ab1", ""},
		{strings.Repeat("a", 32), ""},
		{strings.Repeat("a", 33), "(got 33)"},
		{"1abc", "must start with an upper- or lowercase letter"},
		{"-abc", "must start with"},
		{"abc-", "must start with"},
		{"ab_c", "must start with"},
		{"ab.c", "must start with"},
		{"My-Endpoint-2", ""},
		{"a-b-c", ""},
		{"ab c", "must start with"},
		{"ébc", "must start with"},
	} {
		got := ValidateName("endpoint", tc.name)
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("ValidateName(%q) = %q; want %q", tc.name, got, tc.want)
		}
	}
}

func TestRequestTimeoutBounds(t *testing.T) {
	for _, tc := range []struct {
		typ     string
		timeout string
		ok      bool
	}{
		{"managed", "1", true},
		{"managed", "180000", true},
		{"managed", "180001", false},
		{"managed", "300000", false},
		{"managed", "-1", false},
		{"kubernetes", "180001", true},
		{"kubernetes", "300000", true},
		{"kubernetes", "300001", false},
	} {
		yml := minimalDeployment + "type: " + tc.typ + "\nrequest_settings:\n  request_timeout_ms: " + tc.timeout + "\n"
		_, _, err := DecodeDeployment([]byte(yml), DecodeOptions{})
		if tc.ok && err != nil {
			t.Errorf("%s %s: %v", tc.typ, tc.timeout, err)
		}
		if !tc.ok {
			if err == nil {
				t.Errorf("%s %s: accepted", tc.typ, tc.timeout)
			} else if !strings.Contains(err.Error(), "request_settings.request_timeout_ms: must be between 1 and") {
				t.Errorf("%s %s: %v", tc.typ, tc.timeout, err)
			}
		}
	}
}

func TestInstanceType(t *testing.T) {
	for _, it := range []string{"Standard_DS3_v2", "STANDARD_DS3_V2", "standard_ds3_v2", "Standard_F4s_v2", "Standard_NC6s_v3"} {
		d := mustDeployment(t, strings.Replace(minimalDeployment, "Standard_DS3_v2", it, 1), DecodeOptions{})
		if d.InstanceType != it {
			t.Errorf("instance_type %q became %q", it, d.InstanceType)
		}
	}
	for _, it := range []string{"Standard_DS3", "DS3_v2", "Standard_DS3_v2 ", "x"} {
		_, _, err := DecodeDeployment([]byte(strings.Replace(minimalDeployment, "Standard_DS3_v2", `"`+it+`"`, 1)), DecodeOptions{})
		wantErr(t, err, "instance_type: unknown instance type")
	}
}

func TestTraffic(t *testing.T) {
	for _, tc := range []struct {
		traffic, mirror map[string]int
		want            []string // substrings; nil means valid
	}{
		{nil, nil, nil},
		{map[string]int{"blue": 0, "green": 0}, nil, nil},
		{map[string]int{"blue": 100}, nil, nil},
		{map[string]int{"blue": 90, "green": 10}, map[string]int{"red": 50}, nil},
		{map[string]int{"blue": 100, "green": 0}, map[string]int{"green": 10}, nil},
		// Resetting a mirror with 0 is fine even once the deployment is live.
		{map[string]int{"blue": 50, "green": 50}, map[string]int{"green": 0}, nil},
		{map[string]int{"blue": 90}, nil, []string{"traffic: percentages must sum to 0 or 100 (got 90)"}},
		{map[string]int{"blue": 90, "green": 20}, nil, []string{"(got 110)"}},
		{map[string]int{"blue": 150, "green": -50}, nil, []string{"traffic.blue: must be between 0 and 100 (got 150)", "traffic.green: must be between 0 and 100 (got -50)"}},
		{map[string]int{"blue": 100}, map[string]int{"green": 51}, []string{"mirror_traffic.green: must be between 0 and 50 (got 51)"}},
		{map[string]int{"blue": 100}, map[string]int{"green": 10, "red": 10}, []string{"mirror_traffic: at most one deployment"}},
		{map[string]int{"blue": 100}, map[string]int{"blue": 10}, []string{`mirror_traffic.blue: deployment "blue" receives live traffic`}},
		{map[string]int{"b_lue": 100}, map[string]int{"9x": 10}, []string{"traffic.b_lue: is not a valid deployment name", "mirror_traffic.9x: is not a valid deployment name"}},
	} {
		err := ValidateTraffic(tc.traffic, tc.mirror)
		if tc.want == nil {
			if err != nil {
				t.Errorf("ValidateTraffic(%v, %v): %v", tc.traffic, tc.mirror, err)
			}
			continue
		}
		wantErr(t, err, tc.want...)
	}
}

func TestSets(t *testing.T) {
	d := mustDeployment(t, minimalDeployment, DecodeOptions{Sets: []string{
		"instance_count=2",
		"request_settings.request_timeout_ms=9000",
		"environment_variables.FOO=bar",
		"environment_variables.NUM=007",
		"tags.team=a=b",
		"model.path=other",
		"app_insights_enabled=true",
		"liveness_probe.period=3",
	}})
	if d.InstanceCount != 2 {
		t.Errorf("InstanceCount = %d; want 2", d.InstanceCount)
	}
	if d.RequestSettings.RequestTimeoutMS != 9000 || d.RequestSettings.MaxConcurrentRequestsPerInstance != 1 {
		t.Errorf("RequestSettings = %+v", d.RequestSettings)
	}
	if want := map[string]string{"FOO": "bar", "NUM": "007"}; !reflect.DeepEqual(d.EnvironmentVariables, want) {
		t.Errorf("EnvironmentVariables = %v; want %v", d.EnvironmentVariables, want)
	}
	if d.Tags["team"] != "a=b" || d.Model.Path != "other" || !d.AppInsightsEnabled || d.LivenessProbe.Period != 3 {
		t.Errorf("sets not applied: %s", jsonString(t, d))
	}

	// A set replaces an existing value and fills a null mapping.
	d = mustDeployment(t, minimalDeployment+"request_settings:\nenvironment_variables:\n  FOO: old\n", DecodeOptions{Sets: []string{
		"request_settings.request_timeout_ms=9000", "environment_variables.FOO=new",
	}})
	if d.RequestSettings.RequestTimeoutMS != 9000 || d.EnvironmentVariables["FOO"] != "new" {
		t.Errorf("sets not applied: %s", jsonString(t, d))
	}

	// Sets work on an empty file too.
	e, _, err := DecodeEndpoint(nil, DecodeOptions{Sets: []string{"name=my-endpoint", "traffic.blue=100", "auth_mode=aml_token"}})
	if err != nil {
		t.Fatal(err)
	}
	if e.Name != "my-endpoint" || e.Traffic["blue"] != 100 || e.AuthMode != AuthAMLToken {
		t.Errorf("sets not applied: %+v", e)
	}

	// Bad sets are reported together with the document's other problems.
	_, _, err = DecodeDeployment([]byte(minimalDeployment+"instance_type: nope\n"), DecodeOptions{Sets: []string{
		"instance_count",
		"=3",
		"name.first=x",
		"request_settings..request_timeout_ms=1",
		"request_settings.request_timeout_ms=soon",
	}})
	wantErr(t, err,
		`--set: "instance_count" is not path=value`,
		`--set: "=3" is not path=value`,
		`--set: "name.first=x": name is not a mapping`,
		"--set: \"request_settings..request_timeout_ms=1\": the path has an empty key",
		`request_settings.request_timeout_ms: must be an integer, got "soon"`,
		"instance_type (line 14): is given twice",
	)
	if n := len(err.(FieldErrors)); n != 6 {
		t.Errorf("got %d problems; want 6:\n%v", n, err)
	}
	// Unknown keys set on the command line are caught like those in files.
	_, _, err = DecodeDeployment([]byte(minimalDeployment), DecodeOptions{Sets: []string{"instance_cont=2"}})
	wantErr(t, err, `instance_cont: unknown key; did you mean "instance_count"?`)
}

func TestNameOverrides(t *testing.T) {
	d := mustDeployment(t, strings.Replace(minimalDeployment, "name: blue", "name: b_lue", 1),
		DecodeOptions{Name: "green", EndpointName: "other-endpoint"})
	if d.Name != "green" || d.EndpointName != "other-endpoint" {
		t.Errorf("name, endpoint_name = %q, %q", d.Name, d.EndpointName)
	}
	// The overrides are validated like file values.
	_, _, err := DecodeDeployment([]byte(minimalDeployment), DecodeOptions{Name: "x", EndpointName: "1e"})
	wantErr(t, err, "name: must be at least 3", "endpoint_name: must be at least 3")
	// endpoint_name may come from -e alone.
	yml := strings.Replace(minimalDeployment, "endpoint_name: my-endpoint\n", "", 1)
	if d := mustDeployment(t, yml, DecodeOptions{EndpointName: "my-endpoint"}); d.EndpointName != "my-endpoint" {
		t.Errorf("EndpointName = %q", d.EndpointName)
	}
	e, _, err := DecodeEndpoint([]byte("name: my-endpoint\n"), DecodeOptions{Name: "renamed"})
	if err != nil || e.Name != "renamed" {
		t.Errorf("endpoint name override: %v, %+v", err, e)
	}
	if _, _, err := DecodeEndpoint(nil, DecodeOptions{Name: "from-flag"}); err != nil {
		t.Errorf("empty file with -n: %v", err)
	}
}

func TestDecodeScalars(t *testing.T) {
	for _, tc := range []struct {
		count string
		want  int
		err   string
	}{
		{"3", 3, ""},
		{`"3"`, 3, ""},
		{"1_0", 10, ""},
		{"2.0", 2, ""},
		{"1e1", 10, ""},
		{"2.5", 0, `must be an integer, got "2.5"`},
		{"true", 0, `must be an integer, got "true"`},
		{"2147483648", 0, "must be an integer"},
		{"[1]", 0, "must be an integer, got a list"},
		{"{a: 1}", 0, "must be an integer, got a mapping"},
		{".nan", 0, "must be an integer"},
		{".inf", 0, "must be an integer"},
	} {
		yml := strings.Replace(minimalDeployment, "instance_count: 1", "instance_count: "+tc.count, 1)
		d, _, err := DecodeDeployment([]byte(yml), DecodeOptions{})
		if tc.err != "" {
			wantErr(t, err, "instance_count (line 13): "+tc.err)
			continue
		}
		if err != nil {
			t.Errorf("instance_count: %s: %v", tc.count, err)
		} else if d.InstanceCount != tc.want {
			t.Errorf("instance_count: %s = %d; want %d", tc.count, d.InstanceCount, tc.want)
		}
	}
	for in, want := range map[string]bool{"true": true, "True": true, "yes": true, "on": true, "false": false, "no": false, "'true'": true} {
		d := mustDeployment(t, minimalDeployment+"app_insights_enabled: "+in+"\n", DecodeOptions{})
		if d.AppInsightsEnabled != want {
			t.Errorf("app_insights_enabled: %s = %v", in, d.AppInsightsEnabled)
		}
	}
	// Scalars of any kind are strings where strings are expected.
	d := mustDeployment(t, minimalDeployment+"environment_variables: {A: 1, B: true, C: 1.5, D: ~, E: '0x1'}\n", DecodeOptions{})
	if want := map[string]string{"A": "1", "B": "true", "C": "1.5", "D": "", "E": "0x1"}; !reflect.DeepEqual(d.EnvironmentVariables, want) {
		t.Errorf("EnvironmentVariables = %v; want %v", d.EnvironmentVariables, want)
	}
}

func TestDecodeDocumentShapes(t *testing.T) {
	for _, in := range []string{"", "\n", "# only a comment\n", "---\n", "~\n", "---\n# comment\n"} {
		_, _, err := DecodeEndpoint([]byte(in), DecodeOptions{})
		wantErr(t, err, "name: is required")
		if n := len(err.(FieldErrors)); n != 1 {
			t.Errorf("%q: %d problems; want 1: %v", in, n, err)
		}
	}
	for in, want := range map[string]string{
		"- a\n- b\n":             "the document must be a mapping of keys to values, got a list",
		"42\n":                   "the document must be a mapping",
		"name: a\n---\n":         "more than one YAML document",
		"name: a\n...\n---\nx\n": "more than one YAML document",
		"name: [\n":              "invalid YAML",
		"\tname: x\n":            "invalid YAML",
		"name: *nope\n":          "invalid YAML",
		"? [a, b]\n: c\n":        "keys must be strings, got a list",
		"tags: {[a]: b}\n":       "tags (line 1): keys must be strings",
		"$schema: x\nname: my-endpoint\ntraffic: {$schema: 1}\n": "traffic.$schema: is not a valid deployment name",
	} {
		_, _, err := DecodeEndpoint([]byte(in), DecodeOptions{})
		wantErr(t, err, want)
	}
}

func TestAnchorsAndAliases(t *testing.T) {
	yml := `
name: blue
endpoint_name: my-endpoint
model: {path: model}
code_configuration: {code: code, scoring_script: score.py}
environment: {image: img, conda_file: conda.yaml}
instance_type: Standard_DS3_v2
instance_count: 1
liveness_probe: &probe
  period: 5
readiness_probe: *probe
tags: &tags {a: b}
properties: *tags
`
	d := mustDeployment(t, yml, DecodeOptions{})
	if d.ReadinessProbe.Period != 5 || d.LivenessProbe.Period != 5 || d.Properties["a"] != "b" {
		t.Errorf("aliases not followed: %s", jsonString(t, d))
	}
	if d.LivenessProbe == d.ReadinessProbe {
		t.Error("aliased probes share one Probe")
	}
	// A mapping that contains itself must not hang or crash.
	for _, in := range []string{
		"&a {name: *a}\n",
		"name: my-endpoint\ntags: &t {x: *t}\n",
		"name: my-endpoint\nidentity: {type: user_assigned, user_assigned_identities: [&i {r: *i}]}\n",
	} {
		_, _, err := DecodeEndpoint([]byte(in), DecodeOptions{})
		if err == nil {
			t.Errorf("%q: accepted", in)
		}
	}
}

func TestFreeFormValues(t *testing.T) {
	yml := minimalDeployment + `data_collector:
  sampling_rate: 0.5
  collections:
    model_inputs: {enabled: 'True', data: {version: 1}}
    1: {enabled: true}
  request_logging:
    capture_headers: [x-request-id, ~]
`
	d := mustDeployment(t, yml, DecodeOptions{})
	want := map[string]any{
		"sampling_rate": 0.5,
		"collections": map[string]any{
			"model_inputs": map[string]any{"enabled": "True", "data": map[string]any{"version": float64(1)}},
			"1":            map[string]any{"enabled": true},
		},
		"request_logging": map[string]any{"capture_headers": []any{"x-request-id", nil}},
	}
	if !reflect.DeepEqual(d.DataCollector, want) {
		t.Errorf("DataCollector = %#v\nwant %#v", d.DataCollector, want)
	}
	_, _, err := DecodeDeployment([]byte(minimalDeployment+"data_collector: {sampling_rate: .nan, x: [.inf]}\n"), DecodeOptions{})
	wantErr(t, err, "data_collector.sampling_rate (line 14): holds NaN", "data_collector.x (line 14): holds +Inf")
}

func TestJSONRoundTrip(t *testing.T) {
	for _, name := range fixtures(t, "good") {
		t.Run(name, func(t *testing.T) {
			v, _, err := decodeFixture(t, name, DecodeOptions{BaseDir: "/base"})
			if err != nil {
				t.Fatal(err)
			}
			checkRoundTrip(t, v)
		})
	}
	// Both forms of model and environment.
	for _, d := range []*Deployment{
		{Name: "a", Model: &Model{Ref: "azureml:m:1"}, Environment: &Environment{Ref: "azureml:e:1"}},
		{Name: "a", Model: &Model{Name: "m", Version: "1", Path: "/p", Type: "custom_model", Description: "d"},
			Environment: &Environment{Image: "img", CondaFile: "c.yaml", Build: &Build{Path: "ctx"},
				InferenceConfig: &InferenceConfig{ScoringRoute: &Route{Port: 1, Path: "/"}}, Tags: map[string]string{"a": "b"}}},
		{Name: "a", Model: &Model{}, Environment: &Environment{}},
	} {
		checkRoundTrip(t, d)
	}
	b, err := json.Marshal(&Deployment{Model: &Model{Ref: "azureml:m:1"}, Environment: &Environment{Ref: "azureml:e:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if s := string(b); !strings.Contains(s, `"model":"azureml:m:1"`) || !strings.Contains(s, `"environment":"azureml:e:1"`) {
		t.Errorf("references not written as strings: %s", s)
	}
	var m Model
	if err := json.Unmarshal([]byte(`{"path":"/p"}`), &m); err != nil || m != (Model{Path: "/p"}) {
		t.Errorf("object form: %+v, %v", m, err)
	}
	m = Model{Path: "stale"}
	if err := json.Unmarshal([]byte(`"azureml:m:2"`), &m); err != nil || m != (Model{Ref: "azureml:m:2"}) {
		t.Errorf("string form: %+v, %v", m, err)
	}
}

// checkRoundTrip checks that v (a *Deployment or *Endpoint) survives
// json.Marshal and json.Unmarshal unchanged and still validates.
func checkRoundTrip(t *testing.T, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	back := reflect.New(reflect.TypeOf(v).Elem()).Interface()
	if err := json.Unmarshal(b, back); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	if !reflect.DeepEqual(v, back) {
		t.Errorf("round trip changed the spec:\n got %s\nwant %s", jsonString(t, back), b)
	}
	b2, err := json.Marshal(back)
	if err != nil || string(b2) != string(b) {
		t.Errorf("second marshal differs: %s\n%s (%v)", b2, b, err)
	}
}

func TestFieldErrorsText(t *testing.T) {
	for _, tc := range []struct {
		errs FieldErrors
		want string
	}{
		{FieldErrors{{Path: "a.b", Message: "bad"}}, "a.b: bad"},
		{FieldErrors{{Path: "a", Line: 3, Message: "bad"}}, "a (line 3): bad"},
		{FieldErrors{{Line: 3, Message: "bad"}}, "line 3: bad"},
		{FieldErrors{{Message: "bad"}}, "bad"},
		{FieldErrors{{Path: "a", Message: "x"}, {Path: "b", Line: 2, Message: "y"}}, "2 problems:\n  - a: x\n  - b (line 2): y"},
	} {
		if got := tc.errs.Error(); got != tc.want {
			t.Errorf("Error() = %q; want %q", got, tc.want)
		}
	}
	b, err := json.Marshal(FieldError{Path: "name", Line: 2, Message: "m"})
	if err != nil || string(b) != `{"field":"name","line":2,"message":"m"}` {
		t.Errorf("FieldError JSON = %s, %v", b, err)
	}
}

func TestValidateWithoutDecode(t *testing.T) {
	// Specs that arrive as JSON (the API) go through Default and Validate.
	var d Deployment
	if err := json.Unmarshal([]byte(`{"name":"blue","endpoint_name":"ep1","model":{"path":"/m"},"code_configuration":{"code":"/c","scoring_script":"s.py"},"environment":{"image":"i"},"instance_type":"Standard_DS3_v2","instance_count":1}`), &d); err != nil {
		t.Fatal(err)
	}
	d.Default()
	if err := d.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	var e Endpoint
	if err := json.Unmarshal([]byte(`{"name":"ep1","auth_mode":"Key","mirror_traffic":{}}`), &e); err != nil {
		t.Fatal(err)
	}
	e.Default()
	if err := e.Validate(); err != nil || e.AuthMode != AuthKey || e.MirrorTraffic != nil {
		t.Errorf("endpoint: %+v, %v", e, err)
	}
	if err := (&Endpoint{Name: "ep1", AuthMode: AuthKey, Identity: &Identity{}}).Validate(); err == nil ||
		!strings.Contains(err.Error(), "identity.type: is required") {
		t.Errorf("identity without type: %v", err)
	}
}

func TestPassModelStatus(t *testing.T) {
	for v, want := range map[string]bool{"true": true, "True": true, "false": false, "": false, "1": false} {
		e := &Endpoint{Properties: map[string]string{PropPassModelStatus: v}}
		if got := e.PassModelStatus(); got != want {
			t.Errorf("PassModelStatus(%q) = %v", v, got)
		}
	}
}

func jsonString(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
