package gateway

// Tests of the small-body pre-read (body.go) and the instance client
// (client.go), with httptest backends standing in for model hosts.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingBackend is a model-host stand-in that counts the connections
// made to it.
type countingBackend struct {
	*httptest.Server
	conns atomic.Int64
	hits  atomic.Int64
}

func newCountingBackend(t *testing.T, h http.HandlerFunc) *countingBackend {
	t.Helper()
	b := &countingBackend{}
	b.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		h(w, r)
	}))
	b.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			b.conns.Add(1)
		}
	}
	b.Start()
	t.Cleanup(b.Close)
	return b
}

func (b *countingBackend) instance(id string) *Instance {
	return &Instance{ID: id, Addr: strings.TrimPrefix(b.URL, "http://")}
}

func oneInstance(in *Instance, timeout time.Duration) *Table {
	return table(newKeyEndpoint("fraud", []Weight{{"blue", 100}}, deployment("blue", timeout, in)))
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// echoSum answers the SHA-256 and length of the request body.
func echoSum(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	_, _ = fmt.Fprintf(w, "%s %d %d", sum(b), len(b), r.ContentLength)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.IntN(256))
	}
	return b
}

// Bodies of every size reach the instance intact: pre-read ones (up to
// 64 KiB), streamed ones, and chunked ones.
func TestPreread_BodyIntegrity(t *testing.T) {
	be := newCountingBackend(t, echoSum)
	_, gw := newGateway(t, Config{}, oneInstance(be.instance("blue-0"), 5*time.Second))
	c := gw.Client()
	for _, tc := range []struct {
		size    int
		chunked bool
	}{{1, false}, {100, false}, {4096, false}, {4097, false}, {maxPreread - 1, false}, {maxPreread, false},
		{maxPreread + 1, false}, {1 << 20, false}, {10000, true}, {0, false}} {
		t.Run(fmt.Sprintf("%d/chunked=%v", tc.size, tc.chunked), func(t *testing.T) {
			body := randomBytes(tc.size)
			cl := scoreCall("fraud")
			cl.body, cl.bodyLen = bytes.NewReader(body), int64(tc.size)
			if tc.chunked {
				cl.bodyLen = -1
			}
			if tc.size == 0 {
				cl.body, cl.bodyLen = http.NoBody, 0
			}
			a := do(t, c, gw.URL, cl)
			wantCL := tc.size
			if tc.chunked {
				wantCL = -1
			}
			if want := fmt.Sprintf("%s %d %d", sum(body), tc.size, wantCL); a.status != 200 || a.body != want {
				t.Errorf("got %d %q; want 200 %q", a.status, a.body, want)
			}
		})
	}
	// the same few connections carried every request
	if n := be.conns.Load(); n > 2 {
		t.Errorf("%d connections to the instance; want keep-alive", n)
	}
}

// rawConn sends a raw HTTP/1.1 request to the gateway's plain listener.
func rawConn(t *testing.T, gwURL string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(gwURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

func rawHead(contentLength int) string {
	return "POST /score HTTP/1.1\r\nHost: fraud" + testHostSuffix + "\r\nAuthorization: Bearer fraud-primary\r\n" +
		"Content-Length: " + strconv.Itoa(contentLength) + "\r\n\r\n"
}

// A Content-Length over the limit is refused, also in the pre-read range,
// without reaching the instance; a Content-Length under the limit followed by more bytes than it
// announced forwards only the announced bytes (net/http reads no more as
// this request's body: the rest is parsed as the next request, which is
// malformed).
func TestPreread_LyingContentLength(t *testing.T) {
	var received atomic.Int64
	be := newCountingBackend(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		received.Store(n)
		_, _ = io.WriteString(w, "ok")
	})
	_, gw := newGateway(t, Config{MaxBodyBytes: 1000}, oneInstance(be.instance("blue-0"), 5*time.Second))

	// (net/http reads a small unread body before it answers, so the body
	// is sent; TestGateway_BodyLimitAtOnce covers a large one never sent.)
	c := rawConn(t, gw.URL)
	_, _ = io.WriteString(c, rawHead(2000)+strings.Repeat("x", 2000))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("Content-Length 2000 over a 1000 limit: %d; want 413", resp.StatusCode)
	}

	c = rawConn(t, gw.URL)
	_, _ = io.WriteString(c, rawHead(10)+strings.Repeat("x", 5000))
	br := bufio.NewReader(c)
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "ok" || received.Load() != 10 {
		t.Errorf("Content-Length 10 with 5000 bytes sent: %d %q, instance read %d bytes; want 200 ok, 10 bytes",
			resp.StatusCode, body, received.Load())
	}
	_ = c.(*net.TCPConn).CloseWrite() // end the "request" the surplus bytes start
	if resp, err := http.ReadResponse(br, nil); err == nil && resp.StatusCode != http.StatusBadRequest {
		t.Errorf("the surplus bytes as a request: %d; want 400 or a closed connection", resp.StatusCode)
	}
	if be.hits.Load() != 1 {
		t.Errorf("instance hits = %d; want 1", be.hits.Load())
	}
}

