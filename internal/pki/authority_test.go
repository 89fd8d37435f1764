package pki

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moe-serving/moe/internal/auth"
)

var testHosts = []string{"*.local.inference.localhost", "localhost", "127.0.0.1", "::1"}

func open(t *testing.T, dir string, hosts []string) *Authority {
	t.Helper()
	a, err := Open(dir, hosts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return a
}

func serial(a *Authority) string { return a.serving.Load().Leaf.SerialNumber.String() }

func TestOpen_Creates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	a := open(t, dir, testHosts)

	for name, want := range map[string]fs.FileMode{
		CACertFile: 0o644, CAKeyFile: 0o600, ServerCertFile: 0o644, ServerKeyFile: 0o600,
	} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %04o; want %04o", name, got, want)
		}
	}

	ca := a.ca
	if !ca.IsCA || ca.NotAfter.Sub(ca.NotBefore) < CAValidity {
		t.Errorf("CA: IsCA %v, valid %v to %v", ca.IsCA, ca.NotBefore, ca.NotAfter)
	}
	leaf := a.serving.Load().Leaf
	if d := time.Until(leaf.NotAfter); d < LeafValidity-time.Hour || d > LeafValidity+time.Hour {
		t.Errorf("leaf lifetime %v; want about %v", d, LeafValidity)
	}
	for _, name := range []string{"a.local.inference.localhost", "localhost", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: a.CertPool()}); err != nil {
			t.Errorf("verify leaf for %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "example.com", Roots: a.CertPool()}); err == nil {
		t.Error("leaf verifies for example.com")
	}
	block := a.CACertPEM()
	if !bytes.Contains(block, []byte("BEGIN CERTIFICATE")) {
		t.Errorf("CACertPEM: %q", block)
	}
}

func TestOpen_Reopen(t *testing.T) {
	dir := t.TempDir()
	a := open(t, dir, testHosts)
	b := open(t, dir, []string{"LOCALHOST", "[::1]", "127.0.0.1", "*.local.inference.localhost."})
	if !bytes.Equal(a.CACertPEM(), b.CACertPEM()) {
		t.Error("reopen changed the CA")
	}
	if serial(a) != serial(b) {
		t.Error("reopen with the same hosts re-issued the server certificate")
	}

	// A subset of the hosts is still covered.
	c := open(t, dir, []string{"localhost"})
	if serial(a) != serial(c) {
		t.Error("reopen with fewer hosts re-issued the server certificate")
	}
}

func TestOpen_HostsChange(t *testing.T) {
	dir := t.TempDir()
	a := open(t, dir, testHosts)
	b := open(t, dir, append(testHosts, "moe.example.internal", "10.0.0.7"))
	if !bytes.Equal(a.CACertPEM(), b.CACertPEM()) {
		t.Error("new hosts changed the CA")
	}
	if serial(a) == serial(b) {
		t.Fatal("new hosts did not re-issue the server certificate")
	}
	leaf := b.serving.Load().Leaf
	for _, name := range []string{"moe.example.internal", "10.0.0.7", "x.local.inference.localhost"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: b.CertPool()}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	// The new certificate is on disk: a third open keeps it.
	if c := open(t, dir, append(testHosts, "moe.example.internal")); serial(c) != serial(b) {
		t.Error("re-issued certificate was not saved")
	}
}

func TestOpen_Errors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hosts []string
		setup func(dir string)
		want  string
	}{
		{name: "NoHosts", hosts: []string{" "}, want: "no hosts"},
		{name: "BadWildcard", hosts: []string{"a.*.localhost"}, want: "not a valid DNS name"},
		{name: "CAWithoutKey", hosts: testHosts, setup: func(dir string) {
			os.Remove(filepath.Join(dir, CAKeyFile))
		}, want: "or remove"},
		{name: "CAKeyMode", hosts: testHosts, setup: func(dir string) {
			os.Chmod(filepath.Join(dir, CAKeyFile), 0o640)
		}, want: "chmod 600"},
		{name: "CACorrupt", hosts: testHosts, setup: func(dir string) {
			os.WriteFile(filepath.Join(dir, CACertFile), []byte("junk"), 0o644)
		}, want: "load CA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.setup != nil {
				open(t, dir, testHosts)
				tc.setup(dir)
			}
			_, err := Open(dir, tc.hosts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open: %v; want error containing %q", err, tc.want)
			}
		})
	}
}

