package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/internal/testenv"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/registry/registrytest"
	"github.com/adaptrec/adaptrec/workflows"
)

func TestPrintPipelineStatus(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	const a, b = "20261101T000000Z-aaaaaaaa", "20261122T030000Z-bbbbbbbb"
	rep := pipelineStatusReport{
		Model:   "ranker",
		Aliases: &registry.Aliases{Model: "ranker", Revision: 7, Production: a, Canary: b, CanaryWeight: 0.25},
		Schedules: []scheduleStatus{
			{ID: "retrain-daily-ranker", URL: "http://ui/namespaces/default/schedules/retrain-daily-ranker", Exists: true, NextRun: now.Add(17 * time.Hour)},
			{ID: "drift-check-ranker", URL: "http://ui/namespaces/default/schedules/drift-check-ranker", Exists: true, Paused: true, Note: "paused by alice"},
		},
		Running: []pipelineRun{{WorkflowID: "retrain-ranker-drift-20261122T09Z", URL: "http://ui/namespaces/default/workflows/retrain-ranker-drift-20261122T09Z",
			Status: "Running", Start: now.Add(-42 * time.Minute), Reason: "drift: 7 of 20 value columns flagged",
			Live: "stage 8/11 canary: " + b + " on 25% of traffic (step 2 of 4)"}},
		Recent: []pipelineRun{{WorkflowID: "retrain-ranker-daily-2026-11-22T03:00:00Z", URL: "http://ui/x", Status: "Failed", Stage: "done",
			Version: "20261122T030500Z-cccccccc", Outcome: "ShadowGateFailed", Start: now.Add(-7 * time.Hour), Close: now.Add(-6 * time.Hour), Reason: "daily retrain"}},
	}
	var out strings.Builder
	if err := printPipelineStatus(&out, rep, now); err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{
		`^model ranker: revision 7: production ` + a + `, previous -, canary ` + b + ` \(25%\), shadow -\n`,
		`daily retrain: schedule retrain-daily-ranker, next run 2026-11-23T03:00:00Z \(in 17h0m0s\)\n  http://ui/namespaces/default/schedules/retrain-daily-ranker\n`,
		`drift check: schedule drift-check-ranker PAUSED \(paused by alice\)\n`,
		`RUNNING retrain-ranker-drift-20261122T09Z since 2026-11-22T09:18:00Z \(42m0s\)\n  stage 8/11 canary: ` + b + ` on 25% of traffic \(step 2 of 4\)\n  reason: drift: 7 of 20 value columns flagged\n  http://ui/namespaces/default/workflows/retrain-ranker-drift-20261122T09Z\n`,
		`WORKFLOW\s+STATUS\s+STAGE\s+VERSION\s+OUTCOME\s+STARTED\s+CLOSED\s+REASON\n`,
		`retrain-ranker-daily-2026-11-22T03:00:00Z\s+Failed\s+done\s+20261122T030500Z-cccccccc\s+ShadowGateFailed\s+2026-11-22T03:00:00Z\s+2026-11-22T04:00:00Z\s+daily retrain\n`,
		`retrain-ranker-daily-2026-11-22T03:00:00Z  http://ui/x\n$`,
	} {
		if !regexp.MustCompile(re).MatchString(out.String()) {
			t.Errorf("status lacks %s:\n%s", re, out.String())
		}
	}
}

