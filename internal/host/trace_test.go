package host

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

const (
	upstreamTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	upstreamSpan   = "00f067aa0ba902b7"
	upstreamParent = "00-" + upstreamTrace + "-" + upstreamSpan + "-01"
)

// traceScript returns the trace headers run() got.
const traceScript = `def init():
    pass

def run(data, request_headers):
    h = {k.lower(): v for k, v in request_headers.items()}
    return {"traceparent": h.get("traceparent"), "tracestate": h.get("tracestate")}
`

type seen struct{ Traceparent, Tracestate *string }

func scoreSeen(t *testing.T, url string, hdr map[string]string) seen {
	t.Helper()
	status, _, body := do(t, "POST", url+"/score", `{"x": 1}`, hdr)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	var s seen
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("answer %q: %v", body, err)
	}
	return s
}

// TestHost_TraceOff: without a tracer the script gets the request's trace
// headers as they came (real Python worker).
func TestHost_TraceOff(t *testing.T) {
	th := startHost(t, Config{CodeDir: writeScript(t, traceScript)})
	s := scoreSeen(t, th.URL, map[string]string{"traceparent": upstreamParent, "tracestate": "vendor=x"})
	if s.Traceparent == nil || *s.Traceparent != upstreamParent {
		t.Errorf("run() got traceparent %v; want %q", s.Traceparent, upstreamParent)
	}
	if s.Tracestate == nil || *s.Tracestate != "vendor=x" {
		t.Errorf("run() got tracestate %v; want vendor=x", s.Tracestate)
	}
	s = scoreSeen(t, th.URL, nil)
	if s.Traceparent != nil {
		t.Errorf("run() got traceparent %q without one sent", *s.Traceparent)
	}
}

// TestHost_TraceOn: with a tracer the host records a "run" span under the
// request's traceparent and the script sees that span as its parent (real
// Python worker).
func TestHost_TraceOn(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	th := startHost(t, Config{CodeDir: writeScript(t, traceScript), Tracer: tp.Tracer("test")})

	s := scoreSeen(t, th.URL, map[string]string{"traceparent": upstreamParent, "tracestate": "vendor=x", "x-request-id": "trace-me"})
	var run sdktrace.ReadOnlySpan
	deadline := time.Now().Add(5 * time.Second)
	for run == nil && time.Now().Before(deadline) {
		if ended := rec.Ended(); len(ended) > 0 {
			run = ended[0]
		} else {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if run == nil {
		t.Fatal("no span ended within 5s")
	}
	if run.Name() != "run" || run.SpanKind() != trace.SpanKindServer {
		t.Errorf("span %q kind %v; want run, server", run.Name(), run.SpanKind())
	}
	if p := run.Parent(); p.TraceID().String() != upstreamTrace || p.SpanID().String() != upstreamSpan || !p.IsRemote() {
		t.Errorf("run parent %s/%s; want the gateway's %s/%s", p.TraceID(), p.SpanID(), upstreamTrace, upstreamSpan)
	}
	want := "00-" + upstreamTrace + "-" + run.SpanContext().SpanID().String() + "-01"
	if s.Traceparent == nil || *s.Traceparent != want {
		t.Errorf("run() got traceparent %v; want the run span %q", s.Traceparent, want)
	}
	if s.Tracestate == nil || *s.Tracestate != "vendor=x" {
		t.Errorf("run() got tracestate %v; want vendor=x", s.Tracestate)
	}
	got := map[string]string{}
	for _, kv := range run.Attributes() {
		got[string(kv.Key)] = kv.Value.String()
	}
	for k, v := range map[string]string{"http.response.status_code": "200", "moe.request_id": "trace-me", "moe.worker": "0", "moe.run.failed": "false"} {
		if got[k] != v {
			t.Errorf("run span %s = %q; want %q", k, got[k], v)
		}
	}
	if _, ok := got["moe.run.exec_ms"]; !ok {
		t.Errorf("run span has no moe.run.exec_ms: %v", got)
	}
}

// TestAppendRequestMeta_Traceparent: a traceparent given to
// appendRequestMeta replaces the request's own, or is added.
func TestAppendRequestMeta_Traceparent(t *testing.T) {
	const mine = "00-" + upstreamTrace + "-1111111111111111-01"
	for _, tc := range []struct {
		name        string
		header      http.Header
		traceparent string
		want        []string // every Traceparent pair, in order
	}{
		{"KeptWithoutTracing", http.Header{"Traceparent": {upstreamParent}, "A": {"1"}}, "", []string{upstreamParent}},
		{"Replaced", http.Header{"Traceparent": {upstreamParent}, "A": {"1"}}, mine, []string{mine}},
		{"Added", http.Header{"A": {"1"}, "Zz": {"2"}}, mine, []string{mine}},
		{"NoneEither", http.Header{"A": {"1"}}, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, _ := url.Parse("http://127.0.0.1/score?x=1")
			r := &http.Request{Method: "POST", URL: u, Header: tc.header, Host: "127.0.0.1"}
			meta := appendRequestMeta(nil, r, tc.traceparent)
			var got, names []string
			for len(meta) > 0 {
				name, value, rest, err := nextPair(meta)
				if err != nil {
					t.Fatal(err)
				}
				meta = rest
				names = append(names, string(name))
				if string(name) == hdrTraceparent {
					got = append(got, string(value))
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("Traceparent pairs %q; want %q", got, tc.want)
			}
			wantPairs := 4 + len(tc.want) // :method, :path, :query, Host
			for k, vs := range tc.header {
				if k != hdrTraceparent {
					wantPairs += len(vs)
				}
			}
			if len(names) != wantPairs {
				t.Errorf("pairs %q: a header is missing or doubled", names)
			}
		})
	}
}