func TestOpen_BrokenLeafReissued(t *testing.T) {
	dir := t.TempDir()
	a := open(t, dir, testHosts)
	// A crash between writing the key and the certificate leaves a pair
	// that does not match.
	other := t.TempDir()
	open(t, other, testHosts)
	copyFile(t, filepath.Join(other, ServerKeyFile), filepath.Join(dir, ServerKeyFile))

	b := open(t, dir, testHosts)
	if serial(a) == serial(b) {
		t.Error("mismatched pair was not re-issued")
	}
	if !bytes.Equal(a.CACertPEM(), b.CACertPEM()) {
		t.Error("broken leaf changed the CA")
	}
}

func TestAuthority_Renew(t *testing.T) {
	dir := t.TempDir()
	a := open(t, dir, testHosts)
	oldCA, oldSerial := a.CACertPEM(), serial(a)
	start := time.Now()

	a.now = func() time.Time { return start.Add(LeafValidity - RenewBefore - 24*time.Hour) }
	a.poll()
	if serial(a) != oldSerial {
		t.Fatal("renewed a certificate with more than RenewBefore left")
	}

	later := start.Add(LeafValidity - RenewBefore + time.Hour)
	a.now = func() time.Time { return later }
	a.poll()
	if serial(a) == oldSerial {
		t.Fatal("did not renew a certificate with less than RenewBefore left")
	}
	if got := a.serving.Load().Leaf.NotAfter; got.Before(later.Add(LeafValidity - time.Hour)) {
		t.Errorf("renewed certificate expires %v; want about %v", got, later.Add(LeafValidity))
	}
	if !bytes.Equal(a.CACertPEM(), oldCA) {
		t.Error("leaf renewal changed the CA")
	}

	// Near the end of the CA's life both are replaced, and the new leaf is
	// signed by the new CA.
	a.now = func() time.Time { return start.Add(CAValidity - RenewBefore + time.Hour) }
	a.poll()
	if bytes.Equal(a.CACertPEM(), oldCA) {
		t.Fatal("did not renew an expiring CA")
	}
	if err := a.serving.Load().Leaf.CheckSignatureFrom(a.ca); err != nil {
		t.Errorf("leaf after CA renewal: %v", err)
	}
	if b := open(t, dir, testHosts); !bytes.Equal(b.CACertPEM(), a.CACertPEM()) {
		t.Error("renewed CA was not saved")
	}
}

// serve runs a TLS server on 127.0.0.1:0 with a's config that answers each
// handshake and closes, and returns its address.
func serve(t *testing.T, a *Authority) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", a.ServerTLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.(*tls.Conn).Handshake()
			})
		}
	})
	return ln.Addr().String()
}

// dial handshakes with addr as serverName, trusting pool, and returns the
// connection state.
func dial(addr, serverName string, pool *x509.CertPool, mutate func(*tls.Config)) (tls.ConnectionState, error) {
	cfg := &tls.Config{RootCAs: pool, ServerName: serverName, NextProtos: []string{"h2", "http/1.1"}}
	if mutate != nil {
		mutate(cfg)
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.ConnectionState(), nil
}

func TestServerTLSConfig_Handshake(t *testing.T) {
	a := open(t, t.TempDir(), testHosts)
	addr := serve(t, a)

	for _, name := range []string{"fraud.local.inference.localhost", "127.0.0.1", "localhost"} {
		st, err := dial(addr, name, a.CertPool(), nil)
		if err != nil {
			t.Errorf("handshake as %s: %v", name, err)
			continue
		}
		if st.NegotiatedProtocol != "h2" {
			t.Errorf("ALPN as %s: %q; want h2", name, st.NegotiatedProtocol)
		}
	}

	// tls.Dial derives the server name from the address.
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: a.CertPool()})
	if err != nil {
		t.Fatalf("tls.Dial %s: %v", addr, err)
	}
	c.Close()

	if _, err := dial(addr, "example.com", a.CertPool(), nil); err == nil {
		t.Error("handshake as example.com succeeded")
	}
	if _, err := dial(addr, "127.0.0.1", x509.NewCertPool(), nil); err == nil {
		t.Error("handshake without trusting the CA succeeded")
	}
	_, err = dial(addr, "127.0.0.1", a.CertPool(), func(c *tls.Config) {
		c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	})
	if err == nil || !strings.Contains(err.Error(), "protocol version not supported") {
		t.Errorf("TLS 1.1 handshake: %v; want the server to refuse the version", err)
	}
	st, err := dial(addr, "127.0.0.1", a.CertPool(), func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 })
	if err != nil || st.Version != tls.VersionTLS12 {
		t.Errorf("TLS 1.2 handshake: version %x, %v", st.Version, err)
	}
}