// TestModelsAndPipelineOnDevServer runs the ML engineers' commands through
// their workflows on a real Temporal dev server, S3 and broker, with a
// worker running ModelChange and DriftCheck: a drift check without a
// production version, promotions and a rollback of two registered
// versions as ModelChange runs (the aliases, the printed workflow id and
// link, the run in Temporal, a refused stale precondition), pipeline
// status, the signal commands without a run, and the Schedules created,
// shown, paused and deleted.
func TestModelsAndPipelineOnDevServer(t *testing.T) {
	env := testenv.New(t, testenv.Temporal, testenv.S3, testenv.Kafka)
	cfg := env.Config()
	cfg.Temporal.UIURL = "http://ui.test"
	ctx := t.Context()
	store := testenv.EventLog(t, cfg)
	reg := &registry.Client{Store: store, Events: &registrytest.Recorder{}, Features: registrytest.Features()}
	at := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	var vs []string
	for i := range 2 {
		m, err := reg.Register(ctx, registrytest.Request("ranker", i+1, at.Add(time.Duration(i)*24*time.Hour)))
		if err != nil {
			t.Fatal(err)
		}
		vs = append(vs, m.Version)
	}
	a, b := vs[0], vs[1]

	producer, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	tc, err := client.Dial(client.Options{HostPort: cfg.Temporal.HostPort, Namespace: cfg.Temporal.Namespace})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	w := worker.New(tc, activities.TaskQueueDefault, worker.Options{})
	w.RegisterWorkflow(workflows.ModelChange)
	w.RegisterActivity(&activities.ModelChange{Registry: &registry.Client{Store: store, Events: producer, Features: registrytest.Features()}, Temporal: tc})
	w.RegisterWorkflowWithOptions(watchingRetrain, workflow.RegisterOptions{Name: "RetrainWorkflow"})
	w.RegisterWorkflow(workflows.DriftCheck)
	w.RegisterActivity(&activities.Drift{Store: store, Registry: &registry.Client{Store: store}})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	cfgPath := writeTestConfig(t, cfg)
	run := func(args ...string) (string, error) {
		t.Helper()
		return runCLI(t, ctx, cfgPath, args...)
	}
	mustRun := func(args ...string) string {
		t.Helper()
		out, err := run(args...)
		if err != nil {
			t.Fatalf("adaptrec %s: %v", strings.Join(args, " "), err)
		}
		t.Logf("adaptrec %s:\n%s", strings.Join(args, " "), out)
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

	// No production version yet: the drift check has nothing to compare.
	out := mustRun("pipeline", "drift-check", "--wait")
	expect(out, `started DriftCheck drift-check-ranker-\d{8}T\d{6}Z \(run \S+\)\n  http://ui.test/namespaces/default/workflows/drift-check-ranker-`,
		`ranker has no production version: no served features to compare; no retrain`)

	// The first promotion, as a ModelChange run.
	out = mustRun("models", "promote", a, "--actor", "alice", "--reason", "first model", "--expect-production", "none")
	expect(out, `ranker: `+a+` is production \(previous -\)\n`, `revision 1 recorded in s3://.*/models/ranker/history/000000000001.json; announced on adaptrec.model-lifecycle.v1\n`,
		`workflow ModelChange models-promote-\d{8}T\d{6}\.\d{3}Z \(run \S+\)\n  http://ui.test/namespaces/default/workflows/models-promote-\d{8}T\d{6}\.\d{3}Z\n$`)
	id := regexp.MustCompile(`workflow ModelChange (\S+)`).FindStringSubmatch(out)[1]
	desc, err := tc.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		t.Fatalf("the printed workflow %s: %v", id, err)
	}
	if st := desc.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED || desc.GetWorkflowExecutionInfo().GetType().GetName() != "ModelChange" {
		t.Errorf("workflow %s: %s %s, want a completed ModelChange", id, desc.GetWorkflowExecutionInfo().GetType().GetName(), st)
	}
	al, err := reg.Aliases(ctx, "ranker")
	if err != nil || al.Production != a || al.Revision != 1 || al.Change.Actor != "alice (workflow "+id+")" || al.Change.Reason != "first model" {
		t.Fatalf("aliases after the promotion: %+v (change %+v), %v", al, al.Change, err)
	}

	// Canary b, then promote the canary by alias; the JSON carries the
	// workflow.
	out = mustRun("models", "promote", b, "--to", "canary", "--weight", "0.1", "--model", "ranker", "--json")
	var canary struct {
		Model      string           `json:"model"`
		Changed    bool             `json:"changed"`
		Aliases    registry.Aliases `json:"aliases"`
		WorkflowID string           `json:"workflow_id"`
		URL        string           `json:"url"`
	}
	if err := json.Unmarshal([]byte(out), &canary); err != nil {
		t.Fatalf("promote --json: %v\n%s", err, out)
	}
	if !canary.Changed || canary.Aliases.Canary != b || canary.Aliases.CanaryWeight != 0.1 || !strings.HasPrefix(canary.WorkflowID, "models-canary-ranker-") ||
		canary.URL != "http://ui.test/namespaces/default/workflows/"+canary.WorkflowID {
		t.Errorf("promote --to canary --json: %+v", canary)
	}
	// A stale precondition is refused by the workflow, changing nothing.
	_, err = run("models", "promote", "canary", "--expect-production", b, "--actor", "bob")
	if !errors.Is(err, registry.ErrConflict) || !strings.Contains(err.Error(), "production is "+a+", not "+b) || !strings.Contains(err.Error(), "(workflow models-promote-") {
		t.Errorf("promotion on a stale precondition: %v", err)
	}
	out = mustRun("models", "promote", "canary", "--expect-production", a, "--actor", "alice")
	expect(out, `ranker: `+b+` is production \(previous `+a+`\)\n`, `revision 3 recorded`)

	// A retraining run watching b after its cutover (a stand-in that
	// answers the progress query and waits for its rollback signal): the
	// pipeline lists it with its live progress, and the rollback stops it.
	watching, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "retrain-ranker-watching", TaskQueue: activities.TaskQueueDefault,
		Memo: workflows.RetrainMemo("ranker", "test: a run in its watch")}, workflows.RetrainWorkflow, workflows.RetrainParams{Settings: cfg.Pipeline})
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		out, err := run("pipeline", "status")
		if err != nil {
			return err
		}
		if want := "RUNNING retrain-ranker-watching since "; !strings.Contains(out, want) || !strings.Contains(out, "stage 10/11 watch: "+b) {
			return fmt.Errorf("status does not list the watching run yet:\n%s", out)
		}
		return nil
	})
	expect(mustRun("pipeline", "status"), `  reason: test: a run in its watch\n  http://ui.test/namespaces/default/workflows/retrain-ranker-watching\n`)
	expect(mustRun("pipeline", "approve", "--reason", "looks good"), `sent approve to retrain-ranker-watching \(stage watch, version `+b+`\)\n  note: the run is not waiting for approval yet`)

	out = mustRun("models", "rollback", "--reason", "ctr dropped")
	expect(out, `ranker: rolled back from `+b+` to `+a+`; `+b+` is no longer referenced by any alias`, `revision 4 recorded`,
		`stopped retraining run retrain-ranker-watching \(stage watch, version `+b+`\) with its rollback signal\n  http://ui.test/namespaces/default/workflows/retrain-ranker-watching\n`,
		`workflow ModelChange models-rollback-`)
	if al, err := reg.Aliases(ctx, "ranker"); err != nil || al.Production != a || al.Previous != "" || al.Revision != 4 {
		t.Errorf("aliases after the rollback: %+v, %v", al, err)
	}
	if err := watching.Get(ctx, nil); err == nil || !strings.Contains(err.Error(), "rolled back by cli:") ||
		!strings.Contains(err.Error(), "models rollback of ranker from "+b+" to "+a+" (revision 4): ctr dropped") {
		t.Errorf("the watching run after the rollback: %v", err)
	}
	if _, err := run("models", "rollback"); err == nil || !strings.Contains(err.Error(), "no previous model version") {
		t.Errorf("second rollback: %v", err)
	}

	// The pipeline's view and the signals without a run.
	testenv.Eventually(t, 30*time.Second, func() error {
		out, err := run("pipeline", "status")
		if err != nil {
			return err
		}
		for _, re := range []string{`^model ranker: revision 4: production ` + a + `, previous -`, `daily retrain: no schedule retrain-daily-ranker`,
			`no retraining run is running`, `retrain-ranker-watching\s+Failed\s+watch\s+` + b + `\s+RolledBack\s+`} {
			if !regexp.MustCompile(re).MatchString(out) {
				return fmt.Errorf("status lacks %s:\n%s", re, out)
			}
		}
		return nil
	})
	if _, err := run("pipeline", "approve"); err == nil || !strings.Contains(err.Error(), "no retraining run of ranker is running") {
		t.Errorf("approve without a run: %v", err)
	}

	out = mustRun("pipeline", "schedule", "--cron", "30 2 * * *")
	expect(out, `created schedule retrain-daily-ranker: RetrainWorkflow of ranker at "30 2 \* \* \*" \(UTC\), overlap skip, on task queue adaptrec-default\n  http://ui.test/namespaces/default/schedules/retrain-daily-ranker\n`,
		`created schedule drift-check-ranker: DriftCheck of ranker at "15 \* \* \* \*" \(UTC\) over the last 6h0m0s of predictions; retrains when more than 3 columns are flagged`)
	desc2, err := tc.ScheduleClient().GetHandle(ctx, "retrain-daily-ranker").Describe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	act, ok := desc2.Schedule.Action.(*client.ScheduleWorkflowAction)
	if !ok || act.Workflow != "RetrainWorkflow" || act.ID != "retrain-ranker-daily" || desc2.Schedule.Policy.Overlap != enumspb.SCHEDULE_OVERLAP_POLICY_SKIP {
		t.Errorf("schedule action %+v, policy %+v", desc2.Schedule.Action, desc2.Schedule.Policy)
	}
	if next := desc2.Info.NextActionTimes; len(next) == 0 || next[0].UTC().Hour() != 2 || next[0].UTC().Minute() != 30 {
		t.Errorf("next runs %v, want 02:30 UTC", next)
	}
	expect(mustRun("pipeline", "schedule"), `updated schedule retrain-daily-ranker: RetrainWorkflow of ranker at "0 3 \* \* \*"`, `updated schedule drift-check-ranker`)
	out = mustRun("pipeline", "status", "--json")
	var st pipelineStatusReport
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if len(st.Schedules) != 2 || !st.Schedules[0].Exists || st.Schedules[0].NextRun.UTC().Hour() != 3 || st.Aliases == nil || st.Aliases.Production != a {
		t.Errorf("status --json: %+v", st)
	}
	expect(mustRun("pipeline", "schedule", "--pause"), `paused schedule retrain-daily-ranker`, `paused schedule drift-check-ranker`)
	expect(mustRun("pipeline", "status"), `daily retrain: schedule retrain-daily-ranker PAUSED \(paused by cli:`)
	expect(mustRun("pipeline", "schedule", "--delete"), `deleted schedule retrain-daily-ranker`, `deleted schedule drift-check-ranker`)
	expect(mustRun("pipeline", "schedule", "--delete"), `no schedule retrain-daily-ranker: nothing deleted`)
}

