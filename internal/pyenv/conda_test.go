package pyenv

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseConda(t *testing.T) {
	type dep struct {
		name, spec string
		pip        bool
		extras     []string
	}
	tests := []struct {
		name    string
		yaml    string
		want    []dep
		skipped int
		err     string // substring of the error
	}{
		{name: "empty", yaml: "", want: nil},
		{name: "no dependencies", yaml: "name: x\nchannels: [conda-forge]\n", want: nil},
		{
			name: "azureml sample",
			yaml: `name: model-env
channels:
  - conda-forge
dependencies:
  - python=3.8   # interpreter pin
  - numpy=1.21.2
  - pip=21.2.4
  - scikit-learn=0.24.2
  - scipy==1.7.1
  - pip:
    - azureml-defaults==1.38.0
    - joblib>=1.0
    - inference-schema[numpy-support]==1.3.0
    - pillow
`,
			want: []dep{
				{name: "python", spec: "=3.8"},
				{name: "numpy", spec: "=1.21.2"},
				{name: "pip", spec: "=21.2.4"},
				{name: "scikit-learn", spec: "=0.24.2"},
				{name: "scipy", spec: "==1.7.1"},
				{name: "azureml-defaults", spec: "==1.38.0", pip: true},
				{name: "joblib", spec: ">=1.0", pip: true},
				{name: "inference-schema", spec: "==1.3.0", pip: true, extras: []string{"numpy-support"}},
				{name: "pillow", pip: true},
			},
		},
		{
			name: "conda spec forms",
			yaml: `dependencies:
  - conda-forge::numpy=1.21.2=py38h_0
  - pandas 1.3.*
  - scipy>=1.5,<2
  - defaults::joblib
  - opencv[version='>=4']
`,
			want: []dep{
				{name: "numpy", spec: "=1.21.2"},
				{name: "pandas", spec: "=1.3.*"},
				{name: "scipy", spec: ">=1.5,<2"},
				{name: "joblib"},
				{name: "opencv", spec: ">=4"},
			},
		},
		{
			name: "pip forms, options skipped",
			yaml: `dependencies:
  - pip:
      - --extra-index-url https://example.org/simple
      - -r requirements.txt
      - git+https://github.com/x/y.git@main
      - https://example.org/a.whl
      - requests [security] >= 2.8.1, == 2.8.*
      - pywin32; sys_platform == "win32"
      - foo @ https://example.org/foo-1.0.whl
      - numpy (>=1.2)
`,
			want: []dep{
				{name: "requests", spec: ">=2.8.1,==2.8.*", pip: true, extras: []string{"security"}},
				{name: "pywin32", pip: true},
				{name: "foo", pip: true},
				{name: "numpy", spec: ">=1.2", pip: true},
			},
			skipped: 4,
		},
		{name: "other mapping skipped", yaml: "dependencies:\n  - numpy\n  - {npm: [x]}\n", want: []dep{{name: "numpy"}}, skipped: 1},
		{name: "bad yaml", yaml: "dependencies:\n  - numpy\n - [oops\n", err: "conda file is not valid YAML"},
		{name: "dependencies not a list", yaml: "dependencies: numpy\n", err: "conda file is not valid YAML"},
		{name: "nested list", yaml: "dependencies:\n  - [numpy]\n", err: "dependencies[0] must be a package spec string"},
		{name: "pip not a list", yaml: "dependencies:\n  - pip: numpy\n", err: "dependencies[0].pip must be a list"},
		{name: "bad conda spec", yaml: "dependencies:\n  - '>=1.0'\n", err: "not a conda package spec"},
		{name: "bad pip spec", yaml: "dependencies:\n  - pip:\n    - numpy~~1\n", err: "bad version specifier"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConda([]byte(tt.yaml))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []dep
			for _, d := range c.Dependencies {
				got = append(got, dep{name: d.Name, spec: d.Spec, pip: d.Pip, extras: d.Extras})
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("deps:\n got %+v\nwant %+v", got, tt.want)
			}
			if len(c.Skipped) != tt.skipped {
				t.Errorf("skipped = %q, want %d entries", c.Skipped, tt.skipped)
			}
		})
	}
}

func TestRequirementString(t *testing.T) {
	for in, want := range map[string]string{
		"inference-schema[numpy-support]==1.3.0": "inference-schema[numpy-support]==1.3.0",
		"numpy (>=1.2)":                          "numpy>=1.2",
		"numpy=1.21":                             "numpy==1.21.*",
		`pywin32 ; sys_platform == "win32"`:      `pywin32; sys_platform == "win32"`,
		"foo @ https://example.org/foo.whl":      "foo @ https://example.org/foo.whl",
	} {
		r, skip, err := ParsePipRequirement(in)
		if err != nil || skip != "" {
			t.Fatalf("%q: %v %q", in, err, skip)
		}
		if got := r.String(); got != want {
			t.Errorf("%q.String() = %q, want %q", in, got, want)
		}
	}
}

func TestNormalizeAndAliases(t *testing.T) {
	for in, want := range map[string]string{"Scikit_Learn": "scikit-learn", "zope.interface": "zope-interface", "a__b--c": "a-b-c"} {
		if got := Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
	if canonical("sklearn") != canonical("scikit-learn") || canonical(Normalize("scikit_learn")) != "scikit-learn" {
		t.Error("sklearn, scikit-learn and scikit_learn should be one requirement")
	}
	if lookup("pillow").modules[0] != "PIL" || lookup("py-opencv").modules[0] != "cv2" {
		t.Error("alias modules")
	}
	for _, k := range []string{"python", "pip", "setuptools", "wheel", "azureml-defaults", "azureml-core", "azureml-inference-server-http", "azureml-mlflow", "inference-schema", "cudatoolkit"} {
		if ignoreReason(k) == "" {
			t.Errorf("%s should be ignored", k)
		}
	}
	for _, k := range []string{"numpy", "mlflow", "azure-ai-ml"} {
		if ignoreReason(k) != "" {
			t.Errorf("%s should be checked", k)
		}
	}
}

func TestVersionSatisfies(t *testing.T) {
	tests := []struct {
		version, spec string
		want          bool
	}{
		{"1.24.2", "=1.21.2", false},
		{"1.21.2", "=1.21", true},
		{"1.21.2", "=1.2", false},
		{"1.21.2", "==1.21.2", true},
		{"1.21.2", "==1.21.*", true},
		{"1.2.1", ">=1.0", true},
		{"1.2.1", ">=1.0,<1.2", false},
		{"1.2.0", "~=1.1", true},
		{"2.0", "~=1.1", false},
		{"1.0rc1", "<1.0", true},
		{"4.0.2+dfsg", "==4.0.2", true},
		{"3.11.2", "=3.8", false},
		{"3.11.2", "=3.11", true},
		{"1.5.3", "!=1.5.3", false},
	}
	for _, tt := range tests {
		got, err := versionSatisfies(tt.version, tt.spec)
		if err != nil || got != tt.want {
			t.Errorf("versionSatisfies(%q, %q) = %v, %v; want %v", tt.version, tt.spec, got, err, tt.want)
		}
	}
}
