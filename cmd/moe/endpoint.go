package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/moe-serving/moe/internal/api"
	"github.com/moe-serving/moe/internal/spec"
)

func newEndpointCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{Use: "online-endpoint", Short: "Manage online endpoints (as az ml online-endpoint)"}
	cmd.AddCommand(epCreate(a), epUpdate(a), epShow(a), epList(a), epDelete(a), epInvoke(a), epCredentials(a), epRegenerate(a))
	return cmd
}

type fileFlags struct {
	file   string
	name   string
	sets   []string
	output string
	noWait bool
}

func (f *fileFlags) bind(cmd *cobra.Command, nameHelp string) {
	cmd.Flags().StringVarP(&f.file, "file", "f", "", "YAML spec file")
	cmd.Flags().StringVarP(&f.name, "name", "n", "", nameHelp)
	cmd.Flags().StringArrayVar(&f.sets, "set", nil, "override a field: path=value (repeatable)")
	cmd.Flags().StringVarP(&f.output, "output", "o", "json", "output format: json, yaml or table")
	cmd.Flags().BoolVar(&f.noWait, "no-wait", false, "do not wait for the operation to finish")
}

func (a *app) notices(ns []spec.Notice) {
	for _, n := range ns {
		fmt.Fprintf(a.stderr, "Notice: %s\n", n)
	}
}

func readSpecFile(path string) ([]byte, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", &usageError{msg: fmt.Sprintf("read spec: %v", err), hint: "-f path/to/spec.yml"}
	}
	abs, _ := filepath.Abs(path)
	return b, filepath.Dir(abs), nil
}

func specError(file string, err error) error {
	if file == "" {
		return err
	}
	return fmt.Errorf("%s: %w", file, err)
}

func epCreate(a *app) *cobra.Command {
	var f fileFlags
	var authMode string
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create an endpoint from YAML, or with defaults from -n NAME",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			data := []byte("{}")
			base := ""
			if f.file != "" {
				var err error
				if data, base, err = readSpecFile(f.file); err != nil {
					return err
				}
			} else if f.name == "" {
				return &usageError{msg: "give -f FILE or -n NAME", hint: "moe online-endpoint create -n my-endpoint"}
			}
			sets := f.sets
			if authMode != "" {
				sets = append(sets, "auth_mode="+authMode)
			}
			e, notices, err := spec.DecodeEndpoint(data, spec.DecodeOptions{BaseDir: base, Sets: sets, Name: f.name})
			if err != nil {
				return specError(f.file, err)
			}
			a.notices(notices)
			c, err := a.connect()
			if err != nil {
				return err
			}
			v, err := c.api.CreateEndpoint(cmd.Context(), api.CreateEndpointRequest{Endpoint: *e})
			if err != nil {
				return fmt.Errorf("create endpoint %q: %w", e.Name, err)
			}
			return printOut(a.stdout, f.output, v, endpointHeader, endpointRows([]*api.EndpointView{v}))
		},
	}
	f.bind(cmd, "endpoint name (overrides the file's)")
	cmd.Flags().StringVar(&authMode, "auth-mode", "", "key, aml_token or aad_token")
	return cmd
}

var endpointHeader = []string{"NAME", "AUTH", "STATE", "TRAFFIC", "SCORING URI"}

func endpointRows(vs []*api.EndpointView) [][]string {
	var rows [][]string
	for _, v := range vs {
		var t []string
		for k, p := range v.Traffic {
			t = append(t, fmt.Sprintf("%s=%d", k, p))
		}
		sort.Strings(t)
		rows = append(rows, []string{v.Name, v.AuthMode, v.ProvisioningState, strings.Join(t, " "), v.ScoringURI})
	}
	return rows
}

