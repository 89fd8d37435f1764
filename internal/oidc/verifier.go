package oidc

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Verifier checks bearer JWTs against one issuer's JWKS. Create it with
// [New]; it is safe for concurrent use. Run [Verifier.Run] in a goroutine to
// refresh the key set in the background; without Run the set is loaded by
// the first Verify and refreshed only when a token names an unknown kid.
type Verifier struct {
	cfg     Config
	log     *slog.Logger
	source  string // JWKS source as logged
	claim   requiredClaim
	parsers map[string]*jwt.Parser // by alg; each accepts only that alg

	// keys is the current key set, nil until the first successful load.
	// Verify reads it without locks.
	keys atomic.Pointer[keySet]

	mu        sync.Mutex
	inflight  *fetch    // the fetch in progress, nil if none
	lastStart time.Time // Clock time the last fetch started
	lastErr   error     // result of the last finished fetch
}

// fetch is one JWKS load shared by every caller that wants it. done is
// closed when err is set.
type fetch struct {
	done   chan struct{}
	cancel context.CancelFunc
	err    error
}

// errThrottled means a refresh was skipped because the last one started
// less than the gap ago. It never leaves the package.
var errThrottled = errors.New("refresh throttled")

// New validates cfg and returns a Verifier. It does not fetch the JWKS: the
// first Verify (or Run) does.
func New(cfg Config) (*Verifier, error) {
	rc, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	v := &Verifier{
		cfg:     cfg,
		source:  sourceName(&cfg),
		claim:   rc,
		parsers: map[string]*jwt.Parser{},
	}
	v.log = cfg.Logger.With("component", "oidc", "issuer", cfg.Issuer)
	for _, algs := range [][]string{rsaAlgs, p256Algs, p384Algs, ed25519Algs} {
		for _, alg := range algs {
			v.parsers[alg] = jwt.NewParser(
				jwt.WithValidMethods([]string{alg}),
				jwt.WithoutClaimsValidation(), // checkClaims does it, with our sentinels
				jwt.WithStrictDecoding(),
			)
		}
	}
	return v, nil
}

// Claims are the verified claims of a token. Raw holds every claim as
// decoded from JSON (numbers are float64); callers must not modify it.
type Claims struct {
	Subject  string
	Issuer   string
	Audience []string
	Expiry   time.Time
	Raw      map[string]any
}

// Verify checks token (the bearer credential, without the "Bearer "
// prefix) and returns its claims. It is safe for concurrent use and does no
// I/O when the token's kid is in the cached key set. Otherwise it waits,
// bounded by ctx, for a JWKS fetch: the first load, or the one refresh an
// unknown kid may trigger (at most one per MinRefreshGap, shared by all
// callers). Errors wrap the package's sentinels and never contain token.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	if len(token) > MaxTokenSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTokenTooLarge, len(token), MaxTokenSize)
	}
	alg, kid, err := parseHeader(token)
	if err != nil {
		return nil, err
	}
	parser, ok := v.parsers[alg]
	if !ok {
		return nil, fmt.Errorf("%w: alg %s", ErrAlgorithm, quote(alg))
	}
	k, err := v.keyFor(ctx, kid)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(k.algs, alg) {
		return nil, fmt.Errorf("%w: alg %s does not fit key %s", ErrAlgorithm, quote(alg), quote(k.kid))
	}
	mc := jwt.MapClaims{}
	if _, err := parser.ParseWithClaims(token, mc, func(*jwt.Token) (any, error) { return k.public, nil }); err != nil {
		// jwt's messages may quote the header; never pass them on.
		if errors.Is(err, jwt.ErrTokenSignatureInvalid) {
			return nil, ErrSignature
		}
		return nil, fmt.Errorf("%w: cannot decode claims", ErrMalformedToken)
	}
	return v.checkClaims(mc)
}

