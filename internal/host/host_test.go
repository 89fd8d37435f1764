package host

// End-to-end tests: a real Python worker (testPython) behind a real host on
// 127.0.0.1:0. They skip when the interpreter is missing.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestHost_SklearnModel(t *testing.T) {
	py := testPython(t)
	modelDir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(modelDir, "model"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Train in the test; print what the model predicts for the probe rows.
	train := `
import json, sys, joblib, numpy as np
from sklearn.linear_model import LinearRegression
rng = np.random.RandomState(0)
X = rng.rand(50, 3) * 10
y = X @ np.array([1000.0, 250.5, -30.25]) + 42.0 + rng.rand(50)
m = LinearRegression().fit(X, y)
joblib.dump(m, sys.argv[1])
probe = np.array([[7.1, 9.2, 3.3], [1.5, 2.5, 3.5]])
print(json.dumps(m.predict(probe).tolist()))
`
	out, err := exec.Command(py, "-c", train, filepath.Join(modelDir, "model", "sklearn_regression_model.pkl")).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && strings.Contains(string(ee.Stderr), "ModuleNotFoundError") {
			t.Skipf("%s lacks scikit-learn/joblib: %s", py, ee.Stderr)
		}
		t.Fatalf("train: %v", err)
	}
	want := strings.TrimSpace(string(out))

	dir := writeScript(t, `
import json, os, joblib, numpy as np
def init():
    global model
    model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model", "sklearn_regression_model.pkl"))
def run(raw_data):
    data = np.array(json.loads(raw_data)["data"])
    return model.predict(data).tolist()
`)
	th := startHost(t, Config{CodeDir: dir, ModelDir: modelDir, Python: py})
	status, hdr, body := do(t, "POST", th.URL+"/score", `{"data": [[7.1, 9.2, 3.3], [1.5, 2.5, 3.5]]}`, map[string]string{"Content-Type": "application/json"})
	if status != 200 || body != want {
		t.Fatalf("POST /score = %d %q; want 200 %q\nlog:\n%s", status, body, want, th.Stderr)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q; want application/json", ct)
	}
	if v := hdr.Get("X-Ms-Run-Function-Failed"); v != "False" {
		t.Errorf("x-ms-run-function-failed = %q; want False", v)
	}
	if !regexp.MustCompile(`^\d+\.\d{3}$`).MatchString(hdr.Get("X-Ms-Run-Fn-Exec-Ms")) {
		t.Errorf("x-ms-run-fn-exec-ms = %q; want 3 decimals", hdr.Get("X-Ms-Run-Fn-Exec-Ms"))
	}
	if v := hdr.Get("X-Ms-Server-Version"); !strings.HasPrefix(v, "moe/") {
		t.Errorf("x-ms-server-version = %q; want moe/...", v)
	}
}

