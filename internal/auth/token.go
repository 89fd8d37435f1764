package auth

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Token lifetimes. An aml_token is a short-lived bearer token for one
// endpoint; clients fetch a new one after RefreshAfterTimeUTC.
const (
	// DefaultTTL is the lifetime Issue uses when asked for zero.
	DefaultTTL = time.Hour
	// MaxTTL is the longest lifetime Issue accepts. Rotate keeps a retired
	// key this long, so every token it signed stays verifiable until it
	// expires.
	MaxTTL = 24 * time.Hour
)

// Token claims and header values.
const (
	tokenIssuer    = "moe"
	tokenAlg       = "EdDSA"
	tokenType      = "JWT"
	audiencePrefix = "endpoint:"
	// maxTokenLen bounds the work Verify does on hostile input; tokens
	// issued here are about 300 bytes.
	maxTokenLen = 2048
	// clockSkew is how far in the future nbf may be, so that gateway
	// replicas whose clocks differ a little accept a fresh token.
	clockSkew = 30 * time.Second
)

// KeySetFile is the name of the token signing key set in the data directory.
const KeySetFile = "token-keys.json"

// Token is an aml_token as the token API returns it. AccessToken is a
// Secret, so marshalling a Token prints REDACTED: build the API response
// with AccessToken.Reveal().
type Token struct {
	AccessToken Secret
	// TokenType is always "Bearer".
	TokenType string
	// ExpiryTimeUTC is when the token stops working, in Unix seconds.
	ExpiryTimeUTC int64
	// RefreshAfterTimeUTC is when a client should fetch a new token, in
	// Unix seconds: half way through the lifetime.
	RefreshAfterTimeUTC int64
}

// Signer issues and verifies aml_tokens: compact JWS (RFC 7515) signed with
// Ed25519, header {"alg":"EdDSA","kid":...,"typ":"JWT"}, claims iss "moe",
// aud "endpoint:<name>", exp, nbf, iat and jti. Verification is local (no
// store lookup), so a token cannot be revoked before it expires; keep
// lifetimes short.
//
// The key set lives in a KeySetStorage: one JSON file (mode 0600) in the
// data directory (OpenSigner), or a record every replica shares
// (OpenSharedSigner). The zero Signer is not usable. A Signer is safe for
// concurrent use. It reads the storage when opened and on Reload: a
// process that shares the storage sees another's Rotate after it reloads.
type Signer struct {
	storage KeySetStorage
	now     func() time.Time // for Rotate's bookkeeping; tests replace it

	mu   sync.RWMutex
	keys []signingKey // oldest first; the last one signs
	rev  int64        // the storage revision keys came from (0: unknown)
}

// KeySetStorage keeps a Signer's key set (the JSON document OpenSigner
// writes to token-keys.json). Implementations: a file (OpenSigner) and
// the shared store (cmd/moe, sealed with the master key).
type KeySetStorage interface {
	// Load returns the stored key set and its revision; an error wrapping
	// fs.ErrNotExist if there is none yet.
	Load(ctx context.Context) (data []byte, rev int64, err error)
	// Create stores the first key set; an error wrapping fs.ErrExist if
	// another process stored one first.
	Create(ctx context.Context, data []byte) error
	// Replace stores data if the stored revision is still rev; an error
	// wrapping ErrKeySetChanged if another process replaced it meanwhile.
	Replace(ctx context.Context, data []byte, rev int64) error
}

// ErrKeySetChanged is returned by KeySetStorage.Replace when another
// process changed the key set since it was loaded; Rotate then retries.
var ErrKeySetChanged = errors.New("token signing key set changed concurrently")

type signingKey struct {
	kid     string
	priv    ed25519.PrivateKey
	pub     ed25519.PublicKey
	created time.Time
	retired time.Time // zero for the current key
}

// keySetJSON is the on-disk form of the key set.
type keySetJSON struct {
	Keys []keyJSON `json:"keys"`
}

type keyJSON struct {
	Kid string `json:"kid"`
	// Seed is the standard base64 of the 32-byte Ed25519 seed.
	Seed    string    `json:"seed"`
	Created time.Time `json:"created"`
	Retired time.Time `json:"retired,omitzero"`
}

// OpenSigner loads the key set from dir/token-keys.json, or creates it with
// one new key (the file is 0600, dir 0700 if missing). The file is read with
// ReadSecretFile, so loose permissions are an error.
func OpenSigner(dir string) (*Signer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open token signer: %w", err)
	}
	return OpenSharedSigner(context.Background(), &fileKeySet{path: filepath.Join(dir, KeySetFile)})
}

