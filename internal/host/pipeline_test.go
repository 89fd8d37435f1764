package host

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The tests below run with one worker and reach a pipelined state by
// sending a second request while the first one's run() sleeps: the pool
// writes it into the worker's pipe behind the first.

// answer is one finished request.
type answer struct {
	status int
	hdr    http.Header
	body   string
	err    error
}

// goDo sends a request in the background; ctx may end it early.
func goDo(ctx context.Context, url, body string) <-chan answer {
	ch := make(chan answer, 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body))
		if err != nil {
			ch <- answer{err: err}
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			ch <- answer{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		ch <- answer{status: resp.StatusCode, hdr: resp.Header, body: string(b), err: err}
	}()
	return ch
}

func TestHost_PipelinedInOrder(t *testing.T) {
	dir := writeScript(t, `
import os, select, time
n = 0
def init(): pass
def run(data):
    global n
    n += 1
    out = {"data": data, "n": n, "pid": os.getpid()}
    if data == "a":
        time.sleep(0.5)
        # Is the next request already in the protocol pipe (fd 3)?
        out["next_waiting"] = bool(select.select([3], [], [], 0)[0])
    return out
`)
	th := startHost(t, Config{CodeDir: dir})
	a := goDo(context.Background(), th.URL+"/score", "a")
	time.Sleep(150 * time.Millisecond)
	b := goDo(context.Background(), th.URL+"/score", "b")
	ra, rb := <-a, <-b
	type out struct {
		Data        string `json:"data"`
		N           int    `json:"n"`
		PID         int    `json:"pid"`
		NextWaiting bool   `json:"next_waiting"`
	}
	var oa, ob out
	for _, x := range []struct {
		r   answer
		dst *out
	}{{ra, &oa}, {rb, &ob}} {
		if x.r.err != nil || x.r.status != 200 {
			t.Fatalf("answer %d %q %v; want 200\nlog:\n%s", x.r.status, x.r.body, x.r.err, th.Stderr)
		}
		if err := json.Unmarshal([]byte(x.r.body), x.dst); err != nil {
			t.Fatalf("answer %q: %v", x.r.body, err)
		}
	}
	if oa.Data != "a" || oa.N != 1 || ob.Data != "b" || ob.N != 2 || oa.PID != ob.PID {
		t.Errorf("answers a=%+v b=%+v; want a first (n=1), then b (n=2), same worker", oa, ob)
	}
	if !oa.NextWaiting {
		t.Error("b was not in the worker's pipe while a's run() executed; want it pipelined")
	}
}

func TestHost_PipelinedCancelSecond(t *testing.T) {
	dir := writeScript(t, `
import os, time
def init(): pass
def run(data):
    if data.startswith("slow"):
        time.sleep(0.5)
    return data
`)
	th := startHost(t, Config{CodeDir: dir})
	a := goDo(context.Background(), th.URL+"/score", "slow-a")
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if r := <-goDo(ctx, th.URL+"/score", "b"); r.err == nil {
		t.Fatalf("pipelined request answered %d %q; want the client to time out", r.status, r.body)
	}
	// The next request queues behind a and b's late answer; it must get its
	// own answer.
	c := goDo(context.Background(), th.URL+"/score", "c")
	if r := <-a; r.err != nil || r.status != 200 || r.body != `"slow-a"` {
		t.Errorf("first request = %d %q %v; want 200 \"slow-a\"", r.status, r.body, r.err)
	}
	if r := <-c; r.err != nil || r.status != 200 || r.body != `"c"` {
		t.Errorf("next request = %d %q %v; want 200 \"c\"", r.status, r.body, r.err)
	}
	if status, _, body := do(t, "POST", th.URL+"/score", "d", nil); status != 200 || body != `"d"` {
		t.Errorf("after = %d %q; want 200 \"d\"", status, body)
	}
}

