package cli

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/workflows"
)

// unreachableConfig writes a valid configuration whose Temporal (and
// everything else) is where nothing listens.
func unreachableConfig(t *testing.T) string {
	t.Helper()
	cfg := config.Default()
	cfg.Temporal.HostPort = "127.0.0.1:1"
	cfg.S3.Endpoint = "http://127.0.0.1:1"
	cfg.Kafka.Brokers = []string{"127.0.0.1:1"}
	return writeTestConfig(t, cfg)
}

// TestPipelineCommandErrors checks that bad flags are refused, each named,
// before Temporal is contacted, and that an unreachable Temporal names
// its key and the fix. Not parallel: the root command binds --config to a
// package variable.
func TestPipelineCommandErrors(t *testing.T) {
	cfgPath := unreachableConfig(t)
	const v = "20261122T100000Z-0a1b2c3d"
	unreachable := []string{"connect to Temporal at 127.0.0.1:1 (config key temporal.host_port)", "`adaptrec dev up` (or `make demo`)"}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"retrain", "--reason", "a\nb"}, []string{`--reason "a\nb" spans lines`}},
		{[]string{"retrain", "--actor", " "}, []string{"--actor is empty"}},
		{[]string{"retrain", "now"}, []string{`unknown command "now" for "adaptrec retrain"`}},
		{[]string{"retrain", "--wait"}, unreachable},
		{[]string{"pipeline", "status"}, unreachable},
		{[]string{"pipeline", "approve", "--run", "retrain ranker"}, []string{`--run "retrain ranker" is not a workflow id`}},
		{[]string{"pipeline", "abort", "--actor", ""}, []string{"--actor is empty"}},
		{[]string{"pipeline", "rollback", "--reason", "ctr"}, unreachable},
		{[]string{"pipeline", "schedule", "--pause", "--delete"}, []string{"--pause and --delete: give at most one"}},
		{[]string{"pipeline", "schedule", "--unpause", "--cron", "0 4 * * *"}, []string{"--cron sets a spec when creating or updating, not with --unpause"}},
		{[]string{"pipeline", "schedule", "--cron", "0 3 * *"}, []string{`--cron: cron spec "0 3 * *" has 4 fields, want 5`}},
		{[]string{"pipeline", "schedule", "--cron", ""}, []string{"--cron is empty"}},
		{[]string{"pipeline", "schedule", "--drift-cron", "hourly"}, []string{`--drift-cron: cron spec "hourly" has 1 fields, want 5`}},
		{[]string{"pipeline", "schedule"}, unreachable},
		{[]string{"pipeline", "drift-check", "--wait"}, unreachable},
		{[]string{"models", "promote", v}, append(unreachable, "--direct applies the change through the registry without Temporal")},
		{[]string{"models", "rollback", "--reason", "ctr dropped"}, append(unreachable, "--direct applies")},
		{[]string{"models", "promote", v, "--file", "/nonexistent/features.yaml"}, []string{"--file: open /nonexistent/features.yaml"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			start := time.Now()
			_, err := runCLI(t, t.Context(), cfgPath, tc.args...)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("took %s to fail", d)
			}
		})
	}
}

func TestRetrainParams(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	p := retrainParams(cfg, retrainOptions{actor: "cli:alice@host", approveManually: true})
	if p.Reason != "manual: adaptrec retrain by cli:alice@host" || p.Actor != "cli:alice@host" || !p.RequireApproval ||
		p.Settings.Model != "ranker" || p.CodeVersion == "" {
		t.Errorf("params %+v", p)
	}
	if p := retrainParams(cfg, retrainOptions{actor: "a", reason: "  new catalogue "}); p.Reason != "new catalogue" || p.RequireApproval {
		t.Errorf("params with --reason: %+v", p)
	}
	if err := p.Settings.Check(); err != nil {
		t.Errorf("the default settings fail the workflow's check: %v", err)
	}
}

func TestWorkflowLinks(t *testing.T) {
	t.Parallel()
	tc := config.Temporal{UIURL: "http://localhost:8233/", Namespace: "default"}
	if got, want := workflowLink(tc, "retrain-ranker-20261122T101500Z"), "http://localhost:8233/namespaces/default/workflows/retrain-ranker-20261122T101500Z"; got != want {
		t.Errorf("workflowLink = %q, want %q", got, want)
	}
	if got, want := workflowLink(config.Temporal{UIURL: "https://t.example", Namespace: "ml prod"}, "a/b"), "https://t.example/namespaces/ml%20prod/workflows/a%2Fb"; got != want {
		t.Errorf("workflowLink escapes to %q, want %q", got, want)
	}
	if got, want := scheduleLink(tc, "retrain-daily-ranker"), "http://localhost:8233/namespaces/default/schedules/retrain-daily-ranker"; got != want {
		t.Errorf("scheduleLink = %q, want %q", got, want)
	}
	at := time.Date(2026, 11, 22, 10, 15, 0, 123e6, time.UTC)
	if got := modelChangeID("promote", "ranker", at); got != "models-promote-ranker-20261122T101500.123Z" {
		t.Errorf("modelChangeID = %q", got)
	}
	if got := modelChangeID("rollback", "", at); got != "models-rollback-20261122T101500.123Z" {
		t.Errorf("modelChangeID without a model = %q", got)
	}
}

