package gateway

// Concurrency limit and queue, with Azure's semantics
// (facts/v2-endpoints.md §2.4 and §3.1):
//
//   - an instance runs at most max_concurrent_requests_per_instance requests
//     at a time;
//   - requests beyond that wait, first come first served, in a queue per
//     deployment for a free slot on any of its ready instances (the least
//     loaded one);
//   - a deployment holds at most 2 × max_concurrent × ready instances
//     requests, in flight and queued together; the next one gets 429 at once
//     (ms-azureml-model-error-reason: too_many_pending_requests,
//     x-moe-limit: max_concurrent_requests_per_instance, Retry-After: 1);
//   - waiting counts against request_timeout_ms (408), and a client that
//     goes away leaves the queue.
//
// The shape follows Knative's pkg/queue/breaker.go: an atomic in-flight
// counter per instance used as a semaphore (Instance.Outstanding, taken with
// a compare-and-swap that never passes the limit), and an atomic count of
// admitted requests per deployment (depState.held). A request that finds a
// free slot touches only atomics: no lock is taken on that path. Only a
// request that has to wait takes its deployment's queue lock, and a release
// takes it only when someone is waiting.
//
// The queue is a list ordered by arrival. Only its head tries to take a
// slot; when the head leaves (served, timed out or gone) it wakes the next
// one. A release wakes the head. Missed wake-ups are ruled out the Dekker
// way: a releaser first frees the slot and then looks for waiters, and a
// waiter first joins the queue and then (if it is the head) looks for a free
// slot, so at least one of the two sees the other.
//
// Slots follow *Instance identity, which BuildRoutes keeps across route
// tables, and queues follow (endpoint, deployment) names: SetRoutes hands the
// same depState to every table naming the deployment, and keeps it while
// requests still hold it. On every SetRoutes all waiters wake and re-pick
// from the new table, so a swap never strands a queued request on instances
// that are gone, and never leaks a slot (every slot is given back to the
// instance it was taken from).

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// depKey names a deployment across route tables (both parts lower case).
type depKey struct{ endpoint, deployment string }

// depState is a deployment's admission state: the count of requests it holds
// and its queue. It outlives route tables (see SetRoutes).
type depState struct {
	key depKey
	// held counts admitted requests: in flight and queued.
	held atomic.Int64
	// waiting is the queue's length, readable without the lock.
	waiting atomic.Int64
	// dropped is set when SetRoutes forgot this state (the deployment left
	// the table with no request holding it). A request admitted just then
	// wakes the name's current state too when it releases (see release).
	dropped atomic.Bool

	mu         sync.Mutex
	head, tail *waiter
}

// waiter is one queued request. Its links are guarded by the queue's mutex;
// in is read and written only by the waiting goroutine, under that mutex.
type waiter struct {
	seq        uint64        // arrival order, kept across queues
	wake       chan struct{} // capacity 1: "look again"
	in         *depState     // the queue w is in; nil when in none
	prev, next *waiter
}

