package pyenv

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Requirement is one dependency from a conda file, either a conda package
// spec ("numpy=1.21.2") or a pip requirement ("joblib>=1.0").
type Requirement struct {
	Raw    string   // as written in the conda file
	Name   string   // project name as written ("scikit-learn")
	Key    string   // normalised name (PEP 503: lower case, runs of "-_." become "-")
	Extras []string // pip extras ("numpy-support")
	Spec   string   // version constraint as written ("==1.0", "=1.21.2", ">=1,<2"), "" if none
	Marker string   // pip environment marker (after ";"), "" if none
	URL    string   // pip direct reference ("name @ URL"), "" if none
	Pip    bool     // listed under the pip: mapping
}

// String renders the requirement in pip syntax, as passed to pip install.
func (r Requirement) String() string {
	var b strings.Builder
	b.WriteString(r.Name)
	if len(r.Extras) > 0 {
		b.WriteString("[" + strings.Join(r.Extras, ",") + "]")
	}
	switch {
	case r.URL != "":
		b.WriteString(" @ " + r.URL)
	case r.Spec != "":
		b.WriteString(pipSpec(r.Spec))
	}
	if r.Marker != "" {
		b.WriteString("; " + r.Marker)
	}
	return b.String()
}

// unpinned is the requirement without its version constraint.
func (r Requirement) unpinned() Requirement {
	r.Spec = ""
	return r
}

// Conda is the part of a conda environment file that moe uses.
type Conda struct {
	Name         string
	Channels     []string
	Dependencies []Requirement
	// Skipped lists entries that cannot be used here (pip options, URLs,
	// unknown mappings), each with the reason; Resolve logs them.
	Skipped []string
}

type condaYAML struct {
	Name         string   `yaml:"name"`
	Channels     []string `yaml:"channels"`
	Dependencies []any    `yaml:"dependencies"`
}

// ParseConda parses a conda environment file (YAML). Empty content yields an
// empty Conda. Errors name the offending entry.
func ParseConda(data []byte) (*Conda, error) {
	c := &Conda{}
	if len(bytes.TrimSpace(data)) == 0 {
		return c, nil
	}
	var y condaYAML
	if err := yaml.Unmarshal(data, &y); err != nil {
		return nil, fmt.Errorf("conda file is not valid YAML: %w", err)
	}
	c.Name, c.Channels = y.Name, y.Channels
	for i, d := range y.Dependencies {
		switch v := d.(type) {
		case nil:
			continue
		case map[string]any:
			keys := make([]string, 0, len(v))
			for k := range v {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if k != "pip" {
					c.Skipped = append(c.Skipped, fmt.Sprintf("dependencies[%d]: %q mapping ignored (only pip: is supported)", i, k))
					continue
				}
				list, ok := v[k].([]any)
				if !ok && v[k] != nil {
					return nil, fmt.Errorf("conda file: dependencies[%d].pip must be a list of pip requirements, got %s", i, yamlKind(v[k]))
				}
				for j, p := range list {
					s, ok := scalar(p)
					if !ok {
						return nil, fmt.Errorf("conda file: dependencies[%d].pip[%d] must be a string, got %s", i, j, yamlKind(p))
					}
					if s == "" {
						continue
					}
					req, skip, err := ParsePipRequirement(s)
					if err != nil {
						return nil, fmt.Errorf("conda file: dependencies[%d].pip[%d]: %w", i, j, err)
					}
					if skip != "" {
						c.Skipped = append(c.Skipped, fmt.Sprintf("pip entry %q ignored: %s", s, skip))
						continue
					}
					c.Dependencies = append(c.Dependencies, req)
				}
			}
		default:
			s, ok := scalar(d)
			if !ok {
				return nil, fmt.Errorf("conda file: dependencies[%d] must be a package spec string or a pip: mapping, got %s", i, yamlKind(d))
			}
			if s == "" {
				continue
			}
			req, err := ParseCondaSpec(s)
			if err != nil {
				return nil, fmt.Errorf("conda file: dependencies[%d]: %w", i, err)
			}
			c.Dependencies = append(c.Dependencies, req)
		}
	}
	return c, nil
}

func scalar(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return strings.TrimSpace(v), true
	case int, int64, uint64, float64, bool:
		return fmt.Sprint(v), true
	}
	return "", false
}

func yamlKind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "a mapping"
	case []any:
		return "a list"
	case nil:
		return "nothing"
	}
	return fmt.Sprintf("%T", v)
}

