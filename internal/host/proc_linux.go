package host

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts the worker in its own process group (so stopping it also
// stops what the script started) and asks the kernel to kill it if the host
// dies, so a kill -9 of the host leaves no orphaned workers.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup sends sig to the worker's process group.
func killGroup(pid int, sig syscall.Signal) {
	_ = syscall.Kill(-pid, sig)
}
