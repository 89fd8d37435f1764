package gateway

// These tests run the gateway on loopback in front of httptest.NewServer
// backends that stand in for model hosts. That seam is deliberate: the real
// model host (internal/host) has its own tests, and what the gateway owes an
// instance is plain HTTP, which a stand-in speaks exactly.

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moe-serving/moe/internal/auth"
)

const testHostSuffix = ".local.inference.localhost"

// backend is a stand-in model host. It records what it received.
type backend struct {
	*httptest.Server
	hits   atomic.Int64
	header atomic.Pointer[http.Header]
	path   atomic.Pointer[string]
}

// newBackend starts a model-host stand-in; h may be nil for one that answers
// 200 with its name.
func newBackend(t testing.TB, name string, h http.HandlerFunc) *backend {
	t.Helper()
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `"`+name+`"`)
		}
	}
	b := &backend{}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		hdr := r.Header.Clone()
		b.header.Store(&hdr)
		p := r.URL.RequestURI()
		b.path.Store(&p)
		h(w, r)
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *backend) instance(id string) *Instance {
	return &Instance{ID: id, Addr: strings.TrimPrefix(b.URL, "http://")}
}

func (b *backend) lastHeader() http.Header {
	if h := b.header.Load(); h != nil {
		return *h
	}
	return nil
}

func (b *backend) lastPath() string {
	if p := b.path.Load(); p != nil {
		return *p
	}
	return ""
}

func deployment(name string, timeout time.Duration, ins ...*Instance) *Deployment {
	return &Deployment{Name: name, RequestTimeout: timeout, MaxConcurrentPerInstance: 1, Instances: ins}
}

// newKeyEndpoint returns a key-auth endpoint with keys "<name>-primary" and
// "<name>-secondary".
func newKeyEndpoint(name string, traffic []Weight, deps ...*Deployment) *Endpoint {
	ep := &Endpoint{
		Name:         name,
		AuthMode:     "key",
		PrimaryKey:   auth.Secret(name + "-primary"),
		SecondaryKey: auth.Secret(name + "-secondary"),
		Traffic:      traffic,
		Deployments:  map[string]*Deployment{},
	}
	for _, d := range deps {
		ep.Deployments[d.Name] = d
	}
	return ep
}

func table(eps ...*Endpoint) *Table {
	t := &Table{Endpoints: map[string]*Endpoint{}}
	for _, ep := range eps {
		t.Endpoints[ep.Name] = ep
	}
	return t
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newGateway serves s.Handler() over plain HTTP on loopback (TLS is covered
// by the Serve tests).
func newGateway(t testing.TB, cfg Config, tbl *Table) (*Server, *httptest.Server) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	s := New(cfg)
	s.SetRoutes(tbl)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, ts
}

// call is one request to the gateway. host is the Host header; empty means
// the gateway's address (path routing).
type call struct {
	method  string
	host    string
	path    string
	key     string // sent as "Bearer <key>" when not empty
	header  map[string]string
	body    io.Reader
	bodyLen int64 // when body is set: -1 sends it chunked
}

type answer struct {
	status int
	header http.Header
	body   string
	proto  int
}

func (a answer) message(t testing.TB) string {
	t.Helper()
	var m struct {
		Message *string `json:"message"`
	}
	if err := json.Unmarshal([]byte(a.body), &m); err != nil || m.Message == nil {
		t.Fatalf("body %q is not {\"message\": ...}: %v", a.body, err)
	}
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q; want application/json", ct)
	}
	return *m.Message
}

