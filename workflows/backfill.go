// Package workflows holds adaptrec's Temporal workflows. Workflows are thin
// and deterministic: they sequence activities (package activities), hold
// gates and compensation, and do no I/O themselves.
package workflows

import (
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/events"
)

// BackfillParams configures a HistoryBackfill run.
type BackfillParams struct {
	History activities.HistoryRequest
	// ArchiveTimeout bounds the wait for the archiver; default 30 minutes.
	ArchiveTimeout time.Duration
}

// BackfillResult summarises a HistoryBackfill run.
type BackfillResult struct {
	History activities.HistoryResult
	Archive activities.ArchiveStatus
}

// Query names answered by HistoryBackfill.
const QueryStage = "stage"

// HistoryBackfill publishes a simulated world's history to the event log and
// waits until the archiver has made all of it durable in the offline store.
// It is how a fresh environment gets the training history later workflows
// read, and it is visible step by step in the Temporal UI.
func HistoryBackfill(ctx workflow.Context, p BackfillParams) (BackfillResult, error) {
	var res BackfillResult
	stage := "publishing history"
	if err := workflow.SetQueryHandler(ctx, QueryStage, func() (string, error) { return stage, nil }); err != nil {
		return res, err
	}
	if p.History.Events <= 0 {
		return res, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("history.events must be > 0, got %d", p.History.Events), "InvalidParams", nil)
	}
	if p.ArchiveTimeout == 0 {
		p.ArchiveTimeout = 30 * time.Minute
	}
	var a *activities.Backfill

	publishCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Minute,
		// Progress heartbeats let a retried attempt resume where the last
		// one stopped instead of republishing everything.
		HeartbeatTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			MaximumAttempts:        5,
			NonRetryableErrorTypes: []string{"InvalidParams"},
		},
	})
	// Nothing of this run can be in objects written before it started.
	publishing := workflow.Now(ctx)
	if err := workflow.ExecuteActivity(publishCtx, a.PublishHistory, p.History).Get(ctx, &res.History); err != nil {
		return res, fmt.Errorf("publish history: %w", err)
	}

	stage = "waiting for the archiver"
	awaitCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: p.ArchiveTimeout,
		HeartbeatTimeout:    30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	wait := activities.ArchiveWait{
		Topic:    events.TopicInteractions,
		Producer: activities.HistoryProducer(p.History.WorldID),
		// The event log keeps millisecond times and the end is exclusive.
		From:         res.History.FirstEvent.Truncate(time.Millisecond),
		To:           res.History.LastEvent.Truncate(time.Millisecond).Add(time.Millisecond),
		Want:         int64(res.History.Published),
		WrittenAfter: publishing,
	}
	if err := workflow.ExecuteActivity(awaitCtx, a.AwaitArchived, wait).Get(ctx, &res.Archive); err != nil {
		return res, fmt.Errorf("wait for the archiver: %w", err)
	}
	stage = "done"
	return res, nil
}
