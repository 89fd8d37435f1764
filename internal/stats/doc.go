// Package stats keeps the last hour of scoring traffic in memory, per
// endpoint and deployment, for the web console's charts: a ring buffer of
// one bucket per second holding request counts by status class and exact
// status, and log-bucket latency histograms of total, overhead (gateway +
// queue) and model (host + run()) time. It is not the metrics system
// (Prometheus is); it answers "what happened in the last hour" without one.
//
// The gateway calls Recorder.Record once per scoring request; the console
// reads Recorder.Series through Recorder.Handler (GET /v1/stats). Memory is
// bounded: about 3.2 MB per deployment that served a request within the
// window, freed an hour after its last request.
package stats
