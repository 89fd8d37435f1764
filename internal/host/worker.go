package host

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	// errWorkerDied is returned by call when the worker exited (or its pipe
	// broke) before answering.
	errWorkerDied = errors.New("host: worker exited during the request")
	// errBackstop is returned by call when a run() on the worker overran the
	// scoring timeout and Python's own alarm did not stop it; the worker is
	// killed and every request in flight on it gets this error.
	errBackstop = errors.New("host: scoring timeout")
)

// maxInFlight is how many requests the pool puts on one worker at a time:
// the one run() is executing and the next one, already written into the
// worker's pipe, so the worker reads it as soon as it has written its
// answer instead of waiting for the host's round trip.
const maxInFlight = 2

// initError is a worker that did not get to "ready": the script was not
// found, did not import, init() raised, or the interpreter did not start.
// Summary is the one-paragraph text for the error file.
type initError struct {
	Summary string
}

func (e *initError) Error() string { return e.Summary }

// bufPool holds frame buffers for requests and responses. Buffers above
// maxPooledBuf are dropped instead of pooled so one huge request does not
// pin memory.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

const maxPooledBuf = 4 << 20

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(bp *[]byte) {
	if cap(*bp) > maxPooledBuf {
		return
	}
	*bp = (*bp)[:0]
	bufPool.Put(bp)
}

// result is a response frame handed from a worker's reader to its caller,
// or the error that ended the request (err != nil: no frame). The caller
// owns buf (the frame aliases it) and returns it with putBuf.
type result struct {
	f   frame
	buf *[]byte
	err error
}

// call is one request in flight on a worker. Its caller owns it until it
// abandons it (ctx ended before an answer); from then on the worker does,
// and drops it when the late answer arrives.
type call struct {
	id  uint64
	res chan result // cap 1; receives exactly one result per use

	// Guarded by the worker's mu.
	abandoned bool // the caller gave up; the reader releases the slot on the late answer
	delivered bool // a result is (about to be) in res
}

var callPool = sync.Pool{New: func() any { return &call{res: make(chan result, 1)} }}

// worker is one Python process. It runs one request at a time, in the
// order the request frames arrive; the pool puts at most maxInFlight
// requests on it at once, and answers come back in the same order.
type worker struct {
	slot     int
	pid      int
	cmd      *exec.Cmd
	out      *os.File // host -> worker (fd 3 in the worker)
	in       *os.File // worker -> host (fd 4 in the worker)
	flags    uint32   // aux of the ready frame
	log      *slog.Logger
	backstop time.Duration // scoring timeout plus grace; 0: no backstop

	// release gives a request slot on the worker back to the pool; set by
	// the pool's owner.
	release func(*worker)

	dead chan struct{} // closed when the reader stops (process gone)
	gone atomic.Bool   // the worker failed: it takes no more requests

	writeMu sync.Mutex // serialises request writes: queue order is pipe order

	mu       sync.Mutex // guards the following and the calls' flags
	queue    []*call    // requests in flight, oldest (the one in run()) first
	failed   error      // why the worker was given up; nil while it serves
	deadline time.Time  // backstop deadline of queue[0]
	timer    *time.Timer

	load int // request slots handed out by the pool; guarded by pool.mu

	waitOnce sync.Once
	waitErr  error
	started  time.Time
}

// workerSpec is what startWorker needs; built once by Run.
type workerSpec struct {
	python string
	script string // path of worker.py
	dir    string // cwd (the code dir)
	env    []string
	stderr io.Writer
	log    *slog.Logger
	// backstop is how long a run() may take before the host kills the
	// worker: the scoring timeout plus backstopGrace.
	backstop time.Duration
	n        int // number of workers
}

