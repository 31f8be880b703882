package workflows

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/trainer/job"
)

// Signals and queries of RetrainWorkflow (QueryStage is "stage").
const (
	// SignalApprove (a RetrainApproval) lets a run that waits for manual
	// approval go on to the canary.
	SignalApprove = "approve"
	// SignalAbort (a RetrainStop) stops a run at any stage; it compensates
	// (production stays on the version it had).
	SignalAbort = "abort"
	// SignalRollback (a RetrainStop) stops a run during the canary, or
	// rolls production back to the previous version after the cutover
	// while the run watches it.
	SignalRollback = "rollback"
	// QueryProgress returns a RetrainProgress.
	QueryProgress = "progress"
)

// Application error types that end a RetrainWorkflow run; each message
// names the metric, its value and the threshold. The error's details hold
// the RetrainResult.
const (
	ErrTypeDataContractViolation   = "DataContractViolation"
	ErrTypeEvaluationGateFailed    = "EvaluationGateFailed"
	ErrTypeShadowGateFailed        = "ShadowGateFailed"
	ErrTypeCanaryGuardrailBreached = "CanaryGuardrailBreached"
	// ErrTypeCanaryInconclusive ends a canary step that did not serve
	// enough requests within its hold to judge its guardrails.
	ErrTypeCanaryInconclusive = "CanaryInconclusive"
	ErrTypeApprovalTimedOut   = "ApprovalTimedOut"
	ErrTypeAborted            = "Aborted"
	ErrTypeRolledBack         = "RolledBack"
	// ErrTypeRetrainFailed wraps any other failure (an activity out of
	// retries, a conflicting alias change).
	ErrTypeRetrainFailed = "RetrainFailed"
)

// Search attributes RetrainWorkflow upserts as a run moves, so runs can be
// found in the Temporal UI (e.g. AdaptrecOutcome = "ShadowGateFailed").
// `adaptrec dev up` and internal/testenv register them on the dev server
// (devstack.TemporalSearchAttributes); on a real cluster create them once
// per namespace before starting runs:
//
//	temporal operator search-attribute create --namespace <ns> --name AdaptrecModelVersion --type Keyword
//	temporal operator search-attribute create --namespace <ns> --name AdaptrecStage --type Keyword
//	temporal operator search-attribute create --namespace <ns> --name AdaptrecOutcome --type Keyword
var (
	SearchAttrModelVersion = temporal.NewSearchAttributeKeyKeyword("AdaptrecModelVersion")
	SearchAttrStage        = temporal.NewSearchAttributeKeyKeyword("AdaptrecStage")
	SearchAttrOutcome      = temporal.NewSearchAttributeKeyKeyword("AdaptrecOutcome")
)

// Stages of a RetrainWorkflow run, in order (RetrainProgress.Stage, the
// AdaptrecStage search attribute and RetrainResult.Timings).
const (
	StageValidate    = "validate"
	StageTrainingSet = "training-set"
	StageTrain       = "train"
	StageEvaluate    = "evaluate"
	StageRegister    = "register"
	StageShadow      = "shadow"
	StageApproval    = "approval"
	StageCanary      = "canary"
	StageCutover     = "cutover"
	StageWatch       = "watch"
	StageDone        = "done"
)

// retrainStages orders the stages for RetrainProgress.StageIndex.
var retrainStages = []string{StageValidate, StageTrainingSet, StageTrain, StageEvaluate, StageRegister, StageShadow, StageApproval, StageCanary, StageCutover, StageWatch, StageDone}

// OutcomeSucceeded is the AdaptrecOutcome of a run that promoted its
// version; a failed run's outcome is its error type.
const OutcomeSucceeded = "Succeeded"

// RetrainParams configures a RetrainWorkflow run.
type RetrainParams struct {
	// Settings are the pipeline's settings (config.Pipeline): the model,
	// the training window, the data contract, the gates. The starter
	// copies them from the configuration, so a run keeps them.
	Settings config.Pipeline
	// Cutoff ends the training window (Settings.TrainingWindow before it
	// starts it); the start of the run's hour when zero.
	Cutoff time.Time
	// RequireApproval holds this run before the canary until it is
	// approved, whatever Settings.RequireApproval says.
	RequireApproval bool
	// Params are the training hyperparameters (zero: the defaults).
	Params job.Params
	// CodeVersion is recorded with the job and the version.
	CodeVersion string
	// Actor names who started the run, for the registry's change records.
	Actor string
	// Reason says why the run was started (`adaptrec retrain --reason`,
	// the daily schedule, the drift trigger's skew summary); it stays in
	// the run's parameters, so the history and the UI show it.
	Reason string
}

