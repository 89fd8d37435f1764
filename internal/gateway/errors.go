package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
)

// statusError is a failure the gateway answers itself: an HTTP status, the
// client-facing message, an optional ms-azureml-model-error-reason value and
// the internal cause (logged, never sent).
type statusError struct {
	status  int
	reason  string
	message string
	cause   error
	// limit, if set, names the limit that refused the request (429): sent
	// as x-moe-limit with Retry-After: 1, and reported in the Observation.
	limit string
}

func (e *statusError) Error() string {
	if e.cause != nil {
		return e.message + ": " + e.cause.Error()
	}
	return e.message
}

func (e *statusError) Unwrap() error { return e.cause }

// Values of the ms-azureml-model-error-reason header, as seen on Azure.
// too_many_pending_requests and rate_limited are moe's names for Azure's
// two kinds of 429 (an unofficial envoy filter spells the first one
// too_many_pending_request).
const (
	reasonModelError       = "model_error"
	reasonModelNotReady    = "model_not_ready"
	reasonTooManyPending   = "too_many_pending_requests"
	reasonRateLimited      = "rate_limited"
	limitConcurrency       = "max_concurrent_requests_per_instance"
	limitRequestsPerSecond = "max_requests_per_second"
)

// Headers of a 429. Every limit the gateway enforces refills within a
// second, so Retry-After is always 1.
const (
	hdrLimit      = "X-Moe-Limit"
	hdrRetryAfter = "Retry-After"
)

var retryAfterOne = []string{"1"}

// Static errors: allocated once, returned on hot paths.
var (
	errMissingAuth = &statusError{
		status:  http.StatusUnauthorized,
		message: `missing or malformed Authorization header; want "Bearer <key or token>"`,
	}
	errBadCredentials = &statusError{
		status:  http.StatusUnauthorized,
		message: "invalid key or token",
	}
	errNoPositiveWeight = &statusError{
		status:  http.StatusNotFound,
		message: "endpoint doesn't have any valid deployment with positive weight",
	}
	errRequestIDTooLong = &statusError{
		status:  http.StatusRequestHeaderFieldsTooLarge,
		message: "x-request-id must not exceed 100 characters",
	}
	errClientRequestIDTooLong = &statusError{
		status:  http.StatusRequestHeaderFieldsTooLarge,
		message: "x-ms-request-id and x-ms-client-request-id must not exceed 100 characters",
	}
	errOwnPath = &statusError{
		status:  http.StatusNotFound,
		message: "not found",
	}
)

// errDeadline is the cancellation cause of a request that ran past its
// deployment's request timeout; it tells a 408 from a client hang-up.
var errDeadline = errors.New("gateway: request timeout")

// statusClientClosed is logged (never sent: nobody is listening) when the
// client went away before the answer; nginx's convention.
const statusClientClosed = 499

func errBodyTooLarge(limit int64) *statusError {
	return &statusError{
		status:  http.StatusRequestEntityTooLarge,
		message: "request body exceeds " + strconv.FormatInt(limit, 10) + " bytes",
	}
}

func errNoRoute(path string) error {
	return &statusError{
		status:  http.StatusNotFound,
		message: fmt.Sprintf("no route for path %q; score at /score on the endpoint's host or at /endpoints/<endpoint>/score", path),
	}
}

func errEndpointNotFound(name string) error {
	return &statusError{
		status:  http.StatusNotFound,
		message: fmt.Sprintf("endpoint %q not found", name),
	}
}

func errDeploymentNotFound(endpoint, deployment string) error {
	return &statusError{
		status:  http.StatusNotFound,
		message: fmt.Sprintf("deployment %q not found for endpoint %q", deployment, endpoint),
	}
}

func errNoReadyInstance(deployment string) error {
	return &statusError{
		status:  http.StatusServiceUnavailable,
		reason:  reasonModelNotReady,
		message: fmt.Sprintf("deployment %q has no ready instance", deployment),
	}
}

func errTimeout(d *Deployment) error {
	return &statusError{
		status:  http.StatusRequestTimeout,
		message: fmt.Sprintf("deployment %q did not answer within request_timeout_ms (%d ms)", d.Name, d.RequestTimeout.Milliseconds()),
	}
}

func errQueueTimeout(d *Deployment) error {
	return &statusError{
		status: http.StatusRequestTimeout,
		message: fmt.Sprintf("deployment %q had no free instance within request_timeout_ms (%d ms): the request waited in the queue; raise max_concurrent_requests_per_instance or instance_count",
			d.Name, d.RequestTimeout.Milliseconds()),
	}
}

func errTooManyPending(d *Deployment, instances int64) error {
	mc := slotLimit(d)
	return &statusError{
		status: http.StatusTooManyRequests,
		reason: reasonTooManyPending,
		limit:  limitConcurrency,
		message: fmt.Sprintf("too many pending requests for deployment %q: it holds %d requests in flight or queued, "+
			"2 x max_concurrent_requests_per_instance (%d) x ready instances (%d); retry later",
			d.Name, 2*mc*instances, mc, instances),
	}
}

func errRateLimited(ep *Endpoint) error {
	return &statusError{
		status: http.StatusTooManyRequests,
		reason: reasonRateLimited,
		limit:  limitRequestsPerSecond,
		message: fmt.Sprintf("endpoint %q is over its limit of %d requests per second; retry later",
			ep.Name, ep.MaxRequestsPerSecond),
	}
}

func errUpstream(d *Deployment, in *Instance, cause error) error {
	return &statusError{
		status:  http.StatusBadGateway,
		message: fmt.Sprintf("deployment %q: instance unreachable", d.Name),
		cause:   fmt.Errorf("proxy to instance %s (%s): %w", in.ID, in.Addr, cause),
	}
}

func errClientClosed(cause error) error {
	return &statusError{status: statusClientClosed, message: "client closed request", cause: cause}
}

// errorBody is the JSON shape of every answer the gateway writes itself,
// the same as Azure's and the inference server's.
type errorBody struct {
	Message string `json:"message"`
}

// writeError is the one place that turns a failure into an HTTP answer: the
// status and optional model-error reason come from a *statusError anywhere in
// err's chain, anything else is a 500. It logs with the request id, at Warn
// for what an operator should look at (5xx, 408) and at Debug otherwise (the
// access line already records the status).
func (s *Server) writeError(x *exchange, err error) {
	var se *statusError
	if !errors.As(err, &se) {
		se = &statusError{status: http.StatusInternalServerError, message: "internal gateway error", cause: err}
	}
	level := slog.LevelDebug
	if se.status >= 500 || se.status == http.StatusRequestTimeout {
		level = slog.LevelWarn
	}
	if s.log.Enabled(x.r.Context(), level) {
		s.log.LogAttrs(x.r.Context(), level, "request failed",
			slog.String(keyRequestID, x.requestID),
			slog.String(keyEndpoint, x.endpointName()),
			slog.String(keyDeployment, x.deploymentName()),
			slog.Int(keyStatus, se.status),
			slog.String(keyErr, se.Error()))
	}
	if se.status == statusClientClosed {
		x.w.status = statusClientClosed
		return
	}
	body, _ := json.Marshal(errorBody{Message: se.message})
	h := x.w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	if se.reason != "" {
		h.Set(hdrErrorReason, se.reason)
	}
	if se.limit != "" {
		x.limit = se.limit
		h[hdrLimit] = []string{se.limit}
		h[hdrRetryAfter] = retryAfterOne
	}
	x.w.WriteHeader(se.status)
	_, _ = x.w.Write(body)
}
