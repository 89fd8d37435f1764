package console

// The console's end-to-end test: Debian's headless Chromium, driven by
// chromedp, loads the embedded pages from an httptest TLS server, signs
// in, lists endpoints, opens one, sends a test request from the form and
// reads the answer, shows keys, reads logs and charts, and signs out.
//
// The /v1 API here is a hand-written fake that stands in for the real
// control-plane API (internal/api, tested in its own package and end to
// end in cmd/moe): it answers with internal/api's own view types, so the
// JSON shapes are the real ones. /v1/stats is the real stats.Recorder,
// filled with an hour of synthetic traffic.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/moe-serving/moe/internal/api"
	"github.com/moe-serving/moe/internal/reconcile"
	"github.com/moe-serving/moe/internal/spec"
	"github.com/moe-serving/moe/internal/stats"
)

const (
	adminToken = "moe-admin-0123456789abcdef0123456789abcdef"
	primaryKey = "pk-7d1f4c2a9b8e4f6a8c0d2e4f6a8b0c2d"
)

// chromium returns the browser to drive, or skips.
func chromium(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	path := "/usr/bin/chromium"
	if p := os.Getenv("MOE_TEST_CHROMIUM"); p != "" {
		path = p
	}
	if _, err := os.Stat(path); err != nil {
		t.Skipf("%s not found: install Debian's chromium (apt-get install -y chromium, as scripts/deps does) or set MOE_TEST_CHROMIUM to run the console browser test", path)
	}
	return path
}

// artifactDir is where screenshots go: $MOE_TEST_ARTIFACTS, else a
// temporary folder.
func artifactDir(t *testing.T) string {
	if d := os.Getenv("MOE_TEST_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// fakeAPI stands in for the control-plane API (see the file comment).
type fakeAPI struct {
	endpoints   []api.EndpointView
	deployments map[string][]api.DeploymentView
	stats       *stats.Recorder
	console     http.Handler

	listKeysCalls atomic.Int32
	mu            sync.Mutex
	invoked       []InvokeRequest
}

func (f *fakeAPI) handler() http.Handler {
	v1 := http.NewServeMux()
	v1.HandleFunc("GET /v1/endpoints", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, f.endpoints) })
	v1.HandleFunc("GET /v1/endpoints/{endpoint}", func(w http.ResponseWriter, r *http.Request) {
		for _, e := range f.endpoints {
			if e.Name == r.PathValue("endpoint") {
				writeJSON(w, 200, e)
				return
			}
		}
		writeJSON(w, 404, api.Error{Code: "ResourceNotFound", Message: "endpoint not found"})
	})
	v1.HandleFunc("GET /v1/endpoints/{endpoint}/deployments", func(w http.ResponseWriter, r *http.Request) {
		out := f.deployments[r.PathValue("endpoint")]
		if out == nil {
			out = []api.DeploymentView{}
		}
		writeJSON(w, 200, out)
	})
	v1.HandleFunc("POST /v1/endpoints/{endpoint}/listKeys", func(w http.ResponseWriter, r *http.Request) {
		f.listKeysCalls.Add(1)
		writeJSON(w, 200, api.Keys{PrimaryKey: primaryKey, SecondaryKey: "sk-secondary-key-value"})
	})
	v1.HandleFunc("POST /v1/endpoints/{endpoint}/deployments/{deployment}/getLogs", func(w http.ResponseWriter, r *http.Request) {
		var req api.LogsRequest
		json.NewDecoder(r.Body).Decode(&req)
		d := r.PathValue("deployment")
		var b strings.Builder
		for i := range 12 {
			fmt.Fprintf(&b, "2026-03-04T10:%02d:00Z host %s/%s-0 [%s] worker %d: scored request in %d ms\n", i, r.PathValue("endpoint"), d, req.ContainerType, i%2, 18+i)
		}
		b.WriteString("Listening on 127.0.0.1:31311, init() done in 412 ms, tail=" + fmt.Sprint(req.Tail) + "\n")
		writeJSON(w, 200, api.Logs{Content: b.String()})
	})
	v1.Handle("GET /v1/stats", f.stats.Handler())
	v1.Handle("POST /console/api/invoke", f.console) // as the lead mounts it: behind the admin check

	root := http.NewServeMux()
	root.Handle("GET /console/", f.console) // the files need no credential
	root.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+adminToken {
			writeJSON(w, 401, api.Error{Code: "Unauthorized", Message: "missing or wrong credential"})
			return
		}
		v1.ServeHTTP(w, r)
	}))
	return root
}

