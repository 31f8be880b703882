package workflows

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/features/skew"
)

// driftFake scripts DriftCheck's activities and records the retraining
// runs it starts.
type driftFake struct {
	report  activities.DriftReport
	running []activities.RetrainRun

	mu       sync.Mutex
	requests []activities.DriftRequest
	listed   int
	started  []startedRetrain
}

type startedRetrain struct {
	id     string
	params RetrainParams
}

func flaggedReport(n int) activities.DriftReport {
	rep := activities.DriftReport{Model: "ranker", Production: prodV, TrainingSet: "ts-prod", Columns: 20, Judged: 18, Flagged: n,
		Served: skew.ServedSummary{Sampled: 4200}}
	names := []string{"user_ctr_30d", "item_ctr_7d", "item_age_hours", "user_sessions_7d", "item_popularity_1h", "user_vec[3]", "item_vec[0]"}
	for i := range n {
		f := skew.FeatureSkew{Name: names[i], Judged: true, Reasons: []string{skew.ReasonMeanShift}, MeanShift: 2.3 - 0.2*float64(i)}
		if i == 1 {
			f.Reasons = append(f.Reasons, skew.ReasonPSI)
			f.PSI = 0.41
		}
		rep.Features = append(rep.Features, f)
	}
	return rep
}

func (f *driftFake) env(t *testing.T) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetStartTime(time.Date(2026, 11, 22, 3, 17, 0, 0, time.UTC))
	var d *activities.Drift
	var m *activities.ModelChange
	env.OnActivity(d.DriftReport, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.DriftRequest) (activities.DriftReport, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.requests = append(f.requests, req)
		rep := f.report
		rep.From, rep.To = req.From, req.To
		return rep, nil
	})
	env.OnActivity(m.ActiveRetrains, mock.Anything, "ranker").Return(func(context.Context, string) ([]activities.RetrainRun, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.listed++
		return f.running, nil
	})
	env.RegisterWorkflow(RetrainWorkflow)
	env.OnWorkflow(RetrainWorkflow, mock.Anything, mock.Anything).Return(func(ctx workflow.Context, p RetrainParams) (RetrainResult, error) {
		info := workflow.GetInfo(ctx)
		f.mu.Lock()
		f.started = append(f.started, startedRetrain{id: info.WorkflowExecution.ID, params: p})
		f.mu.Unlock()
		return RetrainResult{Model: "ranker", Outcome: OutcomeSucceeded}, nil
	})
	return env
}

func driftSettings() DriftCheckParams {
	s := testSettings()
	s.DriftWindow, s.DriftMaxFlagged = 6*time.Hour, 3
	return DriftCheckParams{Settings: s, CodeVersion: "abc123"}
}

func runDrift(t *testing.T, f *driftFake) DriftCheckResult {
	t.Helper()
	env := f.env(t)
	env.ExecuteWorkflow(DriftCheck, driftSettings())
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res DriftCheckResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if len(f.requests) != 1 {
		t.Fatalf("%d skew reports asked for, want 1", len(f.requests))
	}
	req := f.requests[0]
	if !req.To.Equal(time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)) || req.To.Sub(req.From) != 6*time.Hour || req.Model != "ranker" {
		t.Errorf("skew report asked for %s over [%s, %s), want ranker over the 6h before 03:00", req.Model, req.From, req.To)
	}
	return res
}

func TestDriftCheckNoDriftStartsNothing(t *testing.T) {
	t.Parallel()
	f := &driftFake{report: flaggedReport(3)}
	res := runDrift(t, f)
	if len(f.started) != 0 || res.Retrain != "" || res.Reason != "" {
		t.Fatalf("a retrain was started on 3 flagged columns (drift_max_flagged 3): %+v", res)
	}
	if f.listed != 0 {
		t.Errorf("running retrains listed %d times without drift", f.listed)
	}
	if want := "3 of 20 value columns flagged (18 judged on 4200 sampled predictions), not more than drift_max_flagged 3: no retrain"; res.Note != want {
		t.Errorf("note %q, want %q", res.Note, want)
	}
}

func TestDriftCheckNoProductionStartsNothing(t *testing.T) {
	t.Parallel()
	f := &driftFake{report: activities.DriftReport{Model: "ranker"}}
	res := runDrift(t, f)
	if len(f.started) != 0 || !strings.Contains(res.Note, "ranker has no production version") {
		t.Fatalf("without production: %+v, started %v", res, f.started)
	}
}

