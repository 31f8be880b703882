package workflows

import (
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/features/batch"
	"github.com/adaptrec/adaptrec/features/snapshot"
)

// BatchFeaturesParams configures a BatchFeatures run.
type BatchFeaturesParams struct {
	// AsOf is the data cutoff; the start of the current UTC day (workflow
	// time) when zero, the daily schedule's case.
	AsOf time.Time
	// Groups are the batch groups; every group the batch job computes when
	// empty.
	Groups []string
	// WorldID names a simulated world whose catalogue provides item
	// metadata; "" for none.
	WorldID string
	// Validation bounds what a snapshot may look like to become current.
	Validation batch.ValidationOptions
}

// BatchFeaturesResult summarises a BatchFeatures run.
type BatchFeaturesResult struct {
	AsOf     time.Time
	Prepared activities.FeaturesPrepared
	// Current are the pointers of the groups whose new snapshot became
	// current, in the order of Prepared.Candidates.
	Current []snapshot.Pointer
	// History lists "group/version" of snapshots kept as history (a later
	// cutoff is current); Rejected "group/version: failures" of those that
	// failed validation.
	History, Rejected []string
}

// ErrTypeSnapshotRejected is the application error type of a BatchFeatures
// run in which a snapshot failed validation; its details hold the
// BatchFeaturesResult.
const ErrTypeSnapshotRejected = "SnapshotRejected"

// BatchFeatures computes batch-feature snapshots from the event log
// (activity PrepareSnapshots: compute, write, validate), then makes each
// valid one current and announces it (PublishSnapshot, one per group).
// Groups are independent: a rejected group keeps its current snapshot while
// the others move on, and the run then fails with ErrTypeSnapshotRejected
// naming every failed check, so it shows in the UI and alerts.
func BatchFeatures(ctx workflow.Context, p BatchFeaturesParams) (BatchFeaturesResult, error) {
	stage := "computing snapshots"
	if err := workflow.SetQueryHandler(ctx, QueryStage, func() (string, error) { return stage, nil }); err != nil {
		return BatchFeaturesResult{}, err
	}
	res := BatchFeaturesResult{AsOf: p.AsOf}
	if res.AsOf.IsZero() {
		res.AsOf = workflow.Now(ctx).UTC().Truncate(24 * time.Hour)
	}
	var a *activities.BatchFeatures

	prepareCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Hour,
		HeartbeatTimeout:    time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        5 * time.Second,
			MaximumAttempts:        3,
			NonRetryableErrorTypes: []string{"InvalidParams", "InvalidConfig"},
		},
	})
	req := activities.FeaturesRequest{AsOf: res.AsOf, Groups: p.Groups, WorldID: p.WorldID, Validation: p.Validation}
	if err := workflow.ExecuteActivity(prepareCtx, a.PrepareSnapshots, req).Get(ctx, &res.Prepared); err != nil {
		return res, fmt.Errorf("prepare snapshots as of %s: %w", res.AsOf.Format(time.RFC3339), err)
	}

	stage = "publishing snapshots"
	publishCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		// Loading user records into the online store (Preload) dominates.
		StartToCloseTimeout: 30 * time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			MaximumAttempts:        5,
			NonRetryableErrorTypes: []string{"InvalidParams", "InvalidConfig", "Conflict"},
		},
	})
	var failed []string
	for _, c := range res.Prepared.Candidates {
		switch {
		case !c.Valid():
			var checks []string
			for _, f := range c.Failures {
				checks = append(checks, f.String())
			}
			res.Rejected = append(res.Rejected, c.Group+"/"+c.Version+": "+strings.Join(checks, "; "))
		case !c.Flip:
			res.History = append(res.History, c.Group+"/"+c.Version)
		default:
			var ptr snapshot.Pointer
			if err := workflow.ExecuteActivity(publishCtx, a.PublishSnapshot, c).Get(ctx, &ptr); err != nil {
				failed = append(failed, fmt.Sprintf("publish %s/%s: %v", c.Group, c.Version, err))
				continue
			}
			res.Current = append(res.Current, ptr)
		}
	}
	stage = "done"
	if len(res.Rejected) > 0 || len(failed) > 0 {
		msg := strings.Join(append(append([]string(nil), res.Rejected...), failed...), "; ")
		return res, temporal.NewNonRetryableApplicationError("batch features as of "+res.AsOf.Format(time.RFC3339)+": "+msg, ErrTypeSnapshotRejected, nil, res)
	}
	return res, nil
}
