// Package tracing exports moe's spans over OTLP/HTTP with the OpenTelemetry
// Go SDK. It is only opened when an OTLP endpoint is configured (`moe serve
// --otlp-endpoint`, which the local runner hands on to every `moe host`);
// otherwise nothing in moe creates spans and the gateway and host pass a
// caller's W3C traceparent on untouched.
//
// The gateway and the host take a trace.Tracer in their Config (nil means
// off) and do their own W3C trace context propagation with
// propagation.TraceContext; this package only builds the exporting
// TracerProvider with moe's resource attributes.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Resource attribute and span attribute keys moe uses.
const (
	KeyEndpoint   = attribute.Key("moe.endpoint")
	KeyDeployment = attribute.Key("moe.deployment")
	KeyInstance   = attribute.Key("moe.instance")
)

// ScopeName is the instrumentation scope of moe's spans.
const ScopeName = "github.com/moe-serving/moe"

// Config configures [Open].
type Config struct {
	// Endpoint is the collector's OTLP/HTTP base URL, as
	// OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:4318". Spans go to
	// its path + "/v1/traces" (unless the path already ends so). Required.
	// An https URL is verified against the system roots.
	Endpoint string
	// Service is the service.name resource attribute ("moe-gateway",
	// "moe-host"). Required.
	Service string
	// Attributes are added to the resource (endpoint, deployment and
	// instance for a host).
	Attributes []attribute.KeyValue
	// Logger receives export failures (collector down, rejected batch) at
	// Warn. Nil means slog.Default().
	Logger *slog.Logger
}

// Provider batches spans and exports them to one collector. Create it with
// [Open] and flush it with [Provider.Close]. It is safe for concurrent use.
type Provider struct {
	tp *sdktrace.TracerProvider
}

// Open starts an exporting TracerProvider. The batch span processor, the
// sampler and the exporter's headers, timeout and TLS files follow the
// standard OTEL_* variables (OTEL_BSP_SCHEDULE_DELAY, OTEL_TRACES_SAMPLER,
// OTEL_EXPORTER_OTLP_HEADERS, ...); the default sampler follows the
// caller's sampled flag and samples every request that arrives without a
// traceparent. Open does not contact the collector.
func Open(ctx context.Context, cfg Config) (*Provider, error) {
	if cfg.Service == "" {
		return nil, errors.New("tracing: a service name is required")
	}
	u, err := TracesURL(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	// The SDK reports export errors through the global handler only.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("export spans", "otlp_endpoint", u, "err", err)
	}))
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(u))
	if err != nil {
		return nil, fmt.Errorf("tracing: otlp exporter for %s: %w", u, err)
	}
	attrs := append([]attribute.KeyValue{attribute.String("service.name", cfg.Service)}, cfg.Attributes...)
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attrs...))
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	return &Provider{tp: sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))}, nil
}

// Tracer returns moe's tracer.
func (p *Provider) Tracer() trace.Tracer { return p.tp.Tracer(ScopeName) }

// Close exports the spans still batched, waiting until ctx ends, and stops
// the provider. Spans started after Close are dropped.
func (p *Provider) Close(ctx context.Context) error {
	if err := p.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: flush spans: %w", err)
	}
	return nil
}

// TracesURL turns an OTLP/HTTP base URL into the traces URL, following
// OTEL_EXPORTER_OTLP_ENDPOINT's rule: "/v1/traces" is appended to the
// path. A URL whose path already ends in "/v1/traces" is kept.
func TracesURL(endpoint string) (string, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", fmt.Errorf("tracing: otlp endpoint %q: %w", endpoint, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("tracing: otlp endpoint %q: want http://host:port or https://host:port", endpoint)
	}
	if !strings.HasSuffix(u.Path, "/v1/traces") {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
	}
	u.RawPath = ""
	return u.String(), nil
}
