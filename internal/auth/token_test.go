package auth

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func openSigner(t *testing.T) *Signer {
	t.Helper()
	s, err := OpenSigner(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func issue(t *testing.T, s *Signer, endpoint string, ttl time.Duration, now time.Time) string {
	t.Helper()
	tok, err := s.Issue(endpoint, ttl, now)
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken.Reveal()
}

func TestSigner_Issue(t *testing.T) {
	s := openSigner(t)
	tok, err := s.Issue("fraud", 0, t0)
	if err != nil {
		t.Fatal(err)
	}
	if tok.TokenType != "Bearer" || tok.ExpiryTimeUTC != t0.Add(DefaultTTL).Unix() ||
		tok.RefreshAfterTimeUTC != t0.Add(DefaultTTL/2).Unix() {
		t.Errorf("Issue = %+v", tok)
	}
	parts := strings.Split(tok.AccessToken.Reveal(), ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	var h map[string]any
	var c map[string]any
	decodePart(t, parts[0], &h)
	decodePart(t, parts[1], &c)
	if h["alg"] != "EdDSA" || h["typ"] != "JWT" || h["kid"] == "" || len(h) != 3 {
		t.Errorf("header = %v", h)
	}
	if c["iss"] != "moe" || c["aud"] != "endpoint:fraud" || c["exp"] != float64(tok.ExpiryTimeUTC) ||
		c["nbf"] != float64(t0.Unix()) || c["iat"] != float64(t0.Unix()) || c["jti"] == "" {
		t.Errorf("claims = %v", c)
	}
	if again := issue(t, s, "fraud", 0, t0); again == tok.AccessToken.Reveal() {
		t.Error("two tokens issued at the same time are equal (jti not random)")
	}

	for _, ttl := range []time.Duration{-time.Second, time.Millisecond, MaxTTL + time.Second} {
		if _, err := s.Issue("fraud", ttl, t0); !errors.Is(err, ErrTokenTTL) {
			t.Errorf("Issue(ttl %v): %v; want ErrTokenTTL", ttl, err)
		}
	}
	if _, err := s.Issue("", time.Hour, t0); err == nil {
		t.Error("Issue for an empty endpoint name succeeded")
	}
}

func decodePart(t *testing.T, part string, v any) {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(part)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func encodePart(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestSigner_Verify(t *testing.T) {
	s := openSigner(t)
	ttl := 10 * time.Minute
	valid := issue(t, s, "fraud", ttl, t0)
	parts := strings.Split(valid, ".")
	cur := s.keys[len(s.keys)-1]
	goodClaims := claims{Iss: "moe", Aud: "endpoint:fraud", Exp: t0.Add(ttl).Unix(), Nbf: t0.Unix(), Iat: t0.Unix(), Jti: "j"}
	goodHeader := header{Alg: "EdDSA", Kid: cur.kid, Typ: "JWT"}
	sign := func(h header, c claims) string { return signToken(cur, h, c) }
	stranger := keyFromSeed(make([]byte, ed25519.SeedSize), t0)

	flip := func(part string) string {
		b := []byte(part)
		if b[0] == 'A' {
			b[0] = 'B'
		} else {
			b[0] = 'A'
		}
		return string(b)
	}
	withClaims := func(f func(*claims)) string {
		c := goodClaims
		f(&c)
		return sign(goodHeader, c)
	}
	withHeader := func(f func(*header)) string {
		h := goodHeader
		f(&h)
		return sign(h, goodClaims)
	}

	for _, tc := range []struct {
		name     string
		token    string
		endpoint string
		now      time.Time
		want     error
	}{
		{"Valid", valid, "fraud", t0, nil},
		{"ValidJustBeforeExpiry", valid, "fraud", t0.Add(ttl - time.Second), nil},
		{"ValidWithinClockSkew", valid, "fraud", t0.Add(-clockSkew), nil},
		{"ForgedValid", sign(goodHeader, goodClaims), "fraud", t0, nil},
		{"OtherEndpoint", valid, "fraud2", t0, ErrTokenEndpoint},
		{"EndpointPrefix", valid, "frau", t0, ErrTokenEndpoint},
		{"Expired", valid, "fraud", t0.Add(ttl), ErrTokenExpired},
		{"ExpiredLongAgo", valid, "fraud", t0.Add(30 * 24 * time.Hour), ErrTokenExpired},
		{"BeforeNbf", valid, "fraud", t0.Add(-clockSkew - time.Second), ErrTokenNotYetValid},
		{"NbfInFuture", withClaims(func(c *claims) { c.Nbf = t0.Add(time.Hour).Unix(); c.Exp = t0.Add(2 * time.Hour).Unix() }), "fraud", t0, ErrTokenNotYetValid},
		{"OtherIssuer", withClaims(func(c *claims) { c.Iss = "someone" }), "fraud", t0, ErrTokenEndpoint},
		{"MissingExp", withClaims(func(c *claims) { c.Exp = 0 }), "fraud", t0, ErrMalformedToken},
		{"MissingJti", withClaims(func(c *claims) { c.Jti = "" }), "fraud", t0, ErrMalformedToken},
		{"TamperedPayload", parts[0] + "." + encodePart(claims{Iss: "moe", Aud: "endpoint:other", Exp: goodClaims.Exp, Nbf: goodClaims.Nbf, Iat: goodClaims.Iat, Jti: "j"}) + "." + parts[2], "other", t0, ErrTokenSignature},
		{"TamperedPayloadByte", parts[0] + "." + flip(parts[1]) + "." + parts[2], "fraud", t0, ErrTokenSignature},
		{"TamperedSignature", parts[0] + "." + parts[1] + "." + flip(parts[2]), "fraud", t0, ErrTokenSignature},
		{"SignatureFromOtherToken", parts[0] + "." + parts[1] + "." + strings.Split(issue(t, s, "fraud", ttl, t0), ".")[2], "fraud", t0, ErrTokenSignature},
		{"TamperedHeaderKid", withHeader(func(h *header) { h.Kid = "nope" }), "fraud", t0, ErrUnknownKey},
		{"UnknownKey", signToken(stranger, header{Alg: "EdDSA", Kid: stranger.kid, Typ: "JWT"}, goodClaims), "fraud", t0, ErrUnknownKey},
		{"OtherKeyClaimingKid", signToken(stranger, goodHeader, goodClaims), "fraud", t0, ErrTokenSignature},
		{"AlgNone", encodePart(map[string]string{"alg": "none", "typ": "JWT"}) + "." + parts[1] + ".", "fraud", t0, ErrMalformedToken},
		{"AlgNoneWithKid", encodePart(header{Alg: "none", Kid: cur.kid, Typ: "JWT"}) + "." + parts[1] + "." + parts[2], "fraud", t0, ErrTokenAlgorithm},
		{"AlgHS256", encodePart(header{Alg: "HS256", Kid: cur.kid, Typ: "JWT"}) + "." + parts[1] + "." + parts[2], "fraud", t0, ErrTokenAlgorithm},
		{"AlgLowercase", withHeader(func(h *header) { h.Alg = "eddsa" }), "fraud", t0, ErrTokenAlgorithm},
		{"TypMissing", withHeader(func(h *header) { h.Typ = "" }), "fraud", t0, ErrMalformedToken},
		{"CritHeader", encodePart(map[string]any{"alg": "EdDSA", "kid": cur.kid, "typ": "JWT", "crit": []string{"exp"}}) + "." + parts[1] + "." + parts[2], "fraud", t0, ErrMalformedToken},
		{"Empty", "", "fraud", t0, ErrMalformedToken},
		{"TwoParts", parts[0] + "." + parts[1], "fraud", t0, ErrMalformedToken},
		{"FourParts", valid + ".x", "fraud", t0, ErrMalformedToken},
		{"PaddedBase64", parts[0] + "=." + parts[1] + "." + parts[2], "fraud", t0, ErrMalformedToken},
		{"TooLong", valid + strings.Repeat("A", maxTokenLen), "fraud", t0, ErrMalformedToken},
		{"NotJSONHeader", base64.RawURLEncoding.EncodeToString([]byte("{")) + "." + parts[1] + "." + parts[2], "fraud", t0, ErrMalformedToken},
		{"BearerPrefix", "Bearer " + valid, "fraud", t0, ErrMalformedToken},
		{"EndpointKey", string(NewKey()), "fraud", t0, ErrMalformedToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Verify(tc.token, tc.endpoint, tc.now)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("Verify: %v; want %v", err, tc.want)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "verify token") {
				t.Errorf("error %q does not start with \"verify token\"", err)
			}
		})
	}
}

func TestSigner_Reopen(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	tok := issue(t, s, "fraud", time.Hour, t0)
	fi, err := os.Stat(filepath.Join(dir, KeySetFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key set file: %v, %v; want mode 0600", fi, err)
	}
	s2, err := OpenSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Verify(tok, "fraud", t0); err != nil {
		t.Errorf("reopened signer rejects a token: %v", err)
	}
	if other := openSigner(t); other.Verify(tok, "fraud", t0) == nil {
		t.Error("a signer with another key set accepts the token")
	}

	os.Chmod(filepath.Join(dir, KeySetFile), 0o644)
	if _, err := OpenSigner(dir); !errors.Is(err, ErrInsecureFile) {
		t.Errorf("OpenSigner with a 0644 key set: %v; want ErrInsecureFile", err)
	}
	os.Chmod(filepath.Join(dir, KeySetFile), 0o600)
	WriteSecretFile(filepath.Join(dir, KeySetFile), []byte(`{"keys":[]}`))
	if _, err := OpenSigner(dir); err == nil {
		t.Error("OpenSigner with an empty key set succeeded")
	}
}

func TestSigner_Rotate(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	clock := t0
	s.now = func() time.Time { return clock }

	old := issue(t, s, "fraud", MaxTTL, clock)
	if err := s.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	fresh := issue(t, s, "fraud", time.Hour, clock)
	if kidOf(t, old) == kidOf(t, fresh) {
		t.Fatal("Rotate did not change the signing key")
	}
	for name, tok := range map[string]string{"old": old, "fresh": fresh} {
		if err := s.Verify(tok, "fraud", clock); err != nil {
			t.Errorf("%s token after Rotate: %v", name, err)
		}
	}
	// The rotation is saved.
	reopened, err := OpenSigner(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := reopened.Verify(old, "fraud", clock); err != nil {
		t.Errorf("old token after reopen: %v", err)
	}
	if got := kidOf(t, issue(t, reopened, "fraud", time.Hour, clock)); got != kidOf(t, fresh) {
		t.Error("reopened signer signs with an older key")
	}

	// Rotating again within MaxTTL keeps the first key: its tokens are live.
	clock = clock.Add(MaxTTL / 2)
	if err := s.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(s.keys) != 3 {
		t.Fatalf("%d keys after two rotations within MaxTTL; want 3", len(s.keys))
	}
	if err := s.Verify(old, "fraud", clock); err != nil {
		t.Errorf("old token after second Rotate: %v", err)
	}

	// Once every token of the first key has expired, the key is pruned;
	// the previous key is always kept.
	clock = t0.Add(MaxTTL)
	if err := s.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(s.keys) != 3 {
		t.Fatalf("%d keys; want 3 (first pruned, two recent kept)", len(s.keys))
	}
	if err := s.Verify(old, "fraud", clock.Add(-time.Second)); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("token of a pruned key: %v; want ErrUnknownKey", err)
	}
	clock = clock.Add(10 * MaxTTL)
	if err := s.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	if len(s.keys) != 2 {
		t.Errorf("%d keys after a long pause; want 2 (current and previous)", len(s.keys))
	}
}

func kidOf(t *testing.T, token string) string {
	t.Helper()
	var h header
	decodePart(t, strings.Split(token, ".")[0], &h)
	return h.Kid
}

func BenchmarkSigner_Verify(b *testing.B) {
	s, err := OpenSigner(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	tok, _ := s.Issue("fraud", time.Hour, t0)
	for b.Loop() {
		if err := s.Verify(tok.AccessToken.Reveal(), "fraud", t0); err != nil {
			b.Fatal(err)
		}
	}
}
