// Package pki runs moe's local certificate authority: it creates a CA and a
// server certificate in the data directory, hands the gateway a tls.Config
// whose certificate can change without a restart, renews the certificate
// before it expires, and can serve a user-supplied certificate instead,
// reloading it when its files change.
package pki

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moe-serving/moe/internal/auth"
)

// File names in the directory given to Open. Keys are mode 0600,
// certificates 0644.
const (
	CACertFile     = "ca.pem"
	CAKeyFile      = "ca-key.pem"
	ServerCertFile = "server.pem"
	ServerKeyFile  = "server-key.pem"
)

// DefaultPollInterval is how often Run looks at the certificate files when
// Authority.PollInterval is zero.
const DefaultPollInterval = 5 * time.Second

// Authority is the local CA and the server certificate the gateway presents.
// Its methods are safe for concurrent use. Set the exported fields before
// calling Run or ServerTLSConfig, and do not change them afterwards.
type Authority struct {
	// Logger receives certificate reloads, renewals and failures. Nil
	// means slog.Default() with component=pki; a Logger set here is used
	// as is (add the component attribute yourself).
	Logger *slog.Logger
	// PollInterval is how often Run checks the UseFiles files for changes
	// and the generated certificate for expiry. Zero means
	// DefaultPollInterval.
	PollInterval time.Duration

	dir   string
	hosts []string
	now   func() time.Time // tests replace it

	mu    sync.Mutex // guards the following
	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
	caPEM []byte
	leaf  *tls.Certificate // the generated server certificate
	user  *userFiles       // non-nil after UseFiles

	// serving is what GetCertificate returns: leaf, or the user's
	// certificate after UseFiles. Read without a lock on every handshake.
	serving atomic.Pointer[tls.Certificate]
}

// userFiles is the certificate and key given to UseFiles and what they
// looked like when last read.
type userFiles struct {
	certFile, keyFile string
	certStat, keyStat os.FileInfo
}

// Open loads or creates, under dir (created 0700 if missing), a local CA
// (ECDSA P-256, valid CAValidity; ca.pem and ca-key.pem) and a server
// certificate signed by it for hosts (server.pem and server-key.pem, valid
// LeafValidity). Hosts are DNS names, wildcards such as
// "*.local.inference.localhost", and IP addresses such as "127.0.0.1" or
// "::1"; at least one is required.
//
// The server certificate is re-issued when it is missing, unreadable, not
// signed by the CA, expires within RenewBefore, or does not list every host.
// The CA is kept as long as it has more than RenewBefore to live: an existing
// ca.pem without its key, or a pair that does not parse, is an error rather
// than a silent new CA that clients would not trust. Key files are read with
// auth.ReadSecretFile, so loose permissions are an error.
//
// Open holds no open files; there is nothing to close.
func Open(dir string, hosts []string) (*Authority, error) {
	hosts, err := normalizeHosts(hosts)
	if err != nil {
		return nil, fmt.Errorf("open pki %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open pki: %w", err)
	}
	a := &Authority{dir: dir, hosts: hosts, now: time.Now}
	if err := a.loadCA(); err != nil {
		return nil, fmt.Errorf("open pki %s: %w", dir, err)
	}
	a.loadLeaf()
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, _, err := a.renew(a.now()); err != nil {
		return nil, fmt.Errorf("open pki %s: %w", dir, err)
	}
	return a, nil
}

func (a *Authority) path(name string) string { return filepath.Join(a.dir, name) }

// loadCA reads the CA pair if it exists. A missing pair leaves a.ca nil for
// renew to create.
func (a *Authority) loadCA() error {
	certPEM, certErr := os.ReadFile(a.path(CACertFile))
	keyPEM, keyErr := auth.ReadSecretFile(a.path(CAKeyFile))
	switch {
	case errors.Is(certErr, fs.ErrNotExist):
		// No certificate was ever published; a stray key (from a crash
		// between the two writes) is simply replaced.
		if keyErr != nil && !errors.Is(keyErr, fs.ErrNotExist) {
			return keyErr
		}
		return nil
	case certErr != nil:
		return certErr
	case errors.Is(keyErr, fs.ErrNotExist):
		return fmt.Errorf("%s exists but %s does not; restore the key, or remove %s to create a new CA (clients must then trust the new one)",
			a.path(CACertFile), a.path(CAKeyFile), a.path(CACertFile))
	case keyErr != nil:
		return keyErr
	}
	ca, key, err := parseCA(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("load CA %s: %w", a.path(CACertFile), err)
	}
	a.ca, a.caKey, a.caPEM = ca, key, certPEM
	return nil
}