func do(t testing.TB, c *http.Client, base string, cl call) answer {
	t.Helper()
	method := cl.method
	if method == "" {
		method = http.MethodPost
	}
	body := cl.body
	if body == nil {
		body = strings.NewReader(`{"data": [[1, 2, 3]]}`)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, base+cl.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if cl.bodyLen != 0 {
		req.ContentLength = cl.bodyLen
		if cl.bodyLen < 0 {
			req.Body = io.NopCloser(body) // hide the length: chunked
		}
	}
	if cl.host != "" {
		req.Host = cl.host
	}
	if cl.key != "" {
		req.Header.Set("Authorization", "Bearer "+cl.key)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range cl.header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s (Host %s): %v", method, cl.path, cl.host, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b), proto: resp.ProtoMajor}
}

func TestGateway_Auth(t *testing.T) {
	blue := newBackend(t, "blue", nil)
	fraud := newKeyEndpoint("fraud", []Weight{{"blue", 100}}, deployment("blue", time.Second, blue.instance("blue-0")))
	other := newKeyEndpoint("other", []Weight{{"blue", 100}}, deployment("blue", time.Second, blue.instance("blue-0")))
	type verifyCall struct{ endpoint, mode, token string }
	var (
		mu    sync.Mutex
		calls []verifyCall
	)
	tokenEP := newKeyEndpoint("tok", []Weight{{"blue", 100}}, deployment("blue", time.Second, blue.instance("blue-0")))
	tokenEP.AuthMode = "aml_token"
	noVerifierGW := New(Config{Logger: testLogger(t)})
	noVerifierGW.SetRoutes(table(tokenEP))
	noVerifier := httptest.NewServer(noVerifierGW.Handler())
	t.Cleanup(noVerifier.Close)

	_, gw := newGateway(t, Config{VerifyToken: func(endpoint, mode, token string) error {
		mu.Lock()
		calls = append(calls, verifyCall{endpoint, mode, token})
		mu.Unlock()
		if token != "good-token" {
			return io.ErrUnexpectedEOF
		}
		return nil
	}}, table(fraud, other, tokenEP))
	c := gw.Client()

	tests := []struct {
		name   string
		base   string
		host   string
		header map[string]string
		key    string
		want   int
	}{
		{"missing", gw.URL, "fraud" + testHostSuffix, nil, "", 401},
		{"basic scheme", gw.URL, "fraud" + testHostSuffix, map[string]string{"Authorization": "Basic ZnJhdWQ6eA=="}, "", 401},
		{"empty bearer", gw.URL, "fraud" + testHostSuffix, map[string]string{"Authorization": "Bearer  "}, "", 401},
		{"no scheme", gw.URL, "fraud" + testHostSuffix, map[string]string{"Authorization": "fraud-primary"}, "", 401},
		{"wrong key", gw.URL, "fraud" + testHostSuffix, nil, "fraud-primaryx", 401},
		{"prefix of key", gw.URL, "fraud" + testHostSuffix, nil, "fraud-prim", 401},
		{"other endpoint's key", gw.URL, "fraud" + testHostSuffix, nil, "other-primary", 401},
		{"primary key", gw.URL, "fraud" + testHostSuffix, nil, "fraud-primary", 200},
		{"secondary key", gw.URL, "fraud" + testHostSuffix, nil, "fraud-secondary", 200},
		{"lower-case scheme", gw.URL, "fraud" + testHostSuffix, map[string]string{"Authorization": "bearer fraud-secondary"}, "", 200},
		{"token accepted", gw.URL, "tok" + testHostSuffix, nil, "good-token", 200},
		{"token rejected", gw.URL, "tok" + testHostSuffix, nil, "bad-token", 401},
		{"key on token endpoint", gw.URL, "tok" + testHostSuffix, nil, "tok-primary", 401},
		{"token endpoint without verifier", noVerifier.URL, "tok" + testHostSuffix, nil, "good-token", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := do(t, c, tt.base, call{host: tt.host, path: "/score", key: tt.key, header: tt.header})
			if a.status != tt.want {
				t.Fatalf("status = %d; want %d (body %s)", a.status, tt.want, a.body)
			}
			if tt.want == 401 {
				if msg := a.message(t); strings.Contains(msg, "primary") || strings.Contains(msg, "token\"") {
					t.Errorf("401 message %q echoes a credential", msg)
				}
			}
		})
	}
	t.Run("verifier arguments", func(t *testing.T) {
		mu.Lock()
		defer mu.Unlock()
		want := verifyCall{"tok", "aml_token", "good-token"}
		if len(calls) == 0 || calls[0] != want {
			t.Errorf("VerifyToken calls = %+v; want first %+v", calls, want)
		}
	})
	t.Run("authorization not forwarded", func(t *testing.T) {
		a := do(t, c, gw.URL, call{host: "fraud" + testHostSuffix, path: "/score", key: "fraud-primary"})
		if a.status != 200 {
			t.Fatalf("status = %d; want 200", a.status)
		}
		h := blue.lastHeader()
		if v, ok := h["Authorization"]; ok {
			t.Errorf("instance received Authorization %q; want none", v)
		}
		if h.Get("Content-Type") != "application/json" {
			t.Errorf("instance received Content-Type %q; want application/json", h.Get("Content-Type"))
		}
	})
}

func TestGateway_Routing(t *testing.T) {
	blue := newBackend(t, "blue", nil)
	fraud := newKeyEndpoint("fraud", []Weight{{"blue", 100}}, deployment("blue", time.Second, blue.instance("blue-0")))
	_, gw := newGateway(t, Config{}, table(fraud))
	c := gw.Client()
	tests := []struct {
		name, method, host, path string
		want                     int
		forwarded                string // path the instance must see; "" means not forwarded
	}{
		{"host form score", "POST", "fraud" + testHostSuffix, "/score", 200, "/score"},
		{"host form with port and case", "POST", "FRAUD.Local.Inference.Localhost:8443", "/score?verbose=1", 200, "/score?verbose=1"},
		{"host form swagger", "GET", "fraud" + testHostSuffix, "/swagger.json?version=3", 200, "/swagger.json?version=3"},
		{"host form root", "GET", "fraud" + testHostSuffix, "/", 200, "/"},
		{"host form other path", "POST", "fraud" + testHostSuffix, "/admin", 404, ""},
		{"host form own path", "GET", "fraud" + testHostSuffix, "/-/ready", 200, ""},
		{"host form own unknown path", "GET", "fraud" + testHostSuffix, "/-/score", 404, ""},
		{"path form score", "POST", "", "/endpoints/fraud/score", 200, "/score"},
		{"path form case", "POST", "", "/endpoints/Fraud/score?x=1", 200, "/score?x=1"},
		{"path form swagger", "GET", "", "/endpoints/fraud/swagger.json", 200, "/swagger.json"},
		{"path form other", "POST", "", "/endpoints/fraud/admin", 404, ""},
		{"path form own path", "GET", "", "/endpoints/fraud/-/x", 404, ""},
		{"bare score without endpoint host", "POST", "", "/score", 404, ""},
		{"unknown endpoint by host", "POST", "nope" + testHostSuffix, "/score", 404, ""},
		{"unknown endpoint by path", "POST", "", "/endpoints/nope/score", 404, ""},
		{"nested label", "POST", "a.fraud" + testHostSuffix, "/score", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := blue.hits.Load()
			a := do(t, c, gw.URL, call{method: tt.method, host: tt.host, path: tt.path, key: "fraud-primary"})
			if a.status != tt.want {
				t.Fatalf("status = %d; want %d (body %s)", a.status, tt.want, a.body)
			}
			hit := blue.hits.Load() > before
			switch {
			case tt.forwarded == "" && hit:
				t.Errorf("request reached the instance (path %q); want not forwarded", blue.lastPath())
			case tt.forwarded != "" && !hit:
				t.Errorf("request did not reach the instance")
			case tt.forwarded != "" && blue.lastPath() != tt.forwarded:
				t.Errorf("instance saw path %q; want %q", blue.lastPath(), tt.forwarded)
			}
			if tt.want == 404 && !strings.HasPrefix(tt.path, "/-/") {
				msg := a.message(t)
				if strings.Contains(tt.name, "unknown endpoint") && !strings.Contains(msg, `"nope"`) {
					t.Errorf("message %q does not name the endpoint", msg)
				}
			}
		})
	}
}

