package host

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// pool hands idle workers to requests. Requests that find no idle worker
// queue in FIFO order and get the next worker that is put back. Safe for
// concurrent use.
type pool struct {
	mu      sync.Mutex // guards the following
	idle    []*worker
	waiters []chan *worker

	alive atomic.Int32 // workers that finished init() and have not died
}

// get returns an idle, live worker, waiting for one if needed. It returns
// ctx.Err() if ctx ends first.
func (p *pool) get(ctx context.Context) (*worker, error) {
	p.mu.Lock()
	for len(p.idle) > 0 {
		w := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if !w.isDead() {
			p.mu.Unlock()
			return w, nil
		}
	}
	ch := waiterPool.Get().(chan *worker)
	p.waiters = append(p.waiters, ch)
	p.mu.Unlock()

	for {
		select {
		case w := <-ch:
			if w.isDead() {
				// Died between put and now: wait for another one.
				p.mu.Lock()
				p.waiters = append([]chan *worker{ch}, p.waiters...)
				p.mu.Unlock()
				continue
			}
			waiterPool.Put(ch)
			return w, nil
		case <-ctx.Done():
			p.mu.Lock()
			removed := false
			for i, c := range p.waiters {
				if c == ch {
					p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
					removed = true
					break
				}
			}
			p.mu.Unlock()
			if !removed {
				// A worker was handed to us concurrently; pass it on.
				p.put(<-ch)
			}
			waiterPool.Put(ch)
			return nil, ctx.Err()
		}
	}
}

var waiterPool = sync.Pool{New: func() any { return make(chan *worker, 1) }}

// put makes w available again: to the oldest waiter, else to the idle list.
// Dead workers are dropped.
func (p *pool) put(w *worker) {
	if w.isDead() {
		return
	}
	p.mu.Lock()
	if len(p.waiters) > 0 {
		ch := p.waiters[0]
		p.waiters = p.waiters[1:]
		p.mu.Unlock()
		ch <- w
		return
	}
	p.idle = append(p.idle, w)
	p.mu.Unlock()
}

// remove drops w from the idle list (after it died).
func (p *pool) remove(w *worker) {
	p.mu.Lock()
	for i, x := range p.idle {
		if x == w {
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			break
		}
	}
	p.mu.Unlock()
}

// Restart backoff for workers that die after init.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 30 * time.Second
	// A worker that lived this long resets the backoff.
	healthyRun = time.Minute
)

// supervise owns slot's worker from its first successful start until ctx
// ends: it puts the worker in the pool, restarts it with backoff when it
// dies, and stops it when ctx ends.
func (h *hostRun) supervise(ctx context.Context, w *worker) {
	slot := w.slot
	backoff := minBackoff
	for {
		w.release = h.pool.put
		h.pool.alive.Add(1)
		h.pool.put(w)
		select {
		case <-ctx.Done():
			h.pool.alive.Add(-1)
			h.pool.remove(w)
			w.stop(h.stopGrace)
			return
		case <-w.dead:
		}
		h.pool.alive.Add(-1)
		h.pool.remove(w)
		err := w.wait()
		w.out.Close()
		w.in.Close()
		lived := time.Since(w.started)
		h.log.Error("worker exited; restarting", "worker", slot, "pid", w.pid, "err", exitText(err, nil), "lived", lived.Round(time.Millisecond))
		if lived >= healthyRun {
			backoff = minBackoff
		}
		for {
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			backoff = min(backoff*2, maxBackoff)
			nw, err := startWorker(ctx, h.spec, slot)
			if err == nil {
				w = nw
				h.log.Info("worker restarted", "worker", slot, "pid", w.pid)
				break
			}
			if ctx.Err() != nil {
				return
			}
			h.log.Error("worker restart failed", "worker", slot, "err", err, "retry_in", backoff)
		}
	}
}