// loadLeaf reads the server certificate if it exists and is signed by the
// CA; anything else leaves a.leaf nil for renew to issue.
func (a *Authority) loadLeaf() {
	if a.ca == nil {
		return
	}
	certPEM, err := os.ReadFile(a.path(ServerCertFile))
	if err != nil {
		return
	}
	keyPEM, err := auth.ReadSecretFile(a.path(ServerKeyFile))
	if err != nil {
		return
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil || pair.Leaf.CheckSignatureFrom(a.ca) != nil {
		return
	}
	a.leaf = &pair
}

// renew creates the CA and issues the server certificate as needed (see
// Open), writes what changed and, unless UseFiles is in effect, serves the
// new certificate. It reports what it replaced. a.mu must be held.
func (a *Authority) renew(now time.Time) (caRenewed, leafRenewed bool, err error) {
	if a.ca == nil || a.ca.NotAfter.Sub(now) < RenewBefore {
		der, key, err := newCA(now)
		if err != nil {
			return false, false, fmt.Errorf("create CA: %w", err)
		}
		keyPEM, err := encodeKey(key)
		if err != nil {
			return false, false, fmt.Errorf("create CA: %w", err)
		}
		// Key first: a crash in between leaves a key without a
		// certificate, which the next Open replaces.
		if err := auth.WriteSecretFile(a.path(CAKeyFile), keyPEM); err != nil {
			return false, false, fmt.Errorf("create CA: %w", err)
		}
		certPEM := encodeCert(der)
		if err := writePublicFile(a.path(CACertFile), certPEM); err != nil {
			return false, false, fmt.Errorf("create CA: %w", err)
		}
		ca, err := x509.ParseCertificate(der)
		if err != nil {
			return false, false, fmt.Errorf("create CA: %w", err)
		}
		caRenewed = true
		a.ca, a.caKey, a.caPEM, a.leaf = ca, key, certPEM, nil
	}
	if a.leaf == nil || a.leaf.Leaf.NotAfter.Sub(now) < RenewBefore || !covers(a.leaf.Leaf, a.hosts) {
		der, key, err := newLeaf(now, a.hosts, a.ca, a.caKey)
		if err != nil {
			return false, false, fmt.Errorf("issue server certificate: %w", err)
		}
		keyPEM, err := encodeKey(key)
		if err != nil {
			return false, false, fmt.Errorf("issue server certificate: %w", err)
		}
		certPEM := encodeCert(der)
		// A crash between the two writes leaves a mismatched pair,
		// which loadLeaf rejects and the next Open re-issues.
		if err := auth.WriteSecretFile(a.path(ServerKeyFile), keyPEM); err != nil {
			return false, false, fmt.Errorf("issue server certificate: %w", err)
		}
		if err := writePublicFile(a.path(ServerCertFile), certPEM); err != nil {
			return false, false, fmt.Errorf("issue server certificate: %w", err)
		}
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return false, false, fmt.Errorf("issue server certificate: %w", err)
		}
		leafRenewed = true
		a.leaf = &pair
	}
	if a.user == nil {
		a.serving.Store(a.leaf)
	}
	return caRenewed, leafRenewed, nil
}

// writePublicFile writes a certificate atomically, readable by all (a CA
// certificate is something other users may need to trust).
func writePublicFile(path string, data []byte) error {
	if err := auth.WriteSecretFile(path, data); err != nil {
		return err
	}
	return os.Chmod(path, 0o644)
}

// CACertPEM returns the local CA certificate in PEM form, for clients to
// trust. The caller may keep and modify the slice.
func (a *Authority) CACertPEM() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]byte(nil), a.caPEM...)
}

// CertPool returns a new pool that trusts the local CA and nothing else (not
// the system roots, and not the issuer of a UseFiles certificate), for the
// CLI and tests.
func (a *Authority) CertPool() *x509.CertPool {
	a.mu.Lock()
	defer a.mu.Unlock()
	pool := x509.NewCertPool()
	pool.AddCert(a.ca)
	return pool
}

// ServerTLSConfig returns a new server configuration: TLS 1.2 or later, Go's
// default cipher suites, ALPN h2 and http/1.1, and a GetCertificate that
// serves the current certificate, so renewals and UseFiles reloads apply to
// the next handshake without a restart. The caller may change the returned
// config.
func (a *Authority) ServerTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return a.serving.Load(), nil
		},
	}
}