// A client that sends fewer bytes than its Content-Length and hangs up ends
// the request (499 in the logs) without reaching the instance; one that
// stays connected gets 408 at the deployment's request timeout.
func TestPreread_ShortBody(t *testing.T) {
	be := newCountingBackend(t, echoSum)
	done := make(chan Observation, 4)
	_, gw := newGateway(t, Config{Observer: func(o *Observation) { done <- *o }},
		oneInstance(be.instance("blue-0"), 500*time.Millisecond))

	c := rawConn(t, gw.URL)
	_, _ = io.WriteString(c, rawHead(100)+strings.Repeat("x", 10))
	time.Sleep(50 * time.Millisecond)
	c.Close()
	select {
	case o := <-done:
		if o.Status != statusClientClosed {
			t.Errorf("status %d; want %d (client closed)", o.Status, statusClientClosed)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the request did not end after the client hung up")
	}

	c = rawConn(t, gw.URL)
	start := time.Now()
	_, _ = io.WriteString(c, rawHead(100)+strings.Repeat("x", 10))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	if resp.StatusCode != http.StatusRequestTimeout || el < 400*time.Millisecond || el > 3*time.Second {
		t.Errorf("slow body: %d after %v; want 408 after about 500ms", resp.StatusCode, el)
	}
	<-done
	if be.hits.Load() != 0 {
		t.Errorf("instance hits = %d; want 0", be.hits.Load())
	}
}

// Sequential requests share one connection; an answer with Connection:
// close is not reused.
func TestClient_KeepAlive(t *testing.T) {
	be := newCountingBackend(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Header.Get("X-Close") != "" {
			w.Header().Set("Connection", "close")
		}
		_, _ = io.WriteString(w, "ok")
	})
	_, gw := newGateway(t, Config{}, oneInstance(be.instance("blue-0"), 5*time.Second))
	c := gw.Client()
	for i := range 20 {
		cl := scoreCall("fraud")
		if i%2 == 1 {
			cl.method, cl.body, cl.path = http.MethodGet, http.NoBody, "/swagger.json"
		}
		if a := do(t, c, gw.URL, cl); a.status != 200 {
			t.Fatalf("request %d: %d %s", i, a.status, a.body)
		}
	}
	if n := be.conns.Load(); n != 1 {
		t.Errorf("20 sequential requests used %d connections; want 1", n)
	}
	for range 3 {
		if a := do(t, c, gw.URL, withHeader(scoreCall("fraud"), "X-Close", "1")); a.status != 200 {
			t.Fatalf("%d %s", a.status, a.body)
		}
	}
	if n := be.conns.Load(); n != 3 {
		t.Errorf("after 3 answers with Connection: close: %d connections; want 3", n)
	}
}

func withHeader(cl call, k, v string) call {
	if cl.header == nil {
		cl.header = map[string]string{}
	}
	cl.header[k] = v
	return cl
}

// An instance that closes the connection in the middle of an answer: the
// client's answer breaks (the status was sent), the broken connection is
// not reused, and the next request works. One that closes before any
// answer is a 502.
func TestClient_UpstreamClosesMidResponse(t *testing.T) {
	be := newCountingBackend(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		switch r.Header.Get("X-Break") {
		case "body":
			conn, bw, _ := http.NewResponseController(w).Hijack()
			_, _ = bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
			_ = bw.Flush()
			conn.Close()
		case "head":
			conn, _, _ := http.NewResponseController(w).Hijack()
			conn.Close()
		default:
			_, _ = io.WriteString(w, "ok")
		}
	})
	_, gw := newGateway(t, Config{Logger: testLogger(t)}, oneInstance(be.instance("blue-0"), 5*time.Second))
	c := gw.Client()

	req, _ := http.NewRequest(http.MethodPost, gw.URL+"/score", strings.NewReader("{}"))
	req.Host = "fraud" + testHostSuffix
	req.Header.Set("Authorization", "Bearer fraud-primary")
	req.Header.Set("X-Break", "body")
	// The gateway aborts the answer: the client sees the connection close,
	// before the status (still buffered) or in the body.
	if resp, err := c.Do(req); err == nil {
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Errorf("answer cut by the instance read as complete: %d %q", resp.StatusCode, b)
		}
	}
	if a := do(t, c, gw.URL, withHeader(scoreCall("fraud"), "X-Break", "head")); a.status != http.StatusBadGateway {
		t.Errorf("closed before answering: %d; want 502", a.status)
	}
	for range 3 {
		if a := do(t, c, gw.URL, scoreCall("fraud")); a.status != 200 || a.body != "ok" {
			t.Errorf("after a broken connection: %d %q; want 200 ok", a.status, a.body)
		}
	}
}

