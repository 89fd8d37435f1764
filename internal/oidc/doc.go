// Package oidc verifies bearer JWTs issued by an external OpenID Connect
// identity provider (Entra ID, Keycloak, Dex, ...). It backs endpoints whose
// auth_mode is aad_token: the gateway hands the bearer token to
// [Verifier.Verify], which checks the signature against the provider's JSON
// Web Key Set (JWKS) and the issuer, audience, lifetime and an optional
// required claim.
//
// The JWKS comes from an HTTPS URL or a local file. It is cached in memory,
// so verifying a token whose kid is known does no I/O. The set is refreshed
// by [Verifier.Run] every Config.RefreshInterval, and a token with an unknown
// kid triggers at most one refresh per Config.MinRefreshGap, shared by all
// concurrent callers: an attacker sending random kids cannot make moe hammer
// the identity provider. A failed refresh keeps the last good key set.
//
// Tokens must be signed with RS256, RS384, RS512, PS256, ES256, ES384 or
// EdDSA (Ed25519), and the alg must fit the key its kid names. Only
// asymmetric keys are ever used (RSA of 2048 bits or more, EC on P-256 and
// P-384, and Ed25519). Symmetric "oct" keys in the JWKS are ignored and HS*
// and "none" tokens are rejected, which closes the classic "RSA public key
// used as the HMAC secret" attack. Header parameters that point at keys
// (jku, jwk, x5u, x5c) are ignored: keys come only from the configured JWKS.
//
// Errors are sentinels (ErrExpired, ErrAudience, ...) usable with errors.Is.
// They never contain the token; at most they quote its kid or alg.
package oidc
