package logfile

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestRotationIsBounded(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "instance.log")
	w, err := Open(path, 1000, 2)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 500 {
				fmt.Fprintf(w, "goroutine %d line %04d\n", g, i)
			}
		})
	}
	wg.Wait()
	w.Close()
	entries, _ := os.ReadDir(dir)
	var total int64
	for _, e := range entries {
		fi, _ := e.Info()
		total += fi.Size()
		if fi.Size() > 1000 {
			t.Errorf("%s is %d bytes, over the 1000 limit", e.Name(), fi.Size())
		}
	}
	if len(entries) != 3 || total > 3000 {
		t.Errorf("%d files, %d bytes; want the live file + 2 rotated, at most 3000 bytes", len(entries), total)
	}
	last, _ := os.ReadFile(path)
	if !strings.HasSuffix(string(last), "line 0499\n") {
		t.Errorf("the live file does not end with the newest line: %q", last[max(0, len(last)-40):])
	}
	// lines are never split across files
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			if !strings.HasPrefix(l, "goroutine ") {
				t.Fatalf("%s holds a broken line %q", e.Name(), l)
			}
		}
	}
}

func TestReopenAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.log")
	w, _ := Open(path, 100, 1)
	w.Write([]byte("one\n"))
	w.Close()
	w, _ = Open(path, 100, 1)
	w.Write([]byte("two\n"))
	w.Close()
	if b, _ := os.ReadFile(path); string(b) != "one\ntwo\n" {
		t.Errorf("got %q", b)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("write after close succeeded")
	}
}
