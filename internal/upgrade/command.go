package upgrade

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/moe-serving/moe/internal/spec"
)

// RefusedError is returned by the plan, export and apply commands when at
// least one service is refused. Map it to exit code 1 (see ExitCode).
type RefusedError struct {
	// Services are the refused services' names.
	Services []string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("upgrade: %d service(s) refused: %s", len(e.Services), strings.Join(e.Services, ", "))
}

// ExitCode is 1.
func (e *RefusedError) ExitCode() int { return 1 }

// ParityError is returned by the verify command when a request did not
// match. Map it to exit code 1 (see ExitCode).
type ParityError struct {
	Mismatched, Total int
}

func (e *ParityError) Error() string {
	return fmt.Sprintf("upgrade: verify: %d of %d requests differ", e.Mismatched, e.Total)
}

// ExitCode is 1.
func (e *ParityError) ExitCode() int { return 1 }

// Applier creates, on a moe control plane, what an eligible plan describes:
// the endpoint with req.Keys (or generated keys when nil), then the
// deployment, then 100 % of traffic to it, and waits until it is ready.
//
// It is the seam between this package (which needs only spec and sku) and
// the control-plane API: the moe binary passes an implementation backed by
// api.Client through WithApplier, and tests pass a fake. Contract:
//   - Apply must be idempotent: re-running it with the same request updates
//     in place and succeeds (create-or-update, not create-only).
//   - It must never touch the v1 source service (it has no handle on it).
//   - Paths in req.Deployment are absolute; a file under req.TempDir is
//     removed when Apply returns, so Apply must copy what it keeps.
//   - It returns when the deployment is ready or ctx is done.
type Applier interface {
	Apply(ctx context.Context, req ApplyRequest) (*Applied, error)
}

// ApplyRequest is what Applier.Apply creates.
type ApplyRequest struct {
	// Service is the v1 service's name, for messages.
	Service    string
	Endpoint   spec.Endpoint
	Deployment spec.Deployment
	// Keys are the original keys to keep, or nil to generate new ones.
	Keys *Keys
	// TempDir holds generated files (conda.yaml) referenced by Deployment;
	// it is removed after Apply returns. "" when none.
	TempDir string
}

// Applied is Apply's answer.
type Applied struct {
	// ScoringURI is the new endpoint's scoring URI.
	ScoringURI string
	// AuthMode is the endpoint's auth mode (key, aml_token).
	AuthMode string
}

// ApplierFunc adapts a function to Applier.
type ApplierFunc func(ctx context.Context, req ApplyRequest) (*Applied, error)

// Apply calls f.
func (f ApplierFunc) Apply(ctx context.Context, req ApplyRequest) (*Applied, error) {
	return f(ctx, req)
}

// NewSide is how verify reaches the new endpoint: its scoring URI, a
// credential for it and an HTTP client that can connect to it (trusting
// the server's CA, resolving its scoring host names).
type NewSide struct {
	ScoringURI string
	Credential string
	Client     *http.Client
}

// NewSideResolver finds the endpoint named endpointName on the control plane
// for verify, which uses what the flags leave out. An error means the
// control plane cannot be asked; verify then falls back to the planned URI.
type NewSideResolver func(ctx context.Context, endpointName string) (*NewSide, error)

// CommandOption configures NewCommand.
type CommandOption func(*command)

// WithApplier adds the `apply` subcommand, backed by a.
func WithApplier(a Applier) CommandOption { return func(c *command) { c.applier = a } }

// WithNewSide lets verify find the new endpoint on the control plane when
// --new-uri, --new-key or --new-ca are not given.
func WithNewSide(f NewSideResolver) CommandOption { return func(c *command) { c.newSide = f } }

type command struct {
	stdout, stderr io.Writer
	applier        Applier
	newSide        NewSideResolver
}

