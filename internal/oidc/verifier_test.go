package oidc

import (
	"context"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// allSentinels are the errors Verify may wrap.
var allSentinels = []error{
	ErrTokenTooLarge, ErrMalformedToken, ErrAlgorithm, ErrUnknownKey, ErrSignature,
	ErrExpired, ErrNotYetValid, ErrIssuer, ErrAudience, ErrClaim, ErrJWKS,
}

// wantErr fails unless err wraps want, starts with "oidc:" and does not
// contain token.
func wantErr(t *testing.T, err, want error, token string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("got %v, want %v", err, want)
	}
	if !strings.HasPrefix(err.Error(), "oidc: ") {
		t.Errorf("error %q lacks the oidc: prefix", err)
	}
	assertNoTokenLeak(t, "error", err.Error(), token)
}

// rsaFamily returns one key per RSA alg, all on the same 2048-bit key.
func rsaFamily(t testing.TB) []testKey {
	priv := rsaTestKey(t, "rsa-family")
	var keys []testKey
	for _, alg := range []string{"RS256", "RS384", "RS512", "PS256"} {
		keys = append(keys, testKey{kid: strings.ToLower(alg), alg: alg, priv: priv})
	}
	return keys
}

func TestVerifyEveryAlg(t *testing.T) {
	keys := append(rsaFamily(t),
		newECKey(t, "es256", elliptic.P256(), "ES256"),
		newECKey(t, "es384", elliptic.P384(), "ES384"),
		newEdKey(t, "eddsa"),
	)
	p := newIDP(t, keys...)
	clock := newFakeClock()
	v, logs := testVerifier(t, Config{JWKSURL: p.url()}, clock)
	for _, k := range keys {
		t.Run(k.alg, func(t *testing.T) {
			tok := k.sign(t, claimsAt(clock.Now(), map[string]any{"sub": "user-" + k.kid}))
			c, err := v.Verify(t.Context(), tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if c.Subject != "user-"+k.kid || c.Issuer != testIssuer ||
				len(c.Audience) != 1 || c.Audience[0] != testAudience ||
				!c.Expiry.Equal(clock.Now().Add(time.Hour)) || c.Raw["sub"] != "user-"+k.kid {
				t.Errorf("claims = %+v", c)
			}
			assertNoTokenLeak(t, "logs", logs.String(), tok)
		})
	}
	if n := p.hits.Load(); n != 1 {
		t.Errorf("JWKS fetched %d times, want 1 (cached keys need no I/O)", n)
	}
}

func TestVerifyAudienceList(t *testing.T) {
	k := newEdKey(t, "ed")
	p := newIDP(t, k)
	clock := newFakeClock()
	v, _ := testVerifier(t, Config{JWKSURL: p.url()}, clock)
	tok := k.sign(t, claimsAt(clock.Now(), map[string]any{"aud": []string{"other", testAudience}}))
	c, err := v.Verify(t.Context(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Audience) != 2 {
		t.Errorf("Audience = %q", c.Audience)
	}
}

func TestVerifyRejects(t *testing.T) {
	rsa := newRSAKey(t, "rsa", "RS256")
	ec := newECKey(t, "ec", elliptic.P256(), "ES256")
	ed := newEdKey(t, "ed")
	// pinned names RS256 in its JWK: no other RSA alg may use it.
	pinned := testKey{kid: "pinned", alg: "RS256", priv: rsa.priv}
	// impostor has the kid of rsa but another key.
	impostor := testKey{kid: "rsa", alg: "RS256", priv: rsaTestKey(t, "impostor")}

	p := newIDP(t)
	p.setJWKs(rsa.jwk(nil), ec.jwk(nil), ed.jwk(nil), pinned.jwk(map[string]any{"alg": "RS256"}),
		// A symmetric key is never usable, even if the IdP publishes one.
		map[string]any{"kty": "oct", "kid": "hmac", "k": b64u([]byte("shared-secret"))})
	clock := newFakeClock()
	v, logs := testVerifier(t, Config{JWKSURL: p.url()}, clock)
	now := clock.Now()
	if _, err := v.Verify(t.Context(), rsa.sign(t, claimsAt(now, nil))); err != nil {
		t.Fatalf("valid token: %v", err)
	}

	valid := rsa.sign(t, claimsAt(now, nil))
	parts := strings.Split(valid, ".")
	pubDER, err := x509.MarshalPKIXPublicKey(rsa.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hmacWith := func(kid string, secret []byte) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claimsAt(now, nil))
		tok.Header["kid"] = kid
		s, err := tok.SignedString(secret)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tamperedClaims, _ := json.Marshal(claimsAt(now, map[string]any{"sub": "admin"}))
	flipped := []byte(parts[2])
	if flipped[10] == 'A' {
		flipped[10] = 'B'
	} else {
		flipped[10] = 'A'
	}
	oversized := rsa.sign(t, claimsAt(now, map[string]any{"pad": strings.Repeat("x", MaxTokenSize)}))

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{"expired", rsa.sign(t, claimsAt(now, map[string]any{"exp": now.Add(-Leeway - time.Second).Unix()})), ErrExpired},
		{"expired long ago", ed.sign(t, claimsAt(now, map[string]any{"iat": now.Add(-48 * time.Hour).Unix(), "nbf": nil, "exp": now.Add(-24 * time.Hour).Unix()})), ErrExpired},
		{"nbf in the future", rsa.sign(t, claimsAt(now, map[string]any{"nbf": now.Add(Leeway + time.Second).Unix()})), ErrNotYetValid},
		{"wrong iss", rsa.sign(t, claimsAt(now, map[string]any{"iss": "https://evil.example.test/"})), ErrIssuer},
		{"iss with trailing slash", rsa.sign(t, claimsAt(now, map[string]any{"iss": testIssuer + "/"})), ErrIssuer},
		{"no iss", rsa.sign(t, claimsAt(now, map[string]any{"iss": nil})), ErrIssuer},
		{"wrong aud", rsa.sign(t, claimsAt(now, map[string]any{"aud": "https://management.azure.com"})), ErrAudience},
		{"wrong aud list", ec.sign(t, claimsAt(now, map[string]any{"aud": []string{"a", "b"}})), ErrAudience},
		{"no aud", rsa.sign(t, claimsAt(now, map[string]any{"aud": nil})), ErrAudience},
		{"no exp", rsa.sign(t, claimsAt(now, map[string]any{"exp": nil})), ErrMalformedToken},
		{"exp not a number", rsa.sign(t, claimsAt(now, map[string]any{"exp": "tomorrow"})), ErrMalformedToken},
		{"alg none", rawToken(map[string]any{"alg": "none", "kid": "rsa"}, claimsAt(now, nil), nil), ErrAlgorithm},
		{"alg None", rawToken(map[string]any{"alg": "None", "kid": "rsa"}, claimsAt(now, nil), nil), ErrAlgorithm},
		{"alg none with signature", rawToken(map[string]any{"alg": "none", "kid": "rsa"}, claimsAt(now, nil), []byte("sig")), ErrAlgorithm},
		{"no alg", rawToken(map[string]any{"kid": "rsa"}, claimsAt(now, nil), []byte("sig")), ErrAlgorithm},
		{"HS256 keyed with the RSA public key PEM", hmacWith("rsa", pubPEM), ErrAlgorithm},
		{"HS256 keyed with the RSA public key DER", hmacWith("rsa", pubDER), ErrAlgorithm},
		{"HS256 keyed with the published oct key", hmacWith("hmac", []byte("shared-secret")), ErrAlgorithm},
		{"HS512", rawToken(map[string]any{"alg": "HS512", "kid": "rsa"}, claimsAt(now, nil), make([]byte, 64)), ErrAlgorithm},
		{"PS384 (not accepted)", rsa.signAs(t, "PS384", claimsAt(now, nil)), ErrAlgorithm},
		{"ES512 (not accepted)", rawToken(map[string]any{"alg": "ES512", "kid": "ec"}, claimsAt(now, nil), make([]byte, 132)), ErrAlgorithm},
		{"RS256 header on an EC key", rawToken(map[string]any{"alg": "RS256", "kid": "ec"}, claimsAt(now, nil), make([]byte, 256)), ErrAlgorithm},
		{"ES384 on a P-256 key", rawToken(map[string]any{"alg": "ES384", "kid": "ec"}, claimsAt(now, nil), make([]byte, 96)), ErrAlgorithm},
		{"ES256 on an RSA key", rawToken(map[string]any{"alg": "ES256", "kid": "rsa"}, claimsAt(now, nil), make([]byte, 64)), ErrAlgorithm},
		{"EdDSA on an RSA key", rawToken(map[string]any{"alg": "EdDSA", "kid": "rsa"}, claimsAt(now, nil), make([]byte, 64)), ErrAlgorithm},
		{"RS256 on an Ed25519 key", rawToken(map[string]any{"alg": "RS256", "kid": "ed"}, claimsAt(now, nil), make([]byte, 256)), ErrAlgorithm},
		{"PS256 on a key pinned to RS256", pinned.signAs(t, "PS256", claimsAt(now, nil)), ErrAlgorithm},
		{"tampered payload", parts[0] + "." + b64u(tamperedClaims) + "." + parts[2], ErrSignature},
		{"tampered signature", parts[0] + "." + parts[1] + "." + string(flipped), ErrSignature},
		{"signature stripped", parts[0] + "." + parts[1] + ".", ErrSignature},
		{"header alg swapped to PS256", b64u([]byte(`{"alg":"PS256","kid":"rsa","typ":"JWT"}`)) + "." + parts[1] + "." + parts[2], ErrSignature},
		{"right kid, wrong key", impostor.sign(t, claimsAt(now, nil)), ErrSignature},
		{"oversized", oversized, ErrTokenTooLarge},
		{"empty", "", ErrMalformedToken},
		{"two parts", parts[0] + "." + parts[1], ErrMalformedToken},
		{"four parts", valid + ".x", ErrMalformedToken},
		{"header not base64", "!!!." + parts[1] + "." + parts[2], ErrMalformedToken},
		{"header padded", parts[0] + "==." + parts[1] + "." + parts[2], ErrMalformedToken},
		{"header not an object", b64u([]byte(`["RS256"]`)) + "." + parts[1] + "." + parts[2], ErrMalformedToken},
		{"crit header", rawToken(map[string]any{"alg": "RS256", "kid": "rsa", "crit": []string{"exp"}}, claimsAt(now, nil), make([]byte, 256)), ErrMalformedToken},
		{"kid not a string", rawToken(map[string]any{"alg": "RS256", "kid": 7}, claimsAt(now, nil), make([]byte, 256)), ErrMalformedToken},
		{"claims not JSON", parts[0] + "." + b64u([]byte("not json")) + "." + parts[2], ErrMalformedToken},
		{"unknown kid", rawToken(map[string]any{"alg": "RS256", "kid": "nope"}, claimsAt(now, nil), make([]byte, 256)), ErrUnknownKey},
		{"no kid among several keys", rawToken(map[string]any{"alg": "RS256"}, claimsAt(now, nil), make([]byte, 256)), ErrUnknownKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(t.Context(), tc.token)
			if c != nil {
				t.Errorf("got claims %+v", c)
			}
			wantErr(t, err, tc.want, tc.token)
		})
	}
	for _, tc := range tests {
		assertNoTokenLeak(t, "logs", logs.String(), tc.token)
	}
	// The clock never moved, so the unknown kid was throttled: the only
	// fetch is the first load.
	if n := p.hits.Load(); n != 1 {
		t.Errorf("JWKS fetched %d times, want 1", n)
	}
}

