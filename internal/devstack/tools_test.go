package devstack

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindTool(t *testing.T) {
	toolsDir := t.TempDir()
	pathDir := t.TempDir()
	writeExec(t, filepath.Join(toolsDir, "both"))
	writeExec(t, filepath.Join(pathDir, "both"))
	writeExec(t, filepath.Join(pathDir, "onpath"))
	if err := os.WriteFile(filepath.Join(toolsDir, "notexec"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(ToolsDirEnv, toolsDir)
	t.Setenv("PATH", pathDir)

	for _, tc := range []struct {
		name, want, errHas string
	}{
		{name: "both", want: filepath.Join(toolsDir, "both")},
		{name: "onpath", want: filepath.Join(pathDir, "onpath")},
		{name: "notexec", errHas: "notexec not found in " + toolsDir + " or $PATH: run `make tools`"},
		{name: "temporal", errHas: "temporal not found in " + toolsDir + " or $PATH: run `make tools`"},
		{name: "redis-server", errHas: "redis-server not found: run `make tools` (installs Debian's redis-server) or `apt-get install redis-server`"},
	} {
		got, err := FindTool(tc.name)
		if tc.errHas != "" {
			var missing *MissingToolError
			if !errors.As(err, &missing) || err.Error() != tc.errHas {
				t.Errorf("FindTool(%q) = %q, %v; want error %q", tc.name, got, err, tc.errHas)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("FindTool(%q) = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
}

func TestFindToolDefaultsToModuleToolsDir(t *testing.T) {
	t.Setenv(ToolsDirEnv, "")
	t.Setenv("PATH", t.TempDir())
	_, err := FindTool("no-such-tool")
	root, rootErr := ModuleRoot()
	if rootErr != nil {
		t.Fatalf("ModuleRoot from the package directory: %v", rootErr)
	}
	if want := filepath.Join(root, ".tools", "bin"); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("FindTool error %v should name %s", err, want)
	}
}

func writeExec(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}