// NewCommand returns the `upgrade` command: plan, export, verify, and apply
// when an Applier is given (WithApplier). Commands return *RefusedError or
// *ParityError for outcomes that must exit 1; other errors are usage or I/O
// errors. Output goes to stdout, findings of export/apply to stderr.
func NewCommand(stdout, stderr io.Writer, opts ...CommandOption) *cobra.Command {
	c := &command{stdout: stdout, stderr: stderr}
	for _, o := range opts {
		o(c)
	}
	root := &cobra.Command{
		Use:   "upgrade",
		Short: "Upgrade legacy v1 ACI/AKS web services to managed online endpoints",
		Long: `Plan, export, apply and verify the move of a v1 web service (ACI or AKS,
described by its service JSON or its deploymentconfig.json + inferenceconfig.json)
to a managed online endpoint. The source service is never modified.`,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(c.planCmd(), c.exportCmd(), c.verifyCmd())
	if c.applier != nil {
		root.AddCommand(c.applyCmd())
	}
	return root
}

type planFlags struct {
	keys, name                   string
	endpointName, deploymentName string
	instanceType                 string
	allowNetwork                 bool
	region, domain               string
}

func (f *planFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.keys, "keys", "", "the service's keys as listKeys returns them ({\"primaryKey\", \"secondaryKey\"}); default: <file>.keys.json when present")
	fl.StringVar(&f.name, "name", "", "service name for deploymentconfig.json input (default: its folder's name)")
	fl.StringVar(&f.endpointName, "endpoint-name", "", "name of the new endpoint (default: the service name)")
	fl.StringVar(&f.deploymentName, "deployment-name", "", "name of the new deployment (default: the service name)")
	fl.StringVar(&f.instanceType, "instance-type", "", "instance type, overriding the SKU table")
	fl.BoolVar(&f.allowNetwork, "allow-network-isolation", false, "upgrade VNet-injected or private services (network isolation must then be set up on the new side)")
	fl.StringVar(&f.region, "region", "local", "region part of the new scoring URI")
	fl.StringVar(&f.domain, "domain", "localhost", "domain of the new scoring URI (https://<endpoint>.<region>.inference.<domain>/score)")
}

func (f *planFlags) options() Options {
	return Options{
		EndpointName: f.endpointName, DeploymentName: f.deploymentName, InstanceType: f.instanceType,
		AllowNetworkIsolation: f.allowNetwork, Region: f.region, Domain: f.domain,
	}
}

