package gateway

// The instance client carries requests whose body is in memory (pre-read,
// body.go, or none at all) to instances over plain HTTP/1.1 on loopback,
// entirely on the request's goroutine: it takes a keep-alive connection
// from a pool per instance address (or dials one), writes the request line,
// headers and body with one write(2), and reads the answer with
// http.ReadResponse. The answer's body is read by the reverse proxy, still
// on the request's goroutine, and the connection goes back to the pool when
// the body has been read to its end and the answer allows keep-alive.
//
// http.Transport does the same work on two more goroutines per connection
// (writeLoop, readLoop) and hands every request and answer over channels:
// several futex wake-ups and a second write(2) (headers flushed before a
// body it cannot see is in memory) per request. Requests whose bodies
// stream (over maxPreread, or chunked) and protocol upgrades still go
// through an http.Transport, the fallback.
//
// Without a background reader, the pool does not see an instance close an
// idle connection; a connection taken from the pool is first checked with a
// non-blocking peek (conn_linux.go), and one that turns out closed is
// dropped for another or a new one. A write that fails on a reused
// connection (closed between the peek and the write) is retried once on a
// new connection: the instance did not get the whole request. As with
// http.Transport, a request whose answer fails after it was written is
// not retried. Cancellation (the request
// timeout, the client leaving) sets a past deadline on the connection,
// which ends any read or write in progress; such a connection is closed,
// never reused.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	clientReadBufferSize = 16 << 10
	clientMaxIdlePerHost = 1024
	clientIdleTimeout    = 90 * time.Second
	clientMax1xx         = 5 // as http.Transport
)

// instanceClient is an http.RoundTripper for the instance hop (see above).
type instanceClient struct {
	dialer      net.Dialer
	fallback    http.RoundTripper
	idleTimeout time.Duration

	mu       sync.Mutex
	idle     map[string]*idleConns
	sweeping bool // a sweep is scheduled
}

type idleConns struct{ conns []*clientConn } // oldest first

func newInstanceClient(fallback http.RoundTripper) *instanceClient {
	return &instanceClient{
		dialer:      net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second},
		fallback:    fallback,
		idleTimeout: clientIdleTimeout,
		idle:        map[string]*idleConns{},
	}
}

// clientConn is one connection to an instance.
type clientConn struct {
	cl     *instanceClient
	addr   string
	nc     net.Conn
	br     *bufio.Reader
	idleAt time.Time
	// interrupt ends the connection's reads and writes at once (a method
	// value made once, for context.AfterFunc).
	interrupt func()
	// peek state (conn_linux.go)
	raw     syscall.RawConn
	peekFn  func(fd uintptr) bool
	peekOK  bool
	peekBuf [1]byte
}

func (cl *instanceClient) newConn(addr string, nc net.Conn) *clientConn {
	cc := &clientConn{cl: cl, addr: addr, nc: nc, br: bufio.NewReaderSize(nc, clientReadBufferSize)}
	cc.interrupt = cc.setPastDeadline
	cc.initPeek()
	return cc
}

func (cc *clientConn) setPastDeadline() { _ = cc.nc.SetDeadline(time.Unix(1, 0)) }

// carries reports whether the client sends req itself: a body in memory (or
// none), plain http, no protocol upgrade.
func carries(req *http.Request) (*preBody, bool) {
	if req.URL.Scheme != "http" || req.Header["Upgrade"] != nil || req.Method == http.MethodConnect {
		return nil, false
	}
	switch b := req.Body.(type) {
	case nil:
		return nil, true
	case *preBody:
		return b, true
	}
	return nil, req.Body == http.NoBody
}

func (cl *instanceClient) RoundTrip(req *http.Request) (*http.Response, error) {
	body, ok := carries(req)
	if !ok {
		if b, isPre := req.Body.(*preBody); isPre {
			// (A protocol upgrade with a body in memory: rare.) The
			// transport may read the body after it returned.
			b.shared = true
			b.rewind()
			req = req.Clone(req.Context())
			req.Body = io.NopCloser(&b.Reader)
		}
		return cl.fallback.RoundTrip(req)
	}
	ctx := req.Context()
	if ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	wb := getWriteBuffer()
	defer putWriteBuffer(wb)
	writeRequest(wb, req, body)
	for attempt := 0; ; attempt++ {
		cc, reused, err := cl.get(ctx, req.URL.Host)
		if err != nil {
			return nil, err
		}
		stop := context.AfterFunc(ctx, cc.interrupt)
		if _, err := cc.nc.Write(wb.Bytes()); err != nil {
			stop()
			cc.close()
			if ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			if reused && attempt == 0 {
				continue // closed by the instance after the peek: the request did not get through
			}
			return nil, err
		}
		resp, err := cc.readResponse(req)
		if err != nil {
			stop()
			cc.close()
			if ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			return nil, err
		}
		keep := !resp.Close && !req.Close
		if resp.Body == http.NoBody {
			cc.finish(stop, keep)
			return resp, nil
		}
		resp.Body = &connBody{cc: cc, rc: resp.Body, ctx: ctx, stop: stop, keep: keep}
		return resp, nil
	}
}

