package spec

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// decodeFixture decodes testdata/name as an endpoint or a deployment,
// depending on its name's prefix.
func decodeFixture(t *testing.T, name string, opts DecodeOptions) (any, []Notice, error) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case strings.HasPrefix(name, "endpoint-"):
		e, ns, err := DecodeEndpoint(data, opts)
		return e, ns, err
	case strings.HasPrefix(name, "deployment-"):
		d, ns, err := DecodeDeployment(data, opts)
		return d, ns, err
	}
	t.Fatalf("%s: fixture names start with endpoint- or deployment-", name)
	return nil, nil, nil
}

// fixtures lists testdata/*.<kind>.yml.
func fixtures(t *testing.T, kind string) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "*."+kind+".yml"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range paths {
		names = append(names, filepath.Base(p))
	}
	return names
}

// checkCovered fails when the table and the folder do not list the same
// files, so a new fixture cannot go untested.
func checkCovered[V any](t *testing.T, kind string, table map[string]V) {
	t.Helper()
	files := fixtures(t, kind)
	for _, f := range files {
		if _, ok := table[f]; !ok {
			t.Errorf("testdata/%s has no entry in the table", f)
		}
	}
	for f := range table {
		if !slices.Contains(files, f) {
			t.Errorf("table entry %s has no file in testdata", f)
		}
	}
}

func TestGoodFixtures(t *testing.T) {
	// Each good file with the paths of the notices it must produce, sorted.
	table := map[string][]string{
		"endpoint-sample.good.yml":                 nil,
		"endpoint-kubernetes.good.yml":             {"compute"},
		"endpoint-identity.good.yml":               {"identity", "public_network_access"},
		"endpoint-traffic.good.yml":                nil,
		"endpoint-traffic-zero.good.yml":           nil,
		"endpoint-name-3.good.yml":                 nil,
		"endpoint-name-32.good.yml":                nil,
		"deployment-blue.good.yml":                 {"environment.image"},
		"deployment-green.good.yml":                {"environment.image"},
		"deployment-kubernetes.good.yml":           {"environment.image", "request_settings.max_queue_wait_ms"},
		"deployment-build.good.yml":                {"environment.build"},
		"deployment-registered-env.good.yml":       {"environment"},
		"deployment-kubernetes-autoscale.good.yml": {"environment.image"},
		"deployment-custom-container.good.yml":     {"environment.image", "model_mount_path"},
		"deployment-azure-extras.good.yml": {
			"app_insights_enabled", "data_collector", "egress_public_network_access",
			"environment.image", "private_network_connection",
		},
	}
	checkCovered(t, "good", table)
	for name, wantNotices := range table {
		t.Run(name, func(t *testing.T) {
			_, ns, err := decodeFixture(t, name, DecodeOptions{})
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			var got []string
			for _, n := range ns {
				got = append(got, n.Path)
				if n.Message == "" {
					t.Errorf("notice %s has no message", n.Path)
				}
			}
			sort.Strings(got)
			if !slices.Equal(got, wantNotices) {
				t.Errorf("notices = %q; want %q", got, wantNotices)
			}
		})
	}
}

