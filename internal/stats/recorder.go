package stats

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// maxCodes is how many distinct exact statuses one second of one
// deployment keeps; further statuses are counted as "other" (their class
// is still counted exactly).
const maxCodes = 8

// bucket is one second of one deployment. It is about 900 bytes; a series
// holds window/1s + 1 of them (about 3.2 MB for an hour), allocated once
// when the deployment records its first request.
type bucket struct {
	sec        int64     // the Unix second held; a mismatch means stale
	class      [6]uint32 // by status/100; index 0 counts statuses outside 100..599
	codes      [maxCodes]uint16
	codeN      [maxCodes]uint32
	otherCodes uint32
	total      histogram
	overhead   histogram
	model      histogram // only requests that reached a model (model > 0)
}

func (b *bucket) reset(sec int64) {
	*b = bucket{sec: sec}
}

// series is the ring of one deployment. Its mutex is held only to update or
// read one bucket.
type series struct {
	endpoint, deployment string

	mu   sync.Mutex
	last int64 // newest second recorded
	ring []bucket
}

type key struct{ endpoint, deployment string }

// Recorder is the ring buffer of every deployment. The zero value is not
// usable; call New. It is safe for concurrent use: Record takes no lock
// shared between deployments (the series map is read through an atomic
// pointer and copied on write) and a short per-deployment mutex, and does
// not allocate after a deployment's first request.
type Recorder struct {
	window time.Duration
	slots  int64
	now    func() time.Time

	series atomic.Pointer[map[key]*series]
	mu     sync.Mutex // serializes writers of series
}

// New returns a Recorder keeping window of history (rounded up to whole
// seconds; 0 or less means one hour). now is the clock (nil means
// time.Now); tests pass a fake one.
func New(window time.Duration, now func() time.Time) *Recorder {
	if window <= 0 {
		window = time.Hour
	}
	window = (window + time.Second - 1).Truncate(time.Second)
	if now == nil {
		now = time.Now
	}
	r := &Recorder{window: window, slots: int64(window/time.Second) + 1, now: now}
	m := map[key]*series{}
	r.series.Store(&m)
	return r
}

// Window is how much history the Recorder keeps.
func (r *Recorder) Window() time.Duration { return r.window }

// Record counts one scoring request of deployment (empty if none was
// picked, e.g. a 401) of endpoint that answered status after total time,
// of which model was spent in the model host (host + run()); model is 0
// for requests that never reached a model, which are left out of the
// model percentiles. Overhead is total - model. Record is meant for the
// scoring hot path: it allocates only on a deployment's first request.
func (r *Recorder) Record(endpoint, deployment string, status int, total, model time.Duration) {
	s := r.lookup(endpoint, deployment)
	sec := r.now().Unix()
	overhead := max(total-model, 0)
	class := 0
	if status >= 100 && status < 600 {
		class = status / 100
	}

	s.mu.Lock()
	b := &s.ring[uint64(sec)%uint64(r.slots)]
	if b.sec != sec {
		b.reset(sec)
	}
	if sec > s.last {
		s.last = sec
	}
	b.class[class]++
	b.countCode(status)
	b.total.add(total)
	b.overhead.add(overhead)
	if model > 0 {
		b.model.add(model)
	}
	s.mu.Unlock()
}

func (b *bucket) countCode(status int) {
	if status < 100 || status > 599 {
		b.otherCodes++
		return
	}
	c := uint16(status)
	for i := range b.codes {
		switch b.codes[i] {
		case c:
			b.codeN[i]++
			return
		case 0:
			b.codes[i], b.codeN[i] = c, 1
			return
		}
	}
	b.otherCodes++
}

func (r *Recorder) lookup(endpoint, deployment string) *series {
	if s, ok := (*r.series.Load())[key{endpoint, deployment}]; ok {
		return s
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.series.Load()
	if s, ok := old[key{endpoint, deployment}]; ok {
		return s
	}
	s := &series{endpoint: endpoint, deployment: deployment, ring: make([]bucket, r.slots)}
	m := make(map[key]*series, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[key{endpoint, deployment}] = s
	r.series.Store(&m)
	return s
}

// prune drops the series that recorded nothing within the window, so
// deleted deployments give their memory back.
func (r *Recorder) prune(nowSec int64) {
	horizon := nowSec - r.slots
	var stale []key
	for k, s := range *r.series.Load() {
		s.mu.Lock()
		if s.last < horizon {
			stale = append(stale, k)
		}
		s.mu.Unlock()
	}
	if len(stale) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.series.Load()
	m := make(map[key]*series, len(old))
	for k, v := range old {
		m[k] = v
	}
	for _, k := range stale {
		if s := m[k]; s != nil {
			s.mu.Lock()
			if s.last < horizon { // may have recorded since
				delete(m, k)
			}
			s.mu.Unlock()
		}
	}
	r.series.Store(&m)
}

// endpointSeries returns endpoint's series sorted by deployment.
func (r *Recorder) endpointSeries(endpoint string) []*series {
	var out []*series
	for k, s := range *r.series.Load() {
		if k.endpoint == endpoint {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].deployment < out[j].deployment })
	return out
}