var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*`)
	normRE = regexp.MustCompile(`[-_.]+`)
	// directRefRE matches the start of a PEP 508 direct reference ("name[extra] @ URL").
	directRefRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*\s*(\[[^\]]*\])?\s*@`)
	// pipSpecRE matches a PEP 440 specifier set ("==1.0", ">=1,<2", "~=1.2").
	pipSpecRE = regexp.MustCompile(`^\s*(~=|===|==|!=|<=|>=|<|>|=)\s*[A-Za-z0-9.*+!_-]+\s*(,\s*(~=|===|==|!=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+\s*)*$`)
)

// Normalize returns the PEP 503 normalised form of a project name.
func Normalize(name string) string {
	return strings.ToLower(normRE.ReplaceAllString(name, "-"))
}

// ParseCondaSpec parses a conda match spec such as "numpy", "numpy=1.21.2",
// "numpy==1.21.2", "numpy>=1.20", "numpy 1.21.*", "numpy=1.21.2=py38h_0" or
// "conda-forge::numpy=1.21".
func ParseCondaSpec(s string) (Requirement, error) {
	raw := s
	if i := strings.LastIndex(s, "::"); i >= 0 {
		s = s[i+2:]
	}
	name := nameRE.FindString(s)
	if name == "" {
		return Requirement{}, fmt.Errorf("%q is not a conda package spec (expected name, name=version or name>=version)", raw)
	}
	rest := s[len(name):]
	// Bracket syntax: numpy[version='>=1.2'].
	if strings.HasPrefix(rest, "[") {
		end := strings.Index(rest, "]")
		if end < 0 {
			return Requirement{}, fmt.Errorf("%q: unterminated [", raw)
		}
		inner := rest[1:end]
		rest = ""
		for _, kv := range strings.Split(inner, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if ok && strings.TrimSpace(k) == "version" {
				rest = " " + strings.Trim(strings.TrimSpace(v), `'"`)
			}
		}
	}
	spec := ""
	switch {
	case rest == "":
	case strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "\t"):
		f := strings.Fields(rest)
		if len(f) > 0 {
			spec = f[0]
			if spec[0] >= '0' && spec[0] <= '9' {
				spec = "=" + spec // "numpy 1.21.*" is a fuzzy match like numpy=1.21
			}
		}
	case strings.HasPrefix(rest, "="), strings.HasPrefix(rest, "<"), strings.HasPrefix(rest, ">"),
		strings.HasPrefix(rest, "!"), strings.HasPrefix(rest, "~"):
		spec = strings.Fields(rest)[0]
		if strings.HasPrefix(spec, "=") && !strings.HasPrefix(spec, "==") {
			// name=version=build: drop the build string.
			if v, _, ok := strings.Cut(spec[1:], "="); ok {
				spec = "=" + v
			}
		}
	default:
		return Requirement{}, fmt.Errorf("%q is not a conda package spec (unexpected %q after the name)", raw, rest)
	}
	return Requirement{Raw: raw, Name: name, Key: Normalize(name), Spec: spec}, nil
}

// ParsePipRequirement parses one pip requirement line from a conda file's
// pip: section. Entries that cannot be used offline (pip options such as
// "--extra-index-url", "-r file", bare URLs and paths) return a non-empty
// skip reason instead of an error.
func ParsePipRequirement(s string) (req Requirement, skip string, err error) {
	raw := strings.TrimSpace(s)
	if i := strings.Index(raw, " #"); i >= 0 {
		raw = strings.TrimSpace(raw[:i])
	}
	switch {
	case strings.HasPrefix(raw, "-"):
		return Requirement{}, "pip options are not used (installs are offline from the wheel directory)", nil
	case strings.Contains(raw, "://") && !directRefRE.MatchString(raw),
		strings.HasPrefix(raw, "git+"), strings.HasPrefix(raw, "."), strings.HasPrefix(raw, "/"), strings.HasPrefix(raw, "~"):
		return Requirement{}, "URLs and paths cannot be installed here; put a wheel in the wheel directory and list the package by name", nil
	}
	body, marker, _ := strings.Cut(raw, ";")
	marker = strings.TrimSpace(marker)
	body = strings.TrimSpace(body)
	name := nameRE.FindString(body)
	if name == "" {
		return Requirement{}, "", fmt.Errorf("%q is not a pip requirement", raw)
	}
	rest := strings.TrimSpace(body[len(name):])
	var extras []string
	if strings.HasPrefix(rest, "[") {
		end := strings.Index(rest, "]")
		if end < 0 {
			return Requirement{}, "", fmt.Errorf("%q: unterminated [ in extras", raw)
		}
		for _, e := range strings.Split(rest[1:end], ",") {
			if e = strings.TrimSpace(e); e != "" {
				extras = append(extras, e)
			}
		}
		rest = strings.TrimSpace(rest[end+1:])
	}
	req = Requirement{Raw: raw, Name: name, Key: Normalize(name), Extras: extras, Marker: marker, Pip: true}
	switch {
	case rest == "":
	case strings.HasPrefix(rest, "@"):
		req.URL = strings.TrimSpace(rest[1:])
		if req.URL == "" {
			return Requirement{}, "", fmt.Errorf("%q: missing URL after @", raw)
		}
	default:
		rest = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(rest, "("), ")"))
		if !pipSpecRE.MatchString(rest) {
			return Requirement{}, "", fmt.Errorf("%q: bad version specifier %q", raw, rest)
		}
		req.Spec = strings.Join(strings.Fields(rest), "")
	}
	return req, "", nil
}

