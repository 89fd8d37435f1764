package main

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/moe-serving/moe/internal/moetest"
)

// TestAADTokenWithOIDCIssuer: an aad_token endpoint accepts JWTs from the
// issuer moe serve is configured with (a JWKS file written by the test
// stands in for an identity provider's keys) and refuses everything else.
func TestAADTokenWithOIDCIssuer(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	python := moetest.Python(t)
	proj := project(t, python)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	jwks, _ := json.Marshal(map[string]any{"keys": []any{map[string]any{
		"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
		"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
	}}})
	jwksFile := filepath.Join(t.TempDir(), "jwks.json")
	os.WriteFile(jwksFile, jwks, 0o644)
	const issuer = "https://idp.example.test/tenant/v2.0"
	srv := moetest.Start(t, t.TempDir(), "--python", python, "--oidc-issuer", issuer, "--oidc-jwks-file", jwksFile,
		"--oidc-audience", "https://ml.azure.com", "--oidc-required-claim", "roles=scorer")
	moetest.WriteFile(t, filepath.Join(proj, "yaml", "aad.yml"), "name: aad-endpoint\nauth_mode: aad_token\n")
	srv.MustCLI("online-endpoint", "create", "-f", filepath.Join(proj, "yaml", "aad.yml"))
	srv.MustCLI("online-deployment", "create", "-f", filepath.Join(proj, "yaml", "green.yml"), "-e", "aad-endpoint", "--all-traffic")

	sign := func(k *rsa.PrivateKey, kid string, claims jwt.MapClaims) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
		tok.Header["kid"] = kid
		s, err := tok.SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	now := time.Now()
	good := jwt.MapClaims{"iss": issuer, "aud": "https://ml.azure.com", "sub": "user-1", "roles": []string{"reader", "scorer"},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	with := func(k string, v any) jwt.MapClaims {
		c := jwt.MapClaims{}
		for a, b := range good {
			c[a] = b
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	url := srv.ScoringURL("aad-endpoint")
	if resp, body := srv.Score(url, sign(key, "k1", good), []byte(sampleRequest)); resp.StatusCode != 200 || string(body) != "[0.5, 0.5]" {
		t.Fatalf("valid token: %d %s", resp.StatusCode, body)
	}
	for name, tok := range map[string]string{
		"wrong audience":    sign(key, "k1", with("aud", "https://other.example")),
		"wrong issuer":      sign(key, "k1", with("iss", "https://evil.example")),
		"expired":           sign(key, "k1", with("exp", now.Add(-time.Hour).Unix())),
		"missing role":      sign(key, "k1", with("roles", []string{"reader"})),
		"other signing key": sign(other, "k1", good),
		"unknown kid":       sign(other, "k2", good),
		"garbage":           "not.a.jwt",
		"moe key not a jwt": "0123456789abcdef0123456789abcdef",
	} {
		if resp, _ := srv.Score(url, tok, []byte(sampleRequest)); resp.StatusCode != 401 {
			t.Errorf("%s: status %d, want 401", name, resp.StatusCode)
		}
	}
	// an aad_token endpoint has no keys and no moe tokens
	if _, errOut, code := srv.CLI("online-endpoint", "get-credentials", "-n", "aad-endpoint"); code == 0 {
		t.Errorf("get-credentials on an aad_token endpoint succeeded: %s", errOut)
	}
}
