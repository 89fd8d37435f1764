package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/moe-serving/moe/internal/host"
	"github.com/moe-serving/moe/internal/hostcmd"
	"github.com/moe-serving/moe/internal/tracing"
)

// newHostCmd is `moe host`; exit code 3 when the scoring script fails to
// start.
func newHostCmd() *cobra.Command {
	cmd := hostcmd.Command()
	run := cmd.RunE
	cmd.RunE = func(c *cobra.Command, args []string) error {
		err := run(c, args)
		if errors.Is(err, host.ErrInit) {
			return &exitError{code: 3, err: err}
		}
		return err
	}
	return cmd
}

// closeTracing flushes the spans still batched, for at most 5 seconds.
func closeTracing(tp *tracing.Provider, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tp.Close(ctx); err != nil {
		log.Warn("tracing: spans not exported at exit", "err", err)
	}
}
