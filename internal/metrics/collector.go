package metrics

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/moe-serving/moe/internal/gateway"
	"github.com/moe-serving/moe/internal/reconcile"
)

// collector is Metrics' prometheus.Collector: the request vectors, and the
// figures read at scrape time from Config's funcs. It is Metrics under
// another method set, so that Metrics itself does not look like a Collector
// to callers.
type collector Metrics

func (c *collector) vectors() []prometheus.Collector {
	return []prometheus.Collector{c.requests, c.duration, c.queue, c.rejected, c.mirrored}
}

var (
	edLabels       = []string{labelEndpoint, labelDeployment}
	instanceLabels = []string{labelEndpoint, labelDeployment, labelInstance}

	descInFlight = prometheus.NewDesc("moe_requests_in_flight",
		"Scoring requests running on the deployment's instances (holding one of their max_concurrent_requests_per_instance slots).", edLabels, nil)
	descQueued = prometheus.NewDesc("moe_requests_queued",
		"Scoring requests waiting in the gateway for a free instance slot.", edLabels, nil)
	descInstances = prometheus.NewDesc("moe_instances",
		"Instances of the deployment: state=\"ready\" serve traffic, state=\"total\" counts every instance (starting, failed and stopping too).", append(edLabels, labelState), nil)
	descInstancePhase = prometheus.NewDesc("moe_instance_phase",
		"1 for each instance, labelled with its phase (Starting, Ready, Failed, Stopping).", append(instanceLabels, labelPhase), nil)
	descRestarts = prometheus.NewDesc("moe_instance_restarts_total",
		"Times the instance's model host was restarted after it exited or failed its liveness probe.", instanceLabels, nil)
	descCPU = prometheus.NewDesc("moe_instance_cpu_seconds_total",
		"User + system CPU time of the instance's host process and Python workers.", instanceLabels, nil)
	descMemory = prometheus.NewDesc("moe_instance_resident_memory_bytes",
		"Resident memory of the instance's host process and Python workers (VmRSS, summed).", instanceLabels, nil)
	descProcesses = prometheus.NewDesc("moe_instance_processes",
		"Live processes of the instance (host + workers).", instanceLabels, nil)
	descCPULimit = prometheus.NewDesc("moe_instance_cpu_limit_cores",
		"vCPUs of the instance's instance_type (enforced with cgroups where available).", instanceLabels, nil)
	descMemoryLimit = prometheus.NewDesc("moe_instance_memory_limit_bytes",
		"Memory of the instance's instance_type (enforced with cgroups where available).", instanceLabels, nil)
	descMirrorSent = prometheus.NewDesc("moe_mirror_sent_total",
		"Shadow copies of the endpoint's requests that the mirror deployment answered with 2xx.", []string{labelEndpoint}, nil)
	descMirrorDropped = prometheus.NewDesc("moe_mirror_dropped_total",
		"Shadow copies that never reached the mirror deployment (body too large, mirror queue full, shadow at its pending limit or without a ready instance).", []string{labelEndpoint}, nil)
	descMirrorFailed = prometheus.NewDesc("moe_mirror_failed_total",
		"Shadow copies that reached the mirror deployment and got an error, a non-2xx answer or its request timeout.", []string{labelEndpoint}, nil)
)

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, v := range c.vectors() {
		v.Describe(ch)
	}
	for _, d := range []*prometheus.Desc{descInFlight, descQueued, descInstances, descInstancePhase, descRestarts,
		descCPU, descMemory, descProcesses, descCPULimit, descMemoryLimit, descMirrorSent, descMirrorDropped, descMirrorFailed} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := (*Metrics)(c)
	var t *gateway.Table
	if m.cfg.Routes != nil {
		t = m.cfg.Routes()
	}
	if t != nil {
		m.forget(t)
	}
	for _, v := range c.vectors() {
		v.Collect(ch)
	}
	if t != nil {
		for _, e := range t.Endpoints {
			for _, d := range e.Deployments {
				var inFlight int64
				for _, in := range d.Instances {
					inFlight += in.Outstanding.Load()
				}
				ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(inFlight), e.Name, d.Name)
				if m.cfg.Queued != nil {
					ch <- prometheus.MustNewConstMetric(descQueued, prometheus.GaugeValue, float64(m.cfg.Queued(e.Name, d.Name)), e.Name, d.Name)
				}
			}
		}
	}
	if m.cfg.Instances != nil {
		collectInstances(ch, t, m.cfg.Instances())
	}
	if m.cfg.Usage != nil {
		for _, u := range m.cfg.Usage() {
			l := []string{u.Endpoint, u.Deployment, u.Instance}
			if u.Processes > 0 { // no process, no figures (rather than a fake 0)
				ch <- prometheus.MustNewConstMetric(descCPU, prometheus.CounterValue, u.CPUSeconds, l...)
				ch <- prometheus.MustNewConstMetric(descMemory, prometheus.GaugeValue, float64(u.ResidentBytes), l...)
			}
			ch <- prometheus.MustNewConstMetric(descProcesses, prometheus.GaugeValue, float64(u.Processes), l...)
			if u.CPULimitCores > 0 {
				ch <- prometheus.MustNewConstMetric(descCPULimit, prometheus.GaugeValue, u.CPULimitCores, l...)
			}
			if u.MemoryLimitBytes > 0 {
				ch <- prometheus.MustNewConstMetric(descMemoryLimit, prometheus.GaugeValue, float64(u.MemoryLimitBytes), l...)
			}
		}
	}
	if m.cfg.Mirror != nil && t != nil {
		for _, e := range t.Endpoints {
			sent, dropped, failed := m.cfg.Mirror(e.Name)
			if e.Mirror == nil && sent+dropped+failed == 0 {
				continue // never mirrored
			}
			ch <- prometheus.MustNewConstMetric(descMirrorSent, prometheus.CounterValue, float64(sent), e.Name)
			ch <- prometheus.MustNewConstMetric(descMirrorDropped, prometheus.CounterValue, float64(dropped), e.Name)
			ch <- prometheus.MustNewConstMetric(descMirrorFailed, prometheus.CounterValue, float64(failed), e.Name)
		}
	}
}

