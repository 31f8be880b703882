package workflows

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/trainer/job"
)

const (
	prodV = "20261101T000000Z-aaaaaaaa"
	candV = "20261122T030000Z-bbbbbbbb"
)

// retrainFake is a scripted world for RetrainWorkflow: every activity is
// mocked, and what the workflow asked of the registry is recorded.
type retrainFake struct {
	production string
	data       activities.DataReport
	eval       activities.EvaluationReport
	shadow     activities.ShadowReport
	// canary returns the report of the canary check at weight w.
	canary func(w float64, req activities.CanaryRequest) activities.CanaryReport
	// gpuMissing makes the gpu-training queue time out on schedule-to-start.
	gpuMissing bool
	// trainFor is how long training takes (test time).
	trainFor time.Duration

	mu        sync.Mutex
	changes   []registry.Change
	withdraws []activities.WithdrawRequest
	trained   []string // task queue/job id of each training
	gaps      []job.Duration
	weight    float64
	stages    []string
	outcomes  []string
}

func healthyFake() *retrainFake {
	f := &retrainFake{
		production: prodV,
		data:       activities.DataReport{Topic: "adaptrec.interactions.v1", Impressions: 50000, Events: 80000},
		eval: activities.EvaluationReport{TrainingSet: "ts", Rows: 5000, K: 10, ProductionVersion: prodV,
			Candidate: activities.OfflineMetrics{AUC: 0.74, NDCG: 0.41}, Production: &activities.OfflineMetrics{AUC: 0.73, NDCG: 0.40}},
		shadow: activities.ShadowReport{ShadowVersion: candV, Requests: 5000, Matched: 5000, ScoreCorrelation: 0.9, LatencyP50Ms: 2, LatencyP99Ms: 9, ErrorRate: 0},
	}
	f.canary = func(w float64, req activities.CanaryRequest) activities.CanaryReport {
		return activities.CanaryReport{
			Canary:     activities.ArmStats{ModelVersion: req.Canary, Requests: 1000, Impressions: 10000, Clicks: 1000, CTR: 0.1, LatencyP99Ms: 10},
			Production: activities.ArmStats{ModelVersion: req.Production, Requests: 1000, Impressions: 10000, Clicks: 1000, CTR: 0.1, LatencyP99Ms: 10},
		}
	}
	return f
}

func testSettings() config.Pipeline {
	s := config.Default().Pipeline
	s.PostCutoverWatch = 0
	return s
}

