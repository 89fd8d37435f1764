// Package console is moe's web console: static HTML, CSS and JavaScript
// modules embedded in the binary (no framework, no CDN, no build step, so
// it works offline), served under /console/ on the API listener. The pages
// call the control-plane API (/v1/...) from the same origin with the admin
// credential the user pastes at login, kept in the tab's sessionStorage.
//
// Besides the files, the handler serves one route the browser cannot do
// itself: POST /console/api/invoke sends a test request to an endpoint's
// scoring URI, which is another origin without CORS, through Config.Invoke.
package console

import (
	"context"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

//go:embed static
var static embed.FS

// Prefix is the path the console is served under.
const Prefix = "/console/"

// maxInvokeBody bounds a test request (the gateway's default body limit is
// larger; a browser form does not need more).
const maxInvokeBody = 8 << 20

// Config configures the console handler. The zero value serves the files
// and answers 501 to invoke.
type Config struct {
	// Invoke scores body on endpoint, as a client of the scoring URI
	// would, and returns the answer. deployment, when not empty, targets
	// that deployment (the azureml-model-deployment header); else the
	// endpoint's traffic rules pick one. err is for failures to get an
	// answer at all; an error status is an answer. The caller implements
	// it server side with the endpoint's credentials, which the browser
	// never sees.
	Invoke func(ctx context.Context, endpoint, deployment string, body []byte) (status int, header http.Header, respBody []byte, err error)
	// Logger logs invoke failures; nil means slog.Default().
	Logger *slog.Logger
}

// InvokeRequest is the body of POST /console/api/invoke.
type InvokeRequest struct {
	Endpoint   string `json:"endpoint"`
	Deployment string `json:"deployment,omitempty"`
	Body       string `json:"body"`
}

// InvokeResponse is its answer: the scoring answer, whole.
type InvokeResponse struct {
	Status     int         `json:"status"`
	Header     http.Header `json:"headers"`
	Body       string      `json:"body"`
	Base64     bool        `json:"body_base64,omitempty"` // Body is base64: the answer was not UTF-8
	DurationMs float64     `json:"duration_ms"`
}

// New returns the console's handler. It serves GET /console/... (the
// files; no credential needed, they hold none) and POST
// /console/api/invoke, which must be mounted behind the API's admin
// credential check: it scores with the endpoint's key.
func New(cfg Config) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	files, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embed pattern above guarantees the folder
	}
	mux := http.NewServeMux()
	fileServer := secureHeaders(http.StripPrefix(Prefix, http.FileServerFS(files)))
	mux.Handle("GET /console/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rest, ok := strings.CutPrefix(r.URL.Path, Prefix+"api/"); ok { // no files there
			if rest == "invoke" {
				w.Header().Set("Allow", http.MethodPost)
				writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "use POST "+r.URL.Path)
				return
			}
			writeError(w, http.StatusNotFound, "NotFound", "no console API route "+r.URL.Path)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/") && r.URL.Path != Prefix { // no directory listings
			http.NotFound(w, r)
			return
		}
		fileServer.ServeHTTP(w, r)
	}))
	mux.Handle("GET /console", http.RedirectHandler(Prefix, http.StatusMovedPermanently))
	mux.Handle("POST /console/api/invoke", http.HandlerFunc(cfg.invoke))
	return mux
}

// secureHeaders keeps the pages to their own scripts and origin and stops
// caching, so an upgraded moe serves its new files at once.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}

func (cfg Config) invoke(w http.ResponseWriter, r *http.Request) {
	var req InvokeRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxInvokeBody+64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "RequestTooLarge", "the test request body is larger than 8 MiB")
			return
		}
		writeError(w, http.StatusBadRequest, "BadArgument", "invalid request body: "+err.Error())
		return
	}
	if strings.TrimSpace(req.Endpoint) == "" {
		writeError(w, http.StatusBadRequest, "BadArgument", "endpoint is required")
		return
	}
	if cfg.Invoke == nil {
		writeError(w, http.StatusNotImplemented, "NotImplemented", "this server cannot send test requests")
		return
	}
	start := time.Now()
	status, header, body, err := cfg.Invoke(r.Context(), req.Endpoint, req.Deployment, []byte(req.Body))
	if err != nil {
		cfg.Logger.Warn("console invoke", "endpoint", req.Endpoint, "deployment", req.Deployment, "err", err)
		writeError(w, http.StatusBadGateway, "BadGateway", "invoke endpoint "+req.Endpoint+": "+err.Error())
		return
	}
	out := InvokeResponse{Status: status, Header: header, DurationMs: float64(time.Since(start).Microseconds()) / 1e3}
	if out.Header == nil {
		out.Header = http.Header{}
	}
	if utf8.Valid(body) {
		out.Body = string(body)
	} else {
		out.Body, out.Base64 = base64.StdEncoding.EncodeToString(body), true
	}
	writeJSON(w, http.StatusOK, out)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{code, msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}
