package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moe-serving/moe/internal/api"
	"github.com/moe-serving/moe/internal/artifact"
	"github.com/moe-serving/moe/internal/spec"
	"github.com/moe-serving/moe/internal/store"
)

func newDeploymentCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "online-deployment", Short: "Manage online deployments (as az ml online-deployment)"}
	cmd.AddCommand(depCreate(a, false), depCreate(a, true), depShow(a), depList(a), depDelete(a), depLogs(a), depDiagnose(a))
	return cmd
}

func jsonBytes(v any) ([]byte, error) { return json.Marshal(v) }

// upload packs a local path and uploads it, returning its digest.
func upload(ctx context.Context, c *connection, path string, keepBase bool) (digest string, isFile bool, err error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		f, err := artifact.Pack(pw, path, keepBase)
		isFile = f
		pw.CloseWithError(err)
		done <- err
	}()
	digest, err = c.api.PutArtifact(ctx, pr)
	pr.CloseWithError(err)
	if perr := <-done; perr != nil {
		return "", false, fmt.Errorf("pack %s: %w", path, perr)
	}
	return digest, isFile, err
}

// snapshot uploads a deployment's model, code and conda file.
func (a *app) snapshot(ctx context.Context, c *connection, d *spec.Deployment) (*store.Artifacts, error) {
	var arts store.Artifacts
	if d.Model != nil && d.Model.Path != "" {
		fi, err := os.Stat(d.Model.Path)
		if err != nil {
			return nil, fmt.Errorf("model.path: %w", err)
		}
		fmt.Fprintf(a.stderr, "Uploading model %s\n", d.Model.Path)
		if arts.Model, arts.ModelIsFile, err = upload(ctx, c, d.Model.Path, true); err != nil {
			return nil, fmt.Errorf("model.path: %w", err)
		}
		arts.ModelName = fi.Name()
	}
	if cc := d.CodeConfiguration; cc != nil {
		fi, err := os.Stat(cc.Code)
		if err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("code_configuration.code: %s is not a folder", cc.Code)
		}
		if _, err := os.Stat(filepath.Join(cc.Code, cc.ScoringScript)); err != nil {
			return nil, fmt.Errorf("code_configuration.scoring_script: %s not found in %s", cc.ScoringScript, cc.Code)
		}
		fmt.Fprintf(a.stderr, "Uploading code %s\n", cc.Code)
		if arts.Code, _, err = upload(ctx, c, cc.Code, false); err != nil {
			return nil, fmt.Errorf("code_configuration.code: %w", err)
		}
	}
	if env := d.Environment; env != nil && env.CondaFile != "" {
		var err error
		if arts.Conda, _, err = upload(ctx, c, env.CondaFile, false); err != nil {
			return nil, fmt.Errorf("environment.conda_file: %w", err)
		}
	}
	return &arts, nil
}

func depCreate(a *app, update bool) *cobra.Command {
	var f fileFlags
	var endpoint string
	var allTraffic, skipValidation bool
	use, short := "create", "Create a deployment from YAML and start its instances"
	if update {
		use, short = "update", "Update a deployment (rolls new instances in, old ones out)"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			var d *spec.Deployment
			var notices []spec.Notice
			var err error
			opts := spec.DecodeOptions{Sets: f.sets, Name: f.name, EndpointName: endpoint}
			if f.file == "" && !update {
				return &usageError{msg: "-f/--file is required", hint: "moe online-deployment create -f blue-deployment.yml --all-traffic"}
			}
			if f.file == "" && (f.name == "" || endpoint == "") {
				return &usageError{msg: "give -f FILE, or -n NAME -e ENDPOINT with --set", hint: "moe online-deployment update -n blue -e my-endpoint --set instance_count=2"}
			}
			c, err := a.connect()
			if err != nil {
				return err
			}
			reuse := false
			if f.file != "" {
				data, base, err := readSpecFile(f.file)
				if err != nil {
					return err
				}
				opts.BaseDir = base
				if d, notices, err = spec.DecodeDeployment(data, opts); err != nil {
					return specError(f.file, err)
				}
			} else {
				cur, err := c.api.GetDeployment(ctx, endpoint, f.name)
				if err != nil {
					return fmt.Errorf("deployment %q (endpoint %q): %w", f.name, endpoint, err)
				}
				b, _ := jsonBytes(cur.Deployment)
				if d, notices, err = spec.DecodeDeployment(b, opts); err != nil {
					return err
				}
				reuse = true
			}
			a.notices(notices)
			if _, err := c.api.GetEndpoint(ctx, d.EndpointName); err != nil {
				return fmt.Errorf("endpoint %q: %w", d.EndpointName, err)
			}
			fmt.Fprintf(a.stderr, "Check: endpoint %s exists\n", d.EndpointName)
			req := api.DeploymentRequest{Deployment: *d, AllTraffic: allTraffic}
			if !reuse {
				if req.Artifacts, err = a.snapshot(ctx, c, d); err != nil {
					return fmt.Errorf("deployment %q: %w", d.Name, err)
				}
			}
			pr := newProgress(a.stderr)
			if !f.noWait {
				pr.provisioningSteps(ctx, c.api, d.EndpointName, d.Name) // baseline: lines already there
			}
			var v *api.DeploymentView
			if update {
				v, err = c.api.UpdateDeployment(ctx, d.EndpointName, d.Name, req)
			} else {
				v, err = c.api.CreateDeployment(ctx, d.EndpointName, req)
			}
			if err != nil {
				return fmt.Errorf("%s deployment %q (endpoint %q): %w", use, d.Name, d.EndpointName, err)
			}
			if !f.noWait {
				if v, err = a.waitDeployed(ctx, c, pr, d.EndpointName, d.Name, v.Generation, allTraffic); err != nil {
					return err
				}
				if v.ProvisioningState == spec.StateFailed {
					printOut(a.stdout, f.output, v, deploymentHeader, deploymentRows([]*api.DeploymentView{v}))
					return &exitError{code: 1, err: fmt.Errorf("deployment %q (endpoint %q) failed: %s\nSee: moe online-deployment get-logs -n %s -e %s", d.Name, d.EndpointName, v.Error, d.Name, d.EndpointName)}
				}
			}
			return printOut(a.stdout, f.output, v, deploymentHeader, deploymentRows([]*api.DeploymentView{v}))
		},
	}
	f.bind(cmd, "deployment name (overrides the file's)")
	cmd.Flags().StringVarP(&endpoint, "endpoint-name", "e", "", "endpoint name (overrides the file's endpoint_name)")
	cmd.Flags().StringVar(&endpoint, "endpoint", "", "alias of --endpoint-name")
	cmd.Flags().BoolVar(&allTraffic, "all-traffic", false, "route 100% of the endpoint's traffic here once ready")
	cmd.Flags().BoolVar(&skipValidation, "skip-script-validation", false, "accepted for compatibility")
	return cmd
}