// RetrainApproval is the payload of SignalApprove.
type RetrainApproval struct {
	By, Comment string
}

// RetrainStop is the payload of SignalAbort and SignalRollback.
type RetrainStop struct {
	By, Reason string
}

// StageTiming is how long one stage took.
type StageTiming struct {
	Stage   string
	Seconds float64
}

// CanaryStep is what one canary step measured.
type CanaryStep struct {
	Weight  float64
	Seconds float64
	Report  activities.CanaryReport
}

// RetrainResult summarises a run; a failed run carries it in its error's
// details.
type RetrainResult struct {
	Model   string
	Version string
	// Previous is the production version when the run started ("" for
	// none); Production the version production has at the end.
	Previous, Production string
	From, To             time.Time
	Data                 activities.DataReport
	TrainingSet          activities.TrainingSetResult
	Training             activities.TrainResult
	Evaluation           activities.EvaluationReport
	Shadow               *activities.ShadowReport
	Canary               []CanaryStep
	// ApprovedBy is who approved the canary, when the run waited for it.
	ApprovedBy string
	// Outcome is OutcomeSucceeded or the error type; Reason says why.
	Outcome, Reason string
	// Notes record decisions made on the way (e.g. the GPU fallback).
	Notes   []string
	Timings []StageTiming
}

// RetrainProgress is the answer of QueryProgress.
type RetrainProgress struct {
	Stage string
	// StageIndex counts from 0 in the order of the stages; Stages is
	// their number.
	StageIndex, Stages int
	Version            string
	// Training is the last progress a training attempt reported.
	Training *activities.TrainingProgress
	// ShadowRequests of ShadowTarget were scored in shadow so far.
	ShadowRequests, ShadowTarget int64
	// CanaryStep (from 1) of CanarySteps serves CanaryWeight of traffic.
	CanaryStep, CanarySteps int
	CanaryWeight            float64
	Notes                   []string
}

// retrainRun is one run's state.
type retrainRun struct {
	ctx  workflow.Context
	work workflow.Context // canceled by a stop signal
	p    RetrainParams
	s    config.Pipeline
	res  RetrainResult
	prog RetrainProgress

	stageStart time.Time
	stop       *retrainStopped
	cutover    bool
}

type retrainStopped struct {
	kind string // ErrTypeAborted or ErrTypeRolledBack
	RetrainStop
}

// gateError is a gate's verdict: a typed, non-retryable failure.
func gateError(kind, format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), kind, nil)
}

// RetrainWorkflow retrains and promotes the ranker: it checks the data
// contract over the training window, builds the point-in-time training set,
// trains on the gpu-training task queue (falling back to the CPU queue's Go
// trainer when no GPU worker picks the task up within
// Settings.GPUScheduleToStart), evaluates the candidate against production
// on the same holdout, registers it, scores it in shadow on mirrored live
// traffic, optionally waits for approval, moves it through the canary
// steps with guardrails, and promotes it atomically (ExpectProduction),
// then watches it for Settings.PostCutoverWatch.
//
// Every gate that fails ends the run with its error type (DataContract-
// Violation, EvaluationGateFailed, ShadowGateFailed, ...). Compensation is
// saga-style: once a version is registered, any failure, abort or rollback
// takes it off shadow and canary and, after the cutover, rolls production
// back, so production is left on the version it had, with the reason in
// the registry's change record and in the run's history.
func RetrainWorkflow(ctx workflow.Context, p RetrainParams) (RetrainResult, error) {
	r := &retrainRun{ctx: ctx, p: p, s: p.Settings}
	r.res.Model = p.Settings.Model
	r.prog.Stages = len(retrainStages)
	if err := workflow.SetQueryHandler(ctx, QueryStage, func() (string, error) { return r.prog.Stage, nil }); err != nil {
		return r.res, err
	}
	if err := workflow.SetQueryHandler(ctx, QueryProgress, func() (RetrainProgress, error) { return r.prog, nil }); err != nil {
		return r.res, err
	}
	if err := p.Settings.Check(); err != nil {
		return r.res, temporal.NewNonRetryableApplicationError("retrain parameters: "+err.Error(), activities.ErrTypeInvalidParams, nil)
	}
	if r.p.Actor == "" {
		r.p.Actor = "adaptrec/retrain"
	}
	info := workflow.GetInfo(ctx)
	r.p.Actor += " (workflow " + info.WorkflowExecution.ID + ")"

	work, cancelWork := workflow.WithCancel(ctx)
	r.work = work
	abortCh := workflow.GetSignalChannel(ctx, SignalAbort)
	rollbackCh := workflow.GetSignalChannel(ctx, SignalRollback)
	workflow.Go(ctx, func(gctx workflow.Context) {
		var stop RetrainStop
		kind := ErrTypeAborted
		sel := workflow.NewSelector(gctx)
		sel.AddReceive(abortCh, func(c workflow.ReceiveChannel, _ bool) { c.Receive(gctx, &stop) })
		sel.AddReceive(rollbackCh, func(c workflow.ReceiveChannel, _ bool) { c.Receive(gctx, &stop); kind = ErrTypeRolledBack })
		sel.Select(gctx)
		r.stop = &retrainStopped{kind: kind, RetrainStop: stop}
		workflow.GetLogger(ctx).Warn("run stopped by signal", "signal", kind, "by", stop.By, "reason", stop.Reason, "stage", r.prog.Stage)
		cancelWork()
	})
	progressCh := workflow.GetSignalChannel(ctx, activities.SignalTrainingProgress)
	workflow.Go(ctx, func(gctx workflow.Context) {
		for {
			var tp activities.TrainingProgress
			progressCh.Receive(gctx, &tp)
			r.prog.Training = &tp
		}
	})

	err := r.run()
	r.enter(StageDone)
	if err == nil {
		r.res.Outcome = OutcomeSucceeded
		r.res.Production = r.res.Version
		r.upsert(SearchAttrOutcome.ValueSet(OutcomeSucceeded))
		return r.res, nil
	}
	return r.res, r.fail(err)
}

