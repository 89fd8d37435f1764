package oidc

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	testIssuer   = "https://idp.example.test/realms/moe"
	testAudience = "https://ml.azure.com"
)

// testKey is a signing key generated in the test and its public JWK.
type testKey struct {
	kid  string
	alg  string // default alg used by sign
	priv crypto.Signer
}

var (
	rsaKeysMu sync.Mutex
	rsaKeys   = map[string]*rsa.PrivateKey{}
)

// rsaKey returns a 2048-bit RSA key, generated once per name per test
// binary (RSA generation is the slow part of these tests).
func rsaTestKey(t testing.TB, name string) *rsa.PrivateKey {
	t.Helper()
	rsaKeysMu.Lock()
	defer rsaKeysMu.Unlock()
	if k, ok := rsaKeys[name]; ok {
		return k
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaKeys[name] = k
	return k
}

func newRSAKey(t testing.TB, kid, alg string) testKey {
	return testKey{kid: kid, alg: alg, priv: rsaTestKey(t, kid)}
}

func newECKey(t testing.TB, kid string, curve elliptic.Curve, alg string) testKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{kid: kid, alg: alg, priv: k}
}

func newEdKey(t testing.TB, kid string) testKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{kid: kid, alg: "EdDSA", priv: k}
}

func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwk returns k's public JWK, with extra members merged in.
func (k testKey) jwk(extra map[string]any) map[string]any {
	m := map[string]any{"kid": k.kid, "use": "sig"}
	switch p := k.priv.(type) {
	case *rsa.PrivateKey:
		m["kty"] = "RSA"
		m["n"] = b64u(p.N.Bytes())
		m["e"] = b64u(bigEndian(p.E))
	case *ecdsa.PrivateKey:
		size := (p.Curve.Params().BitSize + 7) / 8
		pub, err := p.PublicKey.Bytes() // 0x04 || X || Y
		if err != nil {
			panic(err)
		}
		m["kty"] = "EC"
		m["crv"] = p.Curve.Params().Name
		m["x"] = b64u(pub[1 : 1+size])
		m["y"] = b64u(pub[1+size:])
	case ed25519.PrivateKey:
		m["kty"] = "OKP"
		m["crv"] = "Ed25519"
		m["x"] = b64u(p.Public().(ed25519.PublicKey))
	}
	for n, v := range extra {
		m[n] = v
	}
	return m
}

func bigEndian(e int) []byte {
	var out []byte
	for ; e > 0; e >>= 8 {
		out = append([]byte{byte(e)}, out...)
	}
	return out
}

// claims returns valid claims at now, with overrides applied (a nil value
// deletes the claim).
func claimsAt(now time.Time, overrides map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{
		"iss": testIssuer,
		"aud": testAudience,
		"sub": "user-1",
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
	for n, v := range overrides {
		if v == nil {
			delete(c, n)
		} else {
			c[n] = v
		}
	}
	return c
}

// sign returns a token signed by k with k.alg and k.kid.
func (k testKey) sign(t testing.TB, c jwt.MapClaims) string {
	t.Helper()
	return k.signAs(t, k.alg, c)
}

func (k testKey) signAs(t testing.TB, alg string, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.GetSigningMethod(alg), c)
	tok.Header["kid"] = k.kid
	s, err := tok.SignedString(k.priv)
	if err != nil {
		t.Fatalf("sign %s with %s: %v", alg, k.kid, err)
	}
	return s
}

// rawToken assembles a token from a header and claims as given, with sig
// as the signature bytes.
func rawToken(header, claims any, sig []byte) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	return b64u(h) + "." + b64u(c) + "." + b64u(sig)
}

// idp is a JWKS server on loopback that counts its requests.
type idp struct {
	srv   *httptest.Server
	hits  atomic.Int64
	mu    sync.Mutex
	keys  []map[string]any
	code  int           // status to answer with; 0 means 200
	delay time.Duration // before answering
}

func newIDP(t testing.TB, keys ...testKey) *idp {
	t.Helper()
	p := &idp{}
	p.setKeys(keys...)
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *idp) serve(w http.ResponseWriter, r *http.Request) {
	p.hits.Add(1)
	p.mu.Lock()
	keys, code, delay := p.keys, p.code, p.delay
	p.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if code != 0 && code != http.StatusOK {
		http.Error(w, "idp unavailable", code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"keys": keys})
}

func (p *idp) setKeys(keys ...testKey) {
	var jwks []map[string]any
	for _, k := range keys {
		jwks = append(jwks, k.jwk(nil))
	}
	p.setJWKs(jwks...)
}

func (p *idp) setJWKs(jwks ...map[string]any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = jwks
}

func (p *idp) setCode(code int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.code = code
}

func (p *idp) setDelay(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

func (p *idp) url() string { return p.srv.URL + "/keys" }

// fakeClock is a settable Clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// syncBuffer is a goroutine-safe log sink.
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

// testVerifier returns a Verifier on cfg with the test issuer, audience,
// clock and a DEBUG logger writing to the returned buffer. Zero fields of
// cfg get test values; JWKSURL or JWKSFile must be set.
func testVerifier(t testing.TB, cfg Config, clock *fakeClock) (*Verifier, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	if cfg.Issuer == "" {
		cfg.Issuer = testIssuer
	}
	if cfg.Audience == "" {
		cfg.Audience = testAudience
	}
	cfg.Clock = clock.Now
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	v, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return v, logs
}

// assertNoTokenLeak fails if s contains token or any long segment of it.
func assertNoTokenLeak(t testing.TB, what, s, token string) {
	t.Helper()
	if token == "" {
		return
	}
	if strings.Contains(s, token) {
		t.Errorf("%s contains the token", what)
		return
	}
	for _, part := range strings.Split(token, ".") {
		if len(part) >= 24 && strings.Contains(s, part) {
			t.Errorf("%s contains a token segment %.16s...", what, part)
		}
	}
}
