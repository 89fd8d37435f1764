package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// DecodeOptions tune decoding of a YAML document.
type DecodeOptions struct {
	// BaseDir resolves relative model, code and conda paths; normally the
	// YAML file's folder. Empty means paths are left as written.
	BaseDir string
	// Sets are "path=value" overrides (the CLI's --set), applied to the
	// document before it is decoded. Values are parsed as YAML scalars.
	Sets []string
	// Name, if set, overrides the document's name (the CLI's -n).
	Name string
	// EndpointName, if set, overrides a deployment's endpoint_name (-e).
	EndpointName string
}

// DecodeEndpoint decodes, defaults and validates an endpoint YAML document.
// It returns every problem at once as FieldErrors.
func DecodeEndpoint(data []byte, opts DecodeOptions) (*Endpoint, []Notice, error) {
	root, setErrs, err := parseDoc(data, opts.Sets)
	if err != nil {
		return nil, nil, err
	}
	var e Endpoint
	d := decoder{errs: setErrs}
	d.decode(root, reflect.ValueOf(&e).Elem(), "")
	if opts.Name != "" {
		e.Name = opts.Name
	}
	notices := e.Default()
	if err := d.merge(e.Validate()); err != nil {
		return nil, nil, err
	}
	return &e, notices, nil
}

// DecodeDeployment decodes, defaults and validates a deployment YAML
// document, resolving relative paths against opts.BaseDir.
func DecodeDeployment(data []byte, opts DecodeOptions) (*Deployment, []Notice, error) {
	root, setErrs, err := parseDoc(data, opts.Sets)
	if err != nil {
		return nil, nil, err
	}
	var dep Deployment
	d := decoder{errs: setErrs}
	d.decode(root, reflect.ValueOf(&dep).Elem(), "")
	if opts.Name != "" {
		dep.Name = opts.Name
	}
	if opts.EndpointName != "" {
		dep.EndpointName = opts.EndpointName
	}
	if opts.BaseDir != "" {
		dep.ResolvePaths(opts.BaseDir)
	}
	notices := dep.Default()
	if err := d.merge(dep.Validate()); err != nil {
		return nil, nil, err
	}
	return &dep, notices, nil
}

// ResolvePaths makes relative local paths absolute against base.
func (d *Deployment) ResolvePaths(base string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) || strings.HasPrefix(p, "azureml:") || strings.Contains(p, "://") {
			return p
		}
		return filepath.Join(base, p)
	}
	if d.Model != nil && d.Model.Ref == "" {
		d.Model.Path = abs(d.Model.Path)
	}
	if d.CodeConfiguration != nil {
		d.CodeConfiguration.Code = abs(d.CodeConfiguration.Code)
	}
	if d.Environment != nil && d.Environment.Ref == "" {
		d.Environment.CondaFile = abs(d.Environment.CondaFile)
		if d.Environment.Build != nil {
			d.Environment.Build.Path = abs(d.Environment.Build.Path)
		}
	}
}