// TestHost_Contract walks the /score contract of facts §9.2-9.5 against one
// undecorated script.
func TestHost_Contract(t *testing.T) {
	dir := writeScript(t, `
import json, os
class Opaque: pass
def init():
    print("init printed this")
def run(data):
    if data == "boom":
        1 / 0
    if data == "none":
        return None
    if data == "str":
        return "plain string"
    if data == "opaque":
        return Opaque()
    if data == "env":
        return {k: os.environ.get(k) for k in ("AZUREML_MODEL_DIR", "AZUREML_ENTRY_SCRIPT", "AML_APP_ROOT", "WORKER_COUNT", "MY_SETTING")} | {"cwd": os.getcwd()}
    return {"echo": data}
`)
	if err := os.WriteFile(filepath.Join(dir, "swagger3.json"), []byte(`{"openapi": "3.0.0"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	modelDir := t.TempDir()
	th := startHost(t, Config{CodeDir: dir, ModelDir: modelDir, Env: map[string]string{"MY_SETTING": "x=1"}})
	score := th.URL + "/score"

	tests := []struct {
		name       string
		method     string
		url        string
		body       string
		hdr        map[string]string
		wantStatus int
		wantBody   string
		wantFailed string // "" means: header not checked
	}{
		{"post echoes the raw body as a string", "POST", score, `{"a": [1, 2.50]}`, nil, 200, `{"echo": "{\"a\": [1, 2.50]}"}`, "False"},
		{"none becomes {}", "POST", score, "none", nil, 200, `{}`, "False"},
		{"str is JSON-encoded", "POST", score, "str", nil, 200, `"plain string"`, "False"},
		{"run exception", "POST", score, "boom", nil, 500, `{"message": "An unexpected error occurred in scoring script. Check the logs for more info."}`, "True"},
		{"not serialisable", "POST", score, "opaque", nil, 500, `{"message": "An unexpected internal error occurred. Check the logs for more info."}`, "False"},
		{"non-UTF-8 body", "POST", score, "\xff\xfe", nil, 400, `{"message": "Input cannot be decoded as UTF-8: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"}`, "False"},
		{"GET passes json.dumps of query params", "GET", score + "?a=1&b=[1,2]&c=x&c=y&d=null", "", nil, 200, `{"echo": "{\"a\": 1, \"b\": [1, 2], \"c\": [\"x\", \"y\"], \"d\": null}"}`, "False"},
		{"OPTIONS answers 200 empty", "OPTIONS", score, "", nil, 200, ``, "False"},
		{"PUT is not allowed", "PUT", score, "x", nil, 405, `{"message": "The method is not allowed for the requested URL."}`, "False"},
		{"x-request-id over 100 chars", "POST", score, "x", map[string]string{"X-Request-Id": strings.Repeat("a", 101)}, 431, `{"message": "x-request-id must not exceed 100 characters"}`, "False"},
		{"x-ms-client-request-id over 100 chars", "POST", score, "x", map[string]string{"X-Ms-Client-Request-Id": strings.Repeat("a", 101)}, 431, `{"message": "x-ms-request-id and x-ms-client-request-id must not exceed 100 characters"}`, "False"},
		{"unknown route", "GET", th.URL + "/nope", "", nil, 404, `{"message": "The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again."}`, ""},
		{"liveness", "GET", th.URL + "/", "", nil, 200, "Healthy", ""},
		{"swagger v3 from the code dir", "GET", th.URL + "/swagger.json?version=3", "", nil, 200, `{"openapi": "3.0.0"}`, ""},
		{"swagger bad version", "GET", th.URL + "/swagger.json?version=3.0a", "", nil, 404, `{"message": "Swagger version [3.0a] is not valid. Supported versions: [2, 3, 3.1]."}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, hdr, body := do(t, tt.method, tt.url, tt.body, tt.hdr)
			if status != tt.wantStatus || body != tt.wantBody {
				t.Errorf("%s %s = %d %q; want %d %q", tt.method, tt.url, status, body, tt.wantStatus, tt.wantBody)
			}
			if tt.wantFailed != "" {
				if got := hdr.Get("X-Ms-Run-Function-Failed"); got != tt.wantFailed {
					t.Errorf("x-ms-run-function-failed = %q; want %q", got, tt.wantFailed)
				}
			}
		})
	}

	t.Run("traceback and prints reach the log", func(t *testing.T) {
		log := th.Stderr.String()
		for _, want := range []string{"init printed this", "Traceback (most recent call last)", "ZeroDivisionError: division by zero"} {
			if !strings.Contains(log, want) {
				t.Errorf("log lacks %q:\n%s", want, log)
			}
		}
	})

	t.Run("environment", func(t *testing.T) {
		_, _, body := do(t, "POST", score, "env", nil)
		absModel, _ := filepath.Abs(modelDir)
		for _, want := range []string{
			`"AZUREML_MODEL_DIR": ` + pyJSONString(absModel),
			`"AZUREML_ENTRY_SCRIPT": "score.py"`,
			`"AML_APP_ROOT": ` + pyJSONString(dir),
			`"WORKER_COUNT": "1"`,
			`"MY_SETTING": "x=1"`,
			`"cwd": ` + pyJSONString(dir),
		} {
			if !strings.Contains(body, want) {
				t.Errorf("env answer %s lacks %s", body, want)
			}
		}
	})

	t.Run("request ids", func(t *testing.T) {
		_, hdr, _ := do(t, "POST", score, "x", nil)
		id := hdr.Get("X-Request-Id")
		if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(id) {
			t.Errorf("generated x-request-id %q is not a UUID4", id)
		}
		if got := hdr.Get("X-Ms-Request-Id"); got != id {
			t.Errorf("x-ms-request-id = %q; want the request id %q", got, id)
		}
		_, hdr, _ = do(t, "POST", score, "x", map[string]string{"X-Request-Id": "rid-1", "X-Ms-Client-Request-Id": "cid-1"})
		if hdr.Get("X-Request-Id") != "rid-1" || hdr.Get("X-Ms-Client-Request-Id") != "cid-1" || hdr.Get("X-Ms-Request-Id") != "cid-1" {
			t.Errorf("ids not echoed: %v", hdr)
		}
	})
}