// fail classifies err, compensates and returns the run's error.
func (r *retrainRun) fail(err error) error {
	kind, msg := ErrTypeRetrainFailed, err.Error()
	var appErr *temporal.ApplicationError
	switch {
	case r.stop != nil:
		kind = r.stop.kind
		what := "aborted"
		if kind == ErrTypeRolledBack {
			what = "rolled back"
		}
		msg = fmt.Sprintf("%s by %s during %s: %s", what, orUnknown(r.stop.By), r.res.lastStage(), orUnknown(r.stop.Reason))
	case errors.As(err, &appErr) && IsGate(appErr.Type()):
		kind, msg = appErr.Type(), appErr.Message()
	}
	r.res.Outcome, r.res.Reason = kind, msg
	logger := workflow.GetLogger(r.ctx)
	logger.Error("retrain run failed", "outcome", kind, "reason", msg)
	if r.res.Version != "" {
		// Compensate on a context that a canceled run still has.
		cctx := r.ctx
		if r.ctx.Err() != nil {
			cctx, _ = workflow.NewDisconnectedContext(r.ctx)
		}
		var w activities.WithdrawResult
		reason := fmt.Sprintf("retrain run %s: %s: %s", workflow.GetInfo(r.ctx).WorkflowExecution.ID, kind, msg)
		werr := workflow.ExecuteActivity(aliasOptions(cctx), (*activities.Retrain).Withdraw, activities.WithdrawRequest{
			Model: r.s.Model, Version: r.res.Version, Rollback: r.cutover, Actor: r.p.Actor, Reason: reason,
		}).Get(cctx, &w)
		if werr != nil {
			msg += fmt.Sprintf("; COMPENSATION FAILED, %s may still hold aliases: %v", r.res.Version, werr)
			r.res.Reason = msg
		} else {
			r.res.Production = w.Production
			if len(w.Cleared) > 0 {
				r.res.Notes = append(r.res.Notes, fmt.Sprintf("compensation: took %s off %s; production is %s",
					r.res.Version, strings.Join(w.Cleared, ", "), orNone(w.Production)))
			}
			logger.Info("compensated", "version", r.res.Version, "cleared", w.Cleared, "production", w.Production)
		}
	} else {
		r.res.Production = r.res.Previous
	}
	r.upsert(SearchAttrOutcome.ValueSet(kind))
	cause := err
	if kind != ErrTypeRetrainFailed {
		cause = nil // the message says it all; a cause would repeat it
	}
	return temporal.NewNonRetryableApplicationError(msg, kind, cause, r.res)
}

// IsGate reports whether a run's outcome (an error type) is a gate's
// verdict: the pipeline kept production on its version by design, not
// because something broke.
func IsGate(kind string) bool {
	switch kind {
	case ErrTypeDataContractViolation, ErrTypeEvaluationGateFailed, ErrTypeShadowGateFailed,
		ErrTypeCanaryGuardrailBreached, ErrTypeCanaryInconclusive, ErrTypeApprovalTimedOut:
		return true
	}
	return false
}

