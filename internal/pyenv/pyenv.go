// Package pyenv resolves a deployment's environment (an image plus a conda
// file) to a Python interpreter on this machine, without containers.
//
// The order is: MOE_PYTHON in the deployment's environment variables, then
// the server's explicit interpreter, each used as-is; otherwise the base
// interpreter when it already has every requirement (the fast path), else a
// virtualenv on top of the base interpreter (system site packages visible)
// with the missing pip requirements installed offline from a wheel
// directory, built once per content hash and cached. Conda (non-pip)
// requirements must already be installed for the base interpreter. Version
// pins are logged, never enforced: Debian's versions differ from the pins in
// most conda files.
package pyenv

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"
)

// EnvPython is the deployment environment variable that names the
// interpreter for that deployment, overriding everything else.
const EnvPython = "MOE_PYTHON"

// DefaultPython is the preferred base interpreter (Debian's, which has the
// python3-* packages installed).
const DefaultPython = "/usr/bin/python3"

// Resolver resolves environments to interpreters. The zero value is usable;
// a Resolver must not be copied after first use.
type Resolver struct {
	// Python is the base interpreter; default "/usr/bin/python3" if it
	// exists, else "python3" from PATH.
	Python string
	// Explicit, if set (server flag / MOE_PYTHON), is used as-is for every
	// deployment (no venv), but requirements are still checked.
	Explicit string
	// CacheDir holds venvs, one per content hash (of base python path +
	// normalized pip requirements + wheel dir listing). Default: the user
	// cache directory's moe/pyenv.
	CacheDir string
	// WheelDir, if set, is a local wheel directory for offline pip installs
	// (--no-index --find-links).
	WheelDir string
	Logger   *slog.Logger

	mu    sync.Mutex
	locks map[string]chan struct{} // per content hash, held while building
}

// MissingError lists requirements that are not importable/installed; its
// message names them and says how to fix it.
type MissingError struct {
	Python   string
	Packages []string

	hint string
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("environment: Python packages not available for %s: %s; %s",
		e.Python, strings.Join(e.Packages, ", "), e.hint)
}

// Resolve returns the interpreter for a deployment. condaFile is the conda
// YAML content (may be nil: no requirements -> base Python). envVars are the
// deployment's environment_variables (MOE_PYTHON there overrides everything
// for that deployment). Progress lines are written to log (the deployment's
// provisioning log).
func (r *Resolver) Resolve(ctx context.Context, condaFile []byte, envVars map[string]string, log io.Writer) (python string, err error) {
	start := time.Now()
	if log == nil {
		log = io.Discard
	}
	logf := func(format string, args ...any) { fmt.Fprintf(log, format+"\n", args...) }
	lg := r.logger()
	defer func() {
		if err != nil {
			logf("environment failed after %s: %v", since(start), err)
			lg.Warn("environment failed", "err", err, "elapsed", time.Since(start))
			return
		}
		logf("environment ready in %s: %s", since(start), python)
		lg.Info("environment ready", "python", python, "elapsed", time.Since(start))
	}()

	logf("resolving environment")
	conda, err := ParseConda(condaFile)
	if err != nil {
		return "", err
	}

	// Which interpreter?
	var source string // non-empty: explicit interpreter, used as-is
	switch {
	case strings.TrimSpace(envVars[EnvPython]) != "":
		python, source = strings.TrimSpace(envVars[EnvPython]), EnvPython+" (deployment environment variable)"
	case r.Explicit != "":
		python, source = r.Explicit, "the server's explicit python setting"
	default:
		if python, err = r.basePython(); err != nil {
			return "", err
		}
	}
	if source != "" {
		logf("using interpreter %s from %s; no virtualenv is built", python, source)
	} else {
		logf("base interpreter %s", python)
	}

	for _, s := range conda.Skipped {
		logf("ignoring %s", s)
	}
	reqs, pythonPin := classify(conda.Dependencies, logf)

	if len(reqs) == 0 {
		if _, err := exec.LookPath(python); err != nil {
			return "", fmt.Errorf("python interpreter %s cannot be run: %w", python, err)
		}
		logf("no packages to check")
		return python, nil
	}

	logf("checking %d package(s) with %s: %s", len(reqs), python, reqNames(reqs))
	info, err := check(ctx, python, reqs)
	if err != nil {
		if source != "" {
			err = fmt.Errorf("%s: %w", source, err)
		}
		return "", err
	}
	if pythonPin != "" {
		if ok, _ := versionSatisfies(info.Version, pythonPin); !ok {
			logf("note: conda file asks for python%s; %s is Python %s (not enforced)", pythonPin, python, info.Version)
		}
	}
	var found []string
	var missingConda, missingPip []Requirement
	for i, req := range reqs {
		res := info.Results[i]
		switch {
		case res.Skipped:
			logf("skipping %s: its environment marker does not apply here", req.Raw)
		case res.Found:
			found = append(found, describe(req, res))
			notePin(logf, python, req, res)
		case req.Pip:
			missingPip = append(missingPip, req)
		default:
			missingConda = append(missingConda, req)
		}
	}
	if len(found) > 0 {
		logf("found in %s: %s", python, strings.Join(found, ", "))
	}

	if source != "" {
		if missing := append(append([]Requirement(nil), missingConda...), missingPip...); len(missing) > 0 {
			return "", &MissingError{
				Python:   python,
				Packages: rawNames(missing),
				hint: fmt.Sprintf("the interpreter was set by %s, so moe uses it as-is and builds no virtualenv: install them for %s (for example %s -m pip install %s; on Debian: apt-get install %s) or unset it",
					source, python, python, pipArgs(missing), debianNames(missing)),
			}
		}
		return python, nil
	}
	if len(missingConda) > 0 {
		return "", &MissingError{
			Python:   python,
			Packages: rawNames(missingConda),
			hint: fmt.Sprintf("conda dependencies are not installed by moe and must already be present: install them for %s (on Debian: apt-get install %s) or list them under pip: with a wheel directory",
				python, debianNames(missingConda)),
		}
	}
	if len(missingPip) == 0 {
		logf("all packages are present in the base interpreter; no virtualenv needed")
		return python, nil
	}
	logf("not in the base interpreter: %s", reqNames(missingPip))
	return r.venv(ctx, python, info, reqs, missingPip, log, logf)
}

