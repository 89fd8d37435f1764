// Package diagnose explains a failing or slow deployment: which step failed
// (snapshot, environment, init, probe, serving), the log lines that show it,
// the probable cause and the fix. Diagnose is a pure function over what the
// server knows, so every rule is a table test.
package diagnose

import (
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
)

// Steps of a deployment's life, in order.
const (
	StepSnapshot    = "snapshot"
	StepEnvironment = "environment"
	StepInit        = "init"
	StepProbe       = "probe"
	StepServing     = "serving"
)

// Input is what the server knows about one deployment.
type Input struct {
	Endpoint, Deployment string
	State, Error         string
	// InstanceReasons are the reasons instances give for not being ready.
	InstanceReasons []string
	ScoringScript   string
	// InferenceLog and ProvisioningLog are the tails of the two logs.
	InferenceLog, ProvisioningLog string
	// ModelDir is AZUREML_MODEL_DIR as the instance sees it; ModelFiles the
	// snapshot's files relative to it.
	ModelDir   string
	ModelFiles []string
	// Request settings and what the gateway counted.
	RequestTimeoutMS, MaxConcurrent, Instances, Workers int
	Requests, Timeouts408, Rejected429, ModelErrors     int64
	// ModelP99MS is the model time p99 over the counted requests (0: unknown).
	ModelP99MS       float64
	ReadinessBudgetS int
}

// Finding is one diagnosed problem.
type Finding struct {
	Step     string   `json:"step"`
	Cause    string   `json:"cause"`
	Evidence []string `json:"evidence,omitempty"`
	Fix      string   `json:"fix"`
}

// Report is Diagnose's answer.
type Report struct {
	Endpoint   string    `json:"endpoint"`
	Deployment string    `json:"deployment"`
	State      string    `json:"state"`
	Healthy    bool      `json:"healthy"`
	Findings   []Finding `json:"findings"`
}

var (
	reNoModule   = regexp.MustCompile(`No module named '([^']+)'`)
	reMissingPkg = regexp.MustCompile(`(?i)(?:missing (?:packages?|requirements?)[^:]*|packages not available for [^:]+):\s*([^;\n]+)`)
	reNotFound   = regexp.MustCompile(`(?:FileNotFoundError|No such file or directory|not found)[^'"\n]*['"]?(/[^'"\s]+)`)
	reSyntax     = regexp.MustCompile(`SyntaxError: (.+)`)
	reNoFunc     = regexp.MustCompile(`(?i)(?:has no attribute|missing|must define)[^\n]*\b(init|run)\b`)
	reAddrInUse  = regexp.MustCompile(`(?i)address already in use`)
	reException  = regexp.MustCompile(`^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)): ?(.*)$`)
	reNotReady   = regexp.MustCompile(`(?i)not ready after|readiness probe failed`)
)