func TestHost_RequestHeaders(t *testing.T) {
	dir := writeScript(t, `
def init():
    pass
def run(data, request_headers):
    return {"data": data, "custom": request_headers.get("X-Custom"), "ct": request_headers.get("Content-Type")}
`)
	th := startHost(t, Config{CodeDir: dir})
	status, _, body := do(t, "POST", th.URL+"/score", "hi", map[string]string{"X-Custom": "v1", "Content-Type": "text/plain"})
	if want := `{"data": "hi", "custom": "v1", "ct": "text/plain"}`; status != 200 || body != want {
		t.Errorf("got %d %q; want 200 %q", status, body, want)
	}
}

func TestHost_RawHTTP(t *testing.T) {
	dir := writeScript(t, `
import json
from azureml.contrib.services.aml_request import AMLRequest, rawhttp
from azureml.contrib.services.aml_response import AMLResponse
from azureml_inference_server_http.api.aml_response import AMLResponse as NewAMLResponse
assert AMLResponse is NewAMLResponse
def init():
    pass
@rawhttp
def run(request):
    if request.method == "GET":
        return AMLResponse({"args": request.args.to_dict(), "path": request.path, "full_path": request.full_path}, 200, json_str=True)
    if request.method == "OPTIONS":
        return AMLResponse("options reached run", 204)
    if request.path == "/score" and request.files:
        f = request.files["image"]
        return {"name": f.filename, "size": len(f.read()), "type": f.content_type, "label": request.form.get("label")}
    if request.headers.get("X-Fail"):
        return AMLResponse("server side", 503)
    body = request.get_json()
    return AMLResponse(json.dumps({"got": body}), 201, {"X-Custom": "a, b", "Content-Type": "application/vnd.moe+json"})
`)
	th := startHost(t, Config{CodeDir: dir})
	score := th.URL + "/score"

	status, hdr, body := do(t, "POST", score, `{"x": 1}`, map[string]string{"Content-Type": "application/json"})
	if status != 201 || body != `{"got": {"x": 1}}` {
		t.Errorf("POST = %d %q; want 201 {\"got\": {\"x\": 1}}", status, body)
	}
	if got := hdr.Values("X-Custom"); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Errorf("X-Custom = %q; want [a b] (comma split into repeated headers)", got)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/vnd.moe+json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if hdr.Get("X-Ms-Run-Function-Failed") != "False" {
		t.Errorf("x-ms-run-function-failed = %q; want False", hdr.Get("X-Ms-Run-Function-Failed"))
	}

	status, _, body = do(t, "GET", score+"?a=1&b=two", "", nil)
	if want := `{"args": {"a": "1", "b": "two"}, "path": "/score", "full_path": "/score?a=1&b=two"}`; status != 200 || body != want {
		t.Errorf("GET = %d %q; want 200 %q", status, body, want)
	}

	status, _, body = do(t, "OPTIONS", score, "", nil)
	if status != 204 {
		t.Errorf("OPTIONS = %d %q; want 204 from run()", status, body)
	}

	status, hdr, _ = do(t, "POST", score, `{}`, map[string]string{"X-Fail": "1", "Content-Type": "application/json"})
	if status != 503 || hdr.Get("X-Ms-Run-Function-Failed") != "True" {
		t.Errorf("AMLResponse 503 = %d failed=%q; want 503 True", status, hdr.Get("X-Ms-Run-Function-Failed"))
	}

	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	mw.WriteField("label", "cat")
	fw, _ := mw.CreateFormFile("image", "cat.png")
	fw.Write(bytes.Repeat([]byte{0x89, 'P', 'N', 'G', 0}, 100))
	mw.Close()
	status, _, body = do(t, "POST", score, mp.String(), map[string]string{"Content-Type": mw.FormDataContentType()})
	if want := `{"name": "cat.png", "size": 500, "type": "application/octet-stream", "label": "cat"}`; status != 200 || body != want {
		t.Errorf("multipart = %d %q; want 200 %q\nlog:\n%s", status, body, want, th.Stderr)
	}
}

