package auth

import "errors"

// Sentinel errors. Callers test for them with errors.Is; the errors returned
// wrap them with the name of the file, token or key involved.
var (
	// ErrInsecureFile means a secret file can be read or written by its
	// group or by others. The wrapping error names the file and the fix.
	ErrInsecureFile = errors.New("auth: secret file is accessible by group or others")
	// ErrDecrypt means a sealed secret could not be opened: the key is
	// wrong, or the data was changed.
	ErrDecrypt = errors.New("auth: cannot decrypt secret (wrong key or tampered data)")
	// ErrSealedFormat means a sealed secret does not start with a known
	// version prefix or is not valid base64.
	ErrSealedFormat = errors.New("auth: unknown sealed secret format")

	// ErrMalformedToken means the token is not a compact JWS this package
	// issues (wrong shape, bad base64 or JSON, missing claims, too long).
	ErrMalformedToken = errors.New("auth: malformed token")
	// ErrTokenAlgorithm means the token header names an algorithm other
	// than EdDSA (including "none").
	ErrTokenAlgorithm = errors.New("auth: unsupported token algorithm")
	// ErrUnknownKey means the token's kid is not in the signer's key set
	// (never issued here, or its key was pruned after rotation).
	ErrUnknownKey = errors.New("auth: unknown token signing key")
	// ErrTokenSignature means the signature does not match the header and
	// claims.
	ErrTokenSignature = errors.New("auth: invalid token signature")
	// ErrTokenExpired means now is at or after the token's exp.
	ErrTokenExpired = errors.New("auth: token expired")
	// ErrTokenNotYetValid means now is before the token's nbf.
	ErrTokenNotYetValid = errors.New("auth: token not yet valid")
	// ErrTokenEndpoint means the token was issued for another endpoint (or
	// by another issuer).
	ErrTokenEndpoint = errors.New("auth: token is not valid for this endpoint")
	// ErrTokenTTL means Issue was asked for a lifetime above MaxTTL.
	ErrTokenTTL = errors.New("auth: token lifetime out of range")
)
