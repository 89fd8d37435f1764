package host

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// benchWriter is a reusable http.ResponseWriter so the benchmark counts the
// host's allocations, not a recorder's.
type benchWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) WriteHeader(s int)           { w.status = s }
func (w *benchWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// fakePython answers every request frame on in with a fixed JSON body, as
// the Python worker's fast path does, until in closes.
func fakePython(in io.Reader, out io.Writer, answer []byte) {
	br := bufio.NewReaderSize(in, 64<<10)
	bw := bufio.NewWriterSize(out, 64<<10)
	buf := make([]byte, 0, 64<<10)
	var resp []byte
	for {
		f, err := readFrame(br, buf)
		if err != nil {
			return
		}
		resp = appendFrame(resp[:0], kindResponse, f.ID, 85, nil, answer)
		bw.Write(resp)
		bw.Flush()
	}
}

// newBenchHost wires a hostRun to one fake worker over real pipes; only
// Python is missing from the path a request takes.
func newBenchHost(b *testing.B, flags uint32) *hostRun {
	b.Helper()
	h, err := newHostRun(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		b.Fatal(err)
	}
	toR, toW, _ := os.Pipe()
	fromR, fromW, _ := os.Pipe()
	go fakePython(toR, fromW, []byte("[11055.977245525679, 4503.079536107787]"))
	w := newWorker(0, nil, toW, fromR, h.log)
	w.flags = flags
	go w.readLoop(bufio.NewReaderSize(fromR, 64<<10))
	w.release = h.pool.release
	h.pool.alive.Add(1)
	h.pool.add(w)
	h.flags.Store(flags)
	close(h.started)
	h.ready.Store(true)
	b.Cleanup(func() {
		toW.Close()
		toR.Close()
		fromW.Close()
		fromR.Close()
	})
	return h
}

// BenchmarkScore measures the host's side of POST /score: request ids,
// body into the frame, one exchange over the pipes with a Go stand-in for
// the Python worker, response headers and body. The tracing case records a
// run span (batched to an exporter that drops it) and hands the worker the
// span's traceparent.
func BenchmarkScore(b *testing.B) {
	for _, bc := range []struct {
		name    string
		flags   uint32
		tracing bool
	}{
		{"fast", 0, false},
		{"headers", readyHeaders, false},
		{"headers/tracing", readyHeaders, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := newBenchHost(b, bc.flags)
			if bc.tracing {
				tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
				b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
				h.cfg.Tracer = tp.Tracer("bench")
			}
			body := `{"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}`
			u, _ := url.Parse("http://127.0.0.1/score")
			rd := strings.NewReader(body)
			req := &http.Request{
				Method:        "POST",
				URL:           u,
				Header:        http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"bench-request"}},
				Body:          io.NopCloser(rd),
				ContentLength: int64(len(body)),
				Host:          "127.0.0.1",
			}
			req = req.WithContext(context.Background())
			w := &benchWriter{h: make(http.Header, 16)}
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				rd.Reset(body)
				clear(w.h)
				w.n = 0
				h.ServeHTTP(w, req)
				if w.status != 200 || w.n != 39 {
					b.Fatalf("status %d, %d bytes", w.status, w.n)
				}
			}
		})
	}
}

// BenchmarkScorePython is the same request through a real Python worker
// (what a deployment pays per request on top of run() itself).
func BenchmarkScorePython(b *testing.B) {
	dir := writeScript(b, "def init(): pass\ndef run(data): return [11055.977245525679, 4503.079536107787]\n")
	th := startHost(b, Config{CodeDir: dir})
	body := `{"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]}`
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Post(th.URL+"/score", "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatal(resp.Status)
		}
	}
}
