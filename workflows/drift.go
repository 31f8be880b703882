package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/features/skew"
	"github.com/adaptrec/adaptrec/internal/config"
)

// Triggers of a RetrainWorkflow run, in its workflow id (RetrainID).
const (
	// TriggerManual is `adaptrec retrain`.
	TriggerManual = ""
	// TriggerDaily is the daily Schedule.
	TriggerDaily = "daily"
	// TriggerDrift is the drift check.
	TriggerDrift = "drift"
)

// RetrainID is the workflow id of a RetrainWorkflow run of model started
// at at by trigger: retrain-<model>-<yyyymmddThhmmssZ> for a manual run,
// retrain-<model>-drift-<yyyymmddThhZ> for the drift trigger (one per
// hour, so a check run twice in an hour cannot start two). The daily
// Schedule's runs are retrain-<model>-daily-<scheduled time>, the id
// Temporal gives a Schedule's action retrain-<model>-daily.
func RetrainID(model, trigger string, at time.Time) string {
	at = at.UTC()
	switch trigger {
	case TriggerManual:
		return "retrain-" + model + "-" + at.Format("20060102T150405Z")
	case TriggerDrift:
		return "retrain-" + model + "-drift-" + at.Format("20060102T15Z")
	}
	return "retrain-" + model + "-" + trigger
}

// RetrainMemo is the memo every starter gives a RetrainWorkflow run
// (activities.MemoModel, activities.MemoReason), which listings read.
func RetrainMemo(model, reason string) map[string]any {
	return map[string]any{activities.MemoModel: model, activities.MemoReason: reason}
}

// DriftCheckParams configures a DriftCheck run.
type DriftCheckParams struct {
	// Settings are the pipeline's settings: the model, the drift window
	// and thresholds, and the settings of the retrain it may start.
	Settings config.Pipeline
	// At ends the window of served traffic compared; the start of the
	// run's hour when zero.
	At time.Time
	// CodeVersion is passed on to the retrain.
	CodeVersion string
	// Actor names who started the check ("adaptrec/drift-check" when
	// empty); the retrain's actor names the check.
	Actor string
}

// DriftCheckResult is what a DriftCheck run found and did.
type DriftCheckResult struct {
	Report activities.DriftReport
	// Reason is the drift summary recorded as the retrain's reason (set
	// when the drift was beyond the threshold, retrain or not).
	Reason string
	// Retrain is the workflow id of the RetrainWorkflow run started, ""
	// when none was; Note says why not, or what happened.
	Retrain, RetrainRunID string
	Note                  string
}

