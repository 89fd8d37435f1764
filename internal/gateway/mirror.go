package gateway

// Mirror traffic (facts/v2-endpoints.md §3.1): a share of the requests
// routed by weight is copied to a shadow deployment, whose answers are
// discarded. The caller always gets the live answer, and the shadow must
// never add latency or errors to it:
//
//   - only sampled requests are buffered, and only up to
//     Config.MirrorMaxBodyBytes: the live request streams its body as usual
//     and a teeBody keeps a copy of what it read;
//   - the copy is handed over when the live request is done, without
//     blocking: to a bounded queue served by Config.MirrorWorkers goroutines;
//     when the queue is full the copy is dropped and counted;
//   - a copy is an ordinary client of the shadow deployment (admission,
//     instance slots and queue, the shadow's request timeout), so shadow
//     and live deployments never share a limit.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// MirrorStats returns an endpoint's shadow copy counters since the endpoint
// appeared in the route table: sent copies got a 2xx answer from the
// shadow; dropped copies never reached it (body over
// Config.MirrorMaxBodyBytes or not read to its end, mirror queue full,
// shadow at its pending limit or without a ready instance, shutdown);
// failed copies reached it and got an error, a non-2xx answer or its
// request timeout. Every sampled request that reached its live instance is
// counted once, when its live answer is done. An unknown endpoint has all
// zeros.
func (s *Server) MirrorStats(endpoint string) (sent, dropped, failed uint64) {
	es := s.rt.Load().epByName[strings.ToLower(endpoint)]
	if es == nil {
		return 0, 0, 0
	}
	return es.mirrorSent.Load(), es.mirrorDropped.Load(), es.mirrorFailed.Load()
}

// sampleMirror is step 8: a request routed by weight to a live deployment
// is mirrored with the probability of the endpoint's mirror percentage,
// if the shadow deployment exists. Its body is captured as the live
// request reads it.
func (s *Server) sampleMirror(x *exchange) error {
	m := x.endpoint.Mirror
	if m == nil || !x.weighted || x.path != "/score" || m.Percent <= 0 || rand.IntN(100) >= m.Percent {
		return nil
	}
	shadow := x.endpoint.Deployments[strings.ToLower(m.Deployment)]
	if shadow == nil || shadow == x.deployment {
		return nil
	}
	if x.r.ContentLength > s.cfg.MirrorMaxBodyBytes {
		x.rt.eps[x.endpoint].mirrorDropped.Add(1)
		return nil
	}
	x.shadow = shadow
	// A body forward reads into memory (body.go) is copied from there.
	if x.r.ContentLength > 0 && x.r.ContentLength <= maxPreread {
		return nil
	}
	if x.r.ContentLength != 0 && x.r.Body != nil && x.r.Body != http.NoBody {
		x.tee = &teeBody{rc: x.r.Body, buf: getMirrorBuffer(), max: s.cfg.MirrorMaxBodyBytes, want: x.r.ContentLength}
		x.r.Body = x.tee
	}
	return nil
}

// teeBody keeps a copy of a request body as it is read, up to max bytes. The
// transport may read and close the body on its own goroutine, even after
// the proxy returned, so the copy is taken under a lock.
type teeBody struct {
	rc   io.ReadCloser
	max  int64
	want int64 // Content-Length, or -1

	mu   sync.Mutex
	buf  *bytes.Buffer // nil once taken or given up
	n    int64
	eof  bool
	over bool
}

func (t *teeBody) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	t.mu.Lock()
	if t.buf != nil && n > 0 {
		if t.n+int64(n) > t.max {
			t.over = true
			putMirrorBuffer(t.buf)
			t.buf = nil
		} else {
			t.buf.Write(p[:n])
		}
	}
	t.n += int64(n)
	if err == io.EOF || (t.want >= 0 && t.n == t.want) {
		t.eof = true
	}
	t.mu.Unlock()
	return n, err
}

func (t *teeBody) Close() error { return t.rc.Close() }

