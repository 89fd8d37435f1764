// Package hostcmd is the command line of the model host, shared by
// `moe host` and the standalone moe-host binary.
package hostcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/attribute"

	"github.com/moe-serving/moe/internal/host"
	"github.com/moe-serving/moe/internal/logfile"
	"github.com/moe-serving/moe/internal/tracing"
)

// ExitCode is the process exit code for Command's error: 3 when the
// scoring script failed to start (as gunicorn's boot failure), 1 otherwise.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, host.ErrInit):
		return 3
	}
	return 1
}

// openHostTracing starts span export for a host. The resource names the
// instance from the MOE_ENDPOINT, MOE_DEPLOYMENT and MOE_INSTANCE
// variables the local runner sets.
func openHostTracing(ctx context.Context, endpoint string, log *slog.Logger) (*tracing.Provider, error) {
	var attrs []attribute.KeyValue
	for _, kv := range []struct {
		key attribute.Key
		env string
	}{{tracing.KeyEndpoint, "MOE_ENDPOINT"}, {tracing.KeyDeployment, "MOE_DEPLOYMENT"}, {tracing.KeyInstance, "MOE_INSTANCE"}} {
		if v := os.Getenv(kv.env); v != "" {
			attrs = append(attrs, kv.key.String(v))
		}
	}
	tp, err := tracing.Open(ctx, tracing.Config{Endpoint: endpoint, Service: "moe-host", Attributes: attrs, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("--otlp-endpoint: %w (e.g. --otlp-endpoint http://127.0.0.1:4318)", err)
	}
	return tp, nil
}

// closeTracing flushes the spans still batched, for at most 5 seconds.
func closeTracing(tp *tracing.Provider, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tp.Close(ctx); err != nil {
		log.Warn("tracing: spans not exported at exit", "err", err)
	}
}

// Command is the host command: `moe host` in the main binary, and the whole
// of the small moe-host binary the local runner prefers (it maps far less
// memory per instance than the full moe binary). Run's error wraps
// host.ErrInit when the scoring script failed to start (exit code 3).
func Command() *cobra.Command {
	var cfg host.Config
	var exitWithParent bool
	var leaseFile, logFile, otlpEndpoint string
	var logMax int64
	var leaseTimeout time.Duration
	cmd := &cobra.Command{
		Use:    "host",
		Short:  "Run one model host (started by moe serve for each instance)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if exitWithParent {
				// Stop when moe serve dies (even by kill -9) rather than
				// linger holding a port.
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				defer cancel()
				parent := os.Getppid()
				go func() {
					for range time.Tick(500 * time.Millisecond) {
						if os.Getppid() != parent {
							cancel()
							return
						}
					}
				}()
			}
			if leaseFile != "" {
				// Outlive a crashed server for leaseTimeout, so the next
				// one can adopt this instance; then stop.
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				defer cancel()
				go func() {
					t := time.NewTicker(time.Second)
					defer t.Stop()
					for {
						select {
						case <-ctx.Done():
							return
						case <-t.C:
						}
						if fi, err := os.Stat(leaseFile); err != nil || time.Since(fi.ModTime()) > leaseTimeout {
							fmt.Fprintf(os.Stderr, "moe host: lease %s expired (no server renewed it for %s): stopping\n", leaseFile, leaseTimeout)
							cancel()
							return
						}
					}
				}()
			}
			var out, hostOut io.Writer = os.Stderr, os.Stderr
			if logFile != "" {
				w, err := logfile.Open(logFile, logMax, 3)
				if err != nil {
					return err
				}
				defer w.Close()
				// The host's own lines (one per request) are batched, not
				// one write(2) each; the workers' output (tracebacks) is
				// written as it comes.
				b := logfile.NewBuffered(w, 100*time.Millisecond)
				defer b.Close()
				out, hostOut = w, b
			}
			cfg.Stderr = out
			cfg.Logger = slog.New(slog.NewTextHandler(hostOut, nil)).With("component", "host")
			if otlpEndpoint != "" {
				tp, err := openHostTracing(ctx, otlpEndpoint, cfg.Logger)
				if err != nil {
					return err
				}
				defer closeTracing(tp, cfg.Logger)
				cfg.Tracer = tp.Tracer()
			}
			return host.Run(ctx, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Addr, "addr", "127.0.0.1:0", "listen address")
	f.StringVar(&cfg.AddrFile, "addr-file", "", "write the bound address here")
	f.StringVar(&cfg.ErrorFile, "error-file", "", "write a start failure summary here")
	f.StringVar(&cfg.CodeDir, "code-dir", ".", "scoring code folder (AML_APP_ROOT)")
	f.StringVar(&cfg.ScoringScript, "scoring-script", "", "entry script relative to --code-dir (AZUREML_ENTRY_SCRIPT)")
	f.StringVar(&cfg.ModelDir, "model-dir", "", "AZUREML_MODEL_DIR")
	f.StringVar(&cfg.Python, "python", "/usr/bin/python3", "Python interpreter")
	f.IntVar(&cfg.Workers, "workers", 1, "Python worker processes (WORKER_COUNT)")
	f.BoolVar(&exitWithParent, "exit-with-parent", false, "exit when the parent process exits")
	f.StringVar(&leaseFile, "lease-file", "", "stop when this file's modification time is older than --lease-timeout")
	f.StringVar(&logFile, "log-file", "", "write host and worker output here, rotated at --log-max-bytes (default: stderr)")
	f.Int64Var(&logMax, "log-max-bytes", 10<<20, "rotate --log-file past this size (3 old files are kept)")
	f.DurationVar(&leaseTimeout, "lease-timeout", 30*time.Second, "see --lease-file")
	f.StringVar(&otlpEndpoint, "otlp-endpoint", "", "export spans to this OTLP/HTTP collector (base URL, e.g. http://127.0.0.1:4318); empty: no tracing")
	return cmd
}