func (c *command) planCmd() *cobra.Command {
	var pf planFlags
	var output, workspaceURL, token string
	cmd := &cobra.Command{
		Use:   "plan FILE|DIR",
		Short: "Show what maps to what, what is refused, and why",
		Long: `Plan the upgrade of one service (a service JSON, a deploymentconfig.json, or a
folder holding deploymentconfig.json + inferenceconfig.json), or of every service
in a folder (one row per service and a total). Exits 1 when a service is refused.

With --workspace-url, services are read from a v1 workspace's Model Management
API instead: give service names as arguments, or none for every ACI/AKS service.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o must be table or json (got %q)", output)
			}
			var (
				results []*Result
				batch   bool
			)
			if workspaceURL != "" {
				if token == "" {
					token = os.Getenv("MOE_V1_TOKEN")
				}
				ws := &Workspace{BaseURL: workspaceURL, Token: token}
				svcs, err := c.fetch(cmd.Context(), ws, args)
				if err != nil {
					return err
				}
				for _, s := range svcs {
					results = append(results, Plan(s, pf.options()))
				}
				batch = len(args) != 1
			} else {
				if len(args) != 1 {
					return errors.New("plan takes one FILE or DIR (or --workspace-url)")
				}
				inputs := []string{args[0]}
				if st, err := os.Stat(args[0]); err == nil && st.IsDir() {
					var err error
					if inputs, err = BatchInputs(args[0]); err != nil {
						return err
					}
					batch = len(inputs) != 1 || inputs[0] != args[0]
					if len(inputs) == 0 {
						return fmt.Errorf("%s holds no service documents (*.json)", args[0])
					}
				}
				for _, in := range inputs {
					keys := pf.keys
					if batch {
						keys = ""
					}
					svc, err := LoadService(in, pf.name, keys)
					if err != nil {
						return err
					}
					results = append(results, Plan(svc, pf.options()))
				}
			}
			cmd.SilenceUsage = true
			if err := c.printPlans(results, output, batch); err != nil {
				return err
			}
			return refused(results)
		},
	}
	pf.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.Flags().StringVar(&workspaceURL, "workspace-url", "", "read services from this v1 workspace's Model Management API (…/modelmanagement/v1.0/subscriptions/…/workspaces/<ws>)")
	cmd.Flags().StringVar(&token, "token", "", "bearer token for --workspace-url (default: $MOE_V1_TOKEN)")
	return cmd
}

func (c *command) fetch(ctx context.Context, ws *Workspace, names []string) ([]*Service, error) {
	var svcs []*Service
	if len(names) == 0 {
		all, err := ws.Services(ctx, "")
		if err != nil {
			return nil, err
		}
		for _, s := range all {
			if ct := strings.ToUpper(s.ComputeType); ct == "ACI" || ct == "AKS" {
				svcs = append(svcs, s)
			}
		}
	} else {
		for _, n := range names {
			s, err := ws.Service(ctx, n)
			if err != nil {
				return nil, err
			}
			svcs = append(svcs, s)
		}
	}
	for _, s := range svcs {
		if s.AuthEnabled.value() {
			k, err := ws.Keys(ctx, s.Name)
			if err != nil {
				return nil, err
			}
			s.Keys = k
		}
	}
	return svcs, nil
}

func refused(results []*Result) error {
	var names []string
	for _, r := range results {
		if !r.Eligible {
			names = append(names, r.Service)
		}
	}
	if len(names) > 0 {
		return &RefusedError{Services: names}
	}
	return nil
}

func (c *command) printPlans(results []*Result, output string, batch bool) error {
	if output == "json" {
		var v any = results
		if !batch && len(results) == 1 {
			v = results[0]
		}
		b, err := marshalIndent(v)
		if err != nil {
			return err
		}
		_, err = c.stdout.Write(b)
		return err
	}
	if batch {
		return WriteSummary(c.stdout, results)
	}
	return WritePlanText(c.stdout, results[0])
}

// WritePlanText prints one plan as a readable table.
func WritePlanText(w io.Writer, r *Result) error {
	verdict := "ELIGIBLE"
	if !r.Eligible {
		verdict = "REFUSED"
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "service\t%s (%s)\t%s\n", r.Service, firstNonEmpty(r.ComputeType, "?"), verdict)
	keys := "new keys"
	if r.Keys != nil {
		keys = "original keys kept"
	}
	if r.Endpoint.AuthMode != spec.AuthKey {
		keys = "tokens"
	}
	fmt.Fprintf(tw, "endpoint\t%s\tauth %s, %s\n", r.Endpoint.Name, r.Endpoint.AuthMode, keys)
	fmt.Fprintf(tw, "deployment\t%s\t%s × %d\n", r.Deployment.Name, firstNonEmpty(r.Deployment.InstanceType, "?"), r.Deployment.InstanceCount)
	fmt.Fprintf(tw, "old scoring URI\t%s\n", firstNonEmpty(r.OldScoringURI, "(unknown)"))
	fmt.Fprintf(tw, "new scoring URI\t%s\n", r.NewScoringURI)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	return writeFindings(w, r.Findings)
}

func writeFindings(w io.Writer, fs []Finding) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "SEVERITY\tCODE\tFIELD\tMESSAGE\n")
	for _, f := range fs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Severity, f.Code, firstNonEmpty(f.Field, "-"), f.Message)
	}
	return tw.Flush()
}

// WriteSummary prints one row per plan and a total (batch mode).
func WriteSummary(w io.Writer, results []*Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "SERVICE\tCOMPUTE\tVERDICT\tINSTANCE TYPE\tAUTH\tERRORS\tWARNINGS\tFIRST ERROR\n")
	ok := 0
	for _, r := range results {
		verdict := "refused"
		if r.Eligible {
			verdict = "eligible"
			ok++
		}
		nerr, nwarn, first := 0, 0, "-"
		for _, f := range r.Findings {
			switch f.Severity {
			case SeverityError:
				if nerr == 0 {
					first = f.Code
				}
				nerr++
			case SeverityWarning:
				nwarn++
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n", firstNonEmpty(r.Service, "?"), firstNonEmpty(r.ComputeType, "?"), verdict,
			firstNonEmpty(r.Deployment.InstanceType, "-"), r.Endpoint.AuthMode, nerr, nwarn, first)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "total: %d services, %d eligible, %d refused\n", len(results), ok, len(results)-ok)
	return err
}

func (c *command) exportCmd() *cobra.Command {
	var pf planFlags
	var artifacts, outDir, sub, rg, ws string
	cmd := &cobra.Command{
		Use:   "export FILE --artifacts DIR -o OUTDIR",
		Short: "Write endpoint.yml, deployment.yml and an ARM template + parameters",
		Long: `Write the v2 CLI YAML (endpoint.yml, deployment.yml; accepted by moe and az ml;
keys are never written) with paths into the artifacts folder, conda.yaml when the
service's conda dependencies are needed, plan.json, and the ARM template and
parameters in the shape of the official export. A refused service writes nothing,
except an image-based one, which gets a skeleton endpoint.yml/deployment.yml.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if outDir == "" {
				return errors.New("-o OUTDIR is required")
			}
			svc, err := LoadService(args[0], pf.name, pf.keys)
			if err != nil {
				return err
			}
			cmd.SilenceUsage = true
			r := Plan(svc, pf.options())
			if !r.Eligible && !r.Skeleton {
				_ = writeFindings(c.stderr, r.Findings)
				return &RefusedError{Services: []string{r.Service}}
			}
			e, err := BuildExport(r, ExportOptions{ArtifactsDir: artifacts, OutDir: outDir, SubscriptionID: sub, ResourceGroup: rg, Workspace: ws})
			if err != nil {
				return err
			}
			if err := WriteExport(e, outDir); err != nil {
				return err
			}
			_ = writeFindings(c.stderr, append(append([]Finding(nil), r.Findings...), e.Findings...))
			for _, name := range sortedKeys(e.Files) {
				fmt.Fprintf(c.stdout, "wrote %s\n", filepath.Join(outDir, name))
			}
			if r.Skeleton {
				fmt.Fprintf(c.stdout, "the service is refused: finish %s and %s by hand\n", filepath.Join(outDir, EndpointFile), filepath.Join(outDir, DeploymentFile))
				return &RefusedError{Services: []string{r.Service}}
			}
			fmt.Fprintf(c.stdout, "next:\n  moe online-endpoint create -f %s\n  moe online-deployment create -f %s --all-traffic\n",
				filepath.Join(outDir, EndpointFile), filepath.Join(outDir, DeploymentFile))
			return nil
		},
	}
	pf.register(cmd)
	cmd.Flags().StringVar(&artifacts, "artifacts", "", "folder with the scoring script, source folder, model files and conda file")
	cmd.Flags().StringVarP(&outDir, "output-dir", "o", "", "folder to write the files to")
	cmd.Flags().StringVar(&sub, "subscription", "", "subscription id for ARM ids in the parameters (default: a placeholder)")
	cmd.Flags().StringVar(&rg, "resource-group", "", "resource group for ARM ids (default: a placeholder)")
	cmd.Flags().StringVar(&ws, "workspace", "", "workspace name for ARM ids (default: a placeholder)")
	return cmd
}

