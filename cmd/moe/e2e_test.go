package main

// End-to-end tests of issue 2: a real `moe serve` process, real model host
// processes and real /usr/bin/python3 workers running scikit-learn, scored
// over TLS through the gateway.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moe-serving/moe/internal/moetest"
)

const sampleRequest = `{"data": [[1,2,3,4,5,6,7,8,9,10],[10,9,8,7,6,5,4,3,2,1]]}`

// project writes a user's project: a trained model, scoring scripts and
// YAML files that use relative paths (resolved against the YAML's folder).
func project(t *testing.T, python string) string {
	dir := t.TempDir()
	moetest.TrainModel(t, python, dir)
	w := func(p, s string) { moetest.WriteFile(t, filepath.Join(dir, p), s) }
	w("code/blue/score.py", moetest.ScoreScript)
	w("code/green/score.py", "def init():\n    pass\n\ndef run(raw):\n    return [0.5, 0.5]\n")
	w("code/badinit/score.py", "import os\n\ndef init():\n    raise ValueError('model file not found: ' + os.path.join(os.environ['AZUREML_MODEL_DIR'], 'nope.pkl'))\n\ndef run(raw):\n    return 1\n")
	w("code/runerror/score.py", "def init():\n    pass\n\ndef run(raw):\n    raise RuntimeError('boom in run')\n")
	w("env/conda.yml", "name: env\ndependencies:\n  - python=3.11\n  - numpy\n  - scikit-learn\n  - pip:\n    - azureml-defaults\n    - joblib\n")
	w("yaml/endpoint.yml", "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json\nname: my-endpoint\nauth_mode: key\n")
	w("yaml/passthrough.yml", "name: pass-endpoint\nauth_mode: key\nproperties:\n  moe.pass_model_status: \"true\"\n")
	for _, d := range []string{"blue", "green", "badinit", "runerror"} {
		w("yaml/"+d+".yml", "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json\n"+deploymentYAML(d, d, "conda.yml", ""))
	}
	return dir
}

// deploymentYAML is a deployment of the test project's model on
// endpoint my-endpoint with the scoring code in code/<code>/ and the conda
// file env/<conda>; extra is more YAML (request_settings, scale_settings...).
func deploymentYAML(name, code, conda, extra string) string {
	return fmt.Sprintf(`name: %s
endpoint_name: my-endpoint
model:
  path: ../model/
code_configuration:
  code: ../code/%s/
  scoring_script: score.py
environment:
  conda_file: ../env/%s
  image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest
instance_type: Standard_DS3_v2
instance_count: 1
%s`, name, code, conda, extra)
}