// DriftCheck compares the features the production model was served with
// over the last Settings.DriftWindow (archived PredictionEvents) with its
// training set (the features/skew report). When more than
// Settings.DriftMaxFlagged value columns are flagged it starts a
// RetrainWorkflow run as a child that outlives it (parent close policy
// ABANDON), with the drift summary as the run's Reason, under a workflow
// id fixed per hour (RetrainID with TriggerDrift) that is never reused: a
// check repeated within the hour cannot start a second run. It starts
// none while a retraining run of the model is running (the result's Note
// names it).
func DriftCheck(ctx workflow.Context, p DriftCheckParams) (DriftCheckResult, error) {
	var res DriftCheckResult
	s := p.Settings
	if err := s.Check(); err != nil {
		return res, temporal.NewNonRetryableApplicationError("drift check parameters: "+err.Error(), activities.ErrTypeInvalidParams, nil)
	}
	if s.DriftWindow <= 0 {
		return res, temporal.NewNonRetryableApplicationError("config key pipeline.drift_window is 0: the drift trigger is off", activities.ErrTypeInvalidParams, nil)
	}
	at := p.At
	if at.IsZero() {
		at = workflow.Now(ctx).UTC().Truncate(time.Hour)
	}
	var d *activities.Drift
	req := activities.DriftRequest{Model: s.Model, From: at.Add(-s.DriftWindow), To: at,
		Thresholds: skew.Thresholds{MeanShift: s.DriftMeanShift, PSI: s.DriftPSI, DefaultRate: s.DriftDefaultRate}}
	opts := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 5 * time.Second, MaximumAttempts: 3,
			NonRetryableErrorTypes: []string{activities.ErrTypeInvalidParams},
		},
	})
	if err := workflow.ExecuteActivity(opts, d.DriftReport, req).Get(ctx, &res.Report); err != nil {
		return res, fmt.Errorf("skew report of %s over [%s, %s): %w", s.Model, req.From.Format(time.RFC3339), req.To.Format(time.RFC3339), err)
	}
	rep := res.Report
	logger := workflow.GetLogger(ctx)
	switch {
	case rep.Production == "":
		res.Note = fmt.Sprintf("%s has no production version: no served features to compare; no retrain", s.Model)
	case rep.Flagged <= s.DriftMaxFlagged:
		res.Note = fmt.Sprintf("%d of %d value columns flagged (%d judged on %d sampled predictions), not more than drift_max_flagged %d: no retrain",
			rep.Flagged, rep.Columns, rep.Judged, rep.Served.Sampled, s.DriftMaxFlagged)
	}
	if res.Note != "" {
		logger.Info(res.Note)
		return res, nil
	}
	res.Reason = DriftReason(rep, s.DriftMaxFlagged)

	var m *activities.ModelChange
	var running []activities.RetrainRun
	if err := workflow.ExecuteActivity(shortOptions(ctx), m.ActiveRetrains, s.Model).Get(ctx, &running); err != nil {
		return res, fmt.Errorf("find the running retraining runs of %s: %w", s.Model, err)
	}
	if len(running) > 0 {
		r := running[0]
		res.Note = fmt.Sprintf("skipped: retraining run %s is already running (stage %s); no second run", r.WorkflowID, orUnknown(r.Stage))
		logger.Info(res.Note, "reason", res.Reason)
		return res, nil
	}

	actor := p.Actor
	if actor == "" {
		actor = "adaptrec/drift-check"
	}
	id := RetrainID(s.Model, TriggerDrift, at)
	cctx := workflow.WithChildOptions(ctx, driftRetrainOptions(id, s.Model, res.Reason))
	child := workflow.ExecuteChildWorkflow(cctx, RetrainWorkflow, RetrainParams{
		Settings: s, CodeVersion: p.CodeVersion, Reason: res.Reason,
		Actor: actor + " (drift check " + workflow.GetInfo(ctx).WorkflowExecution.ID + ")",
	})
	var exec workflow.Execution
	err := child.GetChildWorkflowExecution().Get(ctx, &exec)
	if isAlreadyStarted(err) {
		res.Note = fmt.Sprintf("skipped: the drift retrain of this hour, %s, was already started", id)
		logger.Info(res.Note)
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("start retraining run %s: %w", id, err)
	}
	res.Retrain, res.RetrainRunID = exec.ID, exec.RunID
	res.Note = "retrain started: " + exec.ID
	logger.Info("drift beyond the threshold: retrain started", "workflow", exec.ID, "reason", res.Reason)
	return res, nil
}

// driftRetrainOptions start the drift trigger's retrain: it outlives the
// check, and its id is never reused.
func driftRetrainOptions(id, model, reason string) workflow.ChildWorkflowOptions {
	return workflow.ChildWorkflowOptions{
		WorkflowID:            id,
		ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_ABANDON,
		WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		Memo:                  RetrainMemo(model, reason),
	}
}

func isAlreadyStarted(err error) bool {
	var e *temporal.ChildWorkflowExecutionAlreadyStartedError
	return errors.As(err, &e)
}

// DriftReason summarises a drift report in one line, the most severe
// columns first: "drift: 7 of 23 value columns flagged (more than
// drift_max_flagged 3) in 4200 predictions of [from, to) against training
// set ts of production v: user_ctr_30d mean shift 2.3 sd, ...".
func DriftReason(rep activities.DriftReport, maxFlagged int) string {
	const shown = 5
	var parts []string
	for i, f := range rep.Features {
		if i == shown {
			parts = append(parts, fmt.Sprintf("and %d more", len(rep.Features)-shown))
			break
		}
		parts = append(parts, describeSkew(f))
	}
	return fmt.Sprintf("drift: %d of %d value columns flagged (more than drift_max_flagged %d) in %d predictions of [%s, %s) against training set %s of production %s: %s",
		rep.Flagged, rep.Columns, maxFlagged, rep.Served.Sampled, rep.From.UTC().Format(time.RFC3339), rep.To.UTC().Format(time.RFC3339),
		rep.TrainingSet, rep.Production, strings.Join(parts, ", "))
}

// describeSkew names a flagged column with what it exceeded.
func describeSkew(f skew.FeatureSkew) string {
	var what []string
	for _, r := range f.Reasons {
		switch r {
		case skew.ReasonMeanShift:
			what = append(what, fmt.Sprintf("mean shift %.1f sd", f.MeanShift))
		case skew.ReasonPSI:
			what = append(what, fmt.Sprintf("PSI %.2f", f.PSI))
		case skew.ReasonDefaultRate:
			what = append(what, fmt.Sprintf("default rate %+.0f pp", 100*f.DefaultRateDiff))
		default:
			what = append(what, r)
		}
	}
	return f.Name + " " + strings.Join(what, " and ")
}
