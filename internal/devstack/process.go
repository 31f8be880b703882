package devstack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// process is one running component: a child process leading its own process
// group, its output appended to a log file.
type process struct {
	comp    Component
	cmd     *exec.Cmd
	logPath string
	// logStart is the log file's size before this run wrote to it, so error
	// reports quote only this run's output.
	logStart int64
	done     chan struct{} // closed once the child has exited and been reaped
	waitErr  error         // cmd.Wait's result; read only after done is closed
	stopping atomic.Bool   // set before any signal we send, so exits we cause are not crashes
	ready    atomic.Bool   // set once the component answered; later exits are crashes unless stopping
}

// startProcess starts argv as comp with its output appended to logPath.
// onExit runs (in its own goroutine) once the child exits.
func startProcess(comp Component, argv []string, dir, logPath string, onExit func(*process)) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", comp, err)
	}
	defer logFile.Close() // the child holds its own descriptor
	fi, err := logFile.Stat()
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", comp, err)
	}
	fmt.Fprintf(logFile, "\n==== %s adaptrec devstack: %s\n", time.Now().Format(time.RFC3339), strings.Join(quoteArgs(argv), " "))

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", comp, argv[0], err)
	}
	p := &process{comp: comp, cmd: cmd, logPath: logPath, logStart: fi.Size(), done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		// Reap anything the component left behind in its group.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		close(p.done)
		if onExit != nil {
			onExit(p)
		}
	}()
	return p, nil
}

// exited reports whether the child has exited.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group and waits for the child to exit,
// escalating to SIGKILL after grace or once ctx is done. Stopping an exited
// process is a no-op.
func (p *process) stop(ctx context.Context, grace time.Duration) error {
	p.stopping.Store(true)
	if p.exited() {
		return nil
	}
	pgid := p.cmd.Process.Pid
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop %s: SIGTERM: %w", p.comp, err)
	}
	// A component a test paused with SIGSTOP would otherwise sit on the
	// SIGTERM until it is killed.
	_ = syscall.Kill(-pgid, syscall.SIGCONT)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
	case <-ctx.Done():
	}
	return p.kill()
}

// kill sends SIGKILL to the process group and waits until the child is reaped.
func (p *process) kill() error {
	p.stopping.Store(true)
	if p.exited() {
		return nil
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s: %w", p.comp, err)
	}
	<-p.done // SIGKILL cannot be ignored; the wait is short
	return nil
}

// exitError describes how the child ended, with the last lines of its log.
func (p *process) exitError(during string) error {
	status := p.comp.String() + " exited " + during
	if p.waitErr != nil {
		status += " (" + p.waitErr.Error() + ")"
	}
	tail, err := p.tail(15)
	if err != nil {
		return fmt.Errorf("%s; log %s unreadable: %w", status, p.logPath, err)
	}
	return fmt.Errorf("%s; last lines of %s:\n%s", status, p.logPath, indent(tail))
}

// tail returns up to n last lines this run wrote to the log.
func (p *process) tail(n int) (string, error) {
	return tailFile(p.logPath, p.logStart, n)
}

// tailFile returns up to n last lines of the file at path, reading from
// offset from on and at most the last 64 KiB.
func tailFile(path string, from int64, n int) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if start := fi.Size() - 64<<10; start > from {
		from = start
	}
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return "", err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return "", err
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n"))), nil
}

func indent(s string) string { return "    " + strings.ReplaceAll(s, "\n", "\n    ") }

// quoteArgs quotes the arguments a shell would need quoted, for the log header.
func quoteArgs(argv []string) []string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\"'$\\") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		out[i] = a
	}
	return out
}
