package auth

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"
)

// fuzzSigner has a fixed key, so the committed seed corpus in
// testdata/fuzz/FuzzParseToken holds tokens whose signatures verify and
// the fuzzer can reach the claim checks.
func fuzzSigner() *Signer {
	seed := []byte(strings.Repeat("moe fuzz seed!", 3))[:ed25519.SeedSize]
	return &Signer{keys: []signingKey{keyFromSeed(seed, t0)}, now: time.Now}
}

var verifyErrors = []error{
	ErrMalformedToken, ErrTokenAlgorithm, ErrUnknownKey, ErrTokenSignature,
	ErrTokenExpired, ErrTokenNotYetValid, ErrTokenEndpoint,
}

// FuzzParseToken checks that Verify never panics and fails only with its
// documented sentinels, and that what it accepts has the shape Issue makes.
func FuzzParseToken(f *testing.F) {
	s := fuzzSigner()
	tok, err := s.Issue("fraud", time.Hour, t0)
	if err != nil {
		f.Fatal(err)
	}
	valid := tok.AccessToken.Reveal()
	f.Add(valid, "fraud")
	f.Add(valid, "other")
	f.Add("", "")
	f.Add("..", "fraud")
	f.Add("eyJhbGciOiJub25lIn0.e30.", "fraud")

	f.Fuzz(func(t *testing.T, token, endpoint string) {
		if p, err := parseToken(token); err == nil {
			p.claims() // must not panic on unauthenticated input either
		} else if !errors.Is(err, ErrMalformedToken) {
			t.Fatalf("parseToken: %v; want ErrMalformedToken", err)
		}
		err := s.Verify(token, endpoint, t0.Add(time.Minute))
		if err == nil {
			if strings.Count(token, ".") != 2 || len(token) > maxTokenLen {
				t.Fatalf("accepted %q", token)
			}
			return
		}
		for _, want := range verifyErrors {
			if errors.Is(err, want) {
				return
			}
		}
		t.Fatalf("Verify: %v; want one of the sentinel errors", err)
	})
}
