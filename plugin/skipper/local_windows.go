//go:build windows

package skipper

import "os/exec"

// shell runs --command with cmd.exe.
var shell = []string{"cmd", "/C"}

func setProcessGroup(*exec.Cmd) {}

// Windows has no SIGTERM for console processes: stopping is killing.
func terminate(cmd *exec.Cmd) { _ = cmd.Process.Kill() }

func kill(cmd *exec.Cmd) { _ = cmd.Process.Kill() }