func TestRetrainProgressLine(t *testing.T) {
	t.Parallel()
	const v = "20261122T030000Z-bbbbbbbb"
	for _, tc := range []struct {
		p    workflows.RetrainProgress
		want string
	}{
		{workflows.RetrainProgress{Stage: workflows.StageValidate, Stages: 11}, "stage 1/11 validate"},
		{workflows.RetrainProgress{Stage: workflows.StageTrain, StageIndex: 2, Stages: 11}, "stage 3/11 train: waiting for a worker on gpu-training"},
		{workflows.RetrainProgress{Stage: workflows.StageTrain, StageIndex: 2, Stages: 11, Training: &activities.TrainingProgress{
			JobID: "j1", TaskQueue: "gpu-training", Attempt: 2, Stage: "ranker", Step: 3, Steps: 10, Fraction: 0.45, Message: "loss 0.41"}},
			"stage 3/11 train: job j1 on gpu-training, attempt 2, 45% (ranker 3/10: loss 0.41)"},
		{workflows.RetrainProgress{Stage: workflows.StageShadow, StageIndex: 5, Stages: 11, Version: v, ShadowRequests: 420, ShadowTarget: 1000},
			"stage 6/11 shadow: " + v + " scored 420 of 1000 mirrored requests"},
		{workflows.RetrainProgress{Stage: workflows.StageApproval, StageIndex: 6, Stages: 11, Version: v},
			"stage 7/11 approval: " + v + " waits for 'adaptrec pipeline approve'"},
		{workflows.RetrainProgress{Stage: workflows.StageCanary, StageIndex: 7, Stages: 11, Version: v, CanaryStep: 2, CanarySteps: 4, CanaryWeight: 0.25},
			"stage 8/11 canary: " + v + " on 25% of traffic (step 2 of 4)"},
		{workflows.RetrainProgress{Stage: workflows.StageWatch, StageIndex: 9, Stages: 11, Version: v}, "stage 10/11 watch: " + v},
	} {
		if got := retrainProgressLine(tc.p); got != tc.want {
			t.Errorf("retrainProgressLine(%s) = %q, want %q", tc.p.Stage, got, tc.want)
		}
	}
}

func TestRetrainResultAndFailure(t *testing.T) {
	t.Parallel()
	res := workflows.RetrainResult{Model: "ranker", Version: "20261122T030000Z-bbbbbbbb", Previous: "20261101T000000Z-aaaaaaaa", Production: "20261101T000000Z-aaaaaaaa",
		Outcome: workflows.ErrTypeShadowGateFailed, Reason: "shadow 20261122T030000Z-bbbbbbbb: score correlation with production 0.310, below shadow_min_correlation 0.5",
		Notes:   []string{"no GPU worker polled gpu-training within 10m0s; trained on CPU"},
		Timings: []workflows.StageTiming{{Stage: "validate", Seconds: 1.25}, {Stage: "train", Seconds: 62}, {Stage: "shadow", Seconds: 600}}}
	var b strings.Builder
	printRetrainResult(&b, res)
	out := b.String()
	for _, want := range []string{
		"outcome: ShadowGateFailed\n",
		"version: 20261122T030000Z-bbbbbbbb of ranker; production 20261101T000000Z-aaaaaaaa (was 20261101T000000Z-aaaaaaaa)\n",
		"reason: shadow 20261122T030000Z-bbbbbbbb: score correlation",
		"note: no GPU worker polled gpu-training",
		"stage timings:\n  validate      1.2 s\n  train        62.0 s\n  shadow      600.0 s\n  total       663.2 s\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("result lacks %q:\n%s", want, out)
		}
	}
	if err := retrainFailure("retrain-ranker-x", res, nil); err != nil {
		t.Errorf("a run without error failed: %v", err)
	}
	gate := temporal.NewNonRetryableApplicationError(res.Reason, workflows.ErrTypeShadowGateFailed, nil)
	err := retrainFailure("retrain-ranker-x", res, gate)
	want := "retrain retrain-ranker-x did not promote 20261122T030000Z-bbbbbbbb: ShadowGateFailed: shadow 20261122T030000Z-bbbbbbbb: score correlation with production 0.310, below shadow_min_correlation 0.5; production is 20261101T000000Z-aaaaaaaa"
	if err == nil || err.Error() != want {
		t.Errorf("failure %v, want %q", err, want)
	}
	if err := retrainFailure("retrain-ranker-x", res, errors.New("workflow execution timed out")); err == nil || !strings.Contains(err.Error(), "retrain retrain-ranker-x: workflow execution timed out") {
		t.Errorf("a timed-out run: %v", err)
	}
}

func TestPickRun(t *testing.T) {
	t.Parallel()
	a := activities.RetrainRun{WorkflowID: "retrain-ranker-a", Stage: workflows.StageCanary}
	b := activities.RetrainRun{WorkflowID: "retrain-ranker-b"}
	if _, err := pickRun(nil, "", "ranker"); err == nil || !strings.Contains(err.Error(), "no retraining run of ranker is running") {
		t.Errorf("none running: %v", err)
	}
	if r, err := pickRun([]activities.RetrainRun{a}, "", "ranker"); err != nil || r.WorkflowID != a.WorkflowID {
		t.Errorf("one running: %v, %v", r, err)
	}
	if _, err := pickRun([]activities.RetrainRun{a, b}, "", "ranker"); err == nil ||
		err.Error() != "2 retraining runs of ranker are running: choose one with --run (retrain-ranker-a (stage canary), retrain-ranker-b)" {
		t.Errorf("two running: %v", err)
	}
	if r, err := pickRun([]activities.RetrainRun{a, b}, "retrain-ranker-b", "ranker"); err != nil || r.WorkflowID != b.WorkflowID {
		t.Errorf("--run among two: %v, %v", r, err)
	}
	if _, err := pickRun([]activities.RetrainRun{a}, "retrain-ranker-z", "ranker"); err == nil ||
		!strings.Contains(err.Error(), "--run retrain-ranker-z is not a running retraining run of ranker (running: retrain-ranker-a (stage canary))") {
		t.Errorf("--run not running: %v", err)
	}
}