// pipSpec converts a conda-style fuzzy "=1.2" into pip's "==1.2.*".
func pipSpec(spec string) string {
	if strings.HasPrefix(spec, "=") && !strings.HasPrefix(spec, "==") {
		v := spec[1:]
		if !strings.HasSuffix(v, "*") {
			v += ".*"
		}
		return "==" + v
	}
	return spec
}

// errUnknownSpec reports a specifier that versionSatisfies cannot evaluate.
var errUnknownSpec = errors.New("unknown specifier")

// versionSatisfies reports whether version satisfies spec (a comma-separated
// PEP 440 specifier set, or a conda fuzzy "=1.2"). It is used only to decide
// whether to log that a pin differs, so it is approximate.
func versionSatisfies(version, spec string) (bool, error) {
	for _, clause := range strings.Split(spec, ",") {
		clause = strings.TrimSpace(clause)
		if clause == "" {
			continue
		}
		var op string
		for _, o := range []string{"===", "~=", "==", "!=", "<=", ">=", "<", ">", "="} {
			if strings.HasPrefix(clause, o) {
				op = o
				break
			}
		}
		if op == "" {
			return false, errUnknownSpec
		}
		want := strings.TrimSpace(clause[len(op):])
		var ok bool
		switch op {
		case "===":
			ok = version == want
		case "=", "==", "!=":
			if strings.HasSuffix(want, "*") || op == "=" {
				ok = versionPrefix(version, strings.TrimSuffix(strings.TrimSuffix(want, "*"), "."))
			} else {
				ok = compareVersions(version, want) == 0
			}
			if op == "!=" {
				ok = !ok
			}
		case "<":
			ok = compareVersions(version, want) < 0
		case "<=":
			ok = compareVersions(version, want) <= 0
		case ">":
			ok = compareVersions(version, want) > 0
		case ">=":
			ok = compareVersions(version, want) >= 0
		case "~=":
			parts := strings.Split(want, ".")
			if len(parts) < 2 {
				return false, errUnknownSpec
			}
			ok = compareVersions(version, want) >= 0 && versionPrefix(version, strings.Join(parts[:len(parts)-1], "."))
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

// versionPrefix reports whether version starts with the release components
// of prefix ("1.21.2" has prefix "1.21", not "1.2").
func versionPrefix(version, prefix string) bool {
	v, p := versionParts(version), versionParts(prefix)
	if len(p) > len(v) {
		for len(v) < len(p) {
			v = append(v, versionPart{})
		}
	}
	for i := range p {
		if v[i] != p[i] {
			return false
		}
	}
	return true
}

type versionPart struct {
	n      int
	suffix string
}

func versionParts(v string) []versionPart {
	v, _, _ = strings.Cut(strings.TrimSpace(v), "+") // drop local version ("4.0.2+dfsg")
	v = strings.TrimPrefix(strings.ToLower(v), "v")
	if _, after, ok := strings.Cut(v, "!"); ok { // drop epoch
		v = after
	}
	var out []versionPart
	for _, s := range strings.Split(v, ".") {
		i := 0
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' && n < 1e9 {
			n = n*10 + int(s[i]-'0')
			i++
		}
		out = append(out, versionPart{n: n, suffix: s[i:]})
	}
	return out
}

// compareVersions compares two versions component by component; a
// component with a suffix ("0rc1") sorts before the same number without one.
func compareVersions(a, b string) int {
	pa, pb := versionParts(a), versionParts(b)
	for len(pa) < len(pb) {
		pa = append(pa, versionPart{})
	}
	for len(pb) < len(pa) {
		pb = append(pb, versionPart{})
	}
	for i := range pa {
		x, y := pa[i], pb[i]
		if x.n != y.n {
			if x.n < y.n {
				return -1
			}
			return 1
		}
		if x.suffix != y.suffix {
			switch {
			case x.suffix == "":
				return 1
			case y.suffix == "":
				return -1
			case x.suffix < y.suffix:
				return -1
			default:
				return 1
			}
		}
	}
	return 0
}
