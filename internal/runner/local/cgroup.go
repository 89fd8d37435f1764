package local

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moe-serving/moe/internal/sku"
)

// Cgroups enforces an instance's SKU (vCPU, memory) with cgroup v2 where the
// machine delegates the cpu and memory controllers to us; elsewhere limits
// are advisory and say so.
type Cgroups struct {
	// Root is the cgroup v2 mount; default /sys/fs/cgroup.
	Root string
	// parent is Root/moe once set up; "" when limits are advisory.
	parent string
	// Why explains advisory mode.
	Why string
}

// Setup checks for cgroup v2 with cpu and memory controllers and creates
// the moe parent group with them enabled for its children.
func (c *Cgroups) Setup() {
	if c.Root == "" {
		c.Root = "/sys/fs/cgroup"
	}
	b, err := os.ReadFile(filepath.Join(c.Root, "cgroup.controllers"))
	if err != nil {
		c.Why = "advisory: no cgroup v2 hierarchy at " + c.Root
		return
	}
	ctrls := strings.Fields(string(b))
	if !contains(ctrls, "cpu") || !contains(ctrls, "memory") {
		c.Why = fmt.Sprintf("advisory: cgroup v2 at %s does not offer the cpu and memory controllers (has %q)", c.Root, strings.Join(ctrls, " "))
		return
	}
	parent := filepath.Join(c.Root, "moe")
	if err := os.MkdirAll(parent, 0o755); err != nil {
		c.Why = "advisory: cannot create " + parent + ": " + err.Error()
		return
	}
	// controllers must be enabled in the parent's parent and the parent
	for _, dir := range []string{c.Root, parent} {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+cpu +memory"), 0o644); err != nil {
			c.Why = "advisory: cannot enable cpu and memory controllers in " + dir + ": " + err.Error()
			return
		}
	}
	c.parent = parent
}

// Apply puts pid into a group for instance id limited to s. It returns a
// human description of the limits ("enforced: 4 vCPU, 14 GB (cgroup v2)" or
// the advisory reason).
func (c *Cgroups) Apply(id string, pid int, s sku.SKU) (string, error) {
	desc := fmt.Sprintf("%d vCPU, %g GB", s.VCPU, s.MemoryGB)
	if c.parent == "" {
		return desc + " " + c.Why, nil
	}
	dir := filepath.Join(c.parent, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("cgroup for instance %s: %w", id, err)
	}
	const period = 100000
	writes := []struct{ file, value string }{
		{"cpu.max", strconv.FormatInt(int64(s.VCPU)*period, 10) + " " + strconv.Itoa(period)},
		{"memory.max", strconv.FormatInt(s.MemoryBytes(), 10)},
		{"cgroup.procs", strconv.Itoa(pid)},
	}
	for _, w := range writes {
		if err := os.WriteFile(filepath.Join(dir, w.file), []byte(w.value), 0o644); err != nil {
			return "", fmt.Errorf("cgroup for instance %s: write %s: %w", id, w.file, err)
		}
	}
	return "enforced: " + desc + " (cgroup v2)", nil
}

// Remove deletes an instance's group (after its processes exited).
func (c *Cgroups) Remove(id string) {
	if c.parent != "" {
		os.Remove(filepath.Join(c.parent, id))
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
