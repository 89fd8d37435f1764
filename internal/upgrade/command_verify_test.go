package upgrade

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tlsScorer is scorer behind TLS with a certificate no system trusts.
func tlsScorer(t *testing.T, cred string, scale, offset float64) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(scorer(t, cred, scale, offset).Config.Handler)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func TestCommand_VerifyNewCA(t *testing.T) {
	old := scorer(t, "test-primary-key-not-real", 1, 0)
	newSrv := tlsScorer(t, "nk", 1, 0)
	dir := t.TempDir()
	req := filepath.Join(dir, "samples.jsonl")
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(req, []byte(`{"data":[1,2]}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: newSrv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"verify", "testdata/v1/aci-keyauth-ssl-cname.json", "--requests", req, "--old-uri", old.URL, "--new-uri", newSrv.URL, "--new-key", "nk"}
	// without the CA the new side is a transport failure: a mismatch
	out, _, err := run(t, nil, args...)
	var pe *ParityError
	if !errors.As(err, &pe) || !strings.Contains(out, "certificate") {
		t.Errorf("without --new-ca: err %v\n%s", err, out)
	}
	if out, _, err := run(t, nil, append(args, "--new-ca", ca)...); err != nil {
		t.Errorf("with --new-ca: %v\n%s", err, out)
	}
	if _, _, err := run(t, nil, append(args, "--new-ca", req)...); err == nil || errors.As(err, &pe) {
		t.Errorf("--new-ca without a certificate: err %v, want a usage error", err)
	}
}

func TestCommand_VerifyNewSide(t *testing.T) {
	old := scorer(t, "test-primary-key-not-real", 1, 0)
	newSrv := tlsScorer(t, "from-server", 1, 0)
	req := filepath.Join(t.TempDir(), "samples.jsonl")
	if err := os.WriteFile(req, []byte(`{"data":[3]}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var asked []string
	resolver := WithNewSide(func(ctx context.Context, name string) (*NewSide, error) {
		asked = append(asked, name)
		return &NewSide{ScoringURI: newSrv.URL, Credential: "from-server", Client: newSrv.Client()}, nil
	})
	out, _, err := run(t, []CommandOption{resolver}, "verify", "testdata/v1/aci-keyauth-ssl-cname.json", "--requests", req, "--old-uri", old.URL, "--endpoint-name", "churn-v2")
	if err != nil || len(asked) != 1 || asked[0] != "churn-v2" || !strings.Contains(out, "new: "+newSrv.URL) {
		t.Errorf("resolved verify: err %v, asked %v\n%s", err, asked, out)
	}
	// flags win over what the server says
	_, _, err = run(t, []CommandOption{resolver}, "verify", "testdata/v1/aci-keyauth-ssl-cname.json", "--requests", req, "--old-uri", old.URL, "--new-key", "wrong")
	var pe *ParityError
	if !errors.As(err, &pe) {
		t.Errorf("--new-key wrong: err %v, want a ParityError", err)
	}
	// a server that cannot be asked falls back to the planned URI, with a
	// note (no requests: nothing leaves the host)
	empty := filepath.Join(t.TempDir(), "empty.jsonl")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	failing := WithNewSide(func(context.Context, string) (*NewSide, error) { return nil, errors.New("no moe server") })
	out, errOut, err := run(t, []CommandOption{failing}, "verify", "testdata/v1/aci-keyauth-ssl-cname.json", "--requests", empty, "--old-uri", old.URL)
	if err != nil || !strings.Contains(errOut, "no moe server") || !strings.Contains(out, "new: https://churn-aci-tls.local.inference.localhost/score") {
		t.Errorf("fallback:\nstdout: %s\nstderr: %s", out, errOut)
	}
}
