package main

// End-to-end test of issue 6 (`moe upgrade`): a v1-style ACI service (its
// service document, listKeys answer and the artifacts a user downloads from
// the old workspace, with a scikit-learn model trained here) is planned,
// refused when it must be, applied to a real `moe serve` process and
// verified against a real "old" v1 scoring server. The old server is a
// Python stdlib HTTP server on 127.0.0.1 that runs the same score.py the way
// a v1 container did: init() once, run(raw body as str) per request,
// json.dumps of the result, GET / → Healthy, and Bearer key auth with the
// service's primary or secondary key. Everything stays on loopback.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moe-serving/moe/internal/moetest"
)

const (
	v1ServiceName  = "sklearn-aci"
	v1PrimaryKey   = "v1PrimaryKey-0123456789abcdefABCDEF"
	v1SecondaryKey = "v1SecondaryKey-fedcba9876543210FEDCBA"
)

// v1ScoreScript is the Azure sample's score.py as v1 services ran it: a
// model registered as a single file sits directly under AZUREML_MODEL_DIR
// (azureml-models/<name>/<version>/).
var v1ScoreScript = strings.Replace(moetest.ScoreScript, `"model/sklearn_regression_model.pkl"`, `"sklearn_regression_model.pkl"`, 1)

// v1ScoringServer is a stand-in for a v1 ACI container with authEnabled:
// argv: code folder, scoring script, primary key, secondary key. It prints
// v1-server-port=<port> on stdout once init() has run.
const v1ScoringServer = `import http.server, importlib.util, json, os, sys, traceback

code_dir, script, primary, secondary = sys.argv[1:5]
sys.path.insert(0, code_dir)
spec = importlib.util.spec_from_file_location("score", os.path.join(code_dir, script))
score = importlib.util.module_from_spec(spec)
spec.loader.exec_module(score)
score.init()
keys = {"Bearer " + primary, "Bearer " + secondary}

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, body, ctype="application/json"):
        b = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def do_GET(self):
        if self.path == "/":
            self.answer(200, "Healthy", "text/plain")
        else:
            self.answer(404, "Not Found", "text/plain")

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/score":
            self.answer(404, "Not Found", "text/plain")
            return
        if self.headers.get("Authorization") not in keys:
            self.answer(401, "Unauthorized", "text/plain")
            return
        try:
            result = score.run(raw.decode("utf-8"))
        except Exception:
            traceback.print_exc()
            self.answer(500, json.dumps("An unexpected error occurred in scoring script. Check the logs for more info."))
            return
        self.answer(200, json.dumps(result))

    def log_message(self, *args):
        pass

srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print("v1-server-port=%d" % srv.server_address[1], flush=True)
srv.serve_forever()
`

// v1Server is the running old scoring server.
type v1Server struct {
	URI  string // http://127.0.0.1:port/score
	root string
}

// startV1Server runs v1ScoringServer on the artifacts' code with
// AZUREML_MODEL_DIR set as v1 set it, and stops it when the test ends.
func startV1Server(t *testing.T, python, artifacts string) *v1Server {
	t.Helper()
	script := filepath.Join(t.TempDir(), "v1server.py")
	moetest.WriteFile(t, script, v1ScoringServer)
	cmd := exec.Command(python, script, filepath.Join(artifacts, "src"), "score.py", v1PrimaryKey, v1SecondaryKey)
	cmd.Env = append(os.Environ(), "AZUREML_MODEL_DIR="+filepath.Join(artifacts, "model"), "PYTHONDONTWRITEBYTECODE=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("old v1 server stderr:\n%s", stderr.String())
		}
	})
	port := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if p, ok := strings.CutPrefix(sc.Text(), "v1-server-port="); ok {
				port <- p
				break
			}
		}
		close(port)
		io.Copy(io.Discard, out)
	}()
	var p string
	select {
	case p = <-port:
	case <-time.After(30 * time.Second):
		t.Fatalf("old v1 server did not start in 30s: %s", stderr.String())
	}
	if p == "" {
		<-done
		t.Fatalf("old v1 server exited: %s", stderr.String())
	}
	root := "http://127.0.0.1:" + p
	resp, err := http.Get(root + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "Healthy" {
		t.Fatalf("old v1 server GET / = %d %q, want 200 Healthy", resp.StatusCode, b)
	}
	return &v1Server{URI: root + "/score", root: root}
}