func epUpdate(a *app) *cobra.Command {
	var f fileFlags
	var traffic, mirror string
	cmd := &cobra.Command{
		Use:   "update",
		Short: "Update an endpoint: spec from YAML, --traffic, --mirror-traffic, --set",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			var newTraffic, newMirror map[string]int
			var err error
			if cmd.Flags().Changed("traffic") {
				if newTraffic, err = parseTraffic("--traffic", traffic); err != nil {
					return err
				}
			}
			if cmd.Flags().Changed("mirror-traffic") {
				if newMirror, err = parseTraffic("--mirror-traffic", mirror); err != nil {
					return err
				}
			}
			if f.name == "" && f.file == "" {
				return &usageError{msg: "give -n NAME or -f FILE", hint: `moe online-endpoint update -n my-endpoint --traffic "blue=100"`}
			}
			c, err := a.connect()
			if err != nil {
				return err
			}
			var e *spec.Endpoint
			var notices []spec.Notice
			name := f.name
			if f.file != "" {
				data, base, err := readSpecFile(f.file)
				if err != nil {
					return err
				}
				if e, notices, err = spec.DecodeEndpoint(data, spec.DecodeOptions{BaseDir: base, Sets: f.sets, Name: f.name}); err != nil {
					return specError(f.file, err)
				}
				name = e.Name
			}
			if name == "" {
				return &usageError{msg: "give -n NAME or -f FILE", hint: `moe online-endpoint update -n my-endpoint --traffic "blue=100"`}
			}
			cur, err := c.api.GetEndpoint(ctx, name)
			if err != nil {
				return fmt.Errorf("endpoint %q: %w", name, err)
			}
			curSpec := cur.Spec()
			if e == nil {
				e = &curSpec
				if len(f.sets) > 0 {
					b, _ := jsonBytes(e)
					if e, notices, err = spec.DecodeEndpoint(b, spec.DecodeOptions{Sets: f.sets}); err != nil {
						return err
					}
				}
			} else if !cmd.Flags().Changed("traffic") && e.Traffic == nil {
				e.Traffic, e.MirrorTraffic = curSpec.Traffic, curSpec.MirrorTraffic
			}
			if newTraffic != nil {
				e.Traffic = newTraffic
			}
			if newMirror != nil {
				e.MirrorTraffic = map[string]int{}
				for k, v := range newMirror {
					if v > 0 {
						e.MirrorTraffic[k] = v
					}
				}
			}
			a.notices(notices)
			if err := spec.ValidateTraffic(e.Traffic, e.MirrorTraffic); err != nil {
				return err
			}
			v, err := c.api.UpdateEndpoint(ctx, cur.Name, e)
			if err != nil {
				return fmt.Errorf("update endpoint %q: %w", cur.Name, err)
			}
			return printOut(a.stdout, f.output, v, endpointHeader, endpointRows([]*api.EndpointView{v}))
		},
	}
	f.bind(cmd, "endpoint name")
	cmd.Flags().StringVar(&traffic, "traffic", "", `traffic split, e.g. "blue=90 green=10"`)
	cmd.Flags().StringVar(&mirror, "mirror-traffic", "", `mirror a share of live traffic, e.g. "green=10" (green=0 stops it)`)
	return cmd
}

func epShow(a *app) *cobra.Command {
	var name, output string
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show an endpoint",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, v, err := a.endpoint(cmd.Context(), name, "moe online-endpoint show -n my-endpoint")
			if err != nil {
				return err
			}
			return printOut(a.stdout, output, v, endpointHeader, endpointRows([]*api.EndpointView{v}))
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "endpoint name")
	cmd.Flags().StringVarP(&output, "output", "o", "json", "output format: json, yaml or table")
	return cmd
}

func epList(a *app) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List endpoints",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.connect()
			if err != nil {
				return err
			}
			vs, err := c.api.ListEndpoints(cmd.Context())
			if err != nil {
				return err
			}
			return printOut(a.stdout, output, vs, endpointHeader, endpointRows(vs))
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "json", "output format: json, yaml or table")
	return cmd
}

