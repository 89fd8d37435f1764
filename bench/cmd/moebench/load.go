package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// Target is one HTTP endpoint the load generator drives: every request is
// a POST of Body to URL with Headers, over keep-alive connections dialled
// to Addr (loopback), with TLS verified against CA when URL is https.
type Target struct {
	Name    string
	URL     string
	Addr    string // host:port to dial, whatever the URL's host says
	Headers map[string]string
	Body    []byte
	CA      *x509.CertPool
}

// Run is the outcome of one bounded load run.
type Run struct {
	Target      string       `json:"target"`
	Mode        string       `json:"mode"` // "closed" or "open"
	Concurrency int          `json:"concurrency,omitempty"`
	Rate        float64      `json:"rate,omitempty"` // intended requests/s (open loop)
	Seconds     float64      `json:"seconds"`
	OK          int64        `json:"ok"`
	Errors      int64        `json:"errors"`
	FirstError  string       `json:"first_error,omitempty"`
	RPS         float64      `json:"rps"`
	P50         float64      `json:"p50_ms"`
	P90         float64      `json:"p90_ms"`
	P99         float64      `json:"p99_ms"`
	P999        float64      `json:"p999_ms"`
	Max         float64      `json:"max_ms"`
	Mean        float64      `json:"mean_ms"`
	ForeignCPU  float64      `json:"foreign_cores"` // CPU used by processes outside the benchmark during the run
	Attempts    int          `json:"attempts"`
	CDF         [][2]float64 `json:"cdf,omitempty"` // (latency ms, fraction)
	hist        *hdr.Histogram
}

func newHist() *hdr.Histogram { return hdr.New(1, 120_000_000, 3) } // µs, up to 120 s

func (t *Target) client(conns int) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, t.Addr)
		},
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false, // HTTP/1.1 everywhere: nginx and gunicorn speak nothing else
	}
	if t.CA != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: t.CA, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}
	}
	return &http.Client{Transport: tr, Timeout: 60 * time.Second}
}

// do sends one request and reads the whole answer; ok means status 200.
func (t *Target) do(c *http.Client) error {
	req, err := http.NewRequest(http.MethodPost, t.URL, bytes.NewReader(t.Body))
	if err != nil {
		return err
	}
	req.ContentLength = int64(len(t.Body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range t.Headers {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

type recorder struct {
	mu       sync.Mutex
	h        *hdr.Histogram
	ok, errs atomic.Int64
	first    atomic.Value
}

func (r *recorder) add(local *hdr.Histogram) {
	r.mu.Lock()
	r.h.Merge(local)
	r.mu.Unlock()
}

func (r *recorder) fail(err error) {
	r.errs.Add(1)
	r.first.CompareAndSwap(nil, err.Error())
}

func (r *recorder) result(target, mode string, elapsed time.Duration) Run {
	h := r.h
	ms := func(v int64) float64 { return float64(v) / 1000 }
	run := Run{Target: target, Mode: mode, Seconds: elapsed.Seconds(), OK: r.ok.Load(), Errors: r.errs.Load(),
		P50: ms(h.ValueAtQuantile(50)), P90: ms(h.ValueAtQuantile(90)), P99: ms(h.ValueAtQuantile(99)),
		P999: ms(h.ValueAtQuantile(99.9)), Max: ms(h.Max()), Mean: h.Mean() / 1000, hist: h}
	if f, ok := r.first.Load().(string); ok {
		run.FirstError = f
	}
	run.RPS = float64(run.OK) / elapsed.Seconds()
	for _, q := range []float64{0, 1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 97, 99, 99.5, 99.9, 99.99, 100} {
		run.CDF = append(run.CDF, [2]float64{ms(h.ValueAtQuantile(q)), q / 100})
	}
	return run
}

// Closed runs conc clients, each sending its next request when the last
// answer arrived, for dur (after warm-up) or until maxN answers. It finds
// peak throughput; its latencies are service times under that load.
func Closed(t *Target, conc int, warm, dur time.Duration, maxN int64) Run {
	c := t.client(conc)
	defer c.CloseIdleConnections()
	// Warm-up: open the connections and let the servers settle.
	wctx, wcancel := context.WithTimeout(context.Background(), warm)
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for wctx.Err() == nil {
				_ = t.do(c)
			}
		})
	}
	wg.Wait()
	wcancel()

	rec := &recorder{h: newHist()}
	var sent atomic.Int64
	start := time.Now()
	deadline := start.Add(dur)
	for range conc {
		wg.Go(func() {
			local := newHist()
			for time.Now().Before(deadline) && sent.Add(1) <= maxN {
				t0 := time.Now()
				if err := t.do(c); err != nil {
					rec.fail(err)
					continue
				}
				local.RecordValue(time.Since(t0).Microseconds())
				rec.ok.Add(1)
			}
			rec.add(local)
		})
	}
	wg.Wait()
	r := rec.result(t.Name, "closed", time.Since(start))
	r.Concurrency = conc
	return r
}

// Open sends requests at a constant rate for dur, on a schedule fixed in
// advance: request i is due at start + i/rate. Latency is measured from
// the due time, not from when a connection was free, so a stalled server
// is charged for every request it delayed (no coordinated omission).
// At most maxInflight requests are outstanding; later ones wait (and their
// wait counts).
func Open(t *Target, rate float64, warm, dur time.Duration, maxInflight int) Run {
	c := t.client(maxInflight)
	defer c.CloseIdleConnections()
	// Warm-up at the same rate, not measured.
	if warm > 0 {
		openPhase(t, c, rate, warm, maxInflight)
	}
	rec, elapsed := openPhase(t, c, rate, dur, maxInflight)
	r := rec.result(t.Name, "open", elapsed)
	r.Rate = rate
	return r
}

func openPhase(t *Target, c *http.Client, rate float64, dur time.Duration, maxInflight int) (*recorder, time.Duration) {
	n := int(rate * dur.Seconds())
	if n < 1 {
		n = 1
	}
	due := make(chan time.Time, n)
	rec := &recorder{h: newHist()}
	start := time.Now().Add(5 * time.Millisecond)
	interval := float64(time.Second) / rate
	go func() {
		for i := range n {
			at := start.Add(time.Duration(float64(i) * interval))
			if d := time.Until(at); d > 0 {
				time.Sleep(d)
			}
			due <- at
		}
		close(due)
	}()
	var wg sync.WaitGroup
	for range maxInflight {
		wg.Go(func() {
			local := newHist()
			for at := range due {
				if err := t.do(c); err != nil {
					rec.fail(err)
					continue
				}
				local.RecordValue(time.Since(at).Microseconds())
				rec.ok.Add(1)
			}
			rec.add(local)
		})
	}
	wg.Wait()
	return rec, time.Since(start)
}
