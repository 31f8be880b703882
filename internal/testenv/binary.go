package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/internal/devstack"
)

// binDirPrefix names the per-process directories that hold built binaries;
// the pid suffix lets a later process remove directories of dead ones.
const binDirPrefix = "adaptrec-testbin-"

var bins struct {
	sync.Mutex
	dir    string
	dirErr error
	dirSet bool
	builds map[string]*build
}

type build struct {
	once sync.Once
	path string
	err  error
}

// Binary builds the main package pkg of this module (a path relative to the
// module root, e.g. "./cmd/consumers") once per test process and returns the
// executable's path. Concurrent callers for the same package wait for the
// one build. A build failure fails the test with the compiler's output.
func Binary(t testing.TB, pkg string) string {
	t.Helper()
	bins.Lock()
	if bins.builds == nil {
		bins.builds = make(map[string]*build)
	}
	b := bins.builds[pkg]
	if b == nil {
		b = &build{}
		bins.builds[pkg] = b
	}
	bins.Unlock()
	b.once.Do(func() { b.path, b.err = buildBinary(pkg) })
	if b.err != nil {
		t.Fatalf("testenv: %v", b.err)
	}
	return b.path
}

func buildBinary(pkg string) (string, error) {
	if !strings.HasPrefix(pkg, "./") {
		return "", fmt.Errorf("build %s: the package must be a path relative to the module root, like ./cmd/adaptrec", pkg)
	}
	root, err := devstack.ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, err)
	}
	dir, err := binDir()
	if err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, err)
	}
	out := filepath.Join(dir, strings.ReplaceAll(strings.Trim(filepath.Clean(pkg), "./"), "/", "_"))
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	if output, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, output)
	}
	if d := time.Since(start); d > 5*time.Second {
		fmt.Fprintf(os.Stderr, "testenv: built %s in %s\n", pkg, d.Round(100*time.Millisecond))
	}
	return out, nil
}

// binDir returns this process's directory for built binaries, creating it
// on first use and removing directories left by test processes that exited.
func binDir() (string, error) {
	bins.Lock()
	defer bins.Unlock()
	if bins.dirSet {
		return bins.dir, bins.dirErr
	}
	bins.dirSet = true
	removeStaleBinDirs()
	bins.dir, bins.dirErr = os.MkdirTemp("", binDirPrefix+strconv.Itoa(os.Getpid())+"-")
	return bins.dir, bins.dirErr
}

// removeStaleBinDirs removes binary directories whose process is gone.
func removeStaleBinDirs() {
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), binDirPrefix+"*"))
	for _, m := range matches {
		rest := strings.TrimPrefix(filepath.Base(m), binDirPrefix)
		pidStr, _, ok := strings.Cut(rest, "-")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		// Signal 0 checks existence; EPERM means alive under another user.
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			os.RemoveAll(m)
		}
	}
}
