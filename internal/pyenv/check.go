package pyenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// checkScript runs inside the interpreter being checked. It reads a JSON list
// of {dists, modules, marker} on stdin and writes one result per entry, plus
// facts about the interpreter, as JSON on stdout. It must run on any Python 3.
const checkScript = `
import sys, json, re, importlib.util
try:
    import importlib.metadata as md
except ImportError:
    md = None
def norm(n):
    return re.sub(r"[-_.]+", "-", n).lower()
reqs = json.load(sys.stdin)
dists = {}
if md is not None:
    for d in md.distributions():
        try:
            n = d.metadata["Name"]
        except Exception:
            n = None
        if n and norm(n) not in dists:
            dists[norm(n)] = (n, d.version)
Marker = None
for m in ("packaging.markers", "pip._vendor.packaging.markers"):
    try:
        Marker = __import__(m, fromlist=["Marker"]).Marker
        break
    except Exception:
        pass
def has_module(name):
    try:
        return importlib.util.find_spec(name) is not None
    except Exception:
        return False
out = []
for r in reqs:
    res = {"found": False}
    if r.get("marker") and Marker is not None:
        try:
            if not Marker(r["marker"]).evaluate():
                res["skipped"] = True
        except Exception:
            pass
    if not res.get("skipped"):
        for k in r["dists"]:
            if k in dists:
                res.update(found=True, dist=dists[k][0], version=dists[k][1])
                break
        else:
            for mod in r["modules"]:
                if has_module(mod):
                    res.update(found=True, module=mod)
                    break
    out.append(res)
json.dump({
    "executable": sys.executable,
    "version": "%d.%d.%d" % tuple(sys.version_info[:3]),
    "venv": sys.prefix != getattr(sys, "base_prefix", sys.prefix),
    "pip": has_module("pip"),
    "results": out,
}, sys.stdout)
`

type checkInput struct {
	Dists   []string `json:"dists"`
	Modules []string `json:"modules"`
	Marker  string   `json:"marker,omitempty"`
}

type checkResult struct {
	Found   bool   `json:"found"`
	Skipped bool   `json:"skipped"` // environment marker false: not needed here
	Dist    string `json:"dist"`
	Version string `json:"version"`
	Module  string `json:"module"`
}

type interpInfo struct {
	Executable string        `json:"executable"`
	Version    string        `json:"version"`
	Venv       bool          `json:"venv"`
	Pip        bool          `json:"pip"`
	Results    []checkResult `json:"results"`
}

// checkTimeout bounds one check subprocess even when ctx has no deadline.
const checkTimeout = 2 * time.Minute

// check asks python, in one subprocess, which of reqs are installed.
func check(ctx context.Context, python string, reqs []Requirement) (*interpInfo, error) {
	in := make([]checkInput, len(reqs))
	for i, r := range reqs {
		a := lookup(r.Key)
		in[i] = checkInput{Dists: a.dists, Modules: a.modules, Marker: r.Marker}
	}
	input, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := command(ctx, python, "-c", checkScript)
	cmd.Stdin = bytes.NewReader(input)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("checking packages with %s: %w", python, context.Cause(ctx))
		}
		var ee *exec.Error
		if errors.As(err, &ee) || errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("python interpreter %s cannot be run: %w", python, err)
		}
		return nil, fmt.Errorf("checking packages with %s: %v: %s", python, err, tail(stderr.String(), 800))
	}
	var info interpInfo
	if err := json.Unmarshal(stdout.Bytes(), &info); err != nil || len(info.Results) != len(reqs) {
		return nil, fmt.Errorf("checking packages with %s: unexpected output %q (is it Python 3?)", python, tail(stdout.String()+stderr.String(), 400))
	}
	return &info, nil
}

// command is exec.CommandContext with the subprocess (and anything it
// starts) killed when ctx ends.
func command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	setProcessGroup(cmd)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// tail returns at most the last n bytes of s, trimmed.
func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}

// prefixWriter writes each line to w with a prefix. Not safe for concurrent
// use; exec.Cmd uses one copying goroutine when Stdout == Stderr.
type prefixWriter struct {
	w      io.Writer
	prefix string
	mid    bool // in the middle of a line
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	n := len(b)
	var buf bytes.Buffer
	for len(b) > 0 {
		if !p.mid {
			buf.WriteString(p.prefix)
			p.mid = true
		}
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			buf.Write(b)
			break
		}
		buf.Write(b[:i+1])
		b = b[i+1:]
		p.mid = false
	}
	if _, err := p.w.Write(buf.Bytes()); err != nil {
		return 0, err
	}
	return n, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	buf []byte
	max int
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.buf = append(t.buf, b...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(b), nil
}

func (t *tailBuffer) String() string { return string(t.buf) }