// readResponse reads the instance's answer, passing 1xx answers to the
// request's httptrace.ClientTrace (the reverse proxy forwards them), as
// http.Transport does.
func (cc *clientConn) readResponse(req *http.Request) (*http.Response, error) {
	for n1xx := 0; ; {
		resp, err := http.ReadResponse(cc.br, req)
		if err != nil {
			return nil, err
		}
		code := resp.StatusCode
		if code == http.StatusSwitchingProtocols {
			resp.Body.Close()
			return nil, errors.New("gateway: unexpected 101 Switching Protocols from the instance")
		}
		if code >= 200 || code < 100 {
			return resp, nil
		}
		if n1xx++; n1xx > clientMax1xx {
			return nil, errors.New("gateway: too many 1xx answers from the instance")
		}
		if trace := httptrace.ContextClientTrace(req.Context()); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(code, textproto.MIMEHeader(resp.Header)); err != nil {
				return nil, err
			}
		}
	}
}

// finish ends a request on cc: back to the pool when keep is set and the
// request was not interrupted, closed otherwise.
func (cc *clientConn) finish(stop func() bool, keep bool) {
	if !stop() {
		keep = false // interrupted: the deadline is in the past
	}
	if keep {
		cc.cl.put(cc)
	} else {
		cc.close()
	}
}

func (cc *clientConn) close() { _ = cc.nc.Close() }

// get returns an idle connection to addr that is still open, or dials one.
func (cl *instanceClient) get(ctx context.Context, addr string) (cc *clientConn, reused bool, err error) {
	for {
		cc = cl.popIdle(addr)
		if cc == nil {
			break
		}
		if cc.alive() {
			return cc, true, nil
		}
		cc.close()
	}
	nc, err := cl.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	return cl.newConn(addr, nc), false, nil
}

// popIdle takes the most recently used idle connection to addr; those idle
// for longer than the idle timeout are closed on the way.
func (cl *instanceClient) popIdle(addr string) *clientConn {
	cl.mu.Lock()
	ic := cl.idle[addr]
	if ic == nil || len(ic.conns) == 0 {
		cl.mu.Unlock()
		return nil
	}
	n := len(ic.conns)
	cc := ic.conns[n-1]
	ic.conns[n-1] = nil
	ic.conns = ic.conns[:n-1]
	cl.mu.Unlock()
	if time.Since(cc.idleAt) > cl.idleTimeout {
		cc.close()
		return cl.popIdle(addr) // every older one has expired too
	}
	return cc
}

func (cl *instanceClient) put(cc *clientConn) {
	cc.idleAt = time.Now()
	cl.mu.Lock()
	ic := cl.idle[cc.addr]
	if ic == nil {
		ic = &idleConns{}
		cl.idle[cc.addr] = ic
	}
	if len(ic.conns) >= clientMaxIdlePerHost {
		cl.mu.Unlock()
		cc.close()
		return
	}
	ic.conns = append(ic.conns, cc)
	if !cl.sweeping {
		cl.sweeping = true
		time.AfterFunc(cl.idleTimeout/2, cl.sweep)
	}
	cl.mu.Unlock()
}

// sweep closes connections idle for longer than the idle timeout, and
// forgets addresses without idle connections (instances come and go). It
// reschedules itself while connections are idle.
func (cl *instanceClient) sweep() {
	cutoff := time.Now().Add(-cl.idleTimeout)
	var expired []*clientConn
	cl.mu.Lock()
	for addr, ic := range cl.idle {
		i := 0
		for i < len(ic.conns) && ic.conns[i].idleAt.Before(cutoff) {
			i++
		}
		if i > 0 {
			expired = append(expired, ic.conns[:i]...)
			ic.conns = append(ic.conns[:0], ic.conns[i:]...)
			clear(ic.conns[len(ic.conns):cap(ic.conns)])
		}
		if len(ic.conns) == 0 {
			delete(cl.idle, addr)
		}
	}
	cl.sweeping = len(cl.idle) > 0
	if cl.sweeping {
		time.AfterFunc(cl.idleTimeout/2, cl.sweep)
	}
	cl.mu.Unlock()
	for _, cc := range expired {
		cc.close()
	}
}