func TestGateway_Traffic(t *testing.T) {
	blue := newBackend(t, "blue", nil)
	green := newBackend(t, "green", nil)
	deps := func() []*Deployment {
		return []*Deployment{
			deployment("blue", time.Second, blue.instance("blue-0")),
			deployment("green", time.Second, green.instance("green-0")),
			deployment("red", time.Second), // no ready instance
		}
	}
	fraud := newKeyEndpoint("fraud", []Weight{{"blue", 100}}, deps()...)
	idle := newKeyEndpoint("idle", nil, deps()...)
	broken := newKeyEndpoint("broken", []Weight{{"red", 100}}, deps()...)
	_, gw := newGateway(t, Config{}, table(fraud, idle, broken))
	c := gw.Client()

	tests := []struct {
		name           string
		endpoint       string
		header         string
		want           int
		wantDeployment string // response azureml-model-deployment
		wantMessage    string
	}{
		{"weighted", "fraud", "", 200, "blue", ""},
		{"header targets 0 % deployment", "fraud", "green", 200, "green", ""},
		{"header case-insensitive", "fraud", "GREEN", 200, "green", ""},
		{"header unknown deployment", "fraud", "purple", 404, "", `deployment "purple" not found for endpoint "fraud"`},
		{"no positive weight", "idle", "", 404, "", "endpoint doesn't have any valid deployment with positive weight"},
		{"no positive weight, header still routes", "idle", "green", 200, "green", ""},
		{"no ready instance by weight", "broken", "", 503, "red", `deployment "red" has no ready instance`},
		{"no ready instance by header", "fraud", "red", 503, "red", `deployment "red" has no ready instance`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tt.header != "" {
				hdr["azureml-model-deployment"] = tt.header
			}
			a := do(t, c, gw.URL, call{host: tt.endpoint + testHostSuffix, path: "/score", key: tt.endpoint + "-primary", header: hdr})
			if a.status != tt.want {
				t.Fatalf("status = %d; want %d (body %s)", a.status, tt.want, a.body)
			}
			if got := a.header.Get("azureml-model-deployment"); got != tt.wantDeployment {
				t.Errorf("azureml-model-deployment = %q; want %q", got, tt.wantDeployment)
			}
			if len(a.header.Values("azureml-model-deployment")) > 1 {
				t.Errorf("azureml-model-deployment repeated: %q", a.header.Values("azureml-model-deployment"))
			}
			if tt.want == 200 && a.body != `"`+tt.wantDeployment+`"` {
				t.Errorf("body = %s; want the %s backend's answer", a.body, tt.wantDeployment)
			}
			if tt.wantMessage != "" {
				if msg := a.message(t); msg != tt.wantMessage {
					t.Errorf("message = %q; want %q", msg, tt.wantMessage)
				}
			}
			if reason := a.header.Get("ms-azureml-model-error-reason"); (tt.want == 503) != (reason == "model_not_ready") {
				t.Errorf("ms-azureml-model-error-reason = %q on a %d", reason, a.status)
			}
		})
	}
}