// parseHeader returns the token's alg and kid. jwt parses the header again;
// it is told to accept only this alg, so both readings must agree.
func parseHeader(token string) (alg, kid string, err error) {
	if strings.Count(token, ".") != 2 {
		return "", "", fmt.Errorf("%w: not three dot-separated parts", ErrMalformedToken)
	}
	h64, _, _ := strings.Cut(token, ".")
	raw, err := base64.RawURLEncoding.Strict().DecodeString(h64)
	if err != nil {
		return "", "", fmt.Errorf("%w: header is not base64url", ErrMalformedToken)
	}
	var hdr map[string]any
	if err := json.Unmarshal(raw, &hdr); err != nil || hdr == nil {
		return "", "", fmt.Errorf("%w: header is not a JSON object", ErrMalformedToken)
	}
	if _, ok := hdr["crit"]; ok {
		return "", "", fmt.Errorf("%w: crit header parameters are not supported", ErrMalformedToken)
	}
	alg, ok := hdr["alg"].(string)
	if !ok {
		return "", "", fmt.Errorf("%w: header has no alg", ErrAlgorithm)
	}
	if v, present := hdr["kid"]; present {
		if kid, ok = v.(string); !ok {
			return "", "", fmt.Errorf("%w: kid is not a string", ErrMalformedToken)
		}
	}
	return alg, kid, nil
}

// keyFor returns the key named kid, loading or refreshing the key set if
// needed.
func (v *Verifier) keyFor(ctx context.Context, kid string) (*key, error) {
	set := v.keys.Load()
	if set == nil {
		err := v.refresh(ctx, noKeysRetryGap)
		if set = v.keys.Load(); set == nil {
			if err == nil || errors.Is(err, errThrottled) {
				v.mu.Lock()
				err = v.lastErr
				v.mu.Unlock()
			}
			if err == nil {
				err = errors.New("no fetch has finished yet")
			}
			return nil, fmt.Errorf("%w: %w", ErrJWKS, err)
		}
	}
	if k := set.lookup(kid); k != nil {
		return k, nil
	}
	if kid == "" {
		return nil, fmt.Errorf("%w: token has no kid and the key set holds %d keys", ErrUnknownKey, len(set.order))
	}
	err := v.refresh(ctx, v.cfg.MinRefreshGap)
	if k := v.keys.Load().lookup(kid); k != nil {
		return k, nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
		return nil, fmt.Errorf("%w: kid %s (stopped waiting for the key set refresh: %w)", ErrUnknownKey, quote(kid), ctxErr)
	}
	return nil, fmt.Errorf("%w: kid %s", ErrUnknownKey, quote(kid))
}

// refresh loads the key set, joining the fetch in progress if there is one.
// It starts a new fetch only if the last one started at least gap ago (by
// Clock), and returns errThrottled otherwise. It waits for the fetch until
// ctx is done; the fetch itself is not tied to ctx, so a caller that gives
// up does not fail the others sharing it.
func (v *Verifier) refresh(ctx context.Context, gap time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err // nobody would wait for a new fetch
	}
	v.mu.Lock()
	f := v.inflight
	if f == nil {
		now := v.cfg.Clock()
		if gap > 0 && !v.lastStart.IsZero() && now.Sub(v.lastStart) < gap {
			v.mu.Unlock()
			return errThrottled
		}
		fctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
		f = &fetch{done: make(chan struct{}), cancel: cancel}
		v.inflight = f
		v.lastStart = now
		go v.run(fctx, f)
	}
	v.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run performs f. It is the only goroutine the Verifier starts; it ends
// within fetchTimeout, and Run cancels it and waits for it on return.
func (v *Verifier) run(ctx context.Context, f *fetch) {
	defer f.cancel()
	err := v.load(ctx)
	v.mu.Lock()
	v.inflight = nil
	v.lastErr = err
	v.mu.Unlock()
	f.err = err
	close(f.done)
}

// load reads and parses the JWKS and installs it. On failure the current
// set stays.
func (v *Verifier) load(ctx context.Context) error {
	cur := v.keys.Load()
	data, err := v.read(ctx)
	if err == nil && cur != nil && bytes.Equal(cur.raw, data) {
		v.log.Debug("jwks unchanged", "source", v.source, "keys", len(cur.order))
		return nil
	}
	var set *keySet
	if err == nil {
		var skipped []skippedKey
		set, skipped, err = parseJWKS(data)
		for _, s := range skipped {
			v.log.Warn("jwks key skipped", "source", v.source, "kid", s.kid, "reason", s.reason)
		}
	}
	if err != nil {
		if cur != nil {
			v.log.Warn("jwks refresh failed; keeping the last key set", "source", v.source, "keys", cur.order, "err", err)
		} else {
			v.log.Error("jwks load failed; tokens are rejected until it succeeds", "source", v.source, "err", err)
		}
		return err
	}
	v.keys.Store(set)
	v.log.Info("jwks loaded", "source", v.source, "keys", set.order)
	return nil
}