// CloseIdleConnections closes every idle connection (and those of the
// fallback transport).
func (cl *instanceClient) CloseIdleConnections() {
	cl.mu.Lock()
	var all []*clientConn
	for addr, ic := range cl.idle {
		all = append(all, ic.conns...)
		delete(cl.idle, addr)
	}
	cl.mu.Unlock()
	for _, cc := range all {
		cc.close()
	}
	if c, ok := cl.fallback.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// connBody is an answer's body: it gives the connection back when read to
// its end, and closes it when closed early or on an error.
type connBody struct {
	cc   *clientConn // nil once done
	rc   io.ReadCloser
	ctx  context.Context
	stop func() bool
	keep bool
	err  error // what reads return once done
}

var errBodyClosed = errors.New("gateway: read on closed response body")

func (b *connBody) Read(p []byte) (int, error) {
	if b.cc == nil {
		return 0, b.err
	}
	n, err := b.rc.Read(p)
	if err != nil {
		if err != io.EOF {
			b.keep = false
			if b.ctx.Err() != nil {
				err = b.ctx.Err() // context.Canceled is not logged by the reverse proxy
			}
		}
		b.err = err
		cc := b.cc
		b.cc = nil
		cc.finish(b.stop, b.keep)
	}
	return n, err
}

func (b *connBody) Close() error {
	if b.cc != nil {
		cc := b.cc
		b.cc = nil
		b.err = errBodyClosed
		cc.finish(b.stop, false) // not read to its end: the rest is unread
	}
	return nil
}

// Write buffers hold one request (head and body) for its single write.
var writeBuffers = sync.Pool{New: func() any { return bytes.NewBuffer(make([]byte, 0, 4<<10)) }}

const maxPooledWriteBuffer = 256 << 10

func getWriteBuffer() *bytes.Buffer { return writeBuffers.Get().(*bytes.Buffer) }

func putWriteBuffer(b *bytes.Buffer) {
	if b.Cap() > maxPooledWriteBuffer {
		return
	}
	b.Reset()
	writeBuffers.Put(b)
}

// writeRequest writes req (the reverse proxy's outbound request: no
// Transfer-Encoding, no trailers) and its body in memory to b, as
// (*http.Request).Write does: request line, Host, User-Agent unless set
// empty, Content-Length (also 0, except for GET and HEAD), Connection:
// close if req.Close (unless a Connection header says so), then the other
// headers (in map order), with line
// breaks in values turned to spaces and names that are not tokens dropped.
func writeRequest(b *bytes.Buffer, req *http.Request, body *preBody) {
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	b.WriteString(method)
	b.WriteByte(' ')
	b.WriteString(req.URL.RequestURI())
	b.WriteString(" HTTP/1.1\r\nHost: ")
	b.WriteString(cleanHeaderValue(host))
	b.WriteString("\r\n")
	if ua, ok := req.Header["User-Agent"]; !ok {
		b.WriteString("User-Agent: Go-http-client/1.1\r\n")
	} else if len(ua) > 0 && ua[0] != "" {
		b.WriteString("User-Agent: ")
		b.WriteString(cleanHeaderValue(ua[0]))
		b.WriteString("\r\n")
	}
	var n int64
	if body != nil {
		n = int64(len(body.b))
	}
	if n > 0 || (method != http.MethodGet && method != http.MethodHead) {
		b.WriteString("Content-Length: ")
		var num [20]byte
		b.Write(strconv.AppendInt(num[:0], n, 10))
		b.WriteString("\r\n")
	}
	if req.Close && !slices.ContainsFunc(req.Header["Connection"], hasClose) {
		b.WriteString("Connection: close\r\n")
	}
	for k, vv := range req.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		if !validHeaderName(k) {
			continue
		}
		for _, v := range vv {
			b.WriteString(k)
			b.WriteString(": ")
			b.WriteString(cleanHeaderValue(v))
			b.WriteString("\r\n")
		}
	}
	b.WriteString("\r\n")
	if n > 0 {
		b.Write(body.b)
	}
}

func hasClose(v string) bool {
	for t := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(strings.TrimSpace(t), "close") {
			return true
		}
	}
	return false
}

// cleanHeaderValue turns line breaks into spaces and trims spaces and tabs
// at both ends, as net/http does when it writes a header value.
func cleanHeaderValue(v string) string {
	if strings.ContainsAny(v, "\r\n") {
		v = headerNewlineToSpace.Replace(v)
	}
	return strings.Trim(v, " \t")
}

var headerNewlineToSpace = strings.NewReplacer("\n", " ", "\r", " ")

// validHeaderName reports whether k is an RFC 9110 token.
func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c >= 0x80 || !isTokenByte[c] {
			return false
		}
	}
	return true
}

var isTokenByte = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()