func TestGateway_Timeout(t *testing.T) {
	cancelled := make(chan struct{})
	slow := newBackend(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		// Read the body first, as a model host does: only then does
		// net/http watch the connection and cancel r.Context on close.
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-time.After(10 * time.Second):
			_, _ = io.WriteString(w, "too late")
		}
	})
	fraud := newKeyEndpoint("fraud", []Weight{{"slow", 100}}, deployment("slow", 100*time.Millisecond, slow.instance("slow-0")))
	_, gw := newGateway(t, Config{}, table(fraud))

	start := time.Now()
	a := do(t, gw.Client(), gw.URL, call{host: "fraud" + testHostSuffix, path: "/score", key: "fraud-primary"})
	if a.status != http.StatusRequestTimeout {
		t.Fatalf("status = %d; want 408 (body %s)", a.status, a.body)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("answered after %v; want about 100ms", el)
	}
	if msg := a.message(t); !strings.Contains(msg, `"slow"`) || !strings.Contains(msg, "100 ms") {
		t.Errorf("message = %q; want it to name the deployment and the timeout", msg)
	}
	if a.header.Get("azureml-model-deployment") != "slow" {
		t.Errorf("azureml-model-deployment = %q; want slow", a.header.Get("azureml-model-deployment"))
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Error("the instance's request was not cancelled")
	}
}