// syncBuffer is a log sink safe for the Run goroutine and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	// Replace by rename, as cert-manager and editors do.
	if err := auth.WriteSecretFile(to, data); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAuthority_UseFiles(t *testing.T) {
	a := open(t, t.TempDir(), testHosts)
	var logs syncBuffer
	a.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	a.PollInterval = 10 * time.Millisecond
	addr := serve(t, a)

	// "User" certificates: from two other authorities.
	userDir := t.TempDir()
	certFile, keyFile := filepath.Join(userDir, "tls.crt"), filepath.Join(userDir, "tls.key")
	first, second := t.TempDir(), t.TempDir()
	ca1, ca2 := open(t, first, []string{"moe.example.com"}), open(t, second, []string{"moe.example.com"})
	copyFile(t, filepath.Join(first, ServerCertFile), certFile)
	copyFile(t, filepath.Join(first, ServerKeyFile), keyFile)

	if err := a.UseFiles(certFile, filepath.Join(second, ServerKeyFile)); err == nil {
		t.Fatal("UseFiles with a key that does not match succeeded")
	}
	if err := a.UseFiles(certFile, filepath.Join(userDir, "missing.key")); err == nil {
		t.Fatal("UseFiles with a missing key succeeded")
	}
	if _, err := dial(addr, "127.0.0.1", a.CertPool(), nil); err != nil {
		t.Fatalf("failed UseFiles changed the certificate: %v", err)
	}
	if err := a.UseFiles(certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	if _, err := dial(addr, "moe.example.com", ca1.CertPool(), nil); err != nil {
		t.Fatalf("after UseFiles: %v", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	// Replace both files: Run picks the new pair up.
	copyFile(t, filepath.Join(second, ServerCertFile), certFile)
	copyFile(t, filepath.Join(second, ServerKeyFile), keyFile)
	waitFor(t, "the replaced certificate", func() bool {
		_, err := dial(addr, "moe.example.com", ca2.CertPool(), nil)
		return err == nil
	})
	waitFor(t, "the reload log", func() bool { return strings.Contains(logs.String(), "reloaded TLS certificate") })

	// An invalid replacement is logged and the previous certificate kept.
	if err := auth.WriteSecretFile(certFile, []byte("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the failed reload log", func() bool {
		return strings.Contains(logs.String(), "reload TLS certificate failed; keeping the previous one")
	})
	if _, err := dial(addr, "moe.example.com", ca2.CertPool(), nil); err != nil {
		t.Errorf("after an invalid replacement: %v", err)
	}
	if strings.Contains(logs.String(), "PRIVATE KEY") {
		t.Error("a key reached the log")
	}
}

func TestAuthority_UseFilesExpired(t *testing.T) {
	a := open(t, t.TempDir(), testHosts)
	der, key, err := newLeaf(time.Now().Add(-2*LeafValidity), []string{"old.example.com"}, a.ca, a.caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := errors.Join(os.WriteFile(certFile, encodeCert(der), 0o644), os.WriteFile(keyFile, keyPEM, 0o600)); err != nil {
		t.Fatal(err)
	}
	before := serial(a)
	if err := a.UseFiles(certFile, keyFile); err == nil || !strings.Contains(err.Error(), "not now") {
		t.Fatalf("UseFiles with an expired certificate: %v", err)
	}
	if serial(a) != before {
		t.Error("failed UseFiles changed the certificate")
	}
}

func TestAuthority_RunStops(t *testing.T) {
	a := open(t, t.TempDir(), testHosts)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := a.Run(ctx); err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestLoadCertPool(t *testing.T) {
	dir := t.TempDir()
	a := open(t, dir, testHosts)
	pool, err := LoadCertPool(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.serving.Load().Leaf.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: pool}); err != nil {
		t.Errorf("verify with LoadCertPool: %v", err)
	}
	if _, err := LoadCertPool(t.TempDir()); err == nil {
		t.Error("LoadCertPool of an empty directory succeeded")
	}
}
