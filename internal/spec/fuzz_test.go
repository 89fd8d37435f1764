package spec

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite testdata/fuzz/FuzzDecodeSpec from the good fixtures")

// FuzzDecodeSpec checks that decoding never panics, that every failure is
// FieldErrors, and that whatever decodes survives JSON (the API and the
// store) unchanged and still validates.
func FuzzDecodeSpec(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		if e, _, err := DecodeEndpoint(data, DecodeOptions{}); err != nil {
			checkFieldErrors(t, err)
		} else {
			var back Endpoint
			fuzzRoundTrip(t, e, &back)
			if err := back.Validate(); err != nil {
				t.Fatalf("endpoint decoded, but not after a JSON round trip: %v", err)
			}
		}
		if d, _, err := DecodeDeployment(data, DecodeOptions{BaseDir: "/base"}); err != nil {
			checkFieldErrors(t, err)
		} else {
			var back Deployment
			fuzzRoundTrip(t, d, &back)
			if err := back.Validate(); err != nil {
				t.Fatalf("deployment decoded, but not after a JSON round trip: %v", err)
			}
		}
	})
}

func checkFieldErrors(t *testing.T, err error) {
	t.Helper()
	var fes FieldErrors
	if !errors.As(err, &fes) || len(fes) == 0 {
		t.Fatalf("error %T is not a non-empty FieldErrors: %v", err, err)
	}
	for _, fe := range fes {
		if fe.Message == "" {
			t.Fatalf("problem without a message: %+v", fe)
		}
	}
}

func fuzzRoundTrip(t *testing.T, v, back any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %+v: %v", v, err)
	}
	if err := json.Unmarshal(b, back); err != nil {
		t.Fatalf("unmarshal %s: %v", b, err)
	}
	if !reflect.DeepEqual(v, back) {
		b2, _ := json.Marshal(back)
		t.Fatalf("JSON round trip changed the spec:\n%s\n%s", b, b2)
	}
}

// TestFuzzCorpus keeps the committed seed corpus equal to the good
// fixtures; run with -update-corpus after changing them.
func TestFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecodeSpec")
	for _, name := range fixtures(t, "good") {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		want := "go test fuzz v1\n[]byte(" + strconv.Quote(string(data)) + ")\n"
		path := filepath.Join(dir, strings.TrimSuffix(name, ".yml"))
		if *updateCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != want {
			t.Errorf("%s is missing or stale (%v); run go test -run TestFuzzCorpus -update-corpus", path, err)
		}
	}
}
