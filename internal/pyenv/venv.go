package pyenv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// markerFile is written into a virtualenv once it is complete; a directory
// without it is never used.
const markerFile = "moe-env.json"

type marker struct {
	Hash         string    `json:"hash"`
	BasePython   string    `json:"base_python"`
	Version      string    `json:"python_version"`
	Requirements []string  `json:"requirements"`
	WheelDir     string    `json:"wheel_dir,omitempty"`
	Created      time.Time `json:"created"`
	BuildSeconds float64   `json:"build_seconds"`
}

// venv returns the python of a cached virtualenv that adds missing (pip
// requirements) to base, building it if needed. all are every checked
// requirement; the virtualenv must satisfy all of them.
func (r *Resolver) venv(ctx context.Context, base string, baseInfo *interpInfo, all, missing []Requirement, log io.Writer, logf func(string, ...any)) (string, error) {
	cache, err := r.cacheDir()
	if err != nil {
		return "", err
	}
	wheelDir, listing, err := r.wheels()
	if err != nil {
		return "", err
	}
	specs := make([]string, len(missing))
	for i, m := range missing {
		specs[i] = m.String()
	}
	sort.Strings(specs)
	hash := contentHash(base, baseInfo.Version, specs, wheelDir, listing)
	final := filepath.Join(cache, hash)
	py := filepath.Join(final, "bin", "python")

	unlock, err := r.lock(ctx, cache, hash, logf)
	if err != nil {
		return "", err
	}
	defer unlock()

	if _, err := os.Stat(filepath.Join(final, markerFile)); err == nil {
		info, err := check(ctx, py, all)
		if err == nil && missingOf(all, info) == nil {
			logf("using cached environment %s (%s)", hash, final)
			return py, nil
		}
		if ctx.Err() != nil {
			return "", context.Cause(ctx)
		}
		why := "packages missing"
		if err != nil {
			why = err.Error()
		}
		logf("cached environment %s is unusable (%s); rebuilding", hash, why)
		if err := removeDir(cache, final); err != nil {
			return "", fmt.Errorf("removing broken environment %s: %w", final, err)
		}
	} else if _, err := os.Lstat(final); err == nil {
		// Left by something else; never used without a marker.
		if err := removeDir(cache, final); err != nil {
			return "", fmt.Errorf("removing incomplete environment %s: %w", final, err)
		}
	}

	// Leftovers of builds of this hash that were killed (we hold the lock).
	if old, _ := filepath.Glob(filepath.Join(cache, ".tmp-"+hash+"-*")); len(old) > 0 {
		for _, o := range old {
			_ = os.RemoveAll(o)
		}
	}

	start := time.Now()
	tmp, err := os.MkdirTemp(cache, ".tmp-"+hash+"-")
	if err != nil {
		return "", fmt.Errorf("environment cache: %w", err)
	}
	done := false
	defer func() {
		if !done {
			_ = os.RemoveAll(tmp)
		}
	}()

	// A virtualenv without its own pip reuses the base interpreter's pip
	// through the system site packages: no ensurepip, ~50ms instead of ~3s.
	venvArgs := []string{"-m", "venv", "--system-site-packages"}
	if baseInfo.Pip {
		venvArgs = append(venvArgs, "--without-pip")
	}
	venvArgs = append(venvArgs, tmp)
	logf("creating virtualenv %s (%s %s)", hash, base, strings.Join(venvArgs[:len(venvArgs)-1], " "))
	if out, err := run(ctx, base, venvArgs, log, "  venv: "); err != nil {
		return "", fmt.Errorf("creating virtualenv with %s: %w: %s (on Debian: apt-get install python3-venv)", base, err, firstError(out))
	}
	tmpPy := filepath.Join(tmp, "bin", "python")

	install := func(reqs []Requirement) (string, error) {
		args := []string{"-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--progress-bar", "off"}
		if wheelDir != "" {
			args = append(args, "--no-index", "--find-links", wheelDir, "--no-build-isolation")
		}
		for _, m := range reqs {
			args = append(args, m.String())
		}
		logf("pip install %s", strings.Join(args[3:], " "))
		return run(ctx, tmpPy, args, log, "  pip: ")
	}
	out, err := install(missing)
	if err != nil && ctx.Err() == nil && hasPins(missing) {
		logf("pip failed with the pinned versions; retrying without version pins (pins are not enforced)")
		unpinned := make([]Requirement, len(missing))
		for i, m := range missing {
			unpinned[i] = m.unpinned()
		}
		out, err = install(unpinned)
	}
	if err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("pip install: %w", context.Cause(ctx))
		}
		return "", r.pipError(base, missing, wheelDir, out)
	}

	if err := relocate(tmp, final); err != nil {
		return "", fmt.Errorf("finishing virtualenv: %w", err)
	}
	info, err := check(ctx, tmpPy, all)
	if err != nil {
		return "", err
	}
	if still := missingOf(all, info); still != nil {
		return "", &MissingError{
			Python:   base,
			Packages: rawNames(still),
			hint:     "pip installed the wheels but these names are still not found as installed distributions or importable modules: check the names under pip: in the conda file against the wheels in " + orDefault(wheelDir, "the package index"),
		}
	}
	m := marker{Hash: hash, BasePython: base, Version: baseInfo.Version, Requirements: specs,
		WheelDir: wheelDir, Created: time.Now().UTC(), BuildSeconds: time.Since(start).Seconds()}
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, markerFile), append(b, '\n'), 0o644); err != nil {
		return "", fmt.Errorf("finishing virtualenv: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		// Another process without the file lock won the race.
		if _, serr := os.Stat(filepath.Join(final, markerFile)); serr == nil {
			logf("environment %s was built concurrently; using it", hash)
			return py, nil
		}
		return "", fmt.Errorf("installing virtualenv: %w", err)
	}
	done = true
	logf("virtualenv %s built in %s", hash, since(start))
	return py, nil
}

