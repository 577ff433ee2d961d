//go:build !windows

package skipper

import (
	"os/exec"
	"syscall"
)

// shell runs --command, as a container's `sh -c` would.
var shell = []string{"/bin/sh", "-c"}

// setProcessGroup gives the process its own group: Ctrl-C in the terminal reaches only
// kubectl-skipper, which then stops skipper-poll before the function, and a signal to the
// group also reaches what the process started (gunicorn's workers, the --command's children).
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

func terminate(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }

func kill(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
