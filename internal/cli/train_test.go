package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/testenv"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/sim"
	"github.com/adaptrec/adaptrec/trainer/job"
)

// cliMainEnv makes the test binary run the adaptrec command line with its
// arguments (a child process of a test; not an ADAPTREC_ variable, which
// the configuration would refuse).
const cliMainEnv = "CLITEST_RUN_ADAPTREC"

func TestMain(m *testing.M) {
	if os.Getenv(cliMainEnv) != "" {
		os.Exit(Execute(context.Background()))
	}
	os.Exit(m.Run())
}

func TestTrainRejectsBadFlags(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"--training-set, or --from and --to to build one, is required"}},
		{[]string{"--training-set", "ts", "--from", "-7d", "--to", "now"}, []string{"--training-set and --from/--to exclude each other"}},
		{[]string{"--from", "-7d"}, []string{"--to is required"}},
		{[]string{"--training-set", "a/b"}, []string{`--training-set "a/b" is not a training set id`}},
		{[]string{"--training-set", "ts", "--training-set-id", "x"}, []string{`--training-set-id "x": only with --from/--to`}},
		{[]string{"--training-set", "ts", "--model", "Ranker!"}, []string{"--model: ", "Ranker!"}},
		{[]string{"--training-set", "ts", "--hidden", "64,x"}, []string{`--hidden "64,x"`}},
		{[]string{"--training-set", "ts", "--params", `{"seed": 1, "surprise": 2}`}, []string{"--params: ", "surprise"}},
		{[]string{"--training-set", "ts", "--validation-fraction", "1.5", "--epochs", "-1"}, []string{"validation_fraction 1.5", "Epochs -1"}},
		{[]string{"--training-set", "ts", "--weights", "ACTION_NAP=1"}, []string{`"ACTION_NAP" is not an action`}},
		{[]string{"--training-set", "ts", "--events-from", "last week"}, []string{`--events-from "last week"`}},
		{[]string{"--training-set", "ts", "--external-command", "  "}, []string{"--external-command is blank"}},
	} {
		var o trainOptions
		if err := trainCommand(&o).ParseFlags(c.args); err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		o.now = now
		_, err := o.check()
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%v: %v, want an error containing %q", c.args, err, w)
			}
		}
	}
	// --params sets, flags override; --hidden '' is logistic regression.
	var o trainOptions
	if err := trainCommand(&o).ParseFlags([]string{"--params", `{"seed": 4, "ranker": {"epochs": 9, "hidden": [8]}}`, "--epochs", "2", "--hidden", ""}); err != nil {
		t.Fatal(err)
	}
	p, err := o.params.params()
	if err != nil || p.Seed != 4 || p.Ranker.Epochs != 2 || p.Ranker.Hidden == nil || len(p.Ranker.Hidden) != 0 {
		t.Errorf("params %+v, %v", p, err)
	}
}