// Chunked answers, and large answers with and without a length, stream
// through intact, and the connection is reused after them.
func TestClient_StreamedResponses(t *testing.T) {
	big := randomBytes(8 << 20)
	be := newCountingBackend(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		switch r.URL.Query().Get("kind") {
		case "chunks":
			for i := range 5 {
				_, _ = fmt.Fprintf(w, "chunk %d;", i)
				http.NewResponseController(w).Flush()
			}
		case "big":
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			_, _ = w.Write(big)
		case "bigchunked":
			for p := big; len(p) > 0; p = p[min(len(p), 100_000):] {
				_, _ = w.Write(p[:min(len(p), 100_000)])
				http.NewResponseController(w).Flush()
			}
		}
	})
	_, gw := newGateway(t, Config{}, oneInstance(be.instance("blue-0"), 10*time.Second))
	c := gw.Client()
	for range 2 {
		cl := scoreCall("fraud")
		cl.path = "/score?kind=chunks"
		if a := do(t, c, gw.URL, cl); a.status != 200 || a.body != "chunk 0;chunk 1;chunk 2;chunk 3;chunk 4;" {
			t.Errorf("chunked: %d %q", a.status, a.body)
		}
		for _, kind := range []string{"big", "bigchunked"} {
			cl.path = "/score?kind=" + kind
			if a := do(t, c, gw.URL, cl); a.status != 200 || sum([]byte(a.body)) != sum(big) {
				t.Errorf("%s: %d, %d bytes; want the 8 MiB intact", kind, a.status, len(a.body))
			}
		}
	}
	if n := be.conns.Load(); n != 1 {
		t.Errorf("%d connections; want 1 reused for every answer", n)
	}
}

// A request cancelled while the instance works (the client leaves, or the
// request timeout passes) closes the connection to the instance at once,
// which the instance sees as its request's context ending.
func TestClient_CancelWhileWaiting(t *testing.T) {
	cancelled := make(chan time.Time, 4)
	be := newCountingBackend(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
			cancelled <- time.Now()
		case <-time.After(5 * time.Second):
		}
	})
	obs := make(chan Observation, 4)
	in := be.instance("blue-0")
	s, gw := newGateway(t, Config{Observer: func(o *Observation) { obs <- *o }}, oneInstance(in, 3*time.Second))

	// the client leaves
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, gw.URL+"/score", strings.NewReader("{}"))
	req.Host = "fraud" + testHostSuffix
	req.Header.Set("Authorization", "Bearer fraud-primary")
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	if _, err := gw.Client().Do(req); err == nil {
		t.Fatal("cancelled request succeeded")
	}
	select {
	case at := <-cancelled:
		if d := at.Sub(start); d > time.Second {
			t.Errorf("the instance saw the client leave after %v; want about 100ms (not the 3s timeout)", d)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the instance did not see the client leave")
	}
	if o := <-obs; o.Status != statusClientClosed {
		t.Errorf("status %d; want %d", o.Status, statusClientClosed)
	}

	// the request timeout
	s.SetRoutes(oneInstance(in, 300*time.Millisecond))
	a := do(t, gw.Client(), gw.URL, scoreCall("fraud"))
	if a.status != http.StatusRequestTimeout {
		t.Errorf("status %d; want 408", a.status)
	}
	select {
	case <-cancelled:
	case <-time.After(3 * time.Second):
		t.Fatal("the instance did not see the timeout")
	}
	<-obs
	if n := in.Outstanding.Load(); n != 0 {
		t.Errorf("%d slots held; want 0", n)
	}
}

