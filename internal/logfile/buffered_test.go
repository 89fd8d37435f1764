package logfile

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

type countingWriter struct {
	mu     sync.Mutex
	writes int
	buf    bytes.Buffer
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	return c.buf.Write(p)
}

func (c *countingWriter) snapshot() (int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes, c.buf.String()
}

func TestBufferedBatchesAndFlushes(t *testing.T) {
	cw := &countingWriter{}
	b := NewBuffered(cw, 50*time.Millisecond)
	for i := range 1000 {
		b.Write([]byte("line " + strings.Repeat("x", i%10) + "\n"))
	}
	if n, _ := cw.snapshot(); n > 1 {
		t.Errorf("%d writes for 1000 small lines before the interval; want them batched", n)
	}
	time.Sleep(150 * time.Millisecond)
	if _, s := cw.snapshot(); strings.Count(s, "\n") != 1000 {
		t.Errorf("after the interval %d lines reached the writer, want 1000", strings.Count(s, "\n"))
	}
	b.Write([]byte("last\n"))
	b.Close()
	if _, s := cw.snapshot(); !strings.HasSuffix(s, "last\n") {
		t.Error("Close did not flush")
	}
	b.Close() // twice is fine
}