func (res *RetrainResult) lastStage() string {
	if len(res.Timings) == 0 {
		return StageValidate
	}
	return res.Timings[len(res.Timings)-1].Stage
}

func orUnknown(s string) string {
	if s == "" {
		return "(not given)"
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return registry.None
	}
	return s
}

// enter records the end of the current stage and starts the next.
func (r *retrainRun) enter(stage string) {
	now := workflow.Now(r.ctx)
	if r.prog.Stage != "" && r.prog.Stage != StageDone {
		r.res.Timings = append(r.res.Timings, StageTiming{Stage: r.prog.Stage, Seconds: now.Sub(r.stageStart).Seconds()})
	}
	r.prog.Stage, r.stageStart = stage, now
	for i, s := range retrainStages {
		if s == stage {
			r.prog.StageIndex = i
		}
	}
	r.upsert(SearchAttrStage.ValueSet(stage))
}

func (r *retrainRun) note(format string, args ...any) {
	n := fmt.Sprintf(format, args...)
	r.res.Notes = append(r.res.Notes, n)
	r.prog.Notes = r.res.Notes
	workflow.GetLogger(r.ctx).Info(n)
}

func (r *retrainRun) upsert(u ...temporal.SearchAttributeUpdate) {
	if err := workflow.UpsertTypedSearchAttributes(r.ctx, u...); err != nil {
		workflow.GetLogger(r.ctx).Warn("search attributes not updated", "err", err)
	}
}

// shortOptions are for the activities that read or write a little.
func shortOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			MaximumAttempts:        5,
			NonRetryableErrorTypes: []string{activities.ErrTypeInvalidParams},
		},
	})
}

// aliasOptions are for alias changes: retried, but never on a conflict
// (the run decided on a state that no longer is) or an invalid change.
func aliasOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			MaximumAttempts:        10,
			NonRetryableErrorTypes: []string{activities.ErrTypeInvalidParams, activities.ErrTypeConflict},
		},
	})
}

// longOptions are for scans and builds that heartbeat.
func longOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 2 * time.Hour,
		HeartbeatTimeout:    2 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        5 * time.Second,
			MaximumAttempts:        3,
			NonRetryableErrorTypes: []string{activities.ErrTypeInvalidParams, activities.ErrTypeInvalidLayout, activities.ErrTypeRegistryRefused},
		},
	})
}

// runID derives the run's job and training-set id from its start and
// run id: stable across replays and retries, unique per run.
func (r *retrainRun) runID() string {
	info := workflow.GetInfo(r.ctx)
	h := fnv.New32a()
	h.Write([]byte(info.WorkflowExecution.ID + "/" + info.WorkflowExecution.RunID))
	return fmt.Sprintf("%s-%08x", info.WorkflowStartTime.UTC().Format("20060102T150405Z"), h.Sum32())
}