// startWorker starts one worker and waits until it reports ready (init()
// returned) or failed. It returns *initError for anything the user can fix.
// If ctx ends first, the process is killed.
func startWorker(ctx context.Context, spec *workerSpec, slot int) (*worker, error) {
	toR, toW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start worker %d: %w", slot, err)
	}
	fromR, fromW, err := os.Pipe()
	if err != nil {
		toR.Close()
		toW.Close()
		return nil, fmt.Errorf("start worker %d: %w", slot, err)
	}
	cmd := exec.Command(spec.python, "-u", spec.script)
	cmd.Dir = spec.dir
	cmd.Env = spec.env
	cmd.Stdout = spec.stderr
	cmd.Stderr = spec.stderr
	cmd.ExtraFiles = []*os.File{toR, fromW}
	cmd.WaitDelay = 2 * time.Second
	setProcAttr(cmd)
	err = cmd.Start()
	toR.Close()
	fromW.Close()
	if err != nil {
		toW.Close()
		fromR.Close()
		var ee *exec.Error
		if errors.As(err, &ee) || errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.EACCES) {
			return nil, &initError{Summary: fmt.Sprintf("the Python interpreter %q could not be started: %v.", spec.python, err)}
		}
		return nil, fmt.Errorf("start worker %d: %w", slot, err)
	}
	w := newWorker(slot, cmd, toW, fromR, spec.log)

	// Wait for the first frame; kill the process if ctx ends meanwhile.
	br := bufio.NewReaderSize(fromR, 64<<10)
	stop := context.AfterFunc(ctx, func() { w.kill() })
	f, err := readFrame(br, nil)
	stopped := stop()
	if err != nil || !stopped {
		w.kill()
		werr := w.wait()
		toW.Close()
		fromR.Close()
		if !stopped {
			return nil, ctx.Err()
		}
		return nil, &initError{Summary: fmt.Sprintf("the worker process exited before init() completed (%v); see the instance log.", exitText(werr, err))}
	}
	switch f.Kind {
	case kindReady:
		w.flags = f.Aux
	case kindInitFailed:
		w.wait()
		toW.Close()
		fromR.Close()
		return nil, &initError{Summary: string(f.Body)}
	default:
		w.kill()
		w.wait()
		toW.Close()
		fromR.Close()
		return nil, fmt.Errorf("start worker %d: unexpected frame kind %d before ready", slot, f.Kind)
	}
	w.setBackstop(spec.backstop)
	go w.readLoop(br)
	return w, nil
}

// newWorker wraps a started process (cmd may be nil in tests that speak
// the protocol from Go) and its two pipe ends. It has no backstop until
// setBackstop.
func newWorker(slot int, cmd *exec.Cmd, out, in *os.File, log *slog.Logger) *worker {
	pid := 0
	if cmd != nil {
		pid = cmd.Process.Pid
	}
	return &worker{
		slot:    slot,
		pid:     pid,
		cmd:     cmd,
		out:     out,
		in:      in,
		log:     log.With("worker", slot, "pid", pid),
		dead:    make(chan struct{}),
		queue:   make([]*call, 0, maxInFlight),
		started: time.Now(),
	}
}

// setBackstop makes the worker kill itself when the request at the head
// of its queue has not been answered within d of reaching the head (the
// moment its run() starts). Call before the worker takes requests.
func (w *worker) setBackstop(d time.Duration) {
	if d <= 0 {
		return
	}
	w.backstop = d
	w.timer = time.AfterFunc(time.Hour, w.onBackstop)
	w.timer.Stop()
}

func exitText(waitErr, readErr error) string {
	if waitErr != nil {
		return waitErr.Error()
	}
	if errors.Is(readErr, io.EOF) {
		return "exit status 0"
	}
	return readErr.Error()
}

// readLoop reads response frames until the worker's pipe closes. It pairs
// each answer with the oldest request in flight and hands it to that
// request's caller, or discards it and releases the slot if the caller gave
// up (a late answer after a cancelled request). When the pipe closes, every
// request still in flight fails with errWorkerDied.
func (w *worker) readLoop(br *bufio.Reader) {
	defer close(w.dead)
	defer w.fail(errWorkerDied)
	for {
		bp := getBuf()
		f, err := readFrame(br, (*bp)[:0])
		if err != nil {
			putBuf(bp)
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				w.log.Error("worker protocol error", "err", err)
				w.kill()
			}
			return
		}
		*bp = f.Payload[:0]
		if f.Kind != kindResponse {
			w.log.Warn("unexpected frame from worker", "kind", f.Kind)
			putBuf(bp)
			continue
		}
		w.mu.Lock()
		if w.failed != nil || len(w.queue) == 0 || f.ID != w.queue[0].id {
			w.mu.Unlock()
			w.log.Warn("discarding stale answer from worker", "request", f.ID)
			putBuf(bp)
			continue
		}
		c := w.popLocked()
		if c.abandoned {
			w.mu.Unlock()
			putBuf(bp)
			callPool.Put(c)
			w.log.Debug("late answer after cancelled request discarded; worker reused", "request", f.ID)
			w.release(w)
			continue
		}
		c.delivered = true
		w.mu.Unlock()
		c.res <- result{f: f, buf: bp}
	}
}

// popLocked removes the head of the queue and starts the backstop of the
// next request in flight, whose run() starts now. w.mu is held.
func (w *worker) popLocked() *call {
	c := w.queue[0]
	n := copy(w.queue, w.queue[1:])
	w.queue[n] = nil
	w.queue = w.queue[:n]
	if w.timer != nil {
		if n > 0 {
			w.armLocked()
		} else {
			w.timer.Stop()
		}
	}
	return c
}

// armLocked starts the backstop for the request now at the queue's head.
func (w *worker) armLocked() {
	w.deadline = time.Now().Add(w.backstop)
	w.timer.Reset(w.backstop)
}