// OpenSharedSigner loads the key set from storage, or creates it there
// with one new key; when several processes create it at once, all of them
// end up with the one that was stored first.
func OpenSharedSigner(ctx context.Context, storage KeySetStorage) (*Signer, error) {
	s := &Signer{storage: storage, now: time.Now}
	for range 3 {
		err := s.Reload(ctx)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("open token signer: %w", err)
		}
		keys := []signingKey{newSigningKey(s.now())}
		err = storage.Create(ctx, encodeKeySet(keys))
		if err == nil {
			s.keys = keys
			return s, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("open token signer: %w", err)
		}
		// Another process created the key set first; use theirs.
	}
	return nil, errors.New("open token signer: the key set keeps appearing and disappearing")
}

// LoadSigner loads an existing key set from storage and never creates one
// (a gateway verifies with the control plane's keys; keys of its own would
// verify no token). The error wraps fs.ErrNotExist if there is none yet.
func LoadSigner(ctx context.Context, storage KeySetStorage) (*Signer, error) {
	s := &Signer{storage: storage, now: time.Now}
	if err := s.Reload(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// ImportKeySet stores data (a token-keys.json file) as the first key set
// of storage, after checking it, so tokens signed before a move to shared
// storage stay valid. An error wrapping fs.ErrExist means storage already
// has a key set (which is kept).
func ImportKeySet(ctx context.Context, storage KeySetStorage, data []byte) error {
	if _, err := decodeKeySet(data); err != nil {
		return fmt.Errorf("import token signing key set: %w", err)
	}
	return storage.Create(ctx, data)
}

// Reload reads the key set again, so Issue and Verify follow a Rotate done
// by another process. On error the signer is unchanged.
func (s *Signer) Reload(ctx context.Context) error {
	data, rev, err := s.storage.Load(ctx)
	if err != nil {
		return err
	}
	s.mu.RLock()
	same := rev != 0 && rev == s.rev
	s.mu.RUnlock()
	if same {
		return nil
	}
	keys, err := decodeKeySet(data)
	if err != nil {
		return fmt.Errorf("token signing key set: %w", err)
	}
	s.mu.Lock()
	s.keys, s.rev = keys, rev
	s.mu.Unlock()
	return nil
}

// fileKeySet is the key set in one file (mode 0600). Replace does not
// detect concurrent writers: a file is one replica's.
type fileKeySet struct{ path string }

func (f *fileKeySet) Load(context.Context) ([]byte, int64, error) {
	data, err := ReadSecretFile(f.path)
	if err != nil {
		return nil, 0, err
	}
	return data, 0, nil
}

func (f *fileKeySet) Create(_ context.Context, data []byte) error {
	return createSecretFile(f.path, data)
}

func (f *fileKeySet) Replace(_ context.Context, data []byte, _ int64) error {
	return WriteSecretFile(f.path, data)
}

func newSigningKey(now time.Time) signingKey {
	seed := make([]byte, ed25519.SeedSize)
	rand.Read(seed)
	return keyFromSeed(seed, now.UTC().Truncate(time.Second))
}

func keyFromSeed(seed []byte, created time.Time) signingKey {
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	sum := sha256.Sum256(pub)
	return signingKey{
		// A thumbprint, so the kid says nothing about when or where the
		// key was made, and two keys never share one.
		kid:     base64.RawURLEncoding.EncodeToString(sum[:9]),
		priv:    priv,
		pub:     pub,
		created: created,
	}
}

func decodeKeySet(data []byte) ([]signingKey, error) {
	var ks keySetJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ks); err != nil {
		return nil, err
	}
	if len(ks.Keys) == 0 {
		return nil, errors.New("no keys")
	}
	keys := make([]signingKey, 0, len(ks.Keys))
	for i, k := range ks.Keys {
		seed, err := base64.StdEncoding.DecodeString(k.Seed)
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("keys[%d]: seed is not %d bytes of base64", i, ed25519.SeedSize)
		}
		key := keyFromSeed(seed, k.Created)
		if key.kid != k.Kid {
			return nil, fmt.Errorf("keys[%d]: kid %q does not match the key", i, k.Kid)
		}
		key.retired = k.Retired
		keys = append(keys, key)
	}
	return keys, nil
}

func encodeKeySet(keys []signingKey) []byte {
	ks := keySetJSON{Keys: make([]keyJSON, len(keys))}
	for i, k := range keys {
		ks.Keys[i] = keyJSON{
			Kid:     k.kid,
			Seed:    base64.StdEncoding.EncodeToString(k.priv.Seed()),
			Created: k.created,
			Retired: k.retired,
		}
	}
	data, err := json.MarshalIndent(ks, "", "  ")
	if err != nil {
		panic("auth: marshal key set: " + err.Error()) // plain strings and times
	}
	return append(data, '\n')
}

