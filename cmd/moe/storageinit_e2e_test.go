package main

// `moe storage-init` as a real process against a real `moe serve` on
// loopback (local runner: the artifact API is the same; the admin
// credential stands in for a per-deployment one, which
// TestKubernetesArtifactCredential covers against a real API server).

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moe-serving/moe/internal/artifact"
	"github.com/moe-serving/moe/internal/auth"
	"github.com/moe-serving/moe/internal/moetest"
	k8srunner "github.com/moe-serving/moe/internal/runner/kubernetes"
)

// uploadTar packs src and POSTs it to the server's artifact API.
func uploadTar(t *testing.T, srv *moetest.Server, src string, keepBase bool) string {
	t.Helper()
	var buf bytes.Buffer
	if _, err := artifact.Pack(&buf, src, keepBase); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, srv.API+"/v1/artifacts", &buf)
	req.Header.Set("Authorization", "Bearer "+adminToken(t, srv.Dir))
	resp, err := srv.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ref struct{ Digest string }
	if err := json.NewDecoder(resp.Body).Decode(&ref); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload %s: %d %v", src, resp.StatusCode, err)
	}
	return ref.Digest
}

func adminToken(t *testing.T, dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, auth.AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// storageInitRun runs `moe storage-init` with the runner's environment
// contract; it returns the exit code, output and termination message.
func storageInitRun(t *testing.T, apiURL, caFile, credential string, digests map[string]string) (root string, code int, out, termMsg string) {
	t.Helper()
	root = t.TempDir()
	cred := filepath.Join(root, "token")
	moetest.WriteFile(t, cred, credential+"\n")
	term := filepath.Join(root, "termination-log")
	moetest.WriteFile(t, term, "")
	for _, d := range []string{"bin", "model", "code"} {
		os.MkdirAll(filepath.Join(root, d), 0o777)
	}
	cmd := exec.Command(moetest.Binary(t), "storage-init", "--termination-log", term)
	cmd.Env = append(os.Environ(),
		k8srunner.EnvControlPlaneURL+"="+apiURL,
		k8srunner.EnvCredentialFile+"="+cred,
		k8srunner.EnvControlPlaneCA+"="+caFile,
		k8srunner.EnvBinDir+"="+filepath.Join(root, "bin"),
		k8srunner.EnvModelDigest+"="+digests["model"],
		k8srunner.EnvCodeDigest+"="+digests["code"],
		k8srunner.EnvModelDir+"="+filepath.Join(root, "model"),
		k8srunner.EnvCodeDir+"="+filepath.Join(root, "code"),
	)
	b, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	tm, _ := os.ReadFile(term)
	return root, code, string(b), strings.TrimSpace(string(tm))
}

func TestStorageInit(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: starts moe serve")
	}
	srv := moetest.Start(t, t.TempDir())
	proj := t.TempDir()
	moetest.WriteFile(t, filepath.Join(proj, "model", "weights.bin"), "0123456789")
	moetest.WriteFile(t, filepath.Join(proj, "model", "sub", "vocab.txt"), "a\nb\n")
	moetest.WriteFile(t, filepath.Join(proj, "code", "score.py"), "def init():\n    pass\n")
	digests := map[string]string{
		"model": uploadTar(t, srv, filepath.Join(proj, "model"), true),
		"code":  uploadTar(t, srv, filepath.Join(proj, "code"), false),
	}
	ca := filepath.Join(srv.Dir, "pki", "ca.pem")

	t.Run("downloads, verifies, unpacks and copies moe", func(t *testing.T) {
		root, code, out, term := storageInitRun(t, srv.API, ca, adminToken(t, srv.Dir), digests)
		if code != 0 {
			t.Fatalf("exit %d: %s (termination message %q)", code, out, term)
		}
		for path, want := range map[string]string{
			"model/model/weights.bin":   "0123456789",
			"model/model/sub/vocab.txt": "a\nb\n",
			"code/score.py":             "def init():\n    pass\n",
		} {
			if b, err := os.ReadFile(filepath.Join(root, path)); err != nil || string(b) != want {
				t.Errorf("%s: %q %v, want %q", path, b, err, want)
			}
		}
		if v, err := exec.Command(filepath.Join(root, "bin", "moe"), "host", "--help").CombinedOutput(); err != nil || !strings.Contains(string(v), "--model-dir") {
			t.Errorf("copied moe does not run: %v\n%s", err, v)
		}
		if !strings.Contains(out, "verified and unpacked") {
			t.Errorf("output: %s", out)
		}
	})
	t.Run("wrong credential: refused, reason in the termination log", func(t *testing.T) {
		_, code, out, term := storageInitRun(t, srv.API, ca, "moe-dep.a.b.1.nope", digests)
		if code == 0 || !strings.Contains(term, "refused this deployment's credential") {
			t.Fatalf("exit %d, termination message %q\n%s", code, term, out)
		}
	})
	t.Run("read-only credential: refused", func(t *testing.T) {
		ro, _ := os.ReadFile(filepath.Join(srv.Dir, auth.ReadonlyTokenFile))
		_, code, _, term := storageInitRun(t, srv.API, ca, strings.TrimSpace(string(ro)), digests)
		if code == 0 || !strings.Contains(term, "HTTP 403") {
			t.Fatalf("exit %d, termination message %q", code, term)
		}
	})
	t.Run("unknown digest: 404 named", func(t *testing.T) {
		_, code, _, term := storageInitRun(t, srv.API, ca, adminToken(t, srv.Dir),
			map[string]string{"model": "sha256:" + strings.Repeat("ab", 32), "code": digests["code"]})
		if code == 0 || !strings.Contains(term, "model snapshot sha256:abab") || !strings.Contains(term, "404") {
			t.Fatalf("exit %d, termination message %q", code, term)
		}
	})
	t.Run("untrusted TLS: fails", func(t *testing.T) {
		_, code, _, term := storageInitRun(t, srv.API, "", adminToken(t, srv.Dir), digests)
		if code == 0 || !strings.Contains(term, "certificate") {
			t.Fatalf("exit %d, termination message %q", code, term)
		}
	})
}