// expected computes run()'s answer with Python itself, to compare bytes.
func expected(t *testing.T, python, dir string) string {
	script := `import sys, json, joblib, numpy
m = joblib.load(sys.argv[1])
print(json.dumps(m.predict(numpy.array(json.loads(sys.argv[2])["data"])).tolist()))`
	out, err := exec.Command(python, "-c", script, filepath.Join(dir, "model", "sklearn_regression_model.pkl"), sampleRequest).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: starts moe serve and Python workers")
	}
	python := moetest.Python(t)
	proj := project(t, python)
	want := expected(t, python, proj)
	dataDir := t.TempDir()
	srv := moetest.Start(t, dataDir, "--python", python)
	y := func(name string) string { return filepath.Join(proj, "yaml", name+".yml") }

	var ep struct {
		Name, AuthMode, ScoringURI, ProvisioningState string
		Traffic                                       map[string]int
	}
	out := srv.MustCLI("online-endpoint", "create", "-f", y("endpoint"))
	if err := json.Unmarshal([]byte(out), &ep); err != nil {
		t.Fatalf("create output is not JSON: %v\n%s", err, out)
	}
	// the CLI prints snake_case like az ml; decode by hand to check the names
	var raw map[string]any
	json.Unmarshal([]byte(out), &raw)
	for _, k := range []string{"auth_mode", "scoring_uri", "provisioning_state", "traffic", "openapi_uri", "location"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("endpoint show lacks %q: %s", k, out)
		}
	}
	if raw["scoring_uri"] != srv.ScoringURL("my-endpoint") {
		t.Errorf("scoring_uri = %v, want %s", raw["scoring_uri"], srv.ScoringURL("my-endpoint"))
	}

	start := time.Now()
	_, progressOut, code := srv.CLI("online-deployment", "create", "-f", y("blue"), "--all-traffic")
	if code != 0 {
		t.Fatalf("create blue: exit %d\n%s", code, progressOut)
	}
	t.Logf("blue created and ready in %s", time.Since(start))
	// not a terminal: the progress display is plain lines, one per step
	for _, step := range []string{"model snapshot", "environment ready", "starting model host", "Succeeded: 1/1 instances ready"} {
		if !strings.Contains(progressOut, step) {
			t.Errorf("create progress lacks %q:\n%s", step, progressOut)
		}
	}
	primary, secondary := srv.Keys("my-endpoint")
	url := srv.ScoringURL("my-endpoint")

	t.Run("InvokeCLI", func(t *testing.T) {
		reqFile := filepath.Join(proj, "sample-request.json")
		moetest.WriteFile(t, reqFile, sampleRequest)
		if got := strings.TrimSpace(srv.MustCLI("online-endpoint", "invoke", "-n", "my-endpoint", "--request-file", reqFile)); got != want {
			t.Errorf("invoke = %s, want %s (byte for byte, as Python's json.dumps)", got, want)
		}
	})
	t.Run("ScoreWithKeys", func(t *testing.T) {
		for name, key := range map[string]string{"primary": primary, "secondary": secondary} {
			resp, body := srv.Score(url, key, []byte(sampleRequest))
			if resp.StatusCode != 200 || string(body) != want {
				t.Errorf("%s key: %d %s, want 200 %s", name, resp.StatusCode, body, want)
			}
			if got := resp.Header.Get("azureml-model-deployment"); got != "blue" {
				t.Errorf("azureml-model-deployment = %q, want blue", got)
			}
			if resp.Header.Get("x-request-id") == "" || resp.Header.Get("x-ms-run-fn-exec-ms") == "" {
				t.Errorf("missing request id / exec time headers: %v", resp.Header)
			}
		}
		// path routing for clients without wildcard DNS
		pathURL := "https://" + srv.Gateway + "/endpoints/my-endpoint/score"
		if resp, body := srv.Score(pathURL, primary, []byte(sampleRequest)); resp.StatusCode != 200 || string(body) != want {
			t.Errorf("path-routed: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("Unauthorized", func(t *testing.T) {
		for name, key := range map[string]string{"none": "", "wrong": "not-the-key-at-all-0123456789", "truncated": primary[:len(primary)-1]} {
			if resp, body := srv.Score(url, key, []byte(sampleRequest)); resp.StatusCode != 401 {
				t.Errorf("%s key: %d %s, want 401", name, resp.StatusCode, body)
			}
		}
	})
	t.Run("UnknownEndpoint", func(t *testing.T) {
		if resp, _ := srv.Score(srv.ScoringURL("no-such-endpoint"), primary, []byte(sampleRequest)); resp.StatusCode != 404 {
			t.Errorf("unknown endpoint: %d, want 404", resp.StatusCode)
		}
	})

	srv.MustCLI("online-deployment", "create", "-f", y("green"))
	t.Run("HeaderTargetsZeroPercentDeployment", func(t *testing.T) {
		resp, body := srv.Score(url, primary, []byte(sampleRequest), "azureml-model-deployment", "green")
		if resp.StatusCode != 200 || string(body) != "[0.5, 0.5]" || resp.Header.Get("azureml-model-deployment") != "green" {
			t.Errorf("green by header: %d %s %v", resp.StatusCode, body, resp.Header.Get("azureml-model-deployment"))
		}
		for range 20 {
			if resp, _ := srv.Score(url, primary, []byte(sampleRequest)); resp.Header.Get("azureml-model-deployment") != "blue" {
				t.Fatalf("a 0%% deployment got unnamed traffic")
			}
		}
		show := srv.MustCLI("online-endpoint", "show", "-n", "my-endpoint")
		json.Unmarshal([]byte(show), &ep)
		if ep.Traffic["blue"] != 100 || ep.Traffic["green"] != 0 {
			t.Errorf("show traffic = %v, want blue 100 green 0", ep.Traffic)
		}
	})
	t.Run("TrafficSplit", func(t *testing.T) {
		srv.MustCLI("online-endpoint", "update", "-n", "my-endpoint", "--traffic", "blue=70 green=30")
		counts := map[string]int{}
		const n = 400
		for range n {
			resp, _ := srv.Score(url, primary, []byte(sampleRequest))
			if resp.StatusCode != 200 {
				t.Fatalf("status %d during split", resp.StatusCode)
			}
			counts[resp.Header.Get("azureml-model-deployment")]++
		}
		// 30% of 400 = 120; binomial sd ≈ 9.2, so ±4.5 sd is [79, 161]
		if g := counts["green"]; g < 79 || g > 161 || counts["blue"]+g != n {
			t.Errorf("split over %d requests = %v, want about 70/30", n, counts)
		}
		srv.MustCLI("online-endpoint", "update", "-n", "my-endpoint", "--traffic", "blue=100 green=0")
	})
	t.Run("RunExceptionIs500From424", func(t *testing.T) {
		srv.MustCLI("online-deployment", "create", "-f", y("runerror"))
		resp, body := srv.Score(url, primary, []byte(sampleRequest), "azureml-model-deployment", "runerror")
		if resp.StatusCode != 424 || resp.Header.Get("ms-azureml-model-error-statuscode") != "500" {
			t.Errorf("run() exception through the gateway: %d (model status %q), want 424 with model status 500", resp.StatusCode, resp.Header.Get("ms-azureml-model-error-statuscode"))
		}
		if !strings.Contains(string(body), "An unexpected error occurred in scoring script") || resp.Header.Get("x-ms-run-function-failed") != "True" {
			t.Errorf("model body/headers not passed through: %s %v", body, resp.Header)
		}
		logs := srv.MustCLI("online-deployment", "get-logs", "-n", "runerror", "-e", "my-endpoint")
		if !strings.Contains(logs, "boom in run") || !strings.Contains(logs, "Traceback") {
			t.Errorf("run() traceback not in get-logs:\n%s", logs)
		}
	})
	t.Run("PassModelStatus", func(t *testing.T) {
		srv.MustCLI("online-endpoint", "create", "-f", y("passthrough"))
		srv.MustCLI("online-deployment", "create", "-f", y("runerror"), "-e", "pass-endpoint", "--all-traffic")
		p, _ := srv.Keys("pass-endpoint")
		resp, body := srv.Score(srv.ScoringURL("pass-endpoint"), p, []byte(sampleRequest))
		if resp.StatusCode != 500 || resp.Header.Get("x-ms-run-function-failed") != "True" ||
			!strings.Contains(string(body), `"message": "An unexpected error occurred in scoring script. Check the logs for more info."`) {
			t.Errorf("pass-through: %d %s %v", resp.StatusCode, body, resp.Header)
		}
	})
	t.Run("FailingInitGivesFailedDeploymentWithTraceback", func(t *testing.T) {
		_, errOut, code := srv.CLI("online-deployment", "create", "-f", y("badinit"))
		if code == 0 || !strings.Contains(errOut, "model file not found") {
			t.Errorf("create with failing init(): exit %d, stderr:\n%s", code, errOut)
		}
		var d struct {
			ProvisioningState string `json:"provisioning_state"`
			Error             string `json:"error"`
		}
		json.Unmarshal([]byte(srv.MustCLI("online-deployment", "show", "-n", "badinit", "-e", "my-endpoint")), &d)
		if d.ProvisioningState != "Failed" || !strings.Contains(d.Error, "ValueError") {
			t.Errorf("show = %+v, want Failed naming ValueError", d)
		}
		logs := srv.MustCLI("online-deployment", "get-logs", "-n", "badinit", "-e", "my-endpoint", "--lines", "200")
		if !strings.Contains(logs, "Traceback") || !strings.Contains(logs, "ValueError: model file not found") {
			t.Errorf("get-logs lacks the traceback:\n%s", logs)
		}
		prov := srv.MustCLI("online-deployment", "get-logs", "-n", "badinit", "-e", "my-endpoint", "--container", "storage-initializer")
		if !strings.Contains(prov, "model snapshot") {
			t.Errorf("storage-initializer log:\n%s", prov)
		}
	})
	t.Run("FailedUpdateKeepsPreviousVersionServing", func(t *testing.T) {
		_, _, code := srv.CLI("online-deployment", "update", "-f", y("badinit"), "-n", "blue")
		if code == 0 {
			t.Fatal("update to a failing init() succeeded")
		}
		var d struct {
			ProvisioningState string `json:"provisioning_state"`
			Error             string `json:"error"`
		}
		json.Unmarshal([]byte(srv.MustCLI("online-deployment", "show", "-n", "blue", "-e", "my-endpoint")), &d)
		if d.ProvisioningState != "Failed" || !strings.Contains(d.Error, "previous version keeps serving") {
			t.Errorf("show after failed update = %+v", d)
		}
		for range 10 {
			if resp, body := srv.Score(url, primary, []byte(sampleRequest)); resp.StatusCode != 200 || string(body) != want {
				t.Fatalf("blue stopped serving its previous version: %d %s", resp.StatusCode, body)
			}
		}
		// a good update recovers
		srv.MustCLI("online-deployment", "update", "-f", y("blue"))
	})
	t.Run("SnapshotIsolatedFromLaterEdits", func(t *testing.T) {
		moetest.WriteFile(t, filepath.Join(proj, "code", "blue", "score.py"), "def init():\n    pass\n\ndef run(raw):\n    return 'edited'\n")
		if resp, body := srv.Score(url, primary, []byte(sampleRequest)); string(body) != want {
			t.Errorf("editing the user's files changed the running deployment: %d %s", resp.StatusCode, body)
		}
		moetest.WriteFile(t, filepath.Join(proj, "code", "blue", "score.py"), moetest.ScoreScript)
	})

	t.Run("RestartKeepsEverything", func(t *testing.T) {
		srv.Stop()
		srv2 := moetest.Start(t, dataDir, "--python", python)
		url2 := srv2.ScoringURL("my-endpoint")
		p2, s2 := srv2.Keys("my-endpoint")
		if p2 != primary || s2 != secondary {
			t.Error("keys changed across a restart")
		}
		waitServing(t, srv2, url2, primary, want)
		var e struct{ Traffic map[string]int }
		json.Unmarshal([]byte(srv2.MustCLI("online-endpoint", "show", "-n", "my-endpoint")), &e)
		if e.Traffic["blue"] != 100 {
			t.Errorf("traffic after restart = %v", e.Traffic)
		}
		if resp, body := srv2.Score(url2, primary, []byte(sampleRequest), "azureml-model-deployment", "green"); resp.StatusCode != 200 || string(body) != "[0.5, 0.5]" {
			t.Errorf("green after restart: %d %s", resp.StatusCode, body)
		}

		// kill -9 loses nothing either
		srv2.Kill()
		srv3 := moetest.Start(t, dataDir, "--python", python)
		waitServing(t, srv3, srv3.ScoringURL("my-endpoint"), primary, want)
		var d struct {
			Instances []struct {
				Adopted bool   `json:"adopted"`
				State   string `json:"state"`
			} `json:"instances"`
		}
		json.Unmarshal([]byte(srv3.MustCLI("online-deployment", "show", "-n", "blue", "-e", "my-endpoint")), &d)
		if len(d.Instances) != 1 || !d.Instances[0].Adopted || d.Instances[0].State != "Ready" {
			t.Errorf("after kill -9 the running instance should be adopted, not restarted: %+v", d.Instances)
		}
	})
}

// waitServing waits until an endpoint answers 200 with want.
func waitServing(t *testing.T, srv *moetest.Server, url, key, want string) {
	t.Helper()
	start := time.Now()
	for time.Since(start) < 30*time.Second {
		resp, body := srv.Score(url, key, []byte(sampleRequest))
		if resp.StatusCode == http.StatusOK && string(body) == want {
			t.Logf("serving again %s after start", time.Since(start).Round(time.Millisecond))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("not serving within 30s after restart")
}

func runCmd(bin string, args ...string) (string, error) {
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}
