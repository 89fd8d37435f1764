// Package auth provides endpoint keys, the Secret type that keeps them out of
// logs, constant-time comparison, and (see token.go, secretbox.go) token
// signing and encryption of secrets at rest.
package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"log/slog"
)

// Secret holds a credential (endpoint key, token, admin credential). Its
// String, GoString, LogValue and text/JSON marshalling print "REDACTED", so a
// secret cannot reach a log or an API response by accident; call Reveal where
// the value is really needed.
type Secret string

const redacted = "REDACTED"

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer with a redacted value.
func (s Secret) String() string { return redacted }

// GoString implements fmt.GoStringer with a redacted value.
func (s Secret) GoString() string { return redacted }

// LogValue implements slog.LogValuer with a redacted value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText redacts; use Reveal to serialise a secret on purpose.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Equal compares in constant time (for equal lengths).
func (s Secret) Equal(other string) bool {
	return len(s) > 0 && subtle.ConstantTimeCompare([]byte(s), []byte(other)) == 1
}

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s == "" }

// NewKey returns a new random endpoint key: 32 random bytes, base64url, the
// length and alphabet of Azure's generated keys.
func NewKey() Secret {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("auth: crypto/rand failed: " + err.Error())
	}
	return Secret(base64.RawURLEncoding.EncodeToString(b[:]))
}
