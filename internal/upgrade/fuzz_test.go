package upgrade

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/moe-serving/moe/internal/spec"
)

// FuzzImportV1 feeds arbitrary documents to the importer. Whatever imports
// must plan without panicking, and an eligible plan must export YAML that
// moe's own spec decoder accepts. Seeds: testdata/fuzz/FuzzImportV1 and
// every sample in testdata/v1.
func FuzzImportV1(f *testing.F) {
	files, _ := filepath.Glob("testdata/v1/*.json")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		svc, err := ImportService(data)
		if err != nil {
			return
		}
		r := Plan(svc, Options{})
		if _, err := marshalIndent(r); err != nil {
			t.Fatalf("plan does not marshal: %v", err)
		}
		if !r.Eligible {
			return
		}
		e, err := BuildExport(r, ExportOptions{})
		if err != nil {
			t.Fatalf("export of an eligible plan: %v", err)
		}
		if _, _, err := spec.DecodeEndpoint(e.Files[EndpointFile], spec.DecodeOptions{}); err != nil {
			t.Fatalf("endpoint.yml does not decode: %v\n%s", err, e.Files[EndpointFile])
		}
		if _, _, err := spec.DecodeDeployment(e.Files[DeploymentFile], spec.DecodeOptions{}); err != nil {
			t.Fatalf("deployment.yml does not decode: %v\n%s", err, e.Files[DeploymentFile])
		}
	})
}