// env returns a test environment with every activity mocked by f.
func (f *retrainFake) env(t *testing.T) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetStartTime(time.Date(2026, 11, 22, 3, 17, 0, 0, time.UTC))
	var a *activities.Retrain
	var tr *activities.Training
	env.OnActivity(a.CurrentAliases, mock.Anything, "ranker").Return(func(context.Context, string) (registry.Aliases, error) {
		return registry.Aliases{Model: "ranker", Production: f.production, Revision: 7}, nil
	})
	env.OnActivity(a.ValidateData, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.DataRequest) (activities.DataReport, error) {
		if req.Previous != f.production || !req.To.Equal(time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)) || req.To.Sub(req.From) != 7*24*time.Hour {
			return activities.DataReport{}, errors.New("unexpected data request")
		}
		return f.data, nil
	})
	env.OnActivity(a.BuildTrainingSet, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.TrainingSetRequest) (activities.TrainingSetResult, error) {
		return activities.TrainingSetResult{ID: req.ID, Rows: 50000, Positives: 5000}, nil
	})
	train := env.OnActivity(tr.TrainModel, mock.Anything, mock.Anything).Return(func(ctx context.Context, req activities.TrainRequest) (activities.TrainResult, error) {
		q := activity.GetInfo(ctx).TaskQueue
		f.mu.Lock()
		f.trained = append(f.trained, q+"/"+req.JobID)
		f.gaps = append(f.gaps, req.Params.Gap)
		f.mu.Unlock()
		if q == activities.TaskQueueGPUTraining && f.gpuMissing {
			return activities.TrainResult{}, temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START, nil)
		}
		split := job.Split{Cutoff: time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC), Gap: req.Params.Gap, TrainRows: 40000, GapRows: 100, ValidationRows: 9900}
		split.TrainEnd = split.Cutoff.Add(-time.Duration(max(split.Gap, 0)))
		return activities.TrainResult{JobID: req.JobID, Prefix: "training-jobs/" + req.JobID + "/", TaskQueue: q, Trainer: "go", Split: split}, nil
	})
	if f.trainFor > 0 {
		train.After(f.trainFor)
	}
	env.OnActivity(a.Evaluate, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.EvaluateRequest) (activities.EvaluationReport, error) {
		if req.Production != f.production {
			return activities.EvaluationReport{}, errors.New("evaluated against the wrong production")
		}
		return f.eval, nil
	})
	env.OnActivity(a.RegisterVersion, mock.Anything, mock.Anything).Return(activities.RegisteredVersion{Version: candV}, nil)
	env.OnActivity(a.ApplyAlias, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.AliasRequest) (registry.Aliases, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if req.Change.ExpectProduction != orNone(f.production) {
			return registry.Aliases{}, temporal.NewNonRetryableApplicationError("production moved", activities.ErrTypeConflict, nil)
		}
		f.changes = append(f.changes, req.Change)
		if req.Change.Action == registry.ActionCanary {
			f.weight = req.Change.Weight
		}
		return registry.Aliases{Model: "ranker"}, nil
	})
	env.OnActivity(a.Withdraw, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.WithdrawRequest) (activities.WithdrawResult, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.withdraws = append(f.withdraws, req)
		return activities.WithdrawResult{Cleared: []string{"canary"}, Production: f.production}, nil
	})
	env.OnActivity(a.ShadowReport, mock.Anything, mock.Anything).Return(func(context.Context, activities.ShadowRequest) (activities.ShadowReport, error) {
		return f.shadow, nil
	})
	env.OnActivity(a.CanaryReport, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.CanaryRequest) (activities.CanaryReport, error) {
		f.mu.Lock()
		w := f.weight
		f.mu.Unlock()
		return f.canary(w, req), nil
	})
	env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
		sa := args.Get(0).(temporal.SearchAttributes)
		f.mu.Lock()
		defer f.mu.Unlock()
		if v, ok := sa.GetKeyword(SearchAttrStage); ok {
			f.stages = append(f.stages, v)
		}
		if v, ok := sa.GetKeyword(SearchAttrOutcome); ok {
			f.outcomes = append(f.outcomes, v)
		}
	}).Return(nil)
	return env
}