func TestGateway_ModelError(t *testing.T) {
	failing := newBackend(t, "failing", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Ms-Run-Function-Failed", "True")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = io.WriteString(w, "An unexpected error occurred in scoring script.")
	})
	teapot := newBackend(t, "teapot", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = io.WriteString(w, `{"message": "bad input"}`)
	})
	strict := newKeyEndpoint("strict", []Weight{{"failing", 100}},
		deployment("failing", time.Second, failing.instance("f-0")),
		deployment("teapot", time.Second, teapot.instance("t-0")))
	pass := newKeyEndpoint("pass", []Weight{{"failing", 100}}, deployment("failing", time.Second, failing.instance("f-0")))
	pass.PassModelStatus = true
	_, gw := newGateway(t, Config{}, table(strict, pass))
	c := gw.Client()

	tests := []struct {
		name, endpoint, header string
		want                   int
		wantStatusHeader       string
		wantReason             string
		wantBody, wantType     string
	}{
		{"500 becomes 424", "strict", "", 424, "500", "model_error", "An unexpected error occurred in scoring script.", "text/plain; charset=utf-8"},
		{"422 becomes 424", "strict", "teapot", 424, "422", "model_error", `{"message": "bad input"}`, "application/json"},
		{"PassModelStatus keeps 500", "pass", "", 500, "", "", "An unexpected error occurred in scoring script.", "text/plain; charset=utf-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tt.header != "" {
				hdr["azureml-model-deployment"] = tt.header
			}
			a := do(t, c, gw.URL, call{host: tt.endpoint + testHostSuffix, path: "/score", key: tt.endpoint + "-primary", header: hdr})
			if a.status != tt.want {
				t.Fatalf("status = %d; want %d", a.status, tt.want)
			}
			if got := a.header.Get("ms-azureml-model-error-statuscode"); got != tt.wantStatusHeader {
				t.Errorf("ms-azureml-model-error-statuscode = %q; want %q", got, tt.wantStatusHeader)
			}
			if got := a.header.Get("ms-azureml-model-error-reason"); got != tt.wantReason {
				t.Errorf("ms-azureml-model-error-reason = %q; want %q", got, tt.wantReason)
			}
			if a.body != tt.wantBody {
				t.Errorf("body = %q; want the model's %q", a.body, tt.wantBody)
			}
			if got := a.header.Get("Content-Type"); got != tt.wantType {
				t.Errorf("Content-Type = %q; want the model's %q", got, tt.wantType)
			}
		})
	}
	t.Run("model headers pass through", func(t *testing.T) {
		a := do(t, c, gw.URL, call{host: "strict" + testHostSuffix, path: "/score", key: "strict-primary"})
		if got := a.header.Get("X-Ms-Run-Function-Failed"); got != "True" {
			t.Errorf("x-ms-run-function-failed = %q; want True", got)
		}
	})
}

func TestGateway_UnreachableInstance(t *testing.T) {
	gone := httptest.NewServer(http.NotFoundHandler())
	addr := strings.TrimPrefix(gone.URL, "http://")
	gone.Close()
	fraud := newKeyEndpoint("fraud", []Weight{{"blue", 100}}, deployment("blue", time.Second, &Instance{ID: "blue-0", Addr: addr}))
	_, gw := newGateway(t, Config{}, table(fraud))
	a := do(t, gw.Client(), gw.URL, call{host: "fraud" + testHostSuffix, path: "/score", key: "fraud-primary"})
	if a.status != http.StatusBadGateway {
		t.Fatalf("status = %d; want 502 (body %s)", a.status, a.body)
	}
	if msg := a.message(t); strings.Contains(msg, addr) {
		t.Errorf("message %q leaks the instance address", msg)
	}
}

func TestGateway_BodyLimit(t *testing.T) {
	var received atomic.Int64
	sink := newBackend(t, "sink", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		received.Store(n)
		if err != nil {
			return // the gateway cut the body
		}
		_, _ = io.WriteString(w, "ok")
	})
	fraud := newKeyEndpoint("fraud", []Weight{{"sink", 100}}, deployment("sink", 5*time.Second, sink.instance("sink-0")))
	const limit = 1024
	_, gw := newGateway(t, Config{MaxBodyBytes: limit}, table(fraud))
	c := gw.Client()

	tests := []struct {
		name      string
		size      int
		chunked   bool
		want      int
		forwarded string // "yes", "no", or "maybe"
	}{
		{"at limit", limit, false, 200, "yes"},
		{"over limit by length", limit + 1, false, 413, "no"},
		{"chunked under limit", limit, true, 200, "yes"},
		// Whether the instance sees the start of the body depends on the
		// transport's write buffer; the client's 413 does not.
		{"chunked over limit", 64 * limit, true, 413, "maybe"},
		{"chunked far over limit", 1 << 20, true, 413, "maybe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := sink.hits.Load()
			cl := call{host: "fraud" + testHostSuffix, path: "/score", key: "fraud-primary",
				body: bytes.NewReader(bytes.Repeat([]byte("x"), tt.size)), bodyLen: int64(tt.size)}
			if tt.chunked {
				cl.bodyLen = -1
			}
			a := do(t, c, gw.URL, cl)
			if a.status != tt.want {
				t.Fatalf("status = %d; want %d (body %s)", a.status, tt.want, a.body)
			}
			if hit := sink.hits.Load() > before; tt.forwarded != "maybe" && hit != (tt.forwarded == "yes") {
				t.Errorf("reached the instance: %v; want %s", hit, tt.forwarded)
			}
			if tt.want == 413 {
				if msg := a.message(t); msg != "request body exceeds 1024 bytes" {
					t.Errorf("message = %q", msg)
				}
			}
			if tt.want == 200 && received.Load() != int64(tt.size) {
				t.Errorf("instance received %d bytes; want %d", received.Load(), tt.size)
			}
		})
	}
}

