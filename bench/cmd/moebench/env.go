package main

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Bench holds one session: the work folder, the processes it started and
// everything measured.
type Bench struct {
	Repo, Work, Moe, Self, Py string
	Quick                     bool
	Rev                       string
	R                         *Results
	procs                     []*exec.Cmd
	ca                        *x509.CertPool
	serveDir, gwAddr          string
	servePID                  int
	retryBudget, gateBudget   time.Duration
	log                       *os.File
}

func (b *Bench) logf(format string, a ...any) {
	msg := fmt.Sprintf(time.Now().Format("15:04:05 ")+format, a...)
	fmt.Fprintln(os.Stderr, msg)
	if b.log != nil {
		fmt.Fprintln(b.log, msg)
	}
}

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs a command in its own process group, output to logName.
func (b *Bench) start(logName string, env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = b.Repo
	cmd.Env = append(os.Environ(), env...)
	f, err := os.Create(filepath.Join(b.Work, logName))
	if err != nil {
		panic(err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		panic(fmt.Sprintf("start %s: %v", name, err))
	}
	b.procs = append(b.procs, cmd)
	return cmd
}

// stop ends a process group we started (SIGTERM, then SIGKILL after 10 s).
func (b *Bench) stop(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	pgid := cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-done
	}
	for i, c := range b.procs {
		if c == cmd {
			b.procs = append(b.procs[:i], b.procs[i+1:]...)
			break
		}
	}
}

func (b *Bench) stopAll() {
	for len(b.procs) > 0 {
		b.stop(b.procs[len(b.procs)-1])
	}
}