func TestHost_InitFailure(t *testing.T) {
	tests := []struct {
		name    string
		script  string
		cfg     func(*Config)
		wantErr []string // substrings of the error file
	}{
		{
			name:    "init raises",
			script:  "def init():\n    raise ValueError('model file missing')\ndef run(data):\n    return data\n",
			wantErr: []string{"score.py", "ValueError: model file missing"},
		},
		{
			name:    "import error",
			script:  "import no_such_module_xyz\ndef init(): pass\ndef run(d): return d\n",
			wantErr: []string{"ModuleNotFoundError", "no_such_module_xyz"},
		},
		{
			name:    "no run",
			script:  "def init(): pass\n",
			wantErr: []string{"does not define run()"},
		},
		{
			name:    "script not found",
			script:  "",
			cfg:     func(c *Config) { c.ScoringScript = "missing.py" },
			wantErr: []string{"scoring script not found", "missing.py"},
		},
		{
			name:    "python missing",
			script:  "def init(): pass\ndef run(d): return d\n",
			cfg:     func(c *Config) { c.Python = "/nonexistent/python3" },
			wantErr: []string{"/nonexistent/python3", "could not be started"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeScript(t, tt.script)
			cfg := Config{CodeDir: dir, ErrorFile: filepath.Join(t.TempDir(), "error.txt"), Python: testPython(t)}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			_, err := startHostErr(t, cfg)
			if !errors.Is(err, ErrInit) {
				t.Fatalf("Run error = %v; want ErrInit", err)
			}
			b, rerr := os.ReadFile(cfg.ErrorFile)
			if rerr != nil {
				t.Fatalf("error file: %v", rerr)
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(string(b), want) {
					t.Errorf("error file %q lacks %q", b, want)
				}
			}
		})
	}
}

func TestHost_CancelledRequestThenNextAnswer(t *testing.T) {
	dir := writeScript(t, `
import time
def init(): pass
def run(data):
    if data.startswith("slow"):
        time.sleep(0.6)
    return data
`)
	th := startHost(t, Config{CodeDir: dir})
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", th.URL+"/score", strings.NewReader("slow-1"))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("slow request answered %d; want the client to time out", resp.StatusCode)
	}
	// The only worker still runs "slow-1"; this request must wait for it and
	// then get its own answer, not the late one.
	start := time.Now()
	status, _, body := do(t, "POST", th.URL+"/score", "fast-2", nil)
	if status != 200 || body != `"fast-2"` {
		t.Fatalf("next request = %d %q; want 200 \"fast-2\"", status, body)
	}
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Errorf("next request took %v; it should have waited for the busy worker", waited)
	}
}

func TestHost_ParallelWorkers(t *testing.T) {
	dir := writeScript(t, `
import os, time
def init(): pass
def run(data):
    time.sleep(0.8)
    return os.getpid()
`)
	th := startHost(t, Config{CodeDir: dir, Workers: 2})
	start := time.Now()
	var wg sync.WaitGroup
	pids := make([]string, 2)
	for i := range 2 {
		wg.Go(func() {
			status, _, body := do(t, "POST", th.URL+"/score", "x", nil)
			if status != 200 {
				t.Errorf("status %d", status)
			}
			pids[i] = body
		})
	}
	wg.Wait()
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("two 0.8s requests on 2 workers took %v; want them in parallel", took)
	}
	if pids[0] == pids[1] {
		t.Errorf("both requests ran in pid %s; want two workers", pids[0])
	}
}