// confirm asks on stdin unless yes is set.
func (a *app) confirm(yes bool, what string) error {
	if yes {
		return nil
	}
	fmt.Fprintf(a.stderr, "%s\nAre you sure you want to perform this operation? (y/n): ", what)
	line, _ := bufio.NewReader(a.stdin).ReadString('\n')
	if s := strings.ToLower(strings.TrimSpace(line)); s == "y" || s == "yes" {
		return nil
	}
	return &usageError{msg: "not confirmed; nothing was deleted", hint: "add --yes to delete without a prompt"}
}

func epDelete(a *app) *cobra.Command {
	var name string
	var yes, noWait bool
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Delete an endpoint and all its deployments",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				return &usageError{msg: "-n/--name is required", hint: "moe online-endpoint delete -n my-endpoint --yes"}
			}
			if err := a.confirm(yes, fmt.Sprintf("Endpoint %q and all its deployments will be deleted.", name)); err != nil {
				return err
			}
			c, err := a.connect()
			if err != nil {
				return err
			}
			if err := c.api.DeleteEndpoint(cmd.Context(), name); err != nil {
				return fmt.Errorf("delete endpoint %q: %w", name, err)
			}
			fmt.Fprintf(a.stderr, "Deleted endpoint %q\n", name)
			return nil
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "endpoint name")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not prompt for confirmation")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "do not wait (deletion is immediate here)")
	return cmd
}

// bearer returns the credential invoke sends: the primary key or a token.
func (c *connection) bearer(ctx context.Context, v *api.EndpointView) (string, error) {
	switch v.AuthMode {
	case spec.AuthKey:
		k, err := c.api.ListKeys(ctx, v.Name)
		if err != nil {
			return "", err
		}
		return k.PrimaryKey, nil
	case spec.AuthAMLToken:
		t, err := c.api.GetToken(ctx, v.Name)
		if err != nil {
			return "", err
		}
		return t.AccessToken, nil
	}
	if t := os.Getenv("MOE_TOKEN"); t != "" {
		return t, nil
	}
	return "", &usageError{msg: fmt.Sprintf("endpoint %q uses %s: moe cannot fetch a token for it", v.Name, v.AuthMode), hint: "set MOE_TOKEN to a token from your identity provider"}
}

func epInvoke(a *app) *cobra.Command {
	var name, requestFile, deployment string
	cmd := &cobra.Command{
		Use:   "invoke",
		Short: "Send a request file to an endpoint's scoring URI and print the answer",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || requestFile == "" {
				return &usageError{msg: "-n/--name and -r/--request-file are required", hint: "moe online-endpoint invoke -n my-endpoint -r sample-request.json"}
			}
			body, err := os.ReadFile(requestFile)
			if err != nil {
				return &usageError{msg: fmt.Sprintf("request file: %v", err)}
			}
			ctx := cmd.Context()
			c, err := a.connect()
			if err != nil {
				return err
			}
			v, err := c.api.GetEndpoint(ctx, name)
			if err != nil {
				return fmt.Errorf("endpoint %q: %w", name, err)
			}
			if deployment != "" {
				if _, ok := v.Traffic[strings.ToLower(deployment)]; !ok {
					if _, ok := v.MirrorTraffic[strings.ToLower(deployment)]; !ok {
						return &exitError{code: 1, err: azureMessage("Deployment name " + deployment + " not found for this endpoint")}
					}
				}
			}
			tok, err := c.bearer(ctx, v)
			if err != nil {
				return err
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.ScoringURI, bytes.NewReader(body))
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			req.Header.Set("Content-Type", "application/json")
			if deployment != "" {
				req.Header.Set("azureml-model-deployment", deployment)
			}
			resp, err := c.http.Do(req)
			if err != nil {
				return fmt.Errorf("invoke endpoint %q: %w", name, err)
			}
			defer resp.Body.Close()
			out, _ := io.ReadAll(resp.Body)
			if resp.StatusCode/100 != 2 {
				return fmt.Errorf("invoke endpoint %q: %s (deployment %q): %s", name, resp.Status, resp.Header.Get("azureml-model-deployment"), bytes.TrimSpace(out))
			}
			fmt.Fprintln(a.stdout, string(bytes.TrimSpace(out)))
			return nil
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "endpoint name")
	cmd.Flags().StringVarP(&requestFile, "request-file", "r", "", "JSON file to send")
	cmd.Flags().StringVarP(&deployment, "deployment-name", "d", "", "send to this deployment (azureml-model-deployment header)")
	return cmd
}