// newFake builds two endpoints: fraud (key auth, three deployments, one
// failed) and churn (aml_token, still creating, no deployment).
func newFake(t *testing.T) *fakeAPI {
	now := time.Now().UTC()
	f := &fakeAPI{}
	var clock atomic.Pointer[time.Time]
	f.stats = stats.New(time.Hour, func() time.Time {
		if c := clock.Load(); c != nil {
			return *c
		}
		return time.Now()
	})
	// An hour of synthetic traffic: blue takes ~90 %, green ~10 %, with a
	// burst of 429s and a few 500s.
	rng := rand.New(rand.NewPCG(1, 2))
	for s := 3600; s > 0; s-- {
		at := now.Add(-time.Duration(s) * time.Second)
		clock.Store(&at)
		base := 6 + 3*math.Sin(float64(s)/500)
		for range int(base + rng.Float64()*3) {
			dep, status := "blue", 200
			if rng.IntN(10) == 0 {
				dep = "green"
			}
			if s > 1500 && s < 1700 && rng.IntN(4) == 0 {
				status = 429
			} else if rng.IntN(150) == 0 {
				status = 500
			}
			model := time.Duration(14+rng.ExpFloat64()*8) * time.Millisecond
			if dep == "green" {
				model += 10 * time.Millisecond
			}
			overhead := time.Duration(600+rng.IntN(1500)) * time.Microsecond
			if status == 429 {
				model = 0
			}
			f.stats.Record("fraud", dep, status, model+overhead, model)
		}
		if s%97 == 0 {
			f.stats.Record("fraud", "", 401, time.Millisecond, 0)
		}
	}
	clock.Store(nil)

	f.console = New(Config{Invoke: func(ctx context.Context, endpoint, deployment string, body []byte) (int, http.Header, []byte, error) {
		f.mu.Lock()
		f.invoked = append(f.invoked, InvokeRequest{Endpoint: endpoint, Deployment: deployment, Body: string(body)})
		f.mu.Unlock()
		if deployment == "" {
			deployment = "blue"
		}
		f.stats.Record(endpoint, deployment, 200, 23*time.Millisecond, 21*time.Millisecond)
		h := http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"6f1c2a0e-5b7d-4d8e-9a3f-1c2b3d4e5f60"},
			"Azureml-Model-Deployment": {deployment}, "X-Ms-Run-Function-Failed": {"False"}}
		return 200, h, []byte(`{"predictions": [11055.977245525679, 4503.079536107787]}`), nil
	}})

	created := now.Add(-26 * time.Hour)
	f.endpoints = []api.EndpointView{
		{Name: "fraud", Description: "Card fraud scoring", AuthMode: "key", Kind: "Managed", Location: "local",
			Properties: map[string]string{}, ProvisioningState: "Succeeded", PublicNetworkAccess: "enabled",
			ScoringURI: "https://fraud.local.inference.localhost:8443/score", OpenAPIURI: "https://fraud.local.inference.localhost:8443/swagger.json",
			Tags: map[string]string{}, Traffic: map[string]int{"blue": 90, "green": 10, "shadow": 0}, MirrorTraffic: map[string]int{"shadow": 20},
			CreatedAt: created, UpdatedAt: now.Add(-40 * time.Minute)},
		{Name: "churn", AuthMode: "aml_token", Kind: "Managed", Location: "local", Properties: map[string]string{},
			ProvisioningState: "Creating", PublicNetworkAccess: "enabled", ScoringURI: "https://churn.local.inference.localhost:8443/score",
			OpenAPIURI: "https://churn.local.inference.localhost:8443/swagger.json", Tags: map[string]string{},
			Traffic: map[string]int{}, MirrorTraffic: map[string]int{}, CreatedAt: now.Add(-2 * time.Minute), UpdatedAt: now.Add(-2 * time.Minute)},
	}
	dep := func(name, state string, count int, gen int64, errText string, insts ...api.InstanceView) api.DeploymentView {
		ready := 0
		for _, in := range insts {
			if in.State == reconcile.PhaseReady {
				ready++
			}
		}
		return api.DeploymentView{
			Deployment: spec.Deployment{Name: name, EndpointName: "fraud", InstanceType: "Standard_DS3_v2", InstanceCount: count,
				Model:             &spec.Model{Ref: "azureml:fraud-model:3"},
				CodeConfiguration: &spec.CodeConfiguration{Code: "./code/" + name, ScoringScript: "score.py"},
				Environment:       &spec.Environment{Ref: "azureml:sklearn-1.5:2"}},
			ProvisioningState: state, Error: errText, Generation: gen, ActiveGeneration: gen, Instances: insts,
			ReadyInstances: ready, TotalInstances: len(insts), CreatedAt: created, UpdatedAt: now.Add(-40 * time.Minute),
		}
	}
	inst := func(id string, gen int64, ph reconcile.Phase, reason string, restarts int, age time.Duration) api.InstanceView {
		return api.InstanceView{ID: id, Generation: gen, State: ph, Reason: reason, Restarts: restarts, StartedAt: now.Add(-age)}
	}
	f.deployments = map[string][]api.DeploymentView{"fraud": {
		dep("blue", "Succeeded", 2, 4, "", inst("fraud-blue-4-0", 4, reconcile.PhaseReady, "", 0, 3*time.Hour), inst("fraud-blue-4-1", 4, reconcile.PhaseReady, "", 1, 3*time.Hour)),
		dep("green", "Succeeded", 1, 2, "", inst("fraud-green-2-0", 2, reconcile.PhaseReady, "", 0, 50*time.Minute)),
		dep("shadow", "Failed", 1, 1, "start instance fraud-shadow-1-0: init() failed: ModuleNotFoundError: No module named 'xgboost'\n  fix: add xgboost to the conda file's pip dependencies",
			inst("fraud-shadow-1-0", 1, reconcile.PhaseFailed, "init() raised ModuleNotFoundError: No module named 'xgboost'", 3, 4*time.Minute)),
	}}
	return f
}

