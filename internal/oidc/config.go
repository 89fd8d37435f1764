package oidc

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults and limits. They are constants, not Config fields, because no
// deployment should need to change them.
const (
	// DefaultRefreshInterval is the background refresh period for JWKSURL.
	DefaultRefreshInterval = time.Hour
	// DefaultFileRefreshInterval is how often Run re-reads JWKSFile. A read
	// of an unchanged file costs a compare and nothing else.
	DefaultFileRefreshInterval = 10 * time.Second
	// DefaultMinRefreshGap is the minimum time between two refreshes
	// triggered by tokens with an unknown kid.
	DefaultMinRefreshGap = 30 * time.Second
	// DefaultHTTPTimeout bounds one JWKS request with the default client.
	DefaultHTTPTimeout = 10 * time.Second

	// Leeway is the clock skew tolerated on exp and nbf.
	Leeway = 30 * time.Second
	// MaxTokenSize is the longest token Verify accepts, in bytes.
	MaxTokenSize = 8 << 10
	// maxJWKSSize bounds the JWKS document read from the URL or file.
	maxJWKSSize = 1 << 20
	// fetchTimeout bounds one fetch even when HTTPClient has no timeout.
	// Callers stop waiting when their ctx ends; the fetch itself goes on
	// (at most this long) for the other callers sharing it.
	fetchTimeout = 30 * time.Second
	// noKeysRetryGap replaces MinRefreshGap while no key set has ever
	// loaded, so a provider that was down at startup is retried soon.
	noKeysRetryGap = time.Second
)

// Config configures a [Verifier]. Issuer, Audience and exactly one of
// JWKSURL and JWKSFile are required; every other field works at its zero
// value.
type Config struct {
	// Issuer is the provider's issuer identifier. A token's iss must equal
	// it exactly (Entra v2: "https://login.microsoftonline.com/<tenant>/v2.0";
	// v1: "https://sts.windows.net/<tenant>/").
	Issuer string
	// JWKSURL is the provider's JWKS document (the jwks_uri of its
	// discovery document). It must be https, or http on a loopback address
	// (tests, sidecars).
	JWKSURL string
	// JWKSFile is a local JWKS document, for air-gapped setups or a key set
	// synced by other tooling. It is re-read every RefreshInterval and when
	// a token names an unknown kid; a changed content replaces the key set.
	JWKSFile string
	// Audience is the value a token's aud must contain (Entra tokens for
	// Azure ML: "https://ml.azure.com").
	Audience string
	// RequiredClaim is an optional "name=value", e.g. "roles=scorer". The
	// claim must be a string or a list of strings containing value. A string
	// claim matches when it equals value or has value as one of its
	// space-separated words (the OAuth "scp" convention).
	RequiredClaim string
	// RefreshInterval is the period of Run's background refresh. Zero means
	// DefaultRefreshInterval for JWKSURL and DefaultFileRefreshInterval for
	// JWKSFile.
	RefreshInterval time.Duration
	// MinRefreshGap is the minimum time between refreshes triggered by an
	// unknown kid. Zero means DefaultMinRefreshGap.
	MinRefreshGap time.Duration
	// HTTPClient fetches JWKSURL. Nil means a client with a
	// DefaultHTTPTimeout timeout that refuses redirects away from https.
	HTTPClient *http.Client
	// Logger receives refresh results and failures (never tokens). Nil
	// means slog.Default().
	Logger *slog.Logger
	// Clock returns the current time for exp/nbf checks and MinRefreshGap.
	// Nil means time.Now. Tests set it; Run's ticker uses real time.
	Clock func() time.Time
}

// requiredClaim is Config.RequiredClaim split at its first '='.
type requiredClaim struct{ name, value string }

// validate returns every problem in cfg as one ErrConfig error, or nil.
func (cfg *Config) validate() (requiredClaim, error) {
	var problems []string
	var rc requiredClaim
	if strings.TrimSpace(cfg.Issuer) == "" {
		problems = append(problems, "issuer is required")
	}
	if strings.TrimSpace(cfg.Audience) == "" {
		problems = append(problems, "audience is required")
	}
	switch {
	case cfg.JWKSURL == "" && cfg.JWKSFile == "":
		problems = append(problems, "one of jwks_url and jwks_file is required")
	case cfg.JWKSURL != "" && cfg.JWKSFile != "":
		problems = append(problems, "jwks_url and jwks_file are mutually exclusive")
	case cfg.JWKSURL != "":
		if err := checkJWKSURL(cfg.JWKSURL); err != "" {
			problems = append(problems, err)
		}
	}
	if cfg.RequiredClaim != "" {
		name, value, ok := strings.Cut(cfg.RequiredClaim, "=")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || name == "" || value == "" {
			problems = append(problems, fmt.Sprintf("required_claim %q: want name=value, e.g. roles=scorer", cfg.RequiredClaim))
		}
		rc = requiredClaim{name: name, value: value}
	}
	if cfg.RefreshInterval < 0 {
		problems = append(problems, "refresh_interval must not be negative")
	}
	if cfg.MinRefreshGap < 0 {
		problems = append(problems, "min_refresh_gap must not be negative")
	}
	if len(problems) > 0 {
		return rc, fmt.Errorf("%w: %s", ErrConfig, strings.Join(problems, "; "))
	}
	return rc, nil
}

// checkJWKSURL returns a problem description, or "" if raw is acceptable.
// The description names the URL without user info, query or fragment, which
// may hold secrets (a SAS token, a password).
func checkJWKSURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "jwks_url: not an absolute URL"
	}
	shown := (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
	switch {
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	default:
		return fmt.Sprintf("jwks_url %q: must be https (http only on a loopback address)", shown)
	}
	if u.User != nil {
		return fmt.Sprintf("jwks_url %q: must not contain credentials", shown)
	}
	return ""
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// withDefaults returns cfg with zero fields replaced by their defaults.
func (cfg Config) withDefaults() Config {
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = DefaultRefreshInterval
		if cfg.JWKSFile != "" {
			cfg.RefreshInterval = DefaultFileRefreshInterval
		}
	}
	if cfg.MinRefreshGap == 0 {
		cfg.MinRefreshGap = DefaultMinRefreshGap
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{
			Timeout: DefaultHTTPTimeout,
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= 5 {
					return fmt.Errorf("stopped after %d redirects", len(via))
				}
				if req.URL.Scheme != "https" && !isLoopback(req.URL.Hostname()) {
					return fmt.Errorf("refusing redirect to non-https %s", req.URL.Redacted())
				}
				return nil
			},
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	return cfg
}
