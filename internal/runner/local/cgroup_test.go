package local

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moe-serving/moe/internal/sku"
)

// The kernel's cgroup filesystem is replaced by a plain folder with the same
// files: this tests what moe writes, not the kernel's enforcement (which
// needs a machine that delegates cpu and memory controllers; this one
// does not, and moe then reports advisory limits — tested below too).
func TestCgroupsEnforced(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpuset cpu io memory pids\n"), 0o644)
	c := &Cgroups{Root: root}
	c.Setup()
	if c.Why != "" {
		t.Fatalf("advisory on a root with controllers: %s", c.Why)
	}
	s, _ := sku.Lookup("Standard_DS3_v2")
	desc, err := c.Apply("blue-abc", 4242, s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(desc, "enforced: 4 vCPU, 14 GB") {
		t.Errorf("desc = %q", desc)
	}
	for file, want := range map[string]string{"cpu.max": "400000 100000", "memory.max": "15032385536", "cgroup.procs": "4242"} {
		got, _ := os.ReadFile(filepath.Join(root, "moe", "blue-abc", file))
		if string(got) != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if got, _ := os.ReadFile(filepath.Join(root, "moe", "cgroup.subtree_control")); string(got) != "+cpu +memory" {
		t.Errorf("controllers not enabled for children: %q", got)
	}
}

func TestCgroupsAdvisory(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("hugetlb\n"), 0o644)
	c := &Cgroups{Root: root}
	c.Setup()
	s, _ := sku.Lookup("Standard_F2s_v2")
	desc, err := c.Apply("x", 1, s)
	if err != nil || !strings.Contains(desc, "advisory") || !strings.Contains(desc, "2 vCPU, 4 GB") {
		t.Errorf("Apply = %q, %v; want an advisory description", desc, err)
	}
	c2 := &Cgroups{Root: filepath.Join(root, "missing")}
	c2.Setup()
	if !strings.Contains(c2.Why, "advisory") {
		t.Errorf("no hierarchy: Why = %q", c2.Why)
	}
}
