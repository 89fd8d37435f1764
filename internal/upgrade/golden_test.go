package upgrade

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moe-serving/moe/internal/spec"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// goldenInputs are every service document in testdata/v1 (the project's
// samples, copied from shared/testdata/v1, and this package's own cases)
// and every deploymentconfig.json folder in testdata/deployconfig.
func goldenInputs(t *testing.T) map[string]string {
	t.Helper()
	in := map[string]string{}
	files, err := filepath.Glob("testdata/v1/*.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, ".keys.json") {
			continue
		}
		in[strings.TrimSuffix(filepath.Base(f), ".json")] = f
	}
	dirs, _ := filepath.Glob("testdata/deployconfig/*")
	for _, d := range dirs {
		in["deployconfig-"+filepath.Base(d)] = d
	}
	if len(in) < 30 {
		t.Fatalf("only %d golden inputs found", len(in))
	}
	return in
}

// artifactsFor names the artifacts folder a case is exported with; cases
// without one use the plan's default layout.
var artifactsFor = map[string]string{
	"aci-noauth-defaults": "testdata/artifacts/iris",
}

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/upgrade -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (run go test ./internal/upgrade -update and review the diff):\n--- got\n%s", path, got)
	}
}

// TestGolden plans every input and exports every exportable plan, comparing
// with testdata/golden: <case>.plan.json, and <case>/ holding endpoint.yml,
// deployment.yml, the ARM parameters and any generated conda.yaml. Every
// exported YAML must decode with moe's own spec decoder.
func TestGolden(t *testing.T) {
	for name, in := range goldenInputs(t) {
		t.Run(name, func(t *testing.T) {
			svc, err := LoadService(in, "", "")
			if err != nil {
				t.Fatal(err)
			}
			r := Plan(svc, Options{})
			b, err := marshalIndent(r)
			if err != nil {
				t.Fatal(err)
			}
			checkGolden(t, filepath.Join("testdata/golden", name+".plan.json"), b)
			if !r.Eligible && !r.Skeleton {
				return
			}
			outDir := filepath.Join("testdata/golden", name)
			e, err := BuildExport(r, ExportOptions{ArtifactsDir: artifactsFor[name], OutDir: outDir})
			if err != nil {
				t.Fatal(err)
			}
			for file, data := range e.Files {
				if file == ARMTemplateFile || file == PlanFile {
					continue
				}
				checkGolden(t, filepath.Join(outDir, file), data)
			}
			roundTrip(t, e, outDir)
		})
	}
}

// roundTrip decodes the exported YAML with spec.DecodeEndpoint and
// spec.DecodeDeployment, as `moe online-endpoint create -f` would.
func roundTrip(t *testing.T, e *Export, baseDir string) {
	t.Helper()
	ep, _, err := spec.DecodeEndpoint(e.Files[EndpointFile], spec.DecodeOptions{})
	if err != nil {
		t.Errorf("endpoint.yml does not decode: %v\n%s", err, e.Files[EndpointFile])
	}
	dep, _, err := spec.DecodeDeployment(e.Files[DeploymentFile], spec.DecodeOptions{BaseDir: baseDir})
	if err != nil {
		t.Errorf("deployment.yml does not decode: %v\n%s", err, e.Files[DeploymentFile])
	}
	if ep != nil && dep != nil && dep.EndpointName != ep.Name {
		t.Errorf("deployment.endpoint_name %q != endpoint name %q", dep.EndpointName, ep.Name)
	}
	for _, f := range [][]byte{e.Files[EndpointFile], e.Files[DeploymentFile]} {
		if bytes.Contains(f, []byte("Key\":")) || bytes.Contains(f, []byte("not-real")) {
			t.Errorf("exported YAML holds a key:\n%s", f)
		}
	}
}
