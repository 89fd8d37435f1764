package pyenv

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// needPython skips tests that run real interpreters when Debian's python3
// (with python3-sklearn, python3-numpy, ...) is not installed.
func needPython(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(DefaultPython); err != nil {
		t.Skipf("skipping: %s is missing (these tests need Debian's python3 with python3-sklearn, python3-numpy, python3-pandas, python3-joblib)", DefaultPython)
	}
}

// writeWheel writes a minimal pure-Python wheel name-version-py3-none-any.whl
// into dir. The package exposes VALUE and a console script "<name>-hello".
func writeWheel(t *testing.T, dir, name, version string) {
	t.Helper()
	info := fmt.Sprintf("%s-%s.dist-info", name, version)
	files := []struct{ path, body string }{
		{name + "/__init__.py", fmt.Sprintf("VALUE = %q\n\ndef hello():\n    print(VALUE)\n", "hello from "+name+" "+version)},
		{info + "/METADATA", fmt.Sprintf("Metadata-Version: 2.1\nName: %s\nVersion: %s\nSummary: moe test package\n", name, version)},
		{info + "/WHEEL", "Wheel-Version: 1.0\nGenerator: moe-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"},
		{info + "/entry_points.txt", fmt.Sprintf("[console_scripts]\n%s-hello = %s:hello\n", name, name)},
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	var record strings.Builder
	for _, f := range files {
		w, err := zw.Create(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(f.body)); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(f.body))
		fmt.Fprintf(&record, "%s,sha256=%s,%d\n", f.path, base64.RawURLEncoding.EncodeToString(sum[:]), len(f.body))
	}
	fmt.Fprintf(&record, "%s/RECORD,,\n", info)
	w, err := zw.Create(info + "/RECORD")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte(record.String())); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%s-py3-none-any.whl", name, version)), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// runPy runs code with python and returns its combined output.
func runPy(t *testing.T, python, code string) string {
	t.Helper()
	out, err := exec.Command(python, "-c", code).CombinedOutput()
	if err != nil {
		t.Fatalf("%s -c %q: %v\n%s", python, code, err, out)
	}
	return strings.TrimSpace(string(out))
}

// cacheEntries lists the cache directory, ignoring lock files.
func cacheEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".lock") {
			out = append(out, e.Name())
		}
	}
	return out
}

func wantMissing(t *testing.T, err error, names ...string) *MissingError {
	t.Helper()
	var me *MissingError
	if !errors.As(err, &me) {
		t.Fatalf("err = %v (%T), want *MissingError", err, err)
	}
	for _, n := range names {
		found := false
		for _, p := range me.Packages {
			if strings.Contains(p, n) {
				found = true
			}
		}
		if !found || !strings.Contains(me.Error(), n) {
			t.Errorf("MissingError %q (packages %q) does not name %s", me.Error(), me.Packages, n)
		}
	}
	return me
}

const sklearnConda = `name: model-env
channels:
  - conda-forge
dependencies:
  - python=3.8
  - numpy=1.21.2
  - pip=21.2.4
  - scikit-learn=0.24.2
  - pandas
  - pip:
    - azureml-defaults==1.38.0
    - inference-schema[numpy-support]==1.3.0
    - joblib>=1.0
`

func TestResolveBaseFastPath(t *testing.T) {
	needPython(t)
	r := &Resolver{CacheDir: t.TempDir()}
	var log bytes.Buffer
	start := time.Now()
	py, err := r.Resolve(context.Background(), []byte(sklearnConda), nil, &log)
	elapsed := time.Since(start)
	t.Logf("fast path took %s; log:\n%s", elapsed, log.String())
	if err != nil {
		t.Fatal(err)
	}
	if py != DefaultPython {
		t.Errorf("python = %q, want %s", py, DefaultPython)
	}
	for _, want := range []string{
		"resolving environment",
		"ignoring azureml-defaults==1.38.0: provided by moe",
		"ignoring inference-schema[numpy-support]==1.3.0: provided by moe",
		"ignoring python=3.8",
		"ignoring pip=21.2.4",
		"note: conda file asks for python=3.8",
		"note: numpy=1.21.2 asks for numpy =1.21.2; /usr/bin/python3 has",
		"scikit-learn 1.",
		"no virtualenv needed",
		"environment ready in",
	} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if strings.Contains(log.String(), "note: joblib") {
		t.Error("joblib>=1.0 is satisfied; no pin note expected")
	}
	if got := cacheEntries(t, r.CacheDir); len(got) != 0 {
		t.Errorf("fast path touched the cache: %v", got)
	}
}