func (r *retrainRun) run() error {
	var a *activities.Retrain
	var t *activities.Training
	s := r.s
	r.res.To = r.p.Cutoff
	if r.res.To.IsZero() {
		r.res.To = workflow.Now(r.ctx).UTC().Truncate(time.Hour)
	}
	r.res.From = r.res.To.Add(-s.TrainingWindow)

	r.enter(StageValidate)
	var al registry.Aliases
	if err := workflow.ExecuteActivity(shortOptions(r.work), a.CurrentAliases, s.Model).Get(r.work, &al); err != nil {
		return fmt.Errorf("read the aliases of %s: %w", s.Model, err)
	}
	r.res.Previous = al.Production
	expect := orNone(al.Production)
	contract := activities.DataContract{MinRows: s.MinRows, MaxRowChange: s.MaxRowChange, MaxNullRate: s.MaxNullRate, MaxPosition: s.MaxPosition, MaxStaleness: s.MaxStaleness}
	dreq := activities.DataRequest{Model: s.Model, Previous: al.Production, From: r.res.From, To: r.res.To, Contract: contract}
	if err := workflow.ExecuteActivity(longOptions(r.work), a.ValidateData, dreq).Get(r.work, &r.res.Data); err != nil {
		return fmt.Errorf("validate the data of [%s, %s): %w", r.res.From.Format(time.RFC3339), r.res.To.Format(time.RFC3339), err)
	}
	if v := r.res.Data.Violations; len(v) > 0 {
		return gateError(ErrTypeDataContractViolation, "data contract of %s over [%s, %s) violated: %s",
			r.res.Data.Topic, r.res.From.Format(time.RFC3339), r.res.To.Format(time.RFC3339), strings.Join(v, "; "))
	}

	r.enter(StageTrainingSet)
	id := r.runID()
	treq := activities.TrainingSetRequest{ID: id, From: r.res.From, To: r.res.To}
	if err := workflow.ExecuteActivity(longOptions(r.work), a.BuildTrainingSet, treq).Get(r.work, &r.res.TrainingSet); err != nil {
		return fmt.Errorf("build training set %s: %w", id, err)
	}

	r.enter(StageTrain)
	params := r.p.Params
	if params.Gap == 0 {
		params.Gap = job.Duration(s.SplitGap)
	}
	if err := r.train(t, activities.TrainRequest{JobID: id, TrainingSet: r.res.TrainingSet.ID, Params: params, CodeVersion: r.p.CodeVersion}); err != nil {
		return err
	}
	if sp := r.res.Training.Split; sp.TrainRows > 0 {
		r.note("split: trained on %d examples before %s; %d examples in the %s gap before the holdout dropped (pipeline.split_gap); holdout %d examples from %s",
			sp.TrainRows, sp.TrainEnd.UTC().Format(time.RFC3339), sp.GapRows, time.Duration(sp.Gap), sp.ValidationRows, sp.Cutoff.UTC().Format(time.RFC3339))
	}

	r.enter(StageEvaluate)
	ereq := activities.EvaluateRequest{Model: s.Model, JobPrefix: r.res.Training.Prefix, Production: al.Production}
	if err := workflow.ExecuteActivity(longOptions(r.work), a.Evaluate, ereq).Get(r.work, &r.res.Evaluation); err != nil {
		return fmt.Errorf("evaluate training job %s: %w", r.res.Training.JobID, err)
	}
	if err := evaluationGate(r.res.Evaluation, s); err != nil {
		return err
	}

	r.enter(StageRegister)
	var reg activities.RegisteredVersion
	rreq := activities.RegisterVersionRequest{Model: s.Model, JobPrefix: r.res.Training.Prefix, Actor: r.p.Actor,
		Reason: fmt.Sprintf("retrain run %s: job %s on training set %s", workflow.GetInfo(r.ctx).WorkflowExecution.ID, r.res.Training.JobID, r.res.TrainingSet.ID)}
	if err := workflow.ExecuteActivity(longOptions(r.work), a.RegisterVersion, rreq).Get(r.work, &reg); err != nil {
		return fmt.Errorf("register training job %s: %w", r.res.Training.JobID, err)
	}
	r.res.Version, r.prog.Version = reg.Version, reg.Version
	r.upsert(SearchAttrModelVersion.ValueSet(reg.Version))
	if reg.Warning != "" {
		r.note("registered %s: %s", reg.Version, reg.Warning)
	}

	if al.Production == "" {
		// Nothing serves to compare with or to mirror from: the first
		// version goes to production on its offline gates alone.
		r.note("no production version of %s: %s is promoted without shadow or canary", s.Model, reg.Version)
		if err := r.approval(); err != nil {
			return err
		}
		return r.promote(expect)
	}
	if err := r.shadow(expect); err != nil {
		return err
	}
	if err := r.approval(); err != nil {
		return err
	}
	baseline, err := r.canary(expect)
	if err != nil {
		return err
	}
	if err := r.promote(expect); err != nil {
		return err
	}
	return r.watch(baseline)
}