// TestTrainBuildsRegistersAndRunsExternally builds a training set from a
// simulated log with `adaptrec train --from/--to`, trains and registers it
// against real S3 and Kafka, then trains on the same training set with
// `--external-command` (this test binary running `adaptrec train job`
// behind a script) and gets the same artifacts registered as another
// version.
func TestTrainBuildsRegistersAndRunsExternally(t *testing.T) {
	env := testenv.New(t, testenv.S3, testenv.Kafka)
	cfg := env.Config()
	ctx := t.Context()
	store := testenv.EventLog(t, cfg)
	cfgPath := writeTestConfig(t, cfg)
	file := filepath.Join("..", "..", defaultFeaturesFile)

	start := time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC)
	w, err := sim.NewWorld(sim.WorldConfig{Seed: 2, Start: start, Window: 3 * 24 * time.Hour,
		Catalogue: sim.CatalogueConfig{Items: 300}, Population: sim.PopulationConfig{Users: 200}})
	if err != nil {
		t.Fatal(err)
	}
	a := &eventlog.Writer{Store: store, Topic: events.TopicInteractions}
	if _, err := sim.GenerateHistory(ctx, w, sim.HistoryConfig{Events: 30_000}, func(ctx context.Context, evs []*adaptrecv1.Event) error {
		return a.Add(ctx, evs...)
	}); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	fast := []string{"--file", file, "--seed", "3", "--hidden", "16", "--epochs", "3", "--batch-size", "128", "--factors", "8", "--als-iterations", "3"}

	// Build the training set, train, register; text summary.
	args := append([]string{"train", "--from", "2026-11-11", "--to", "2026-11-13", "--training-set-id", "ts-train"}, fast...)
	var stderr bytes.Buffer
	out, err := runCLIWithStderr(t, ctx, cfgPath, &stderr, args...)
	if err != nil {
		t.Fatalf("%v\nstderr:\n%s", err, stderr.String())
	}
	t.Logf("adaptrec train:\n%s", out)
	vre := regexp.MustCompile(`(?m)^registered ranker version (\d{8}T\d{6}Z-[0-9a-f]{8}) \(job \S+, go trainer, code \S+\) in `)
	match := vre.FindStringSubmatch(out)
	if match == nil {
		t.Fatalf("no version in the summary:\n%s", out)
	}
	version := match[1]
	for _, re := range []string{
		`\ntraining set: ts-train \(built for this job\), schema fs1:`,
		`\nsplit:        \d+ examples before \S+ train, \d+ from \S+ validate \(\d+ in the 30m0s gap dropped\)\n`,
		`\nmetrics:      AUC 0\.\d+, log loss 0\.\d+ on the validation part; baseline_logloss `,
		`\nembeddings:   \d+ pairs of \d+ users and \d+ items from \[2026-10-12T00:00:00Z, \S+\), 8 dims, \d+ lists\n`,
		`\njob output:   s3://` + regexp.QuoteMeta(cfg.S3.Bucket) + `/.*training-jobs/\S+/\n`,
		`\n  items.ivf\s+index\s+\d+ bytes\n`,
		`\n  ranker.onnx\s+ranker\s+\d+ bytes\n`,
		`\nnext:         adaptrec models promote ` + version + ` --model ranker --to shadow\|canary\|production\n`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("summary lacks %s", re)
		}
	}
	for _, want := range []string{"building the training set", "ranker      epoch 3/3", "embeddings  ALS iteration 3/3", "registering in s3://"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	reg := &registry.Client{Store: store}
	m, err := reg.Get(ctx, "ranker", version)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Verify(ctx, m); err != nil {
		t.Error(err)
	}
	if m.TrainingSet != "ts-train" || len(m.Artifacts) != 7 || m.Metrics[job.MetricAUC] <= 0.5 || m.Parameters["ranker.epochs"] != "3" {
		t.Errorf("registered %+v", m)
	}

	// The same job through the external-command protocol, --json.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "train.sh")
	if err := os.WriteFile(script, fmt.Appendf(nil, "#!/bin/sh\n%s=1 exec '%s' train job \"$@\"\n", cliMainEnv, exe), 0o755); err != nil {
		t.Fatal(err)
	}
	outDir := t.TempDir()
	args = append([]string{"train", "--training-set", "ts-train", "--external-command", script, "--output", outDir, "--json"}, fast...)
	stderr.Reset()
	out, err = runCLIWithStderr(t, ctx, cfgPath, &stderr, args...)
	if err != nil {
		t.Fatalf("%v\nstderr:\n%s", err, stderr.String())
	}
	var s trainSummary
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 {
		t.Fatalf("--json printed %d lines:\n%s", len(lines), out)
	} else if err := json.Unmarshal([]byte(lines[0]), &s); err != nil {
		t.Fatal(err)
	}
	if s.Version == "" || s.Version == version || s.TrainingSet != "ts-train" || s.TrainingSetBuilt || s.Trainer != job.TrainerGo ||
		!strings.HasPrefix(s.Output, "file://") || len(s.Artifacts) != 7 || s.Metrics[job.MetricAUC] != m.Metrics[job.MetricAUC] {
		t.Errorf("--json summary %+v (first version %s, AUC %v)", s, version, m.Metrics[job.MetricAUC])
	}
	m2, err := reg.Get(ctx, "ranker", s.Version)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{job.RankerFile, job.IndexFile} {
		f1, _ := m.Artifact(name)
		f2, _ := m2.Artifact(name)
		if f1.SHA256 != f2.SHA256 {
			t.Errorf("%s: the external run's artifact differs from the in-process run's", name)
		}
	}
	if _, err := os.Stat(filepath.Join(outDir, job.MetadataFile)); err != nil {
		t.Errorf("--output: %v", err)
	}
	if !strings.Contains(stderr.String(), "with external command "+script) || !strings.Contains(stderr.String(), "ranker      epoch 3/3") {
		t.Errorf("stderr lacks the external trainer's progress:\n%s", stderr.String())
	}
	// The folder now holds a finished job: it is not reused.
	if _, err := runCLIWithStderr(t, ctx, cfgPath, &stderr, append([]string{"train", "--training-set", "ts-train", "--output", outDir}, fast...)...); err == nil ||
		!strings.Contains(err.Error(), "already holds a finished job") {
		t.Errorf("reusing an output folder: %v", err)
	}
}

// TestBenchTrain runs the self-contained training benchmark on a small
// world and checks the JSON line.
func TestBenchTrain(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts real servers; run without -short (make test)")
	}
	t.Parallel()
	stdout, stderr, err := runBench(t, benchTestLookup(t), "train", "--json", "--file", "../../features/features.yaml",
		"--events", "20000", "--items", "300", "--users", "200", "--days", "9", "--epochs", "2", "--factors", "8", "--als-iterations", "2")
	if err != nil {
		t.Fatalf("bench train: %v\nstderr:\n%s", err, stderr)
	}
	m := lastJSONLine(t, stdout)
	for _, k := range []string{"bench", "events", "train_seconds", "prepare_seconds", "ranker_seconds", "embeddings_seconds", "rows", "auc", "logloss",
		"target_train_seconds", "meets_target", "snapshots"} {
		if _, ok := m[k]; !ok {
			t.Errorf("result lacks %q: %s", k, stdout)
		}
	}
	if m["bench"] != "train" || m["events"] != float64(20000) || m["target_train_seconds"] != float64(120) || m["snapshots"] != float64(2) ||
		!(m["train_seconds"].(float64) > 0) || !(m["auc"].(float64) > 0.5) || m["meets_target"] != true {
		t.Errorf("result %s", stdout)
	}
	if !strings.Contains(stderr, "registered through the ONNX Runtime validator") {
		t.Errorf("stderr lacks progress:\n%s", stderr)
	}
	_, _, err = runBench(t, benchTestLookup(t), "train", "--events", "0", "--days", "1")
	if err == nil || !strings.Contains(err.Error(), "--events must be") || !strings.Contains(err.Error(), "--days must be at least 2") {
		t.Errorf("bad flags: %v", err)
	}
}

// writeTestConfig writes cfg as a configuration file.
func writeTestConfig(t *testing.T, cfg config.Config) string {
	t.Helper()
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "adaptrec.yaml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// runCLIWithStderr is runCLI keeping stderr.
func runCLIWithStderr(t *testing.T, ctx context.Context, cfgPath string, stderr *bytes.Buffer, args ...string) (string, error) {
	t.Helper()
	root := NewRootCommand()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(stderr)
	root.SetArgs(append([]string{"--config", cfgPath}, args...))
	err := root.ExecuteContext(ctx)
	return out.String(), err
}
