package main

// `moe serve --runner kubernetes` and `--leader-elect` as real processes
// against a real kube-apiserver (internal/k8stest: etcd + kube-apiserver,
// no controllers, no kubelet; gated by MOE_TEST_K8S=1). No pod runs here:
// what a pod would do (its init container's download) is done by running
// `moe storage-init` on this machine with the pod's Secret and env.

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/moe-serving/moe/internal/k8stest"
	"github.com/moe-serving/moe/internal/moetest"
	k8srunner "github.com/moe-serving/moe/internal/runner/kubernetes"
	"github.com/moe-serving/moe/internal/store/postgres/pgtest"
)

// sharedState checks what two control-plane replicas must share through
// the store, whichever replica a request reaches: the admin credentials,
// the snapshots (uploaded through the follower, downloaded from the
// leader by the pod's init container) and the aml_token signing keys
// (issued by one, verified by the other's gateway, rotated on either).
func sharedState(t *testing.T, c *k8stest.Cluster, ns string, leader, follower *moetest.Server, blue *appsv1.Deployment) {
	t.Helper()
	ctx := context.Background()
	la, _ := os.ReadFile(filepath.Join(leader.Dir, "admin.token"))
	fa, _ := os.ReadFile(filepath.Join(follower.Dir, "admin.token"))
	if len(la) == 0 || string(la) != string(fa) {
		t.Error("the two replicas have different admin credentials")
	}

	// the snapshot was uploaded through the follower; the pod's download
	// reaches the leader (and the follower)
	sec := waitK8s(t, "blue's credential Secret", 30*time.Second, func() (*corev1.Secret, error) {
		return c.Client.CoreV1().Secrets(ns).Get(ctx, k8srunner.NamesFor("shop", "blue").Secret(1), metav1.GetOptions{})
	})
	env := initEnv(blue)
	digests := map[string]string{"model": env[k8srunner.EnvModelDigest], "code": env[k8srunner.EnvCodeDigest]}
	for name, srv := range map[string]*moetest.Server{"leader": leader, "follower": follower} {
		// each test replica made its own CA (no --tls-cert here)
		root, code, out, term := storageInitRun(t, srv.API, filepath.Join(srv.Dir, "pki", "ca.pem"), string(sec.Data[k8srunner.CredentialKey]), digests)
		if code != 0 {
			t.Errorf("storage-init against the %s: exit %d %q\n%s", name, code, term, out)
			continue
		}
		if b, err := os.ReadFile(filepath.Join(root, "code", "score.py")); err != nil || !strings.HasPrefix(string(b), "# blue") {
			t.Errorf("code from the %s: %q %v", name, b, err)
		}
	}

	// aml_token: issued by the follower, accepted by the leader's gateway;
	// rotated on the leader, the follower issues with the new key
	tokProj := t.TempDir()
	moetest.WriteFile(t, filepath.Join(tokProj, "tok.yml"), "name: tok\nauth_mode: aml_token\n")
	follower.MustCLI("online-endpoint", "create", "-f", filepath.Join(tokProj, "tok.yml"))
	token := func() string {
		var tok struct{ AccessToken string }
		json.Unmarshal([]byte(follower.MustCLI("online-endpoint", "get-credentials", "-n", "tok")), &tok)
		return tok.AccessToken
	}
	accepted := func(srv *moetest.Server, tok string) bool {
		resp, _ := srv.Score(srv.ScoringURL("tok"), tok, []byte(`{"data":[1]}`))
		return resp.StatusCode != http.StatusUnauthorized
	}
	first := token()
	if !accepted(leader, first) {
		t.Error("the leader's gateway refused a token the follower issued")
	}
	if accepted(leader, first[:len(first)-6]+"AAAAAA") {
		t.Fatal("the leader's gateway accepted a forged token: the check above proves nothing")
	}
	leader.MustCLI("token-signing-key", "rotate")
	kid := func(tok string) string { h, _, _ := strings.Cut(tok, "."); return h }
	second := waitK8s(t, "the follower signs with the rotated key", 5*time.Second, func() (string, error) {
		if tok := token(); kid(tok) != kid(first) {
			return tok, nil
		}
		return "", fmt.Errorf("still the old key")
	})
	for _, tok := range []string{first, second} {
		for name, srv := range map[string]*moetest.Server{"leader": leader, "follower": follower} {
			if !accepted(srv, tok) {
				t.Errorf("the %s's gateway refused a token after the rotation", name)
			}
		}
	}
}