// watchingRetrain stands in for RetrainWorkflow in its post-cutover
// watch: it answers the progress query, sets the search attributes the
// real one sets, and ends as the real one does when it gets the rollback
// signal.
func watchingRetrain(ctx workflow.Context, p workflows.RetrainParams) (workflows.RetrainResult, error) {
	const v = "20261121T080000Z-1efc9f5c"
	prog := workflows.RetrainProgress{Stage: workflows.StageWatch, StageIndex: 9, Stages: 11, Version: v}
	if err := workflow.SetQueryHandler(ctx, workflows.QueryProgress, func() (workflows.RetrainProgress, error) { return prog, nil }); err != nil {
		return workflows.RetrainResult{}, err
	}
	if err := workflow.UpsertTypedSearchAttributes(ctx, workflows.SearchAttrStage.ValueSet(workflows.StageWatch), workflows.SearchAttrModelVersion.ValueSet(v)); err != nil {
		return workflows.RetrainResult{}, err
	}
	var stop workflows.RetrainStop
	workflow.GetSignalChannel(ctx, workflows.SignalRollback).Receive(ctx, &stop)
	if err := workflow.UpsertTypedSearchAttributes(ctx, workflows.SearchAttrOutcome.ValueSet(workflows.ErrTypeRolledBack)); err != nil {
		return workflows.RetrainResult{}, err
	}
	return workflows.RetrainResult{}, temporal.NewNonRetryableApplicationError("rolled back by "+stop.By+" during watch: "+stop.Reason, workflows.ErrTypeRolledBack, nil)
}
