package host

import (
	"os/exec"
	"strings"
	"testing"
)

// TestHost_JSONParity checks that what run() returns reaches the client
// byte for byte as Python's json.dumps prints it (the Azure server's
// serialisation), with None mapped to {}.
func TestHost_JSONParity(t *testing.T) {
	py := testPython(t)
	dir := writeScript(t, "def init(): pass\ndef run(data):\n    return eval(data)\n")
	th := startHost(t, Config{CodeDir: dir, Python: py})
	values := []string{
		`[11055.977245525679, 4503.079536107787]`,
		`0.1 + 0.2`,
		`1e-07`,
		`1e300 * 10`,
		`float("nan")`,
		`-0.0`,
		`2**70`,
		`-(2**63)`,
		`True`,
		`False`,
		`"plain"`,
		`"héllo wörld ✓ 😀"`,
		`"quote \" backslash \\ newline \n tab \t nul \x00 del \x7f"`,
		`{"nested": {"list": [1, [2, [3, {"k": None}]]], "t": (1, 2)}, "b": True}`,
		`{1: "int key", 2.5: "float key", None: "none key", True: "bool key"}`,
		`[]`,
		`{}`,
		`""`,
		`"{\"0\":{\"0\":1.5}}"`,
	}
	for _, v := range values {
		t.Run(v, func(t *testing.T) {
			out, err := exec.Command(py, "-c", "import json; print(json.dumps("+v+"))").Output()
			if err != nil {
				t.Fatalf("python: %v", err)
			}
			want := strings.TrimSuffix(string(out), "\n")
			status, _, got := do(t, "POST", th.URL+"/score", v, nil)
			if status != 200 || got != want {
				t.Errorf("run() returning %s: got %d %q; want 200 %q", v, status, got, want)
			}
		})
	}
	t.Run("None", func(t *testing.T) {
		if status, _, got := do(t, "POST", th.URL+"/score", "None", nil); status != 200 || got != "{}" {
			t.Errorf("run() returning None: got %d %q; want 200 {}", status, got)
		}
	})
}

// TestPyJSONString checks the host's own error-message encoder against
// Python's json.dumps.
func TestPyJSONString(t *testing.T) {
	py := testPython(t)
	in := "Scoring \"timeout\" \\ é ✓ 😀 \x00\x1f\x7f\n\t"
	cmd := exec.Command(py, "-c", "import json, sys; sys.stdout.write(json.dumps(sys.stdin.read()))")
	cmd.Stdin = strings.NewReader(in)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := pyJSONString(in); got != string(out) {
		t.Errorf("pyJSONString = %s; want %s", got, out)
	}
}
