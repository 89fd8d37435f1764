package oidc

import (
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fuzzSeedKey is a fixed Ed25519 key, so that the committed corpus in
// testdata/fuzz/FuzzVerify can hold tokens that verify (kid "fuzz-ed", exp
// in 2100, the fake clock's 2026 well inside their lifetime).
func fuzzSeedKey() testKey {
	seed := make([]byte, ed25519.SeedSize)
	copy(seed, "moe internal/oidc fuzz seed key.")
	return testKey{kid: "fuzz-ed", alg: "EdDSA", priv: ed25519.NewKeyFromSeed(seed)}
}

// FuzzVerify feeds arbitrary strings to Verify: it must never panic, every
// error must wrap one of the sentinels and not repeat the token, and an
// accepted token must carry the configured issuer and audience.
func FuzzVerify(f *testing.F) {
	v, keys, clock := fuzzVerifier(f)
	far := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	now := clock.Now()
	for _, k := range keys {
		f.Add(k.sign(f, claimsAt(now, map[string]any{"roles": []string{"scorer"}, "exp": far})))
		f.Add(k.sign(f, claimsAt(now, map[string]any{"roles": "scorer", "exp": now.Add(-time.Hour).Unix()})))
	}
	valid := keys[1].sign(f, claimsAt(now, map[string]any{"roles": []string{"scorer"}}))
	if _, err := v.Verify(f.Context(), valid); err != nil {
		f.Fatalf("seed token: %v", err)
	}
	parts := strings.Split(valid, ".")
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(rawToken(map[string]any{"alg": "none", "kid": "fuzz-rsa"}, claimsAt(now, nil), nil))
	f.Add(rawToken(map[string]any{"alg": "HS256", "kid": "fuzz-rsa"}, claimsAt(now, nil), make([]byte, 32)))
	f.Add("")
	f.Add("..")

	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(t.Context(), token)
		if err == nil {
			if c == nil || c.Issuer != testIssuer || !slices.Contains(c.Audience, testAudience) || !claimContains(c.Raw["roles"], "scorer") {
				t.Fatalf("accepted token with claims %+v", c)
			}
			return
		}
		if c != nil {
			t.Fatalf("claims %+v with error %v", c, err)
		}
		known := false
		for _, s := range allSentinels {
			known = known || errors.Is(err, s)
		}
		if !known {
			t.Fatalf("error %v wraps no sentinel", err)
		}
		if !strings.HasPrefix(err.Error(), "oidc: ") {
			t.Fatalf("error %q lacks the oidc: prefix", err)
		}
		// Messages may quote the kid or alg (64 bytes at most each), so
		// only a token longer than that could appear whole by chance.
		if len(token) > 200 && strings.Contains(err.Error(), token) {
			t.Fatalf("error contains the token")
		}
	})
}

// fuzzVerifier returns a Verifier reading a JWKS file that holds the fixed
// seed key and fresh RSA and EC keys, requiring roles=scorer.
func fuzzVerifier(tb testing.TB) (*Verifier, []testKey, *fakeClock) {
	tb.Helper()
	keys := []testKey{
		fuzzSeedKey(),
		newRSAKey(tb, "fuzz-rsa", "RS256"),
		newECKey(tb, "fuzz-ec", elliptic.P256(), "ES256"),
	}
	var jwks []map[string]any
	for _, k := range keys {
		jwks = append(jwks, k.jwk(nil))
	}
	path := filepath.Join(tb.TempDir(), "jwks.json")
	data, err := json.Marshal(map[string]any{"keys": jwks})
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	clock := newFakeClock()
	v, _ := testVerifier(tb, Config{JWKSFile: path, RequiredClaim: "roles=scorer"}, clock)
	return v, keys, clock
}

// TestFuzzCorpusValid checks that the committed valid-* seeds verify, so
// the corpus keeps reaching the end of Verify.
func TestFuzzCorpusValid(t *testing.T) {
	v, _, _ := fuzzVerifier(t)
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzVerify", "valid-*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no valid-* seeds: %v", err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		body, ok := strings.CutPrefix(string(data), "go test fuzz v1\nstring(")
		body, ok2 := strings.CutSuffix(strings.TrimSpace(body), ")")
		token, err := strconv.Unquote(body)
		if !ok || !ok2 || err != nil {
			t.Fatalf("%s: not a string seed", file)
		}
		if _, err := v.Verify(t.Context(), token); err != nil {
			t.Errorf("%s: %v", file, err)
		}
	}
}
