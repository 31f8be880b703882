package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/predictions"
)

// BatchPredictionsParams configures a BatchPredictions run. Zero values
// mean the worker's configuration (config predictions.*).
type BatchPredictionsParams struct {
	// AsOf ends the window of interactions that make a user active; the
	// workflow's start time when zero.
	AsOf time.Time
	// K is how many items each user's list holds.
	K int
	// ActiveWindow is how far back before AsOf an interaction counts.
	ActiveWindow time.Duration
	// MinCoverage is the least share of active users that must get a list.
	MinCoverage float64
}

// BatchPredictionsResult summarises a BatchPredictions run.
type BatchPredictionsResult struct {
	AsOf      time.Time
	Computed  activities.PredictionsComputed
	Published activities.PredictionsPublished
}

// ErrTypePredictionsRejected is the application error type of a
// BatchPredictions run whose version failed validation; the pointer did not
// move, and the error's details hold the BatchPredictionsResult.
const ErrTypePredictionsRejected = "PredictionsRejected"

// BatchPredictions precomputes the top K items of every active user with
// the production model through the serving pipeline into a new version
// predictions_vN, validated as it is written (activity
// ComputePredictions), then, only if every check passed, makes it current
// with one atomic pointer flip that keeps the replaced version as the
// rollback target and prunes old versions (PublishPredictions). A rejected
// version leaves the pointer as it was and fails the run with
// ErrTypePredictionsRejected naming every failed check and its values.
func BatchPredictions(ctx workflow.Context, p BatchPredictionsParams) (BatchPredictionsResult, error) {
	stage := "computing predictions"
	if err := workflow.SetQueryHandler(ctx, QueryStage, func() (string, error) { return stage, nil }); err != nil {
		return BatchPredictionsResult{}, err
	}
	res := BatchPredictionsResult{AsOf: p.AsOf}
	if res.AsOf.IsZero() {
		res.AsOf = workflow.Now(ctx).UTC()
	}
	var a *activities.BatchPredictions

	computeCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 4 * time.Hour,
		HeartbeatTimeout:    time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        10 * time.Second,
			MaximumAttempts:        3,
			NonRetryableErrorTypes: []string{"InvalidParams", "InvalidConfig"},
		},
	})
	req := activities.PredictionsRequest{AsOf: res.AsOf, K: p.K, ActiveWindow: p.ActiveWindow, MinCoverage: p.MinCoverage}
	if err := workflow.ExecuteActivity(computeCtx, a.ComputePredictions, req).Get(ctx, &res.Computed); err != nil {
		return res, fmt.Errorf("compute batch predictions as of %s: %w", res.AsOf.Format(time.RFC3339), err)
	}
	if m := res.Computed.Meta; m.Rejected() {
		stage = "rejected"
		msg := fmt.Sprintf("%s (model %s@%s, %d of %d active users) rejected, the pointer did not move: %s",
			m.Name(), m.Model, m.ModelVersion, m.Users, m.ActiveUsers, predictions.Describe(m.Failures))
		if res.Computed.Errors > 0 {
			msg += fmt.Sprintf(" (%d users failed to rank, first: %s)", res.Computed.Errors, res.Computed.FirstError)
		}
		return res, temporal.NewNonRetryableApplicationError(msg, ErrTypePredictionsRejected, nil, res)
	}

	stage = "publishing predictions"
	publishCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		// The flip is one command; pruning old versions dominates.
		StartToCloseTimeout: 30 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			MaximumAttempts:        5,
			NonRetryableErrorTypes: []string{"InvalidParams", "InvalidConfig", activities.ErrTypePredictionsConflict},
		},
	})
	if err := workflow.ExecuteActivity(publishCtx, a.PublishPredictions, res.Computed.Meta.Version).Get(ctx, &res.Published); err != nil {
		return res, fmt.Errorf("make %s current: %w", res.Computed.Meta.Name(), err)
	}
	stage = "done"
	return res, nil
}
