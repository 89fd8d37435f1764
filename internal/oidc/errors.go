package oidc

import "errors"

// Sentinel errors returned (wrapped) by [New] and [Verifier.Verify]. Callers
// branch on them with errors.Is. No error message contains the token; some
// quote the token's kid or alg, truncated.
var (
	// ErrConfig means the Config given to New is invalid. The message lists
	// every problem.
	ErrConfig = errors.New("oidc: invalid config")

	// ErrTokenTooLarge means the token is longer than MaxTokenSize bytes.
	ErrTokenTooLarge = errors.New("oidc: token too large")
	// ErrMalformedToken means the token is not a compact JWS with a JSON
	// header and claims (wrong shape, bad base64 or JSON, a claim of the
	// wrong type, no exp, a crit header).
	ErrMalformedToken = errors.New("oidc: malformed token")
	// ErrAlgorithm means the token's alg is not an accepted asymmetric
	// algorithm ("none" and HS* never are), or does not match the key its
	// kid names (kty, curve, or the key's own alg).
	ErrAlgorithm = errors.New("oidc: unsupported token algorithm")
	// ErrUnknownKey means the token's kid is not in the key set, even after
	// the one refresh it may trigger.
	ErrUnknownKey = errors.New("oidc: unknown token signing key")
	// ErrSignature means the signature does not match the header and
	// claims.
	ErrSignature = errors.New("oidc: invalid token signature")
	// ErrExpired means the token's exp is in the past (beyond Leeway).
	ErrExpired = errors.New("oidc: token expired")
	// ErrNotYetValid means the token's nbf is in the future (beyond
	// Leeway).
	ErrNotYetValid = errors.New("oidc: token not yet valid")
	// ErrIssuer means the token's iss is not Config.Issuer.
	ErrIssuer = errors.New("oidc: wrong token issuer")
	// ErrAudience means the token's aud does not contain Config.Audience.
	ErrAudience = errors.New("oidc: wrong token audience")
	// ErrClaim means the token lacks Config.RequiredClaim or the claim does
	// not contain the required value.
	ErrClaim = errors.New("oidc: required claim missing")
	// ErrJWKS means no key set could be loaded yet (the first fetch failed
	// or the document holds no usable key). Once a key set has loaded,
	// later failures keep it and are only logged.
	ErrJWKS = errors.New("oidc: signing keys unavailable")
)