// An idle connection the instance closed (its idle timeout, a restart) is
// noticed before use: the request goes on a new connection, or, when the
// instance is gone, to another instance (dial retry), never a 502.
func TestClient_ClosedIdleConnection(t *testing.T) {
	a := newCountingBackend(t, echoSum)
	b := newCountingBackend(t, echoSum)
	ina, inb := a.instance("a"), b.instance("b")
	s, gw := newGateway(t, Config{}, oneInstance(ina, 5*time.Second))
	c := gw.Client()
	if r := do(t, c, gw.URL, scoreCall("fraud")); r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	a.CloseClientConnections() // the instance closes its end; the gateway's stays idle
	time.Sleep(50 * time.Millisecond)
	if r := do(t, c, gw.URL, scoreCall("fraud")); r.status != 200 {
		t.Fatalf("after the instance closed an idle connection: %d %s", r.status, r.body)
	}
	if n := a.conns.Load(); n != 2 {
		t.Errorf("%d connections; want 2 (one new after the close)", n)
	}

	// a is gone (connection closed, port refused) while still in the table
	s.SetRoutes(table(newKeyEndpoint("fraud", []Weight{{"blue", 100}},
		&Deployment{Name: "blue", RequestTimeout: 5 * time.Second, MaxConcurrentPerInstance: 4, Instances: []*Instance{ina, inb}})))
	a.Close()
	time.Sleep(50 * time.Millisecond)
	for i := range 10 {
		if r := do(t, c, gw.URL, scoreCall("fraud")); r.status != 200 {
			t.Fatalf("request %d with a dead instance in the table: %d %s", i, r.status, r.body)
		}
	}
	if ina.Outstanding.Load() != 0 || inb.Outstanding.Load() != 0 {
		t.Errorf("slots leaked: %d %d", ina.Outstanding.Load(), inb.Outstanding.Load())
	}
}

// The instance gets what http.Transport would send: method, path and
// query, the instance's address as Host, the caller's User-Agent (none if
// the caller sent none), every header value, and a Content-Length.
func TestClient_RequestFormat(t *testing.T) {
	type seen struct {
		method, uri, host, ua string
		hdr                   http.Header
		cl                    int64
		te                    []string
	}
	got := make(chan seen, 1)
	be := newCountingBackend(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got <- seen{r.Method, r.RequestURI, r.Host, r.UserAgent(), r.Header.Clone(), r.ContentLength, r.TransferEncoding}
	})
	in := be.instance("blue-0")
	_, gw := newGateway(t, Config{}, oneInstance(in, 5*time.Second))

	req, _ := http.NewRequest(http.MethodPost, gw.URL+"/score?a=1&b=two", strings.NewReader(`{"x": 1}`))
	req.Host = "fraud" + testHostSuffix
	req.Header.Set("Authorization", "Bearer fraud-primary")
	req.Header.Set("User-Agent", "ua-test/1")
	req.Header.Add("X-Multi", "one")
	req.Header.Add("X-Multi", "two")
	resp, err := gw.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	s := <-got
	if s.method != "POST" || s.uri != "/score?a=1&b=two" || s.host != in.Addr || s.ua != "ua-test/1" || s.cl != 8 || len(s.te) != 0 {
		t.Errorf("instance saw %s %s Host %s UA %q CL %d TE %v", s.method, s.uri, s.host, s.ua, s.cl, s.te)
	}
	if v := s.hdr.Values("X-Multi"); len(v) != 2 || v[0] != "one" || v[1] != "two" {
		t.Errorf("X-Multi = %v", v)
	}
	if s.hdr.Get("Authorization") != "" || s.hdr.Get("X-Request-Id") == "" {
		t.Errorf("Authorization %q, X-Request-Id %q; want none and set", s.hdr.Get("Authorization"), s.hdr.Get("X-Request-Id"))
	}

	req, _ = http.NewRequest(http.MethodGet, gw.URL+"/swagger.json", nil)
	req.Host = "fraud" + testHostSuffix
	req.Header.Set("Authorization", "Bearer fraud-primary")
	req.Header["User-Agent"] = nil // net/http's client sends none
	resp, err = gw.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	s = <-got
	if s.method != "GET" || s.ua != "" || s.hdr.Get("Content-Length") != "" {
		t.Errorf("GET without User-Agent: %s UA %q Content-Length %q", s.method, s.ua, s.hdr.Get("Content-Length"))
	}
}