var deploymentHeader = []string{"NAME", "ENDPOINT", "STATE", "READY", "INSTANCE TYPE", "ERROR"}

func deploymentRows(vs []*api.DeploymentView) [][]string {
	var rows [][]string
	for _, v := range vs {
		errText := v.Error
		if i := strings.IndexByte(errText, '\n'); i >= 0 {
			errText = errText[:i] + "..."
		}
		rows = append(rows, []string{v.Name, v.EndpointName, v.ProvisioningState, fmt.Sprintf("%d/%d", v.ReadyInstances, v.TotalInstances), v.InstanceType, errText})
	}
	return rows
}

func depShow(a *app) *cobra.Command {
	var name, endpoint, output string
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show a deployment with its state, instances and last error",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || endpoint == "" {
				return &usageError{msg: "-n/--name and -e/--endpoint-name are required", hint: "moe online-deployment show -n blue -e my-endpoint"}
			}
			c, err := a.connect()
			if err != nil {
				return err
			}
			v, err := c.api.GetDeployment(cmd.Context(), endpoint, name)
			if err != nil {
				return fmt.Errorf("deployment %q (endpoint %q): %w", name, endpoint, err)
			}
			return printOut(a.stdout, output, v, deploymentHeader, deploymentRows([]*api.DeploymentView{v}))
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "deployment name")
	cmd.Flags().StringVarP(&endpoint, "endpoint-name", "e", "", "endpoint name")
	cmd.Flags().StringVarP(&output, "output", "o", "json", "output format: json, yaml or table")
	return cmd
}

func depList(a *app) *cobra.Command {
	var endpoint, output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List an endpoint's deployments",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if endpoint == "" {
				return &usageError{msg: "-e/--endpoint-name is required", hint: "moe online-deployment list -e my-endpoint"}
			}
			c, err := a.connect()
			if err != nil {
				return err
			}
			vs, err := c.api.ListDeployments(cmd.Context(), endpoint)
			if err != nil {
				return fmt.Errorf("endpoint %q: %w", endpoint, err)
			}
			return printOut(a.stdout, output, vs, deploymentHeader, deploymentRows(vs))
		},
	}
	cmd.Flags().StringVarP(&endpoint, "endpoint-name", "e", "", "endpoint name")
	cmd.Flags().StringVarP(&output, "output", "o", "json", "output format: json, yaml or table")
	return cmd
}

func depDelete(a *app) *cobra.Command {
	var name, endpoint string
	var yes, noWait bool
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Delete a deployment (it must have 0% traffic)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || endpoint == "" {
				return &usageError{msg: "-n/--name and -e/--endpoint-name are required", hint: "moe online-deployment delete -n blue -e my-endpoint --yes"}
			}
			if err := a.confirm(yes, fmt.Sprintf("Deployment %q of endpoint %q will be deleted.", name, endpoint)); err != nil {
				return err
			}
			c, err := a.connect()
			if err != nil {
				return err
			}
			if err := c.api.DeleteDeployment(cmd.Context(), endpoint, name); err != nil {
				return fmt.Errorf("delete deployment %q (endpoint %q): %w", name, endpoint, err)
			}
			fmt.Fprintf(a.stderr, "Deleted deployment %q of endpoint %q\n", name, endpoint)
			return nil
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "deployment name")
	cmd.Flags().StringVarP(&endpoint, "endpoint-name", "e", "", "endpoint name")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not prompt for confirmation")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "do not wait")
	return cmd
}

