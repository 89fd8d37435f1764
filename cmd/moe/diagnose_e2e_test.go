package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moe-serving/moe/internal/diagnose"
	"github.com/moe-serving/moe/internal/moetest"
)

// TestDiagnoseSeededFailures deploys broken deployments on a real server
// and checks that diagnose names each cause and its fix.
func TestDiagnoseSeededFailures(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	python := moetest.Python(t)
	proj := project(t, python)
	srv := moetest.Start(t, t.TempDir(), "--python", python)
	srv.MustCLI("online-endpoint", "create", "-f", filepath.Join(proj, "yaml", "endpoint.yml"))
	w := func(p, s string) { moetest.WriteFile(t, filepath.Join(proj, p), s) }
	w("code/nomodule/score.py", "import lightgbm\n\ndef init():\n    pass\n\ndef run(raw):\n    return 1\n")
	w("code/wrongpath/score.py", "import os, joblib\n\ndef init():\n    joblib.load(os.path.join(os.environ['AZUREML_MODEL_DIR'], 'sklearn_regression_model.pkl'))\n\ndef run(raw):\n    return 1\n")
	w("code/initexc/score.py", "def init():\n    raise KeyError('MODEL_VERSION')\n\ndef run(raw):\n    return 1\n")
	w("env/tf.yml", "dependencies:\n  - python=3.11\n  - tensorflow\n")
	deploy := func(name, code, conda string) {
		w("yaml/"+name+".yml", deploymentYAML(name, code, conda, ""))
		if _, errOut, code := srv.CLI("online-deployment", "create", "-f", filepath.Join(proj, "yaml", name+".yml")); code == 0 {
			t.Fatalf("%s: deployment succeeded, want a failure:\n%s", name, errOut)
		}
	}
	for _, tc := range []struct {
		name, code, conda string
		step, cause, fix  string
	}{
		{"nomodule", "nomodule", "conda.yml", diagnose.StepInit, `imports "lightgbm"`, "conda file"},
		{"wrongpath", "wrongpath", "conda.yml", diagnose.StepInit, `"sklearn_regression_model.pkl" (relative to AZUREML_MODEL_DIR) is not in the model snapshot`, `"model/sklearn_regression_model.pkl"`},
		{"initexc", "initexc", "conda.yml", diagnose.StepInit, "KeyError: 'MODEL_VERSION'", "fix init()"},
		{"missingpkg", "blue", "tf.yml", diagnose.StepEnvironment, "tensorflow", "apt-get install"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			deploy(tc.name, tc.code, tc.conda)
			var rep diagnose.Report
			out := srv.MustCLI("online-deployment", "diagnose", "-n", tc.name, "-e", "my-endpoint", "-o", "json")
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatal(err)
			}
			if len(rep.Findings) == 0 {
				t.Fatalf("no finding:\n%s", out)
			}
			f := rep.Findings[0]
			if f.Step != tc.step || !strings.Contains(f.Cause, tc.cause) || !strings.Contains(f.Fix, tc.fix) {
				t.Errorf("finding = %+v\nwant step %s, cause ~ %q, fix ~ %q", f, tc.step, tc.cause, tc.fix)
			}
			text := srv.MustCLI("online-deployment", "diagnose", "-n", tc.name, "-e", "my-endpoint")
			if !strings.Contains(text, "Fix:") {
				t.Errorf("text report:\n%s", text)
			}
		})
	}
}