// take returns the whole body, or nil if it was not read to its end or
// passed max. Later reads no longer copy.
func (t *teeBody) take() *bytes.Buffer {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	t.buf = nil
	if b != nil && (!t.eof || t.over) {
		putMirrorBuffer(b)
		b = nil
	}
	return b
}

var mirrorBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func getMirrorBuffer() *bytes.Buffer { return mirrorBuffers.Get().(*bytes.Buffer) }

func putMirrorBuffer(b *bytes.Buffer) {
	b.Reset()
	mirrorBuffers.Put(b)
}

// mirrorJob is one shadow copy waiting for a worker.
type mirrorJob struct {
	es       *epState
	c        claim // rt, endpoint and deployment set
	method   string
	url      string // without host: path and query
	header   http.Header
	body     *bytes.Buffer // nil for an empty body
	received time.Time
}

// hopHeaders are not copied to a shadow request: hop-by-hop headers, and
// the caller's credentials, which instances never see.
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Te", "Trailer",
	"Transfer-Encoding", "Upgrade", hdrAuthorization,
}

// mirrorCopy hands a live request's copy to the mirror workers, once the
// live request is done (it runs in forward, still on the request's
// goroutine, so x.r may be read).
func (s *Server) mirrorCopy(x *exchange) {
	es := x.rt.eps[x.endpoint]
	var body *bytes.Buffer
	if x.pre.b != nil {
		body = getMirrorBuffer()
		body.Write(x.pre.b)
	} else if x.tee != nil {
		if body = x.tee.take(); body == nil {
			es.mirrorDropped.Add(1)
			return
		}
	}
	h := x.r.Header.Clone()
	for _, k := range hopHeaders {
		delete(h, k)
	}
	h[hdrRequestID] = x.idHeader
	u := x.path
	if q := x.r.URL.RawQuery; q != "" {
		u += "?" + q
	}
	j := &mirrorJob{
		es: es,
		c: claim{
			rt: x.rt, epKey: x.epKey, depKey: strings.ToLower(x.shadow.Name),
			endpoint: x.endpoint, deployment: x.shadow,
		},
		method: x.r.Method, url: u, header: h, body: body, received: time.Now(),
	}
	if !s.mirror.submit(j) {
		es.mirrorDropped.Add(1)
		if body != nil {
			putMirrorBuffer(body)
		}
	}
}

// mirrorPool is the bounded queue and the workers that send shadow copies.
type mirrorPool struct {
	s         *Server
	transport http.RoundTripper
	jobs      chan *mirrorJob
	workers   int

	mu      sync.Mutex
	started bool
	closed  bool
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	ready   atomic.Bool  // started and not closed: submit skips the lock
	pending atomic.Int64 // copies queued or being sent
}

func newMirrorPool(s *Server, transport http.RoundTripper) *mirrorPool {
	ctx, cancel := context.WithCancel(context.Background())
	return &mirrorPool{
		s: s, transport: transport,
		jobs:    make(chan *mirrorJob, s.cfg.MirrorQueue),
		workers: s.cfg.MirrorWorkers,
		ctx:     ctx, cancel: cancel,
	}
}

// submit queues j without blocking; false means it was not queued (queue
// full, or the pool is closed).
func (m *mirrorPool) submit(j *mirrorJob) bool {
	if !m.ready.Load() {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return false
		}
		if !m.started {
			m.started = true
			for range m.workers {
				m.wg.Go(m.run)
			}
			m.ready.Store(true)
		}
		m.mu.Unlock()
	}
	m.pending.Add(1)
	select {
	case m.jobs <- j:
		return true
	default:
		m.pending.Add(-1)
		return false
	}
}

// close stops the workers (cancelling copies on their way) and waits for
// them. Copies still queued are dropped and counted.
func (m *mirrorPool) close() {
	m.mu.Lock()
	m.closed = true
	m.ready.Store(false)
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
	for {
		select {
		case j := <-m.jobs:
			j.es.mirrorDropped.Add(1)
			m.pending.Add(-1)
		default:
			return
		}
	}
}

