// Package host is the model host: the per-instance server that answers the
// Azure-ML-compatible scoring routes over HTTP and runs the user's scoring
// script in a pool of Python worker processes.
//
// Layout:
//
//   - host.go: [Config], [Run] and the start/stop sequence.
//   - server.go: the HTTP routes (/, /-/ready, /score, /swagger.json) and
//     the one place that writes error responses.
//   - pool.go: request slots on workers (two per worker) and FIFO
//     waiters; the per-slot supervisor that restarts dead workers with
//     backoff.
//   - worker.go: one Python process, its pipes, the requests in flight on
//     it and the request/response exchange, including late answers after a
//     cancelled request and the scoring-timeout backstop.
//   - frame.go: the wire format between host and worker, byte by byte.
//   - python/: the embedded worker (worker.py) and the azureml
//     compatibility shims (rawhttp, AMLRequest, AMLResponse).
//
// Go does HTTP, keep-alive, queueing and timeouts; Python only imports the
// script, calls init() once and run() per request. Request bodies go to the
// worker as bytes, never re-encoded; only run()'s result is JSON-encoded,
// once, by Python's own json.dumps.
//
// Each worker is pipelined: up to two requests are in flight on it, the one
// run() is executing and the next one, already written into its pipe, so
// the worker reads its next request as soon as it has written an answer
// instead of idling through the host's round trip (answer read, response
// written, next request handed over). A request takes a worker with
// nothing in flight if there is one, else a second slot on the worker
// whose current request started earliest, else it waits in FIFO order.
// The worker answers in order, so one reader goroutine per worker pairs
// each answer with the oldest request in flight and hands it to that
// request's goroutine. A request whose client is gone is abandoned where
// it stands: its late answer is discarded and its slot given back. The
// backstop counts from the moment a request reaches the head of its
// worker's queue (its run() starts); when it fires, the worker is killed
// and every request in flight on it fails with the scoring-timeout error.
// A pipelined request larger than the pipe's buffer (64 KiB) waits in its
// write until the worker starts reading it.
//
// The worker's own scoring timeout (SCORING_TIMEOUT_MS) costs no system
// call per request: worker.py arms ITIMER_REAL when a run() starts and no
// alarm is pending, and re-arms it from the signal handler for a later
// run()'s own deadline (see Worker._alarm).
package host
