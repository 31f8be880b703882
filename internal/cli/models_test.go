package cli

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/testenv"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/registry/registrytest"
)

// TestModelsFlagErrors checks that bad arguments are refused, each named,
// before anything is contacted (the config points nowhere). Not parallel:
// the root command binds --config to a package variable.
func TestModelsFlagErrors(t *testing.T) {
	const v = "20261122T100000Z-0a1b2c3d"
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"promote", v, "--to", "staging"}, []string{`--to "staging" is not one of production, shadow, canary`}},
		{[]string{"promote", v, "--to", "canary"}, []string{"--to canary needs --weight"}},
		{[]string{"promote", v, "--to", "canary", "--weight", "1.5"}, []string{"--weight 1.5 is not in (0, 1]"}},
		{[]string{"promote", v, "--to", "canary", "--weight", "0"}, []string{"--weight 0 is not in (0, 1]"}},
		{[]string{"promote", v, "--to", "canary", "--weight", "-0.1"}, []string{"--weight -0.1 is not in (0, 1]"}},
		{[]string{"promote", v, "--weight", "0.5"}, []string{"--weight 0.5 is only for --to canary (not --to production)"}},
		{[]string{"promote", "latest", "--to", "shadow", "--weight", "0.2", "--expect-production", "yesterday", "--actor", " "}, []string{
			`version "latest" is neither a version`, "--weight 0.2 is only for --to canary (not --to shadow)",
			`--expect-production "yesterday" is neither a version`, "--actor is empty"}},
		{[]string{"promote"}, []string{"accepts 1 arg(s), received 0"}},
		{[]string{"rollback", "--expect-production", "v1"}, []string{`--expect-production "v1"`}},
		{[]string{"rollback", v}, []string{"unknown command"}},
		{[]string{"clear", "production"}, []string{`clear "production": only canary and shadow`}},
		{[]string{"show", "best"}, []string{`version "best" is neither a version (<yyyymmddThhmmssZ>-<8 hex digits>) nor an alias (production, previous, shadow, canary)`}},
		{[]string{"list", "--model", "Ranker"}, []string{`--model: invalid model version or registry change: model name "Ranker"`}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			root := NewRootCommand()
			root.SetOut(new(strings.Builder))
			root.SetErr(new(strings.Builder))
			// A command that got past its argument checks would fail on
			// the missing configuration file instead.
			root.SetArgs(append([]string{"--config", filepath.Join(t.TempDir(), "missing.yaml"), "models"}, tc.args...))
			err := root.ExecuteContext(t.Context())
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestModelsPromoteAndRollback drives the registry through the CLI
// against real S3 and Kafka (promote and rollback with --direct, their
// path without Temporal): list, show, canary, a promotion whose
// precondition no longer holds, a promotion, a refused incompatible
// version, and a rollback whose ModelLifecycleEvent is read back from
// Kafka.
func TestModelsPromoteAndRollback(t *testing.T) {
	env := testenv.New(t, testenv.S3, testenv.Kafka)
	cfg := env.Config()
	ctx := t.Context()
	store := testenv.EventLog(t, cfg)
	dir := t.TempDir()
	cfgYAML, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "adaptrec.yaml")
	defs := filepath.Join(dir, "features.yaml")
	if err := os.WriteFile(cfgPath, cfgYAML, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(defs, []byte(registrytest.Defs), 0o600); err != nil {
		t.Fatal(err)
	}
	rec := &registrytest.Recorder{}
	reg := &registry.Client{Store: store, Events: rec, Features: registrytest.Features()}
	at := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	var vs []string
	for i := range 3 {
		m, err := reg.Register(ctx, registrytest.Request("ranker", i+1, at.Add(time.Duration(i)*24*time.Hour)))
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, m.Version)
	}
	a, b, c := vs[0], vs[1], vs[2]
	run := func(args ...string) (string, error) {
		t.Helper()
		if args[0] == "promote" || args[0] == "rollback" {
			// This test has no Temporal: the registry's own path.
			args = append(args, "--direct")
		}
		return runCLI(t, ctx, cfgPath, append([]string{"models"}, args...)...)
	}
	mustRun := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("adaptrec models %s: %v", strings.Join(args, " "), err)
		}
		return out
	}
	expect := func(out string, res ...string) {
		t.Helper()
		for _, re := range res {
			if !regexp.MustCompile(re).MatchString(out) {
				t.Errorf("output lacks %s:\n%s", re, out)
			}
		}
	}

	out := mustRun("list")
	t.Logf("adaptrec models list:\n%s", out)
	expect(out, `ranker \(s3://[^)]+/models/ranker/\): 3 versions; no aliases yet`,
		`VERSION\s+CREATED\s+ALIASES\s+TRAINING SET\s+CODE\s+METRICS`,
		regexp.QuoteMeta(c)+`\s+2026-11-22T08:00:00Z\s+-\s+ts-0003\s+0123abcd\s+auc=0.703 logloss=0.4\n`)
	if strings.Index(out, c) > strings.Index(out, a) {
		t.Errorf("list is not newest first:\n%s", out)
	}
	if _, err := run("show", "production"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("show production before any promotion: %v", err)
	}

	out = mustRun("promote", a, "--file", defs, "--actor", "alice", "--reason", "first model", "--expect-production", "none")
	expect(out, `ranker: `+a+` is production \(previous -\)`, `revision 1 recorded in s3://.*/models/ranker/history/000000000001.json; announced on adaptrec.model-lifecycle.v1`)
	out = mustRun("promote", b, "--to", "canary", "--weight", "0.1", "--file", defs, "--actor", "alice")
	expect(out, `ranker: `+b+` is canary at 10% of traffic \(was -\)`)
	out = mustRun("promote", b, "--to", "canary", "--weight", "0.1", "--file", defs, "--actor", "alice")
	expect(out, `already canary at 10% \(revision 2\); nothing changed`)

	out = mustRun("show", "canary", "--verify")
	t.Logf("adaptrec models show canary --verify:\n%s", out)
	expect(out, `version:\s+`+b, `aliases:\s+canary 10%`, `training set:\s+ts-0002`, `inputs:\s+3 features, 5 values per row: user_ctr, item_ctr, item_vec`,
		`parameters:\s+learning_rate=0.05 trees=300`, `ranker.onnx\s+ranker\s+\d+\s+[0-9a-f]{64}`, `verified: 2 artifacts match the manifest`)
	out = mustRun("show", a, "--json")
	var shown struct {
		Model, Version string
		Aliases        []string
		Metrics        map[string]float64
		Artifacts      []registry.File
	}
	if err := json.Unmarshal([]byte(out), &shown); err != nil {
		t.Fatalf("show --json: %v\n%s", err, out)
	}
	if shown.Version != a || len(shown.Aliases) != 1 || shown.Aliases[0] != "production" || len(shown.Artifacts) != 2 || shown.Metrics["auc"] == 0 {
		t.Errorf("show --json: %+v", shown)
	}

	// Someone decided on a state that is gone: production is a, not c.
	_, err = run("promote", "canary", "--expect-production", c, "--file", defs, "--actor", "bob")
	if !errors.Is(err, registry.ErrConflict) || !strings.Contains(err.Error(), "production is "+a+", not "+c) {
		t.Errorf("promotion on a stale precondition: %v", err)
	}
	// A version the serving definitions cannot feed is refused.
	_, err = run("promote", c, "--file", filepath.Join("..", "..", defaultFeaturesFile), "--actor", "bob")
	if !errors.Is(err, registry.ErrInvalid) || !strings.Contains(err.Error(), "user_ctr: not defined") {
		t.Errorf("promotion of a version the definitions cannot satisfy: %v", err)
	}
	out = mustRun("promote", "canary", "--expect-production", a, "--file", defs, "--actor", "alice", "--reason", "canary ctr +2%", "--json")
	var promoted struct {
		Model   string
		Changed bool
		Aliases registry.Aliases
	}
	if err := json.Unmarshal([]byte(out), &promoted); err != nil {
		t.Fatalf("promote --json: %v\n%s", err, out)
	}
	if !promoted.Changed || promoted.Aliases.Production != b || promoted.Aliases.Previous != a || promoted.Aliases.Canary != "" || promoted.Aliases.Revision != 3 {
		t.Errorf("promote --json: %+v", promoted)
	}

	// The rollback: no --file (the default is not in this directory) and
	// the actor from the environment.
	out = mustRun("rollback", "--reason", "ctr dropped")
	expect(out, `ranker: rolled back from `+b+` to `+a+`; `+b+` is no longer referenced by any alias`, `revision 4 recorded`)
	if al, err := reg.Aliases(ctx, "ranker"); err != nil || al.Production != a || al.Previous != "" || al.Revision != 4 {
		t.Errorf("aliases after rollback: %+v, %v", al, err)
	}
	var rollback *adaptrecv1.ModelLifecycleEvent
	testenv.Eventually(t, 20*time.Second, func() error {
		for _, e := range modelLifecycleEvents(t, cfg) {
			if e.GetEnvelope().GetEventId() == registry.EventID("ranker", 4) {
				rollback = e.GetModelLifecycle()
				return nil
			}
		}
		return errors.New("no event for revision 4")
	})
	if rollback.GetStage() != adaptrecv1.LifecycleStage_LIFECYCLE_STAGE_ROLLED_BACK || rollback.GetModelName() != "ranker" ||
		rollback.GetModelVersion() != a || rollback.GetPreviousVersion() != b || rollback.GetReason() != "ctr dropped" ||
		!strings.HasPrefix(rollback.GetActor(), "cli:") || !strings.HasSuffix(rollback.GetArtifactUri(), "/models/ranker/versions/"+a+"/") {
		t.Errorf("rollback event %v", rollback)
	}
	if _, err := run("rollback"); !errors.Is(err, registry.ErrNoPrevious) {
		t.Errorf("second rollback: %v", err)
	}
	if out := mustRun("clear", "canary"); !strings.Contains(out, "no canary to clear (revision 4); nothing changed") {
		t.Errorf("clear canary with none:\n%s", out)
	}

	out = mustRun("history")
	t.Logf("adaptrec models history:\n%s", out)
	expect(out, `REVISION\s+AT\s+ACTION\s+VERSION\s+REPLACED\s+ACTOR\s+REASON\s+PRODUCTION`,
		`\n1\s+\S+\s+promote\s+`+a+`\s+-\s+alice\s+first model\s+`+a+`\n`,
		`\n2\s+\S+\s+canary 10%\s+`+b+`\s+-\s+alice\s+-\s+`+a+`\n`,
		`\n3\s+\S+\s+promote\s+`+b+`\s+`+a+`\s+alice\s+canary ctr \+2%\s+`+b+`\n`,
		`\n4\s+\S+\s+rollback\s+`+a+`\s+`+b+`\s+cli:\S+\s+ctr dropped\s+`+a+`\n`)
	out = mustRun("list", "--json")
	var listed struct {
		URI    string
		Models []struct {
			Model    string
			Aliases  registry.Aliases
			Versions []struct {
				Version string
				Aliases []string
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	if len(listed.Models) != 1 || listed.Models[0].Aliases.Production != a || len(listed.Models[0].Versions) != 3 ||
		listed.Models[0].Versions[2].Version != a || len(listed.Models[0].Versions[2].Aliases) != 1 {
		t.Errorf("list --json: %+v", listed)
	}

	// With a second model, commands that need one ask which.
	if _, err := reg.Register(ctx, registrytest.Request("retrieval", 9, at)); err != nil {
		t.Fatal(err)
	}
	if _, err := run("show", "production"); err == nil || !strings.Contains(err.Error(), "the registry holds the models ranker, retrieval: choose one with --model") {
		t.Errorf("show without --model among two: %v", err)
	}
	if out := mustRun("show", "production", "--model", "ranker"); !strings.Contains(out, a) {
		t.Errorf("show --model ranker:\n%s", out)
	}
}

// modelLifecycleEvents reads every event on adaptrec.model-lifecycle.v1.
func modelLifecycleEvents(t *testing.T, cfg config.Config) []*adaptrecv1.Event {
	t.Helper()
	return testenv.TopicEvents(t, cfg.Kafka, events.TopicModelLifecycle)
}
