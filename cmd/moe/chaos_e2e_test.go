package main

// Chaos as tests (issue 4): a load generator inside the test keeps a real
// moe serve busy while deployments shift traffic, roll, scale and lose
// instances. Loops are bounded in count and time, loopback only.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/moe-serving/moe/internal/moetest"
)

// load sends scoring requests from a few goroutines until stopped.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	failures   map[string]int
	byDep      map[string]int
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(t *testing.T, srv *moetest.Server, url, key string, workers int) *load {
	l := &load{failures: map[string]int{}, byDep: map[string]int{}, stop: make(chan struct{})}
	deadline := time.Now().Add(90 * time.Second) // hard bound
	for range workers {
		l.wg.Go(func() {
			for n := 0; n < 20000 && time.Now().Before(deadline); n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader([]byte(sampleRequest)))
				req.Header.Set("Authorization", "Bearer "+key)
				resp, err := srv.Client.Do(req)
				if err != nil {
					l.record("transport: " + err.Error())
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					l.record(fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(body)))
					continue
				}
				l.ok.Add(1)
				l.mu.Lock()
				l.byDep[resp.Header.Get("azureml-model-deployment")]++
				l.mu.Unlock()
			}
		})
	}
	return l
}

func (l *load) record(failure string) {
	l.failed.Add(1)
	l.mu.Lock()
	if len(l.failures) < 20 {
		l.failures[failure]++
	}
	l.mu.Unlock()
}

// Stop ends the load and returns how many requests succeeded and failed.
func (l *load) Stop() (ok, failed int64) {
	close(l.stop)
	l.wg.Wait()
	return l.ok.Load(), l.failed.Load()
}

func (l *load) expectNoFailures(t *testing.T, phase string) {
	t.Helper()
	ok, failed := l.Stop()
	if failed != 0 || ok == 0 {
		t.Errorf("%s: %d ok, %d failed under load: %v", phase, ok, failed, l.failures)
	} else {
		t.Logf("%s: %d requests, none failed (%v)", phase, ok, l.byDep)
	}
}

func instances(t *testing.T, srv *moetest.Server, dep string) (ready int, ids []string) {
	var d struct {
		Instances []struct {
			ID    string `json:"id"`
			State string `json:"state"`
		} `json:"instances"`
	}
	json.Unmarshal([]byte(srv.MustCLI("online-deployment", "show", "-n", dep, "-e", "my-endpoint")), &d)
	for _, in := range d.Instances {
		if in.State == "Ready" {
			ready++
		}
		ids = append(ids, in.ID)
	}
	return ready, ids
}

func TestChaosUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos: real servers under load")
	}
	python := moetest.Python(t)
	proj := project(t, python)
	dataDir := t.TempDir()
	srv := moetest.Start(t, dataDir, "--python", python)
	y := func(name string) string { return filepath.Join(proj, "yaml", name+".yml") }
	srv.MustCLI("online-endpoint", "create", "-f", y("endpoint"))
	// 4 concurrent clients: allow 4 in flight per instance (Azure's cap is
	// 2 × max_concurrent × instances; with the default of 1 they would get 429)
	conc := "request_settings.max_concurrent_requests_per_instance=4"
	srv.MustCLI("online-deployment", "create", "-f", y("blue"), "--all-traffic", "--set", conc)
	srv.MustCLI("online-deployment", "create", "-f", y("green"), "--set", conc)
	key, _ := srv.Keys("my-endpoint")
	url := srv.ScoringURL("my-endpoint")

	t.Run("TrafficShiftInSteps", func(t *testing.T) {
		l := startLoad(t, srv, url, key, 4)
		for _, step := range []string{"blue=75 green=25", "blue=50 green=50", "blue=25 green=75", "blue=0 green=100", "blue=100 green=0"} {
			time.Sleep(300 * time.Millisecond)
			srv.MustCLI("online-endpoint", "update", "-n", "my-endpoint", "--traffic", step)
		}
		time.Sleep(300 * time.Millisecond)
		l.expectNoFailures(t, "traffic shift")
		if l.byDep["green"] == 0 || l.byDep["blue"] == 0 {
			t.Errorf("both deployments should have served: %v", l.byDep)
		}
	})
	t.Run("RollingUpdateOfLiveDeployment", func(t *testing.T) {
		moetest.WriteFile(t, filepath.Join(proj, "code", "blue", "version.txt"), "2")
		l := startLoad(t, srv, url, key, 4)
		time.Sleep(300 * time.Millisecond)
		srv.MustCLI("online-deployment", "update", "-f", y("blue"), "--set", conc)
		time.Sleep(1500 * time.Millisecond) // past the drain of the old instance
		l.expectNoFailures(t, "rolling update")
	})
	t.Run("Scale1To3To1", func(t *testing.T) {
		l := startLoad(t, srv, url, key, 4)
		time.Sleep(300 * time.Millisecond)
		srv.MustCLI("online-deployment", "update", "-n", "blue", "-e", "my-endpoint", "--set", "instance_count=3")
		if r, _ := instances(t, srv, "blue"); r != 3 {
			t.Errorf("after scaling to 3: %d ready", r)
		}
		time.Sleep(500 * time.Millisecond)
		srv.MustCLI("online-deployment", "update", "-n", "blue", "-e", "my-endpoint", "--set", "instance_count=1")
		time.Sleep(1500 * time.Millisecond)
		l.expectNoFailures(t, "scale 1→3→1")
		waitFor(t, 10*time.Second, func() bool { r, ids := instances(t, srv, "blue"); return r == 1 && len(ids) == 1 })
	})
	t.Run("KillOneOfTwoInstances", func(t *testing.T) {
		srv.MustCLI("online-deployment", "update", "-n", "blue", "-e", "my-endpoint", "--set", "instance_count=2")
		_, ids := instances(t, srv, "blue")
		b, err := os.ReadFile(filepath.Join(dataDir, "instances", ids[0], "state.json"))
		if err != nil {
			t.Fatal(err)
		}
		var st struct{ PID int }
		json.Unmarshal(b, &st)
		const workers = 4
		l := startLoad(t, srv, url, key, workers)
		time.Sleep(300 * time.Millisecond)
		killed := time.Now()
		syscall.Kill(st.PID, syscall.SIGKILL)
		time.Sleep(700 * time.Millisecond)
		ok, failed := l.Stop()
		// only requests in flight on the killed instance may fail: at most
		// one per load worker
		if failed > workers || ok == 0 {
			t.Errorf("kill -9 of one instance: %d ok, %d failed (bound %d): %v", ok, failed, workers, l.failures)
		} else {
			t.Logf("kill -9 of one instance: %d ok, %d failed (bound %d)", ok, failed, workers)
		}
		// back and ready within the probe settings (here: a restart in seconds)
		waitFor(t, 20*time.Second, func() bool { r, _ := instances(t, srv, "blue"); return r == 2 })
		t.Logf("two instances ready again %s after the kill", time.Since(killed).Round(time.Millisecond))
	})
	t.Run("SIGTERMUnderLoad", func(t *testing.T) {
		l := startLoad(t, srv, url, key, 4)
		time.Sleep(500 * time.Millisecond)
		srv.Stop() // SIGTERM: drains in-flight requests, then stops instances
		close(l.stop)
		l.wg.Wait()
		// after the listener closes new connections are refused; what must
		// not happen is an accepted request answered with an error
		for f := range l.failures {
			if !strings.Contains(f, "connection refused") {
				t.Errorf("SIGTERM under load: an accepted request failed: %q (%d ok)", f, l.ok.Load())
			}
		}
		t.Logf("SIGTERM under load: %d ok, failures %v", l.ok.Load(), l.failures)
	})
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("condition not met within %s", d)
}

// TestAutoscaleScalesOutInSeconds: a target_utilization deployment under
// load grows from 1 instance within seconds (the panic window), not minutes.
func TestAutoscaleScalesOutInSeconds(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos: real servers under load")
	}
	python := moetest.Python(t)
	proj := project(t, python)
	srv := moetest.Start(t, t.TempDir(), "--python", python)
	moetest.WriteFile(t, filepath.Join(proj, "code", "slow", "score.py"), "import time\n\ndef init():\n    pass\n\ndef run(raw):\n    time.sleep(0.2)\n    return [1]\n")
	moetest.WriteFile(t, filepath.Join(proj, "yaml", "slow.yml"), deploymentYAML("slow", "slow", "conda.yml", `scale_settings:
  type: target_utilization
  min_instances: 1
  max_instances: 3
  target_utilization_percentage: 70
request_settings:
  max_concurrent_requests_per_instance: 1
`))
	srv.MustCLI("online-endpoint", "create", "-f", filepath.Join(proj, "yaml", "endpoint.yml"))
	srv.MustCLI("online-deployment", "create", "-f", filepath.Join(proj, "yaml", "slow.yml"), "--all-traffic")
	var d struct {
		ReadyInstances int `json:"ready_instances"`
	}
	show := func() int {
		json.Unmarshal([]byte(srv.MustCLI("online-deployment", "show", "-n", "slow", "-e", "my-endpoint")), &d)
		return d.ReadyInstances
	}
	if n := show(); n != 1 {
		t.Fatalf("before load: %d ready, want min_instances 1", n)
	}
	key, _ := srv.Keys("my-endpoint")
	l := startLoad(t, srv, srv.ScoringURL("my-endpoint"), key, 2) // 2 in flight against 1 × 1 slot
	start := time.Now()
	waitFor(t, 20*time.Second, func() bool { return show() == 3 })
	t.Logf("scaled out 1 → 3 instances in %s under load", time.Since(start).Round(100*time.Millisecond))
	ok, failed := l.Stop()
	t.Logf("during scale-out: %d ok, %d answered non-200 (429s are Azure's answer while one instance is saturated): %v", ok, failed, l.failures)
	for f := range l.failures {
		if !strings.HasPrefix(f, "429") {
			t.Errorf("unexpected failure during autoscale: %q", f)
		}
	}
}