func (r *Resolver) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (r *Resolver) basePython() (string, error) {
	if r.Python != "" {
		p, err := exec.LookPath(r.Python)
		if err != nil {
			return "", fmt.Errorf("base python interpreter %s cannot be run: %w", r.Python, err)
		}
		return p, nil
	}
	if fi, err := os.Stat(DefaultPython); err == nil && !fi.IsDir() {
		return DefaultPython, nil
	}
	p, err := exec.LookPath("python3")
	if err != nil {
		return "", fmt.Errorf("no Python interpreter: %s does not exist and python3 is not on PATH (install python3, or set an explicit interpreter)", DefaultPython)
	}
	return p, nil
}

// classify drops ignored requirements (logging why), de-duplicates names
// listed twice (preferring the pip entry, which can be installed) and
// returns the python version pin, if any.
func classify(deps []Requirement, logf func(string, ...any)) (reqs []Requirement, pythonPin string) {
	index := map[string]int{}
	for _, d := range deps {
		if why := ignoreReason(d.Key); why != "" {
			if d.Key == "python" {
				pythonPin = d.Spec
			}
			logf("ignoring %s: %s", d.Raw, why)
			continue
		}
		k := canonical(d.Key)
		if i, ok := index[k]; ok {
			if d.Pip && !reqs[i].Pip {
				reqs[i] = d
			}
			continue
		}
		index[k] = len(reqs)
		reqs = append(reqs, d)
	}
	return reqs, pythonPin
}

func notePin(logf func(string, ...any), python string, req Requirement, res checkResult) {
	if req.Spec == "" || res.Version == "" {
		return
	}
	ok, err := versionSatisfies(res.Version, req.Spec)
	if err != nil || !ok {
		logf("note: %s asks for %s %s; %s has %s (version pins are not enforced)",
			req.Raw, req.Name, req.Spec, python, res.Version)
	}
}

func describe(req Requirement, res checkResult) string {
	switch {
	case res.Version != "":
		return res.Dist + " " + res.Version
	case res.Module != "":
		return req.Name + " (module " + res.Module + ")"
	}
	return req.Name
}

func reqNames(reqs []Requirement) string { return strings.Join(rawNames(reqs), ", ") }

func rawNames(reqs []Requirement) []string {
	out := make([]string, len(reqs))
	for i, r := range reqs {
		out[i] = r.Raw
	}
	return out
}

func pipArgs(reqs []Requirement) string {
	out := make([]string, len(reqs))
	for i, r := range reqs {
		out[i] = r.Name
	}
	return strings.Join(out, " ")
}

func debianNames(reqs []Requirement) string {
	seen := map[string]bool{}
	var out []string
	for _, r := range reqs {
		d := lookup(r.Key).debian
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// since formats an elapsed time for the provisioning log ("240ms", "1.2s").
func since(t time.Time) string {
	d := time.Since(t)
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(100 * time.Millisecond).String()
}
