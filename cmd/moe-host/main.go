// Command moe-host is the model host alone (the same code as `moe host`):
// the local runner starts it for each instance when it sits next to the moe
// binary, because it maps far less memory than the full moe binary, whose
// Kubernetes and control-plane packages every idle instance would carry.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/moe-serving/moe/internal/hostcmd"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cmd := hostcmd.Command()
	cmd.Use, cmd.Hidden = "moe-host", false
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
	}
	os.Exit(hostcmd.ExitCode(err))
}
