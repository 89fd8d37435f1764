package main

// End-to-end test of issue 5 item 4: a real `moe serve --otlp-endpoint`
// in front of a real model host and Python worker exports its spans to a
// test OTLP/HTTP receiver on loopback, and a W3C traceparent sent by the
// client reaches the scoring script with the same trace id.

import (
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"

	"github.com/moe-serving/moe/internal/moetest"
)

// otlpSpan is a received span with its resource's attributes.
type otlpSpan struct {
	name, traceID, spanID, parentID string
	resource, attrs                 map[string]string
}

// otlpReceiver is a minimal OTLP/HTTP collector: it accepts protobuf
// POST /v1/traces and keeps every span.
type otlpReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	spans []otlpSpan
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	r := &otlpReceiver{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
			http.Error(w, "want POST /v1/traces", http.StatusNotFound)
			return
		}
		var body io.Reader = req.Body
		if req.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		b, err := io.ReadAll(io.LimitReader(body, 16<<20))
		var msg coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(b, &msg)
		}
		if err != nil {
			t.Errorf("otlp receiver: bad export request (%s): %v", req.Header.Get("Content-Type"), err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range msg.ResourceSpans {
			res := map[string]string{}
			for _, kv := range rs.GetResource().GetAttributes() {
				res[kv.Key] = kv.GetValue().GetStringValue()
			}
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					attrs := map[string]string{}
					for _, kv := range sp.Attributes {
						attrs[kv.Key] = anyString(kv.GetValue())
					}
					r.spans = append(r.spans, otlpSpan{name: sp.Name, traceID: hex.EncodeToString(sp.TraceId),
						spanID: hex.EncodeToString(sp.SpanId), parentID: hex.EncodeToString(sp.ParentSpanId),
						resource: res, attrs: attrs})
				}
			}
		}
		r.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(r.Close)
	return r
}

// anyString renders a scalar attribute value.
func anyString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(x.DoubleValue, 'g', -1, 64)
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(x.BoolValue)
	}
	return v.String()
}