func TestHost_WorkerRestart(t *testing.T) {
	dir := writeScript(t, "import os\ndef init(): pass\ndef run(data): return os.getpid()\n")
	th := startHost(t, Config{CodeDir: dir})
	_, _, body := do(t, "POST", th.URL+"/score", "x", nil)
	pid, err := strconv.Atoi(body)
	if err != nil {
		t.Fatalf("pid answer %q: %v", body, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Readiness drops while no worker is alive, then returns.
	deadline := time.Now().Add(20 * time.Second)
	for {
		status, _, body2 := do(t, "POST", th.URL+"/score", "x", nil)
		if status == 200 && body2 != body {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer from a restarted worker: last %d %q\nlog:\n%s", status, body2, th.Stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if status, _, _ := do(t, "GET", th.URL+"/-/ready", "", nil); status != 200 {
		t.Errorf("ready after restart = %d; want 200", status)
	}
}

func TestHost_ScoringTimeout(t *testing.T) {
	dir := writeScript(t, "import time\ndef init(): pass\ndef run(data):\n    time.sleep(5)\n    return 1\n")
	th := startHost(t, Config{CodeDir: dir, ScoringTimeout: 300 * time.Millisecond})
	status, hdr, body := do(t, "POST", th.URL+"/score", "x", nil)
	if want := `{"message": "Scoring timeout after 300 ms"}`; status != 500 || body != want {
		t.Errorf("got %d %q; want 500 %q", status, body, want)
	}
	if hdr.Get("X-Ms-Run-Function-Failed") != "True" {
		t.Errorf("x-ms-run-function-failed = %q; want True", hdr.Get("X-Ms-Run-Function-Failed"))
	}
}

func TestHost_DrainFinishesInFlight(t *testing.T) {
	dir := writeScript(t, "import time\ndef init(): pass\ndef run(data):\n    time.sleep(0.5)\n    return 'done'\n")
	th := startHost(t, Config{CodeDir: dir})
	type answer struct {
		status int
		body   string
	}
	got := make(chan answer, 1)
	go func() {
		s, _, b := do(t, "POST", th.URL+"/score", "x", nil)
		got <- answer{s, b}
	}()
	time.Sleep(150 * time.Millisecond)
	if err := th.Stop(t); err != nil {
		t.Errorf("Run returned %v; want nil after a clean drain", err)
	}
	if a := <-got; a.status != 200 || a.body != `"done"` {
		t.Errorf("in-flight request = %d %q; want 200 \"done\"", a.status, a.body)
	}
}

// TestHost_ShimWinsOverInstalledAzureml puts a fake "installed" azureml on
// PYTHONPATH: its aml_response must lose to the shim, while its other
// modules (azureml.core) stay importable.
func TestHost_ShimWinsOverInstalledAzureml(t *testing.T) {
	site := t.TempDir()
	files := map[string]string{
		"azureml/__init__.py":                       "__path__ = __import__('pkgutil').extend_path(__path__, __name__)\n",
		"azureml/core/__init__.py":                  "VALUE = 'core ok'\n",
		"azureml/contrib/__init__.py":               "__path__ = __import__('pkgutil').extend_path(__path__, __name__)\n",
		"azureml/contrib/services/__init__.py":      "",
		"azureml/contrib/services/aml_response.py":  "raise ImportError('the installed package was used')\n",
		"azureml_inference_server_http/__init__.py": "raise ImportError('the installed server was used')\n",
	}
	for name, src := range files {
		p := filepath.Join(site, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dir := writeScript(t, `
from azureml.contrib.services.aml_response import AMLResponse
import azureml.core
def init(): pass
def run(data):
    return AMLResponse(azureml.core.VALUE, 200)
`)
	th := startHost(t, Config{CodeDir: dir, Env: map[string]string{"PYTHONPATH": site}})
	status, _, body := do(t, "POST", th.URL+"/score", "x", nil)
	if status != 200 || body != "core ok" {
		t.Errorf("got %d %q; want 200 \"core ok\"\nlog:\n%s", status, body, th.Stderr)
	}
}

func TestHost_Readiness(t *testing.T) {
	dir := writeScript(t, "import time\ndef init():\n    time.sleep(0.7)\ndef run(d): return d\n")
	cfg := Config{CodeDir: dir, ScoringScript: "score.py", Python: testPython(t), AddrFile: filepath.Join(t.TempDir(), "addr"), Stderr: &syncBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	defer func() { cancel(); <-done }()
	var url string
	for url == "" {
		b, _ := os.ReadFile(cfg.AddrFile)
		url = string(b)
		time.Sleep(10 * time.Millisecond)
	}
	url = "http://" + url
	if status, _, body := do(t, "GET", url+"/", "", nil); status != 200 || body != "Healthy" {
		t.Errorf("liveness during init = %d %q; want 200 Healthy", status, body)
	}
	status, _, body := do(t, "GET", url+"/-/ready", "", nil)
	if status != 503 || !strings.Contains(body, `"reason"`) {
		t.Errorf("readiness during init = %d %q; want 503 with a reason", status, body)
	}
	for range 100 {
		if status, _, _ = do(t, "GET", url+"/-/ready", "", nil); status == 200 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("never ready: last status %d", status)
}

func ExampleRun() {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	err := Run(ctx, Config{
		Addr:          "127.0.0.1:0",
		CodeDir:       "./onlinescoring",
		ScoringScript: "score.py",
		ModelDir:      "./azureml-models",
		Python:        "/usr/bin/python3",
		Workers:       2,
	})
	if errors.Is(err, ErrInit) {
		fmt.Println("the scoring script did not start; exit 3")
	}
}

func TestHost_WorkerDiesDuringRequest(t *testing.T) {
	dir := writeScript(t, "import os\ndef init(): pass\ndef run(data):\n    if data == 'die':\n        os._exit(7)\n    return data\n")
	th := startHost(t, Config{CodeDir: dir})
	status, hdr, body := do(t, "POST", th.URL+"/score", "die", nil)
	if want := `{"message": "` + msgUserError + `"}`; status != 500 || body != want || hdr.Get("X-Ms-Run-Function-Failed") != "True" {
		t.Errorf("worker exit during run() = %d %q failed=%q; want 500 %q True", status, body, hdr.Get("X-Ms-Run-Function-Failed"), want)
	}
	// The next request waits for the restarted worker.
	if status, _, body := do(t, "POST", th.URL+"/score", "ok", nil); status != 200 || body != `"ok"` {
		t.Errorf("after restart = %d %q; want 200 \"ok\"", status, body)
	}
}
