package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/adaptrec/adaptrec/internal/testenv"
)

// runEvalCmd runs "adaptrec eval ...". It builds the command alone, not
// the root, whose flags write package variables that parallel tests share.
func runEvalCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := newEvalCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err = cmd.ExecuteContext(t.Context())
	return out.String(), errOut.String(), err
}

// TestEvalMovieLensJSON runs the whole protocol on the shared MovieLens
// 100K copy and checks the JSON interface benchmarks read.
func TestEvalMovieLensJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("trains on MovieLens 100K; run without -short")
	}
	t.Parallel()
	dir := testenv.Dataset(t, "ml-100k", "u.data", "u.item")
	stdout, stderr, err := runEvalCmd(t, "--dataset", dir, "--json",
		"--features", filepath.Join("..", "..", defaultFeaturesFile), "--k", "5")
	if err != nil {
		t.Fatalf("eval: %v\n%s", err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	last := lines[len(lines)-1]
	var got map[string]any
	if err := json.Unmarshal([]byte(last), &got); err != nil {
		t.Fatalf("last line is not a JSON object: %v\n%s", err, last)
	}
	keys := []string{"ndcg@10", "ndcg@20", "recall@10", "recall@20", "coverage"}
	number := func(obj map[string]any, where, k string) float64 {
		v, ok := obj[k].(float64)
		if !ok {
			t.Errorf("%s has no number %q", where, k)
		}
		return v
	}
	for _, k := range append(keys, "train_seconds") {
		number(got, "report", k)
	}
	if v := number(got, "report", "train_seconds"); !(v > 0) {
		t.Errorf("train_seconds = %v, want > 0", v)
	}
	for _, nested := range []string{"baseline_popular", "baseline_cooccurrence", "retrieval_only"} {
		obj, ok := got[nested].(map[string]any)
		if !ok {
			t.Fatalf("report has no object %q: %s", nested, last)
		}
		for _, k := range keys {
			if v := number(obj, nested, k); !(v > 0 && v <= 1) {
				t.Errorf("%s.%s = %v, want a share in (0, 1]", nested, k, v)
			}
		}
		if at, ok := obj["at_k"].(map[string]any); !ok || at["ndcg@5"] == nil || at["recall@5"] == nil {
			t.Errorf("%s has no ndcg@5 and recall@5 for --k 5: %v", nested, obj["at_k"])
		}
	}
	rk, ok := got["ranker"].(map[string]any)
	if !ok {
		t.Fatalf("report has no ranker object: %s", last)
	}
	if auc := number(rk, "ranker", "auc"); !(auc > 0.5 && auc <= 1) {
		t.Errorf("ranker AUC %v, want better than chance", auc)
	}
	if ll := number(rk, "ranker", "log_loss"); !(ll > 0) {
		t.Errorf("ranker log loss %v", ll)
	}
	proto, ok := got["protocol"].(map[string]any)
	if !ok || !strings.Contains(proto["description"].(string), "time split") {
		t.Errorf("protocol description missing: %v", got["protocol"])
	}
	for _, want := range []string{"s split at", "s ranker: training on", "most popular", "NDCG@10"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

func TestEvalFlagErrors(t *testing.T) {
	t.Parallel()
	empty := t.TempDir()
	missing := filepath.Join(t.TempDir(), "no-such-ml-100k")
	file := filepath.Join(t.TempDir(), "u.data")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"no dataset", nil, []string{"--dataset is required", "u.data and u.item"}},
		{"missing folder", []string{"--dataset", missing}, []string{missing, "is not a folder", "u.data and u.item"}},
		{"a file", []string{"--dataset", file}, []string{file, "is not a folder"}},
		{"empty folder", []string{"--dataset", empty}, []string{empty + " has no u.data", empty + " has no u.item"}},
		{"bad values", []string{"--dataset", empty, "--k", "0", "--validation", "1", "--candidates", "0"},
			[]string{"--k 0", "--validation must be in [0, 1), got 1", "--candidates must be at least 1, got 0"}},
		{"bad features file", []string{"--dataset", empty, "--features", "no/such/features.yaml"}, []string{"has no u.data"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := runEvalCmd(t, tt.args...)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

func TestEvalMissingFeaturesFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, f := range evalDatasetFiles {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err := runEvalCmd(t, "--dataset", dir, "--features", "no/such/features.yaml")
	if err == nil || !strings.Contains(err.Error(), "no/such/features.yaml") || !strings.Contains(err.Error(), "--no-ranker") {
		t.Fatalf("err = %v, want one naming the file and --no-ranker", err)
	}
}

func TestEvalHelp(t *testing.T) {
	t.Parallel()
	stdout, _, err := runEvalCmd(t, "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--dataset", "--json", "--seed", "--k", "--features", "--no-ranker", "--validation"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("eval --help lacks %s", want)
		}
	}
}
