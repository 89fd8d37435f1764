package local

import (
	"bytes"
	"os"
	"sort"
	"strconv"

	"github.com/moe-serving/moe/internal/sku"
)

// Usage is one instance's resource use at the moment it was read: its
// `moe host` process and every descendant (the Python workers), summed.
type Usage struct {
	Instance, Endpoint, Deployment string
	// CPUSeconds is user + system CPU time of the live processes plus that
	// of the children they have reaped (workers that were restarted). It
	// only grows while the host lives, and starts again from zero when the
	// host is restarted.
	CPUSeconds float64
	// ResidentBytes is the sum of the processes' VmRSS (pages shared between
	// host and workers count once per process).
	ResidentBytes int64
	// Processes is the number of live processes (host + workers); 0 when
	// the host is not running (starting, or the platform has no /proc).
	Processes int
	// CPULimitCores and MemoryLimitBytes are the instance type's vCPUs and
	// memory (0 when the instance type is unknown), enforced or advisory.
	CPULimitCores    float64
	MemoryLimitBytes int64
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat CPU times; Linux
// fixes it at 100 for user space on every architecture moe runs on.
const clockTicks = 100

// Usage reads every instance's CPU and memory use from /proc, ordered by
// instance ID. It scans /proc once (a few milliseconds for hundreds of
// processes), so call it at scrape time, not per request. On systems without
// /proc the figures are zero. It is safe for concurrent use.
func (r *Runner) Usage() []Usage {
	r.init()
	type host struct {
		u   Usage
		pid int
	}
	r.mu.Lock()
	hosts := make([]host, 0, len(r.instances))
	for _, p := range r.instances {
		h := host{pid: p.pid, u: Usage{Instance: p.spec.ID, Endpoint: p.spec.Endpoint, Deployment: p.spec.Deployment}}
		if p.exited != nil {
			select {
			case <-p.exited:
				h.pid = 0 // exited, not yet restarted
			default:
			}
		}
		if s, ok := sku.Lookup(p.spec.Revision.Spec.InstanceType); ok {
			h.u.CPULimitCores, h.u.MemoryLimitBytes = float64(s.VCPU), s.MemoryBytes()
		}
		hosts = append(hosts, h)
	}
	r.mu.Unlock()
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].u.Instance < hosts[j].u.Instance })

	procs := readProcs("/proc")
	children := make(map[int][]int, len(procs))
	for pid, st := range procs {
		children[st.ppid] = append(children[st.ppid], pid)
	}
	out := make([]Usage, len(hosts))
	for i, h := range hosts {
		out[i] = h.u
		if h.pid <= 0 {
			continue
		}
		if _, ok := procs[h.pid]; !ok {
			continue
		}
		var ticks uint64
		for _, pid := range tree(h.pid, children) {
			st := procs[pid]
			ticks += st.ticks
			out[i].Processes++
			out[i].ResidentBytes += residentBytes("/proc", pid)
		}
		out[i].CPUSeconds = float64(ticks) / clockTicks
	}
	return out
}

// procStat is what Usage needs from /proc/<pid>/stat.
type procStat struct {
	ppid  int
	ticks uint64 // utime + stime + cutime + cstime
}

// readProcs reads the stat file of every process under root (/proc).
func readProcs(root string) map[int]procStat {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil
	}
	out := make(map[int]procStat, len(entries))
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		b, err := os.ReadFile(root + "/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		if st, ok := parseStat(b); ok {
			out[pid] = st
		}
	}
	return out
}

// parseStat parses /proc/<pid>/stat: "pid (comm) state ppid pgrp ... utime
// stime cutime cstime ..." (proc(5)); comm may hold spaces and parentheses,
// so fields are counted from the last ')'.
func parseStat(b []byte) (procStat, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state): field n is f[n-3]
	if len(f) < 15 {
		return procStat{}, false
	}
	ppid, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return procStat{}, false
	}
	var st procStat
	st.ppid = ppid
	for _, n := range []int{14, 15, 16, 17} { // utime stime cutime cstime
		v, err := strconv.ParseInt(string(f[n-3]), 10, 64)
		if err != nil {
			return procStat{}, false
		}
		if v > 0 {
			st.ticks += uint64(v)
		}
	}
	return st, true
}

// tree returns pid and all its descendants.
func tree(pid int, children map[int][]int) []int {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// residentBytes reads VmRSS from /proc/<pid>/status (0 if unreadable or a
// kernel thread).
func residentBytes(root string, pid int) int64 {
	b, err := os.ReadFile(root + "/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for line := range bytes.SplitSeq(b, []byte{'\n'}) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest) // "123456 kB"
		if len(f) == 0 {
			return 0
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0
		}
		return kb << 10
	}
	return 0
}
