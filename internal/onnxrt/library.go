package onnxrt

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/adaptrec/adaptrec/internal/modroot"
)

// LibraryEnv names the environment variable that holds the path of the ONNX
// Runtime shared library; it overrides the checkout's .tools/bin.
const LibraryEnv = "ADAPTREC_ONNXRUNTIME_LIB"

// LibraryName is the file FindLibrary looks for in the tools directory;
// `make tools` links it to the pinned, checksum-verified release.
const LibraryName = "libonnxruntime.so"

// MinVersion is the oldest ONNX Runtime the binding works with:
// github.com/yalue/onnxruntime_go v1.27.0 calls C API version 24.
const MinVersion = "1.24.0"

// toolsDirEnv mirrors internal/devstack's ToolsDirEnv, which this package
// does not import: devstack supervises the local stack and would pull its
// dependencies into the serving binary.
const toolsDirEnv = "ADAPTREC_TOOLS_DIR"

// MissingLibraryError reports that the ONNX Runtime library was not found.
// Its message names the fix.
type MissingLibraryError struct {
	// Path is the path that was given (configuration or LibraryEnv) and does
	// not exist; empty when none was given and the tools directory was searched.
	Path string
	// Source says where Path came from ("configuration" or LibraryEnv).
	Source string
	// Searched lists the files looked for when no path was given.
	Searched []string
}

// Error implements error.
func (e *MissingLibraryError) Error() string {
	if e.Path != "" {
		return fmt.Sprintf("ONNX Runtime library %s (from %s) does not exist: point %s at libonnxruntime.so %s or newer, or unset it and run `make tools`",
			e.Path, e.Source, LibraryEnv, MinVersion)
	}
	where := "no tools directory (not inside a checkout of " + modroot.ModulePath + " and " + toolsDirEnv + " unset)"
	if len(e.Searched) > 0 {
		where = strings.Join(e.Searched, ", ")
	}
	return fmt.Sprintf("ONNX Runtime library not found at %s: run `make tools` (installs ONNX Runtime into .tools/), or set %s to the path of libonnxruntime.so %s or newer",
		where, LibraryEnv, MinVersion)
}

// FindLibrary returns the absolute path of the ONNX Runtime shared library:
// path when it is not empty (from configuration), else $ADAPTREC_ONNXRUNTIME_LIB
// when set, else LibraryName in $ADAPTREC_TOOLS_DIR or, without that, in
// .tools/bin of the checkout the working directory is in, where `make tools`
// installs it. A given path that does not exist is an error, not a reason to
// look elsewhere. The error is a *MissingLibraryError naming the fix.
func FindLibrary(path string) (string, error) {
	source := "configuration"
	if path == "" {
		path, source = os.Getenv(LibraryEnv), LibraryEnv
	}
	if path != "" {
		abs, err := filepath.Abs(path)
		if err != nil {
			return "", fmt.Errorf("ONNX Runtime library %s (from %s): %w", path, source, err)
		}
		if !isFile(abs) {
			return "", &MissingLibraryError{Path: abs, Source: source}
		}
		return abs, nil
	}
	var searched []string
	if dir := os.Getenv(toolsDirEnv); dir != "" {
		searched = append(searched, filepath.Join(dir, LibraryName))
	} else if root, ok := moduleRoot(); ok {
		searched = append(searched, filepath.Join(root, ".tools", "bin", LibraryName))
	}
	for _, p := range searched {
		if isFile(p) {
			return filepath.Abs(p)
		}
	}
	return "", &MissingLibraryError{Searched: searched}
}

// isFile reports whether p is (or links to) a regular file.
func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

// moduleRoot is the checkout this process runs in, if any.
func moduleRoot() (string, bool) {
	root, err := modroot.Find()
	return root, err == nil
}

// The ONNX Runtime environment is process-wide: the binding keeps it in
// package variables and it is never torn down (sessions may outlive any
// one caller).
var env struct {
	sync.Mutex
	path    string // library loaded; empty until Init succeeds
	version string
}

// Init loads the ONNX Runtime library found by FindLibrary(path) and
// initialises the process-wide environment. Only the first successful call
// does work; later calls return nil, or an error if they name a different
// library than the one loaded. A failed call (library missing, too old) can
// be retried. Load and Inspect call Init themselves.
func Init(path string) error {
	env.Lock()
	defer env.Unlock()
	if env.path != "" {
		if path == "" {
			return nil
		}
		abs, err := filepath.Abs(path)
		if err != nil || abs != env.path {
			return fmt.Errorf("ONNX Runtime already initialised in this process with %s; cannot switch to %s", env.path, path)
		}
		return nil
	}
	lib, err := FindLibrary(path)
	if err != nil {
		return err
	}
	ort.SetSharedLibraryPath(lib)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return fmt.Errorf("initialise ONNX Runtime from %s (need %s or newer; `make tools` installs one): %w", lib, MinVersion, err)
	}
	version := ort.GetVersion()
	if !versionAtLeast(version, MinVersion) {
		// Unreachable in practice (initialisation fails first on an old C API),
		// but a clear message beats a crash in a later call.
		_ = ort.DestroyEnvironment()
		return fmt.Errorf("ONNX Runtime %s at %s is older than %s: run `make tools` or point %s at a newer library", version, lib, MinVersion, LibraryEnv)
	}
	env.path, env.version = lib, version
	return nil
}

// Version returns the loaded ONNX Runtime's version, or "" before Init.
func Version() string {
	env.Lock()
	defer env.Unlock()
	return env.version
}

// LibraryPath returns the path of the loaded library, or "" before Init.
func LibraryPath() string {
	env.Lock()
	defer env.Unlock()
	return env.path
}

// versionAtLeast compares dotted versions by their numeric prefixes
// ("1.30.0" >= "1.24.0"; a suffix such as "-dev" is ignored).
func versionAtLeast(have, want string) bool {
	h, w := strings.Split(have, "."), strings.Split(want, ".")
	for i := range w {
		wi, hi := leadingInt(w[i]), 0
		if i < len(h) {
			hi = leadingInt(h[i])
		}
		if hi != wi {
			return hi > wi
		}
	}
	return true
}

func leadingInt(s string) int {
	end := 0
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	n, _ := strconv.Atoi(s[:end])
	return n
}