func startCluster(t *testing.T) *k8stest.Cluster {
	t.Helper()
	if !k8stest.Enabled() {
		t.Skipf("needs a real Kubernetes API server: set %s=1 after scripts/k8s-build", k8stest.EnvGate)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := k8stest.Start(ctx, k8stest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

// k8sProject writes an endpoint "shop" and deployments blue and green
// (same model, different code) for the Kubernetes runner.
func k8sProject(t *testing.T) string {
	dir := t.TempDir()
	w := func(p, s string) { moetest.WriteFile(t, filepath.Join(dir, p), s) }
	w("model/weights.bin", "weights")
	w("yaml/endpoint.yml", "name: shop\nauth_mode: key\n")
	for _, d := range []string{"blue", "green"} {
		w("code/"+d+"/score.py", "# "+d+"\ndef init():\n    pass\n\ndef run(raw):\n    return 1\n")
		w("yaml/"+d+".yml", fmt.Sprintf(`name: %s
endpoint_name: shop
model:
  path: ../model/
code_configuration:
  code: ../code/%s/
  scoring_script: score.py
environment:
  image: python:3.12-slim
instance_type: Standard_DS2_v2
instance_count: 1
`, d, d))
	}
	return dir
}

func waitK8s[T any](t *testing.T, what string, budget time.Duration, get func() (T, error)) T {
	t.Helper()
	deadline := time.Now().Add(budget)
	for {
		v, err := get()
		if err == nil {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s: %v", what, budget, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func initEnv(d *appsv1.Deployment) map[string]string {
	env := map[string]string{}
	for _, e := range d.Spec.Template.Spec.InitContainers[0].Env {
		env[e.Name] = e.Value
	}
	return env
}

// TestKubernetesArtifactCredential: the runner issues each deployment a
// credential (in a Secret, with the control plane's CA); with it, the
// real storage-init process downloads that deployment's snapshots, and
// nothing else.
func TestKubernetesArtifactCredential(t *testing.T) {
	c := startCluster(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	srv := moetest.Start(t, t.TempDir(), "--runner", "kubernetes", "--kubeconfig", c.Kubeconfig, "--k8s-namespace", ns,
		"--k8s-moe-image", "ghcr.io/moe-serving/moe:test", "--k8s-control-plane-url", "https://moe-control-plane.invalid:8442")
	proj := k8sProject(t)
	srv.MustCLI("online-endpoint", "create", "-f", filepath.Join(proj, "yaml", "endpoint.yml"))
	for _, d := range []string{"blue", "green"} {
		srv.MustCLI("online-deployment", "create", "-f", filepath.Join(proj, "yaml", d+".yml"), "--no-wait")
	}
	type pod struct {
		env    map[string]string
		secret *corev1.Secret
	}
	pods := map[string]pod{}
	for _, d := range []string{"blue", "green"} {
		n := k8srunner.NamesFor("shop", d)
		dep := waitK8s(t, d+"'s Deployment", 30*time.Second, func() (*appsv1.Deployment, error) {
			return c.Client.AppsV1().Deployments(ns).Get(ctx, n.Set(1), metav1.GetOptions{})
		})
		sec := waitK8s(t, d+"'s credential Secret", 30*time.Second, func() (*corev1.Secret, error) {
			return c.Client.CoreV1().Secrets(ns).Get(ctx, n.Secret(1), metav1.GetOptions{})
		})
		pods[d] = pod{initEnv(dep), sec}
	}
	blue, green := pods["blue"], pods["green"]
	if ca, _ := os.ReadFile(filepath.Join(srv.Dir, "pki", "ca.pem")); string(blue.secret.Data[k8srunner.CAKey]) != string(ca) {
		t.Errorf("the Secret's %s is not the control plane's CA", k8srunner.CAKey)
	}
	token := string(blue.secret.Data[k8srunner.CredentialKey])
	if !strings.HasPrefix(token, "moe-dep.shop.blue.1.") {
		t.Errorf("credential %q", token)
	}
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	moetest.WriteFile(t, caFile, string(blue.secret.Data[k8srunner.CAKey]))

	get := func(bearer, digest string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, srv.API+"/v1/artifacts/"+digest, nil)
		req.Header.Set("Authorization", "Bearer "+bearer)
		resp, err := srv.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		h := sha256.New()
		io.Copy(h, resp.Body)
		return resp.StatusCode, "sha256:" + hex.EncodeToString(h.Sum(nil))
	}
	for _, what := range []string{k8srunner.EnvModelDigest, k8srunner.EnvCodeDigest} {
		if code, sum := get(token, blue.env[what]); code != http.StatusOK || sum != blue.env[what] {
			t.Errorf("blue's credential, blue's %s: %d, digest %s", what, code, sum)
		}
	}
	if blue.env[k8srunner.EnvCodeDigest] == green.env[k8srunner.EnvCodeDigest] {
		t.Fatal("blue and green share their code snapshot")
	}
	if code, _ := get(token, green.env[k8srunner.EnvCodeDigest]); code != http.StatusForbidden {
		t.Errorf("blue's credential fetched green's code: %d", code)
	}
	if code, _ := get(token[:len(token)-4]+"0000", blue.env[k8srunner.EnvCodeDigest]); code != http.StatusForbidden {
		t.Errorf("a forged credential fetched blue's code: %d", code)
	}
	if code, _ := get(strings.Replace(token, ".blue.1.", ".blue.2.", 1), blue.env[k8srunner.EnvCodeDigest]); code != http.StatusForbidden {
		t.Errorf("a credential claiming another generation: %d", code)
	}

	// the init container, as a process: blue's env, credential and CA
	digests := map[string]string{"model": blue.env[k8srunner.EnvModelDigest], "code": blue.env[k8srunner.EnvCodeDigest]}
	root, code, out, term := storageInitRun(t, srv.API, caFile, token, digests)
	if code != 0 {
		t.Fatalf("storage-init with blue's credential: exit %d %q\n%s", code, term, out)
	}
	if b, err := os.ReadFile(filepath.Join(root, "code", "score.py")); err != nil || !strings.HasPrefix(string(b), "# blue") {
		t.Errorf("code: %q %v", b, err)
	}
	digests["code"] = green.env[k8srunner.EnvCodeDigest]
	if _, code, _, term := storageInitRun(t, srv.API, caFile, token, digests); code == 0 || !strings.Contains(term, "refused") {
		t.Errorf("storage-init of green's code with blue's credential: exit %d %q", code, term)
	}

	// deleting the deployment revokes its credential with its Secret
	srv.MustCLI("online-deployment", "delete", "-e", "shop", "-n", "blue", "--yes")
	waitK8s(t, "blue's credential revoked", 30*time.Second, func() (int, error) {
		if code, _ := get(token, blue.env[k8srunner.EnvModelDigest]); code != http.StatusForbidden {
			return code, fmt.Errorf("HTTP %d", code)
		}
		return 0, nil
	})
}

// freshPostgres returns a URL of an empty schema in MOE_TEST_POSTGRES_URL's
// database (scripts/postgres), dropped at cleanup.
func freshPostgres(t *testing.T) string {
	t.Helper()
	base := os.Getenv("MOE_TEST_POSTGRES_URL")
	if base == "" {
		t.Skip("needs PostgreSQL: set MOE_TEST_POSTGRES_URL (scripts/postgres run -- go test ...)")
	}
	return pgtest.Schema(t, base)
}

// TestLeaderElection: two control planes (real `moe serve` processes, one
// PostgreSQL store, one API server) with --leader-elect. It proves: (1)
// exactly one holds the Lease and only that one runs its reconciler,
// while both serve the API (a deployment created through the follower's
// API is carried out by the leader); (2) after SIGKILL of the leader (no
// release: the worst case) the follower takes the Lease within the lease
// duration plus one retry period, and its reconciler then acts (a new
// deployment gets its Kubernetes objects). It does not prove what happens
// in a network partition (both processes see the same API server here).
func TestLeaderElection(t *testing.T) {
	c := startCluster(t)
	store := freshPostgres(t)
	ns := c.Namespace(t)
	ctx := context.Background()
	var key [32]byte
	rand.Read(key[:])
	t.Setenv("MOE_MASTER_KEY", base64.StdEncoding.EncodeToString(key[:])) // replicas share sealed keys
	const lease = 3 * time.Second
	start := func(id string) *moetest.Server {
		return moetest.Start(t, t.TempDir(), "--store", store, "--runner", "kubernetes", "--kubeconfig", c.Kubeconfig,
			"--k8s-namespace", ns, "--k8s-moe-image", "ghcr.io/moe-serving/moe:test", "--k8s-control-plane-url", "https://cp.invalid:8442",
			"--leader-elect", "--leader-elect-namespace", ns, "--leader-elect-identity", id, "--leader-elect-lease-duration", lease.String())
	}
	replicas := map[string]*moetest.Server{"cp-a": start("cp-a"), "cp-b": start("cp-b")}
	holder := func() (string, error) {
		l, err := c.Client.CoordinationV1().Leases(ns).Get(ctx, "moe-control-plane", metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
			return "", fmt.Errorf("no holder")
		}
		return *l.Spec.HolderIdentity, nil
	}
	leaderID := waitK8s(t, "a leader", 20*time.Second, holder)
	followerID := map[string]string{"cp-a": "cp-b", "cp-b": "cp-a"}[leaderID]
	leader, follower := replicas[leaderID], replicas[followerID]
	const leads = "this replica leads; reconciler started"
	// exactly one leads, and keeps leading
	for deadline := time.Now().Add(2 * lease); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if h, err := holder(); err != nil || h != leaderID {
			t.Fatalf("holder changed to %q (%v) without a failure", h, err)
		}
	}
	if n := strings.Count(leader.Log(), leads); n != 1 {
		t.Errorf("leader %s started its reconciler %d times", leaderID, n)
	}
	if strings.Contains(follower.Log(), leads) {
		t.Fatalf("follower %s runs a reconciler too:\n%s", followerID, follower.Log())
	}

	// the follower serves the API; the leader's reconciler acts on it
	proj := k8sProject(t)
	follower.MustCLI("online-endpoint", "create", "-f", filepath.Join(proj, "yaml", "endpoint.yml"))
	follower.MustCLI("online-deployment", "create", "-f", filepath.Join(proj, "yaml", "blue.yml"), "--no-wait")
	blueDep := waitK8s(t, "blue's Deployment (leader's reconciler)", 30*time.Second, func() (*appsv1.Deployment, error) {
		return c.Client.AppsV1().Deployments(ns).Get(ctx, k8srunner.NamesFor("shop", "blue").Set(1), metav1.GetOptions{})
	})
	sharedState(t, c, ns, leader, follower, blueDep)

	// SIGKILL the leader: the lease is not released; it must expire
	leader.Kill()
	killed := time.Now()
	waitK8s(t, "the follower takes over", 3*lease, func() (string, error) {
		if h, err := holder(); err != nil || h != followerID {
			return h, fmt.Errorf("holder %q %v", h, err)
		}
		return "", nil
	})
	took := time.Since(killed)
	t.Logf("takeover %s after SIGKILL (lease %s)", took.Round(10*time.Millisecond), lease)
	if limit := lease + lease/6 + 500*time.Millisecond; took > limit {
		t.Errorf("takeover took %s, more than the lease duration plus a retry (%s)", took, limit)
	}
	waitK8s(t, "the new leader's reconciler", 5*time.Second, func() (bool, error) {
		if !strings.Contains(follower.Log(), leads) {
			return false, fmt.Errorf("no %q in its log", leads)
		}
		return true, nil
	})
	follower.MustCLI("online-deployment", "create", "-f", filepath.Join(proj, "yaml", "green.yml"), "--no-wait")
	waitK8s(t, "green's Deployment (new leader's reconciler)", 30*time.Second, func() (*appsv1.Deployment, error) {
		return c.Client.AppsV1().Deployments(ns).Get(ctx, k8srunner.NamesFor("shop", "green").Set(1), metav1.GetOptions{})
	})

	// graceful shutdown hands the lease over at once
	follower.Stop()
	l, err := c.Client.CoordinationV1().Leases(ns).Get(ctx, "moe-control-plane", metav1.GetOptions{})
	if err != nil || (l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "") {
		t.Errorf("lease after SIGTERM: %+v %v", l.Spec, err)
	}
}
