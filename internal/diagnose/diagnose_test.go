package diagnose

import (
	"strings"
	"testing"
)

func TestDiagnose(t *testing.T) {
	const modelDir = "/data/artifacts/abc"
	for _, tc := range []struct {
		name      string
		in        Input
		step      string
		cause     string // substring
		fix       string // substring
		healthy   bool
		noFinding bool
	}{
		{
			name: "MissingModule",
			in: Input{State: "Failed", Error: "The scoring script score.py failed to start: import failed: ModuleNotFoundError: No module named 'lightgbm'",
				InferenceLog: "Traceback (most recent call last):\n  File \"score.py\", line 3, in <module>\n    import lightgbm\nModuleNotFoundError: No module named 'lightgbm'\n"},
			step: StepInit, cause: `imports "lightgbm"`, fix: "conda file",
		},
		{
			name: "MissingCondaPackage",
			in: Input{State: "Failed", Error: "environment: /usr/bin/python3 is missing packages: tensorflow",
				ProvisioningLog: "2026-11-26T10:00:00Z blue-1: FAILED: environment: /usr/bin/python3 is missing packages: tensorflow"},
			step: StepEnvironment, cause: "tensorflow", fix: "--wheel-dir",
		},
		{
			name: "PackagesNotAvailable",
			in:   Input{State: "Failed", Error: "environment: Python packages not available for /usr/bin/python3: tensorflow, torch; the interpreter was set by the server"},
			step: StepEnvironment, cause: "tensorflow, torch", fix: "apt-get install",
		},
		{
			name: "ModelFileNotFoundRelativeToModelDir",
			in: Input{State: "Failed", ModelDir: modelDir, ModelFiles: []string{"model/sklearn_regression_model.pkl"},
				InferenceLog: "FileNotFoundError: [Errno 2] No such file or directory: '" + modelDir + "/sklearn_regression_model.pkl'\n"},
			step: StepInit, cause: `"sklearn_regression_model.pkl" (relative to AZUREML_MODEL_DIR)`, fix: `"model/sklearn_regression_model.pkl"`,
		},
		{
			name: "InitException",
			in:   Input{State: "Failed", ScoringScript: "score.py", InferenceLog: "Traceback (most recent call last):\n  File \"score.py\", line 5, in init\nValueError: bad config value 7\n"},
			step: StepInit, cause: "ValueError: bad config value 7", fix: "fix init() in score.py",
		},
		{
			name: "SyntaxError",
			in:   Input{State: "Failed", ScoringScript: "score.py", InferenceLog: "  File \"score.py\", line 2\n    def run(x)\n             ^\nSyntaxError: expected ':'\n"},
			step: StepInit, cause: "does not parse", fix: "py_compile",
		},
		{
			name: "RunTooSlowForTimeout",
			in:   Input{State: "Succeeded", RequestTimeoutMS: 100, Requests: 20, Timeouts408: 7, ModelP99MS: 450},
			step: StepServing, cause: "7 of 20 requests took longer than request_timeout_ms (100 ms)", fix: "raise request_settings.request_timeout_ms",
		},
		{
			name: "Concurrency429s",
			in:   Input{State: "Succeeded", MaxConcurrent: 1, Instances: 1, Requests: 50, Rejected429: 12},
			step: StepServing, cause: "12 of 50 requests got 429", fix: "max_concurrent_requests_per_instance is 1",
		},
		{
			name: "ProbeBudget",
			in:   Input{State: "Failed", ReadinessBudgetS: 12, Error: "not ready after 12s (readiness_probe initial_delay + period × failure_threshold); see get-logs"},
			step: StepProbe, cause: "readiness budget (12s", fix: "initial_delay",
		},
		{
			name: "PortInUse",
			in:   Input{State: "Failed", InferenceLog: "OSError: [Errno 98] Address already in use\n"},
			step: StepInit, cause: "network port", fix: "must not start their own servers",
		},
		{
			name:    "Healthy",
			in:      Input{State: "Succeeded", Requests: 100, MaxConcurrent: 1, Instances: 1},
			healthy: true, noFinding: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep := Diagnose(tc.in)
			if rep.Healthy != tc.healthy {
				t.Errorf("healthy = %v, want %v", rep.Healthy, tc.healthy)
			}
			if tc.noFinding {
				if len(rep.Findings) != 0 {
					t.Errorf("findings for a healthy deployment: %+v", rep.Findings)
				}
				return
			}
			if len(rep.Findings) == 0 {
				t.Fatal("no finding")
			}
			f := rep.Findings[0]
			if f.Step != tc.step || !strings.Contains(f.Cause, tc.cause) || !strings.Contains(f.Fix, tc.fix) {
				t.Errorf("first finding = %+v\nwant step %q, cause ~ %q, fix ~ %q", f, tc.step, tc.cause, tc.fix)
			}
		})
	}
}