// score posts body to the old server with a bearer key.
func (s *v1Server) score(t *testing.T, key, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, s.URI, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// v1Service renders a v1 ACI service document (the Model Management API's
// shape) with key auth and a source folder "src" holding score.py; edit
// changes fields before it is written.
func v1Service(t *testing.T, path string, edit func(m map[string]any)) {
	t.Helper()
	doc := map[string]any{
		"id":             v1ServiceName,
		"name":           v1ServiceName,
		"description":    "scikit-learn regression on ACI",
		"kvTags":         map[string]string{"team": "upgrade-e2e"},
		"state":          "Healthy",
		"error":          nil,
		"computeType":    "ACI",
		"deploymentType": "HttpRealtimeEndpoint",
		"containerResourceRequirements": map[string]any{
			"cpu": 1, "memoryInGB": 1, "gpuEnabled": false,
		},
		"imageId":     nil,
		"scoringUri":  "http://sklearn-aci-4f2a.westeurope.azurecontainer.io/score",
		"location":    "westeurope",
		"authEnabled": true,
		"sslEnabled":  false,
		"publicFqdn":  "sklearn-aci-4f2a.westeurope.azurecontainer.io",
		"swaggerUri":  "http://sklearn-aci-4f2a.westeurope.azurecontainer.io/swagger.json",
		"models": []any{map[string]any{
			"id": "sklearn_regression_model.pkl:3", "name": "sklearn_regression_model.pkl", "version": 3,
		}},
		"environmentImageRequest": map[string]any{
			"driverProgram": "main.py",
			"assets": []any{
				map[string]any{"id": "main.py", "mimeType": "application/x-python", "url": "aml://artifact/LocalUpload/1a2b/main.py", "unpack": false},
				map[string]any{"id": "src", "mimeType": "application/octet-stream", "url": "aml://artifact/LocalUpload/1a2b/src", "unpack": true},
			},
			"modelIds": []string{"sklearn_regression_model.pkl:3"},
			"environment": map[string]any{
				"name": "sklearn-env", "version": "2",
				"python": map[string]any{
					"userManagedDependencies": false,
					"condaDependencies": map[string]any{
						"name":         "project_environment",
						"dependencies": []any{"python=3.8", map[string]any{"pip": []string{"azureml-defaults", "scikit-learn", "joblib"}}},
					},
				},
				"docker": map[string]any{"baseImage": "mcr.microsoft.com/azureml/openmpi3.1.2-ubuntu18.04:20210615.v1"},
			},
		},
		"vnetConfiguration":    nil,
		"encryptionProperties": nil,
	}
	if edit != nil {
		edit(doc)
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	moetest.WriteFile(t, path, string(b))
}

// mustCLI is srv.MustCLI failing t (a subtest) rather than the test that
// started the server.
func mustCLI(t *testing.T, srv *moetest.Server, args ...string) string {
	t.Helper()
	out, errOut, code := srv.CLI(args...)
	if code != 0 {
		t.Fatalf("moe %s: exit %d\nstdout: %s\nstderr: %s\nserver log:\n%s", strings.Join(args, " "), code, out, errOut, srv.Log())
	}
	return out
}

// waitStatus waits up to 10 s until a scoring request with key answers
// status.
func waitStatus(t *testing.T, srv *moetest.Server, url, key string, status int) {
	t.Helper()
	var got int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		resp, _ := srv.Score(url, key, []byte(sampleRequest))
		if got = resp.StatusCode; got == status {
			return
		}
	}
	t.Fatalf("scoring with key %.8s…: still %d after 10s, want %d", key, got, status)
}

// endpointNames lists the moe server's endpoints by name.
func endpointNames(t *testing.T, srv *moetest.Server) []string {
	t.Helper()
	var eps []struct{ Name string }
	out := mustCLI(t, srv, "online-endpoint", "list")
	if err := json.Unmarshal([]byte(out), &eps); err != nil {
		t.Fatalf("online-endpoint list: %v\n%s", err, out)
	}
	var names []string
	for _, e := range eps {
		names = append(names, e.Name)
	}
	return names
}

func TestUpgradeEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: starts moe serve, Python workers and a Python v1 scoring server")
	}
	python := moetest.Python(t)
	start := time.Now()

	// What the user downloaded from the old workspace.
	art := t.TempDir()
	moetest.TrainModel(t, python, art)
	moetest.WriteFile(t, filepath.Join(art, "src", "score.py"), v1ScoreScript)
	moetest.WriteFile(t, filepath.Join(art, "conda.yaml"), "name: project_environment\ndependencies:\n  - python=3.8\n  - pip:\n    - azureml-defaults\n    - scikit-learn\n    - joblib\n")
	docs := t.TempDir()
	svcFile := filepath.Join(docs, "service.json")
	keysFile := filepath.Join(docs, "keys.json")
	v1Service(t, svcFile, nil)
	moetest.WriteFile(t, keysFile, `{"primaryKey": "`+v1PrimaryKey+`", "secondaryKey": "`+v1SecondaryKey+`"}`)
	samples := filepath.Join(docs, "samples.jsonl")
	moetest.WriteFile(t, samples, sampleRequest+"\n"+
		`{"data": [[0,0,0,0,0,0,0,0,0,0]]}`+"\n\n"+
		`{"data": [[1.5,2.5,3.5,4.5,5.5,6.5,7.5,8.5,9.5,10.5],[-1,-2,-3,-4,-5,-6,-7,-8,-9,-10],[100,0,0,0,0,0,0,0,0,1e3]]}`+"\n")

	old := startV1Server(t, python, art)
	oldCode, oldAnswer := old.score(t, v1PrimaryKey, sampleRequest)
	if oldCode != 200 || oldAnswer != expected(t, python, art) {
		t.Fatalf("old v1 server: %d %s, want 200 %s", oldCode, oldAnswer, expected(t, python, art))
	}
	for name, key := range map[string]string{"secondary": v1SecondaryKey, "none": "", "wrong": "not-a-key-0123456789"} {
		code, body := old.score(t, key, sampleRequest)
		if want := map[bool]int{true: 200, false: 401}[name == "secondary"]; code != want {
			t.Errorf("old v1 server, %s key: %d %s, want %d", name, code, body, want)
		}
	}

	srv := moetest.Start(t, t.TempDir(), "--python", python)

	t.Run("Plan", func(t *testing.T) {
		out := mustCLI(t, srv, "upgrade", "plan", svcFile, "--keys", keysFile, "-o", "json")
		var p struct {
			Service     string `json:"service"`
			ComputeType string `json:"compute_type"`
			Eligible    bool   `json:"eligible"`
			Endpoint    struct {
				Name     string `json:"name"`
				AuthMode string `json:"auth_mode"`
			} `json:"endpoint"`
			Deployment struct {
				Name          string `json:"name"`
				InstanceType  string `json:"instance_type"`
				InstanceCount int    `json:"instance_count"`
			} `json:"deployment"`
			Old      string `json:"old_scoring_uri"`
			New      string `json:"new_scoring_uri"`
			Findings []struct{ Severity, Code, Message, Field string }
		}
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			t.Fatalf("plan -o json: %v\n%s", err, out)
		}
		if !p.Eligible || p.Service != v1ServiceName || p.ComputeType != "ACI" || p.Endpoint.Name != v1ServiceName || p.Endpoint.AuthMode != "key" ||
			p.Deployment.InstanceType != "Standard_DS1_v2" || p.Deployment.InstanceCount != 1 || p.Old == "" || p.New == "" {
			t.Errorf("plan = %+v", p)
		}
		codes := map[string]string{}
		for _, f := range p.Findings {
			codes[f.Code] = f.Severity + ": " + f.Message
			if f.Severity == "error" {
				t.Errorf("error finding in an eligible plan: %+v", f)
			}
		}
		if !strings.HasPrefix(codes["auth-key-kept"], "info: ") {
			t.Errorf("no auth-key-kept info finding: %v", codes)
		}
		if s := codes["sku"]; !strings.HasPrefix(s, "info: ") || !strings.Contains(s, "Standard_DS1_v2") || !strings.Contains(s, "published table row") {
			t.Errorf("sku finding = %q, want the table row used", s)
		}
		if _, ok := codes["scoring-uri"]; !ok {
			t.Errorf("no scoring-uri finding: %v", codes)
		}
	})

	var newURI string
	apply := func(t *testing.T) {
		t.Helper()
		out := mustCLI(t, srv, "upgrade", "apply", svcFile, "--artifacts", art, "--keys", keysFile)
		newURI = srv.ScoringURL(v1ServiceName)
		if !strings.Contains(out, "scoring URI: "+newURI+"\n") || !strings.Contains(out, "curl ") {
			t.Errorf("apply output lacks the scoring URI %s:\n%s", newURI, out)
		}
	}
	t.Run("Apply", func(t *testing.T) {
		apply(t)
		for name, key := range map[string]string{"primary": v1PrimaryKey, "secondary": v1SecondaryKey} {
			resp, body := srv.Score(newURI, key, []byte(sampleRequest))
			if resp.StatusCode != 200 || string(body) != oldAnswer {
				t.Errorf("new endpoint, kept %s key: %d %s, want 200 and the old server's answer %s byte for byte", name, resp.StatusCode, body, oldAnswer)
			}
		}
		if resp, _ := srv.Score(newURI, "not-a-key-0123456789", []byte(sampleRequest)); resp.StatusCode != 401 {
			t.Errorf("new endpoint with a wrong key: %d, want 401", resp.StatusCode)
		}
		var k struct{ PrimaryKey, SecondaryKey string }
		json.Unmarshal([]byte(mustCLI(t, srv, "online-endpoint", "get-credentials", "-n", v1ServiceName)), &k)
		if k.PrimaryKey != v1PrimaryKey || k.SecondaryKey != v1SecondaryKey {
			t.Errorf("get-credentials = %+v: the original keys were not kept", k)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("ApplyAgainIsIdempotent", func(t *testing.T) {
		// a key rotated on the new side since is set back to the kept one
		// (key changes reach the gateway with the next route table: poll)
		mustCLI(t, srv, "online-endpoint", "regenerate-keys", "-n", v1ServiceName, "--key-type", "secondary")
		waitStatus(t, srv, newURI, v1SecondaryKey, http.StatusUnauthorized)
		apply(t)
		waitStatus(t, srv, newURI, v1SecondaryKey, http.StatusOK)
		if eps := endpointNames(t, srv); len(eps) != 1 || eps[0] != v1ServiceName {
			t.Errorf("endpoints after a second apply = %v, want [%s]", eps, v1ServiceName)
		}
		var deps []struct {
			Name              string `json:"name"`
			ProvisioningState string `json:"provisioning_state"`
		}
		out := mustCLI(t, srv, "online-deployment", "list", "-e", v1ServiceName)
		if err := json.Unmarshal([]byte(out), &deps); err != nil || len(deps) != 1 || deps[0].Name != v1ServiceName || deps[0].ProvisioningState != "Succeeded" {
			t.Errorf("deployments after a second apply (%v): %s", err, out)
		}
		var ep struct {
			Traffic map[string]int `json:"traffic"`
		}
		json.Unmarshal([]byte(mustCLI(t, srv, "online-endpoint", "show", "-n", v1ServiceName)), &ep)
		if len(ep.Traffic) != 1 || ep.Traffic[v1ServiceName] != 100 {
			t.Errorf("traffic = %v, want %s=100", ep.Traffic, v1ServiceName)
		}
		if resp, body := srv.Score(newURI, v1SecondaryKey, []byte(sampleRequest)); resp.StatusCode != 200 || string(body) != oldAnswer {
			t.Errorf("after a second apply: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("RefusedChangesNothing", func(t *testing.T) {
		// same name as the applied service: a refused apply must not touch it
		state := func() string {
			return mustCLI(t, srv, "online-endpoint", "list") + mustCLI(t, srv, "online-deployment", "list", "-e", v1ServiceName) +
				mustCLI(t, srv, "online-endpoint", "get-credentials", "-n", v1ServiceName)
		}
		before := state()
		for name, edit := range map[string]func(map[string]any){
			"unhealthy": func(m map[string]any) {
				m["state"] = "Unhealthy"
				m["error"] = map[string]any{"code": "ContainerCrashed", "message": "init() raised FileNotFoundError"}
			},
			"cmk": func(m map[string]any) {
				m["encryptionProperties"] = map[string]any{"vaultBaseUrl": "https://kv.vault.azure.net", "keyName": "cmk", "keyVersion": "1"}
			},
		} {
			f := filepath.Join(t.TempDir(), name+".json")
			v1Service(t, f, edit)
			out, errOut, code := srv.CLI("upgrade", "plan", f, "--keys", keysFile)
			if code != 1 || !strings.Contains(out, "REFUSED") {
				t.Errorf("%s: plan exit %d, want 1 with REFUSED\n%s%s", name, code, out, errOut)
			}
			want := map[string]string{"unhealthy": "init() raised FileNotFoundError", "cmk": "customer-managed key"}[name]
			out, errOut, code = srv.CLI("upgrade", "apply", f, "--keys", keysFile, "--artifacts", art)
			if code != 1 || !strings.Contains(out+errOut, want) {
				t.Errorf("%s: apply exit %d, want 1 naming %q\n%s%s", name, code, want, out, errOut)
			}
		}
		if after := state(); after != before {
			t.Errorf("a refused apply changed the server:\n%s\n→\n%s", before, after)
		}
	})

	// verify finds the new endpoint, its key and the moe CA through the
	// server in --data-dir; the old URI is the loopback stand-in.
	t.Run("VerifyParity", func(t *testing.T) {
		out, errOut, code := srv.CLI("upgrade", "verify", svcFile, "--keys", keysFile, "--requests", samples, "--old-uri", old.URI, "-o", "json")
		var rep struct {
			Old        string `json:"old_scoring_uri"`
			New        string `json:"new_scoring_uri"`
			Total      int    `json:"total"`
			Matched    int    `json:"matched"`
			Mismatched int    `json:"mismatched"`
			Cases      []struct {
				Line      int    `json:"line"`
				OldStatus int    `json:"old_status"`
				NewStatus int    `json:"new_status"`
				Match     bool   `json:"match"`
				Diff      string `json:"diff"`
			} `json:"cases"`
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatalf("verify -o json (exit %d): %v\n%s\n%s", code, err, out, errOut)
		}
		if code != 0 || rep.Total != 3 || rep.Matched != 3 || rep.Mismatched != 0 || rep.Old != old.URI || rep.New != newURI {
			t.Errorf("verify: exit %d, report %+v\n%s", code, rep, errOut)
		}
		for _, c := range rep.Cases {
			if c.OldStatus != 200 || c.NewStatus != 200 || !c.Match {
				t.Errorf("case %+v", c)
			}
		}
		// table output, explicit new URI (path-routed), key and CA
		pathURI := "https://" + srv.Gateway + "/endpoints/" + v1ServiceName + "/score"
		out = mustCLI(t, srv, "upgrade", "verify", svcFile, "--keys", keysFile, "--requests", samples, "--old-uri", old.URI,
			"--old-key", v1SecondaryKey, "--new-uri", pathURI, "--new-key", v1SecondaryKey, "--new-ca", filepath.Join(srv.Dir, "pki", "ca.pem"))
		if !strings.Contains(out, "3 requests: 3 match, 0 mismatch") {
			t.Errorf("verify table:\n%s", out)
		}
	})

	t.Run("VerifyMismatch", func(t *testing.T) {
		// the new deployment now scores differently: re-apply with an edited script
		moetest.WriteFile(t, filepath.Join(art, "src", "score.py"), strings.Replace(v1ScoreScript, "return model.predict(data).tolist()", "return (model.predict(data) + 0.5).tolist()", 1))
		apply(t)
		// the route table follows the deployment's status by a moment
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if _, body := srv.Score(newURI, v1PrimaryKey, []byte(sampleRequest)); string(body) != oldAnswer {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the re-applied deployment still answers like the old script after 10s")
			}
		}
		out, errOut, code := srv.CLI("upgrade", "verify", svcFile, "--keys", keysFile, "--requests", samples, "--old-uri", old.URI)
		if code != 1 || !strings.Contains(out, "MISMATCH") || !strings.Contains(out, "3 requests: 0 match, 3 mismatch") || !strings.Contains(out, "$[0]") {
			t.Errorf("verify after a change: exit %d\n%s\n%s", code, out, errOut)
		}
		// a tolerance covering the change matches again
		if _, errOut, code := srv.CLI("upgrade", "verify", svcFile, "--keys", keysFile, "--requests", samples, "--old-uri", old.URI, "--tolerance", "0.6"); code != 0 {
			t.Errorf("verify --tolerance 0.6: exit %d\n%s", code, errOut)
		}
		// a wrong old key is a mismatch too (401 vs 200), never a silent pass
		if out, _, code := srv.CLI("upgrade", "verify", svcFile, "--requests", samples, "--old-uri", old.URI, "--old-key", "not-a-key-0123456789", "--tolerance", "1"); code != 1 || !strings.Contains(out, "status 401 vs 200") {
			t.Errorf("verify with a wrong old key: exit %d\n%s", code, out)
		}
	})
	t.Logf("upgrade end to end in %s", time.Since(start).Round(time.Millisecond))
}