func TestConsole_Browser(t *testing.T) {
	browser := chromium(t)
	f := newFake(t)
	srv := httptest.NewTLSServer(f.handler())
	defer srv.Close()
	artifacts := artifactDir(t)

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(browser),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("ignore-certificate-errors", true), // httptest's self-signed certificate
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1440, 1000),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancel()

	// Collect what the page logs and throws: no exception allowed, and the
	// credential must never appear in a log line.
	var mu sync.Mutex
	var consoleLines, exceptions []string
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			mu.Lock()
			consoleLines = append(consoleLines, m.String())
			if m.IsException() {
				exceptions = append(exceptions, m.String())
			}
			mu.Unlock()
		}
	}()

	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
		defer scancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	get := func(what string, a chromedp.Action[string]) string {
		t.Helper()
		sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
		defer scancel()
		v, err := chromedp.Run(sctx, a)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
	text := func(sel string) string {
		t.Helper()
		return get("read "+sel, chromedp.TextContent(chromedp.CSS(sel)))
	}
	waitText := func(sel, want string) string {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
			s, err := chromedp.Run(sctx, chromedp.TextContent(chromedp.CSS(sel)))
			scancel()
			if err == nil && strings.Contains(s, want) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: want text %q, have %q (err %v)", sel, want, s, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	shot := func(name string) {
		t.Helper()
		step("let charts settle", chromedp.Sleep(250*time.Millisecond))
		sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
		defer scancel()
		png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		p := filepath.Join(artifacts, name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}

	// Login: a wrong credential is refused, the right one lets us in.
	step("open the console", chromedp.Navigate(srv.URL+"/console/"), chromedp.WaitVisible(chromedp.ID("credential")))
	shot("console-login.png")
	step("sign in with a wrong credential",
		chromedp.SendKeys(chromedp.ID("credential"), "not-the-credential"),
		chromedp.Click(chromedp.CSS(`[data-testid="sign-in"]`)))
	waitText(".login-notice", "not accepted")
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(document.getElementById("credential").value = "", true)`)); err != nil {
		t.Fatal(err)
	}
	step("sign in",
		chromedp.SendKeys(chromedp.ID("credential"), adminToken),
		chromedp.Click(chromedp.CSS(`[data-testid="sign-in"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-endpoint="fraud"]`)))

	// The endpoints list.
	list := text(`[data-testid="endpoints"]`)
	for _, want := range []string{"fraud", "Succeeded", "key", "blue90%", "green10%", "shadow20%", "churn", "Creating", "aml_token",
		"https://fraud.local.inference.localhost:8443/score"} {
		if !strings.Contains(list, want) {
			t.Errorf("endpoints list lacks %q:\n%s", want, list)
		}
	}
	shot("console-endpoints.png")

	// The endpoint: deployments, instances, last error; no key on the page.
	step("open the endpoint", chromedp.Click(chromedp.CSS(`tr[data-endpoint="fraud"] a`)),
		chromedp.WaitVisible(chromedp.CSS(`section[data-deployment="blue"]`)))
	if got := text(`[data-testid="endpoint-name"]`); got != "fraud" {
		t.Errorf("endpoint name %q", got)
	}
	if got := text(`section[data-deployment="blue"]`); !strings.Contains(got, "2/2 ready") || !strings.Contains(got, "fraud-blue-4-1") {
		t.Errorf("blue deployment card: %s", got)
	}
	if got := text(`section[data-deployment="shadow"]`); !strings.Contains(got, "No module named 'xgboost'") || !strings.Contains(got, "0/1 ready") {
		t.Errorf("shadow deployment card lacks its error: %s", got)
	}
	html := get("read the page", chromedp.OuterHTML(chromedp.CSS("html")))
	if strings.Contains(html, primaryKey) || f.listKeysCalls.Load() != 0 {
		t.Errorf("keys were fetched or shown before asked (listKeys calls: %d)", f.listKeysCalls.Load())
	}
	shot("console-endpoint.png")

	// Keys only on request, and gone again when hidden.
	step("show keys", chromedp.Click(chromedp.CSS(`[data-testid="show-keys"]`)))
	waitText(`[data-testid="keys"]`, primaryKey)
	step("hide keys", chromedp.Click(chromedp.CSS(`[data-testid="show-keys"]`)))
	html = get("read the page", chromedp.OuterHTML(chromedp.CSS("html")))
	if strings.Contains(html, primaryKey) {
		t.Error("the primary key stays on the page after hide keys")
	}

	// Metrics: charts drawn from /v1/stats.
	step("open metrics", chromedp.Click(chromedp.CSS(`a[data-tab="metrics"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="chart-latency"] canvas`)))
	waitText(".tiles", "Requests")
	tiles := text(".tiles")
	if strings.Contains(tiles, "Requests0") {
		t.Errorf("metrics tiles show no traffic: %s", tiles)
	}
	shot("console-metrics.png")

	// Logs.
	step("open logs", chromedp.Click(chromedp.CSS(`a[data-tab="logs"]`)))
	waitText(`[data-testid="logs"]`, "init() done")
	if got := text(`[data-testid="logs"]`); !strings.Contains(got, "[inference-server]") || !strings.Contains(got, "tail=200") {
		t.Errorf("logs asked for the wrong container or tail: %s", got)
	}
	shot("console-logs.png")

	// The test form: send a request to blue and see the answer.
	body := `{"data": [[1,2,3,4,5,6,7,8,9,10],[10,9,8,7,6,5,4,3,2,1]]}`
	step("open test", chromedp.Click(chromedp.CSS(`a[data-tab="test"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid="test-body"]`)),
		chromedp.WaitReady(chromedp.CSS(`[data-testid="test-deployment"] option[value="blue"]`)),
		chromedp.SetValue(chromedp.CSS(`[data-testid="test-deployment"]`), "blue"),
		chromedp.SetValue(chromedp.CSS(`[data-testid="test-body"]`), body),
		chromedp.Click(chromedp.CSS(`[data-testid="test-send"]`)))
	waitText(`[data-testid="answer-status"]`, "200")
	if got := text(`[data-testid="answer-body"]`); !strings.Contains(got, `"predictions"`) || !strings.Contains(got, "11055.977245525679") {
		t.Errorf("answer body %q", got)
	}
	if got := text(`[data-testid="answer-headers"]`); !strings.Contains(got, "Azureml-Model-Deployment") || !strings.Contains(got, "X-Request-Id") {
		t.Errorf("answer headers %q", got)
	}
	f.mu.Lock()
	if len(f.invoked) != 1 || f.invoked[0] != (InvokeRequest{Endpoint: "fraud", Deployment: "blue", Body: body}) {
		t.Errorf("Invoke got %+v, want one call for fraud/blue with the form's body", f.invoked)
	}
	f.mu.Unlock()
	shot("console-test.png")

	// Sign out forgets the credential.
	step("sign out", chromedp.Click(chromedp.CSS(`[data-testid="sign-out"]`)), chromedp.WaitVisible(chromedp.ID("credential")))
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	stored, err := chromedp.Run(sctx, chromedp.Evaluate[int](`sessionStorage.length`))
	if err != nil {
		t.Fatal(err)
	}
	if stored != 0 {
		t.Errorf("sessionStorage holds %d items after sign out", stored)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(exceptions) > 0 {
		t.Errorf("the page threw:\n%s", strings.Join(exceptions, "\n"))
	}
	for _, l := range consoleLines {
		if strings.Contains(l, adminToken) {
			t.Errorf("the credential was logged to the browser console: %s", l)
		}
	}
}