// actions lists the alias changes as "action weight".
func (f *retrainFake) actions() string {
	var out []string
	for _, c := range f.changes {
		s := string(c.Action)
		if c.Weight > 0 {
			s += " " + strconv.FormatFloat(c.Weight, 'g', -1, 64)
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}

// wantFailure checks the run failed with kind and a message containing
// every want, and returns the result in the error's details.
func wantFailure(t *testing.T, env *testsuite.TestWorkflowEnvironment, kind string, want ...string) RetrainResult {
	t.Helper()
	err := env.GetWorkflowError()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != kind {
		t.Fatalf("want a %s error, got %v", kind, err)
	}
	for _, w := range want {
		if !strings.Contains(appErr.Error(), w) {
			t.Errorf("error %q does not contain %q", appErr.Error(), w)
		}
	}
	var res RetrainResult
	if err := appErr.Details(&res); err != nil {
		t.Fatal(err)
	}
	if res.Outcome != kind {
		t.Errorf("result outcome %q, want %q", res.Outcome, kind)
	}
	return res
}

func TestRetrainPromotesThroughEveryGate(t *testing.T) {
	t.Parallel()
	f := healthyFake()
	env := f.env(t)
	env.ExecuteWorkflow(RetrainWorkflow, RetrainParams{Settings: testSettings()})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res RetrainResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Outcome != OutcomeSucceeded || res.Version != candV || res.Production != candV || res.Previous != prodV {
		t.Errorf("result %+v", res)
	}
	if got, want := f.actions(), "shadow, canary 0.05, canary 0.25, canary 0.5, canary 1, promote"; got != want {
		t.Errorf("alias changes %q, want %q", got, want)
	}
	for _, c := range f.changes {
		if c.ExpectProduction != prodV || !strings.Contains(c.Actor, "workflow ") {
			t.Errorf("change %+v: not guarded by production %s or no actor", c, prodV)
		}
	}
	if len(f.withdraws) != 1 || f.withdraws[0].Rollback || f.withdraws[0].Version != candV {
		t.Errorf("withdraws %+v, want only the end of the shadow", f.withdraws)
	}
	if len(f.trained) != 1 || !strings.HasPrefix(f.trained[0], activities.TaskQueueGPUTraining+"/20261122T031700Z-") {
		t.Errorf("trained %v, want once on the GPU queue", f.trained)
	}
	if len(res.Canary) != 4 || res.Shadow == nil || res.Shadow.Requests != 5000 {
		t.Errorf("canary steps %d, shadow %+v", len(res.Canary), res.Shadow)
	}
	var stages []string
	for _, st := range res.Timings {
		stages = append(stages, st.Stage)
	}
	if got := strings.Join(stages, ","); got != "validate,training-set,train,evaluate,register,shadow,canary,cutover" {
		t.Errorf("timed stages %s", got)
	}
	if got := strings.Join(f.stages, ","); got != "validate,training-set,train,evaluate,register,shadow,canary,cutover,done" {
		t.Errorf("AdaptrecStage upserts %s", got)
	}
	if len(f.outcomes) != 1 || f.outcomes[0] != OutcomeSucceeded {
		t.Errorf("AdaptrecOutcome upserts %v", f.outcomes)
	}
	q, err := env.QueryWorkflow(QueryProgress)
	if err != nil {
		t.Fatal(err)
	}
	var p RetrainProgress
	if err := q.Get(&p); err != nil {
		t.Fatal(err)
	}
	if p.Stage != StageDone || p.Version != candV || p.CanaryStep != 4 || p.CanaryWeight != 1 || p.ShadowRequests != 5000 {
		t.Errorf("progress %+v", p)
	}
	env.AssertExpectations(t)
}

func TestRetrainGateFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(f *retrainFake)
		kind  string
		want  []string
		// registered: the version was registered, so it must be withdrawn.
		registered bool
		// changes are the alias changes made before the failure.
		changes string
	}{
		{
			name: "data contract",
			setup: func(f *retrainFake) {
				f.data.Violations = []string{"null rate: item_id is empty in 900 of 50000 impressions (0.0180), above max_null_rate 0.01"}
			},
			kind: ErrTypeDataContractViolation,
			want: []string{"data contract of adaptrec.interactions.v1 over [2026-11-15T03:00:00Z, 2026-11-22T03:00:00Z) violated", "item_id", "0.0180", "max_null_rate 0.01"},
		},
		{
			name: "AUC drop",
			setup: func(f *retrainFake) {
				f.eval.Candidate.AUC = 0.70
			},
			kind: ErrTypeEvaluationGateFailed,
			want: []string{"AUC 0.7000 is 0.0300 below production " + prodV + "'s 0.7300, more than max_auc_drop 0.01"},
		},
		{
			name: "NDCG drop",
			setup: func(f *retrainFake) {
				f.eval.Candidate.NDCG = 0.35
			},
			kind: ErrTypeEvaluationGateFailed,
			want: []string{"NDCG@10 0.3500 is 0.0500 below production", "max_ndcg_drop 0.01"},
		},
		{
			name: "shadow correlation",
			setup: func(f *retrainFake) {
				f.shadow.ScoreCorrelation = 0.2
			},
			kind: ErrTypeShadowGateFailed, registered: true, changes: "shadow",
			want: []string{"score correlation with production 0.200, below shadow_min_correlation 0.5"},
		},
		{
			name: "shadow latency and errors",
			setup: func(f *retrainFake) {
				f.shadow.LatencyP99Ms, f.shadow.ErrorRate = 80, 0.05
			},
			kind: ErrTypeShadowGateFailed, registered: true, changes: "shadow",
			want: []string{"latency p99 80.0 ms, above shadow_max_latency_p99 50ms", "error rate 0.0500, above shadow_max_error_rate 0.01"},
		},
		{
			name: "shadow traffic",
			setup: func(f *retrainFake) {
				f.shadow.Requests = 12
			},
			kind: ErrTypeShadowGateFailed, registered: true, changes: "shadow",
			want: []string{"requests: 12 mirrored requests scored in 1h0m0s, fewer than shadow_min_requests 1000"},
		},
		{
			name: "canary CTR",
			setup: func(f *retrainFake) {
				healthy := f.canary
				f.canary = func(w float64, req activities.CanaryRequest) activities.CanaryReport {
					rep := healthy(w, req)
					if w == 0.25 {
						rep.Canary.Clicks, rep.Canary.CTR = 700, 0.07
					}
					return rep
				}
			},
			kind: ErrTypeCanaryGuardrailBreached, registered: true, changes: "shadow, canary 0.05, canary 0.25",
			want: []string{"canary " + candV + " at 25% of traffic (step 2 of 4", "CTR 0.0700 is 30% below production's 0.1000, more than canary_max_ctr_drop 10%", "rolled back"},
		},
		{
			name: "canary errors",
			setup: func(f *retrainFake) {
				healthy := f.canary
				f.canary = func(w float64, req activities.CanaryRequest) activities.CanaryReport {
					rep := healthy(w, req)
					rep.Canary.Errors = 50
					return rep
				}
			},
			kind: ErrTypeCanaryGuardrailBreached, registered: true, changes: "shadow, canary 0.05",
			want: []string{"error rate 0.0500 (50 of 1000 requests), above canary_max_error_rate 0.01"},
		},
		{
			name: "canary latency",
			setup: func(f *retrainFake) {
				healthy := f.canary
				f.canary = func(w float64, req activities.CanaryRequest) activities.CanaryReport {
					rep := healthy(w, req)
					if w == 1 {
						rep.Canary.LatencyP99Ms = 75
					}
					return rep
				}
			},
			kind: ErrTypeCanaryGuardrailBreached, registered: true, changes: "shadow, canary 0.05, canary 0.25, canary 0.5, canary 1",
			want: []string{"at 100% of traffic (step 4 of 4", "latency p99 75.0 ms, above canary_max_latency_p99 50ms"},
		},
		{
			name: "canary without traffic",
			setup: func(f *retrainFake) {
				healthy := f.canary
				f.canary = func(w float64, req activities.CanaryRequest) activities.CanaryReport {
					rep := healthy(w, req)
					rep.Canary.Requests = 10
					return rep
				}
			},
			kind: ErrTypeCanaryInconclusive, registered: true, changes: "shadow, canary 0.05",
			want: []string{"served 10 requests in its 15m0s hold, fewer than canary_min_requests 200"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := healthyFake()
			tt.setup(f)
			env := f.env(t)
			env.ExecuteWorkflow(RetrainWorkflow, RetrainParams{Settings: testSettings()})
			res := wantFailure(t, env, tt.kind, tt.want...)
			if got := f.actions(); got != tt.changes {
				t.Errorf("alias changes %q, want %q", got, tt.changes)
			}
			if res.Production != prodV {
				t.Errorf("production %q at the end, want %s", res.Production, prodV)
			}
			if !tt.registered {
				if res.Version != "" || len(f.withdraws) != 0 {
					t.Errorf("version %q, withdraws %+v: nothing should be registered or withdrawn", res.Version, f.withdraws)
				}
				return
			}
			last := f.withdraws[len(f.withdraws)-1]
			if last.Version != candV || last.Rollback || !strings.Contains(last.Reason, tt.kind) {
				t.Errorf("compensation %+v, want %s withdrawn without a rollback, the reason naming %s", last, candV, tt.kind)
			}
			if len(f.outcomes) != 1 || f.outcomes[0] != tt.kind {
				t.Errorf("AdaptrecOutcome upserts %v, want [%s]", f.outcomes, tt.kind)
			}
		})
	}
}

