package testenv_test

import (
	"bufio"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/internal/testenv"
)

// TestBinaryBuildsOnceAndBrokerStopsOnSignal builds the broker from source,
// runs it the way the Makefile's binary would be run, and checks it reports
// ready and exits cleanly on SIGINT (which a backgrounded Go program ignores
// without a handler).
func TestBinaryBuildsOnceAndBrokerStopsOnSignal(t *testing.T) {
	t.Parallel()
	var wg sync.WaitGroup
	paths := make([]string, 3)
	for i := range paths {
		wg.Go(func() { paths[i] = testenv.Binary(t, "./devtools/kafkabroker") })
	}
	wg.Wait()
	if paths[0] != paths[1] || paths[1] != paths[2] {
		t.Fatalf("Binary built the same package to different paths: %v", paths)
	}

	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(paths[0], "--addr", "127.0.0.1:0", "--data-dir", t.TempDir())
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatalf("start broker: %v", err)
			}
			lines := bufio.NewScanner(stdout)
			if !lines.Scan() || !strings.HasPrefix(lines.Text(), "kafkabroker: ready on 127.0.0.1:") {
				cmd.Process.Kill()
				t.Fatalf("first line %q, want the ready line", lines.Text())
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			var rest []string
			for lines.Scan() {
				rest = append(rest, lines.Text())
			}
			if err := cmd.Wait(); err != nil {
				t.Fatalf("broker exit after %s: %v (output %q)", sig, err, rest)
			}
			if len(rest) == 0 || rest[len(rest)-1] != "kafkabroker: stopped" {
				t.Fatalf("output after %s = %q, want it to end with the stopped line", sig, rest)
			}
		})
	}
}

func TestBinaryRejectsNonModulePaths(t *testing.T) {
	t.Parallel()
	ft := &fatalRecorder{TB: t}
	runFatal(ft, func() { testenv.Binary(ft, "github.com/adaptrec/adaptrec/cmd/adaptrec") })
	if !strings.Contains(ft.msg, "relative to the module root") {
		t.Fatalf("Binary with an import path: fatal %q", ft.msg)
	}
}

func TestEventually(t *testing.T) {
	t.Parallel()
	calls := 0
	testenv.Eventually(t, 5*time.Second, func() error {
		calls++
		if calls < 4 {
			return fmt.Errorf("call %d", calls)
		}
		return nil
	})
	if calls != 4 {
		t.Fatalf("cond called %d times, want 4", calls)
	}

	ft := &fatalRecorder{TB: t}
	start := time.Now()
	runFatal(ft, func() {
		testenv.Eventually(ft, 100*time.Millisecond, func() error { return errors.New("never") })
	})
	if elapsed := time.Since(start); elapsed < 100*time.Millisecond || elapsed > 2*time.Second {
		t.Fatalf("Eventually gave up after %s, want about 100ms", elapsed)
	}
	if !strings.Contains(ft.msg, "never") || !strings.Contains(ft.msg, "100ms") {
		t.Fatalf("failure message %q should name the timeout and the last error", ft.msg)
	}
}

// fatalRecorder captures Fatalf instead of failing the real test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (f *fatalRecorder) Fatal(args ...any) {
	f.msg = fmt.Sprint(args...)
	runtime.Goexit()
}

// runFatal runs fn in its own goroutine, so the recorder's Goexit ends only
// fn, and fails the test if fn returned without calling Fatal.
func runFatal(f *fatalRecorder, fn func()) {
	f.TB.Helper()
	done := make(chan bool)
	go func() {
		returned := false
		defer func() { done <- returned }()
		fn()
		returned = true
	}()
	if <-done {
		f.TB.Fatal("expected a fatal failure, got none")
	}
}