func TestDriftCheckStartsRetrainWithReason(t *testing.T) {
	t.Parallel()
	f := &driftFake{report: flaggedReport(7)}
	res := runDrift(t, f)
	if len(f.started) != 1 {
		t.Fatalf("%d retrains started, want 1 (%+v)", len(f.started), res)
	}
	st := f.started[0]
	wantID := "retrain-ranker-drift-20261122T03Z"
	if st.id != wantID || res.Retrain != wantID || res.Note != "retrain started: "+wantID {
		t.Errorf("retrain id %q, result %q, note %q, want %s", st.id, res.Retrain, res.Note, wantID)
	}
	for _, want := range []string{
		"drift: 7 of 20 value columns flagged (more than drift_max_flagged 3) in 4200 predictions of [2026-11-21T21:00:00Z, 2026-11-22T03:00:00Z) against training set ts-prod of production " + prodV,
		": user_ctr_30d mean shift 2.3 sd, item_ctr_7d mean shift 2.1 sd and PSI 0.41, item_age_hours mean shift 1.9 sd",
		", and 2 more",
	} {
		if !strings.Contains(res.Reason, want) {
			t.Errorf("reason %q lacks %q", res.Reason, want)
		}
	}
	if st.params.Reason != res.Reason {
		t.Errorf("the retrain's reason %q; want the drift reason %q", st.params.Reason, res.Reason)
	}
	// The test environment does not pass a child's memo or policies on:
	// check the options the check starts it with.
	o := driftRetrainOptions(wantID, "ranker", res.Reason)
	if o.WorkflowID != wantID || o.ParentClosePolicy != enumspb.PARENT_CLOSE_POLICY_ABANDON ||
		o.WorkflowIDReusePolicy != enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE ||
		o.Memo[activities.MemoReason] != res.Reason || o.Memo[activities.MemoModel] != "ranker" {
		t.Errorf("retrain options %+v", o)
	}
	if st.params.Settings.Model != "ranker" || st.params.CodeVersion != "abc123" || !strings.HasPrefix(st.params.Actor, "adaptrec/drift-check (drift check ") {
		t.Errorf("retrain params %+v", st.params)
	}
}

func TestDriftCheckSkipsWhileRetrainRuns(t *testing.T) {
	t.Parallel()
	f := &driftFake{report: flaggedReport(5), running: []activities.RetrainRun{{WorkflowID: "retrain-ranker-20261122T010000Z", Stage: StageShadow, Model: "ranker"}}}
	res := runDrift(t, f)
	if len(f.started) != 0 || res.Retrain != "" {
		t.Fatalf("a second retrain was started: %v", f.started)
	}
	if want := "skipped: retraining run retrain-ranker-20261122T010000Z is already running (stage shadow); no second run"; res.Note != want {
		t.Errorf("note %q, want %q", res.Note, want)
	}
	if !strings.HasPrefix(res.Reason, "drift: 5 of 20") {
		t.Errorf("the drift found is not reported: reason %q", res.Reason)
	}
}

func TestDriftCheckRefusesDisabledTrigger(t *testing.T) {
	t.Parallel()
	f := &driftFake{report: flaggedReport(5)}
	env := f.env(t)
	p := driftSettings()
	p.Settings.DriftWindow = 0
	env.ExecuteWorkflow(DriftCheck, p)
	if err := env.GetWorkflowError(); err == nil || !strings.Contains(err.Error(), "pipeline.drift_window is 0") {
		t.Fatalf("drift check with the trigger off: %v", err)
	}
	if len(f.requests) != 0 {
		t.Error("a skew report was made with the trigger off")
	}
}

func TestRetrainID(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 22, 3, 4, 5, 0, time.FixedZone("CET", 3600))
	for _, tc := range []struct{ trigger, want string }{
		{TriggerManual, "retrain-ranker-20261122T020405Z"},
		{TriggerDrift, "retrain-ranker-drift-20261122T02Z"},
		{TriggerDaily, "retrain-ranker-daily"},
	} {
		if got := RetrainID("ranker", tc.trigger, at); got != tc.want {
			t.Errorf("RetrainID(%q) = %q, want %q", tc.trigger, got, tc.want)
		}
	}
	// The names activities use in visibility queries are the workflow's.
	for _, c := range []struct{ got, want string }{
		{activities.SearchAttrNameStage, SearchAttrStage.GetName()},
		{activities.SearchAttrNameModelVersion, SearchAttrModelVersion.GetName()},
		{activities.SearchAttrNameOutcome, SearchAttrOutcome.GetName()},
	} {
		if c.got != c.want {
			t.Errorf("activities names search attribute %q, the workflow %q", c.got, c.want)
		}
	}
}
