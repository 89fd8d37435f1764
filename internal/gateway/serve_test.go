package gateway

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// selfSigned returns a server certificate for *.local.inference.localhost,
// localhost and 127.0.0.1, and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "moe gateway test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"*.local.inference.localhost", "localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

// serveTLS runs s.Serve on 127.0.0.1:0 and returns the port and a channel
// with Serve's result.
func serveTLS(t *testing.T, s *Server, cert tls.Certificate) (int, <-chan error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- s.Serve(l, &tls.Config{Certificates: []tls.Certificate{cert}})
		close(done) // a test that read the result does not block the cleanup
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		<-done
	})
	return l.Addr().(*net.TCPAddr).Port, done
}

// tlsClient dials every host name to 127.0.0.1:port, as wildcard DNS for
// *.local.inference.localhost would, and verifies the gateway's certificate
// against pool.
func tlsClient(pool *x509.CertPool, port int, http2 bool, maxVersion uint16) *http.Client {
	var p http.Protocols
	p.SetHTTP1(!http2)
	p.SetHTTP2(http2)
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: maxVersion},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, "127.0.0.1:"+strconv.Itoa(port))
		},
		Protocols: &p,
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func TestServer_Serve(t *testing.T) {
	blue := newBackend(t, "blue", nil)
	fraud := newKeyEndpoint("fraud", []Weight{{"blue", 100}}, deployment("blue", 5*time.Second, blue.instance("blue-0")))
	s := New(Config{Logger: testLogger(t)})
	s.SetRoutes(table(fraud))
	cert, pool := selfSigned(t)
	port, _ := serveTLS(t, s, cert)
	base := "https://fraud.local.inference.localhost:" + strconv.Itoa(port)
	plainBase := "https://localhost:" + strconv.Itoa(port) // no wildcard DNS: path form

	for _, tt := range []struct {
		name   string
		http2  bool
		base   string
		key    string
		path   string
		want   int
		proto  int
		header string
	}{
		{"HTTP/1.1 primary key", false, base, "fraud-primary", "/score", 200, 1, "blue"},
		{"HTTP/2 secondary key", true, base, "fraud-secondary", "/score", 200, 2, "blue"},
		{"HTTP/2 wrong key", true, base, "other-primary", "/score", 401, 2, ""},
		{"HTTP/1.1 missing key", false, base, "", "/score", 401, 1, ""},
		{"HTTP/2 path form", true, plainBase, "fraud-primary", "/endpoints/fraud/score", 200, 2, "blue"},
		{"HTTP/1.1 path form", false, plainBase, "fraud-primary", "/endpoints/fraud/score", 200, 1, "blue"},
		{"HTTP/2 unknown endpoint", true, plainBase, "fraud-primary", "/endpoints/nope/score", 404, 2, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := tlsClient(pool, port, tt.http2, 0)
			defer c.CloseIdleConnections()
			a := do(t, c, tt.base, call{path: tt.path, key: tt.key})
			if a.status != tt.want || a.proto != tt.proto {
				t.Fatalf("status %d over HTTP/%d; want %d over HTTP/%d (body %s)", a.status, a.proto, tt.want, tt.proto, a.body)
			}
			if got := a.header.Get("azureml-model-deployment"); got != tt.header {
				t.Errorf("azureml-model-deployment = %q; want %q", got, tt.header)
			}
		})
	}
	t.Run("ScoringURI reaches the endpoint", func(t *testing.T) {
		c := tlsClient(pool, port, false, 0)
		defer c.CloseIdleConnections()
		a := do(t, c, s.ScoringURI("fraud", port), call{key: "fraud-primary"})
		if a.status != 200 {
			t.Errorf("status = %d; want 200", a.status)
		}
	})
	t.Run("TLS 1.1 refused", func(t *testing.T) {
		c := tlsClient(pool, port, false, tls.VersionTLS11)
		defer c.CloseIdleConnections()
		resp, err := c.Get(base + "/score")
		if err == nil {
			resp.Body.Close()
			t.Fatal("TLS 1.1 handshake succeeded; want it refused")
		}
	})
	t.Run("plain HTTP refused", func(t *testing.T) {
		c := &http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/-/healthz")
		if err == nil {
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("plain HTTP got %d; want a refusal", resp.StatusCode)
			}
		}
	})
}

func TestServer_ServeNeedsTLS(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := New(Config{}).Serve(l, nil); err == nil {
		t.Fatal("Serve(l, nil) = nil; want an error")
	}
}

// TestServer_Shutdown checks the two phases: /-/ready fails during
// ShutdownDelay while scoring still works, then Serve returns.
func TestServer_Shutdown(t *testing.T) {
	blue := newBackend(t, "blue", nil)
	fraud := newKeyEndpoint("fraud", []Weight{{"blue", 100}}, deployment("blue", 5*time.Second, blue.instance("blue-0")))
	s := New(Config{Logger: testLogger(t), ShutdownDelay: 300 * time.Millisecond})
	s.SetRoutes(table(fraud))
	cert, pool := selfSigned(t)
	port, served := serveTLS(t, s, cert)
	c := tlsClient(pool, port, false, 0)
	defer c.CloseIdleConnections()
	base := "https://localhost:" + strconv.Itoa(port)

	if a := do(t, c, base, call{method: "GET", path: "/-/ready"}); a.status != 200 {
		t.Fatalf("/-/ready = %d before shutdown; want 200", a.status)
	}
	shutdown := make(chan error, 1)
	go func() { shutdown <- s.Shutdown(t.Context()) }()
	deadline := time.Now().Add(250 * time.Millisecond)
	for {
		a := do(t, c, base, call{method: "GET", path: "/-/ready"})
		if a.status == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/-/ready = %d during shutdown; want 503", a.status)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if a := do(t, c, base, call{path: "/endpoints/fraud/score", key: "fraud-primary"}); a.status != 200 {
		t.Errorf("scoring during the shutdown delay = %d; want 200", a.status)
	}
	if err := <-shutdown; err != nil {
		t.Errorf("Shutdown = %v; want nil", err)
	}
	select {
	case err := <-served:
		if !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve = %v; want http.ErrServerClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after Shutdown")
	}
}
