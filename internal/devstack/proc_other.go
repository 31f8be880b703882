//go:build unix && !linux

package devstack

import "syscall"

// sysProcAttr puts each component in its own process group, so a terminal's
// Ctrl-C reaches only the supervisor and a stop signal reaches every process
// the component started.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// listensOn cannot tell who owns a socket without Linux's /proc; callers
// trust the protocol check alone.
func listensOn(pid, port int) (owned, known bool) { return false, false }