// Rotate makes a new current signing key and stores the key set. Older
// keys stay for verification until every token they signed has expired: a
// key retired more than MaxTTL ago is pruned, except that the previous key
// is always kept. It starts from the stored key set (another replica may
// have rotated since this one loaded it) and retries if another rotation
// lands meanwhile. On error the signer is unchanged.
func (s *Signer) Rotate(ctx context.Context) error {
	return s.rotate(ctx, s.now())
}

func (s *Signer) rotate(ctx context.Context, now time.Time) error {
	now = now.UTC().Truncate(time.Second)
	for range 5 {
		data, rev, err := s.storage.Load(ctx)
		if err != nil {
			return fmt.Errorf("rotate token signing key: %w", err)
		}
		stored, err := decodeKeySet(data)
		if err != nil {
			return fmt.Errorf("rotate token signing key: stored key set: %w", err)
		}
		keys := rotateKeys(stored, now)
		err = s.storage.Replace(ctx, encodeKeySet(keys), rev)
		if errors.Is(err, ErrKeySetChanged) {
			continue
		}
		if err != nil {
			return fmt.Errorf("rotate token signing key: %w", err)
		}
		s.mu.Lock()
		s.keys, s.rev = keys, 0 // the new revision is unknown here: the next Reload decodes
		s.mu.Unlock()
		return nil
	}
	return fmt.Errorf("rotate token signing key: %w five times in a row", ErrKeySetChanged)
}

func rotateKeys(old []signingKey, now time.Time) []signingKey {
	keys := make([]signingKey, 0, len(old)+1)
	prev := len(old) - 1
	for i, k := range old {
		if i == prev {
			k.retired = now
		} else if !k.retired.IsZero() && now.Sub(k.retired) >= MaxTTL {
			continue
		}
		keys = append(keys, k)
	}
	return append(keys, newSigningKey(now))
}

// header and claims are the JWS header and JWT claims this package writes
// and reads.
type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

type claims struct {
	Iss string `json:"iss"`
	Aud string `json:"aud"`
	Exp int64  `json:"exp"`
	Nbf int64  `json:"nbf"`
	Iat int64  `json:"iat"`
	Jti string `json:"jti"`
}

// Issue signs a token for endpoint that is valid from now for ttl (DefaultTTL
// if ttl is zero). A ttl below one second or above MaxTTL is an error
// wrapping ErrTokenTTL.
func (s *Signer) Issue(endpoint string, ttl time.Duration, now time.Time) (Token, error) {
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < time.Second || ttl > MaxTTL {
		return Token{}, fmt.Errorf("issue token for endpoint %q: %w: %v (allowed 1s to %v)", endpoint, ErrTokenTTL, ttl, MaxTTL)
	}
	if endpoint == "" {
		return Token{}, errors.New("issue token: empty endpoint name")
	}
	iat := now.Unix()
	exp := now.Add(ttl).Unix()
	var jti [16]byte
	rand.Read(jti[:])

	s.mu.RLock()
	key := s.keys[len(s.keys)-1]
	s.mu.RUnlock()

	tok := signToken(key,
		header{Alg: tokenAlg, Kid: key.kid, Typ: tokenType},
		claims{
			Iss: tokenIssuer,
			Aud: audiencePrefix + endpoint,
			Exp: exp,
			Nbf: iat,
			Iat: iat,
			Jti: base64.RawURLEncoding.EncodeToString(jti[:]),
		})
	return Token{
		AccessToken:         Secret(tok),
		TokenType:           "Bearer",
		ExpiryTimeUTC:       exp,
		RefreshAfterTimeUTC: iat + (exp-iat)/2,
	}, nil
}

func signToken(key signingKey, h header, c claims) string {
	hb, err := json.Marshal(h)
	if err != nil {
		panic("auth: marshal token header: " + err.Error())
	}
	cb, err := json.Marshal(c)
	if err != nil {
		panic("auth: marshal token claims: " + err.Error())
	}
	b64 := base64.RawURLEncoding
	input := b64.EncodeToString(hb) + "." + b64.EncodeToString(cb)
	return input + "." + b64.EncodeToString(ed25519.Sign(key.priv, []byte(input)))
}

