//go:build !unix

package pyenv

import (
	"context"
	"os/exec"
)

func setProcessGroup(*exec.Cmd) {}

// lockFile is a no-op here: the in-process lock still serialises builds, and
// the final rename keeps concurrent processes from installing a half-built
// environment.
func lockFile(context.Context, string) (func(), error) { return func() {}, nil }
