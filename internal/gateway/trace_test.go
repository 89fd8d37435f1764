package gateway

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

const (
	callerTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpan   = "00f067aa0ba902b7"
	callerParent = "00-" + callerTrace + "-" + callerSpan + "-01"
)

// newTracer returns a tracer whose ended spans the recorder keeps.
func newTracer(t *testing.T) (trace.Tracer, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(t.Context()) })
	return tp.Tracer("test"), rec
}

// endedSpans waits until n spans have ended (the score span ends after the
// answer is written, so possibly after the client has it).
func endedSpans(t *testing.T, rec *tracetest.SpanRecorder, n int) map[string]sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(rec.Ended()) < n && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	out := map[string]sdktrace.ReadOnlySpan{}
	for _, sp := range rec.Ended() {
		out[sp.Name()] = sp
	}
	if len(rec.Ended()) != n {
		t.Fatalf("%d spans ended (%v); want %d", len(rec.Ended()), out, n)
	}
	return out
}

func attrs(sp sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range sp.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// parseTraceparent splits a well-formed version-00 traceparent.
func parseTraceparent(t *testing.T, v string) (traceID, spanID string) {
	t.Helper()
	p := strings.Split(v, "-")
	if len(p) != 4 || p[0] != "00" || len(p[1]) != 32 || len(p[2]) != 16 || len(p[3]) != 2 {
		t.Fatalf("traceparent %q is not 00-<trace>-<span>-<flags>", v)
	}
	return p[1], p[2]
}

func TestGateway_TraceOff(t *testing.T) {
	blue := newBackend(t, "blue", nil)
	fraud := newKeyEndpoint("fraud", []Weight{{"blue", 100}}, deployment("blue", time.Second, blue.instance("blue-0")))
	_, gw := newGateway(t, Config{}, table(fraud))
	for _, tp := range []string{callerParent, "00-not-a-trace-01", ""} {
		hdr := map[string]string{"traceparent": tp, "tracestate": "vendor=x"}
		a := do(t, gw.Client(), gw.URL, call{host: "fraud" + testHostSuffix, path: "/score", key: "fraud-primary", header: hdr})
		if a.status != http.StatusOK {
			t.Fatalf("traceparent %q: status %d; want 200 (%s)", tp, a.status, a.body)
		}
		h := blue.lastHeader()
		if got := h.Get("traceparent"); got != tp {
			t.Errorf("instance got traceparent %q; want the caller's %q unchanged", got, tp)
		}
		if got := h.Get("tracestate"); got != "vendor=x" {
			t.Errorf("instance got tracestate %q; want the caller's", got)
		}
		if a.header.Get("traceparent") != "" {
			t.Errorf("answer carries a traceparent: %q", a.header.Get("traceparent"))
		}
	}
}

func TestGateway_TraceOn(t *testing.T) {
	blue := newBackend(t, "blue", nil)
	fraud := newKeyEndpoint("fraud", []Weight{{"blue", 100}}, deployment("blue", time.Second, blue.instance("blue-0")))
	tracer, rec := newTracer(t)
	_, gw := newGateway(t, Config{Tracer: tracer}, table(fraud))

	a := do(t, gw.Client(), gw.URL, call{host: "fraud" + testHostSuffix, path: "/score", key: "fraud-primary",
		header: map[string]string{"traceparent": callerParent, "tracestate": "vendor=x", "x-request-id": "trace-me"}})
	if a.status != http.StatusOK {
		t.Fatalf("status %d; want 200 (%s)", a.status, a.body)
	}
	spans := endedSpans(t, rec, 2)
	score, up := spans["score"], spans["upstream"]
	if score == nil || up == nil {
		t.Fatalf("spans %v; want score and upstream", spans)
	}

	// The caller's span is the parent of score, score of upstream, and the
	// instance is told upstream is its parent.
	if got := score.Parent(); got.TraceID().String() != callerTrace || got.SpanID().String() != callerSpan || !got.IsRemote() {
		t.Errorf("score parent = %s/%s remote=%v; want the caller's %s/%s", got.TraceID(), got.SpanID(), got.IsRemote(), callerTrace, callerSpan)
	}
	if score.SpanKind() != trace.SpanKindServer || up.SpanKind() != trace.SpanKindClient {
		t.Errorf("kinds score=%v upstream=%v; want server, client", score.SpanKind(), up.SpanKind())
	}
	if up.Parent().SpanID() != score.SpanContext().SpanID() || up.SpanContext().TraceID().String() != callerTrace {
		t.Errorf("upstream parent %s; want score %s in trace %s", up.Parent().SpanID(), score.SpanContext().SpanID(), callerTrace)
	}
	h := blue.lastHeader()
	traceID, spanID := parseTraceparent(t, h.Get("traceparent"))
	if traceID != callerTrace || spanID != up.SpanContext().SpanID().String() {
		t.Errorf("instance got traceparent %q; want trace %s, parent upstream %s", h.Get("traceparent"), callerTrace, up.SpanContext().SpanID())
	}
	if got := h.Get("tracestate"); got != "vendor=x" {
		t.Errorf("instance got tracestate %q; want vendor=x", got)
	}
	if a.header.Get("traceparent") != "" {
		t.Errorf("answer carries a traceparent: %q", a.header.Get("traceparent"))
	}

	for k, want := range map[attribute.Key]attribute.Value{
		attrEndpoint:    attribute.StringValue("fraud"),
		attrDeployment:  attribute.StringValue("blue"),
		attrInstance:    attribute.StringValue("blue-0"),
		attrStatus:      attribute.IntValue(200),
		attrModelStatus: attribute.IntValue(200),
		attrRequestID:   attribute.StringValue("trace-me"),
	} {
		if got := attrs(score)[k]; got != want {
			t.Errorf("score %s = %v; want %v", k, got.String(), want.String())
		}
	}
	if got := attrs(up)[attrInstance]; got.AsString() != "blue-0" {
		t.Errorf("upstream %s = %q; want blue-0", attrInstance, got.String())
	}
	if got := attrs(up)[attrStatus]; got.AsInt64() != 200 {
		t.Errorf("upstream %s = %v; want 200", attrStatus, got.String())
	}
}

// TestGateway_TraceParse feeds the gateway traceparent values: valid ones
// become the score span's parent, malformed ones are ignored (a new trace,
// never a 400).
func TestGateway_TraceParse(t *testing.T) {
	blue := newBackend(t, "blue", nil)
	fraud := newKeyEndpoint("fraud", []Weight{{"blue", 100}}, deployment("blue", time.Second, blue.instance("blue-0")))
	for _, tc := range []struct {
		name, traceparent string
		valid             bool
	}{
		{"Valid", callerParent, true},
		{"NotSampled", "00-" + callerTrace + "-" + callerSpan + "-00", true},
		{"FutureVersionWithMoreFields", "cc-" + callerTrace + "-" + callerSpan + "-01-what-the-future-holds", true},
		{"Missing", "", false},
		{"Garbage", "hello", false},
		{"UpperCaseHex", "00-" + strings.ToUpper(callerTrace) + "-" + callerSpan + "-01", false},
		{"ZeroTraceID", "00-" + strings.Repeat("0", 32) + "-" + callerSpan + "-01", false},
		{"ZeroSpanID", "00-" + callerTrace + "-" + strings.Repeat("0", 16) + "-01", false},
		{"ShortTraceID", "00-" + callerTrace[:30] + "-" + callerSpan + "-01", false},
		{"VersionFF", "ff-" + callerTrace + "-" + callerSpan + "-01", false},
		{"Version00WithMoreFields", callerParent + "-extra", false},
		{"BadFlags", "00-" + callerTrace + "-" + callerSpan + "-0x", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tracer, rec := newTracer(t)
			_, gw := newGateway(t, Config{Tracer: tracer}, table(fraud))
			a := do(t, gw.Client(), gw.URL, call{host: "fraud" + testHostSuffix, path: "/score", key: "fraud-primary",
				header: map[string]string{"traceparent": tc.traceparent}})
			if a.status != http.StatusOK {
				t.Fatalf("status %d; want 200 (%s)", a.status, a.body)
			}
			sent := blue.lastHeader().Get("traceparent")
			traceID, _ := parseTraceparent(t, sent)
			if tc.name == "NotSampled" {
				// the caller decided not to record: no spans, but the trace
				// goes on with the flag kept
				if traceID != callerTrace || !strings.HasSuffix(sent, "-00") {
					t.Errorf("instance got %q; want trace %s, not sampled", sent, callerTrace)
				}
				if n := len(rec.Ended()); n != 0 {
					t.Errorf("%d spans recorded for an unsampled trace; want 0", n)
				}
				return
			}
			score := endedSpans(t, rec, 2)["score"]
			if tc.valid {
				if score.Parent().SpanID().String() != callerSpan || traceID != callerTrace {
					t.Errorf("score parent %s, trace %s; want the caller's %s, %s", score.Parent().SpanID(), traceID, callerSpan, callerTrace)
				}
				return
			}
			if score.Parent().IsValid() {
				t.Errorf("score has parent %s; want a new trace", score.Parent().SpanID())
			}
			if traceID == callerTrace || traceID != score.SpanContext().TraceID().String() {
				t.Errorf("instance got trace %s; want the new trace %s", traceID, score.SpanContext().TraceID())
			}
		})
	}
}

