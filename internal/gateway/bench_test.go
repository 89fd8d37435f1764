package gateway

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// BenchmarkGateway measures the gateway's own cost per scoring request:
// the in-process handler (no client connection) in front of a real loopback
// backend that answers a small JSON body. allocs/op include the reverse
// proxy and the HTTP/1.1 transport to the backend, and the benchmark's own
// request and recorder. The tracing case measures what Config.Tracer
// costs: spans recorded by the SDK and batched to an exporter that drops
// them.
func BenchmarkGateway(b *testing.B) {
	blue := newBackend(b, "blue", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `[11055.977245525679, 4503.079536107787]`)
	})
	const body = `{"data": [[1,2,3,4,5,6,7,8,9,10],[10,9,8,7,6,5,4,3,2,1]]}`
	for _, bc := range []struct {
		name      string
		instances int
		logger    *slog.Logger
		tracing   bool
	}{
		{"1instance", 1, slog.New(slog.DiscardHandler), false},
		{"4instances", 4, slog.New(slog.DiscardHandler), false},
		{"4instances/accesslog", 4, slog.New(slog.NewJSONHandler(io.Discard, nil)), false},
		{"4instances/tracing", 4, slog.New(slog.DiscardHandler), true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ins := make([]*Instance, bc.instances)
			for i := range ins {
				ins[i] = blue.instance("blue-" + string(rune('0'+i)))
			}
			ep := newKeyEndpoint("fraud", []Weight{{"blue", 90}, {"green", 10}},
				deployment("blue", 5*time.Second, ins...),
				deployment("green", 5*time.Second, ins...))
			cfg := Config{Logger: bc.logger}
			if bc.tracing {
				tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
				b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
				cfg.Tracer = tp.Tracer("bench")
			}
			s := New(cfg)
			s.SetRoutes(table(ep))
			h := s.Handler()
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest("POST", "/score", strings.NewReader(body))
				req.Host = "fraud.local.inference.localhost"
				req.Header.Set("Authorization", "Bearer fraud-primary")
				req.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatalf("status = %d: %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
