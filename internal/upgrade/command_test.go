package upgrade

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moe-serving/moe/internal/spec"
)

func run(t *testing.T, opts []CommandOption, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := NewCommand(&out, &errb, opts...)
	cmd.SetArgs(args)
	err = cmd.ExecuteContext(t.Context())
	return out.String(), errb.String(), err
}

func TestCommand_PlanSingle(t *testing.T) {
	out, _, err := run(t, nil, "plan", "testdata/v1/aci-keyauth-ssl-cname.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"churn-aci-tls (ACI)", "ELIGIBLE", "original keys kept", "Standard_F2s_v2", "cname"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "not-real") {
		t.Error("plan output prints a key")
	}
}

func TestCommand_PlanJSONRefused(t *testing.T) {
	out, _, err := run(t, nil, "plan", "-o", "json", "testdata/v1/aci-vnet.json")
	var re *RefusedError
	if !errors.As(err, &re) || re.ExitCode() != 1 || re.Services[0] != "fraud-aci-vnet" {
		t.Fatalf("err = %v; want a RefusedError", err)
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	for _, k := range []string{"service", "compute_type", "eligible", "endpoint", "deployment", "old_scoring_uri", "new_scoring_uri", "findings"} {
		if _, ok := r[k]; !ok {
			t.Errorf("plan JSON lacks %q", k)
		}
	}
	// The flag lets it through.
	if _, _, err := run(t, nil, "plan", "--allow-network-isolation", "testdata/v1/aci-vnet.json"); err != nil {
		t.Errorf("with --allow-network-isolation: %v", err)
	}
}

func TestCommand_PlanBatch(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"aci-noauth-defaults.json", "aci-vnet.json", "aks-autoscale-tokenauth.json", "aci-keyauth-ssl-cname.json", "aci-keyauth-ssl-cname.keys.json"} {
		b, err := os.ReadFile(filepath.Join("testdata/v1", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, _, err := run(t, nil, "plan", dir)
	var re *RefusedError
	if !errors.As(err, &re) || len(re.Services) != 1 {
		t.Fatalf("err = %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 6 || !strings.HasPrefix(lines[5], "total: 4 services, 3 eligible, 1 refused") {
		t.Errorf("batch output:\n%s", out)
	}
}

func TestCommand_PlanDeployConfigDir(t *testing.T) {
	out, _, err := run(t, nil, "plan", "-o", "json", "--name", "dc-svc", "testdata/deployconfig/aci-dc")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"service": "dc-svc"`) || !strings.Contains(out, `"code": "auth-key-kept"`) {
		t.Errorf("output:\n%s", out)
	}
}

func TestCommand_PlanWorkspace(t *testing.T) {
	_, url := fakeMMS(t, "tok")
	out, _, err := run(t, nil, "plan", "--workspace-url", url, "--token", "tok", "churn-aci-tls")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "original keys kept") {
		t.Errorf("keys from listkeys not used:\n%s", out)
	}
	out, _, err = run(t, nil, "plan", "--workspace-url", url, "--token", "tok")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "total: 2 services, 2 eligible, 0 refused") {
		t.Errorf("batch from workspace:\n%s", out)
	}
}

func TestCommand_Export(t *testing.T) {
	out := t.TempDir()
	stdout, _, err := run(t, nil, "export", "testdata/v1/aci-noauth-defaults.json", "--artifacts", "testdata/artifacts/iris", "-o", out)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{EndpointFile, DeploymentFile, CondaFileOut, ARMTemplateFile, "iris-aci-dev.params.json", PlanFile} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("%s not written: %v\n%s", f, err, stdout)
		}
	}
	b, _ := os.ReadFile(filepath.Join(out, DeploymentFile))
	dep, _, err := spec.DecodeDeployment(b, spec.DecodeOptions{BaseDir: out})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dep.CodeConfiguration.Code, dep.CodeConfiguration.ScoringScript)); err != nil {
		t.Errorf("scoring script path does not resolve: %v", err)
	}
	if _, err := os.Stat(dep.Model.Path); err != nil {
		t.Errorf("model path does not resolve: %v", err)
	}
	var tmpl map[string]any
	tb, _ := os.ReadFile(filepath.Join(out, ARMTemplateFile))
	if err := json.Unmarshal(tb, &tmpl); err != nil {
		t.Errorf("ARM template is not JSON: %v", err)
	}

	// A refused service writes nothing; an image-based one a skeleton.
	out2 := t.TempDir()
	if _, _, err := run(t, nil, "export", "testdata/v1/aci-cmk-encryption.json", "-o", out2); err == nil {
		t.Error("export of a refused service succeeded")
	}
	if ents, _ := os.ReadDir(out2); len(ents) != 0 {
		t.Errorf("refused export wrote %d files", len(ents))
	}
	_, _, err = run(t, nil, "export", "testdata/v1/aci-unhealthy-image-based.json", "-o", out2)
	var re *RefusedError
	if !errors.As(err, &re) {
		t.Errorf("image-based export: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(out2, DeploymentFile)); err != nil || !bytes.Contains(b, []byte("SKELETON")) {
		t.Errorf("no skeleton deployment.yml: %v", err)
	}
}

func TestCommand_Verify(t *testing.T) {
	old := scorer(t, "test-primary-key-not-real", 1, 0)
	newSrv := scorer(t, "nk", 1, 0)
	req := filepath.Join(t.TempDir(), "samples.jsonl")
	if err := os.WriteFile(req, []byte(`{"data":[1]}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The old key defaults to the primary key of the keys file beside the sample.
	out, _, err := run(t, nil, "verify", "testdata/v1/aci-keyauth-ssl-cname.json", "--requests", req, "--old-uri", old.URL, "--new-uri", newSrv.URL, "--new-key", "nk")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	_, _, err = run(t, nil, "verify", "testdata/v1/aci-keyauth-ssl-cname.json", "--requests", req, "--old-uri", old.URL, "--new-uri", newSrv.URL, "--new-key", "wrong")
	var pe *ParityError
	if !errors.As(err, &pe) || pe.ExitCode() != 1 {
		t.Errorf("err = %v; want a ParityError", err)
	}
}

func TestCommand_Apply(t *testing.T) {
	var got []ApplyRequest
	fake := ApplierFunc(func(ctx context.Context, req ApplyRequest) (*Applied, error) {
		if req.TempDir != "" {
			if _, err := os.Stat(req.Deployment.Environment.CondaFile); err != nil {
				t.Errorf("generated conda file missing during Apply: %v", err)
			}
		}
		got = append(got, req)
		return &Applied{ScoringURI: "https://" + req.Endpoint.Name + ".local.inference.localhost/score", AuthMode: req.Endpoint.AuthMode}, nil
	})
	if _, _, err := run(t, nil, "apply"); err == nil {
		t.Error("apply exists without an Applier")
	}
	out, _, err := run(t, []CommandOption{WithApplier(fake)}, "apply", "testdata/v1/aci-keyauth-ssl-cname.json", "--artifacts", "testdata/artifacts/iris", "--endpoint-name", "churn-v2")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Keys == nil || got[0].Keys.PrimaryKey != "test-primary-key-not-real" || got[0].Endpoint.Name != "churn-v2" {
		t.Fatalf("apply request = %+v", got)
	}
	if !filepath.IsAbs(got[0].Deployment.CodeConfiguration.Code) || got[0].Endpoint.Traffic[got[0].Deployment.Name] != 100 {
		t.Errorf("deployment paths not absolute or traffic not 100: %+v", got[0])
	}
	if !strings.Contains(out, "curl") || strings.Contains(out, "not-real") {
		t.Errorf("apply output:\n%s", out)
	}
	// A refused service never reaches the Applier.
	_, _, err = run(t, []CommandOption{WithApplier(fake)}, "apply", "testdata/v1/aci-vnet.json", "--artifacts", "testdata/artifacts/iris")
	var re *RefusedError
	if !errors.As(err, &re) || len(got) != 1 {
		t.Errorf("refused apply: err %v, %d applies", err, len(got))
	}
}
