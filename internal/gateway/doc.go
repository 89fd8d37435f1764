// Package gateway is moe's data plane: the HTTPS front door of every managed
// online endpoint.
//
// A [Server] terminates TLS (HTTP/1.1 and HTTP/2), finds the endpoint from the
// Host header (<endpoint>.<region>.inference.<domain>) or from the path
// (/endpoints/<endpoint>/score), authenticates the caller with the endpoint's
// keys or a token, picks a deployment (the azureml-model-deployment header,
// else a weighted random choice over the traffic table), takes a slot on the
// ready instance with the fewest requests in flight (or waits for one in the
// deployment's bounded queue, breaker.go), and sends the request to it
// through one [httputil.ReverseProxy]. A share of the requests routed by
// weight can be mirrored to a shadow deployment (mirror.go), and an endpoint
// can be limited to a number of requests per second (limiter.go). Status
// codes and headers follow Azure ML v2 managed online endpoints: 401, 404,
// 408, 413, 424 with ms-azureml-model-error-* headers, 429 (with
// x-moe-limit naming the limit and Retry-After), 431, 502, 503.
//
// The instance hop is plain HTTP/1.1 on loopback, kept cheap per request
// (CPU and system calls): a body of known length up to 64 KiB is read
// into a pooled buffer before the request is forwarded (body.go, under the
// request timeout), and the default transport, the instance client
// (client.go), writes such a request (request line, headers and body) with
// one write(2) and reads the answer on the request's own goroutine over a
// pooled keep-alive connection per instance, with no hand-off to
// http.Transport's per-connection goroutines. Larger and chunked bodies
// stream through an http.Transport.
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