// UseFiles makes the server present the certificate chain in certFile (PEM,
// leaf first) with the key in keyFile instead of the generated certificate,
// from the next handshake on. The pair must parse, match and be within its
// validity period, or UseFiles returns an error and changes nothing. Run
// reloads the files when they change. The key file is not held to 0600
// (mounted Kubernetes secrets are often 0644).
func (a *Authority) UseFiles(certFile, keyFile string) error {
	u := &userFiles{certFile: certFile, keyFile: keyFile}
	cert, err := u.load(a.now())
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.user = u
	a.serving.Store(cert)
	a.checkUserExpiry(cert)
	return nil
}

// load stats, then reads and validates the pair, recording what the files
// looked like. Stat comes first so that a change during the read is seen
// again by the next poll.
func (u *userFiles) load(now time.Time) (*tls.Certificate, error) {
	var err error
	if u.certStat, err = os.Stat(u.certFile); err != nil {
		return nil, fmt.Errorf("load certificate: %w", err)
	}
	if u.keyStat, err = os.Stat(u.keyFile); err != nil {
		return nil, fmt.Errorf("load certificate key: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(u.certFile, u.keyFile)
	if err != nil {
		return nil, fmt.Errorf("load certificate %s with key %s: %w", u.certFile, u.keyFile, err)
	}
	if now.Before(cert.Leaf.NotBefore) || now.After(cert.Leaf.NotAfter) {
		return nil, fmt.Errorf("load certificate %s: valid from %s to %s, not now",
			u.certFile, cert.Leaf.NotBefore.Format(time.RFC3339), cert.Leaf.NotAfter.Format(time.RFC3339))
	}
	return &cert, nil
}

// changed reports whether either file differs from when it was last read
// (another file, size or modification time: a Kubernetes secret update swaps
// a symlink, an editor or cert-manager rewrites in place).
func (u *userFiles) changed() bool {
	for _, f := range []struct {
		name string
		old  os.FileInfo
	}{{u.certFile, u.certStat}, {u.keyFile, u.keyStat}} {
		fi, err := os.Stat(f.name)
		if err != nil {
			// Missing for now (mid-replacement); keep serving.
			continue
		}
		if !os.SameFile(fi, f.old) || fi.Size() != f.old.Size() || !fi.ModTime().Equal(f.old.ModTime()) {
			return true
		}
	}
	return false
}

func (a *Authority) logger() *slog.Logger {
	if a.Logger == nil {
		return slog.Default().With("component", "pki")
	}
	return a.Logger
}

func (a *Authority) checkUserExpiry(cert *tls.Certificate) {
	if left := cert.Leaf.NotAfter.Sub(a.now()); left < RenewBefore {
		a.logger().Warn("TLS certificate expires soon; replace its files",
			"cert_file", a.user.certFile, "not_after", cert.Leaf.NotAfter, "left", left.Round(time.Hour))
	}
}

// Run checks the certificates every PollInterval until ctx is done, then
// returns nil. It reloads the UseFiles pair when either file changes (a new
// pair that fails to load is logged and the previous certificate kept until
// the files change again), and renews the CA and the generated certificate
// before they expire. Run one Run per Authority.
func (a *Authority) Run(ctx context.Context) error {
	interval := a.PollInterval
	if interval <= 0 {
		interval = DefaultPollInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			a.poll()
		}
	}
}

// poll is one round of Run.
func (a *Authority) poll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	log := a.logger()
	now := a.now()
	if u := a.user; u != nil && u.changed() {
		cert, err := u.load(now)
		if err != nil {
			log.Error("reload TLS certificate failed; keeping the previous one", "err", err)
		} else {
			a.serving.Store(cert)
			log.Info("reloaded TLS certificate", "cert_file", u.certFile,
				"subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter)
			a.checkUserExpiry(cert)
		}
	}
	caRenewed, leafRenewed, err := a.renew(now)
	if err != nil {
		log.Error("renew certificates failed; will retry", "err", err)
		return
	}
	if caRenewed {
		log.Warn("created a new local CA; clients must trust the new "+CACertFile, "file", a.path(CACertFile), "not_after", a.ca.NotAfter)
	}
	if leafRenewed {
		log.Info("renewed server certificate", "file", a.path(ServerCertFile), "not_after", a.leaf.Leaf.NotAfter)
	}
}