func TestVerifyLeeway(t *testing.T) {
	k := newEdKey(t, "ed")
	p := newIDP(t, k)
	clock := newFakeClock()
	v, _ := testVerifier(t, Config{JWKSURL: p.url()}, clock)
	if Leeway > 60*time.Second {
		t.Fatalf("Leeway %v exceeds the 60s the spec allows", Leeway)
	}
	now := clock.Now()
	for name, c := range map[string]jwt.MapClaims{
		"exp just passed":  claimsAt(now, map[string]any{"exp": now.Add(-Leeway + 2*time.Second).Unix()}),
		"nbf just ahead":   claimsAt(now, map[string]any{"nbf": now.Add(Leeway - 2*time.Second).Unix()}),
		"fractional exp":   claimsAt(now, map[string]any{"exp": float64(now.Add(time.Minute).Unix()) + 0.5}),
		"no nbf":           claimsAt(now, map[string]any{"nbf": nil}),
		"no sub, no iat":   claimsAt(now, map[string]any{"sub": nil, "iat": nil}),
		"extra claim":      claimsAt(now, map[string]any{"custom": map[string]any{"a": 1}}),
		"exp in 10 years":  claimsAt(now, map[string]any{"exp": now.AddDate(10, 0, 0).Unix()}),
		"aud list of one":  claimsAt(now, map[string]any{"aud": []string{testAudience}}),
		"iat in the past":  claimsAt(now, map[string]any{"iat": now.Add(-time.Hour).Unix()}),
		"nbf exactly now":  claimsAt(now, map[string]any{"nbf": now.Unix()}),
		"exp a second out": claimsAt(now, map[string]any{"exp": now.Add(time.Second).Unix()}),
	} {
		if _, err := v.Verify(t.Context(), k.sign(t, c)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Time moves on: the same token expires once exp+Leeway is reached.
	tok := k.sign(t, claimsAt(now, map[string]any{"exp": now.Add(time.Minute).Unix()}))
	clock.Advance(time.Minute + Leeway - time.Second)
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatalf("inside leeway: %v", err)
	}
	clock.Advance(time.Second)
	_, err := v.Verify(t.Context(), tok)
	wantErr(t, err, ErrExpired, tok)
}

func TestVerifyRequiredClaim(t *testing.T) {
	k := newECKey(t, "ec", elliptic.P384(), "ES384")
	p := newIDP(t, k)
	clock := newFakeClock()
	now := clock.Now()
	tests := []struct {
		required string
		claim    any // value of the claim named before '='; nil: absent
		ok       bool
	}{
		// String claims: equal, or one of its space-separated words (scp).
		{"role=scorer", "scorer", true},
		{"scp=score", "read score write", true},
		{"role=scorer", "admin", false},
		{"role=scorer", "scorerx", false},
		{"role=scorer", "", false},
		{"role=scorer", nil, false},
		{"role=scorer", true, false},
		{"role=scorer", map[string]any{"scorer": true}, false},
		// List claims (Entra "roles", Keycloak groups): an element equals.
		{"roles=scorer", []any{"reader", "scorer"}, true},
		{"roles=scorer", []any{"reader"}, false},
		{"roles=scorer", []any{}, false},
		{"roles=scorer", []any{1, 2}, false},
		{"roles=scorer", []any{"reader scorer"}, false},
		{"roles=scorer", nil, false},
		// Spaces around name and value are trimmed; the value may hold '='.
		{" roles = scorer ", []any{"scorer"}, true},
		{"group=a=b", "a=b", true},
	}
	for _, tc := range tests {
		name, _, _ := strings.Cut(tc.required, "=")
		name = strings.TrimSpace(name)
		t.Run(fmt.Sprintf("%s/%v", tc.required, tc.claim), func(t *testing.T) {
			v, _ := testVerifier(t, Config{JWKSURL: p.url(), RequiredClaim: tc.required}, clock)
			over := map[string]any{}
			if tc.claim != nil {
				over[name] = tc.claim
			}
			tok := k.sign(t, claimsAt(now, over))
			c, err := v.Verify(t.Context(), tok)
			if tc.ok {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if c.Raw[name] == nil {
					t.Errorf("Raw lacks %s", name)
				}
				return
			}
			wantErr(t, err, ErrClaim, tok)
		})
	}
}

func TestVerifyNoKid(t *testing.T) {
	k := newEdKey(t, "")
	p := newIDP(t, k)
	clock := newFakeClock()
	v, _ := testVerifier(t, Config{JWKSURL: p.url()}, clock)
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claimsAt(clock.Now(), nil))
	s, err := tok.SignedString(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(t.Context(), s); err != nil {
		t.Fatalf("token without kid, set of one key: %v", err)
	}
}

func TestVerifySizeLimit(t *testing.T) {
	k := newRSAKey(t, "rsa", "RS256")
	p := newIDP(t, k)
	clock := newFakeClock()
	v, _ := testVerifier(t, Config{JWKSURL: p.url()}, clock)
	// Find the largest valid token that fits, and the smallest that does
	// not, by growing a padding claim.
	var fits, over string
	for n := MaxTokenSize*3/4 - 600; over == ""; n++ {
		tok := k.sign(t, claimsAt(clock.Now(), map[string]any{"pad": strings.Repeat("x", n)}))
		if len(tok) <= MaxTokenSize {
			fits = tok
		} else {
			over = tok
		}
	}
	if len(fits) < MaxTokenSize-3 {
		t.Fatalf("largest fitting token is %d bytes", len(fits))
	}
	if _, err := v.Verify(t.Context(), fits); err != nil {
		t.Errorf("%d-byte token: %v", len(fits), err)
	}
	_, err := v.Verify(t.Context(), over)
	wantErr(t, err, ErrTokenTooLarge, over)
	_, err = v.Verify(t.Context(), strings.Repeat("a", 1<<20))
	wantErr(t, err, ErrTokenTooLarge, "")
	if MaxTokenSize != 8<<10 {
		t.Errorf("MaxTokenSize = %d, want 8 KiB", MaxTokenSize)
	}
}

// TestKeyRotation: the IdP publishes a new key and signs with it. The first
// token naming it triggers exactly one fetch; later ones none.
func TestKeyRotation(t *testing.T) {
	a := newRSAKey(t, "key-a", "RS256")
	b := newECKey(t, "key-b", elliptic.P256(), "ES256")
	c := newEdKey(t, "key-c")
	p := newIDP(t, a)
	clock := newFakeClock()
	v, logs := testVerifier(t, Config{JWKSURL: p.url()}, clock)
	ctx := t.Context()
	verify := func(k testKey) error {
		_, err := v.Verify(ctx, k.sign(t, claimsAt(clock.Now(), nil)))
		return err
	}
	hits := func(want int64) {
		t.Helper()
		if n := p.hits.Load(); n != want {
			t.Fatalf("JWKS fetched %d times, want %d", n, want)
		}
	}
	if err := verify(a); err != nil {
		t.Fatal(err)
	}
	hits(1)

	p.setKeys(a, b)
	// Within MinRefreshGap of the last fetch, an unknown kid is refused
	// without a fetch.
	if err := verify(b); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("new kid right after a fetch: %v, want ErrUnknownKey", err)
	}
	hits(1)

	clock.Advance(DefaultMinRefreshGap)
	if err := verify(b); err != nil {
		t.Fatalf("new kid after the gap: %v", err)
	}
	hits(2)
	for range 20 {
		if err := verify(b); err != nil {
			t.Fatal(err)
		}
		if err := verify(a); err != nil {
			t.Fatal(err)
		}
	}
	hits(2)

	// The IdP retires a and adds c. a stays usable until the set is
	// refreshed; the refresh c triggers drops it.
	p.setKeys(b, c)
	clock.Advance(DefaultMinRefreshGap)
	if err := verify(a); err != nil {
		t.Fatalf("cached key before refresh: %v", err)
	}
	hits(2)
	if err := verify(c); err != nil {
		t.Fatal(err)
	}
	hits(3)
	if err := verify(a); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("retired key: %v, want ErrUnknownKey", err)
	}
	hits(3)
	if !strings.Contains(logs.String(), `keys="[key-b key-c]"`) {
		t.Errorf("logs lack the new key set:\n%s", logs)
	}
}

