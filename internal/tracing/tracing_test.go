package tracing

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestTracesURL(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{in: "http://127.0.0.1:4318", want: "http://127.0.0.1:4318/v1/traces"},
		{in: "http://127.0.0.1:4318/", want: "http://127.0.0.1:4318/v1/traces"},
		{in: "https://otel.example:4318/prefix", want: "https://otel.example:4318/prefix/v1/traces"},
		{in: "http://127.0.0.1:4318/v1/traces", want: "http://127.0.0.1:4318/v1/traces"},
		{in: "127.0.0.1:4318", err: "otlp endpoint"},
		{in: "grpc://127.0.0.1:4317", err: "want http://host:port"},
		{in: "http://", err: "want http://host:port"},
		{in: "http://a b", err: "invalid character"},
	} {
		got, err := TracesURL(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("TracesURL(%q) = %q, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("TracesURL(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestOpen(t *testing.T) {
	if _, err := Open(t.Context(), Config{Endpoint: "http://127.0.0.1:4318"}); err == nil {
		t.Error("Open without a service name: no error")
	}
	if _, err := Open(t.Context(), Config{Endpoint: "localhost:4318", Service: "moe-test"}); err == nil {
		t.Error("Open with a URL without scheme: no error")
	}
	p, err := Open(t.Context(), Config{Endpoint: "http://127.0.0.1:1", Service: "moe-test", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	_, span := p.Tracer().Start(t.Context(), "nothing listens")
	span.End()
	if !span.SpanContext().IsValid() {
		t.Error("span has no valid context")
	}
	// nothing listens on port 1: the export fails, and Close still
	// returns within its context
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	start := time.Now()
	err = p.Close(ctx)
	if d := time.Since(start); d > 6*time.Second {
		t.Errorf("Close took %s", d)
	}
	t.Logf("Close with no collector: %v", err)
}