// wait returns the spans of a trace once want(spans) holds, or fails the
// test after timeout.
func (r *otlpReceiver) wait(t *testing.T, traceID string, timeout time.Duration, want func([]otlpSpan) bool) []otlpSpan {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r.mu.Lock()
		var got []otlpSpan
		for _, sp := range r.spans {
			if sp.traceID == traceID {
				got = append(got, sp)
			}
		}
		r.mu.Unlock()
		if want(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("the receiver did not get the spans of trace %s within %s; it got: %+v", traceID, timeout, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tracingPython is the interpreter for the scoring script (no packages
// needed): MOE_TEST_PYTHON or /usr/bin/python3.
func tracingPython(t *testing.T) string {
	py := os.Getenv("MOE_TEST_PYTHON")
	if py == "" {
		py = "/usr/bin/python3"
	}
	if _, err := exec.LookPath(py); err != nil {
		t.Skipf("no Python interpreter at %s (set MOE_TEST_PYTHON): %v", py, err)
	}
	return py
}

func TestTracing_EndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: starts moe serve and Python workers")
	}
	python := tracingPython(t)
	recv := newOTLPReceiver(t)
	// Export batches every 100 ms (gateway and hosts inherit it), so the
	// spans arrive within a few seconds.
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")

	dir := t.TempDir()
	w := func(p, s string) { moetest.WriteFile(t, filepath.Join(dir, p), s) }
	w("model/model.txt", "no model needed\n")
	w("code/score.py", `def init():
    pass

def run(data, request_headers):
    h = {k.lower(): v for k, v in request_headers.items()}
    return {"traceparent": h.get("traceparent"), "tracestate": h.get("tracestate")}
`)
	w("env/conda.yml", "name: env\ndependencies:\n  - python=3.11\n")
	w("endpoint.yml", "name: traced\nauth_mode: key\n")
	w("deployment.yml", `name: blue
endpoint_name: traced
model:
  path: model/
code_configuration:
  code: code/
  scoring_script: score.py
environment:
  conda_file: env/conda.yml
  image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest
instance_type: Standard_DS3_v2
instance_count: 1
`)

	srv := moetest.Start(t, t.TempDir(), "--python", python, "--otlp-endpoint", recv.URL)
	srv.MustCLI("online-endpoint", "create", "-f", filepath.Join(dir, "endpoint.yml"))
	srv.MustCLI("online-deployment", "create", "-f", filepath.Join(dir, "deployment.yml"), "--all-traffic")
	key, _ := srv.Keys("traced")

	const (
		traceID = "0af7651916cd43dd8448eb211c80319c"
		caller  = "b7ad6b7169203331"
	)
	sent := time.Now()
	resp, body := srv.Score(srv.ScoringURL("traced"), key, []byte(`{"data": [1]}`),
		"traceparent", "00-"+traceID+"-"+caller+"-01", "tracestate", "congo=t61rcWkgMzE")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("score: %s: %s", resp.Status, body)
	}
	if tp := resp.Header.Get("traceparent"); tp != "" {
		t.Errorf("answer carries traceparent %q", tp)
	}
	var seen struct{ Traceparent, Tracestate string }
	if err := json.Unmarshal(body, &seen); err != nil {
		t.Fatalf("answer %q: %v", body, err)
	}
	// (a) the script saw the caller's trace, under a span of moe's
	parts := strings.Split(seen.Traceparent, "-")
	if len(parts) != 4 || parts[1] != traceID || parts[2] == caller || parts[3] != "01" {
		t.Fatalf("run() saw traceparent %q; want trace %s, sampled, a parent other than the caller's", seen.Traceparent, traceID)
	}
	if seen.Tracestate != "congo=t61rcWkgMzE" {
		t.Errorf("run() saw tracestate %q; want the caller's", seen.Tracestate)
	}

	// (b) gateway and host spans of that trace, linked caller → score →
	// upstream → run, and run is the parent the script saw
	byName := func(spans []otlpSpan) map[string]otlpSpan {
		m := map[string]otlpSpan{}
		for _, sp := range spans {
			m[sp.name] = sp
		}
		return m
	}
	spans := byName(recv.wait(t, traceID, 10*time.Second, func(s []otlpSpan) bool {
		m := byName(s)
		_, a := m["score"]
		_, b := m["upstream"]
		_, c := m["run"]
		return a && b && c
	}))
	t.Logf("gateway and host spans received %s after the request", time.Since(sent).Round(time.Millisecond))
	score, up, run := spans["score"], spans["upstream"], spans["run"]
	if score.parentID != caller {
		t.Errorf("score parent %s; want the caller's span %s", score.parentID, caller)
	}
	if up.parentID != score.spanID {
		t.Errorf("upstream parent %s; want score %s", up.parentID, score.spanID)
	}
	if run.parentID != up.spanID {
		t.Errorf("run parent %s; want upstream %s", run.parentID, up.spanID)
	}
	if parts[2] != run.spanID {
		t.Errorf("run() saw parent %s; want the host's run span %s", parts[2], run.spanID)
	}
	for _, c := range []struct {
		sp        otlpSpan
		key, want string
	}{
		{score, "service.name", "moe-gateway"},
		{up, "service.name", "moe-gateway"},
		{run, "service.name", "moe-host"},
		{run, "moe.endpoint", "traced"},
		{run, "moe.deployment", "blue"},
	} {
		if got := c.sp.resource[c.key]; got != c.want {
			t.Errorf("%s span resource %s = %q; want %q", c.sp.name, c.key, got, c.want)
		}
	}
	if run.resource["moe.instance"] == "" || run.resource["moe.instance"] != score.attrs["moe.instance"] {
		t.Errorf("run resource moe.instance %q, score span moe.instance %q; want the same instance", run.resource["moe.instance"], score.attrs["moe.instance"])
	}
	for k, want := range map[string]string{"moe.endpoint": "traced", "moe.deployment": "blue"} {
		if got := score.attrs[k]; got != want {
			t.Errorf("score span %s = %q; want %q", k, got, want)
		}
	}
	if score.attrs["http.response.status_code"] != "200" {
		t.Errorf("score span http.response.status_code = %q; want 200", score.attrs["http.response.status_code"])
	}
	if _, ok := run.attrs["moe.run.exec_ms"]; !ok {
		t.Errorf("run span has no moe.run.exec_ms: %v", run.attrs)
	}
}