func TestRetrainFallsBackToCPU(t *testing.T) {
	t.Parallel()
	f := healthyFake()
	f.gpuMissing = true
	env := f.env(t)
	s := testSettings()
	s.GPUScheduleToStart = 3 * time.Minute
	env.ExecuteWorkflow(RetrainWorkflow, RetrainParams{Settings: s})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res RetrainResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if len(f.trained) != 2 || !strings.HasPrefix(f.trained[0], activities.TaskQueueGPUTraining+"/") ||
		!strings.HasPrefix(f.trained[1], activities.TaskQueueDefault+"/") || !strings.HasSuffix(f.trained[1], "-cpu") {
		t.Errorf("trained %v, want the GPU queue then the CPU queue in its own folder", f.trained)
	}
	want := "no GPU worker polled gpu-training within 3m0s; trained on CPU"
	if len(res.Notes) == 0 || res.Notes[0] != want || res.Training.TaskQueue != activities.TaskQueueDefault {
		t.Errorf("notes %q, trained on %q; want %q", res.Notes, res.Training.TaskQueue, want)
	}
}

// TestRetrainSplitGap: pipeline.split_gap reaches the training job unless
// the run's parameters set a gap of their own, and the run notes the split.
func TestRetrainSplitGap(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		settings time.Duration
		params   job.Duration
		want     job.Duration
		note     string
	}{
		{"default", 0, 0, 0, "split: trained on 40000 examples before 2026-11-22T02:00:00Z; 100 examples in the 0s gap"},
		{"setting", 5 * time.Second, 0, job.Duration(5 * time.Second), "before 2026-11-22T01:59:55Z; 100 examples in the 5s gap before the holdout dropped (pipeline.split_gap); holdout 9900 examples from 2026-11-22T02:00:00Z"},
		{"params win", 5 * time.Second, job.Duration(time.Minute), job.Duration(time.Minute), "in the 1m0s gap"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := healthyFake()
			env := f.env(t)
			s := testSettings()
			s.SplitGap = tc.settings
			env.ExecuteWorkflow(RetrainWorkflow, RetrainParams{Settings: s, Params: job.Params{Gap: tc.params}})
			var res RetrainResult
			if err := env.GetWorkflowResult(&res); err != nil {
				t.Fatal(err)
			}
			if len(f.gaps) != 1 || f.gaps[0] != tc.want {
				t.Errorf("training gaps %v, want [%v]", f.gaps, tc.want)
			}
			if !strings.Contains(strings.Join(res.Notes, "\n"), tc.note) {
				t.Errorf("notes %q, want one saying %q", res.Notes, tc.note)
			}
		})
	}
}

