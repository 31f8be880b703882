package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// service is one adaptrec binary (server, worker, consumers) run as a child
// process by the demo, in its own process group, logging to a file.
type service struct {
	name string
	// ready is the binary's /readyz URL.
	ready string
	log   string
	cmd   *exec.Cmd
	done  chan struct{}
	err   error
}

// siblingBinary finds an adaptrec binary next to the running CLI (make build
// puts all four in bin/).
func siblingBinary(name string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("locate %s: %w", name, err)
	}
	path := filepath.Join(filepath.Dir(self), name)
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("%s not found next to %s: run `make build`", name, self)
	}
	return path, nil
}

// startService starts bin/<name> with the environment env appended, logging
// to logDir/<name>.log.
func startService(name, httpAddr, logDir string, env []string) (*service, error) {
	path, err := siblingBinary(name)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("log dir: %w", err)
	}
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", logPath, err)
	}
	cmd := exec.Command(path)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &service{name: name, ready: "http://" + httpAddr + "/readyz", log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		f.Close()
		close(s.done)
	}()
	return s, nil
}

// waitReady polls /readyz until it answers 200, the process exits or ctx ends.
func (s *service) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.ready, nil)
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = string(body)
		} else {
			last = err.Error()
		}
		select {
		case <-s.done:
			return fmt.Errorf("%s exited during start (%v); see %s", s.name, s.err, s.log)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s (%s); see %s", s.name, timeout, last, s.log)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM to the process group and waits, killing it after grace.
func (s *service) stop(grace time.Duration) error {
	select {
	case <-s.done:
		return nil
	default:
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(grace):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
		return fmt.Errorf("%s did not stop within %s and was killed", s.name, grace)
	}
	var exit *exec.ExitError
	if s.err != nil && !errors.As(s.err, &exit) {
		return fmt.Errorf("%s: %w", s.name, s.err)
	}
	if exit != nil && exit.ExitCode() != 0 {
		return fmt.Errorf("%s exited with status %d; see %s", s.name, exit.ExitCode(), s.log)
	}
	return nil
}