func (c *command) verifyCmd() *cobra.Command {
	var pf planFlags
	var requests, oldURI, oldKey, newURI, newKey, newCA, output string
	var tolerance float64
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "verify FILE --requests samples.jsonl",
		Short: "Replay requests against the old and the new scoring URI and compare answers",
		Long: `Send each request of a JSONL file (one JSON body per line) to the old scoring URI
and to the new one, compare status codes and JSON bodies (numbers within
--tolerance), and print a parity report. Exits 1 on any mismatch. The old URI
defaults to the service's scoring URI and the old key to the primary key of
--keys. The new URI, its key and the CA to trust default to what the moe
server in --data-dir knows about the endpoint (else the planned URI,
$MOE_NEW_KEY or the kept primary key, and the system's CAs).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if requests == "" {
				return errors.New("--requests is required")
			}
			if output != "table" && output != "json" {
				return fmt.Errorf("-o must be table or json (got %q)", output)
			}
			svc, err := LoadService(args[0], pf.name, pf.keys)
			if err != nil {
				return err
			}
			r := Plan(svc, pf.options())
			oldURI = firstNonEmpty(oldURI, svc.ScoringURI)
			if oldURI == "" {
				return errors.New("the service has no scoring URI: pass --old-uri")
			}
			if oldKey == "" && svc.Keys != nil {
				oldKey = svc.Keys.PrimaryKey
			}
			newKey = firstNonEmpty(newKey, os.Getenv("MOE_NEW_KEY"))
			var client *http.Client
			if newCA != "" {
				if client, err = clientTrusting(newCA); err != nil {
					return err
				}
			}
			f, err := os.Open(requests)
			if err != nil {
				return err
			}
			defer f.Close()
			cmd.SilenceUsage = true
			if c.newSide != nil && (newURI == "" || newKey == "" || client == nil) {
				ns, err := c.newSide(cmd.Context(), r.Endpoint.Name)
				switch {
				case err != nil && newURI == "":
					fmt.Fprintf(c.stderr, "note: cannot look up endpoint %s on the moe server (%v): using the planned scoring URI\n", r.Endpoint.Name, err)
				case err == nil:
					if newURI == "" && ns.ScoringURI == "" {
						fmt.Fprintf(c.stderr, "note: endpoint %s is not on the moe server (run apply first?): using the planned scoring URI\n", r.Endpoint.Name)
					}
					newURI = firstNonEmpty(newURI, ns.ScoringURI)
					newKey = firstNonEmpty(newKey, ns.Credential)
					if client == nil {
						client = ns.Client
					}
				}
			}
			newURI = firstNonEmpty(newURI, r.NewScoringURI)
			if newKey == "" && r.Keys != nil && r.Endpoint.AuthMode == spec.AuthKey {
				newKey = r.Keys.PrimaryKey // apply keeps it
			}
			if client == nil {
				client = &http.Client{}
			}
			cl := *client
			cl.Timeout = timeout
			rep, err := Verify(cmd.Context(), f, Target{URI: oldURI, Credential: oldKey}, Target{URI: newURI, Credential: newKey}, VerifyOptions{Tolerance: tolerance, Client: &cl})
			if err != nil {
				return err
			}
			if output == "json" {
				b, err := marshalIndent(rep)
				if err != nil {
					return err
				}
				_, _ = c.stdout.Write(b)
			} else if err := rep.WriteText(c.stdout); err != nil {
				return err
			}
			if !rep.OK() {
				return &ParityError{Mismatched: rep.Mismatched, Total: rep.Total}
			}
			return nil
		},
	}
	pf.register(cmd)
	cmd.Flags().StringVar(&requests, "requests", "", "JSONL file of request bodies")
	cmd.Flags().StringVar(&oldURI, "old-uri", "", "old scoring URI (default: the service's scoringUri)")
	cmd.Flags().StringVar(&oldKey, "old-key", "", "key or token for the old service (default: --keys primary key)")
	cmd.Flags().StringVar(&newURI, "new-uri", "", "new scoring URI (default: the planned one)")
	cmd.Flags().StringVar(&newKey, "new-key", "", "key or token for the new endpoint (default: $MOE_NEW_KEY, else the endpoint's primary key)")
	cmd.Flags().StringVar(&newCA, "new-ca", "", "PEM file of CA certificates to trust for the new URI, besides the system's (default: the moe server's CA)")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "time limit of each request")
	cmd.Flags().Float64Var(&tolerance, "tolerance", 0, "largest absolute difference allowed between numbers")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func (c *command) applyCmd() *cobra.Command {
	var pf planFlags
	var artifacts string
	cmd := &cobra.Command{
		Use:   "apply FILE --artifacts DIR",
		Short: "Create the endpoint (with the kept keys) and deployment on moe, 100 % traffic",
		Long: `Create the new endpoint and deployment on moe and wait until they are ready.
The v1 service is never modified. A refused service changes nothing. Re-running
is safe.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if artifacts == "" {
				return errors.New("--artifacts is required")
			}
			svc, err := LoadService(args[0], pf.name, pf.keys)
			if err != nil {
				return err
			}
			cmd.SilenceUsage = true
			r := Plan(svc, pf.options())
			if !r.Eligible {
				_ = writeFindings(c.stderr, r.Findings)
				return &RefusedError{Services: []string{r.Service}}
			}
			req, cleanup, err := PrepareApply(r, artifacts)
			if err != nil {
				return err
			}
			defer cleanup()
			_ = writeFindings(c.stderr, r.Findings)
			res, err := c.applier.Apply(cmd.Context(), *req)
			if err != nil {
				return fmt.Errorf("apply %s: %w", r.Service, err)
			}
			fmt.Fprintf(c.stdout, "endpoint %s is ready\nscoring URI: %s\n", req.Endpoint.Name, res.ScoringURI)
			cred := "$KEY"
			if res.AuthMode == spec.AuthAMLToken {
				cred = "$TOKEN"
			}
			fmt.Fprintf(c.stdout, "curl -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' -d @request.json %s\n", cred, res.ScoringURI)
			return nil
		},
	}
	pf.register(cmd)
	cmd.Flags().StringVar(&artifacts, "artifacts", "", "folder with the scoring script, source folder, model files and conda file")
	return cmd
}

