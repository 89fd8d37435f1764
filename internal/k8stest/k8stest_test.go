package k8stest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	// a zombie is dead for our purpose
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(b), ") Z ")
}

// TestStartStop: a cluster answers with the built version, and Stop leaves
// no process and no folder behind.
func TestStartStop(t *testing.T) {
	if !Enabled() {
		t.Skipf("set %s=1 after scripts/k8s-build", EnvGate)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.Client.Discovery().ServerVersion()
	if err != nil || v.GitVersion != "v"+K8sVersion {
		t.Errorf("server version %v %v", v, err)
	}
	var pids []int
	for _, p := range c.procs {
		pids = append(pids, p.cmd.Process.Pid)
	}
	c.Stop()
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("pid %d still running after Stop", pid)
		}
	}
	if _, err := os.Stat(c.Dir); !os.IsNotExist(err) {
		t.Errorf("%s still there: %v", c.Dir, err)
	}
}

// TestNoOrphans: when the test process dies without cleaning up (kill -9,
// a -timeout panic), the control plane dies with it, and the next Start
// removes its folder.
func TestNoOrphans(t *testing.T) {
	if os.Getenv("MOE_K8STEST_HELPER") == "1" {
		c, err := Start(context.Background(), Options{})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		for _, p := range c.procs {
			fmt.Println("pid", p.cmd.Process.Pid)
		}
		fmt.Println("dir", c.Dir)
		fmt.Println("ready")
		time.Sleep(time.Minute) // killed by the parent
		os.Exit(0)
	}
	if !Enabled() {
		t.Skipf("set %s=1 after scripts/k8s-build", EnvGate)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestNoOrphans$", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), "MOE_K8STEST_HELPER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pids []int
	dir := ""
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "pid":
			pid, _ := strconv.Atoi(f[1])
			pids = append(pids, pid)
		case "dir":
			dir = f[1]
		case "error":
			t.Fatal(sc.Text())
		}
		if f[0] == "ready" {
			break
		}
	}
	if len(pids) != 2 || dir == "" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper: pids %v dir %q", pids, dir)
	}
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				syscall.Kill(pid, syscall.SIGKILL)
				t.Fatalf("pid %d outlived its test process", pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	sweep()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("sweep left %s: %v", dir, err)
	}
}