func (m *mirrorPool) run() {
	for {
		select {
		case <-m.ctx.Done():
			return
		case j := <-m.jobs:
			if m.ctx.Err() != nil { // select picked the job over Done
				j.es.mirrorDropped.Add(1)
			} else {
				m.send(j)
			}
			m.pending.Add(-1)
		}
	}
}

// send delivers one copy to the shadow deployment and discards the answer.
func (m *mirrorPool) send(j *mirrorJob) {
	if j.body != nil {
		defer putMirrorBuffer(j.body)
	}
	s := m.s
	start := time.Now()
	o := Observation{Endpoint: j.c.endpoint.Name, Deployment: j.c.deployment.Name, Mirrored: true}
	defer func() {
		if s.cfg.Observer != nil {
			o.Total = time.Since(start)
			s.cfg.Observer(&o)
		}
	}()
	c := &j.c
	c.rt = s.rt.Load() // the copy waited: route on the current table
	if err := s.rebindMirror(c); err != nil {
		j.es.mirrorDropped.Add(1)
		o.Status = statusOf(err)
		return
	}
	if err := c.admit(); err != nil {
		j.es.mirrorDropped.Add(1)
		o.Status, o.Limit = statusOf(err), limitOf(err)
		return
	}
	defer c.unadmit()
	ctx := m.ctx
	if d := c.deployment.RequestTimeout; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadlineCause(ctx, start.Add(d), errDeadline)
		defer cancel()
	}
	err := s.acquire(ctx, c)
	o.Queue = c.queued
	if err != nil {
		j.es.mirrorDropped.Add(1)
		o.Status = statusOf(err)
		return
	}
	defer s.release(c)
	o.Instance = c.instance.ID
	var body io.Reader = http.NoBody
	var n int64
	if j.body != nil {
		body, n = bytes.NewReader(j.body.Bytes()), int64(j.body.Len())
	}
	req, err := http.NewRequestWithContext(ctx, j.method, "http://"+c.instance.Addr+j.url, body)
	if err != nil {
		j.es.mirrorFailed.Add(1)
		o.Status = http.StatusInternalServerError
		return
	}
	req.Header = j.header
	req.ContentLength = n
	sent := time.Now()
	resp, err := m.transport.RoundTrip(req)
	if err != nil {
		j.es.mirrorFailed.Add(1)
		o.Model = time.Since(sent)
		switch {
		case errors.Is(context.Cause(ctx), errDeadline):
			o.Status = http.StatusRequestTimeout
		case ctx.Err() != nil:
			o.Status = statusClientClosed // shutdown
		default:
			o.Status = http.StatusBadGateway
		}
		return
	}
	o.Model = time.Since(sent)
	o.Status, o.ModelStatus = resp.StatusCode, resp.StatusCode
	// Read a bounded amount so the connection can be reused, then close.
	_, _ = io.CopyN(io.Discard, resp.Body, 1<<20)
	resp.Body.Close()
	if resp.StatusCode/100 == 2 {
		j.es.mirrorSent.Add(1)
	} else {
		j.es.mirrorFailed.Add(1)
	}
}

// rebindMirror points a copy at the shadow deployment in the current
// table (it may have changed while the copy was queued).
func (s *Server) rebindMirror(c *claim) error {
	ep := c.rt.table.Endpoints[c.epKey]
	if ep == nil {
		return errEndpointNotFound(c.endpoint.Name)
	}
	d := ep.Deployments[c.depKey]
	if d == nil {
		return errDeploymentNotFound(ep.Name, c.deployment.Name)
	}
	c.endpoint, c.deployment = ep, d
	return nil
}

func statusOf(err error) int {
	var se *statusError
	if errors.As(err, &se) {
		return se.status
	}
	return http.StatusInternalServerError
}

func limitOf(err error) string {
	var se *statusError
	if errors.As(err, &se) {
		return se.limit
	}
	return ""
}