// TestGateway_BodyLimitAtOnce sends a Content-Length over the limit and then
// no body at all: the 413 must not wait for the upload.
func TestGateway_BodyLimitAtOnce(t *testing.T) {
	sink := newBackend(t, "sink", nil)
	fraud := newKeyEndpoint("fraud", []Weight{{"sink", 100}}, deployment("sink", 5*time.Second, sink.instance("sink-0")))
	_, gw := newGateway(t, Config{MaxBodyBytes: 1024}, table(fraud))
	pr, pw := io.Pipe()
	defer pw.Close()
	start := time.Now()
	a := do(t, gw.Client(), gw.URL, call{host: "fraud" + testHostSuffix, path: "/score", key: "fraud-primary", body: pr, bodyLen: 1 << 30})
	if a.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status = %d; want 413", a.status)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("413 took %v; want it before the body is sent", el)
	}
	if sink.hits.Load() != 0 {
		t.Error("request reached the instance")
	}
}

func TestGateway_RequestID(t *testing.T) {
	blue := newBackend(t, "blue", func(w http.ResponseWriter, r *http.Request) {
		// The model host echoes the id, as the inference server does;
		// the client must still see it once.
		w.Header().Set("x-request-id", r.Header.Get("x-request-id"))
		_, _ = io.WriteString(w, "ok")
	})
	fraud := newKeyEndpoint("fraud", []Weight{{"blue", 100}}, deployment("blue", time.Second, blue.instance("blue-0")))
	_, gw := newGateway(t, Config{}, table(fraud))
	c := gw.Client()
	base := call{host: "fraud" + testHostSuffix, path: "/score", key: "fraud-primary"}

	t.Run("generated", func(t *testing.T) {
		a := do(t, c, gw.URL, base)
		ids := a.header.Values("x-request-id")
		if len(ids) != 1 || len(ids[0]) != 36 {
			t.Fatalf("x-request-id = %q; want one generated UUID", ids)
		}
		if got := blue.lastHeader().Get("x-request-id"); got != ids[0] {
			t.Errorf("instance saw x-request-id %q; want %q", got, ids[0])
		}
	})
	t.Run("echoed and forwarded", func(t *testing.T) {
		cl := base
		cl.header = map[string]string{"x-request-id": "my-id-1", "x-ms-client-request-id": "client-7"}
		a := do(t, c, gw.URL, cl)
		if ids := a.header.Values("x-request-id"); len(ids) != 1 || ids[0] != "my-id-1" {
			t.Errorf("x-request-id = %q; want [my-id-1]", ids)
		}
		h := blue.lastHeader()
		if h.Get("x-request-id") != "my-id-1" || h.Get("x-ms-client-request-id") != "client-7" {
			t.Errorf("instance saw x-request-id %q, x-ms-client-request-id %q; want my-id-1, client-7",
				h.Get("x-request-id"), h.Get("x-ms-client-request-id"))
		}
	})
	t.Run("on gateway errors too", func(t *testing.T) {
		cl := base
		cl.key = "wrong"
		cl.header = map[string]string{"x-request-id": "err-id"}
		a := do(t, c, gw.URL, cl)
		if a.status != 401 || a.header.Get("x-request-id") != "err-id" {
			t.Errorf("status %d, x-request-id %q; want 401, err-id", a.status, a.header.Get("x-request-id"))
		}
	})
	for _, tt := range []struct{ header, want string }{
		{"x-request-id", "x-request-id must not exceed 100 characters"},
		{"x-ms-client-request-id", "x-ms-request-id and x-ms-client-request-id must not exceed 100 characters"},
	} {
		t.Run(tt.header+" too long", func(t *testing.T) {
			before := blue.hits.Load()
			cl := base
			cl.header = map[string]string{tt.header: strings.Repeat("a", 101)}
			a := do(t, c, gw.URL, cl)
			if a.status != http.StatusRequestHeaderFieldsTooLarge {
				t.Fatalf("status = %d; want 431", a.status)
			}
			if msg := a.message(t); msg != tt.want {
				t.Errorf("message = %q; want %q", msg, tt.want)
			}
			if blue.hits.Load() != before {
				t.Error("request reached the instance")
			}
		})
	}
	t.Run("100 characters is fine", func(t *testing.T) {
		cl := base
		cl.header = map[string]string{"x-request-id": strings.Repeat("a", 100)}
		if a := do(t, c, gw.URL, cl); a.status != 200 {
			t.Errorf("status = %d; want 200", a.status)
		}
	})
}