// collectInstances emits instance counts per deployment (zero rows for
// routed deployments without instances) and per-instance phase and restarts.
func collectInstances(ch chan<- prometheus.Metric, t *gateway.Table, instances []reconcile.Instance) {
	type count struct {
		endpoint, deployment string
		ready, total         int
	}
	counts := map[seriesKey]*count{}
	var order []seriesKey
	add := func(ep, dep string) *count {
		k := seriesKey{strings.ToLower(ep), strings.ToLower(dep)}
		c := counts[k]
		if c == nil {
			c = &count{endpoint: ep, deployment: dep}
			counts[k] = c
			order = append(order, k)
		}
		return c
	}
	for _, in := range instances {
		c := add(in.Endpoint, in.Deployment)
		c.total++
		if in.Phase == reconcile.PhaseReady {
			c.ready++
		}
		l := []string{in.Endpoint, in.Deployment, in.ID}
		ch <- prometheus.MustNewConstMetric(descInstancePhase, prometheus.GaugeValue, 1, append(l, string(in.Phase))...)
		ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(in.Restarts), l...)
	}
	if t != nil {
		for _, e := range t.Endpoints {
			for _, d := range e.Deployments {
				add(e.Name, d.Name)
			}
		}
	}
	for _, k := range order {
		c := counts[k]
		ch <- prometheus.MustNewConstMetric(descInstances, prometheus.GaugeValue, float64(c.ready), c.endpoint, c.deployment, "ready")
		ch <- prometheus.MustNewConstMetric(descInstances, prometheus.GaugeValue, float64(c.total), c.endpoint, c.deployment, "total")
	}
}

// routed reports whether t still routes k's endpoint and deployment
// (deployment "" stands for requests refused before one was picked; endpoint
// "" for requests to unknown endpoints, which is always kept).
func routed(t *gateway.Table, k seriesKey) bool {
	if k.endpoint == "" {
		return true
	}
	e := t.Endpoints[strings.ToLower(k.endpoint)]
	if e == nil {
		return false
	}
	return k.deployment == "" || e.Deployments[strings.ToLower(k.deployment)] != nil
}
