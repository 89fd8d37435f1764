package oidc

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
)

// minRSABits is the smallest RSA modulus accepted in a JWKS.
const minRSABits = 2048

// rsaAlgs, and the per-curve lists below, are the token algs each key type
// accepts: exactly RS256/384/512, PS256, ES256/384 and EdDSA. HS* and "none"
// appear nowhere, so no token using them can ever find a key. Adding an alg
// here (PS384, or ES512 with a P-521 case in ecKey) widens the set.
var (
	rsaAlgs     = []string{"RS256", "RS384", "RS512", "PS256"}
	p256Algs    = []string{"ES256"}
	p384Algs    = []string{"ES384"}
	ed25519Algs = []string{"EdDSA"}
)

// key is one usable verification key from a JWKS.
type key struct {
	kid string
	// public is *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey, as
	// github.com/golang-jwt/jwt/v5 expects for the matching alg.
	public any
	// algs are the token algs this key verifies: those of its kty (and
	// curve), narrowed to the JWK's own alg when it names one.
	algs []string
}

// keySet is an immutable, parsed JWKS. Verify reads it without locks.
type keySet struct {
	keys  map[string]*key // by kid
	order []string        // kids in document order, for logs
	// raw is the document the set was parsed from, so an unchanged file or
	// response is not re-parsed or re-logged.
	raw []byte
}

// lookup returns the key for kid. A token without a kid matches only a set
// holding exactly one key.
func (s *keySet) lookup(kid string) *key {
	if s == nil {
		return nil
	}
	if kid == "" {
		if len(s.order) == 1 {
			return s.keys[s.order[0]]
		}
		return nil
	}
	return s.keys[kid]
}

// jwk is the subset of RFC 7517/7518/8037 members moe reads.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	// RSA
	N string `json:"n"`
	E string `json:"e"`
	// EC and OKP
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// skippedKey explains why one JWK was left out of the set.
type skippedKey struct {
	kid, reason string
}

// parseJWKS parses a JWKS document. Keys that are not usable for signature
// verification (symmetric, too small, unknown kty or curve, "use": "enc",
// duplicate kid, malformed) are skipped and reported; the set is an error
// only when the document is not a JWKS or no key is usable.
func parseJWKS(data []byte) (*keySet, []skippedKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, nil, fmt.Errorf("parse jwks: %w", err)
	}
	set := &keySet{keys: make(map[string]*key, len(doc.Keys)), raw: data}
	var skipped []skippedKey
	for i, raw := range doc.Keys {
		var j jwk
		if err := json.Unmarshal(raw, &j); err != nil {
			skipped = append(skipped, skippedKey{kid: fmt.Sprintf("#%d", i), reason: "not a JSON object with string members"})
			continue
		}
		k, err := j.key()
		if err != nil {
			skipped = append(skipped, skippedKey{kid: j.Kid, reason: err.Error()})
			continue
		}
		if _, dup := set.keys[k.kid]; dup {
			skipped = append(skipped, skippedKey{kid: j.Kid, reason: "duplicate kid (first one kept)"})
			continue
		}
		set.keys[k.kid] = k
		set.order = append(set.order, k.kid)
	}
	if len(set.keys) == 0 {
		return nil, skipped, fmt.Errorf("parse jwks: no usable signing key among %d", len(doc.Keys))
	}
	return set, skipped, nil
}

// key converts j into a verification key.
func (j *jwk) key() (*key, error) {
	if j.Use != "" && j.Use != "sig" {
		return nil, fmt.Errorf("use %q is not sig", j.Use)
	}
	k := &key{kid: j.Kid}
	var err error
	switch j.Kty {
	case "RSA":
		k.public, err = rsaKey(j.N, j.E)
		k.algs = rsaAlgs
	case "EC":
		k.public, k.algs, err = ecKey(j.Crv, j.X, j.Y)
	case "OKP":
		if j.Crv != "Ed25519" {
			return nil, fmt.Errorf("OKP curve %q is not supported", j.Crv)
		}
		var x []byte
		x, err = b64(j.X)
		if err == nil && len(x) != ed25519.PublicKeySize {
			err = errors.New("Ed25519 x is not 32 bytes")
		}
		k.public, k.algs = ed25519.PublicKey(x), ed25519Algs
	case "oct":
		return nil, errors.New("symmetric keys are never accepted")
	default:
		return nil, fmt.Errorf("kty %q is not supported", j.Kty)
	}
	if err != nil {
		return nil, err
	}
	if j.Alg != "" {
		alg := j.Alg
		if alg == "Ed25519" { // RFC 9864's fully-specified name for EdDSA over Ed25519
			alg = "EdDSA"
		}
		if !slices.Contains(k.algs, alg) {
			return nil, fmt.Errorf("alg %q does not fit kty %q", j.Alg, j.Kty)
		}
		k.algs = []string{alg}
	}
	return k, nil
}

func rsaKey(n64, e64 string) (*rsa.PublicKey, error) {
	n, err := b64(n64)
	if err != nil {
		return nil, fmt.Errorf("RSA n: %w", err)
	}
	e, err := b64(e64)
	if err != nil {
		return nil, fmt.Errorf("RSA e: %w", err)
	}
	nb := new(big.Int).SetBytes(n)
	if nb.BitLen() < minRSABits {
		return nil, fmt.Errorf("RSA modulus is %d bits, below %d", nb.BitLen(), minRSABits)
	}
	if len(e) == 0 || len(e) > 4 {
		return nil, errors.New("RSA exponent out of range")
	}
	eb := new(big.Int).SetBytes(e)
	if eb.Int64() < 3 || eb.Int64() > 1<<31-1 || eb.Bit(0) == 0 {
		return nil, errors.New("RSA exponent out of range")
	}
	return &rsa.PublicKey{N: nb, E: int(eb.Int64())}, nil
}

func ecKey(crv, x64, y64 string) (*ecdsa.PublicKey, []string, error) {
	var curve elliptic.Curve
	var algs []string
	switch crv {
	case "P-256":
		curve, algs = elliptic.P256(), p256Algs
	case "P-384":
		curve, algs = elliptic.P384(), p384Algs
	default:
		return nil, nil, fmt.Errorf("EC curve %q is not supported", crv)
	}
	size := (curve.Params().BitSize + 7) / 8
	x, err := b64(x64)
	if err != nil {
		return nil, nil, fmt.Errorf("EC x: %w", err)
	}
	y, err := b64(y64)
	if err != nil {
		return nil, nil, fmt.Errorf("EC y: %w", err)
	}
	if len(x) > size || len(y) > size {
		return nil, nil, errors.New("EC coordinate longer than the curve size")
	}
	// Uncompressed point: 0x04 || X || Y, each left-padded to the field size.
	point := make([]byte, 1+2*size)
	point[0] = 4
	copy(point[1+size-len(x):1+size], x)
	copy(point[1+2*size-len(y):], y)
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
	if err != nil {
		return nil, nil, errors.New("EC point is not on the curve")
	}
	return pub, algs, nil
}

// b64 decodes base64url without padding, tolerating padding some providers
// add.
func b64(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("missing")
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, errors.New("not base64url")
	}
	return b, nil
}
