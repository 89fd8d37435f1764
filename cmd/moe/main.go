// Command moe serves machine-learning models behind Azure ML v2 compatible
// managed online endpoints: `moe serve` runs the control plane, gateway and
// local runner; the other commands mirror `az ml online-endpoint` and
// `az ml online-deployment`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitError carries a specific exit code (3: model host init failure, as
// gunicorn's boot failure; 1: refused or failed operations).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageError is a mistake in how a command was called; hint says what to try.
type usageError struct {
	msg, hint string
}

func (e *usageError) Error() string { return e.msg }

func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(stderr, "Error:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "Error:", err)
	var ue *usageError
	if errors.As(err, &ue) {
		if ue.hint != "" {
			fmt.Fprintln(stderr, "Try:", ue.hint)
		}
		return 2
	}
	return 1
}

// run is main without the process: tests call it in-process.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	app := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "moe",
		Short:         "Self-hosted managed online endpoints for machine-learning models",
		SilenceUsage:  true,
		SilenceErrors: true,
		Long: `moe serves a model folder, a score.py (init()/run()) and a conda file over HTTPS,
from the same endpoint and deployment YAML you would write for Azure ML v2 online
endpoints.

  moe serve
  moe online-endpoint create -f endpoint.yml
  moe online-deployment create -f blue-deployment.yml --all-traffic
  moe online-endpoint invoke -n my-endpoint --request-file sample-request.json`,
	}
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().StringVar(&app.dataDir, "data-dir", "", "moe's data folder (env MOE_HOME; default "+defaultDataDir()+")")
	root.AddCommand(commands(app)...)
	return root.ExecuteContext(ctx)
}

// commands are moe's subcommands (one list, for the CLI and its docs).
func commands(a *app) []*cobra.Command {
	return []*cobra.Command{newServeCmd(a), newHostCmd(), newEndpointCmd(a), newDeploymentCmd(a), newSKUCmd(a),
		newUpgradeCmd(a), newCACmd(a), newSigningKeyCmd(a), newGatewayCmd(a), newStorageInitCmd(a)}
}