func TestConcurrentUnknownKid(t *testing.T) {
	a := newEdKey(t, "key-a")
	b := newEdKey(t, "key-b")
	p := newIDP(t, a)
	p.setDelay(50 * time.Millisecond)
	clock := newFakeClock()
	v, _ := testVerifier(t, Config{JWKSURL: p.url()}, clock)
	ctx := t.Context()

	run := func(tokens func(i int) string) []error {
		errs := make([]error, 100)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range errs {
			wg.Go(func() {
				<-start
				_, errs[i] = v.Verify(ctx, tokens(i))
			})
		}
		close(start)
		wg.Wait()
		return errs
	}

	// 100 concurrent first verifies share one load.
	tokA := a.sign(t, claimsAt(clock.Now(), nil))
	for i, err := range run(func(int) string { return tokA }) {
		if err != nil {
			t.Fatalf("verify %d: %v", i, err)
		}
	}
	if n := p.hits.Load(); n != 1 {
		t.Fatalf("first load: %d fetches, want 1", n)
	}

	// Rotation: 100 concurrent verifies with the new kid, one fetch.
	p.setKeys(a, b)
	clock.Advance(DefaultMinRefreshGap)
	tokB := b.sign(t, claimsAt(clock.Now(), nil))
	for i, err := range run(func(int) string { return tokB }) {
		if err != nil {
			t.Fatalf("verify %d: %v", i, err)
		}
	}
	if n := p.hits.Load() - 1; n < 1 || n > 2 {
		t.Fatalf("rotation: %d fetches, want 1 (at most 2)", n)
	}

	// An attacker's 100 random kids: at most one fetch, all refused.
	before := p.hits.Load()
	clock.Advance(DefaultMinRefreshGap)
	errs := run(func(i int) string {
		return rawToken(map[string]any{"alg": "EdDSA", "kid": fmt.Sprintf("random-%d", i)}, claimsAt(clock.Now(), nil), make([]byte, 64))
	})
	for i, err := range errs {
		if !errors.Is(err, ErrUnknownKey) {
			t.Fatalf("random kid %d: %v, want ErrUnknownKey", i, err)
		}
	}
	if n := p.hits.Load() - before; n > 1 {
		t.Fatalf("random kids: %d fetches, want at most 1", n)
	}
}