// Diagnose applies every rule and returns the findings, most fundamental
// step first.
func Diagnose(in Input) Report {
	rep := Report{Endpoint: in.Endpoint, Deployment: in.Deployment, State: in.State}
	logs := in.ProvisioningLog + "\n" + in.InferenceLog + "\n" + in.Error + "\n" + strings.Join(in.InstanceReasons, "\n")
	add := func(f Finding) { rep.Findings = append(rep.Findings, f) }

	if m := reMissingPkg.FindStringSubmatch(in.ProvisioningLog + "\n" + in.Error); m != nil {
		add(Finding{Step: StepEnvironment, Cause: "the environment lacks packages the conda file asks for: " + strings.TrimSpace(m[1]),
			Evidence: grep(logs, m[0]),
			Fix:      "install them for the server's Python (on Debian: apt-get install python3-<name>), or list them under pip: in the conda file and start moe serve with --wheel-dir pointing at a folder holding their wheels"})
	}
	if m := reNoModule.FindStringSubmatch(logs); m != nil {
		mod := m[1]
		add(Finding{Step: StepInit, Cause: fmt.Sprintf("the scoring script imports %q, which the environment does not have", mod),
			Evidence: grep(logs, m[0]),
			Fix:      fmt.Sprintf("add the package that provides %q to the conda file (under pip: with --wheel-dir for offline installs), or install it for the server's Python; then run moe online-deployment update", strings.Split(mod, ".")[0])})
	}
	if m := reSyntax.FindStringSubmatch(logs); m != nil {
		add(Finding{Step: StepInit, Cause: "the scoring script does not parse: " + m[1], Evidence: grep(logs, "SyntaxError"),
			Fix: fmt.Sprintf("fix the syntax error in %s (python3 -m py_compile %s shows it locally)", orDefault(in.ScoringScript, "the scoring script"), orDefault(in.ScoringScript, "score.py"))})
	}
	if m := reNoFunc.FindStringSubmatch(logs); m != nil && !strings.Contains(logs, "No module named") {
		add(Finding{Step: StepInit, Cause: fmt.Sprintf("the scoring script has no %s() function", m[1]), Evidence: grep(logs, m[0]),
			Fix: "define both init() and run(raw_data) at the top level of " + orDefault(in.ScoringScript, "the scoring script")})
	}
	if m := reNotFound.FindStringSubmatch(logs); m != nil {
		missing := m[1]
		f := Finding{Step: StepInit, Cause: "init() opens " + missing + ", which is not in the deployment", Evidence: grep(logs, missing)}
		if in.ModelDir != "" && strings.HasPrefix(missing, in.ModelDir) {
			rel := strings.TrimPrefix(strings.TrimPrefix(missing, in.ModelDir), "/")
			f.Cause = fmt.Sprintf("the model file %q (relative to AZUREML_MODEL_DIR) is not in the model snapshot", rel)
			if alt := closest(rel, in.ModelFiles); alt != "" {
				f.Fix = fmt.Sprintf("the snapshot has %q: open os.path.join(os.environ[\"AZUREML_MODEL_DIR\"], %q) in init(). AZUREML_MODEL_DIR is the folder that contains your model folder (a model.path folder keeps its name; a single file sits at the top)", alt, alt)
			} else {
				f.Fix = "check model.path in the deployment YAML: the snapshot holds " + list(in.ModelFiles, 8)
			}
		} else {
			f.Fix = "ship the file with the model (model.path) or the code (code_configuration.code), and open it relative to AZUREML_MODEL_DIR or the script's folder"
		}
		add(f)
	}
	if reAddrInUse.MatchString(logs) {
		add(Finding{Step: StepInit, Cause: "the scoring script tries to open a network port that is taken", Evidence: grep(logs, "ddress already in use"),
			Fix: "scoring scripts must not start their own servers: moe's host serves HTTP; remove the server code from init()"})
	}
	if len(rep.Findings) == 0 && in.State == "Failed" {
		if exc := lastException(logs); exc != "" {
			add(Finding{Step: StepInit, Cause: "init() raised " + exc, Evidence: grep(logs, exc),
				Fix: "fix init() in " + orDefault(in.ScoringScript, "the scoring script") + "; get-logs shows the whole traceback"})
		}
	}
	if reNotReady.MatchString(logs) && !hasStep(rep.Findings, StepInit) {
		add(Finding{Step: StepProbe, Cause: fmt.Sprintf("an instance did not become ready within the readiness budget (%ds = initial_delay + period × failure_threshold)", in.ReadinessBudgetS),
			Evidence: grep(logs, "not ready after", "readiness probe failed"),
			Fix:      "if init() is slow (large model), raise readiness_probe.initial_delay or failure_threshold; if it hangs, get-logs shows where"})
	}
	if in.Timeouts408 > 0 {
		f := Finding{Step: StepServing, Cause: fmt.Sprintf("%d of %d requests took longer than request_timeout_ms (%d ms) and got 408", in.Timeouts408, in.Requests, in.RequestTimeoutMS),
			Fix: "raise request_settings.request_timeout_ms (max 180000), or make run() faster"}
		if in.ModelP99MS > 0 {
			f.Cause += fmt.Sprintf("; model time p99 is %.0f ms", in.ModelP99MS)
		}
		add(f)
	}
	if in.Rejected429 > 0 {
		cap := 2 * max(in.MaxConcurrent, 1) * max(in.Instances, 1)
		f := Finding{Step: StepServing, Cause: fmt.Sprintf("%d of %d requests got 429: more than %d were in flight (2 × max_concurrent_requests_per_instance %d × %d instances)", in.Rejected429, in.Requests, cap, in.MaxConcurrent, max(in.Instances, 1))}
		if in.MaxConcurrent <= 1 {
			f.Fix = "max_concurrent_requests_per_instance is 1 (the default): set it to the real concurrency of an instance, e.g. environment_variables.WORKER_COUNT=4 with max_concurrent_requests_per_instance: 4, or add instances (scale_settings target_utilization)"
		} else {
			f.Fix = "add instances or raise max_concurrent_requests_per_instance together with WORKER_COUNT; clients should retry 429 with backoff"
		}
		add(f)
	}
	sort.SliceStable(rep.Findings, func(i, j int) bool { return order(rep.Findings[i].Step) < order(rep.Findings[j].Step) })
	rep.Healthy = len(rep.Findings) == 0 && in.State != "Failed"
	if rep.Findings == nil {
		rep.Findings = []Finding{}
	}
	return rep
}

func order(step string) int {
	return map[string]int{StepSnapshot: 0, StepEnvironment: 1, StepInit: 2, StepProbe: 3, StepServing: 4}[step]
}

func hasStep(fs []Finding, step string) bool {
	for _, f := range fs {
		if f.Step == step {
			return true
		}
	}
	return false
}

// grep returns up to 3 distinct log lines containing any needle.
func grep(text string, needles ...string) []string {
	var out []string
	seen := map[string]bool{}
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		for _, n := range needles {
			if n != "" && strings.Contains(l, n) && !seen[l] {
				seen[l] = true
				out = append(out, l)
			}
		}
		if len(out) == 3 {
			break
		}
	}
	return out
}

func lastException(text string) string {
	last := ""
	for _, l := range strings.Split(text, "\n") {
		if m := reException.FindStringSubmatch(strings.TrimSpace(l)); m != nil {
			last = strings.TrimSpace(l)
		}
	}
	return last
}

// closest finds the snapshot file that best matches a missing path: same
// base name, else same extension.
func closest(rel string, files []string) string {
	base := path.Base(rel)
	for _, f := range files {
		if path.Base(f) == base {
			return f
		}
	}
	ext := path.Ext(rel)
	for _, f := range files {
		if ext != "" && path.Ext(f) == ext {
			return f
		}
	}
	return ""
}

func list(files []string, n int) string {
	if len(files) == 0 {
		return "no files"
	}
	if len(files) > n {
		return strings.Join(files[:n], ", ") + fmt.Sprintf(" and %d more", len(files)-n)
	}
	return strings.Join(files, ", ")
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