func TestRetrainManualApproval(t *testing.T) {
	t.Parallel()
	t.Run("approved", func(t *testing.T) {
		t.Parallel()
		f := healthyFake()
		env := f.env(t)
		env.RegisterDelayedCallback(func() {
			q, err := env.QueryWorkflow(QueryStage)
			var stage string
			if err == nil {
				err = q.Get(&stage)
			}
			if err != nil || stage != StageApproval {
				t.Errorf("stage %q (%v) when approving, want %s", stage, err, StageApproval)
			}
			if got := f.actions(); got != "shadow" {
				t.Errorf("alias changes before the approval %q, want only the shadow", got)
			}
			env.SignalWorkflow(SignalApprove, RetrainApproval{By: "alice", Comment: "looks good"})
		}, 5*time.Hour)
		env.ExecuteWorkflow(RetrainWorkflow, RetrainParams{Settings: testSettings(), RequireApproval: true})
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		var res RetrainResult
		if err := env.GetWorkflowResult(&res); err != nil {
			t.Fatal(err)
		}
		if res.ApprovedBy != "alice" || res.Production != candV {
			t.Errorf("approved by %q, production %q", res.ApprovedBy, res.Production)
		}
		if got := f.actions(); !strings.HasSuffix(got, "canary 1, promote") {
			t.Errorf("alias changes %q", got)
		}
	})
	t.Run("never approved", func(t *testing.T) {
		t.Parallel()
		f := healthyFake()
		env := f.env(t)
		s := testSettings()
		s.RequireApproval = true
		s.ApprovalTimeout = 6 * time.Hour
		env.ExecuteWorkflow(RetrainWorkflow, RetrainParams{Settings: s})
		wantFailure(t, env, ErrTypeApprovalTimedOut, candV+" waited 6h0m0s (approval_timeout) for the \"approve\" signal")
		if got := f.actions(); got != "shadow" {
			t.Errorf("alias changes %q, want no canary without approval", got)
		}
		if len(f.withdraws) != 2 {
			t.Errorf("withdraws %+v, want the shadow's end and the compensation", f.withdraws)
		}
	})
}

