// Package host is the model host: the per-instance server that answers the
// Azure-ML-compatible scoring routes over HTTP and runs the user's scoring
// script in a pool of Python worker processes.
//
// Layout:
//
//   - host.go: [Config], [Run] and the start/stop sequence.
//   - server.go: the HTTP routes (/, /-/ready, /score, /swagger.json) and
//     the one place that writes error responses.
//   - pool.go: idle workers and FIFO waiters; the per-slot supervisor that
//     restarts dead workers with backoff.
//   - worker.go: one Python process, its pipes and the request/response
//     exchange, including late answers after a cancelled request.
//   - frame.go: the wire format between host and worker, byte by byte.
//   - python/: the embedded worker (worker.py) and the azureml
//     compatibility shims (rawhttp, AMLRequest, AMLResponse).
//
// Go does HTTP, keep-alive, queueing and timeouts; Python only imports the
// script, calls init() once and run() per request. Request bodies go to the
// worker as bytes, never re-encoded; only run()'s result is JSON-encoded,
// once, by Python's own json.dumps.
package host