// TestGateway_TraceRefused: a request refused before any instance has one
// span, with the status and, for 429, the limit.
func TestGateway_TraceRefused(t *testing.T) {
	blue := newBackend(t, "blue", nil)
	fraud := newKeyEndpoint("fraud", []Weight{{"blue", 100}}, deployment("blue", time.Second, blue.instance("blue-0")))
	fraud.MaxRequestsPerSecond = 1
	tracer, rec := newTracer(t)
	_, gw := newGateway(t, Config{Tracer: tracer}, table(fraud))

	a := do(t, gw.Client(), gw.URL, call{host: "fraud" + testHostSuffix, path: "/score", key: "wrong",
		header: map[string]string{"traceparent": callerParent}})
	if a.status != http.StatusUnauthorized {
		t.Fatalf("status %d; want 401", a.status)
	}
	score := endedSpans(t, rec, 1)["score"]
	if got := attrs(score)[attrStatus]; got.AsInt64() != 401 {
		t.Errorf("score %s = %v; want 401", attrStatus, got.String())
	}
	if score.Parent().SpanID().String() != callerSpan {
		t.Errorf("score parent %s; want %s", score.Parent().SpanID(), callerSpan)
	}

	var limited bool
	for range 5 {
		a = do(t, gw.Client(), gw.URL, call{host: "fraud" + testHostSuffix, path: "/score", key: "fraud-primary"})
		if a.status == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("no 429 from a 1/s rate limit in 5 requests")
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, sp := range rec.Ended() {
			if sp.Name() == "score" && attrs(sp)[attrStatus].AsInt64() == 429 {
				if got := attrs(sp)[attrLimit].AsString(); got != "max_requests_per_second" {
					t.Errorf("429 score span %s = %q; want max_requests_per_second", attrLimit, got)
				}
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Error("no score span with status 429")
}
