package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
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
	root, err := parseDoc(data, opts.Sets)
	if err != nil {
		return nil, nil, err
	}
	var e Endpoint
	d := decoder{}
	d.decode(root, reflect.ValueOf(&e).Elem(), "")
	if opts.Name != "" {
		e.Name = opts.Name
	}
	if len(d.errs) > 0 {
		return nil, nil, d.errs
	}
	notices := e.Default()
	if err := e.Validate(); err != nil {
		return nil, nil, err
	}
	return &e, notices, nil
}

// DecodeDeployment decodes, defaults and validates a deployment YAML
// document, resolving relative paths against opts.BaseDir.
func DecodeDeployment(data []byte, opts DecodeOptions) (*Deployment, []Notice, error) {
	root, err := parseDoc(data, opts.Sets)
	if err != nil {
		return nil, nil, err
	}
	var dep Deployment
	d := decoder{}
	d.decode(root, reflect.ValueOf(&dep).Elem(), "")
	if opts.Name != "" {
		dep.Name = opts.Name
	}
	if opts.EndpointName != "" {
		dep.EndpointName = opts.EndpointName
	}
	if len(d.errs) > 0 {
		return nil, nil, d.errs
	}
	if opts.BaseDir != "" {
		dep.ResolvePaths(opts.BaseDir)
	}
	notices := dep.Default()
	if err := dep.Validate(); err != nil {
		return nil, nil, err
	}
	return &dep, notices, nil
}

// ResolvePaths makes relative local paths absolute against base.
func (d *Deployment) ResolvePaths(base string) {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) || strings.HasPrefix(p, "azureml:") {
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

func parseDoc(data []byte, sets []string) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}}
	} else if err != nil {
		return nil, FieldErrors{{Message: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, FieldErrors{{Line: extra.Line, Message: "the file holds more than one YAML document; put one spec per file"}}
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		root = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	}
	if root.Kind != yaml.MappingNode {
		return nil, FieldErrors{{Line: root.Line, Message: "the document must be a mapping of keys to values"}}
	}
	var errs FieldErrors
	for _, s := range sets {
		if err := applySet(root, s); err != nil {
			errs.add("--set", 0, "%s", err)
		}
	}
	return root, errs.err()
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
	}
	keys := strings.Split(path, ".")
	n := root
	for i, k := range keys {
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("%q: %s is not a mapping", set, strings.Join(keys[:i], "."))
		}
		var child *yaml.Node
		for j := 0; j+1 < len(n.Content); j += 2 {
			if n.Content[j].Value == k {
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

// decoder walks a yaml.Node into a Go value guided by json tags, collecting
// every error with its path instead of stopping at the first one.
type decoder struct {
	errs FieldErrors
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
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			ev := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, ev, join(path, k.Value))
			v.SetMapIndex(reflect.ValueOf(k.Value), ev)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errs.add(path, n.Line, "must be a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Interface:
		var x any
		if err := n.Decode(&x); err != nil {
			d.errs.add(path, n.Line, "%v", err)
			return
		}
		if x != nil {
			v.Set(reflect.ValueOf(x))
		}
	default:
		d.errs.add(path, n.Line, "cannot decode into %s", v.Type())
	}
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