// writeRequest's output parses back as the request it describes, and line
// breaks in header values cannot inject headers.
func TestWriteRequest(t *testing.T) {
	req, _ := http.NewRequest(http.MethodPut, "http://127.0.0.1:9/p/a%20th?q=1", nil)
	req.Header.Set("User-Agent", "")
	req.Header.Set("X-Evil", "a\r\nInjected: yes")
	req.Header["Bad Name"] = []string{"x"}
	req.Close = true
	body := &preBody{b: []byte("hello")}
	var b bytes.Buffer
	writeRequest(&b, req, body)
	got, err := http.ReadRequest(bufio.NewReader(&b))
	if err != nil {
		t.Fatalf("%v in:\n%s", err, b.String())
	}
	data, _ := io.ReadAll(got.Body)
	if got.Method != "PUT" || got.RequestURI != "/p/a%20th?q=1" || got.Host != "127.0.0.1:9" || string(data) != "hello" ||
		got.ContentLength != 5 || !got.Close || got.UserAgent() != "" {
		t.Errorf("parsed %s %s Host %s body %q CL %d close %v UA %q", got.Method, got.RequestURI, got.Host, data, got.ContentLength, got.Close, got.UserAgent())
	}
	if got.Header.Get("Injected") != "" || got.Header.Get("X-Evil") != "a  Injected: yes" || len(got.Header["Bad Name"]) != 0 {
		t.Errorf("headers %v", got.Header)
	}
}

// With a transport of the caller's (Config.Transport), a pre-read body is
// sent as an in-memory reader, intact, also after a dial retry.
func TestPreread_OwnTransport(t *testing.T) {
	live := newCountingBackend(t, echoSum)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := &Instance{ID: "dead", Addr: l.Addr().String()}
	l.Close()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	s := New(Config{Transport: tr, Logger: testLogger(t)})
	s.SetRoutes(table(newKeyEndpoint("fraud", []Weight{{"blue", 100}},
		&Deployment{Name: "blue", RequestTimeout: 5 * time.Second, MaxConcurrentPerInstance: 4,
			Instances: []*Instance{dead, live.instance("live")}})))
	h := s.Handler()
	for _, n := range []int{10, 5000, maxPreread} {
		body := randomBytes(n)
		for range 4 {
			req := httptest.NewRequest(http.MethodPost, "https://fraud"+testHostSuffix+"/score", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer fraud-primary")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if want := fmt.Sprintf("%s %d %d", sum(body), n, n); rec.Code != 200 || rec.Body.String() != want {
				t.Fatalf("%d bytes: %d %q; want 200 %q", n, rec.Code, rec.Body, want)
			}
		}
	}
}

// Over HTTP/2 too, a small body is read whole, and one that does not come
// is a 408 at the request timeout.
func TestPreread_HTTP2(t *testing.T) {
	be := newCountingBackend(t, echoSum)
	s := New(Config{Logger: testLogger(t)})
	s.SetRoutes(oneInstance(be.instance("blue-0"), 500*time.Millisecond))
	cert, pool := selfSigned(t)
	port, _ := serveTLS(t, s, cert)
	c := tlsClient(pool, port, true, 0)
	base := "https://fraud" + testHostSuffix + ":" + strconv.Itoa(port)

	body := randomBytes(5000)
	cl := scoreCall("fraud")
	cl.host, cl.body, cl.bodyLen = "", bytes.NewReader(body), int64(len(body))
	if a := do(t, c, base, cl); a.proto != 2 || a.status != 200 || a.body != fmt.Sprintf("%s %d %d", sum(body), len(body), len(body)) {
		t.Errorf("HTTP/%d %d %q", a.proto, a.status, a.body)
	}

	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { _, _ = pw.Write([]byte("0123456789")) }()
	start := time.Now()
	cl.body, cl.bodyLen = pr, 100
	if a := do(t, c, base, cl); a.status != http.StatusRequestTimeout || time.Since(start) > 3*time.Second {
		t.Errorf("slow body over HTTP/2: %d after %v; want 408 after about 500ms", a.status, time.Since(start))
	}
	if be.hits.Load() != 1 {
		t.Errorf("instance hits = %d; want 1", be.hits.Load())
	}
}

// A client that waits for 100 Continue gets it, and its answer, whether
// the body is read into memory or streamed.
func TestClient_ExpectContinue(t *testing.T) {
	be := newCountingBackend(t, echoSum)
	_, gw := newGateway(t, Config{}, oneInstance(be.instance("blue-0"), 5*time.Second))
	tr := &http.Transport{ExpectContinueTimeout: 5 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for _, n := range []int{100, maxPreread + 100} {
		body := randomBytes(n)
		req, _ := http.NewRequest(http.MethodPost, gw.URL+"/score", bytes.NewReader(body))
		req.Host = "fraud" + testHostSuffix
		req.Header.Set("Authorization", "Bearer fraud-primary")
		req.Header.Set("Expect", "100-continue")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("%s %d %d", sum(body), n, n); resp.StatusCode != 200 || string(got) != want {
			t.Errorf("%d bytes: %d %q; want 200 %q", n, resp.StatusCode, got, want)
		}
	}
}