// onBackstop runs when the backstop timer fires: if the head request is
// still unanswered past its deadline, its run() is stuck (Python's own
// alarm did not end it), and the worker is killed. Every request in flight
// on it fails with errBackstop.
func (w *worker) onBackstop() {
	w.mu.Lock()
	if w.failed != nil || len(w.queue) == 0 || time.Now().Before(w.deadline) {
		w.mu.Unlock() // answered meanwhile, or the timer was moved on
		return
	}
	abandoned := w.queue[0].abandoned
	w.failLocked(errBackstop)
	w.mu.Unlock()
	if abandoned {
		w.log.Error("cancelled request's run() did not return within the scoring timeout; killing the worker", "timeout", w.backstop)
	} else {
		w.log.Error("run() did not return within the scoring timeout; killing the worker", "timeout", w.backstop)
	}
	w.kill()
}

// fail gives the worker up: it takes no more requests, and every request
// in flight on it ends with err (abandoned ones are dropped). Only the
// first call has an effect.
func (w *worker) fail(err error) {
	w.mu.Lock()
	w.failLocked(err)
	w.mu.Unlock()
}

func (w *worker) failLocked(err error) {
	if w.failed != nil {
		return
	}
	w.failed = err
	w.gone.Store(true)
	if w.timer != nil {
		w.timer.Stop()
	}
	for i, c := range w.queue {
		w.queue[i] = nil
		if c.abandoned {
			callPool.Put(c)
			continue
		}
		c.delivered = true
		c.res <- result{err: err} // cap 1, and c gets no other result
	}
	w.queue = w.queue[:0]
}

// call writes one request frame (frameBuf holds the whole encoded frame
// with id already in it) behind whatever is in flight on the worker, and
// waits for its answer. The caller holds a request slot on the worker (from
// the pool). On ctx end the request is left abandoned and the worker's
// reader releases the slot when the late answer arrives, never before. If
// the worker dies or its backstop kills it, call returns errWorkerDied or
// errBackstop. The caller releases the slot after a nil error; on error,
// call has already arranged the slot's fate.
func (w *worker) call(ctx context.Context, id uint64, frameBuf []byte) (result, error) {
	c := callPool.Get().(*call)
	c.id, c.abandoned, c.delivered = id, false, false
	w.writeMu.Lock()
	w.mu.Lock()
	if w.failed != nil {
		w.mu.Unlock()
		w.writeMu.Unlock()
		callPool.Put(c)
		return result{}, errWorkerDied
	}
	w.queue = append(w.queue, c)
	if len(w.queue) == 1 && w.timer != nil {
		w.armLocked()
	}
	w.mu.Unlock()
	// A pipelined frame larger than the pipe's buffer blocks here until the
	// worker starts reading it (its current run() returned).
	_, err := w.out.Write(frameBuf)
	w.writeMu.Unlock()
	if err != nil {
		w.log.Error("write to worker failed", "err", err)
		w.fail(errWorkerDied)
		w.kill()
	}
	select {
	case r := <-c.res:
		callPool.Put(c)
		return r, r.err
	case <-ctx.Done():
		w.mu.Lock()
		if c.delivered {
			w.mu.Unlock()
			r := <-c.res
			callPool.Put(c)
			if r.err == nil {
				putBuf(r.buf)
				w.release(w)
			}
			return result{}, ctx.Err()
		}
		c.abandoned = true // the worker owns c from here on
		w.mu.Unlock()
		return result{}, ctx.Err()
	}
}

// isDead reports whether the worker failed (its reader stopped, or it is
// being killed): it must not be handed out any more.
func (w *worker) isDead() bool { return w.gone.Load() }

// kill sends SIGKILL to the worker's process group.
func (w *worker) kill() {
	if w.pid > 0 {
		killGroup(w.pid, syscall.SIGKILL)
	}
}

// wait reaps the process once and returns its exit error.
func (w *worker) wait() error {
	w.waitOnce.Do(func() {
		if w.cmd != nil {
			w.waitErr = w.cmd.Wait()
		}
	})
	return w.waitErr
}

// stop asks the worker to exit by closing its input (Python sees EOF after
// the requests already written are answered), then escalates to SIGTERM
// and SIGKILL.
func (w *worker) stop(grace time.Duration) {
	w.out.Close()
	done := make(chan struct{})
	go func() { w.wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		if w.pid > 0 {
			killGroup(w.pid, syscall.SIGTERM)
		}
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			w.kill()
			<-done
		}
	}
	w.in.Close()
	<-w.dead
}

// workerFile is where worker.py sits inside the directory written by
// writePythonFiles.
func workerFile(dir string) string { return filepath.Join(dir, "worker.py") }
