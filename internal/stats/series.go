package stats

import (
	"strconv"
	"time"
)

// Series is the recent traffic of one endpoint as the console charts it.
// Points cover whole seconds from Start to End; the current, incomplete
// second is left out, so a request shows up about a second after it ends.
type Series struct {
	Endpoint string    `json:"endpoint"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	// Step is the length of one point in seconds; the last point may be
	// shorter (see Point.Seconds).
	Step float64 `json:"step_seconds"`
	// All merges every deployment of the endpoint (Deployment is "").
	All DeploymentSeries `json:"all"`
	// Deployments are those that recorded a request within the window,
	// sorted by name. Requests no deployment was picked for (e.g. a 401)
	// appear under the deployment "".
	Deployments []DeploymentSeries `json:"deployments"`
}

// DeploymentSeries is one deployment's points, oldest first.
type DeploymentSeries struct {
	Deployment string `json:"deployment"`
	// Requests is the number of requests over all points.
	Requests uint64  `json:"requests"`
	Points   []Point `json:"points"`
}

// Point is one step of traffic. Rates are per second over Seconds. The
// percentiles are nil when the point has no request (no model percentiles
// when no request reached a model), so charts draw a gap.
type Point struct {
	Time     time.Time `json:"time"`
	Seconds  int       `json:"seconds"`
	Requests uint64    `json:"requests"`
	RPS      float64   `json:"rps"`
	// OK, ClientErrors and ServerErrors are 2xx, 4xx and 5xx answers per
	// second.
	OK           float64 `json:"ok_per_s"`
	ClientErrors float64 `json:"errors_4xx_per_s"`
	ServerErrors float64 `json:"errors_5xx_per_s"`
	// Status counts requests by exact status; "other" counts those whose
	// status could not be kept (more than 8 distinct statuses in a second).
	Status   map[string]uint64 `json:"status,omitempty"`
	Total    *Percentiles      `json:"total_ms,omitempty"`
	Overhead *Percentiles      `json:"overhead_ms,omitempty"`
	Model    *Percentiles      `json:"model_ms,omitempty"`
}

// Percentiles are latency percentiles in milliseconds, accurate to within
// one histogram bucket (26 % wide).
type Percentiles struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
}

// acc accumulates buckets into one point.
type acc struct {
	class                  [6]uint64
	codes                  map[uint16]uint64
	other                  uint64
	total, overhead, model [numBuckets]uint64
}

func (a *acc) add(b *bucket) {
	for i, c := range b.class {
		a.class[i] += uint64(c)
	}
	for i, c := range b.codes {
		if c == 0 {
			break
		}
		if a.codes == nil {
			a.codes = map[uint16]uint64{}
		}
		a.codes[c] += uint64(b.codeN[i])
	}
	a.other += uint64(b.otherCodes)
	for i := range numBuckets {
		a.total[i] += uint64(b.total[i])
		a.overhead[i] += uint64(b.overhead[i])
		a.model[i] += uint64(b.model[i])
	}
}

func (a *acc) merge(o *acc) {
	for i, c := range o.class {
		a.class[i] += c
	}
	for c, n := range o.codes {
		if a.codes == nil {
			a.codes = map[uint16]uint64{}
		}
		a.codes[c] += n
	}
	a.other += o.other
	for i := range numBuckets {
		a.total[i] += o.total[i]
		a.overhead[i] += o.overhead[i]
		a.model[i] += o.model[i]
	}
}

func (a *acc) point(t time.Time, seconds int) Point {
	var n uint64
	for _, c := range a.class {
		n += c
	}
	d := float64(seconds)
	p := Point{Time: t.UTC(), Seconds: seconds, Requests: n, RPS: float64(n) / d,
		OK: float64(a.class[2]) / d, ClientErrors: float64(a.class[4]) / d, ServerErrors: float64(a.class[5]) / d}
	if len(a.codes) > 0 || a.other > 0 {
		p.Status = make(map[string]uint64, len(a.codes)+1)
		for c, k := range a.codes {
			p.Status[strconv.Itoa(int(c))] = k
		}
		if a.other > 0 {
			p.Status["other"] = a.other
		}
	}
	p.Total = percentiles(&a.total)
	p.Overhead = percentiles(&a.overhead)
	p.Model = percentiles(&a.model)
	return p
}

func percentiles(h *[numBuckets]uint64) *Percentiles {
	var n uint64
	for _, c := range h {
		n += c
	}
	if n == 0 {
		return nil
	}
	return &Percentiles{P50: quantile(h[:], 0.50, n), P90: quantile(h[:], 0.90, n), P99: quantile(h[:], 0.99, n)}
}

// maxPoints bounds the size of one answer.
const maxPoints = 3600

// Series returns endpoint's traffic over the last since (0 or more than
// the window means the whole window) in points of step (rounded to whole
// seconds, at least one; widened if since/step would exceed 3600 points).
// Points are aligned to multiples of step in Unix time, so successive calls
// return the same buckets.
func (r *Recorder) Series(endpoint string, since, step time.Duration) Series {
	nowSec := r.now().Unix()
	r.prune(nowSec)
	if since <= 0 || since > r.window {
		since = r.window
	}
	stepSec := max(int64(step/time.Second), 1)
	sinceSec := int64(since / time.Second)
	if sinceSec/stepSec > maxPoints {
		stepSec = (sinceSec + maxPoints - 1) / maxPoints
	}
	end := nowSec // exclusive
	lastStart := (end - 1) - floorMod(end-1, stepSec)
	n := max((sinceSec+stepSec-1)/stepSec, 1)
	first := lastStart - (n-1)*stepSec
	oldest := end - (r.slots - 1) // oldest second the ring still holds

	out := Series{Endpoint: endpoint, Start: time.Unix(first, 0).UTC(), End: time.Unix(end, 0).UTC(),
		Step: float64(stepSec), All: DeploymentSeries{Points: make([]Point, 0, n)}, Deployments: []DeploymentSeries{}}
	list := r.endpointSeries(endpoint)
	for _, s := range list {
		out.Deployments = append(out.Deployments, DeploymentSeries{Deployment: s.deployment, Points: make([]Point, 0, n)})
	}
	for i := range n {
		start := first + i*stepSec
		stop := min(start+stepSec, end)
		var all acc
		for j, s := range list {
			var a acc
			for sec := max(start, oldest); sec < stop; sec++ {
				s.mu.Lock() // per bucket, so Record never waits long
				if b := &s.ring[uint64(sec)%uint64(r.slots)]; b.sec == sec {
					a.add(b)
				}
				s.mu.Unlock()
			}
			p := a.point(time.Unix(start, 0), int(stop-start))
			ds := &out.Deployments[j]
			ds.Requests += p.Requests
			ds.Points = append(ds.Points, p)
			all.merge(&a)
		}
		p := all.point(time.Unix(start, 0), int(stop-start))
		out.All.Requests += p.Requests
		out.All.Points = append(out.All.Points, p)
	}
	return out
}

func floorMod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}
