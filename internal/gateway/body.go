package gateway

// Small request bodies are read into memory before the request is
// forwarded. A body of known length up to maxPreread is read on the
// request's goroutine, under the deployment's request timeout, into a
// pooled buffer, and the outbound request carries that buffer:
//
//   - the instance client (client.go) writes the request line, headers and
//     body with one write(2), and the instance's first read gets the whole
//     request;
//   - a dial retry (retry.go) re-sends it from the buffer;
//   - a mirrored request's shadow copy is taken from it (mirror.go);
//   - a client that hangs up while the request waits in a queue is noticed
//     at once: until a request's body has been read, net/http does not watch
//     an HTTP/1.1 connection (breaker.go).
//
// Larger bodies, and bodies of unknown length (chunked), keep streaming
// through http.Transport.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"time"
)

// maxPreread bounds the bodies read into memory before forwarding.
const maxPreread = 64 << 10

// preBody is the body of a request whose body was read into memory. It
// lives in the exchange (no allocation per request). The instance client
// writes its bytes b directly; another transport (Config.Transport) reads
// it as a *bytes.Reader (see rewrite), rewound before a dial retry.
type preBody struct {
	bytes.Reader
	b      []byte
	shared bool // handed to another transport: not recycled (see releasePre)
}

func (*preBody) Close() error { return nil }

// rewind makes the whole body readable again (before a retry).
func (p *preBody) rewind() { p.Reset(p.b) }

// preread reads a small body of known length into a pooled buffer and makes
// it the request's body. The read stops at the request's deadline (408); a
// client that sends fewer bytes than it announced and hangs up is a client
// that closed the request (499).
func preread(ctx context.Context, x *exchange) error {
	r := x.r
	n := r.ContentLength
	if n <= 0 || n > maxPreread || r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	var rc *http.ResponseController
	if dl, ok := ctx.Deadline(); ok {
		// The server sets the connection's deadlines afresh for the next
		// request; the deadline is lifted again once the body is read, so
		// that net/http's background read (which watches for the client
		// hanging up) does not take it for one.
		rc = http.NewResponseController(x.w.ResponseWriter)
		if rc.SetReadDeadline(dl) != nil {
			rc = nil // not supported (e.g. httptest.ResponseRecorder)
		}
	}
	buf := getPreBuffer(int(n))
	_, err := io.ReadFull(r.Body, buf)
	if rc != nil && err == nil {
		// (After a failed read the deadline stays: net/http then gives up
		// discarding the rest of the body at once, instead of waiting.)
		_ = rc.SetReadDeadline(time.Time{})
	}
	if err != nil {
		putPreBuffer(buf)
		if errors.Is(context.Cause(ctx), errDeadline) || errors.Is(err, os.ErrDeadlineExceeded) {
			return errTimeout(x.deployment)
		}
		return errClientClosed(err)
	}
	x.pre.b = buf
	x.pre.Reset(buf)
	r.Body = &x.pre
	return nil
}

// Pre-read buffers come in two sizes, so that small bodies (the common
// case) do not each hold 64 KiB. Slices are pooled by pointer to their
// array, so Put does not allocate.
const smallPreread = 4 << 10

var (
	smallPreBuffers = sync.Pool{New: func() any { return new([smallPreread]byte) }}
	largePreBuffers = sync.Pool{New: func() any { return new([maxPreread]byte) }}
)

func getPreBuffer(n int) []byte {
	if n <= smallPreread {
		return smallPreBuffers.Get().(*[smallPreread]byte)[:n]
	}
	return largePreBuffers.Get().(*[maxPreread]byte)[:n]
}

func putPreBuffer(b []byte) {
	switch cap(b) {
	case smallPreread:
		smallPreBuffers.Put((*[smallPreread]byte)(b[:smallPreread]))
	case maxPreread:
		largePreBuffers.Put((*[maxPreread]byte)(b[:maxPreread]))
	}
}

// releasePre returns the pre-read buffer to its pool, when nothing can read
// it any more: the instance client reads a body only while the proxy runs,
// but another transport (Config.Transport) may still be writing it on its
// own goroutine, so then the buffer is left to the garbage collector.
func (s *Server) releasePre(x *exchange) {
	if x.pre.b == nil {
		return
	}
	if s.client != nil && !x.pre.shared {
		putPreBuffer(x.pre.b)
	}
	x.pre.b, x.pre.shared = nil, false
	x.pre.Reset(nil)
}