func depLogs(a *app) *cobra.Command {
	var name, endpoint, container string
	var lines int
	cmd := &cobra.Command{
		Use:   "get-logs",
		Short: "Print a deployment's logs (inference-server or storage-initializer)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || endpoint == "" {
				return &usageError{msg: "-n/--name and -e/--endpoint-name are required", hint: "moe online-deployment get-logs -n blue -e my-endpoint --lines 100"}
			}
			c, err := a.connect()
			if err != nil {
				return err
			}
			text, err := c.api.GetLogs(cmd.Context(), endpoint, name, api.LogsRequest{ContainerType: container, Tail: lines})
			if err != nil {
				return fmt.Errorf("logs of deployment %q (endpoint %q): %w", name, endpoint, err)
			}
			fmt.Fprint(a.stdout, text)
			return nil
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "deployment name")
	cmd.Flags().StringVarP(&endpoint, "endpoint-name", "e", "", "endpoint name")
	cmd.Flags().IntVarP(&lines, "lines", "l", 5000, "number of lines from the end")
	cmd.Flags().StringVarP(&container, "container", "c", "inference-server", "inference-server or storage-initializer")
	return cmd
}

func depDiagnose(a *app) *cobra.Command {
	var name, endpoint, output string
	cmd := &cobra.Command{
		Use:   "diagnose",
		Short: "Explain a failing or slow deployment: the failed step, the log lines, the cause and the fix",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || endpoint == "" {
				return &usageError{msg: "-n/--name and -e/--endpoint-name are required", hint: "moe online-deployment diagnose -n blue -e my-endpoint"}
			}
			c, err := a.connect()
			if err != nil {
				return err
			}
			rep, err := c.api.Diagnose(cmd.Context(), endpoint, name)
			if err != nil {
				return fmt.Errorf("diagnose deployment %q (endpoint %q): %w", name, endpoint, err)
			}
			if output != "text" {
				return printOut(a.stdout, output, rep, nil, nil)
			}
			fmt.Fprintf(a.stdout, "Deployment %s (endpoint %s): %s\n", rep.Deployment, rep.Endpoint, rep.State)
			if len(rep.Findings) == 0 {
				fmt.Fprintln(a.stdout, "No problem found.")
				return nil
			}
			for i, f := range rep.Findings {
				fmt.Fprintf(a.stdout, "\n%d. [%s] %s\n", i+1, f.Step, f.Cause)
				for _, e := range f.Evidence {
					fmt.Fprintf(a.stdout, "     | %s\n", e)
				}
				fmt.Fprintf(a.stdout, "   Fix: %s\n", f.Fix)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "deployment name")
	cmd.Flags().StringVarP(&endpoint, "endpoint-name", "e", "", "endpoint name")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text, json or yaml")
	return cmd
}

// waitDeployed waits, showing progress, until generation gen of a
// deployment has all its instances ready or has failed (the returned view
// says which); then, with allTraffic, until the endpoint routes 100 % to it
// (the server moves traffic once the deployment is ready).
func (a *app) waitDeployed(ctx context.Context, c *connection, pr *progress, endpoint, name string, gen int64, allTraffic bool) (*api.DeploymentView, error) {
	deadline := time.Now().Add(15 * time.Minute)
	var v *api.DeploymentView
	for {
		cur, err := c.api.GetDeployment(ctx, endpoint, name)
		if err != nil {
			return nil, err
		}
		v = cur
		pr.provisioningSteps(ctx, c.api, endpoint, name)
		pr.set(fmt.Sprintf("%s: %d/%d instances ready", cur.ProvisioningState, cur.ReadyInstances, wantReady(&cur.Deployment)))
		if cur.ProvisioningState == spec.StateFailed ||
			cur.ProvisioningState == spec.StateSucceeded && cur.ActiveGeneration >= gen && cur.ReadyInstances >= wantReady(&cur.Deployment) {
			pr.done(cur.ProvisioningState)
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("deployment %q still %s after 15m; check again with show", name, cur.ProvisioningState)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(150 * time.Millisecond):
		}
	}
	if allTraffic && v.ProvisioningState == spec.StateSucceeded {
		a.waitFor(ctx, 30*time.Second, func() (string, bool, error) {
			e, err := c.api.GetEndpoint(ctx, endpoint)
			if err != nil {
				return "", false, err
			}
			return "traffic", e.Traffic[strings.ToLower(name)] == 100, nil
		})
	}
	return v, nil
}

// wantReady is how many ready instances a finished create/update has.
func wantReady(d *spec.Deployment) int {
	if ss := d.ScaleSettings; ss != nil && ss.Type == spec.ScaleTargetUtilization {
		return max(ss.MinInstances, 1)
	}
	return max(d.InstanceCount, 1)
}
