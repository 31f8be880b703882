// Package modroot finds the checkout of this repository the process runs
// in, where `make tools` put the pinned tools and the ONNX Runtime library.
// It is its own package so that the serving binary can look for the
// library without importing internal/devstack, which supervises the local
// stack.
package modroot

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ModulePath is the import path of this repository's module; Find looks
// for the go.mod that declares it.
const ModulePath = "github.com/adaptrec/adaptrec"

// ErrNotFound is returned by Find outside a checkout of ModulePath.
var ErrNotFound = errors.New("not inside a checkout of " + ModulePath)

// Find walks up from the working directory to the directory whose go.mod
// declares ModulePath.
func Find() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find module root: %w", err)
	}
	for {
		if declaresModule(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", ErrNotFound
		}
		dir = parent
	}
}

// declaresModule reports whether the go.mod at path declares ModulePath.
func declaresModule(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "module"); ok && rest != "" && (rest[0] == ' ' || rest[0] == '\t') {
			return strings.Trim(strings.TrimSpace(rest), `"`) == ModulePath
		}
	}
	return false
}