// parseDoc parses the single YAML document in data and applies the --set
// overrides to it. A document that cannot be parsed is a fatal error; bad
// overrides are returned in setErrs so decoding can still report the rest.
func parseDoc(data []byte, sets []string) (root *yaml.Node, setErrs FieldErrors, err error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err = dec.Decode(&doc)
	if errors.Is(err, io.EOF) {
		doc = yaml.Node{Kind: yaml.DocumentNode}
	} else if err != nil {
		return nil, nil, FieldErrors{{Message: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, nil, FieldErrors{{Line: extra.Line, Message: "the file holds more than one YAML document; put one spec per file"}}
	case !errors.Is(err, io.EOF):
		return nil, nil, FieldErrors{{Message: "invalid YAML after the first document (the file must hold one spec): " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	root = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	if len(doc.Content) > 0 {
		root = doc.Content[0]
	}
	if root.Kind == yaml.AliasNode && root.Alias != nil {
		root = root.Alias
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		root = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	}
	if root.Kind != yaml.MappingNode {
		return nil, nil, FieldErrors{{Line: root.Line, Message: "the document must be a mapping of keys to values, got " + describe(root)}}
	}
	for _, s := range sets {
		if err := applySet(root, s); err != nil {
			setErrs.add("--set", 0, "%s", err)
		}
	}
	return root, setErrs, nil
}

// applySet sets path=value on a mapping node, creating mappings on the way.
func applySet(root *yaml.Node, set string) error {
	path, value, ok := strings.Cut(set, "=")
	if !ok || path == "" {
		return fmt.Errorf("%q is not path=value", set)
	}
	var val yaml.Node
	if err := yaml.Unmarshal([]byte(value), &val); err != nil || len(val.Content) == 0 {
		val = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: value}
	} else {
		val = *val.Content[0]
		clearLines(&val) // lines of the --set value, not of the file
	}
	keys := strings.Split(path, ".")
	if slices.Contains(keys, "") {
		return fmt.Errorf("%q: the path has an empty key", set)
	}
	n := root
	for i, k := range keys {
		if n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("%q: %s is not a mapping", set, strings.Join(keys[:i], "."))
		}
		var child *yaml.Node
		for j := 0; j+1 < len(n.Content); j += 2 {
			if n.Content[j].Kind == yaml.ScalarNode && n.Content[j].Value == k {
				child = n.Content[j+1]
				if i == len(keys)-1 {
					n.Content[j+1] = &val
				}
				break
			}
		}
		if i == len(keys)-1 {
			if child == nil {
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, &val)
			}
			return nil
		}
		if child == nil || child.Kind == yaml.ScalarNode && child.Tag == "!!null" {
			m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			if child == nil {
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, m)
			} else {
				*child = *m
				m = child
			}
			child = m
		}
		n = child
	}
	return nil
}

func clearLines(n *yaml.Node) {
	n.Line, n.Column = 0, 0
	for _, c := range n.Content {
		clearLines(c)
	}
}

// decoder walks a yaml.Node into a Go value guided by json tags, collecting
// every error with its path instead of stopping at the first one.
type decoder struct {
	errs FieldErrors
}

// merge returns the decoding errors followed by the problems verr (from
// Validate) lists, leaving out those about a field that already failed to
// decode: a value that could not be read has no meaningful value to check.
func (d *decoder) merge(verr error) error {
	all := d.errs
	var ves FieldErrors
	if !errors.As(verr, &ves) {
		if verr != nil {
			all = append(all, FieldError{Message: verr.Error()})
		}
		return all.err()
	}
	for _, ve := range ves {
		if !d.failed(ve.Path) {
			all = append(all, ve)
		}
	}
	return all.err()
}

// failed reports whether a decoding error concerns path, a field inside it
// or a field containing it.
func (d *decoder) failed(path string) bool {
	if path == "" {
		return false
	}
	for _, e := range d.errs {
		if e.Path == path || strings.HasPrefix(e.Path, path+".") || strings.HasPrefix(path, e.Path+".") {
			return true
		}
	}
	return false
}

var refType = map[reflect.Type]bool{reflect.TypeFor[Model](): true, reflect.TypeFor[Environment](): true}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // absent value: keep the zero value
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
	case reflect.Struct:
		if refType[v.Type()] && n.Kind == yaml.ScalarNode {
			v.FieldByName("Ref").SetString(n.Value)
			return
		}
		if n.Kind != yaml.MappingNode {
			d.errs.add(path, n.Line, "must be a mapping, got %s", describe(n))
			return
		}
		fields := fieldsOf(v.Type())
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if !d.key(k, path) {
				continue
			}
			key := k.Value
			if key == "$schema" && path == "" {
				continue
			}
			if seen[key] {
				d.errs.add(join(path, key), k.Line, "is given twice")
				continue
			}
			seen[key] = true
			idx, ok := fields[key]
			if !ok {
				d.errs.add(join(path, key), k.Line, "unknown key%s", suggest(key, fields))
				continue
			}
			d.decode(val, v.Field(idx), join(path, key))
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.errs.add(path, n.Line, "must be a string, got %s", describe(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Int:
		if n.Kind != yaml.ScalarNode {
			d.errs.add(path, n.Line, "must be an integer, got %s", describe(n))
			return
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(n.Value, "_", ""), 0, 64)
		if err != nil {
			if f, ferr := strconv.ParseFloat(n.Value, 64); ferr == nil && f == float64(int64(f)) {
				i, err = int64(f), nil
			}
		}
		if err != nil || i > 1<<31-1 || i < -(1<<31) {
			d.errs.add(path, n.Line, "must be an integer, got %q", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Bool:
		b, err := parseBool(n)
		if err != nil {
			d.errs.add(path, n.Line, "must be true or false, got %q", n.Value)
			return
		}
		v.SetBool(b)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.errs.add(path, n.Line, "must be a mapping, got %s", describe(n))
			return
		}
		if len(n.Content) == 0 {
			return // an empty mapping is the same as none (and as JSON omits it)
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if !d.key(k, path) {
				continue
			}
			if seen[k.Value] {
				d.errs.add(join(path, k.Value), k.Line, "is given twice")
				continue
			}
			seen[k.Value] = true
			ev := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, ev, join(path, k.Value))
			v.SetMapIndex(reflect.ValueOf(k.Value), ev)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errs.add(path, n.Line, "must be a list, got %s", describe(n))
			return
		}
		if len(n.Content) == 0 {
			return // an empty list is the same as none (and as JSON omits it)
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Interface:
		var x any
		if err := n.Decode(&x); err != nil {
			d.errs.add(path, n.Line, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
			return
		}
		x, err := jsonValue(x)
		if err != nil {
			d.errs.add(path, n.Line, "%s", err)
			return
		}
		if x != nil {
			v.Set(reflect.ValueOf(x))
		}
	default:
		d.errs.add(path, n.Line, "cannot decode into %s", v.Type())
	}
}

// key checks that a mapping key is a plain string.
func (d *decoder) key(k *yaml.Node, path string) bool {
	if k.Kind == yaml.AliasNode && k.Alias != nil {
		k = k.Alias
	}
	if k.Kind != yaml.ScalarNode {
		d.errs.add(path, k.Line, "keys must be strings, got %s", describe(k))
		return false
	}
	return true
}

// jsonValue turns a value decoded from YAML into the value JSON gives back
// for it (map[string]any, []any, float64, string, bool, nil), so free-form
// fields survive the store and the API unchanged.
func jsonValue(x any) (any, error) {
	b, err := json.Marshal(stringKeys(x))
	if err != nil {
		var uv *json.UnsupportedValueError
		if errors.As(err, &uv) {
			return nil, fmt.Errorf("holds %s, which JSON cannot represent", uv.Str)
		}
		return nil, fmt.Errorf("cannot be represented as JSON: %v", err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("cannot be represented as JSON: %v", err)
	}
	return out, nil
}

// stringKeys converts YAML's map[any]any (non-string keys) to
// map[string]any, recursively.
func stringKeys(x any) any {
	switch x := x.(type) {
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, v := range x {
			m[fmt.Sprint(k)] = stringKeys(v)
		}
		return m
	case map[string]any:
		for k, v := range x {
			x[k] = stringKeys(v)
		}
		return x
	case []any:
		for i, v := range x {
			x[i] = stringKeys(v)
		}
		return x
	}
	return x
}

func parseBool(n *yaml.Node) (bool, error) {
	if n.Kind != yaml.ScalarNode {
		return false, errors.New("not a scalar")
	}
	switch strings.ToLower(n.Value) {
	case "true", "yes", "on":
		return true, nil
	case "false", "no", "off":
		return false, nil
	}
	return false, errors.New("not a bool")
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return fmt.Sprintf("%q", n.Value)
}

func fieldsOf(t reflect.Type) map[string]int {
	m := map[string]int{}
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "" || name == "-" {
			continue
		}
		m[name] = i
	}
	return m
}

// suggest proposes the closest known key for a misspelt one.
func suggest(key string, fields map[string]int) string {
	best, bestD := "", 4
	for f := range fields {
		if dist := editDistance(key, f); dist < bestD || dist == bestD && f < best {
			best, bestD = f, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