func TestBadFixtures(t *testing.T) {
	// Each bad file with one expected substring per problem: the file must
	// yield exactly that many problems, all at once. whole marks problems
	// with the document as a whole, which have no field path.
	type want struct {
		errs  []string
		whole bool
	}
	table := map[string]want{
		"endpoint-name-short.bad.yml":      {errs: []string{"name: must be at least 3 and at most 32 characters long (got 2)"}},
		"endpoint-name-long.bad.yml":       {errs: []string{"name: must be at least 3 and at most 32 characters long (got 33)"}},
		"endpoint-name-digit.bad.yml":      {errs: []string{"name: must start with an upper- or lowercase letter"}},
		"endpoint-name-dash.bad.yml":       {errs: []string{"name: must start with an upper- or lowercase letter"}},
		"endpoint-name-underscore.bad.yml": {errs: []string{"name: must start with an upper- or lowercase letter and only consist of '-'s and alphanumeric characters"}},
		"endpoint-unknown-key.bad.yml":     {errs: []string{`auth_mod (line 3): unknown key; did you mean "auth_mode"?`}},
		"endpoint-traffic-sum.bad.yml":     {errs: []string{"traffic: percentages must sum to 0 or 100 (got 90)"}},
		"endpoint-mirror.bad.yml": {errs: []string{
			"mirror_traffic: at most one deployment can receive mirrored traffic (got 2)",
			`mirror_traffic.blue: deployment "blue" receives live traffic`,
			"mirror_traffic.green: must be between 0 and 50 (got 60)",
		}},
		"endpoint-three-problems.bad.yml": {errs: []string{
			"name: must start with an upper- or lowercase letter",
			`auth_mode: must be one of key, aml_token, aad_token (got "password")`,
			"traffic: percentages must sum to 0 or 100 (got 50)",
		}},
		"endpoint-wrong-types.bad.yml": {errs: []string{
			"name (line 1): must be a string, got a list",
			"tags (line 3): must be a mapping, got a list",
			`traffic.blue (line 6): must be an integer, got "lots"`,
		}},
		"endpoint-duplicate.bad.yml": {errs: []string{
			"name (line 2): is given twice",
			"traffic.blue (line 5): is given twice",
		}},
		"endpoint-multidoc.bad.yml":     {errs: []string{"line 2: the file holds more than one YAML document"}, whole: true},
		"endpoint-empty.bad.yml":        {errs: []string{"name: is required"}},
		"endpoint-scalar.bad.yml":       {errs: []string{`the document must be a mapping of keys to values, got "just a string"`}, whole: true},
		"endpoint-invalid-yaml.bad.yml": {errs: []string{"invalid YAML: line 1:"}, whole: true},
		"endpoint-identity.bad.yml": {errs: []string{
			"identity.user_assigned_identities: is required when identity.type is user_assigned",
			`public_network_access: must be enabled or disabled (got "private")`,
		}},

		"deployment-registered-model.bad.yml": {errs: []string{`model: registered model "azureml:m:1" cannot be resolved: moe has no model registry; use an inline model with model.path`}},
		"deployment-probes.bad.yml": {errs: []string{
			`liveness_probe.period (line 15): must be an integer, got "ten"`,
			"liveness_probe.success_threshold: must be 1 for liveness probes (got 2)",
			"readiness_probe.timeout: must be at least 1 (got -1)",
		}},
		"deployment-timeout.bad.yml": {errs: []string{
			"request_settings.request_timeout_ms: must be between 1 and 180000 (got 180001)",
			"request_settings.max_concurrent_requests_per_instance: must be between 1 and 1000 (got 1001)",
			"request_settings.max_queue_wait_ms: must not be negative",
		}},
		"deployment-kubernetes-timeout.bad.yml": {errs: []string{"request_settings.request_timeout_ms: must be between 1 and 300000 (got 300001)"}},
		"deployment-instance-type.bad.yml": {errs: []string{
			`instance_type: unknown instance type "Standard_Nope_v9"`,
			"instance_count: must be between 1 and 50 (got 51)",
			`egress_public_network_access: must be enabled or disabled (got "closed")`,
		}},
		"deployment-unknown-key.bad.yml": {errs: []string{
			`code_configuration.scoring_scrpt (line 7): unknown key; did you mean "scoring_script"?`,
			`instance_typ (line 10): unknown key; did you mean "instance_type"?`,
			"code_configuration.scoring_script: is required",
			"instance_type: is required",
		}},
		"deployment-wrong-types.bad.yml": {errs: []string{
			`instance_count (line 12): must be an integer, got "one"`,
			"environment_variables (line 14): must be a mapping, got a list",
			`request_settings (line 15): must be a mapping, got "5"`,
			`app_insights_enabled (line 16): must be true or false, got "maybe"`,
		}},
		"deployment-duplicate.bad.yml": {errs: []string{
			"instance_count (line 13): is given twice",
			"environment_variables.FOO (line 16): is given twice",
		}},
		"deployment-missing.bad.yml": {errs: []string{
			"endpoint_name: is required",
			"model: is required",
			"code_configuration: is required",
			"environment: is required",
			"instance_type: is required",
			"instance_count: must be between 1 and 50 (got 0)",
		}},
		"deployment-names.bad.yml": {errs: []string{
			"endpoint_name: must start with an upper- or lowercase letter",
			"name: must start with an upper- or lowercase letter and only consist of '-'s and alphanumeric characters (deployment names",
		}},
		"deployment-kubernetes-names.bad.yml": {errs: []string{"name: with endpoint_name must be at most 62 characters long for kubernetes deployments (got 64)"}},
		"deployment-scale.bad.yml": {errs: []string{
			"scale_settings.max_instances: must be between min_instances (3) and 50 (got 2)",
		}},
		"deployment-code.bad.yml": {errs: []string{
			`code_configuration.code: registered code "azureml:code:1" cannot be resolved`,
			`code_configuration.scoring_script: must be a path inside the code folder (got "../score.py")`,
			`environment: must be a mapping with image and conda_file, or an azureml: reference (got "my-env")`,
			"model.path: is required for an inline model",
		}},
		"deployment-environment.bad.yml": {errs: []string{
			"environment.image: is required",
			"environment_variables.1BAD: is not a valid environment variable name",
		}},
		"deployment-custom-container.bad.yml": {errs: []string{
			"environment: image and build are mutually exclusive",
			`environment.inference_config.liveness_route.path: must start with / (got "v1/models/half_plus_two")`,
			"environment.inference_config.liveness_route.port: must be between 1 and 65535 (got 70000)",
			"environment.inference_config.readiness_route: is required with inference_config",
		}},
		"deployment-multidoc.bad.yml":         {errs: []string{"line 13: the file holds more than one YAML document"}, whole: true},
		"deployment-trailing-garbage.bad.yml": {errs: []string{"invalid YAML after the first document"}, whole: true},
	}
	checkCovered(t, "bad", table)
	for name, w := range table {
		t.Run(name, func(t *testing.T) {
			v, ns, err := decodeFixture(t, name, DecodeOptions{})
			if err == nil {
				t.Fatalf("decode succeeded: %+v", v)
			}
			if ns != nil {
				t.Errorf("notices %v returned with an error", ns)
			}
			var fes FieldErrors
			if !errors.As(err, &fes) {
				t.Fatalf("error %T is not FieldErrors: %v", err, err)
			}
			if len(fes) != len(w.errs) {
				t.Errorf("got %d problems, want %d:\n%v", len(fes), len(w.errs), err)
			}
			for _, fe := range fes {
				if fe.Path == "" && !w.whole {
					t.Errorf("problem without a field path: %v", fe)
				}
			}
			// Match each expected substring to a distinct problem.
			used := make([]bool, len(fes))
			for _, sub := range w.errs {
				found := false
				for i, fe := range fes {
					if !used[i] && strings.Contains(fe.Error(), sub) {
						used[i], found = true, true
						break
					}
				}
				if !found {
					t.Errorf("no problem contains %q in:\n%v", sub, err)
				}
			}
		})
	}
}
