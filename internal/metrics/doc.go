// Package metrics turns what the gateway and the runner see into Prometheus
// metrics (all prefixed moe_) and into the request counters of `moe
// online-deployment diagnose`.
//
// Two kinds of figures are kept:
//
//   - Request figures, counted as requests finish: [Metrics.Observe] is the
//     gateway's Observer and runs on every scoring request's goroutine. It
//     resolves the endpoint and deployment to a cached set of Prometheus
//     children once, so a request costs a lock-free map lookup and a few
//     atomic adds, and no allocation.
//   - State figures, read when Prometheus scrapes: requests in flight from
//     the gateway's route table, instances and their phases, restarts, CPU
//     and memory from the runner, mirror counts. [Metrics] is itself a
//     prometheus.Collector for these, so nothing polls between scrapes.
//
// docs/metrics.md lists every metric and maps it to Azure Monitor's names.
package metrics
