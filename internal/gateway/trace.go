package gateway

// W3C trace context and spans. With Config.Tracer nil (the default) none of
// this runs: the caller's traceparent and tracestate reach the instance as
// they came, like any other header, and the request path creates no span,
// wraps no context and allocates nothing more. With a tracer:
//
//   - serveHTTP starts the server span "score", child of the caller's
//     traceparent when it is valid (a malformed one is ignored and the
//     request starts a new trace; it is never an error);
//   - forward starts the client span "upstream" for the call to the
//     instance, and rewrite sends the instance a traceparent naming that
//     span (tracestate carried over), which the host continues;
//   - finish ends "score" with what the access log and the Observation
//     report.

import (
	"context"
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Span attribute keys (OpenTelemetry semantic conventions where one
// exists, moe.* otherwise).
const (
	attrMethod      = attribute.Key("http.request.method")
	attrStatus      = attribute.Key("http.response.status_code")
	attrServerAddr  = attribute.Key("server.address")
	attrEndpoint    = attribute.Key("moe.endpoint")
	attrDeployment  = attribute.Key("moe.deployment")
	attrInstance    = attribute.Key("moe.instance")
	attrModelStatus = attribute.Key("moe.model_status_code")
	attrLimit       = attribute.Key("moe.limit")
	attrRequestID   = attribute.Key("moe.request_id")
	attrQueueMS     = attribute.Key("moe.queue_ms")
)

const (
	hdrTraceparent = "Traceparent"
	hdrTracestate  = "Tracestate"
)

// traceContext is the W3C propagator (a zero-size value).
var traceContext propagation.TraceContext

// startScoreSpan starts the request's server span under the caller's trace
// context and puts it in x.r's context. Only called with a tracer.
func (s *Server) startScoreSpan(x *exchange) {
	r := x.r
	ctx := traceContext.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	ctx, x.span = s.cfg.Tracer.Start(ctx, "score",
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithTimestamp(x.start),
		trace.WithAttributes(attrMethod.String(r.Method)))
	x.r = r.WithContext(ctx)
}

// startUpstreamSpan starts the client span of the call to the instance, a
// child of the score span in ctx.
func (s *Server) startUpstreamSpan(ctx context.Context, x *exchange) context.Context {
	ctx, x.upSpan = s.cfg.Tracer.Start(ctx, "upstream", trace.WithSpanKind(trace.SpanKindClient))
	return ctx
}

// injectTrace replaces the caller's trace headers on the outbound request
// with ones naming the upstream span in ctx.
func injectTrace(ctx context.Context, h http.Header) {
	delete(h, hdrTraceparent)
	delete(h, hdrTracestate)
	traceContext.Inject(ctx, propagation.HeaderCarrier(h))
}

// endUpstreamSpan ends the upstream span once the proxy returned. The
// instance is the one the request went to last (after dial retries).
func endUpstreamSpan(x *exchange) {
	sp := x.upSpan
	if x.instance != nil {
		sp.SetAttributes(attrInstance.String(x.instance.ID), attrServerAddr.String(x.instance.Addr))
	}
	if x.modelStatus != 0 {
		sp.SetAttributes(attrStatus.Int(x.modelStatus))
	}
	switch {
	case x.modelStatus == 0:
		sp.SetStatus(codes.Error, "no answer from the instance")
	case x.modelStatus >= 400:
		sp.SetStatus(codes.Error, "instance answered "+strconv.Itoa(x.modelStatus))
	}
	sp.End()
}

// endScoreSpan ends the server span with the request's outcome.
func endScoreSpan(x *exchange) {
	sp := x.span
	attrs := [...]attribute.KeyValue{
		attrEndpoint.String(x.endpointName()),
		attrDeployment.String(x.deploymentName()),
		attrRequestID.String(x.requestID),
		attrStatus.Int(x.w.status),
		attrQueueMS.Float64(float64(x.queue.Microseconds()) / 1000),
	}
	sp.SetAttributes(attrs[:]...)
	if x.instance != nil {
		sp.SetAttributes(attrInstance.String(x.instance.ID))
	}
	if x.modelStatus != 0 {
		sp.SetAttributes(attrModelStatus.Int(x.modelStatus))
	}
	if x.limit != "" {
		sp.SetAttributes(attrLimit.String(x.limit))
	}
	if x.w.status >= 500 || x.w.status == http.StatusFailedDependency {
		sp.SetStatus(codes.Error, http.StatusText(x.w.status))
	}
	sp.End()
}