func signal(w *waiter) {
	select {
	case w.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// enqueue puts w in st's queue in arrival order (a no-op if it is there
// already) and reports whether w is at the head.
func (st *depState) enqueue(w *waiter) (head bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if w.in != st {
		p := st.tail
		for p != nil && p.seq > w.seq {
			p = p.prev
		}
		w.prev = p
		if p == nil {
			w.next = st.head
			st.head = w
		} else {
			w.next = p.next
			p.next = w
		}
		if w.next == nil {
			st.tail = w
		} else {
			w.next.prev = w
		}
		w.in = st
		st.waiting.Add(1)
	}
	return st.head == w
}

// leave takes w out of st's queue (a no-op if it is not there). When w was
// the head, the next waiter is woken to try in its place: a slot freed for
// w may be unclaimed.
func (st *depState) leave(w *waiter) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if w.in != st {
		return
	}
	wasHead := st.head == w
	if w.prev == nil {
		st.head = w.next
	} else {
		w.prev.next = w.next
	}
	if w.next == nil {
		st.tail = w.prev
	} else {
		w.next.prev = w.prev
	}
	w.prev, w.next, w.in = nil, nil, nil
	st.waiting.Add(-1)
	if wasHead && st.head != nil {
		signal(st.head)
	}
}

// wakeHead wakes the queue's head, which then tries for a slot.
func (st *depState) wakeHead() {
	st.mu.Lock()
	if st.head != nil {
		signal(st.head)
	}
	st.mu.Unlock()
}

// wakeAll wakes every waiter, to re-pick after a route table change.
func (st *depState) wakeAll() {
	st.mu.Lock()
	for w := st.head; w != nil; w = w.next {
		signal(w)
	}
	st.mu.Unlock()
}

// tryAcquire takes one of the instance's limit slots, or reports false if
// all are taken. The compare-and-swap never lets Outstanding pass limit; it
// only retries when another request took or gave back a slot in between.
// (Outstanding can exceed a limit lowered by SetRoutes until the requests
// above it finish.)
func (in *Instance) tryAcquire(limit int64) bool {
	for {
		n := in.Outstanding.Load()
		if n >= limit {
			return false
		}
		if in.Outstanding.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// slotLimit is the deployment's max_concurrent_requests_per_instance; an
// unset (0) value means Azure's default, 1.
func slotLimit(d *Deployment) int64 {
	return max(1, int64(d.MaxConcurrentPerInstance))
}

// takeSlot takes a slot on the least loaded instance that has one: the
// power-of-two pick first, then, if that one is full, the least loaded of
// all. It returns nil when every instance is full.
func takeSlot(ins []*Instance, limit int64) *Instance {
	in := leastOutstanding(ins)
	if in == nil {
		return nil
	}
	if in.tryAcquire(limit) {
		return in
	}
	for {
		var best *Instance
		bestN := limit
		for _, c := range ins {
			if n := c.Outstanding.Load(); n < bestN {
				best, bestN = c, n
			}
		}
		if best == nil {
			return nil
		}
		if best.tryAcquire(limit) {
			return best
		}
		// Another request took that slot first; look again.
	}
}

// claim is a request's hold on a deployment, for scoring requests and mirror
// copies alike: admitted (counted in st.held) and, after acquire, one slot
// on instance.
type claim struct {
	rt         *routing // the snapshot endpoint and deployment come from
	epKey      string   // the endpoint's key in rt.table
	depKey     string   // the deployment's key in endpoint.Deployments
	weighted   bool     // chosen by traffic weight (not by header)
	endpoint   *Endpoint
	deployment *Deployment
	instance   *Instance
	st         *depState
	queued     time.Duration // time spent in the queue
}

// admit counts the request against its deployment's pending limit: 503 when
// the deployment has no ready instance, 429 when it already holds
// 2 × max_concurrent × ready instances requests.
func (c *claim) admit() error {
	d := c.deployment
	n := int64(len(d.Instances))
	if n == 0 {
		return errNoReadyInstance(d.Name)
	}
	st := c.rt.deps[d]
	limit := 2 * slotLimit(d) * n
	if st.held.Add(1) > limit {
		st.held.Add(-1)
		return errTooManyPending(d, n)
	}
	c.st = st
	return nil
}

// unadmit undoes admit, on whichever deployment the request ended on.
func (c *claim) unadmit() {
	if c.st != nil {
		c.st.held.Add(-1)
		c.st = nil
	}
}

// acquire takes an instance slot for an admitted request, waiting in the
// deployment's queue while none is free, until ctx ends (408 if its cause
// is errDeadline, else the client left). Newcomers do not overtake waiters.
func (s *Server) acquire(ctx context.Context, c *claim) error {
	if c.st.waiting.Load() == 0 {
		if in := takeSlot(c.deployment.Instances, slotLimit(c.deployment)); in != nil {
			c.instance = in
			return nil
		}
	}
	return s.wait(ctx, c)
}

// wait is acquire's slow path.
func (s *Server) wait(ctx context.Context, c *claim) error {
	start := time.Now()
	err := s.waitLoop(ctx, c)
	c.queued = time.Since(start)
	return err
}

func (s *Server) waitLoop(ctx context.Context, c *claim) error {
	w := &waiter{seq: s.arrivals.Add(1), wake: make(chan struct{}, 1)}
	for {
		if err := s.rebind(c, w); err != nil {
			if w.in != nil {
				w.in.leave(w)
			}
			return err
		}
		st := c.st
		if st.enqueue(w) {
			if in := takeSlot(c.deployment.Instances, slotLimit(c.deployment)); in != nil {
				st.leave(w)
				c.instance = in
				return nil
			}
		}
		if s.rt.Load() != c.rt {
			continue // the table changed before w was queued: re-pick now
		}
		select {
		case <-w.wake:
		case <-ctx.Done():
			st.leave(w)
			if errors.Is(context.Cause(ctx), errDeadline) {
				return errQueueTimeout(c.deployment)
			}
			return errClientClosed(ctx.Err())
		}
	}
}

// rebind moves a waiting request onto the current route table: the same
// endpoint and deployment by name, or, for a request routed by weight whose
// deployment is gone, a new weighted pick (admitted afresh: 429 is
// possible). A request whose endpoint or named deployment is gone gets 404.
func (s *Server) rebind(c *claim, w *waiter) error {
	rt := s.rt.Load()
	if rt == c.rt {
		return nil
	}
	c.rt = rt
	ep := rt.table.Endpoints[c.epKey]
	if ep == nil {
		return errEndpointNotFound(c.endpoint.Name)
	}
	d := ep.Deployments[c.depKey]
	if d == nil && c.weighted {
		if name, ok := pickWeighted(ep.Traffic); ok {
			c.depKey = strings.ToLower(name)
			d = ep.Deployments[c.depKey]
		}
	}
	if d == nil {
		return errDeploymentNotFound(ep.Name, c.deployment.Name)
	}
	c.endpoint, c.deployment = ep, d
	if st := rt.deps[d]; st != c.st {
		// A different deployment: queue and count there instead.
		if w.in != nil {
			w.in.leave(w)
		}
		c.unadmit()
		return c.admit()
	}
	return nil
}

// release gives the request's slot back and wakes the deployment's first
// waiter, if any.
func (s *Server) release(c *claim) {
	c.instance.Outstanding.Add(-1)
	st := c.st
	if st.waiting.Load() > 0 {
		st.wakeHead()
	}
	if st.dropped.Load() {
		// The deployment left a table and came back with a new state while
		// this request ran; its waiters are there.
		if cur := s.rt.Load().byName[st.key]; cur != nil && cur != st && cur.waiting.Load() > 0 {
			cur.wakeHead()
		}
	}
}

// Queued returns how many requests of a deployment wait for an instance
// slot now (names as in the route table, any case).
func (s *Server) Queued(endpoint, deployment string) int64 {
	rt := s.rt.Load()
	if rt == nil {
		return 0
	}
	if st := rt.byName[depKey{strings.ToLower(endpoint), strings.ToLower(deployment)}]; st != nil {
		return st.waiting.Load()
	}
	return 0
}
