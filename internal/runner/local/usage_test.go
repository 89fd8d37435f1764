package local

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/moe-serving/moe/internal/reconcile"
	"github.com/moe-serving/moe/internal/spec"
	"github.com/moe-serving/moe/internal/store"
)

func TestParseStat(t *testing.T) {
	// comm with a space and a parenthesis, as proc(5) allows
	line := "4242 (python3 (w)) S 4200 4200 4200 0 -1 4194560 1000 0 0 0 250 50 7 3 20 0 3 0 100 200000000 5000 18446744073709551615"
	st, ok := parseStat([]byte(line))
	if !ok {
		t.Fatal("not parsed")
	}
	if st.ppid != 4200 || st.ticks != 250+50+7+3 {
		t.Errorf("got %+v, want ppid 4200 ticks 310", st)
	}
	if _, ok := parseStat([]byte("12 (x) S 1")); ok {
		t.Error("short line parsed")
	}
}

func TestRunner_Usage(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc on this system")
	}
	// a host with two children, like `moe host` with two workers
	cmd := exec.Command("sh", "-c", "sleep 30 & sleep 30 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	r := &Runner{Dir: t.TempDir()}
	r.init()
	rev := store.Revision{Spec: spec.Deployment{InstanceType: "Standard_DS3_v2"}}
	r.mu.Lock()
	r.instances["blue-1"] = &proc{pid: cmd.Process.Pid, spec: reconcile.InstanceSpec{ID: "blue-1", Endpoint: "ep", Deployment: "blue", Revision: rev}}
	r.instances["blue-0"] = &proc{spec: reconcile.InstanceSpec{ID: "blue-0", Endpoint: "ep", Deployment: "blue"}} // not started yet
	r.mu.Unlock()
	t.Cleanup(func() {
		r.mu.Lock()
		clear(r.instances) // not supervised: nothing for Close to stop
		r.mu.Unlock()
		r.Close(context.Background())
	})

	var u []Usage
	for deadline := time.Now().Add(5 * time.Second); ; {
		u = r.Usage()
		if len(u) == 2 && u[1].Processes == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // the shell forks its children
	}
	if len(u) != 2 || u[0].Instance != "blue-0" || u[1].Instance != "blue-1" {
		t.Fatalf("usage = %+v, want blue-0 and blue-1 in order", u)
	}
	if u[0].Processes != 0 || u[0].ResidentBytes != 0 {
		t.Errorf("instance without a process: %+v", u[0])
	}
	got := u[1]
	if got.Processes != 3 {
		t.Errorf("processes = %d, want 3 (sh + 2 sleeps)", got.Processes)
	}
	if got.ResidentBytes < 100<<10 {
		t.Errorf("resident = %d bytes, want the sum of three processes' VmRSS", got.ResidentBytes)
	}
	if got.CPUSeconds < 0 {
		t.Errorf("cpu = %v", got.CPUSeconds)
	}
	if got.CPULimitCores != 4 || got.MemoryLimitBytes != 14<<30 {
		t.Errorf("limits = %v cores, %d bytes; want Standard_DS3_v2's 4 and 14 GiB", got.CPULimitCores, got.MemoryLimitBytes)
	}
	if got.Endpoint != "ep" || got.Deployment != "blue" {
		t.Errorf("names = %q/%q", got.Endpoint, got.Deployment)
	}
}