// train runs the training activity on the GPU queue and, when no GPU
// worker takes it within the schedule-to-start timeout, on the CPU queue.
func (r *retrainRun) train(t *activities.Training, req activities.TrainRequest) error {
	s := r.s
	retry := &temporal.RetryPolicy{
		InitialInterval:        10 * time.Second,
		BackoffCoefficient:     2,
		MaximumAttempts:        int32(s.TrainingAttempts),
		NonRetryableErrorTypes: []string{activities.ErrTypeInvalidParams, activities.ErrTypeInvalidLayout},
	}
	gpu := workflow.WithActivityOptions(r.work, workflow.ActivityOptions{
		TaskQueue:              activities.TaskQueueGPUTraining,
		ScheduleToStartTimeout: s.GPUScheduleToStart,
		StartToCloseTimeout:    s.TrainingTimeout,
		HeartbeatTimeout:       s.TrainingHeartbeat,
		RetryPolicy:            retry,
	})
	err := workflow.ExecuteActivity(gpu, t.TrainModel, req).Get(r.work, &r.res.Training)
	var te *temporal.TimeoutError
	if !errors.As(err, &te) || te.TimeoutType() != enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START {
		if err != nil {
			return fmt.Errorf("train job %s on %s: %w", req.JobID, activities.TaskQueueGPUTraining, err)
		}
		return nil
	}
	r.note("no GPU worker polled %s within %s; trained on CPU", activities.TaskQueueGPUTraining, s.GPUScheduleToStart)
	// Its own folder: a GPU attempt that lost its worker may still write.
	req.JobID += "-cpu"
	r.prog.Training = nil
	cpu := workflow.WithActivityOptions(r.work, workflow.ActivityOptions{
		TaskQueue:           activities.TaskQueueDefault,
		StartToCloseTimeout: s.TrainingTimeout,
		HeartbeatTimeout:    s.TrainingHeartbeat,
		RetryPolicy:         retry,
	})
	if err := workflow.ExecuteActivity(cpu, t.TrainModel, req).Get(r.work, &r.res.Training); err != nil {
		return fmt.Errorf("train job %s on %s: %w", req.JobID, activities.TaskQueueDefault, err)
	}
	return nil
}

// evaluationGate fails when the candidate's AUC or NDCG is more than the
// allowed drop below production's on the same holdout.
func evaluationGate(e activities.EvaluationReport, s config.Pipeline) error {
	if e.Production == nil {
		return nil
	}
	var failed []string
	for _, m := range []struct {
		name       string
		cand, prod float64
		maxDrop    float64
		key        string
	}{
		{"AUC", e.Candidate.AUC, e.Production.AUC, s.MaxAUCDrop, "max_auc_drop"},
		{fmt.Sprintf("NDCG@%d", e.K), e.Candidate.NDCG, e.Production.NDCG, s.MaxNDCGDrop, "max_ndcg_drop"},
	} {
		if drop := m.prod - m.cand; drop > m.maxDrop {
			failed = append(failed, fmt.Sprintf("%s %.4f is %.4f below production %s's %.4f, more than %s %v",
				m.name, m.cand, drop, e.ProductionVersion, m.prod, m.key, m.maxDrop))
		}
	}
	if len(failed) > 0 {
		return gateError(ErrTypeEvaluationGateFailed, "on the holdout of training set %s (%d rows after %s): %s",
			e.TrainingSet, e.Rows, e.Cutoff.UTC().Format(time.RFC3339), strings.Join(failed, "; "))
	}
	return nil
}

// shadowGate judges a shadow report.
func shadowGate(rep activities.ShadowReport, s config.Pipeline, waited time.Duration) error {
	var failed []string
	if rep.Requests < s.ShadowMinRequests {
		failed = append(failed, fmt.Sprintf("requests: %d mirrored requests scored in %s, fewer than shadow_min_requests %d", rep.Requests, waited, s.ShadowMinRequests))
	}
	if rep.ScoreCorrelation < s.ShadowMinCorrelation {
		failed = append(failed, fmt.Sprintf("score correlation with production %.3f, below shadow_min_correlation %v", rep.ScoreCorrelation, s.ShadowMinCorrelation))
	}
	if maxMs := float64(s.ShadowMaxLatencyP99) / float64(time.Millisecond); rep.LatencyP99Ms > maxMs {
		failed = append(failed, fmt.Sprintf("latency p99 %.1f ms, above shadow_max_latency_p99 %s", rep.LatencyP99Ms, s.ShadowMaxLatencyP99))
	}
	if rep.ErrorRate > s.ShadowMaxErrorRate {
		failed = append(failed, fmt.Sprintf("error rate %.4f, above shadow_max_error_rate %v", rep.ErrorRate, s.ShadowMaxErrorRate))
	}
	if len(failed) > 0 {
		return gateError(ErrTypeShadowGateFailed, "shadow %s: %s", rep.ShadowVersion, strings.Join(failed, "; "))
	}
	return nil
}

// guardrails judges the canary's online metrics; baselineCTR < 0 means no
// production CTR to compare with.
func guardrails(c activities.ArmStats, baselineCTR float64, s config.Pipeline) []string {
	var failed []string
	if baselineCTR > 0 {
		if drop := (baselineCTR - c.CTR) / baselineCTR; drop > s.CanaryMaxCTRDrop {
			failed = append(failed, fmt.Sprintf("CTR %.4f is %.0f%% below production's %.4f, more than canary_max_ctr_drop %.0f%%",
				c.CTR, 100*drop, baselineCTR, 100*s.CanaryMaxCTRDrop))
		}
	}
	if er := c.ErrorRate(); er > s.CanaryMaxErrorRate {
		failed = append(failed, fmt.Sprintf("error rate %.4f (%d of %d requests), above canary_max_error_rate %v", er, c.Errors, c.Requests, s.CanaryMaxErrorRate))
	}
	if maxMs := float64(s.CanaryMaxLatencyP99) / float64(time.Millisecond); c.LatencyP99Ms > maxMs {
		failed = append(failed, fmt.Sprintf("latency p99 %.1f ms, above canary_max_latency_p99 %s", c.LatencyP99Ms, s.CanaryMaxLatencyP99))
	}
	return failed
}

