package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/adaptrec/adaptrec/internal/devstack"
)

// EnvDatasets names the folder holding the shared datasets
// (ml-100k/...); by default the datasets/ folder of the shared/ folder
// next to the repository (../shared/datasets from the module root), where
// the project's machines keep them. Their licences forbid copying them
// into the repository.
const EnvDatasets = "ADAPTREC_DATASETS"

// Dataset returns the folder of a shared dataset (e.g. "ml-100k") after
// checking that it holds files (e.g. "u.data"). A missing dataset fails
// the test with the fix named, as a missing tool does: integration tests
// never skip silently.
func Dataset(t testing.TB, name string, files ...string) string {
	t.Helper()
	dir, err := datasetDir(name)
	if err == nil {
		for _, f := range files {
			if _, serr := os.Stat(filepath.Join(dir, f)); serr != nil {
				err = serr
				break
			}
		}
	}
	if err != nil {
		t.Fatalf("dataset %s is missing (%v): put it at ../shared/datasets/%s next to the repository, or set %s to the folder that holds %s/",
			name, err, name, EnvDatasets, name)
	}
	return dir
}

func datasetDir(name string) (string, error) {
	if d := os.Getenv(EnvDatasets); d != "" {
		return filepath.Join(d, name), nil
	}
	root, err := devstack.ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("find the module root: %w", err)
	}
	return filepath.Join(filepath.Dir(root), "shared", "datasets", name), nil
}
