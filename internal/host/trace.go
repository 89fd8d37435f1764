package host

import (
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Span attribute keys of the host's "run" span.
const (
	attrStatus    = attribute.Key("http.response.status_code")
	attrRequestID = attribute.Key("moe.request_id")
	attrWorker    = attribute.Key("moe.worker")
	attrExecMS    = attribute.Key("moe.run.exec_ms")
	attrRunFailed = attribute.Key("moe.run.failed")
)

const hdrTraceparent = "Traceparent"

// traceContext is the W3C propagator (a zero-size value).
var traceContext propagation.TraceContext

// runTrace carries what score learns for the run span. It exists only
// while tracing.
type runTrace struct {
	traceparent string // the run span, for the script's request_headers
	ran         bool   // a worker answered
	worker      int
	execUS      uint32 // run()'s own time, as the worker measured it
}

// scoreTraced is score inside a "run" server span whose parent is the
// request's traceparent (the gateway's upstream span). The span covers
// reading the body, waiting for a free worker and the worker's answer.
func (h *hostRun) scoreTraced(w http.ResponseWriter, r *http.Request) {
	ctx := traceContext.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	_, span := h.cfg.Tracer.Start(ctx, "run", trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	sc := span.SpanContext()
	tr := &runTrace{traceparent: "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String()}
	sw := &statusWriter{ResponseWriter: w}
	h.score(sw, r, tr)

	hdr := w.Header()
	span.SetAttributes(attrStatus.Int(sw.status), attrRequestID.String(first(hdr["X-Request-Id"])))
	if tr.ran {
		span.SetAttributes(attrWorker.Int(tr.worker), attrExecMS.Float64(float64(tr.execUS)/1000))
	}
	failed := first(hdr["X-Ms-Run-Function-Failed"]) == "True"
	span.SetAttributes(attrRunFailed.Bool(failed))
	if failed || sw.status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(sw.status))
	}
}

// statusWriter records the status written through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
