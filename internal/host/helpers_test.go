package host

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testPython returns the interpreter the end-to-end tests use:
// MOE_TEST_PYTHON if set, else /usr/bin/python3 (which has numpy,
// scikit-learn, pandas and joblib here). Tests skip if it is missing.
func testPython(t testing.TB) string {
	t.Helper()
	p := os.Getenv("MOE_TEST_PYTHON")
	if p == "" {
		p = "/usr/bin/python3"
	}
	if _, err := exec.LookPath(p); err != nil {
		t.Skipf("no Python interpreter at %s (set MOE_TEST_PYTHON): %v", p, err)
	}
	return p
}

// syncBuffer is a goroutine-safe bytes.Buffer for captured worker output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testHost is a running host started by startHost.
type testHost struct {
	URL    string
	Stderr *syncBuffer
	Cfg    Config
	cancel context.CancelFunc
	done   chan error
}

// Stop cancels the host and returns Run's error.
func (th *testHost) Stop(t testing.TB) error {
	t.Helper()
	th.cancel()
	select {
	case err := <-th.done:
		th.done <- err // for the cleanup
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("host did not stop within 30s")
		return nil
	}
}

// writeScript writes score.py (and any extra files) into a new code dir.
func writeScript(t testing.TB, src string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "score.py"), []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startHost runs Run in the background with a real Python worker and waits
// until /-/ready answers 200. Fields of cfg left empty get test defaults.
func startHost(t testing.TB, cfg Config) *testHost {
	t.Helper()
	th, err := startHostErr(t, cfg)
	if err != nil {
		t.Fatalf("host did not become ready: %v\nworker output:\n%s", err, th.Stderr)
	}
	return th
}

func startHostErr(t testing.TB, cfg Config) (*testHost, error) {
	t.Helper()
	if cfg.Python == "" {
		cfg.Python = testPython(t)
	}
	if cfg.ScoringScript == "" {
		cfg.ScoringScript = "score.py"
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	tmp := t.TempDir()
	if cfg.AddrFile == "" {
		cfg.AddrFile = filepath.Join(tmp, "addr")
	}
	stderr := &syncBuffer{}
	if cfg.Stderr == nil {
		cfg.Stderr = stderr
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	th := &testHost{Stderr: stderr, Cfg: cfg, cancel: cancel, done: make(chan error, 1)}
	go func() { th.done <- Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-th.done:
		case <-time.After(30 * time.Second):
			t.Error("host did not stop within 30s")
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(cfg.AddrFile); err == nil && len(b) > 0 && th.URL == "" {
			th.URL = "http://" + string(b)
		}
		if th.URL != "" {
			resp, err := http.Get(th.URL + "/-/ready")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return th, nil
				}
			}
		}
		select {
		case err := <-th.done:
			th.done <- err
			return th, err
		case <-time.After(20 * time.Millisecond):
		}
	}
	return th, context.DeadlineExceeded
}

// do sends a request and returns status, headers and body.
func do(t testing.TB, method, url, body string, hdr map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}
