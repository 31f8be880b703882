package main

import (
	"path/filepath"
	"testing"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/internal/config"
)

// TestDefaultFeaturesFile pins the configuration's default definitions file
// to the BatchFeatures activity's own default and checks that it is the
// project's file, relative to the module root (where the binaries run in
// development).
func TestDefaultFeaturesFile(t *testing.T) {
	t.Parallel()
	file := config.Default().Features.File
	if file != activities.DefaultFeaturesFile {
		t.Errorf("config.Default().Features.File = %q, activities.DefaultFeaturesFile = %q", file, activities.DefaultFeaturesFile)
	}
	if _, err := features.Load(filepath.Join("..", "..", file)); err != nil {
		t.Errorf("the default features.file does not load from the module root: %v", err)
	}
}