func (r *Resolver) cacheDir() (string, error) {
	dir := r.CacheDir
	if dir == "" {
		if uc, err := os.UserCacheDir(); err == nil {
			dir = filepath.Join(uc, "moe", "pyenv")
		} else {
			dir = filepath.Join(os.TempDir(), "moe-pyenv")
		}
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("environment cache: %w", err)
	}
	return dir, nil
}

// wheels returns the absolute wheel directory and a listing of it (name,
// size, modification time) for the content hash.
func (r *Resolver) wheels() (dir string, listing []string, err error) {
	if r.WheelDir == "" {
		return "", nil, nil
	}
	dir, err = filepath.Abs(r.WheelDir)
	if err != nil {
		return "", nil, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", nil, fmt.Errorf("wheel directory: %w", err)
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil || fi.IsDir() {
			continue
		}
		listing = append(listing, fmt.Sprintf("%s %d %d", e.Name(), fi.Size(), fi.ModTime().UnixNano()))
	}
	return dir, listing, nil
}

func contentHash(base, version string, specs []string, wheelDir string, listing []string) string {
	h := sha256.New()
	fmt.Fprintf(h, "moe-pyenv v1\npython %s %s\n", base, version)
	for _, s := range specs {
		fmt.Fprintf(h, "req %s\n", s)
	}
	fmt.Fprintf(h, "wheels %s\n", wheelDir)
	for _, l := range listing {
		fmt.Fprintf(h, "wheel %s\n", l)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// lock serialises builds of one content hash, within this process (a
// ctx-aware per-hash semaphore) and across processes (a lock file).
func (r *Resolver) lock(ctx context.Context, cache, hash string, logf func(string, ...any)) (func(), error) {
	r.mu.Lock()
	if r.locks == nil {
		r.locks = map[string]chan struct{}{}
	}
	ch := r.locks[hash]
	if ch == nil {
		ch = make(chan struct{}, 1)
		r.locks[hash] = ch
	}
	r.mu.Unlock()
	select {
	case ch <- struct{}{}:
	default:
		logf("waiting for another build of environment %s", hash)
		select {
		case ch <- struct{}{}:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
	unlockFile, err := lockFile(ctx, filepath.Join(cache, hash+".lock"))
	if err != nil {
		<-ch
		return nil, fmt.Errorf("locking environment %s: %w", hash, err)
	}
	return func() { unlockFile(); <-ch }, nil
}

// run runs a subprocess with its output streamed to log, each line prefixed;
// it returns the tail of the output.
func run(ctx context.Context, name string, args []string, log io.Writer, prefix string) (string, error) {
	t := &tailBuffer{max: 8 << 10}
	w := io.MultiWriter(&prefixWriter{w: log, prefix: prefix}, t)
	cmd := command(ctx, name, args...)
	cmd.Stdout = w
	cmd.Stderr = w
	cmd.Env = append(os.Environ(), "PIP_DISABLE_PIP_VERSION_CHECK=1", "PIP_NO_INPUT=1", "PIP_USER=0", "PYTHONUNBUFFERED=1")
	err := cmd.Run()
	return t.String(), err
}

// relocate rewrites the temporary directory's path to the final one in the
// virtualenv's scripts (shebangs, activate) and pyvenv.cfg, so the
// environment works after the rename.
func relocate(tmp, final string) error {
	old, repl := []byte(tmp), []byte(final)
	fix := func(path string) error {
		fi, err := os.Lstat(path)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() > 1<<20 {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil || !bytes.Contains(b, old) {
			return err
		}
		return os.WriteFile(path, bytes.ReplaceAll(b, old, repl), fi.Mode().Perm())
	}
	if err := fix(filepath.Join(tmp, "pyvenv.cfg")); err != nil {
		return err
	}
	entries, err := os.ReadDir(filepath.Join(tmp, "bin"))
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := fix(filepath.Join(tmp, "bin", e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// removeDir removes dir by first renaming it aside, so a reader never sees
// a half-deleted environment.
func removeDir(cache, dir string) error {
	aside := filepath.Join(cache, ".tmp-"+filepath.Base(dir)+"-old"+fmt.Sprint(time.Now().UnixNano()))
	if err := os.Rename(dir, aside); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	return os.RemoveAll(aside)
}

func (r *Resolver) pipError(base string, missing []Requirement, wheelDir, out string) error {
	detail := firstError(out)
	names := pipMissing(missing, wheelDir, out)
	var named []Requirement
	for _, m := range missing {
		if slices.Contains(names, m.Raw) {
			named = append(named, m)
		}
	}
	debian := ""
	if len(named) > 0 {
		debian = fmt.Sprintf(" (on Debian: apt-get install %s)", debianNames(named))
	}
	var hint string
	if wheelDir != "" {
		hint = fmt.Sprintf("pip could not install them offline from the wheel directory %s (%s): add wheels for them and their dependencies there, or install them for %s%s",
			wheelDir, detail, base, debian)
	} else {
		hint = fmt.Sprintf("no wheel directory is configured and pip could not install them from its package index (%s; this machine may have no network access): configure a wheel directory holding their wheels, or install them for %s%s",
			detail, base, debian)
	}
	return &MissingError{Python: base, Packages: names, hint: hint}
}

var noMatchRE = regexp.MustCompile(`(?:No matching distribution found for|Could not find a version that satisfies the requirement) ([^\s;(]+)`)

// pipMissing narrows the requirements pip failed on to those it names in
// its errors (it stops at the first one) plus those with no file at all in
// the wheel directory; a dependency pip could not find is named as pip
// printed it. If nothing can be narrowed, all of missing are returned.
func pipMissing(missing []Requirement, wheelDir, out string) []string {
	var names []string
	seen := map[string]bool{}
	add := func(key, name string) {
		if !seen[key] {
			seen[key] = true
			names = append(names, name)
		}
	}
	byKey := map[string]Requirement{}
	for _, m := range missing {
		byKey[m.Key] = m
	}
	for _, m := range noMatchRE.FindAllStringSubmatch(out, -1) {
		name := nameRE.FindString(m[1])
		if name == "" {
			continue
		}
		key := Normalize(name)
		if req, ok := byKey[key]; ok {
			add(key, req.Raw)
		} else {
			add(key, m[1]+" (a dependency)")
		}
	}
	if wheelDir != "" && len(names) > 0 {
		var files []string
		if entries, err := os.ReadDir(wheelDir); err == nil {
			for _, e := range entries {
				files = append(files, Normalize(e.Name()))
			}
		}
		for _, m := range missing {
			has := false
			for _, f := range files {
				if strings.HasPrefix(f, m.Key+"-") {
					has = true
					break
				}
			}
			if !has {
				add(m.Key, m.Raw)
			}
		}
	}
	if len(names) == 0 {
		return rawNames(missing)
	}
	return names
}

// firstError picks pip's ERROR lines from its output, else its last line.
func firstError(out string) string {
	var errs []string
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "ERROR:") || strings.HasPrefix(l, "Error:") {
			errs = append(errs, l)
		}
	}
	if len(errs) == 0 && len(lines) > 0 {
		errs = lines[len(lines)-1:]
	}
	return tail(strings.Join(errs, " "), 600)
}

func missingOf(all []Requirement, info *interpInfo) []Requirement {
	var out []Requirement
	for i, r := range all {
		if res := info.Results[i]; !res.Found && !res.Skipped {
			out = append(out, r)
		}
	}
	return out
}

func hasPins(reqs []Requirement) bool {
	for _, r := range reqs {
		if r.Spec != "" {
			return true
		}
	}
	return false
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
