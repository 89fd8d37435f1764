package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moe-serving/moe/internal/diagnose"
	"github.com/moe-serving/moe/internal/moetest"
)

// TestConcurrencyLimitsOnRealServer: with max_concurrent_requests_per_instance
// 1, one instance and a slow model, the 3rd concurrent request gets 429 at
// once, a request past request_timeout_ms gets 408, the worker still answers
// correctly afterwards, and diagnose names both causes.
func TestConcurrencyLimitsOnRealServer(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	python := moetest.Python(t)
	proj := project(t, python)
	srv := moetest.Start(t, t.TempDir(), "--python", python)
	// run() echoes its input after sleeping the number of ms it names
	moetest.WriteFile(t, filepath.Join(proj, "code", "sleepy", "score.py"), "import json, time\n\ndef init():\n    pass\n\ndef run(raw):\n    d = json.loads(raw)\n    time.sleep(d['sleep_ms'] / 1000)\n    return {'echo': d['n']}\n")
	moetest.WriteFile(t, filepath.Join(proj, "yaml", "sleepy.yml"), deploymentYAML("sleepy", "sleepy", "conda.yml", `request_settings:
  max_concurrent_requests_per_instance: 1
  request_timeout_ms: 1500
`))
	srv.MustCLI("online-endpoint", "create", "-f", filepath.Join(proj, "yaml", "endpoint.yml"))
	srv.MustCLI("online-deployment", "create", "-f", filepath.Join(proj, "yaml", "sleepy.yml"), "--all-traffic")
	key, _ := srv.Keys("my-endpoint")
	url := srv.ScoringURL("my-endpoint")
	body := func(n, sleepMS int) []byte { return []byte(fmt.Sprintf(`{"n": %d, "sleep_ms": %d}`, n, sleepMS)) }

	// 1st runs (1 s), 2nd queues, 3rd is refused at once
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i := range 2 {
		wg.Go(func() {
			resp, _ := srv.Score(url, key, body(i, 1000))
			codes[i] = resp.StatusCode
		})
		time.Sleep(150 * time.Millisecond)
	}
	start := time.Now()
	resp, b := srv.Score(url, key, body(3, 0))
	if resp.StatusCode != 429 || time.Since(start) > 500*time.Millisecond {
		t.Errorf("3rd concurrent request: %d after %s (%s), want 429 at once", resp.StatusCode, time.Since(start), b)
	}
	if resp.Header.Get("x-moe-limit") != "max_concurrent_requests_per_instance" || resp.Header.Get("Retry-After") == "" {
		t.Errorf("429 headers: %v", resp.Header)
	}
	wg.Wait()
	// the queued one waited ~1 s of its 1.5 s budget and then ran for 1 s: 408
	if codes[0] != 200 || codes[1] != 408 {
		t.Errorf("running and queued requests: %v, want [200 408]", codes)
	}
	// a lone slow request past the timeout: 408
	if resp, b := srv.Score(url, key, body(4, 2500)); resp.StatusCode != 408 {
		t.Errorf("slow request: %d %s, want 408", resp.StatusCode, b)
	}
	// the worker's late answers are discarded: the next answer is its own
	deadline := time.Now().Add(10 * time.Second)
	for n := 5; ; n++ {
		resp, b := srv.Score(url, key, body(n, 0))
		if resp.StatusCode == 200 {
			var got struct{ Echo int }
			json.Unmarshal(b, &got)
			if got.Echo != n {
				t.Fatalf("request %d got the answer of request %d: a late result leaked", n, got.Echo)
			}
			if n > 8 {
				break
			}
			continue
		}
		if resp.StatusCode != 429 || time.Now().After(deadline) { // 429 while the slow run() finishes
			t.Fatalf("after the timeouts: %d %s", resp.StatusCode, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
	var rep diagnose.Report
	json.Unmarshal([]byte(srv.MustCLI("online-deployment", "diagnose", "-n", "sleepy", "-e", "my-endpoint", "-o", "json")), &rep)
	var causes []string
	for _, f := range rep.Findings {
		causes = append(causes, f.Cause+" → "+f.Fix)
	}
	all := strings.Join(causes, "\n")
	if !strings.Contains(all, "got 429") || !strings.Contains(all, "max_concurrent_requests_per_instance is 1") || !strings.Contains(all, "request_timeout_ms (1500 ms)") {
		t.Errorf("diagnose does not name the 429s and the timeouts:\n%s", all)
	}
}

// TestKeyRotationUnderLoad: clients using one key never fail while the
// other is regenerated.
func TestKeyRotationUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end")
	}
	python := moetest.Python(t)
	proj := project(t, python)
	srv := moetest.Start(t, t.TempDir(), "--python", python)
	srv.MustCLI("online-endpoint", "create", "-f", filepath.Join(proj, "yaml", "endpoint.yml"))
	srv.MustCLI("online-deployment", "create", "-f", filepath.Join(proj, "yaml", "blue.yml"), "--all-traffic",
		"--set", "request_settings.max_concurrent_requests_per_instance=4")
	primary, _ := srv.Keys("my-endpoint")
	url := srv.ScoringURL("my-endpoint")
	l := startLoad(t, srv, url, primary, 3)
	for range 3 {
		time.Sleep(200 * time.Millisecond)
		srv.MustCLI("online-endpoint", "regenerate-keys", "-n", "my-endpoint", "--key-type", "secondary")
	}
	time.Sleep(200 * time.Millisecond)
	l.expectNoFailures(t, "secondary key regenerated 3 times while clients use the primary")
	_, secondary := srv.Keys("my-endpoint")
	l = startLoad(t, srv, url, secondary, 3)
	time.Sleep(200 * time.Millisecond)
	srv.MustCLI("online-endpoint", "regenerate-keys", "-n", "my-endpoint", "--key-type", "primary")
	time.Sleep(300 * time.Millisecond)
	l.expectNoFailures(t, "primary key regenerated while clients use the secondary")
	if resp, _ := srv.Score(url, primary, []byte(sampleRequest)); resp.StatusCode != 401 {
		t.Errorf("the replaced primary key still works: %d", resp.StatusCode)
	}
}
