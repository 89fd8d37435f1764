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
	"syscall"
	"time"
)

var (
	// errWorkerDied is returned by call when the worker exited (or its pipe
	// broke) before answering.
	errWorkerDied = errors.New("host: worker exited during the request")
	// errBackstop is returned by call when run() overran the scoring
	// timeout and Python's own alarm did not stop it; the worker is killed.
	errBackstop = errors.New("host: scoring timeout")
)

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

// result is a response frame handed from a worker's reader to its caller.
// The caller owns buf (the frame aliases it) and returns it with putBuf.
type result struct {
	f   frame
	buf *[]byte
}

// worker is one Python process. It handles one request at a time; the pool
// guarantees that only the holder of a worker calls call.
type worker struct {
	slot  int
	pid   int
	cmd   *exec.Cmd
	out   *os.File // host -> worker (fd 3 in the worker)
	in    *os.File // worker -> host (fd 4 in the worker)
	flags uint32   // aux of the ready frame
	log   *slog.Logger

	// release hands the worker back to the pool; set by the pool.
	release func(*worker)

	resp  chan result   // cap 1; the reader delivers the answer here
	dead  chan struct{} // closed when the reader stops (process gone)
	timer *time.Timer   // scoring-timeout backstop, reused per call

	mu        sync.Mutex // guards the following
	inflight  uint64     // request id awaiting an answer; 0 if none
	abandoned bool       // the caller gave up; the reader releases on the late answer
	delivered bool       // the answer is in resp

	waitOnce sync.Once
	waitErr  error
	started  time.Time
}

// workerSpec is what startWorker needs; built once by Run.
type workerSpec struct {
	python  string
	script  string // path of worker.py
	dir     string // cwd (the code dir)
	env     []string
	stderr  io.Writer
	log     *slog.Logger
	timeout time.Duration
	n       int // number of workers
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
	go w.readLoop(br)
	return w, nil
}

// newWorker wraps a started process (cmd may be nil in tests that speak
// the protocol from Go) and its two pipe ends.
func newWorker(slot int, cmd *exec.Cmd, out, in *os.File, log *slog.Logger) *worker {
	pid := 0
	if cmd != nil {
		pid = cmd.Process.Pid
	}
	w := &worker{
		slot:    slot,
		pid:     pid,
		cmd:     cmd,
		out:     out,
		in:      in,
		log:     log.With("worker", slot, "pid", pid),
		resp:    make(chan result, 1),
		dead:    make(chan struct{}),
		timer:   time.NewTimer(time.Hour),
		started: time.Now(),
	}
	w.timer.Stop()
	return w
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

// readLoop reads response frames until the worker's pipe closes. It hands
// an answer to the waiting caller, or discards it and releases the worker
// if the caller gave up (a late answer after a cancelled request).
func (w *worker) readLoop(br *bufio.Reader) {
	defer close(w.dead)
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
		if f.ID == 0 || f.ID != w.inflight {
			w.mu.Unlock()
			w.log.Warn("discarding stale answer from worker", "request", f.ID)
			putBuf(bp)
			continue
		}
		if w.abandoned {
			w.inflight, w.abandoned = 0, false
			w.mu.Unlock()
			putBuf(bp)
			w.log.Debug("late answer after cancelled request discarded; worker reused", "request", f.ID)
			w.release(w)
			continue
		}
		w.delivered = true
		w.mu.Unlock()
		w.resp <- result{f: f, buf: bp}
	}
}

// call sends one request frame (frameBuf holds the whole encoded frame with
// id already in it) and waits for the answer. On ctx end the worker is left
// marked abandoned and is released by its reader when the late answer
// arrives, never before. backstop bounds the wait (0: none); past it the
// worker is killed and errBackstop returned. The caller releases the worker
// after a nil error; on error, call has already arranged the worker's fate.
func (w *worker) call(ctx context.Context, id uint64, frameBuf []byte, backstop time.Duration) (result, error) {
	w.mu.Lock()
	w.inflight, w.abandoned, w.delivered = id, false, false
	w.mu.Unlock()
	if _, err := w.out.Write(frameBuf); err != nil {
		w.log.Error("write to worker failed", "err", err)
		w.kill()
		return result{}, errWorkerDied
	}
	var timeout <-chan time.Time
	deadline := time.Now().Add(backstop)
	if backstop > 0 {
		w.timer.Reset(backstop)
		timeout = w.timer.C
		defer w.timer.Stop()
	}
	select {
	case r := <-w.resp:
		w.finish()
		return r, nil
	case <-ctx.Done():
		w.mu.Lock()
		if w.delivered {
			w.mu.Unlock()
			r := <-w.resp
			putBuf(r.buf)
			w.finish()
			w.release(w)
			return result{}, ctx.Err()
		}
		w.abandoned = true
		w.mu.Unlock()
		if backstop > 0 {
			// Nobody waits any more, but a run() stuck past the timeout
			// must still not hold the worker forever.
			time.AfterFunc(time.Until(deadline), func() {
				w.mu.Lock()
				stuck := w.abandoned && w.inflight == id
				w.mu.Unlock()
				if stuck {
					w.log.Error("cancelled request's run() did not return within the scoring timeout; killing the worker", "timeout", backstop)
					w.kill()
				}
			})
		}
		return result{}, ctx.Err()
	case <-timeout:
		w.log.Error("run() did not return within the scoring timeout; killing the worker", "timeout", backstop)
		w.kill()
		return result{}, errBackstop
	case <-w.dead:
		return result{}, errWorkerDied
	}
}

func (w *worker) finish() {
	w.mu.Lock()
	w.inflight, w.delivered = 0, false
	w.mu.Unlock()
}

// isDead reports whether the worker's reader has stopped.
func (w *worker) isDead() bool {
	select {
	case <-w.dead:
		return true
	default:
		return false
	}
}

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
// the current run() returns), then escalates to SIGTERM and SIGKILL.
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