// Run refreshes the key set every RefreshInterval until ctx is done, then
// stops the fetch in flight, waits for it and returns nil. It loads the set
// at once if no Verify has yet. A failed refresh is logged and the last good
// set kept. Run one Run per Verifier.
func (v *Verifier) Run(ctx context.Context) error {
	if v.keys.Load() == nil {
		_ = v.refresh(ctx, 0)
	}
	t := time.NewTicker(v.cfg.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			v.mu.Lock()
			f := v.inflight
			v.mu.Unlock()
			if f != nil {
				f.cancel()
				<-f.done
			}
			return nil
		case <-t.C:
			_ = v.refresh(ctx, 0)
		}
	}
}

// checkClaims validates the registered claims and the required claim.
func (v *Verifier) checkClaims(mc jwt.MapClaims) (*Claims, error) {
	exp, err := mc.GetExpirationTime()
	if err != nil {
		return nil, fmt.Errorf("%w: exp is not a number", ErrMalformedToken)
	}
	if exp == nil {
		return nil, fmt.Errorf("%w: no exp claim", ErrMalformedToken)
	}
	now := v.cfg.Clock()
	if !now.Before(exp.Add(Leeway)) {
		return nil, fmt.Errorf("%w: at %s", ErrExpired, exp.UTC().Format(time.RFC3339))
	}
	nbf, err := mc.GetNotBefore()
	if err != nil {
		return nil, fmt.Errorf("%w: nbf is not a number", ErrMalformedToken)
	}
	if nbf != nil && now.Add(Leeway).Before(nbf.Time) {
		return nil, fmt.Errorf("%w: not before %s", ErrNotYetValid, nbf.UTC().Format(time.RFC3339))
	}
	iss, err := mc.GetIssuer()
	if err != nil {
		return nil, fmt.Errorf("%w: iss is not a string", ErrMalformedToken)
	}
	if iss != v.cfg.Issuer {
		return nil, fmt.Errorf("%w: got %s, want %s", ErrIssuer, quote(iss), quote(v.cfg.Issuer))
	}
	aud, err := mc.GetAudience()
	if err != nil {
		return nil, fmt.Errorf("%w: aud is not a string or list of strings", ErrMalformedToken)
	}
	if !slices.Contains(aud, v.cfg.Audience) {
		return nil, fmt.Errorf("%w: want %s", ErrAudience, quote(v.cfg.Audience))
	}
	sub, err := mc.GetSubject()
	if err != nil {
		return nil, fmt.Errorf("%w: sub is not a string", ErrMalformedToken)
	}
	if v.claim.name != "" && !claimContains(mc[v.claim.name], v.claim.value) {
		return nil, fmt.Errorf("%w: %s must contain %s", ErrClaim, quote(v.claim.name), quote(v.claim.value))
	}
	return &Claims{
		Subject:  sub,
		Issuer:   iss,
		Audience: []string(aud),
		Expiry:   exp.Time,
		Raw:      mc,
	}, nil
}

// claimContains reports whether claim (a string or a list) contains want:
// a string equal to want or holding it as a space-separated word, or a list
// with a string element equal to want.
func claimContains(claim any, want string) bool {
	switch c := claim.(type) {
	case string:
		return c == want || slices.Contains(strings.Fields(c), want)
	case []any:
		for _, e := range c {
			if s, ok := e.(string); ok && s == want {
				return true
			}
		}
	}
	return false
}

// quote returns s quoted for an error message, truncated to 64 bytes.
func quote(s string) string {
	if len(s) > 64 {
		return fmt.Sprintf("%q...", s[:64])
	}
	return fmt.Sprintf("%q", s)
}