func TestHost_PipelinedCancelFirst(t *testing.T) {
	dir := writeScript(t, `
import time
def init(): pass
def run(data):
    if data.startswith("slow"):
        time.sleep(0.5)
    return data
`)
	th := startHost(t, Config{CodeDir: dir})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	a := goDo(ctx, th.URL+"/score", "slow-a")
	time.Sleep(100 * time.Millisecond)
	b := goDo(context.Background(), th.URL+"/score", "b")
	if r := <-a; r.err == nil {
		t.Fatalf("first request answered %d %q; want the client to time out", r.status, r.body)
	}
	r := <-b
	if r.err != nil || r.status != 200 || r.body != `"b"` {
		t.Fatalf("pipelined request = %d %q %v; want 200 \"b\" (not the late answer of the cancelled one)", r.status, r.body, r.err)
	}
	if waited := time.Since(start); waited < 450*time.Millisecond {
		t.Errorf("pipelined request done %v after the first started; it should have waited for the first run()", waited)
	}
	if status, _, body := do(t, "POST", th.URL+"/score", "c", nil); status != 200 || body != `"c"` {
		t.Errorf("after = %d %q; want 200 \"c\"", status, body)
	}
}

func TestHost_PipelinedWorkerKilled(t *testing.T) {
	dir := writeScript(t, `
import os, time
def init(): pass
def run(data):
    if data == "slow":
        time.sleep(5)
    return os.getpid()
`)
	th := startHost(t, Config{CodeDir: dir})
	_, _, body := do(t, "POST", th.URL+"/score", "pid", nil)
	pid, err := strconv.Atoi(body)
	if err != nil {
		t.Fatalf("pid answer %q: %v", body, err)
	}
	a := goDo(context.Background(), th.URL+"/score", "slow")
	time.Sleep(100 * time.Millisecond)
	b := goDo(context.Background(), th.URL+"/score", "slow")
	time.Sleep(200 * time.Millisecond)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	want := `{"message": "` + msgUserError + `"}`
	for i, ch := range []<-chan answer{a, b} {
		r := <-ch
		if r.err != nil || r.status != 500 || r.body != want || r.hdr.Get("X-Ms-Run-Function-Failed") != "True" {
			t.Errorf("request %d in flight when the worker died = %d %q %v; want 500 %q", i, r.status, r.body, r.err, want)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		status, _, body2 := do(t, "POST", th.URL+"/score", "x", nil)
		if status == 200 && body2 != body {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer from a restarted worker: last %d %q\nlog:\n%s", status, body2, th.Stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if status, _, _ := do(t, "GET", th.URL+"/-/ready", "", nil); status != 200 {
		t.Errorf("ready after restart = %d; want 200", status)
	}
}

// Python's own alarm ends the first run(); the request pipelined behind it
// runs normally on the same worker.
func TestHost_PipelinedBehindScoringTimeout(t *testing.T) {
	dir := writeScript(t, `
import os, time
def init(): pass
def run(data):
    if data == "slow":
        time.sleep(5)
    return [data, os.getpid()]
`)
	th := startHost(t, Config{CodeDir: dir, ScoringTimeout: 400 * time.Millisecond})
	a := goDo(context.Background(), th.URL+"/score", "slow")
	time.Sleep(100 * time.Millisecond)
	b := goDo(context.Background(), th.URL+"/score", "fast")
	if r := <-a; r.status != 500 || r.body != `{"message": "Scoring timeout after 400 ms"}` {
		t.Errorf("slow = %d %q %v; want 500 scoring timeout", r.status, r.body, r.err)
	}
	rb := <-b
	if rb.status != 200 || !strings.HasPrefix(rb.body, `["fast", `) {
		t.Fatalf("pipelined = %d %q %v; want 200 [\"fast\", pid]", rb.status, rb.body, rb.err)
	}
	if _, _, body := do(t, "POST", th.URL+"/score", "again", nil); body != strings.Replace(rb.body, "fast", "again", 1) {
		t.Errorf("after = %q; want the same worker as %q", body, rb.body)
	}
}

// A pipelined request's scoring timeout counts from the start of its own
// run(), not from when it was written behind another one.
func TestHost_PipelinedTimeoutCountsFromItsRun(t *testing.T) {
	dir := writeScript(t, `
import time
def init(): pass
def run(data):
    time.sleep(0.4)
    return data
`)
	th := startHost(t, Config{CodeDir: dir, ScoringTimeout: 600 * time.Millisecond})
	a := goDo(context.Background(), th.URL+"/score", "a")
	time.Sleep(100 * time.Millisecond)
	b := goDo(context.Background(), th.URL+"/score", "b")
	for _, x := range []struct {
		ch   <-chan answer
		want string
	}{{a, `"a"`}, {b, `"b"`}} {
		if r := <-x.ch; r.status != 200 || r.body != x.want {
			t.Errorf("got %d %q %v; want 200 %s (0.4 s runs under a 0.6 s timeout)", r.status, r.body, r.err, x.want)
		}
	}
}

// The worker arms its alarm once and re-arms it for a later run(): that
// run() still times out at its own deadline, not the first one's.
func TestHost_ScoringTimeoutAfterEarlierRun(t *testing.T) {
	dir := writeScript(t, "import time\ndef init(): pass\ndef run(data):\n    if data == 'slow':\n        time.sleep(5)\n    return data\n")
	th := startHost(t, Config{CodeDir: dir, ScoringTimeout: 500 * time.Millisecond})
	for range 2 {
		if status, _, _ := do(t, "POST", th.URL+"/score", "fast", nil); status != 200 {
			t.Fatalf("fast = %d", status)
		}
		time.Sleep(250 * time.Millisecond)
		start := time.Now()
		status, _, body := do(t, "POST", th.URL+"/score", "slow", nil)
		took := time.Since(start)
		if status != 500 || body != `{"message": "Scoring timeout after 500 ms"}` {
			t.Errorf("slow = %d %q; want 500 scoring timeout", status, body)
		}
		if took < 450*time.Millisecond || took > 2*time.Second {
			t.Errorf("slow timed out after %v; want ~500ms from its own start", took)
		}
	}
}

// A run() that swallows Python's alarm is stuck: the host's backstop kills
// the worker, and the request pipelined behind it fails the same way.
func TestHost_PipelinedBehindBackstop(t *testing.T) {
	old := backstopGrace
	backstopGrace = 300 * time.Millisecond
	t.Cleanup(func() { backstopGrace = old })
	dir := writeScript(t, `
import os, time
def init(): pass
def run(data):
    if data == "stuck":
        end = time.time() + 30
        while time.time() < end:
            try:
                time.sleep(0.05)
            except BaseException:
                pass
    return os.getpid()
`)
	th := startHost(t, Config{CodeDir: dir, ScoringTimeout: 300 * time.Millisecond})
	_, _, pid := do(t, "POST", th.URL+"/score", "pid", nil)
	start := time.Now()
	a := goDo(context.Background(), th.URL+"/score", "stuck")
	time.Sleep(100 * time.Millisecond)
	b := goDo(context.Background(), th.URL+"/score", "b")
	want := `{"message": "Scoring timeout after 300 ms"}`
	for i, ch := range []<-chan answer{a, b} {
		r := <-ch
		if r.status != 500 || r.body != want || r.hdr.Get("X-Ms-Run-Function-Failed") != "True" {
			t.Errorf("request %d = %d %q %v; want 500 %q", i, r.status, r.body, r.err, want)
		}
	}
	if took := time.Since(start); took < 550*time.Millisecond || took > 5*time.Second {
		t.Errorf("backstop took %v; want ~600ms (timeout + grace)", took)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		status, _, body := do(t, "POST", th.URL+"/score", "x", nil)
		if status == 200 && body != pid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer from a restarted worker: last %d %q\nlog:\n%s", status, body, th.Stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// newTestWorker is a worker without a process, for pool tests.
func newTestWorker(slot int) *worker {
	return newWorker(slot, nil, nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func TestPool_Slots(t *testing.T) {
	var p pool
	w0, w1 := newTestWorker(0), newTestWorker(1)
	for _, w := range []*worker{w0, w1} {
		w.release = p.release
		p.add(w)
	}
	ctx := context.Background()
	get := func() *worker {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		w, err := p.get(c)
		if err != nil {
			return nil
		}
		return w
	}
	// Idle workers first, then a second request on each, the one that got
	// its first request earliest first.
	g1, g2 := get(), get()
	if g1 == nil || g2 == nil || g1 == g2 {
		t.Fatalf("first two gets = %v %v; want both workers", g1, g2)
	}
	if g3 := get(); g3 != g1 {
		t.Errorf("third get = worker %v; want the earliest busy one (%d)", g3, g1.slot)
	}
	if g4 := get(); g4 != g2 {
		t.Errorf("fourth get = %v; want worker %d", g4, g2.slot)
	}
	if g := get(); g != nil {
		t.Fatalf("fifth get = worker %d; want none (every worker has 2 in flight)", g.slot)
	}
	// Waiters are served FIFO as slots come back.
	var order []int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			w, err := p.get(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			w.release(w)
		})
		time.Sleep(20 * time.Millisecond) // waiter 0 queues first
	}
	g1.release(g1)
	wg.Wait()
	if fmt.Sprint(order) != "[0 1]" {
		t.Errorf("waiters served in order %v; want [0 1]", order)
	}
	// Releasing the rest frees every slot: both workers are idle again.
	g1.release(g1)
	g2.release(g2)
	g2.release(g2)
	p.mu.Lock()
	idle, half, load := len(p.idle), len(p.half), w0.load+w1.load
	p.mu.Unlock()
	if idle != 2 || half != 0 || load != 0 {
		t.Errorf("after releasing everything: %d idle, %d half, load %d; want 2, 0, 0", idle, half, load)
	}
	// A dead worker is not handed out.
	w0.fail(errWorkerDied)
	for range 2 {
		if g := get(); g != w1 {
			t.Errorf("get with worker 0 dead = %v; want worker 1", g)
		}
	}
}

// echoPython answers every request frame with its body after a short,
// random pause, until in closes.
func echoPython(in io.Reader, out io.Writer) {
	br := bufio.NewReaderSize(in, 64<<10)
	bw := bufio.NewWriterSize(out, 64<<10)
	buf := make([]byte, 0, 64<<10)
	var resp []byte
	for {
		f, err := readFrame(br, buf)
		if err != nil {
			return
		}
		if rand.IntN(4) == 0 {
			time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
		}
		resp = appendFrame(resp[:0], kindResponse, f.ID, 1, nil, f.Body)
		bw.Write(resp)
		bw.Flush()
	}
}

// TestHost_PipelineStress drives many concurrent requests, some cancelled
// at random, through two Go stand-in workers: every answer must be the
// request's own, and every slot must come back.
func TestHost_PipelineStress(t *testing.T) {
	h, err := newHostRun(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	var workers []*worker
	for i := range 2 {
		toR, toW, _ := os.Pipe()
		fromR, fromW, _ := os.Pipe()
		go echoPython(toR, fromW)
		w := newWorker(i, nil, toW, fromR, h.log)
		w.setBackstop(time.Minute)
		go w.readLoop(bufio.NewReaderSize(fromR, 64<<10))
		w.release = h.pool.release
		h.pool.alive.Add(1)
		h.pool.add(w)
		workers = append(workers, w)
		t.Cleanup(func() {
			toW.Close()
			toR.Close()
			fromW.Close()
			fromR.Close()
			<-w.dead
		})
	}
	close(h.started)
	h.ready.Store(true)

	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 150 {
				body := fmt.Sprintf(`{"g": %d, "i": %d}`, g, i)
				ctx, cancel := context.WithCancel(context.Background())
				if rand.IntN(5) == 0 {
					time.AfterFunc(time.Duration(rand.IntN(200))*time.Microsecond, cancel)
				}
				req := httptest.NewRequestWithContext(ctx, "POST", "/score", strings.NewReader(body))
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				cancelled := ctx.Err() != nil
				cancel()
				if rec.Body.Len() == 0 && cancelled {
					continue
				}
				if rec.Code != 200 || rec.Body.String() != body {
					t.Errorf("request %s = %d %q; want its own body", body, rec.Code, rec.Body.String())
					return
				}
			}
		})
	}
	wg.Wait()
	// Late answers of cancelled requests give their slots back.
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.pool.mu.Lock()
		idle, half, waiters := len(h.pool.idle), len(h.pool.half), len(h.pool.waiters)
		load := workers[0].load + workers[1].load
		h.pool.mu.Unlock()
		if idle == 2 && half == 0 && waiters == 0 && load == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slots not all back: %d idle, %d half, %d waiters, load %d", idle, half, waiters, load)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, w := range workers {
		w.mu.Lock()
		n := len(w.queue)
		w.mu.Unlock()
		if n != 0 {
			t.Errorf("worker %d has %d requests in flight; want 0", w.slot, n)
		}
	}
}