func TestResolveNoCondaFile(t *testing.T) {
	needPython(t)
	r := &Resolver{}
	py, err := r.Resolve(context.Background(), nil, nil, nil)
	if err != nil || py != DefaultPython {
		t.Fatalf("Resolve(nil) = %q, %v; want %s", py, err, DefaultPython)
	}
}

func TestResolveBadYAML(t *testing.T) {
	r := &Resolver{Python: "/bin/false-python-not-used"}
	var log bytes.Buffer
	_, err := r.Resolve(context.Background(), []byte("dependencies:\n  - numpy\n - [oops\n"), nil, &log)
	if err == nil || !strings.Contains(err.Error(), "conda file") {
		t.Fatalf("err = %v, want a conda file error", err)
	}
	if !strings.Contains(log.String(), "environment failed") {
		t.Errorf("log does not report the failure:\n%s", log.String())
	}
}

func TestResolveMissingCondaPackage(t *testing.T) {
	needPython(t)
	r := &Resolver{CacheDir: t.TempDir(), WheelDir: t.TempDir()}
	var log bytes.Buffer
	_, err := r.Resolve(context.Background(), []byte("dependencies:\n  - numpy\n  - tensorflow=2.8\n  - py-opencv\n"), nil, &log)
	t.Logf("error: %v", err)
	me := wantMissing(t, err, "tensorflow", "py-opencv")
	if me.Python != DefaultPython {
		t.Errorf("Python = %q", me.Python)
	}
	for _, want := range []string{"apt-get install python3-opencv python3-tensorflow", "under pip:", "install them for /usr/bin/python3"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q", want)
		}
	}
	if strings.Contains(err.Error(), "numpy") {
		t.Error("numpy is installed and must not be named")
	}
	if got := cacheEntries(t, r.CacheDir); len(got) != 0 {
		t.Errorf("no venv expected for conda packages: %v", got)
	}
}

func TestResolveOfflineVenv(t *testing.T) {
	needPython(t)
	wheels := t.TempDir()
	writeWheel(t, wheels, "moetestpkg", "1.0")
	cache := t.TempDir()
	conda := []byte(sklearnConda + "    - moetestpkg==1.0\n")
	r := &Resolver{CacheDir: cache, WheelDir: wheels}

	var log bytes.Buffer
	start := time.Now()
	py, err := r.Resolve(context.Background(), conda, nil, &log)
	build := time.Since(start)
	t.Logf("venv build took %s; log:\n%s", build, log.String())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(py, cache+string(filepath.Separator)) || filepath.Base(py) != "python" {
		t.Fatalf("python = %q, want a venv under %s", py, cache)
	}
	for _, want := range []string{"not in the base interpreter: moetestpkg==1.0", "creating virtualenv", "--system-site-packages",
		"pip install", "--no-index --find-links " + wheels, "moetestpkg==1.0", "Successfully installed moetestpkg-1.0", "built in", "environment ready in"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
	if got := runPy(t, py, "import moetestpkg, sklearn, numpy; print(moetestpkg.VALUE)"); got != "hello from moetestpkg 1.0" {
		t.Errorf("import moetestpkg printed %q", got)
	}
	// The console script's shebang points at the final (renamed) venv.
	if out, err := exec.Command(filepath.Join(filepath.Dir(py), "moetestpkg-hello")).CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "hello from moetestpkg 1.0" {
		t.Errorf("console script: %v %s", err, out)
	}
	if entries := cacheEntries(t, cache); len(entries) != 1 {
		t.Errorf("cache holds %v, want one environment and no temporary directories", entries)
	}

	// Second call: cached, fast.
	log.Reset()
	start = time.Now()
	py2, err := r.Resolve(context.Background(), conda, nil, &log)
	cached := time.Since(start)
	t.Logf("cached resolve took %s; log:\n%s", cached, log.String())
	if err != nil || py2 != py {
		t.Fatalf("second Resolve = %q, %v; want %q", py2, err, py)
	}
	if !strings.Contains(log.String(), "using cached environment") || strings.Contains(log.String(), "pip install") {
		t.Errorf("second Resolve did not use the cache:\n%s", log.String())
	}
	if cached > build {
		t.Errorf("cached resolve (%s) slower than the build (%s)", cached, build)
	}

	// A new Resolver (a restarted server) finds the same environment.
	r2 := &Resolver{CacheDir: cache, WheelDir: wheels}
	if py3, err := r2.Resolve(context.Background(), conda, nil, nil); err != nil || py3 != py {
		t.Errorf("restarted Resolve = %q, %v; want %q", py3, err, py)
	}

	// A broken cached environment is rebuilt, not used.
	if err := os.RemoveAll(filepath.Join(filepath.Dir(filepath.Dir(py)), "lib")); err != nil {
		t.Fatal(err)
	}
	log.Reset()
	if py4, err := r.Resolve(context.Background(), conda, nil, &log); err != nil || py4 != py {
		t.Fatalf("Resolve after breaking the cache = %q, %v\n%s", py4, err, log.String())
	}
	if !strings.Contains(log.String(), "is unusable") || !strings.Contains(log.String(), "Successfully installed") {
		t.Errorf("broken cache not rebuilt:\n%s", log.String())
	}
	runPy(t, py, "import moetestpkg")
}

func TestResolveConcurrentSameHash(t *testing.T) {
	needPython(t)
	wheels := t.TempDir()
	writeWheel(t, wheels, "moetestpkg", "1.0")
	r := &Resolver{CacheDir: t.TempDir(), WheelDir: wheels}
	conda := []byte("dependencies:\n  - numpy\n  - pip:\n    - moetestpkg\n")
	const n = 4
	var wg sync.WaitGroup
	pys := make([]string, n)
	errs := make([]error, n)
	logs := make([]bytes.Buffer, n)
	for i := range n {
		wg.Go(func() {
			pys[i], errs[i] = r.Resolve(context.Background(), conda, nil, &logs[i])
		})
	}
	wg.Wait()
	builds := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Resolve %d: %v\n%s", i, errs[i], logs[i].String())
		}
		if pys[i] != pys[0] {
			t.Errorf("Resolve %d = %q, want %q", i, pys[i], pys[0])
		}
		if strings.Contains(logs[i].String(), "Successfully installed") {
			builds++
		}
	}
	if builds != 1 {
		t.Errorf("%d builds, want 1", builds)
	}
	if entries := cacheEntries(t, r.CacheDir); len(entries) != 1 {
		t.Errorf("cache holds %v", entries)
	}
}

