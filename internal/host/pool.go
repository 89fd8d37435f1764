package host

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// pool hands out request slots on workers, maxInFlight per worker. A
// request takes a worker with nothing in flight if there is one; else one
// with a single request in flight (whose current run() started earliest),
// to be written into its pipe behind that run(); else it queues in FIFO
// order for the next slot given back. Safe for concurrent use.
type pool struct {
	mu      sync.Mutex // guards the following and the workers' load
	idle    []*worker  // load 0
	half    []*worker  // load 1, in the order they got there
	waiters []chan *worker

	alive atomic.Int32 // workers that finished init() and have not died
}

// get returns a live worker with a request slot reserved for the caller,
// waiting for one if needed. It returns ctx.Err() if ctx ends first.
func (p *pool) get(ctx context.Context) (*worker, error) {
	p.mu.Lock()
	if w := p.takeLocked(); w != nil {
		p.mu.Unlock()
		return w, nil
	}
	ch := waiterPool.Get().(chan *worker)
	p.waiters = append(p.waiters, ch)
	p.mu.Unlock()

	for {
		select {
		case w := <-ch:
			if w.isDead() {
				// Died between the hand-over and now: take another slot.
				p.mu.Lock()
				if w := p.takeLocked(); w != nil {
					p.mu.Unlock()
					waiterPool.Put(ch)
					return w, nil
				}
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
				// A slot was handed to us concurrently; pass it on.
				p.release(<-ch)
			}
			waiterPool.Put(ch)
			return nil, ctx.Err()
		}
	}
}

var waiterPool = sync.Pool{New: func() any { return make(chan *worker, 1) }}

// takeLocked reserves a slot on an idle worker, else on a worker with one
// request in flight; nil if every live worker is full. p.mu is held.
func (p *pool) takeLocked() *worker {
	for len(p.idle) > 0 {
		w := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if !w.isDead() {
			w.load = 1
			p.half = append(p.half, w)
			return w
		}
	}
	for len(p.half) > 0 {
		w := p.half[0]
		p.half = append(p.half[:0], p.half[1:]...)
		if !w.isDead() {
			w.load = 2
			return w
		}
	}
	return nil
}

// add puts a worker that just became ready into the pool: its slots go to
// the oldest waiters, the rest are free.
func (p *pool) add(w *worker) {
	p.mu.Lock()
	w.load = 0
	for w.load < maxInFlight && len(p.waiters) > 0 {
		ch := p.waiters[0]
		p.waiters = p.waiters[1:]
		w.load++
		ch <- w // cap 1, one worker per waiter: never blocks
	}
	switch w.load {
	case 0:
		p.idle = append(p.idle, w)
	case 1:
		p.half = append(p.half, w)
	}
	p.mu.Unlock()
}

// release gives back one request slot on w: to the oldest waiter, else it
// becomes free. Slots on dead workers are dropped.
func (p *pool) release(w *worker) {
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
	w.load--
	switch w.load {
	case 1:
		p.half = append(p.half, w)
	case 0:
		p.half = deleteWorker(p.half, w)
		p.idle = append(p.idle, w)
	}
	p.mu.Unlock()
}

// remove drops w from the free lists (after it died).
func (p *pool) remove(w *worker) {
	p.mu.Lock()
	p.idle = deleteWorker(p.idle, w)
	p.half = deleteWorker(p.half, w)
	p.mu.Unlock()
}

func deleteWorker(ws []*worker, w *worker) []*worker {
	for i, x := range ws {
		if x == w {
			return append(ws[:i], ws[i+1:]...)
		}
	}
	return ws
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
		w.release = h.pool.release
		h.pool.alive.Add(1)
		h.pool.add(w)
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