// TestGateway_Streaming proves both bodies are streamed: the client sends
// the rest of a 5 MB body only after the instance has received the first
// MiB, and the instance sends the rest of its answer only after the client
// has read the first MiB of it. A gateway that buffered either body whole
// would deadlock here (caught by the timeouts).
func TestGateway_Streaming(t *testing.T) {
	const (
		total = 5 << 20
		first = 1 << 20
	)
	instanceGotFirst := make(chan struct{})
	clientGotFirst := make(chan struct{})
	var received atomic.Int64
	stream := newBackend(t, "stream", func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 64<<10)
		signalled := false
		for {
			n, err := r.Body.Read(buf)
			if received.Add(int64(n)) >= first && !signalled {
				close(instanceGotFirst)
				signalled = true
			}
			if err != nil {
				break
			}
		}
		chunk := bytes.Repeat([]byte("y"), first)
		_, _ = w.Write(chunk)
		http.NewResponseController(w).Flush()
		select {
		case <-clientGotFirst:
		case <-time.After(10 * time.Second):
			return // the test fails on the client side
		}
		for range total/first - 1 {
			_, _ = w.Write(chunk)
		}
	})
	fraud := newKeyEndpoint("fraud", []Weight{{"stream", 100}}, deployment("stream", 30*time.Second, stream.instance("s-0")))
	_, gw := newGateway(t, Config{}, table(fraud))

	pr, pw := io.Pipe()
	go func() {
		chunk := bytes.Repeat([]byte("x"), first)
		if _, err := pw.Write(chunk); err != nil {
			return
		}
		select {
		case <-instanceGotFirst:
		case <-time.After(10 * time.Second):
			pw.CloseWithError(io.ErrNoProgress)
			return
		}
		for range total/first - 1 {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, _ := http.NewRequestWithContext(t.Context(), "POST", gw.URL+"/score", pr)
	req.Host = "fraud" + testHostSuffix
	req.Header.Set("Authorization", "Bearer fraud-primary")
	resp, err := gw.Client().Do(req)
	if err != nil {
		t.Fatalf("request body was not streamed to the instance: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status = %d; want 200", resp.StatusCode)
	}
	got, err := io.ReadFull(resp.Body, make([]byte, first/2))
	if err != nil {
		t.Fatalf("read first half MiB of the answer: %v", err)
	}
	close(clientGotFirst)
	rest, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		t.Fatalf("read rest of the answer: %v", err)
	}
	if n := int64(got) + rest; n != total {
		t.Errorf("client received %d bytes; want %d (answer not streamed?)", n, total)
	}
	if n := received.Load(); n != total {
		t.Errorf("instance received %d bytes; want %d", n, total)
	}
}

