// Package gateway is moe's data plane: the HTTPS front door of every managed
// online endpoint.
//
// A [Server] terminates TLS (HTTP/1.1 and HTTP/2), finds the endpoint from the
// Host header (<endpoint>.<region>.inference.<domain>) or from the path
// (/endpoints/<endpoint>/score), authenticates the caller with the endpoint's
// keys or a token, picks a deployment (the azureml-model-deployment header,
// else a weighted random choice over the traffic table), takes a slot on the
// ready instance with the fewest requests in flight (or waits for one in the
// deployment's bounded queue, breaker.go), and streams the request to it
// through one [httputil.ReverseProxy]. A share of the requests routed by
// weight can be mirrored to a shadow deployment (mirror.go), and an endpoint
// can be limited to a number of requests per second (limiter.go). Status
// codes and headers follow Azure ML v2 managed online endpoints: 401, 404,
// 408, 413, 424 with ms-azureml-model-error-* headers, 429 (with
// x-moe-limit naming the limit and Retry-After), 431, 502, 503.
//
// The routing data is an immutable [Table] that the control plane swaps in
// with [Server.SetRoutes]; a request that finds a free instance slot takes
// no lock (only queued requests do, per deployment).
//
// The request path is built in one place, (*Server).steps in handler.go,
// which lists the order; every failure is an error value that one function,
// writeError in errors.go, turns into a status and a JSON {"message": ...}
// body.
package gateway