func (r *retrainRun) change(ch registry.Change) error {
	ch.Actor = r.p.Actor
	var al registry.Aliases
	return workflow.ExecuteActivity(aliasOptions(r.work), (*activities.Retrain).ApplyAlias, activities.AliasRequest{Model: r.s.Model, Change: ch}).Get(r.work, &al)
}

// shadow mirrors live traffic to the version until it scored
// ShadowMinRequests or ShadowMaxDuration passed, then judges the report
// and takes the version off shadow.
func (r *retrainRun) shadow(expect string) error {
	s := r.s
	r.enter(StageShadow)
	r.prog.ShadowTarget = s.ShadowMinRequests
	if err := r.change(registry.Change{Action: registry.ActionShadow, Version: r.res.Version, ExpectProduction: expect,
		Reason: "retrain: shadow evaluation"}); err != nil {
		return fmt.Errorf("make %s the shadow: %w", r.res.Version, err)
	}
	start := workflow.Now(r.ctx)
	var rep activities.ShadowReport
	for {
		if err := workflow.Sleep(r.work, s.ShadowCheckInterval); err != nil {
			return err
		}
		now := workflow.Now(r.ctx)
		req := activities.ShadowRequest{Version: r.res.Version, From: start, To: now}
		if err := workflow.ExecuteActivity(shortOptions(r.work), (*activities.Retrain).ShadowReport, req).Get(r.work, &rep); err != nil {
			return fmt.Errorf("shadow report of %s: %w", r.res.Version, err)
		}
		r.prog.ShadowRequests = rep.Requests
		if rep.Requests >= s.ShadowMinRequests || now.Sub(start) >= s.ShadowMaxDuration {
			break
		}
	}
	r.res.Shadow = &rep
	if err := shadowGate(rep, s, workflow.Now(r.ctx).Sub(start)); err != nil {
		return err
	}
	var w activities.WithdrawResult
	wreq := activities.WithdrawRequest{Model: s.Model, Version: r.res.Version, Actor: r.p.Actor, Reason: "retrain: shadow gate passed"}
	if err := workflow.ExecuteActivity(aliasOptions(r.work), (*activities.Retrain).Withdraw, wreq).Get(r.work, &w); err != nil {
		return fmt.Errorf("end the shadow of %s: %w", r.res.Version, err)
	}
	return nil
}

// approval waits for SignalApprove when the run needs it.
func (r *retrainRun) approval() error {
	if !r.p.RequireApproval && !r.s.RequireApproval {
		return nil
	}
	r.enter(StageApproval)
	var ok RetrainApproval
	approved := false
	sel := workflow.NewSelector(r.work)
	sel.AddReceive(workflow.GetSignalChannel(r.ctx, SignalApprove), func(c workflow.ReceiveChannel, _ bool) {
		c.Receive(r.work, &ok)
		approved = true
	})
	sel.AddFuture(workflow.NewTimer(r.work, r.s.ApprovalTimeout), func(workflow.Future) {})
	sel.Select(r.work)
	if r.stop != nil {
		return r.work.Err()
	}
	if !approved {
		return gateError(ErrTypeApprovalTimedOut, "approval: %s waited %s (approval_timeout) for the %q signal", r.res.Version, r.s.ApprovalTimeout, SignalApprove)
	}
	r.res.ApprovedBy = orUnknown(ok.By)
	r.note("approved by %s: %s", r.res.ApprovedBy, ok.Comment)
	return nil
}