// Verify checks that token is a valid aml_token for endpoint at time now:
// well formed, alg EdDSA, signed by a key in the set, issued by moe for
// "endpoint:<endpoint>", and now within [nbf, exp). The error wraps one of
// ErrMalformedToken, ErrTokenAlgorithm, ErrUnknownKey, ErrTokenSignature,
// ErrTokenEndpoint, ErrTokenNotYetValid or ErrTokenExpired. The cost is one
// Ed25519 verification on at most 2 KiB of input, whatever the token holds.
func (s *Signer) Verify(token, endpoint string, now time.Time) error {
	p, err := parseToken(token)
	if err != nil {
		return err
	}
	if p.header.Alg != tokenAlg {
		return fmt.Errorf("verify token: %w: %q", ErrTokenAlgorithm, p.header.Alg)
	}
	if p.header.Typ != tokenType {
		return fmt.Errorf("verify token: %w: typ %q", ErrMalformedToken, p.header.Typ)
	}
	pub := s.publicKey(p.header.Kid)
	if pub == nil {
		return fmt.Errorf("verify token: %w: kid %q", ErrUnknownKey, p.header.Kid)
	}
	if !ed25519.Verify(pub, []byte(p.signingInput), p.signature) {
		return fmt.Errorf("verify token: %w", ErrTokenSignature)
	}
	c, err := p.claims()
	if err != nil {
		return err
	}
	if c.Iss != tokenIssuer || c.Aud != audiencePrefix+endpoint {
		return fmt.Errorf("verify token for endpoint %q: %w", endpoint, ErrTokenEndpoint)
	}
	t := now.Unix()
	if t+int64(clockSkew/time.Second) < c.Nbf {
		return fmt.Errorf("verify token for endpoint %q: %w", endpoint, ErrTokenNotYetValid)
	}
	if t >= c.Exp {
		return fmt.Errorf("verify token for endpoint %q: %w", endpoint, ErrTokenExpired)
	}
	return nil
}

func (s *Signer) publicKey(kid string) ed25519.PublicKey {
	s.mu.RLock()
	defer s.mu.RUnlock()
	// Newest first: almost every token is signed by the current key.
	for i := len(s.keys) - 1; i >= 0; i-- {
		if s.keys[i].kid == kid {
			return s.keys[i].pub
		}
	}
	return nil
}

// parsedToken is a compact JWS split into its parts, with the header
// decoded. The claims are decoded only after the signature checks out.
type parsedToken struct {
	header       header
	signingInput string // base64url(header) "." base64url(claims)
	payload      string // base64url(claims)
	signature    []byte
}

// strictB64 rejects padding and non-canonical trailing bits, so one token
// has exactly one encoding.
var strictB64 = base64.RawURLEncoding.Strict()

// parseToken splits and decodes a compact JWS without checking anything
// cryptographic. Every error wraps ErrMalformedToken.
func parseToken(token string) (*parsedToken, error) {
	malformed := func(why string) (*parsedToken, error) {
		return nil, fmt.Errorf("verify token: %w: %s", ErrMalformedToken, why)
	}
	if len(token) > maxTokenLen {
		return malformed("too long")
	}
	h, rest, ok1 := strings.Cut(token, ".")
	payload, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(sig, ".") {
		return malformed("not three dot-separated parts")
	}
	hb, err := strictB64.DecodeString(h)
	if err != nil {
		return malformed("header is not base64url")
	}
	p := &parsedToken{signingInput: token[:len(h)+1+len(payload)], payload: payload}
	if err := decodeStrict(hb, &p.header); err != nil {
		return malformed("header: " + err.Error())
	}
	if p.signature, err = strictB64.DecodeString(sig); err != nil || len(p.signature) != ed25519.SignatureSize {
		return malformed("signature is not 64 bytes of base64url")
	}
	return p, nil
}

// claims decodes the payload; every error wraps ErrMalformedToken.
func (p *parsedToken) claims() (claims, error) {
	var c claims
	cb, err := strictB64.DecodeString(p.payload)
	if err != nil {
		return c, fmt.Errorf("verify token: %w: claims are not base64url", ErrMalformedToken)
	}
	if err := decodeStrict(cb, &c); err != nil {
		return c, fmt.Errorf("verify token: %w: claims: %v", ErrMalformedToken, err)
	}
	if c.Exp == 0 || c.Nbf == 0 || c.Iat == 0 || c.Jti == "" {
		return c, fmt.Errorf("verify token: %w: missing claims", ErrMalformedToken)
	}
	return c, nil
}

// decodeStrict decodes exactly one JSON object with no unknown fields (which
// also rejects "crit" and any other header extension).
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}