// TestGateway_SetRoutesUnderLoad swaps between two tables while clients
// score; run with -race. Every answer must come from the deployment the
// response header names.
func TestGateway_SetRoutesUnderLoad(t *testing.T) {
	a := newBackend(t, "a", nil)
	b := newBackend(t, "b", nil)
	// 8 clients never pass the pending limit (2 × 4 × 2 = 16 for b); the
	// queue and 429 under table swaps are in breaker_test.go.
	depA := deployment("a", 5*time.Second, a.instance("a-0"), a.instance("a-1"), a.instance("a-2"))
	depB := deployment("b", 5*time.Second, b.instance("b-0"), b.instance("b-1"))
	depA.MaxConcurrentPerInstance, depB.MaxConcurrentPerInstance = 4, 4
	tableA := table(newKeyEndpoint("fraud", []Weight{{"a", 100}}, depA))
	tableB := table(newKeyEndpoint("fraud", []Weight{{"b", 100}}, depB))
	s, gw := newGateway(t, Config{Logger: slog.New(slog.DiscardHandler)}, tableA)
	c := gw.Client()

	const clients, perClient = 8, 50
	stop := make(chan struct{})
	var swaps sync.WaitGroup
	swaps.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if i%2 == 0 {
				s.SetRoutes(tableB)
			} else {
				s.SetRoutes(tableA)
			}
			time.Sleep(100 * time.Microsecond)
		}
	})
	var wg sync.WaitGroup
	var seen [2]atomic.Int64
	for range clients {
		wg.Go(func() {
			for range perClient {
				ans := do(t, c, gw.URL, call{host: "fraud" + testHostSuffix, path: "/score", key: "fraud-primary"})
				dep := ans.header.Get("azureml-model-deployment")
				if ans.status != 200 || ans.body != `"`+dep+`"` {
					t.Errorf("status %d, deployment %q, body %s; want 200 from the named deployment", ans.status, dep, ans.body)
					return
				}
				seen[dep[0]-'a'].Add(1)
			}
		})
	}
	wg.Wait()
	close(stop)
	swaps.Wait()
	if seen[0].Load() == 0 || seen[1].Load() == 0 {
		t.Errorf("answers from a: %d, b: %d; want both tables to have served", seen[0].Load(), seen[1].Load())
	}
	for _, tbl := range []*Table{tableA, tableB} {
		for _, d := range tbl.Endpoints["fraud"].Deployments {
			for _, in := range d.Instances {
				if n := in.Outstanding.Load(); n != 0 {
					t.Errorf("instance %s has %d outstanding after all requests; want 0", in.ID, n)
				}
			}
		}
	}
}

func TestGateway_AccessLog(t *testing.T) {
	blue := newBackend(t, "blue", nil)
	fraud := newKeyEndpoint("fraud", []Weight{{"blue", 100}}, deployment("blue", time.Second, blue.instance("blue-0")))
	var (
		mu  sync.Mutex
		buf bytes.Buffer
	)
	logger := slog.New(slog.NewJSONHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	_, gw := newGateway(t, Config{Logger: logger}, table(fraud))
	do(t, gw.Client(), gw.URL, call{host: "fraud" + testHostSuffix, path: "/score", key: "fraud-primary",
		header: map[string]string{"x-request-id": "log-me"}})
	do(t, gw.Client(), gw.URL, call{host: "fraud" + testHostSuffix, path: "/score", key: "fraud-secondaryx"})

	mu.Lock()
	defer mu.Unlock()
	logs := buf.String()
	for _, secret := range []string{"fraud-primary", "fraud-secondary", "Bearer"} {
		if strings.Contains(logs, secret) {
			t.Errorf("log contains %q:\n%s", secret, logs)
		}
	}
	var found bool
	for line := range strings.Lines(logs) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if rec["msg"] != "score" || rec["request_id"] != "log-me" {
			continue
		}
		found = true
		for k, want := range map[string]any{"level": "INFO", "endpoint": "fraud", "deployment": "blue", "instance": "blue-0", "status": 200.0, "component": "gateway"} {
			if rec[k] != want {
				t.Errorf("access line %s = %v; want %v", k, rec[k], want)
			}
		}
		if _, ok := rec["duration_ms"].(float64); !ok {
			t.Errorf("access line duration_ms = %v; want a number", rec["duration_ms"])
		}
	}
	if !found {
		t.Errorf("no access line for request log-me in:\n%s", logs)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestGateway_EarlyHints(t *testing.T) {
	hints := newBackend(t, "hints", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		_, _ = io.WriteString(w, "ok")
	})
	fraud := newKeyEndpoint("fraud", []Weight{{"hints", 100}}, deployment("hints", time.Second, hints.instance("h-0")))
	_, gw := newGateway(t, Config{}, table(fraud))
	a := do(t, gw.Client(), gw.URL, call{host: "fraud" + testHostSuffix, path: "/score", key: "fraud-primary",
		header: map[string]string{"x-request-id": "hinted"}})
	if a.status != 200 || a.header.Get("x-request-id") != "hinted" || a.header.Get("azureml-model-deployment") != "hints" {
		t.Errorf("status %d, x-request-id %q, azureml-model-deployment %q; want 200, hinted, hints",
			a.status, a.header.Get("x-request-id"), a.header.Get("azureml-model-deployment"))
	}
}