func TestResolvePipMissingFromWheelDir(t *testing.T) {
	needPython(t)
	wheels := t.TempDir()
	writeWheel(t, wheels, "moetestpkg", "1.0")
	cache := t.TempDir()
	r := &Resolver{CacheDir: cache, WheelDir: wheels}
	var log bytes.Buffer
	_, err := r.Resolve(context.Background(), []byte("dependencies:\n  - pip:\n    - moetestpkg\n    - moeabsentpkg==2.0\n"), nil, &log)
	t.Logf("error: %v\nlog:\n%s", err, log.String())
	me := wantMissing(t, err, "moeabsentpkg")
	if len(me.Packages) != 1 {
		t.Errorf("Packages = %q, want only moeabsentpkg (moetestpkg is in the wheel directory)", me.Packages)
	}
	for _, want := range []string{"wheel directory " + wheels, "moeabsentpkg"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q", want)
		}
	}
	if !strings.Contains(log.String(), "retrying without version pins") {
		t.Error("expected a retry without pins")
	}
	if entries := cacheEntries(t, cache); len(entries) != 0 {
		t.Errorf("half-built environment left behind: %v", entries)
	}
}

func TestResolveWrongVersionInWheelDirRetriesUnpinned(t *testing.T) {
	needPython(t)
	wheels := t.TempDir()
	writeWheel(t, wheels, "moetestpkg", "1.0")
	r := &Resolver{CacheDir: t.TempDir(), WheelDir: wheels}
	var log bytes.Buffer
	py, err := r.Resolve(context.Background(), []byte("dependencies:\n  - pip:\n    - moetestpkg==0.9\n"), nil, &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if got := runPy(t, py, "import moetestpkg; print(moetestpkg.VALUE)"); got != "hello from moetestpkg 1.0" {
		t.Errorf("got %q", got)
	}
}

func TestResolveNoWheelDirOffline(t *testing.T) {
	needPython(t)
	// pip's normal configuration, pointed at an index that refuses
	// connections, stands in for a machine without network access.
	t.Setenv("PIP_INDEX_URL", "http://127.0.0.1:1/simple")
	t.Setenv("PIP_RETRIES", "0")
	t.Setenv("PIP_TIMEOUT", "2")
	cache := t.TempDir()
	r := &Resolver{CacheDir: cache}
	var log bytes.Buffer
	_, err := r.Resolve(context.Background(), []byte("dependencies:\n  - pip:\n    - moetestpkg\n"), nil, &log)
	t.Logf("error: %v", err)
	wantMissing(t, err, "moetestpkg")
	if !strings.Contains(err.Error(), "no wheel directory is configured") {
		t.Errorf("error does not explain the missing wheel directory: %v", err)
	}
	if entries := cacheEntries(t, cache); len(entries) != 0 {
		t.Errorf("half-built environment left behind: %v", entries)
	}
}

func TestResolveCancelled(t *testing.T) {
	needPython(t)
	wheels := t.TempDir()
	writeWheel(t, wheels, "moetestpkg", "1.0")
	cache := t.TempDir()
	r := &Resolver{CacheDir: cache, WheelDir: wheels}
	conda := []byte("dependencies:\n  - pip:\n    - moetestpkg\n")
	for _, d := range []time.Duration{0, 150 * time.Millisecond, 400 * time.Millisecond} {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		_, err := r.Resolve(ctx, conda, nil, nil)
		cancel()
		if err == nil {
			continue // the machine was fast enough; nothing to check
		}
		if entries := cacheEntries(t, cache); len(entries) != 0 {
			t.Errorf("after cancel at %s: cache holds %v", d, entries)
		}
	}
}

func TestResolveExplicit(t *testing.T) {
	needPython(t)
	ctx := context.Background()
	wheels := t.TempDir()
	writeWheel(t, wheels, "moetestpkg", "1.0")

	t.Run("Explicit is used as-is", func(t *testing.T) {
		r := &Resolver{Explicit: DefaultPython, CacheDir: t.TempDir()}
		var log bytes.Buffer
		py, err := r.Resolve(ctx, []byte(sklearnConda), nil, &log)
		if err != nil || py != DefaultPython {
			t.Fatalf("= %q, %v", py, err)
		}
		if !strings.Contains(log.String(), "server's explicit python") {
			t.Errorf("log:\n%s", log.String())
		}
	})
	t.Run("MOE_PYTHON overrides Explicit", func(t *testing.T) {
		r := &Resolver{Explicit: "/nonexistent/python3", CacheDir: t.TempDir()}
		var log bytes.Buffer
		py, err := r.Resolve(ctx, []byte(sklearnConda), map[string]string{"MOE_PYTHON": DefaultPython}, &log)
		if err != nil || py != DefaultPython {
			t.Fatalf("= %q, %v", py, err)
		}
		if !strings.Contains(log.String(), "MOE_PYTHON") {
			t.Errorf("log:\n%s", log.String())
		}
		// Without MOE_PYTHON the broken explicit interpreter is reported.
		_, err = r.Resolve(ctx, []byte(sklearnConda), nil, nil)
		if err == nil || !strings.Contains(err.Error(), "/nonexistent/python3") {
			t.Errorf("err = %v, want one naming the explicit interpreter", err)
		}
		_, err = r.Resolve(ctx, nil, nil, nil)
		if err == nil || !strings.Contains(err.Error(), "/nonexistent/python3") {
			t.Errorf("no conda file: err = %v, want one naming the explicit interpreter", err)
		}
	})
	t.Run("explicit interpreter gets no venv", func(t *testing.T) {
		cache := t.TempDir()
		r := &Resolver{CacheDir: cache, WheelDir: wheels}
		_, err := r.Resolve(ctx, []byte("dependencies:\n  - pip:\n    - moetestpkg\n"), map[string]string{"MOE_PYTHON": DefaultPython}, nil)
		t.Logf("error: %v", err)
		wantMissing(t, err, "moetestpkg")
		if !strings.Contains(err.Error(), "MOE_PYTHON") {
			t.Errorf("error does not say the interpreter came from MOE_PYTHON: %v", err)
		}
		if entries := cacheEntries(t, cache); len(entries) != 0 {
			t.Errorf("venv built for an explicit interpreter: %v", entries)
		}
	})
	t.Run("PATH python3 without Debian packages", func(t *testing.T) {
		other, err := exec.LookPath("python3")
		if err != nil {
			t.Skip("no python3 on PATH")
		}
		if real, _ := filepath.EvalSymlinks(other); real == DefaultPython || other == DefaultPython {
			t.Skip("python3 on PATH is Debian's")
		}
		if exec.Command(other, "-c", "import sklearn").Run() == nil {
			t.Skipf("%s has sklearn", other)
		}
		r := &Resolver{}
		_, err = r.Resolve(ctx, []byte("dependencies:\n  - scikit-learn\n"), map[string]string{"MOE_PYTHON": other}, nil)
		t.Logf("error: %v", err)
		wantMissing(t, err, "scikit-learn")
		if !strings.Contains(err.Error(), "python3-sklearn") {
			t.Errorf("error lacks the Debian package: %v", err)
		}
	})
}
