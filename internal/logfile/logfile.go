// Package logfile is a size-bounded, rotating log file writer: when the file
// passes MaxBytes it becomes .1 (older ones shift to .2 ... .Keep) and a new
// file starts, so instance logs never grow without bound.
package logfile

import (
	"fmt"
	"os"
	"sync"
)

// Writer appends to Path and rotates it. It is safe for concurrent use.
type Writer struct {
	Path string
	// MaxBytes bounds one file; default 10 MiB.
	MaxBytes int64
	// Keep is how many rotated files to keep; default 3.
	Keep int

	mu   sync.Mutex
	f    *os.File
	size int64
}

// Open opens (appending) or creates the file.
func Open(path string, maxBytes int64, keep int) (*Writer, error) {
	w := &Writer{Path: path, MaxBytes: maxBytes, Keep: keep}
	if w.MaxBytes <= 0 {
		w.MaxBytes = 10 << 20
	}
	if w.Keep <= 0 {
		w.Keep = 3
	}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *Writer) open() error {
	f, err := os.OpenFile(w.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log %s: %w", w.Path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	w.f, w.size = f, fi.Size()
	return nil
}

// Write appends p, rotating first if p would pass MaxBytes.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return 0, os.ErrClosed
	}
	if w.size > 0 && w.size+int64(len(p)) > w.MaxBytes {
		if err := w.rotate(); err != nil {
			return 0, err
		}
	}
	n, err := w.f.Write(p)
	w.size += int64(n)
	return n, err
}

func (w *Writer) rotate() error {
	w.f.Close()
	for i := w.Keep - 1; i >= 1; i-- {
		os.Rename(fmt.Sprintf("%s.%d", w.Path, i), fmt.Sprintf("%s.%d", w.Path, i+1))
	}
	os.Rename(w.Path, w.Path+".1")
	return w.open()
}

// Close closes the file.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}