func waitFile(path string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if bs, err := os.ReadFile(path); err == nil && len(bytes.TrimSpace(bs)) > 0 {
			return strings.TrimSpace(string(bs)), nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return "", fmt.Errorf("%s did not appear in %s", path, timeout)
}

// waitHTTP polls url until it answers 200 (GET).
func waitHTTP(url string, timeout time.Duration) error {
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s not answering 200 after %s", url, timeout)
}

// cli runs the moe CLI against the bench server.
func (b *Bench) cli(args ...string) (string, error) {
	cmd := exec.Command(b.Moe, args...)
	cmd.Dir = b.Work
	cmd.Env = append(os.Environ(), "MOE_HOME="+b.serveDir)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.Stdin = strings.NewReader("")
	if err := cmd.Run(); err != nil {
		return o.String(), fmt.Errorf("moe %s: %v\n%s%s", strings.Join(args, " "), err, o.String(), e.String())
	}
	return o.String(), nil
}

func (b *Bench) mustCLI(args ...string) string {
	out, err := b.cli(args...)
	if err != nil {
		panic(err)
	}
	return out
}

func (b *Bench) key(endpoint string) string {
	var k struct{ PrimaryKey string }
	if err := json.Unmarshal([]byte(b.mustCLI("online-endpoint", "get-credentials", "-n", endpoint)), &k); err != nil {
		panic(err)
	}
	return k.PrimaryKey
}

// model describes a scoring folder and model folder.
type model struct{ name, code, script, modelDir string }

func (b *Bench) models() map[string]model {
	ex := filepath.Join(b.Repo, "example")
	return map[string]model{
		"sklearn": {"sklearn", filepath.Join(ex, "onlinescoring"), "score.py", filepath.Join(ex, "generated")},
		"sleep":   {"sleep", filepath.Join(b.Repo, "bench", "models", "sleep"), "score.py", filepath.Join(ex, "generated")},
		"size":    {"size", filepath.Join(b.Repo, "bench", "models", "size"), "score.py", filepath.Join(ex, "generated")},
	}
}

// writeDeployment writes endpoint and deployment YAML (Azure's schema) for
// model m and returns the deployment file.
func (b *Bench) writeDeployment(endpoint, dep string, m model, workers, instances int) string {
	dir := filepath.Join(b.Work, "yaml")
	os.MkdirAll(dir, 0o755)
	ep := filepath.Join(dir, endpoint+".yml")
	os.WriteFile(ep, []byte(fmt.Sprintf("$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json\nname: %s\nauth_mode: key\n", endpoint)), 0o644)
	y := fmt.Sprintf(`$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json
name: %s
endpoint_name: %s
model:
  path: %s/model/
code_configuration:
  code: %s/
  scoring_script: %s
environment:
  conda_file: %s
  image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest
instance_type: Standard_DS3_v2
instance_count: %d
environment_variables:
  WORKER_COUNT: "%d"
request_settings:
  request_timeout_ms: 60000
  max_concurrent_requests_per_instance: 1000
`, dep, endpoint, m.modelDir, m.code, m.script, filepath.Join(b.Repo, "example", "conda.yml"), instances, workers)
	f := filepath.Join(dir, endpoint+"-"+dep+".yml")
	os.WriteFile(f, []byte(y), 0o644)
	return f
}

// instance is one running moe host of the bench server.
type instance struct {
	ID, Addr string
	PID      int
}

func (b *Bench) instances(endpoint, dep string) []instance {
	var out []instance
	files, _ := filepath.Glob(filepath.Join(b.serveDir, "instances", "*", "state.json"))
	for _, f := range files {
		var st struct {
			Spec struct{ ID, Endpoint, Deployment string }
			PID  int
			Addr string
		}
		bs, err := os.ReadFile(f)
		if err != nil || json.Unmarshal(bs, &st) != nil {
			continue
		}
		if st.Spec.Endpoint == endpoint && st.Spec.Deployment == dep {
			if syscall.Kill(st.PID, 0) == nil {
				out = append(out, instance{st.Spec.ID, st.Addr, st.PID})
			}
		}
	}
	return out
}

// startServe starts `moe serve` with its data in dir.
func (b *Bench) startServe(dir, logName string) (*exec.Cmd, map[string]any) {
	os.MkdirAll(dir, 0o700)
	os.Remove(filepath.Join(dir, "server.json"))
	cmd := b.start(logName, nil, b.Moe, "serve", "--data-dir", dir, "--api-addr", "127.0.0.1:0", "--gateway-addr", "127.0.0.1:0", "--python", b.Py)
	if _, err := waitFile(filepath.Join(dir, "server.json"), 60*time.Second); err != nil {
		panic(err)
	}
	var info map[string]any
	bs, _ := os.ReadFile(filepath.Join(dir, "server.json"))
	json.Unmarshal(bs, &info)
	return cmd, info
}

func (b *Bench) loadCA() {
	pem, err := os.ReadFile(filepath.Join(b.serveDir, "pki", "ca.pem"))
	if err != nil {
		panic(err)
	}
	b.ca = x509.NewCertPool()
	b.ca.AppendCertsFromPEM(pem)
}

// Targets.

func (b *Bench) gatewayTarget(name, endpoint, key string, body []byte) *Target {
	_, port, _ := net.SplitHostPort(b.gwAddr)
	return &Target{Name: name, URL: fmt.Sprintf("https://%s.local.inference.localhost:%s/score", endpoint, port), Addr: b.gwAddr,
		Headers: map[string]string{"Authorization": "Bearer " + key}, Body: body, CA: b.ca}
}

func plainTarget(name, addr, path string, body []byte) *Target {
	return &Target{Name: name, URL: "http://" + addr + path, Addr: addr, Body: body}
}

func (b *Bench) tlsTarget(name, addr, hostname, path string, body []byte, headers map[string]string) *Target {
	_, port, _ := net.SplitHostPort(addr)
	return &Target{Name: name, URL: "https://" + hostname + ":" + port + path, Addr: addr, Body: body, CA: b.ca, Headers: headers}
}

// gunicorn starts the Flask baseline for model m with n workers.
func (b *Bench) gunicorn(m model, n int) (*exec.Cmd, string, time.Duration) {
	port := freePort()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	t0 := time.Now()
	cmd := b.start(fmt.Sprintf("gunicorn-%s-w%d.log", m.name, n),
		[]string{"AML_APP_ROOT=" + m.code, "AZUREML_ENTRY_SCRIPT=" + m.script, "AZUREML_MODEL_DIR=" + m.modelDir},
		"/usr/bin/gunicorn", "-k", "sync", "-w", strconv.Itoa(n), "-b", addr, "--timeout", "300",
		"--chdir", filepath.Join(b.Repo, "bench", "baselines"), "azmlsrv:app")
	if err := waitScore(addr, 60*time.Second); err != nil {
		panic(fmt.Sprintf("gunicorn %s: %v (see %s)", m.name, err, cmd.Stdout.(*os.File).Name()))
	}
	d := time.Since(t0)
	// every worker must be up, not only the first
	for time.Since(t0) < 60*time.Second && len(children(cmd.Process.Pid)) < n {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	return cmd, addr, d
}

// waitScore polls POST /score with the sample body until it answers 200.
func waitScore(addr string, timeout time.Duration) error {
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := c.Post("http://"+addr+"/score", "application/json", strings.NewReader(sampleBody))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("no 200 from %s/score in %s", addr, timeout)
}

const sampleBody = `{"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]}`

func poolFromPEM(pem []byte) *x509.CertPool {
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(pem)
	return p
}
