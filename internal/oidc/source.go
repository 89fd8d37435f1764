package oidc

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
)

// read returns the raw JWKS document from the configured source. It does
// not parse it.
func (v *Verifier) read(ctx context.Context) ([]byte, error) {
	if v.cfg.JWKSFile != "" {
		return readFile(v.cfg.JWKSFile)
	}
	return v.get(ctx)
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read jwks file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxJWKSSize+1))
	if err != nil {
		return nil, fmt.Errorf("read jwks file %s: %w", path, err)
	}
	if len(data) > maxJWKSSize {
		return nil, fmt.Errorf("read jwks file %s: larger than %d bytes", path, maxJWKSSize)
	}
	return data, nil
}

func (v *Verifier) get(ctx context.Context) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.cfg.JWKSURL, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks %s: %w", v.source, err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := v.cfg.HTTPClient.Do(req)
	if err != nil {
		// *url.Error repeats the full URL; v.source is enough.
		if ue, ok := err.(*url.Error); ok {
			err = ue.Err
		}
		return nil, fmt.Errorf("fetch jwks %s: %w", v.source, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, fmt.Errorf("fetch jwks %s: status %s", v.source, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
	if err != nil {
		return nil, fmt.Errorf("fetch jwks %s: read body: %w", v.source, err)
	}
	if len(data) > maxJWKSSize {
		return nil, fmt.Errorf("fetch jwks %s: body larger than %d bytes", v.source, maxJWKSSize)
	}
	return data, nil
}

// sourceName is the JWKS source as logged: the file path, or the URL
// without query, fragment or user info.
func sourceName(cfg *Config) string {
	if cfg.JWKSFile != "" {
		return cfg.JWKSFile
	}
	u, err := url.Parse(cfg.JWKSURL)
	if err != nil {
		return "jwks_url"
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}
