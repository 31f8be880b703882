package onnxrt

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptrec/adaptrec/internal/modroot"
)

// These tests change the environment, so none runs in parallel.

func TestFindLibrary(t *testing.T) {
	dir := t.TempDir()
	lib := filepath.Join(dir, LibraryName)
	if err := os.WriteFile(lib, []byte("not really"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	tests := []struct {
		name     string
		explicit string
		env      string // LibraryEnv
		tools    string // ADAPTREC_TOOLS_DIR
		want     string
		wantErr  []string
	}{
		{name: "explicit", explicit: lib, env: "/nope", want: lib},
		{name: "explicit missing", explicit: filepath.Join(empty, "x.so"), tools: dir,
			wantErr: []string{filepath.Join(empty, "x.so"), "from configuration", "does not exist", LibraryEnv, "make tools"}},
		{name: "env", env: lib, tools: empty, want: lib},
		{name: "env missing", env: "/nope/lib.so", tools: dir,
			wantErr: []string{"/nope/lib.so", "from " + LibraryEnv, "make tools"}},
		{name: "tools dir", tools: dir, want: lib},
		{name: "tools dir empty", tools: empty,
			wantErr: []string{filepath.Join(empty, LibraryName), "run `make tools`", LibraryEnv}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(LibraryEnv, tt.env)
			t.Setenv(toolsDirEnv, tt.tools)
			got, err := FindLibrary(tt.explicit)
			if tt.wantErr == nil {
				if err != nil || got != tt.want {
					t.Fatalf("FindLibrary = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			var missing *MissingLibraryError
			if !errors.As(err, &missing) {
				t.Fatalf("FindLibrary = %q, %v; want a *MissingLibraryError", got, err)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

// TestFindLibraryInCheckout checks the default: .tools/bin of the checkout
// the working directory is in, where `make tools` links the library.
func TestFindLibraryInCheckout(t *testing.T) {
	t.Setenv(LibraryEnv, "")
	t.Setenv(toolsDirEnv, "")
	root, ok := moduleRoot()
	if !ok {
		t.Fatal("the test does not run inside a checkout of " + modroot.ModulePath)
	}
	want := filepath.Join(root, ".tools", "bin", LibraryName)
	got, err := FindLibrary("")
	if err != nil {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
		return
	}
	if got != want {
		t.Errorf("FindLibrary = %q, want %q", got, want)
	}
}

func TestVersionAtLeast(t *testing.T) {
	t.Parallel()
	tests := []struct {
		have string
		want bool
	}{
		{"1.24.0", true}, {"1.30.0", true}, {"2.0.0", true}, {"1.24", true},
		{"1.23.2", false}, {"1.9.0", false}, {"0.99.0", false}, {"1.25.0-dev", true},
	}
	for _, tt := range tests {
		if got := versionAtLeast(tt.have, MinVersion); got != tt.want {
			t.Errorf("versionAtLeast(%q, %q) = %v, want %v", tt.have, MinVersion, got, tt.want)
		}
	}
}

func TestCheckScorer(t *testing.T) {
	t.Parallel()
	tensor := func(name, et string, shape ...int64) TensorInfo {
		return TensorInfo{Name: name, Kind: "tensor", ElemType: et, Shape: shape}
	}
	in := tensor("features", "float32", -1, 12)
	tests := []struct {
		name      string
		ins, outs []TensorInfo
		width     int
		wantErr   string
	}{
		{"[N,1] output", []TensorInfo{in}, []TensorInfo{tensor("score", "float32", -1, 1)}, 12, ""},
		{"[N] output", []TensorInfo{in}, []TensorInfo{tensor("score", "float32", -1)}, 12, ""},
		{"no inputs", nil, []TensorInfo{tensor("score", "float32", -1)}, 0, `has 0 inputs [], want one "features"`},
		{"dynamic width", []TensorInfo{tensor("features", "float32", -1, -1)}, []TensorInfo{tensor("score", "float32", -1)}, 0, "fixed width"},
		{"rank 3", []TensorInfo{tensor("features", "float32", -1, 2, 3)}, []TensorInfo{tensor("score", "float32", -1)}, 0, "want shape [N, width]"},
		{"wide output", []TensorInfo{in}, []TensorInfo{tensor("score", "float32", -1, 2)}, 0, "want shape [N, 1] or [N]"},
		{"float64 output", []TensorInfo{in}, []TensorInfo{tensor("score", "float64", -1, 1)}, 0, "not a float32 tensor"},
		{"sequence output", []TensorInfo{in}, []TensorInfo{{Name: "score", Kind: "sequence"}}, 0, "score (sequence) is not a float32 tensor"},
		{"both wrong", []TensorInfo{tensor("x", "float32", -1, 3)}, []TensorInfo{tensor("y", "float32", -1)}, 0, `input is "x", want "features"; output is "y", want "score"`},
	}
	for _, tt := range tests {
		width, err := Info{Inputs: tt.ins, Outputs: tt.outs}.CheckScorer(DefaultInput, DefaultOutput)
		if tt.wantErr == "" {
			if err != nil || width != tt.width {
				t.Errorf("%s: CheckScorer = %d, %v; want %d", tt.name, width, err, tt.width)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: CheckScorer error %v, want one containing %q", tt.name, err, tt.wantErr)
		}
	}
}
