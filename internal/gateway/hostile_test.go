package gateway

// Hostile clients, over raw TLS connections on loopback to Serve (the
// real listener settings, not httptest's). An httptest backend stands in
// for the model host.

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

func dialTLS(t *testing.T, port int, pool *x509.CertPool) *tls.Conn {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", "127.0.0.1:"+strconv.Itoa(port),
		&tls.Config{RootCAs: pool, ServerName: "fraud.local.inference.localhost", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func rawRequest(header string) string {
	const body = `{"data": [[1, 2, 3]]}`
	return "POST /score HTTP/1.1\r\nHost: fraud.local.inference.localhost\r\n" +
		"Authorization: Bearer fraud-primary\r\nContent-Type: application/json\r\n" +
		header + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// statusLine sends req on a fresh connection and returns the answer's
// status line. The request is written on another goroutine: the server may
// answer (and stop reading) before it is all sent.
func statusLine(t *testing.T, port int, pool *x509.CertPool, req string) string {
	t.Helper()
	c := dialTLS(t, port, pool)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() { _, _ = io.WriteString(c, req) }()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read status line: %v", err)
	}
	return strings.TrimSpace(line)
}

func TestServer_HeaderSizeLimit(t *testing.T) {
	blue := newBackend(t, "blue", nil)
	s := New(Config{Logger: testLogger(t)}) // default MaxHeaderBytes: 64 KiB
	s.SetRoutes(table(newKeyEndpoint("fraud", []Weight{{"blue", 100}}, deployment("blue", 5*time.Second, blue.instance("blue-0")))))
	cert, pool := selfSigned(t)
	port, _ := serveTLS(t, s, cert)

	if got := statusLine(t, port, pool, rawRequest("X-Pad: "+strings.Repeat("a", 32<<10)+"\r\n")); got != "HTTP/1.1 200 OK" {
		t.Errorf("32 KiB of headers: %q; want 200", got)
	}
	if got := statusLine(t, port, pool, rawRequest("X-Pad: "+strings.Repeat("a", 100<<10)+"\r\n")); !strings.HasPrefix(got, "HTTP/1.1 431 ") {
		t.Errorf("100 KiB of headers: %q; want 431", got)
	}
	var many strings.Builder
	for i := range 8000 {
		many.WriteString("X-H" + strconv.Itoa(i) + ": v\r\n")
	}
	if got := statusLine(t, port, pool, rawRequest(many.String())); !strings.HasPrefix(got, "HTTP/1.1 431 ") {
		t.Errorf("8000 small headers (about 95 KiB): %q; want 431", got)
	}
}

// TestServer_SlowHeaders is a slowloris client: it sends its headers a
// byte at a time and is cut off at ReadHeaderTimeout, while others are
// served.
func TestServer_SlowHeaders(t *testing.T) {
	blue := newBackend(t, "blue", nil)
	s := New(Config{Logger: testLogger(t), ReadHeaderTimeout: 300 * time.Millisecond})
	s.SetRoutes(table(newKeyEndpoint("fraud", []Weight{{"blue", 100}}, deployment("blue", 5*time.Second, blue.instance("blue-0")))))
	cert, pool := selfSigned(t)
	port, _ := serveTLS(t, s, cert)

	c := dialTLS(t, port, pool)
	start := time.Now()
	cut := make(chan error, 1)
	go func() {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.ReadAll(c) // returns when the server hangs up
		cut <- err
	}()
	req := rawRequest("")
	var writeErr error
	for i := 0; i < len(req) && writeErr == nil; i++ {
		if _, writeErr = c.Write([]byte{req[i]}); writeErr != nil {
			break
		}
		select {
		case <-cut:
			writeErr = errors.New("cut")
		case <-time.After(50 * time.Millisecond):
		}
	}
	el := time.Since(start)
	if writeErr == nil {
		t.Fatalf("sent the whole request a byte every 50ms (%v); want the server to hang up after 300ms", el)
	}
	if el < 250*time.Millisecond || el > 3*time.Second {
		t.Errorf("cut after %v; want about 300ms (ReadHeaderTimeout)", el)
	}
	if got := statusLine(t, port, pool, rawRequest("")); got != "HTTP/1.1 200 OK" {
		t.Errorf("a normal client after the slow one: %q; want 200", got)
	}
}