func TestRetrainStopSignals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		signal string
		at     time.Duration
		watch  time.Duration
		kind   string
		want   []string
		// changes made before the stop; rollback: the compensation rolls
		// production back.
		changes  string
		rollback bool
	}{
		{name: "abort in shadow", signal: SignalAbort, at: 30 * time.Second, kind: ErrTypeAborted, changes: "shadow",
			want: []string{"aborted by bob during shadow: stale features"}},
		{name: "abort in canary", signal: SignalAbort, at: 20 * time.Minute, kind: ErrTypeAborted, changes: "shadow, canary 0.05, canary 0.25",
			want: []string{"aborted by bob during canary: stale features"}},
		{name: "rollback in canary", signal: SignalRollback, at: 35 * time.Minute, kind: ErrTypeRolledBack, changes: "shadow, canary 0.05, canary 0.25, canary 0.5, canary 1",
			want: []string{"rolled back by bob during canary"}},
		{name: "rollback after cutover", signal: SignalRollback, at: 70 * time.Minute, watch: time.Hour, kind: ErrTypeRolledBack,
			changes: "shadow, canary 0.05, canary 0.25, canary 0.5, canary 1, promote", rollback: true,
			want: []string{"rolled back by bob during watch"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := healthyFake()
			env := f.env(t)
			s := testSettings()
			s.CanaryHold, s.ShadowCheckInterval, s.PostCutoverWatch = 10*time.Minute, time.Minute, tt.watch
			env.RegisterDelayedCallback(func() { env.SignalWorkflow(tt.signal, RetrainStop{By: "bob", Reason: "stale features"}) }, tt.at)
			env.ExecuteWorkflow(RetrainWorkflow, RetrainParams{Settings: s})
			res := wantFailure(t, env, tt.kind, tt.want...)
			if got := f.actions(); got != tt.changes {
				t.Errorf("alias changes %q, want %q", got, tt.changes)
			}
			last := f.withdraws[len(f.withdraws)-1]
			if last.Version != candV || last.Rollback != tt.rollback || !strings.Contains(last.Reason, tt.kind) || !strings.Contains(last.Reason, "stale features") {
				t.Errorf("compensation %+v, want %s withdrawn (rollback %t) with the reason", last, candV, tt.rollback)
			}
			if res.Production != prodV {
				t.Errorf("production %q at the end, want %s", res.Production, prodV)
			}
		})
	}
}

func TestRetrainAbortBeforeRegistration(t *testing.T) {
	t.Parallel()
	f := healthyFake()
	// Training takes an hour of test time; the abort comes first and
	// cancels it.
	f.trainFor = time.Hour
	env := f.env(t)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalAbort, RetrainStop{By: "carol", Reason: "wrong window"}) }, time.Minute)
	env.ExecuteWorkflow(RetrainWorkflow, RetrainParams{Settings: testSettings()})
	res := wantFailure(t, env, ErrTypeAborted, "aborted by carol during train: wrong window")
	if res.Version != "" || len(f.withdraws) != 0 || len(f.changes) != 0 {
		t.Errorf("version %q, withdraws %v, changes %v: nothing was registered, nothing to undo", res.Version, f.withdraws, f.changes)
	}
}

func TestRetrainWatchRollsBackOnBreach(t *testing.T) {
	t.Parallel()
	f := healthyFake()
	healthy := f.canary
	f.canary = func(w float64, req activities.CanaryRequest) activities.CanaryReport {
		rep := healthy(w, req)
		f.mu.Lock()
		promoted := len(f.changes) > 0 && f.changes[len(f.changes)-1].Action == registry.ActionPromote
		f.mu.Unlock()
		if promoted {
			rep.Canary.Clicks, rep.Canary.CTR = 500, 0.05
		}
		return rep
	}
	env := f.env(t)
	s := testSettings()
	s.PostCutoverWatch = time.Hour
	env.ExecuteWorkflow(RetrainWorkflow, RetrainParams{Settings: s})
	wantFailure(t, env, ErrTypeCanaryGuardrailBreached, "production "+candV+" after the cutover", "CTR 0.0500 is 50% below production's 0.1000", "rolled back to "+prodV)
	last := f.withdraws[len(f.withdraws)-1]
	if !last.Rollback || last.Version != candV {
		t.Errorf("compensation %+v, want a rollback of %s", last, candV)
	}
}

func TestRetrainFirstVersionSkipsLiveGates(t *testing.T) {
	t.Parallel()
	f := healthyFake()
	f.production = ""
	f.eval.Production, f.eval.ProductionVersion = nil, ""
	env := f.env(t)
	env.ExecuteWorkflow(RetrainWorkflow, RetrainParams{Settings: testSettings()})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if got := f.actions(); got != "promote" {
		t.Errorf("alias changes %q, want only the promotion", got)
	}
	if f.changes[0].ExpectProduction != registry.None {
		t.Errorf("promotion expects production %q, want %q", f.changes[0].ExpectProduction, registry.None)
	}
}

func TestRetrainRejectsBadSettings(t *testing.T) {
	t.Parallel()
	f := healthyFake()
	env := f.env(t)
	s := testSettings()
	s.CanarySteps = []float64{0.5, 0.25}
	env.ExecuteWorkflow(RetrainWorkflow, RetrainParams{Settings: s})
	err := env.GetWorkflowError()
	if err == nil || !strings.Contains(err.Error(), "config key pipeline.canary_steps: [0.5 0.25]") {
		t.Fatalf("got %v, want the bad canary steps named", err)
	}
}
