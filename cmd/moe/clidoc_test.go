package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

var update = flag.Bool("update", false, "rewrite docs/cli.md")

// cliDoc renders every visible command's help as markdown.
func cliDoc() string {
	var root *cobra.Command
	a := &app{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard}
	root = &cobra.Command{Use: "moe"}
	root.PersistentFlags().StringVar(&a.dataDir, "data-dir", "", "moe's data folder (env MOE_HOME; default ~/.local/share/moe)")
	root.AddCommand(commands(a)...)
	var b bytes.Buffer
	b.WriteString("# moe command reference\n\nGenerated from the commands themselves (`go test ./cmd/moe -run TestCLIDoc -update`).\n")
	b.WriteString("Every client command finds the server through `--data-dir` or `MOE_HOME` and talks to its API over HTTPS with the admin credential.\n")
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			return
		}
		if c.Runnable() {
			fmt.Fprintf(&b, "\n## %s\n\n%s\n\n```\n%s```\n", c.CommandPath(), c.Short, strings.ReplaceAll(c.UsageString(), os.Getenv("HOME"), "~"))
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
	return b.String()
}

func TestCLIDoc(t *testing.T) {
	got := cliDoc()
	path := filepath.Join("..", "..", "docs", "cli.md")
	if *update {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil || string(want) != got {
		t.Errorf("docs/cli.md is out of date: run go test ./cmd/moe -run TestCLIDoc -update")
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"online-endpoint", "show"}, 2, "-n/--name is required"},
		{[]string{"online-endpoint", "create"}, 2, "give -f FILE or -n NAME"},
		{[]string{"online-deployment", "create"}, 2, "-f/--file is required"},
		{[]string{"online-endpoint", "update", "-n", "x", "--traffic", "blue=ninety"}, 2, "is not deployment=percent"},
		{[]string{"online-endpoint", "show", "-n", "x", "--data-dir", "/nonexistent/moe"}, 2, "no moe server found"},
		{[]string{"online-endpoint", "delete", "-n", "x"}, 2, "not confirmed"},
	} {
		var out, errOut bytes.Buffer
		err := run(context.Background(), tc.args, strings.NewReader("n\n"), &out, &errOut)
		code := exitCode(err, &errOut)
		if code != tc.code || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("moe %v: exit %d, stderr %q; want exit %d containing %q", tc.args, code, errOut.String(), tc.code, tc.want)
		}
	}
}