// PrepareApply turns an eligible plan into an ApplyRequest: paths resolved
// against the artifacts folder (made absolute), a generated conda.yaml in a
// temporary folder when needed. Call cleanup when Apply has returned.
func PrepareApply(r *Result, artifacts string) (req *ApplyRequest, cleanup func(), err error) {
	if !r.Eligible {
		return nil, nil, &RefusedError{Services: []string{r.Service}}
	}
	abs, err := filepath.Abs(artifacts)
	if err != nil {
		return nil, nil, err
	}
	tmp, err := os.MkdirTemp("", "moe-upgrade-")
	if err != nil {
		return nil, nil, err
	}
	cleanup = func() { os.RemoveAll(tmp) }
	e, err := BuildExport(r, ExportOptions{ArtifactsDir: abs, OutDir: tmp})
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	dep, _, err := spec.DecodeDeployment(e.Files[DeploymentFile], spec.DecodeOptions{BaseDir: tmp})
	if err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("apply %s: deployment: %w", r.Service, err)
	}
	req = &ApplyRequest{Service: r.Service, Endpoint: *r.Endpoint, Deployment: *dep, Keys: r.Keys}
	if c, ok := e.Files[CondaFileOut]; ok {
		if err := os.WriteFile(filepath.Join(tmp, CondaFileOut), c, 0o644); err != nil {
			cleanup()
			return nil, nil, err
		}
		req.TempDir = tmp
	} else {
		cleanup()
		cleanup = func() {}
	}
	for _, f := range e.Findings {
		if !strings.HasPrefix(f.Code, "arm-") { // about the ARM files, which apply does not write
			r.Findings = append(r.Findings, f)
		}
	}
	return req, cleanup, nil
}

// clientTrusting returns an HTTP client that trusts the system's CAs and the
// certificates of the PEM file caFile.
func clientTrusting(caFile string) (*http.Client, error) {
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("--new-ca: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("--new-ca: %s holds no PEM certificate", caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr}, nil
}
