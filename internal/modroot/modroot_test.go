package modroot

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFindFromAPackageDirectory(t *testing.T) {
	root, err := Find()
	if err != nil {
		t.Fatalf("Find from the package directory: %v", err)
	}
	if !declaresModule(filepath.Join(root, "go.mod")) {
		t.Fatalf("%s/go.mod does not declare %s", root, ModulePath)
	}
	if _, err := os.Stat(filepath.Join(root, "internal", "modroot", "modroot.go")); err != nil {
		t.Fatalf("root %s is not this checkout: %v", root, err)
	}
}

func TestFindOutsideACheckout(t *testing.T) {
	t.Chdir(t.TempDir())
	if _, err := Find(); err != ErrNotFound {
		t.Fatalf("Find outside a checkout: %v, want ErrNotFound", err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module example.com/other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	if _, err := Find(); err != ErrNotFound {
		t.Fatalf("Find in another module: %v, want ErrNotFound", err)
	}
}
