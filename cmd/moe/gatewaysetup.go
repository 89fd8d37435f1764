package main

// Setup that `moe serve` and `moe gateway` share: logging, the master key,
// token verification for aml_token and aad_token endpoints, OIDC flags,
// tracing and the admin listener.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"

	"github.com/moe-serving/moe/internal/auth"
	"github.com/moe-serving/moe/internal/oidc"
	"github.com/moe-serving/moe/internal/tracing"
)

// newLogger builds a server's log from --log-format and --log-level.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, &usageError{msg: fmt.Sprintf("--log-level %q: %v", level, err), hint: "--log-level info"}
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, &usageError{msg: fmt.Sprintf("--log-format %q: must be text or json", format)}
	}
}

// openMasterKey opens the box that seals endpoint keys at rest: the key in
// MOE_MASTER_KEY if set, else the key file, which is created with a new key
// when create is set and it is missing.
func openMasterKey(file string, create bool) (*auth.Box, error) {
	if k := os.Getenv("MOE_MASTER_KEY"); k != "" {
		key, err := auth.DecodeBoxKey([]byte(k))
		if err != nil {
			return nil, fmt.Errorf("MOE_MASTER_KEY: %w", err)
		}
		box, err := auth.BoxFromKey(key)
		if err != nil {
			return nil, fmt.Errorf("MOE_MASTER_KEY: %w", err)
		}
		return box, nil
	}
	if !create {
		data, err := auth.ReadSecretFile(file)
		if err != nil {
			return nil, fmt.Errorf("master key: %w (set MOE_MASTER_KEY or --master-key-file to the control plane's master key)", err)
		}
		key, err := auth.DecodeBoxKey(data)
		if err != nil {
			return nil, fmt.Errorf("master key %s: %w", file, err)
		}
		return auth.BoxFromKey(key)
	}
	box, err := auth.OpenBox(file)
	if err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	return box, nil
}

// addOIDCFlags registers the --oidc-* flags that let aad_token endpoints
// accept an identity provider's JWTs.
func addOIDCFlags(f *pflag.FlagSet, c *oidc.Config, requiredClaim *string) {
	f.StringVar(&c.Issuer, "oidc-issuer", "", "aad_token endpoints accept JWTs from this OIDC issuer (its iss claim), e.g. https://login.microsoftonline.com/<tenant>/v2.0")
	f.StringVar(&c.JWKSURL, "oidc-jwks-url", "", "the issuer's JWKS URL (keys are cached and refreshed)")
	f.StringVar(&c.JWKSFile, "oidc-jwks-file", "", "a local JWKS file instead of --oidc-jwks-url (reloaded when it changes)")
	f.StringVar(&c.Audience, "oidc-audience", "https://ml.azure.com", "the aud a token must carry")
	f.StringVar(requiredClaim, "oidc-required-claim", "", `a claim the token must hold, as name=value (e.g. "roles=scorer")`)
}

// openOIDC returns the verifier for the --oidc-* flags, or nil when no
// issuer is set.
func openOIDC(c oidc.Config, requiredClaim string, logger *slog.Logger) (*oidc.Verifier, error) {
	if c.Issuer == "" {
		return nil, nil
	}
	c.RequiredClaim = requiredClaim
	c.Logger = logger.With("component", "oidc")
	v, err := oidc.New(c)
	if err != nil {
		return nil, &usageError{msg: fmt.Sprintf("--oidc-*: %v", err), hint: "--oidc-issuer URL --oidc-jwks-url URL [--oidc-audience AUD]"}
	}
	return v, nil
}

// verifyToken is gateway.Config.VerifyToken: aml_tokens are checked with
// aml (auth.Signer.Verify), aad_tokens with the OIDC verifier (nil: none
// configured; command names the command to restart with --oidc-*).
func verifyToken(aml func(token, endpoint string, now time.Time) error, v *oidc.Verifier, command string) func(endpoint, mode, token string) error {
	return func(endpoint, mode, token string) error {
		if mode == "aml_token" {
			return aml(token, endpoint, time.Now())
		}
		if v == nil {
			return errors.New("aad_token endpoints need an OIDC issuer: start " + command + " with --oidc-issuer and --oidc-jwks-url")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := v.Verify(ctx, token)
		return err
	}
}

// openTracing starts span export to an OTLP/HTTP collector (--otlp-endpoint).
func openTracing(endpoint string, logger *slog.Logger) (*tracing.Provider, error) {
	tp, err := tracing.Open(context.Background(), tracing.Config{Endpoint: endpoint, Service: "moe-gateway",
		Logger: logger.With("component", "tracing")})
	if err != nil {
		return nil, &usageError{msg: fmt.Sprintf("--otlp-endpoint: %v", err), hint: "--otlp-endpoint http://127.0.0.1:4318"}
	}
	logger.Info("exporting spans over OTLP/HTTP", "otlp_endpoint", endpoint)
	return tp, nil
}

// newMetricsRegistry is the registry behind the admin listener's /metrics,
// with the Go runtime and process collectors.
func newMetricsRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// newAdminServer is the admin listener (plain HTTP): /metrics from reg and
// /-/healthz; /-/ready when ready is not nil (503 with its error); and the
// Go profiler under /debug/pprof/ when withPprof is set (--pprof).
func newAdminServer(reg *prometheus.Registry, logger *slog.Logger, ready func() error, withPprof bool) *http.Server {
	mux := http.NewServeMux()
	if withPprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn), Registry: reg}))
	mux.HandleFunc("GET /-/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	if ready != nil {
		mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			if err := ready(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte("not ready: " + err.Error() + "\n"))
				return
			}
			_, _ = w.Write([]byte("ok\n"))
		})
	}
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
}

// gatewayGCPercent is the garbage collector's target for the processes
// that run the gateway (moe serve, moe gateway) unless GOGC is set: the
// scoring path allocates ~10 KB per request on a live heap of ~15 MB, so
// the default (100) collects a few times a second under load, and each
// cycle's stop-the-world phases, on a machine whose cores are busy with
// model workers, cost milliseconds to the requests in flight (p99.9 at
// 8000 req/s through the gateway: ~20-28 ms at 100, ~8 ms at 400; see
// bench/findings.md). The price is a larger heap under load (~5x live).
const gatewayGCPercent = 400

func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gatewayGCPercent)
	}
}
