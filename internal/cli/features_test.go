package cli

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/adaptrec/adaptrec/features"
)

// runFeatures runs "adaptrec features ..." and returns its standard output.
func runFeatures(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := NewRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"features"}, args...))
	err := root.ExecuteContext(t.Context())
	return out.String(), err
}

func TestFeaturesValidateProjectFile(t *testing.T) {
	t.Parallel()
	file := filepath.Join("..", "..", defaultFeaturesFile)
	s, err := features.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	out, err := runFeatures(t, "validate", "--file", file)
	if err != nil {
		t.Fatalf("validate: %v", err)
	}
	var users int
	for _, f := range s.Entity(features.EntityUser) {
		if f.Lane == features.LaneBatch {
			users++
		}
	}
	want := []*regexp.Regexp{
		regexp.MustCompile(regexp.QuoteMeta(file) + `: \d+ features, valid`),
		regexp.MustCompile(`schema hash: ` + regexp.QuoteMeta(s.SchemaHash()) + "\n"),
		regexp.MustCompile(`entity\s+batch\s+nearline\s+request\s+total`),
		regexp.MustCompile(`\n\s*user\s+` + regexp.QuoteMeta(dash(users)) + `\s+\d+\s+-\s+\d+\n`),
		regexp.MustCompile(`\n\s*request\s+-\s+-\s+\d+\s+\d+\n`),
		regexp.MustCompile(`per item row: \d+ features, \d+ float32 values`),
		regexp.MustCompile(`groups: user_batch \(\d+\), .*item_embedding \(1\)`),
	}
	for _, re := range want {
		if !re.MatchString(out) {
			t.Errorf("output does not match %s:\n%s", re, out)
		}
	}
}

func TestFeaturesValidateReportsProblems(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "features.yaml")
	bad := strings.Join([]string{
		"version: 1",
		"features:",
		"  - name: item_ctr",
		"    entity: item",
		"    type: float",
		"    lane: nearline",
		"    default: high",
		"    owner: ranking",
		"    description: CTR.",
		"  - name: item_ctr",
		"    entity: thing",
		"    type: float",
		"    lane: batch",
		"    default: 0",
		"    freshness_sla: 26h",
		"    owner: ranking",
		"    description: CTR.",
	}, "\n")
	if err := os.WriteFile(file, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"bad definitions", []string{"validate", "--file", file}, []string{
			file + ": 4 problems in feature definitions:",
			file + `:3: item_ctr: ttl: required for nearline features`,
			file + `:7: item_ctr: default: want a number, got "high" for a float`,
			file + `:10: item_ctr: name repeated (first defined at line 3)`,
			file + `:11: item_ctr: entity: unknown entity "thing"`,
		}},
		{"missing file", []string{"validate", "--file", filepath.Join(dir, "none.yaml")}, []string{"read feature definitions:", "none.yaml"}},
		{"stray argument", []string{"validate", "extra"}, []string{`unknown command "extra"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, err := runFeatures(t, tt.args...)
			if err == nil {
				t.Fatalf("validate succeeded:\n%s", out)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error:\n%v\nwant it to contain %q", err, w)
				}
			}
			var ve *features.ValidationError
			if tt.name == "bad definitions" && !errors.As(err, &ve) {
				t.Errorf("error %T is not a *features.ValidationError", err)
			}
		})
	}
}

// TestFeaturesFileFromConfig: without --file, the features commands read
// the definitions the config's features.file names.
func TestFeaturesFileFromConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join("..", "..", defaultFeaturesFile))
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "defs.yaml")
	if err := os.WriteFile(file, src, 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "adaptrec.yaml")
	if err := os.WriteFile(cfgPath, []byte("features:\n  file: "+file+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, t.Context(), cfgPath, "features", "validate")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, file+": ") {
		t.Errorf("validate did not read features.file %s:\n%s", file, out)
	}
}
