package oidc

import (
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewValidates(t *testing.T) {
	ok := Config{Issuer: testIssuer, Audience: testAudience, JWKSURL: "https://idp.example.test/keys"}
	tests := []struct {
		name    string
		edit    func(*Config)
		problem string // substring of the error; "" means valid
	}{
		{"valid url", func(*Config) {}, ""},
		{"valid file", func(c *Config) { c.JWKSURL, c.JWKSFile = "", "/etc/moe/jwks.json" }, ""},
		{"http loopback", func(c *Config) { c.JWKSURL = "http://127.0.0.1:8080/keys" }, ""},
		{"http localhost", func(c *Config) { c.JWKSURL = "http://localhost/keys" }, ""},
		{"http ipv6 loopback", func(c *Config) { c.JWKSURL = "http://[::1]:9/keys" }, ""},
		{"required claim", func(c *Config) { c.RequiredClaim = "roles=scorer" }, ""},
		{"no issuer", func(c *Config) { c.Issuer = " " }, "issuer is required"},
		{"no audience", func(c *Config) { c.Audience = "" }, "audience is required"},
		{"no source", func(c *Config) { c.JWKSURL = "" }, "one of jwks_url and jwks_file"},
		{"both sources", func(c *Config) { c.JWKSFile = "/x" }, "mutually exclusive"},
		{"http remote", func(c *Config) { c.JWKSURL = "http://idp.example.test/keys" }, "must be https"},
		{"relative url", func(c *Config) { c.JWKSURL = "/keys" }, "not an absolute URL"},
		{"ftp", func(c *Config) { c.JWKSURL = "ftp://idp.example.test/keys" }, "must be https"},
		{"credentials", func(c *Config) { c.JWKSURL = "https://user:hunter2@idp.example.test/keys" }, "must not contain credentials"},
		{"claim without value", func(c *Config) { c.RequiredClaim = "roles=" }, "want name=value"},
		{"claim without =", func(c *Config) { c.RequiredClaim = "roles" }, "want name=value"},
		{"claim without name", func(c *Config) { c.RequiredClaim = "=x" }, "want name=value"},
		{"negative interval", func(c *Config) { c.RefreshInterval = -time.Second }, "refresh_interval"},
		{"negative gap", func(c *Config) { c.MinRefreshGap = -time.Second }, "min_refresh_gap"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.edit(&cfg)
			v, err := New(cfg)
			if tc.problem == "" {
				if err != nil || v == nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.problem) {
				t.Fatalf("New: %v, want ErrConfig with %q", err, tc.problem)
			}
		})
	}
}

