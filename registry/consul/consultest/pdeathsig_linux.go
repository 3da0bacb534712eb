package consultest

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal kills the agent with the test binary, so that a
// test that times out or panics leaves no Consul running.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
