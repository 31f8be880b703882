package devstack

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/adaptrec/adaptrec/internal/modroot"
)

// ModulePath is the import path of this repository's module; ModuleRoot looks
// for the go.mod that declares it.
const ModulePath = modroot.ModulePath

// ToolsDirEnv names the environment variable that overrides where FindTool
// looks first (by default <module root>/.tools/bin, filled by `make tools`).
const ToolsDirEnv = "ADAPTREC_TOOLS_DIR"

// ErrNoModuleRoot is returned by ModuleRoot outside a checkout of ModulePath.
var ErrNoModuleRoot = modroot.ErrNotFound

// MissingToolError reports a program FindTool could not find. Its message
// names the tool and the command that installs it.
type MissingToolError struct {
	// Tool is the executable name, e.g. "temporal".
	Tool string
	// Searched lists the directories looked in before $PATH.
	Searched []string
}

// Error implements error.
func (e *MissingToolError) Error() string {
	if e.Tool == "redis-server" {
		return "redis-server not found: run `make tools` (installs Debian's redis-server) or `apt-get install redis-server`"
	}
	where := "$PATH"
	if len(e.Searched) > 0 {
		where = strings.Join(e.Searched, ", ") + " or $PATH"
	}
	return fmt.Sprintf("%s not found in %s: run `make tools`", e.Tool, where)
}

// FindTool returns the path of the executable name. It looks in
// $ADAPTREC_TOOLS_DIR when that is set, otherwise in <module root>/.tools/bin
// (where `make tools` installs pinned versions), and then on $PATH. A tool
// found nowhere yields a *MissingToolError that says how to install it.
func FindTool(name string) (string, error) {
	var dirs []string
	if dir := os.Getenv(ToolsDirEnv); dir != "" {
		dirs = append(dirs, dir)
	} else if root, err := ModuleRoot(); err == nil {
		dirs = append(dirs, filepath.Join(root, ".tools", "bin"))
	}
	for _, dir := range dirs {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	return "", &MissingToolError{Tool: name, Searched: dirs}
}

// ModuleRoot walks up from the working directory to the directory whose
// go.mod declares ModulePath (modroot.Find).
func ModuleRoot() (string, error) { return modroot.Find() }