func TestNewListsEveryProblem(t *testing.T) {
	_, err := New(Config{RequiredClaim: "x", RefreshInterval: -1})
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("New: %v", err)
	}
	for _, want := range []string{"issuer", "audience", "jwks_url", "required_claim", "refresh_interval"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

// TestConfigErrorsHideSecrets: a JWKS URL can carry a password or a query
// token (a SAS signature); config errors must not repeat them.
func TestConfigErrorsHideSecrets(t *testing.T) {
	for _, u := range []string{
		"https://user:hunter2@idp.example.test/keys",
		"http://user:hunter2@idp.example.test/keys",
		"http://idp.example.test/keys?sig=hunter2",
		"ftp://idp.example.test/keys#hunter2",
		"https://idp.example.test:badport/keys?sig=hunter2",
	} {
		_, err := New(Config{Issuer: testIssuer, Audience: testAudience, JWKSURL: u})
		if err == nil {
			t.Errorf("%s: accepted", u)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error repeats a secret: %v", err)
		}
	}
}

func TestDefaults(t *testing.T) {
	v, err := New(Config{Issuer: testIssuer, Audience: testAudience, JWKSURL: "https://idp.example.test/keys?x=1"})
	if err != nil {
		t.Fatal(err)
	}
	if v.cfg.RefreshInterval != time.Hour || v.cfg.MinRefreshGap != 30*time.Second {
		t.Errorf("RefreshInterval %v, MinRefreshGap %v; want 1h, 30s", v.cfg.RefreshInterval, v.cfg.MinRefreshGap)
	}
	if v.cfg.HTTPClient == nil || v.cfg.HTTPClient.Timeout != DefaultHTTPTimeout || v.cfg.Logger == nil || v.cfg.Clock == nil {
		t.Errorf("defaults not applied: %+v", v.cfg)
	}
	if v.source != "https://idp.example.test/keys" {
		t.Errorf("source = %q, want the URL without query", v.source)
	}
}

func TestParseJWKS(t *testing.T) {
	rsa := newRSAKey(t, "rsa", "RS256")
	p256 := newECKey(t, "p256", elliptic.P256(), "ES256")
	p384 := newECKey(t, "p384", elliptic.P384(), "ES384")
	p521 := newECKey(t, "p521", elliptic.P521(), "ES512")
	ed := newEdKey(t, "ed")
	rsaPadded := rsa.jwk(map[string]any{"kid": "rsa-padded"})
	rsaPadded["n"] = rsaPadded["n"].(string) + "=="
	offCurve := p256.jwk(map[string]any{"kid": "off-curve"})
	y, err := b64(offCurve["y"].(string))
	if err != nil {
		t.Fatal(err)
	}
	y[5] ^= 1
	offCurve["y"] = b64u(y)
	small := rsa.jwk(map[string]any{"kid": "small", "n": b64u(append([]byte{0xff}, make([]byte, 127)...))})
	keys := []any{
		rsa.jwk(nil),
		rsaPadded,
		p256.jwk(map[string]any{"alg": "ES256"}),
		p384.jwk(nil),
		ed.jwk(map[string]any{"alg": "Ed25519"}),
		// Skipped:
		p521.jwk(nil),
		small,
		map[string]any{"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
		rsa.jwk(map[string]any{"kid": "enc", "use": "enc"}),
		p256.jwk(map[string]any{"kid": "p256-rs", "alg": "RS256"}),
		rsa.jwk(map[string]any{"kid": "rsa-hs", "alg": "HS256"}),
		rsa.jwk(nil), // duplicate kid
		map[string]any{"kty": "RSA", "kid": 5},
		offCurve,
		ed.jwk(map[string]any{"kid": "ed-short", "x": b64u(make([]byte, 31))}),
		rsa.jwk(map[string]any{"kid": "even-e", "e": b64u([]byte{1, 0})}),
		map[string]any{"kty": "XYZ", "kid": "xyz"},
		"junk",
	}
	data, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	set, skipped, err := parseJWKS(data)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"rsa", "rsa-padded", "p256", "p384", "ed"}; !slices.Equal(set.order, want) {
		t.Errorf("kids = %q, want %q", set.order, want)
	}
	for kid, algs := range map[string][]string{
		"rsa":  {"RS256", "RS384", "RS512", "PS256"},
		"p256": {"ES256"},
		"p384": {"ES384"},
		"ed":   {"EdDSA"},
	} {
		if k := set.lookup(kid); k == nil || !slices.Equal(k.algs, algs) {
			t.Errorf("key %s: %+v, want algs %q", kid, k, algs)
		}
	}
	if len(skipped) != len(keys)-5 {
		t.Errorf("skipped %d keys, want %d: %+v", len(skipped), len(keys)-5, skipped)
	}
	for _, s := range skipped {
		if s.reason == "" {
			t.Errorf("key %s skipped without a reason", s.kid)
		}
	}

	for _, doc := range []string{``, `[]`, `{"keys": {}}`, `{"keys": []}`, `{}`, `null`,
		`{"keys": [{"kty": "oct", "kid": "a", "k": "c2VjcmV0"}]}`} {
		if set, _, err := parseJWKS([]byte(doc)); err == nil {
			t.Errorf("parseJWKS(%s) = %+v, want an error", doc, set)
		}
	}
}