// TestVerifyStopsWaiting: a caller whose ctx ends stops waiting for a slow
// refresh; the refresh still completes for later callers.
func TestVerifyStopsWaiting(t *testing.T) {
	a := newEdKey(t, "key-a")
	b := newEdKey(t, "key-b")
	p := newIDP(t, a)
	clock := newFakeClock()
	v, _ := testVerifier(t, Config{JWKSURL: p.url()}, clock)
	if _, err := v.Verify(t.Context(), a.sign(t, claimsAt(clock.Now(), nil))); err != nil {
		t.Fatal(err)
	}
	p.setKeys(a, b)
	p.setDelay(300 * time.Millisecond)
	clock.Advance(DefaultMinRefreshGap)
	tokB := b.sign(t, claimsAt(clock.Now(), nil))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	_, err := v.Verify(ctx, tokB)
	wantErr(t, err, ErrUnknownKey, tokB)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not say the caller stopped waiting", err)
	}
	// The shared fetch goes on and installs b.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := v.Verify(t.Context(), tokB); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("b never became usable: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := p.hits.Load(); n != 2 {
		t.Errorf("JWKS fetched %d times, want 2", n)
	}
}

func TestJWKSServerDown(t *testing.T) {
	a := newRSAKey(t, "key-a", "RS256")
	b := newEdKey(t, "key-b")
	p := newIDP(t, a)
	clock := newFakeClock()
	v, logs := testVerifier(t, Config{JWKSURL: p.url()}, clock)
	tokA := a.sign(t, claimsAt(clock.Now(), nil))
	if _, err := v.Verify(t.Context(), tokA); err != nil {
		t.Fatal(err)
	}

	// 503: an unknown kid triggers a failed fetch; a keeps working.
	p.setCode(http.StatusServiceUnavailable)
	clock.Advance(DefaultMinRefreshGap)
	tokB := b.sign(t, claimsAt(clock.Now(), nil))
	_, err := v.Verify(t.Context(), tokB)
	wantErr(t, err, ErrUnknownKey, tokB)
	if n := p.hits.Load(); n != 2 {
		t.Fatalf("JWKS fetched %d times, want 2", n)
	}
	if _, err := v.Verify(t.Context(), tokA); err != nil {
		t.Fatalf("last good key after a failed fetch: %v", err)
	}

	// 200 with no usable key: also kept.
	p.setCode(0)
	p.setJWKs(map[string]any{"kty": "oct", "kid": "key-b", "k": "c2VjcmV0"})
	clock.Advance(DefaultMinRefreshGap)
	if _, err := v.Verify(t.Context(), tokB); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("got %v, want ErrUnknownKey", err)
	}
	if _, err := v.Verify(t.Context(), tokA); err != nil {
		t.Fatalf("last good key after an empty key set: %v", err)
	}

	// The server is gone: Run's refreshes fail, the keys stay.
	p.srv.Close()
	ctx, cancel := context.WithCancel(t.Context())
	v.cfg.RefreshInterval = 5 * time.Millisecond // before Run starts: no race
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(logs.String(), "keeping the last key set") < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("no failed refresh logged:\n%s", logs)
		}
		if _, err := v.Verify(t.Context(), tokA); err != nil {
			t.Fatalf("last good key while the server is down: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	assertNoTokenLeak(t, "logs", logs.String(), tokA)
	assertNoTokenLeak(t, "logs", logs.String(), tokB)
}

func TestJWKSUnavailableAtStart(t *testing.T) {
	a := newECKey(t, "key-a", elliptic.P256(), "ES256")
	p := newIDP(t, a)
	p.setCode(http.StatusInternalServerError)
	clock := newFakeClock()
	v, _ := testVerifier(t, Config{JWKSURL: p.url()}, clock)
	tok := a.sign(t, claimsAt(clock.Now(), nil))
	_, err := v.Verify(t.Context(), tok)
	wantErr(t, err, ErrJWKS, tok)
	if !strings.Contains(err.Error(), "500") {
		t.Errorf("error %q does not say why", err)
	}
	// Retried at most once a second while no key set has loaded.
	_, err = v.Verify(t.Context(), tok)
	wantErr(t, err, ErrJWKS, tok)
	if n := p.hits.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times, want 1", n)
	}
	p.setCode(0)
	clock.Advance(time.Second)
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Fatalf("after the IdP came back: %v", err)
	}
}

