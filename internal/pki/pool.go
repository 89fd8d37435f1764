package pki

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
)

// LoadCertPool returns a pool trusting the local CA stored in dir, for
// clients (the CLI) that must not touch the CA's key.
func LoadCertPool(dir string) (*x509.CertPool, error) {
	p := filepath.Join(dir, CACertFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read moe's CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", p)
	}
	return pool, nil
}
