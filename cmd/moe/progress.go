package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/moe-serving/moe/internal/api"
)

// progress shows a long operation: provisioning steps as they happen (from
// the deployment's storage-initializer log) with elapsed time. On a
// terminal the current state is one line redrawn in place with a spinner;
// otherwise every change is a plain line, for logs and CI.
type progress struct {
	w       io.Writer
	tty     bool
	start   time.Time
	seen    map[string]bool
	baseSet bool
	state   string
	frame   int
}

func newProgress(w io.Writer) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = isatty.IsTerminal(f.Fd())
	}
	return &progress{w: w, tty: tty, start: time.Now(), seen: map[string]bool{}}
}

func (p *progress) elapsed() string { return fmt.Sprintf("%5.1fs", time.Since(p.start).Seconds()) }

func (p *progress) clear() {
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

// step prints a completed provisioning step.
func (p *progress) step(s string) {
	p.clear()
	fmt.Fprintf(p.w, "  %s  %s\n", p.elapsed(), s)
	p.redraw()
}

// set changes the current state line.
func (p *progress) set(state string) {
	if state == p.state && !p.tty {
		return
	}
	p.state = state
	if !p.tty {
		fmt.Fprintf(p.w, "  %s  %s\n", p.elapsed(), state)
		return
	}
	p.redraw()
}

func (p *progress) redraw() {
	if !p.tty || p.state == "" {
		return
	}
	spin := `|/-\`
	p.frame++
	fmt.Fprintf(p.w, "\r\033[K  %s  %c %s", p.elapsed(), spin[p.frame%4], p.state)
}

func (p *progress) done(final string) {
	p.clear()
	fmt.Fprintf(p.w, "%s (%.1fs)\n", final, time.Since(p.start).Seconds())
}

// provisioningSteps prints new lines of the deployment's provisioning log.
// The first call only records what is already there.
func (p *progress) provisioningSteps(ctx context.Context, c *api.Client, endpoint, deployment string) {
	text, err := c.GetLogs(ctx, endpoint, deployment, api.LogsRequest{ContainerType: "storage-initializer", Tail: 200})
	if err != nil {
		p.baseSet = p.baseSet || api.IsNotFound(err) // a new deployment: every line is new
		return
	}
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if line == "" || p.seen[line] {
			continue
		}
		p.seen[line] = true
		if p.baseSet {
			// drop the timestamp and instance id the log carries
			if f := strings.SplitN(line, " ", 3); len(f) == 3 && strings.HasSuffix(f[1], ":") {
				line = f[2]
			}
			p.step(line)
		}
	}
	p.baseSet = true
}