func epCredentials(a *app) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "get-credentials",
		Short: "Print an endpoint's keys (key auth) or a new access token (aml_token)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, v, err := a.endpoint(cmd.Context(), name, "moe online-endpoint get-credentials -n my-endpoint")
			if err != nil {
				return err
			}
			switch v.AuthMode {
			case spec.AuthKey:
				k, err := c.api.ListKeys(cmd.Context(), name)
				if err != nil {
					return err
				}
				return printOut(a.stdout, "json", k, nil, nil)
			case spec.AuthAMLToken:
				t, err := c.api.GetToken(cmd.Context(), name)
				if err != nil {
					return err
				}
				return printOut(a.stdout, "json", t, nil, nil)
			}
			return fmt.Errorf("endpoint %q uses aad_token: get a token from your identity provider", name)
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "endpoint name")
	return cmd
}

func epRegenerate(a *app) *cobra.Command {
	var name, keyType, keyValue string
	var noWait bool
	cmd := &cobra.Command{
		Use:   "regenerate-keys",
		Short: "Replace the primary or secondary key; the other keeps working",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				return &usageError{msg: "-n/--name is required", hint: "moe online-endpoint regenerate-keys -n my-endpoint --key-type secondary"}
			}
			kt := strings.ToLower(keyType)
			if kt != "primary" && kt != "secondary" {
				return &usageError{msg: fmt.Sprintf("--key-type %q: must be primary or secondary", keyType)}
			}
			c, err := a.connect()
			if err != nil {
				return err
			}
			if err := c.api.RegenerateKeys(cmd.Context(), name, api.RegenerateKeysRequest{KeyType: strings.ToUpper(kt[:1]) + kt[1:], KeyValue: keyValue}); err != nil {
				return fmt.Errorf("regenerate %s key of endpoint %q: %w", kt, name, err)
			}
			fmt.Fprintf(a.stderr, "Regenerated the %s key of endpoint %q\n", kt, name)
			return nil
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "endpoint name")
	cmd.Flags().StringVar(&keyType, "key-type", "primary", "primary or secondary")
	cmd.Flags().StringVar(&keyValue, "key-value", "", "use this value instead of a random key")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "do not wait (regeneration is immediate here)")
	return cmd
}

// waitFor polls until done returns true, printing progress on stderr.
func (a *app) waitFor(ctx context.Context, timeout time.Duration, poll func() (state string, done bool, err error)) error {
	start := time.Now()
	last := ""
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		state, done, err := poll()
		if err != nil {
			return err
		}
		if state != last {
			fmt.Fprintf(a.stderr, "  %-10s (%.1fs)\n", state, time.Since(start).Seconds())
			last = state
		}
		if done {
			fmt.Fprintf(a.stderr, "Done (%.1fs)\n", time.Since(start).Seconds())
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("still %s after %s; check again with show", state, timeout)
		case <-t.C:
		}
	}
}

// azureMessage is an error whose text is Azure's own message, capitalised as
// Azure writes it, so scripts matching on it keep working.
type azureMessage string

func (m azureMessage) Error() string { return string(m) }

// endpoint checks that -n was given, connects, and fetches the endpoint;
// example is the hint shown when -n is missing.
func (a *app) endpoint(ctx context.Context, name, example string) (*connection, *api.EndpointView, error) {
	if name == "" {
		return nil, nil, &usageError{msg: "-n/--name is required", hint: example}
	}
	c, err := a.connect()
	if err != nil {
		return nil, nil, err
	}
	v, err := c.api.GetEndpoint(ctx, name)
	if err != nil {
		return nil, nil, fmt.Errorf("endpoint %q: %w", name, err)
	}
	return c, v, nil
}