// writeJWKS atomically replaces path with a JWKS of keys.
func writeJWKS(t *testing.T, path string, keys ...testKey) {
	t.Helper()
	var jwks []map[string]any
	for _, k := range keys {
		jwks = append(jwks, k.jwk(nil))
	}
	data, err := json.Marshal(map[string]any{"keys": jwks})
	if err != nil {
		t.Fatal(err)
	}
	writeFileAtomic(t, path, data)
}

func writeFileAtomic(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestJWKSFileReload(t *testing.T) {
	a := newRSAKey(t, "key-a", "RS256")
	b := newEdKey(t, "key-b")
	c := newECKey(t, "key-c", elliptic.P384(), "ES384")
	path := filepath.Join(t.TempDir(), "jwks.json")
	writeJWKS(t, path, a)
	clock := newFakeClock()
	v, logs := testVerifier(t, Config{JWKSFile: path}, clock)
	if v.cfg.RefreshInterval != DefaultFileRefreshInterval {
		t.Errorf("RefreshInterval = %v, want %v for a file", v.cfg.RefreshInterval, DefaultFileRefreshInterval)
	}
	verify := func(k testKey) error {
		_, err := v.Verify(t.Context(), k.sign(t, claimsAt(clock.Now(), nil)))
		return err
	}
	if err := verify(a); err != nil {
		t.Fatal(err)
	}

	// A changed file is re-read when a token names an unknown kid.
	writeJWKS(t, path, a, b)
	clock.Advance(DefaultMinRefreshGap)
	if err := verify(b); err != nil {
		t.Fatalf("kid added to the file: %v", err)
	}

	// A broken file keeps the last good set.
	writeFileAtomic(t, path, []byte(`{"keys": [`))
	clock.Advance(DefaultMinRefreshGap)
	if err := verify(c); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("got %v, want ErrUnknownKey", err)
	}
	if err := verify(a); err != nil {
		t.Fatalf("last good key after a broken file: %v", err)
	}
	os.Remove(path)
	clock.Advance(DefaultMinRefreshGap)
	if err := verify(c); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("got %v, want ErrUnknownKey", err)
	}
	if err := verify(b); err != nil {
		t.Fatalf("last good key after the file vanished: %v", err)
	}

	// Run re-reads the file periodically: c appears and a goes, with no
	// token asking and no clock movement.
	v.cfg.RefreshInterval = 5 * time.Millisecond // before Run starts: no race
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	writeJWKS(t, path, b, c)
	deadline := time.Now().Add(5 * time.Second)
	for v.keys.Load().lookup("key-c") == nil {
		if time.Now().After(deadline) {
			t.Fatalf("Run never loaded the changed file:\n%s", logs)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := verify(c); err != nil {
		t.Fatalf("key from the reloaded file: %v", err)
	}
	if err := verify(a); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("key removed from the file: %v, want ErrUnknownKey", err)
	}
	// An unchanged file is not re-installed (logged once, at Info).
	time.Sleep(30 * time.Millisecond)
	if n := strings.Count(logs.String(), `keys="[key-b key-c]"`); n != 1 {
		t.Errorf("set [key-b key-c] logged %d times, want 1", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
}

func TestRunStops(t *testing.T) {
	a := newEdKey(t, "key-a")
	t.Run("periodic", func(t *testing.T) {
		p := newIDP(t, a)
		v, _ := testVerifier(t, Config{JWKSURL: p.url(), RefreshInterval: 5 * time.Millisecond}, newFakeClock())
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- v.Run(ctx) }()
		deadline := time.Now().Add(5 * time.Second)
		for p.hits.Load() < 3 {
			if time.Now().After(deadline) {
				t.Fatal("Run does not refresh")
			}
			time.Sleep(5 * time.Millisecond)
		}
		if v.keys.Load() == nil {
			t.Fatal("Run did not load the keys")
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not stop on ctx cancel")
		}
		// A request Run cancelled may still reach the handler just
		// after Run returns; nothing new may start after that.
		time.Sleep(20 * time.Millisecond)
		n := p.hits.Load()
		time.Sleep(30 * time.Millisecond)
		if m := p.hits.Load(); m != n {
			t.Errorf("%d fetches after Run returned", m-n)
		}
	})
	t.Run("during a slow fetch", func(t *testing.T) {
		p := newIDP(t, a)
		p.setDelay(time.Minute)
		v, _ := testVerifier(t, Config{JWKSURL: p.url()}, newFakeClock())
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- v.Run(ctx) }()
		deadline := time.Now().Add(5 * time.Second)
		for p.hits.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("Run does not load")
			}
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not stop on ctx cancel")
		}
		v.mu.Lock()
		inflight := v.inflight
		v.mu.Unlock()
		if inflight != nil {
			t.Error("a fetch is still in flight after Run returned")
		}
	})
}
