package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const clkTck = 100 // USER_HZ on Linux

// cpuSnap is the machine's busy time and the busy time of this process and
// every descendant (servers, workers, nginx, Python), in clock ticks.
type cpuSnap struct {
	at          time.Time
	total, ours int64
}

func takeCPU() cpuSnap {
	s := cpuSnap{at: time.Now()}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := bytes.Cut(b, []byte("\n"))
		f := strings.Fields(string(line))
		// user nice system idle iowait irq softirq steal: irq and softirq
		// are left out, because the kernel's loopback network work for the
		// benchmark's own traffic lands there, not in any process's time.
		for i, v := range f[1:] {
			if i == 3 || i == 4 || i == 5 || i == 6 || i >= 8 {
				continue
			}
			n, _ := strconv.ParseInt(v, 10, 64)
			s.total += n
		}
	}
	type pst struct {
		ppid int
		cpu  int64
	}
	procs := map[int]pst{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		procs[pid] = pst{ppid, ut + st}
	}
	self := os.Getpid()
	memo := map[int]bool{}
	var isOurs func(pid, depth int) bool
	isOurs = func(pid, depth int) bool {
		if pid == self {
			return true
		}
		if v, ok := memo[pid]; ok {
			return v
		}
		p, ok := procs[pid]
		v := ok && depth < 64 && p.ppid > 1 && isOurs(p.ppid, depth+1)
		memo[pid] = v
		return v
	}
	for pid, p := range procs {
		if isOurs(pid, 0) {
			s.ours += p.cpu
		}
	}
	return s
}

// foreignCores is the average number of cores used by processes outside
// the benchmark between a and b (other engineers' builds and tests).
func foreignCores(a, b cpuSnap) float64 {
	sec := b.at.Sub(a.at).Seconds()
	if sec <= 0 {
		return 0
	}
	f := float64((b.total-a.total)-(b.ours-a.ours)) / clkTck / sec
	if f < 0 {
		f = 0
	}
	return f
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func uptimeLine() string {
	out, err := exec.Command("uptime").Output()
	if err != nil {
		return "load average: " + loadavg()
	}
	return strings.TrimSpace(string(out))
}

// rssKB is a process's resident set (VmRSS) in KiB.
func rssKB(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// children lists the direct children of pid.
func children(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, p)
		}
	}
	return out
}

func memTotalMB() int64 {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n / 1024
		}
	}
	return 0
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "?"
}

// procTicks is a process's user+system CPU time in clock ticks (threads
// included; children not).
func procTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ut + st
}
