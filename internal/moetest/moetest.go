// Package moetest runs a real `moe serve` process for end-to-end tests: it
// builds the moe binary once per test process, starts the server on
// 127.0.0.1:0 with a temporary data dir, and offers helpers to run CLI
// commands and send scoring requests over TLS.
package moetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds ./cmd/moe once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, err := os.MkdirTemp("", "moetest-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "moe")
		// moe, and moe-host beside it (the runner starts instances with it)
		cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/moe", "./cmd/moe-host")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/moe ./cmd/moe-host: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Python returns /usr/bin/python3 when it has scikit-learn, else skips.
func Python(t testing.TB) string {
	t.Helper()
	py := "/usr/bin/python3"
	if p := os.Getenv("MOE_TEST_PYTHON"); p != "" {
		py = p
	}
	if err := exec.Command(py, "-c", "import sklearn, joblib, numpy").Run(); err != nil {
		t.Skipf("%s with scikit-learn is needed (apt-get install python3-sklearn python3-joblib): %v", py, err)
	}
	return py
}

// Server is a running `moe serve` process.
type Server struct {
	Dir     string
	API     string
	Gateway string // host:port
	Domain  string
	Region  string
	Client  *http.Client // trusts the server's CA; scoring hosts dial the gateway
	cmd     *exec.Cmd
	log     *lockedBuffer
	done    chan struct{}
	t       testing.TB
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Start runs `moe serve` on 127.0.0.1:0 with data dir dir (created if
// needed) and waits until its API answers. The server is stopped (SIGTERM)
// when the test ends unless already stopped.
func Start(t testing.TB, dir string, args ...string) *Server {
	t.Helper()
	bin := Binary(t)
	os.MkdirAll(dir, 0o700)
	os.Remove(filepath.Join(dir, "server.json"))
	all := append([]string{"serve", "--data-dir", dir, "--api-addr", "127.0.0.1:0", "--gateway-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--log-level", "debug"}, args...)
	cmd := exec.Command(bin, all...)
	s := &Server{Dir: dir, cmd: cmd, log: &lockedBuffer{}, done: make(chan struct{}), t: t}
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("moe serve log (%s):\n%s", dir, s.log.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "server.json"))
		if err == nil {
			var info struct{ API, Gateway, Region, Domain string }
			if json.Unmarshal(b, &info) == nil {
				s.API, s.Gateway, s.Region, s.Domain = info.API, info.Gateway, info.Region, info.Domain
				break
			}
		}
		select {
		case <-s.done:
			t.Fatalf("moe serve exited early:\n%s", s.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("moe serve did not start in 30s:\n%s", s.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Client = s.newClient()
	return s
}

func (s *Server) newClient() *http.Client {
	ca, err := os.ReadFile(filepath.Join(s.Dir, "pki", "ca.pem"))
	if err != nil {
		s.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	gw := s.Gateway
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 64,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if host, _, _ := net.SplitHostPort(addr); strings.HasSuffix(host, "."+s.Domain) {
				return d.DialContext(ctx, network, gw)
			}
			return d.DialContext(ctx, network, addr)
		},
	}}
}

// Log returns what the server wrote so far.
func (s *Server) Log() string { return s.log.String() }

// Stop sends SIGTERM and waits (up to 60s, then kills).
func (s *Server) Stop() {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// Kill sends SIGKILL and waits.
func (s *Server) Kill() {
	s.cmd.Process.Kill()
	<-s.done
}

// CLI runs the moe binary with --data-dir set and returns stdout, stderr
// and the exit code.
func (s *Server) CLI(args ...string) (stdout, stderr string, code int) {
	s.t.Helper()
	cmd := exec.Command(Binary(s.t), append(args, "--data-dir", s.Dir)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.Stdin = strings.NewReader("")
	err := cmd.Run()
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatal(err)
	}
	return o.String(), e.String(), code
}

// MustCLI is CLI that fails the test on a non-zero exit.
func (s *Server) MustCLI(args ...string) string {
	s.t.Helper()
	out, errOut, code := s.CLI(args...)
	if code != 0 {
		s.t.Fatalf("moe %s: exit %d\nstdout: %s\nstderr: %s\nserver log:\n%s", strings.Join(args, " "), code, out, errOut, s.Log())
	}
	return out
}

// Keys returns an endpoint's primary and secondary keys via get-credentials.
func (s *Server) Keys(endpoint string) (primary, secondary string) {
	s.t.Helper()
	var k struct{ PrimaryKey, SecondaryKey string }
	if err := json.Unmarshal([]byte(s.MustCLI("online-endpoint", "get-credentials", "-n", endpoint)), &k); err != nil {
		s.t.Fatal(err)
	}
	return k.PrimaryKey, k.SecondaryKey
}

// ScoringURL is the host-routed scoring URL of an endpoint.
func (s *Server) ScoringURL(endpoint string) string {
	_, port, _ := net.SplitHostPort(s.Gateway)
	return fmt.Sprintf("https://%s.%s.inference.%s:%s/score", endpoint, s.Region, s.Domain, port)
}

// Score posts body to url with the bearer credential (if any) and extra
// headers; it returns the response (body read) and the body.
func (s *Server) Score(url, bearer string, body []byte, headers ...string) (*http.Response, []byte) {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := s.Client.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// WriteFile writes a file, creating folders.
func WriteFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TrainModel trains a LinearRegression like the Azure sample's model and
// saves it to dir/model/sklearn_regression_model.pkl.
func TrainModel(t testing.TB, python, dir string) {
	t.Helper()
	os.MkdirAll(filepath.Join(dir, "model"), 0o755)
	script := `
import sys, joblib, numpy as np
from sklearn.linear_model import LinearRegression
X = np.arange(100, dtype=float).reshape(10, 10)
y = X.sum(axis=1) * 2 + 1
joblib.dump(LinearRegression().fit(X, y), sys.argv[1])
`
	out, err := exec.Command(python, "-c", script, filepath.Join(dir, "model", "sklearn_regression_model.pkl")).CombinedOutput()
	if err != nil {
		t.Fatalf("train model: %v\n%s", err, out)
	}
}

// ScoreScript is the Azure sample's score.py shape for TrainModel's model.
const ScoreScript = `import json, os
import joblib, numpy

def init():
    global model
    model = joblib.load(os.path.join(os.getenv("AZUREML_MODEL_DIR"), "model/sklearn_regression_model.pkl"))
    print("init done")

def run(raw_data):
    data = numpy.array(json.loads(raw_data)["data"])
    return model.predict(data).tolist()
`