// canary serves the version to each step's share of traffic for
// CanaryHold, judging its guardrails every CanaryCheckInterval, and
// returns production's CTR as the baseline it measured (-1 for none).
func (r *retrainRun) canary(expect string) (float64, error) {
	s := r.s
	r.enter(StageCanary)
	r.prog.CanarySteps = len(s.CanarySteps)
	baseline := -1.0
	for i, w := range s.CanarySteps {
		r.prog.CanaryStep, r.prog.CanaryWeight = i+1, w
		if err := r.change(registry.Change{Action: registry.ActionCanary, Version: r.res.Version, Weight: w, ExpectProduction: expect,
			Reason: fmt.Sprintf("retrain: canary step %d of %d", i+1, len(s.CanarySteps))}); err != nil {
			return baseline, fmt.Errorf("canary %s at %v: %w", r.res.Version, w, err)
		}
		start := workflow.Now(r.ctx)
		var rep activities.CanaryReport
		for {
			if err := workflow.Sleep(r.work, s.CanaryCheckInterval); err != nil {
				return baseline, err
			}
			now := workflow.Now(r.ctx)
			req := activities.CanaryRequest{Canary: r.res.Version, Production: r.res.Previous, From: start, To: now}
			if err := workflow.ExecuteActivity(shortOptions(r.work), (*activities.Retrain).CanaryReport, req).Get(r.work, &rep); err != nil {
				return baseline, fmt.Errorf("canary report of %s: %w", r.res.Version, err)
			}
			if rep.Production.Requests >= s.CanaryMinRequests && rep.Production.Impressions > 0 {
				baseline = rep.Production.CTR
			}
			if rep.Canary.Requests >= s.CanaryMinRequests {
				if failed := guardrails(rep.Canary, baseline, s); len(failed) > 0 {
					r.res.Canary = append(r.res.Canary, CanaryStep{Weight: w, Seconds: now.Sub(start).Seconds(), Report: rep})
					return baseline, gateError(ErrTypeCanaryGuardrailBreached, "canary %s at %.0f%% of traffic (step %d of %d, %d requests): %s; rolled back",
						r.res.Version, 100*w, i+1, len(s.CanarySteps), rep.Canary.Requests, strings.Join(failed, "; "))
				}
			}
			if now.Sub(start) >= s.CanaryHold {
				break
			}
		}
		r.res.Canary = append(r.res.Canary, CanaryStep{Weight: w, Seconds: workflow.Now(r.ctx).Sub(start).Seconds(), Report: rep})
		if rep.Canary.Requests < s.CanaryMinRequests {
			return baseline, gateError(ErrTypeCanaryInconclusive, "canary %s at %.0f%% of traffic (step %d of %d) served %d requests in its %s hold, fewer than canary_min_requests %d: its guardrails cannot be judged",
				r.res.Version, 100*w, i+1, len(s.CanarySteps), rep.Canary.Requests, s.CanaryHold, s.CanaryMinRequests)
		}
	}
	return baseline, nil
}

// promote makes the version production in one compare-and-swap on the
// production version the run started from.
func (r *retrainRun) promote(expect string) error {
	r.enter(StageCutover)
	if err := r.change(registry.Change{Action: registry.ActionPromote, Version: r.res.Version, ExpectProduction: expect,
		Reason: "retrain: every gate passed"}); err != nil {
		return fmt.Errorf("promote %s: %w", r.res.Version, err)
	}
	r.cutover = true
	r.res.Production = r.res.Version
	return nil
}

// watch keeps the guardrails on the new production for PostCutoverWatch;
// a breach or SignalRollback rolls it back (fail compensates).
func (r *retrainRun) watch(baseline float64) error {
	s := r.s
	if s.PostCutoverWatch <= 0 {
		return nil
	}
	r.enter(StageWatch)
	start := workflow.Now(r.ctx)
	for workflow.Now(r.ctx).Sub(start) < s.PostCutoverWatch {
		if err := workflow.Sleep(r.work, min(s.CanaryCheckInterval, s.PostCutoverWatch-workflow.Now(r.ctx).Sub(start))); err != nil {
			return err
		}
		var rep activities.CanaryReport
		req := activities.CanaryRequest{Canary: r.res.Version, Production: r.res.Previous, From: start, To: workflow.Now(r.ctx)}
		if err := workflow.ExecuteActivity(shortOptions(r.work), (*activities.Retrain).CanaryReport, req).Get(r.work, &rep); err != nil {
			return fmt.Errorf("online report of %s after the cutover: %w", r.res.Version, err)
		}
		if rep.Canary.Requests < s.CanaryMinRequests {
			continue
		}
		if failed := guardrails(rep.Canary, baseline, s); len(failed) > 0 {
			return gateError(ErrTypeCanaryGuardrailBreached, "production %s after the cutover (%d requests): %s; rolled back to %s",
				r.res.Version, rep.Canary.Requests, strings.Join(failed, "; "), r.res.Previous)
		}
	}
	return nil
}
