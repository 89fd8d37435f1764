package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moe-serving/moe/internal/api"
	"github.com/moe-serving/moe/internal/artifact"
	k8srunner "github.com/moe-serving/moe/internal/runner/kubernetes"
)

// newStorageInitCmd is `moe storage-init`, the command of the
// storage-initializer init container of every Kubernetes model pod. Its
// input is the environment the runner sets (internal/runner/kubernetes,
// the Env* constants).
func newStorageInitCmd(a *app) *cobra.Command {
	termLog := "/dev/termination-log"
	cmd := &cobra.Command{
		Use:   "storage-init",
		Short: "Init container of Kubernetes model pods: copy moe, download the deployment's snapshots",
		Long: `Run by the storage-initializer init container of each model pod that
moe serve --runner kubernetes creates; not meant to be run by hand.

It copies its own executable to $MOE_BIN_DIR/moe (the model container runs
it as "moe host"), then downloads each snapshot with
GET $MOE_CONTROL_PLANE_URL/v1/artifacts/<digest>, sending the
per-deployment credential in $MOE_CREDENTIAL_FILE, checks the stream's
sha256 against the digest and unpacks it: $MOE_MODEL_DIGEST into
$MOE_MODEL_DIR, $MOE_CODE_DIGEST into $MOE_CODE_DIR, and $MOE_CONDA_DIGEST
into $MOE_CONDA_DIR when that is set (the image carries the environment on
Kubernetes). $MOE_CONTROL_PLANE_CA_FILE, when it exists, adds PEM
certificates to trust. On failure the reason goes to the termination log,
which Kubernetes shows as the container's termination message (and moe as
the deployment's error).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := storageInit(cmd.Context(), a.stdout)
			if err != nil && termLog != "" {
				// no O_CREATE: outside a pod the file does not exist
				if f, ferr := os.OpenFile(termLog, os.O_WRONLY|os.O_TRUNC, 0); ferr == nil {
					fmt.Fprintln(f, strings.ReplaceAll(err.Error(), "\n", " "))
					f.Close()
				}
			}
			return err
		},
	}
	cmd.Flags().StringVar(&termLog, "termination-log", termLog, "write the reason of a failure to this existing file")
	return cmd
}

func storageInit(ctx context.Context, out io.Writer) error {
	env := func(name string) string { return os.Getenv(name) }
	start := time.Now()
	if dir := env(k8srunner.EnvBinDir); dir != "" {
		if err := copySelf(filepath.Join(dir, "moe")); err != nil {
			return fmt.Errorf("storage-init: copy the moe binary into %s: %w", dir, err)
		}
		fmt.Fprintf(out, "storage-init: copied moe to %s\n", filepath.Join(dir, "moe"))
	}
	base := strings.TrimRight(env(k8srunner.EnvControlPlaneURL), "/")
	if base == "" {
		return fmt.Errorf("storage-init: $%s is not set", k8srunner.EnvControlPlaneURL)
	}
	credFile := env(k8srunner.EnvCredentialFile)
	cred, err := os.ReadFile(credFile)
	if err != nil || strings.TrimSpace(string(cred)) == "" {
		return fmt.Errorf("storage-init: no credential in $%s (%q): %v", k8srunner.EnvCredentialFile, credFile, err)
	}
	client, err := storageInitClient(env(k8srunner.EnvControlPlaneCA))
	if err != nil {
		return err
	}
	for _, s := range []struct{ what, digestEnv, dirEnv string }{
		{"model", k8srunner.EnvModelDigest, k8srunner.EnvModelDir},
		{"code", k8srunner.EnvCodeDigest, k8srunner.EnvCodeDir},
		{"conda file", k8srunner.EnvCondaDigest, "MOE_CONDA_DIR"},
	} {
		digest, dir := env(s.digestEnv), env(s.dirEnv)
		if digest == "" || dir == "" {
			continue
		}
		t := time.Now()
		n, err := fetchSnapshot(ctx, client, base, strings.TrimSpace(string(cred)), digest, dir)
		if err != nil {
			return fmt.Errorf("storage-init: %s snapshot %s: %w", s.what, digest, err)
		}
		fmt.Fprintf(out, "storage-init: %s snapshot %s (%d bytes) verified and unpacked into %s in %s\n", s.what, digest, n, dir, time.Since(t).Round(time.Millisecond))
	}
	fmt.Fprintf(out, "storage-init: done in %s\n", time.Since(start).Round(time.Millisecond))
	return nil
}

func storageInitClient(caFile string) (*http.Client, error) {
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if caFile != "" {
		if b, err := os.ReadFile(caFile); err == nil {
			if !pool.AppendCertsFromPEM(b) {
				return nil, fmt.Errorf("storage-init: $%s (%s) holds no PEM certificate", k8srunner.EnvControlPlaneCA, caFile)
			}
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("storage-init: %w", err)
		}
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, DialContext: d.DialContext,
		TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: time.Minute,
	}}, nil
}

// fetchSnapshot downloads one snapshot into dir, retrying what a retry can
// fix (the control plane restarting, a network blip) for about a minute.
func fetchSnapshot(ctx context.Context, client *http.Client, base, cred, digest, dir string) (int64, error) {
	var last error
	for attempt := range 6 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(time.Duration(1<<attempt) * time.Second):
			}
		}
		// a restarted init container finds its previous attempt's files
		if err := emptyDir(dir); err != nil {
			return 0, err
		}
		n, retry, err := fetchOnce(ctx, client, base, cred, digest, dir)
		if err == nil || !retry {
			return n, err
		}
		last = err
	}
	return 0, fmt.Errorf("%w (gave up after 6 attempts)", last)
}

func fetchOnce(ctx context.Context, client *http.Client, base, cred, digest, dir string) (n int64, retry bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/artifacts/"+digest, nil)
	if err != nil {
		return 0, false, err
	}
	req.Header.Set("Authorization", "Bearer "+cred)
	resp, err := client.Do(req)
	if err != nil {
		var cv *tls.CertificateVerificationError
		if errors.As(err, &cv) { // no retry fixes trust
			return 0, false, fmt.Errorf("the control plane's TLS certificate is not trusted (set the runner's --k8s-control-plane-ca): %w", err)
		}
		return 0, true, fmt.Errorf("reach the control plane at %s: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		msg := strings.TrimSpace(string(b))
		if json.Unmarshal(b, &e) == nil && e.Message != "" {
			msg = e.Message
		}
		switch resp.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return 0, false, fmt.Errorf("the control plane refused this deployment's credential (HTTP %d: %s)", resp.StatusCode, msg)
		case http.StatusNotFound:
			return 0, false, fmt.Errorf("the control plane does not have it (HTTP 404: %s); re-create the deployment to upload it again", msg)
		}
		return 0, resp.StatusCode >= 500, fmt.Errorf("HTTP %d: %s", resp.StatusCode, msg)
	}
	h := sha256.New()
	cr := &countingReader{r: io.TeeReader(resp.Body, h)}
	if err := artifact.Unpack(cr, dir); err != nil {
		return cr.n, !errors.Is(err, artifact.ErrInvalid), err
	}
	if _, err := io.Copy(h, resp.Body); err != nil { // trailing padding
		return cr.n, true, err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != digest {
		emptyDir(dir)
		return cr.n, true, fmt.Errorf("downloaded bytes have digest %s, not %s (corrupted in transit, or the control plane's copy changed)", got, digest)
	}
	return cr.n, false, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// emptyDir removes what dir holds, not dir (a volume's mount point).
func emptyDir(dir string) error {
	es, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return os.MkdirAll(dir, 0o755)
		}
		return err
	}
	for _, e := range es {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// copySelf copies the running executable to dst (atomically, mode 0755).
func copySelf(dst string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	in, err := os.Open(self)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".moe-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, in); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o755); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}
