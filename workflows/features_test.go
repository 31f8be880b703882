package workflows

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/features/batch"
	"github.com/adaptrec/adaptrec/features/snapshot"
)

func candidate(group string, valid, flip bool) batch.Candidate {
	c := batch.Candidate{Group: group, Version: "20261122T000000Z-0000000" + group[:1], Flip: flip, Rows: 10}
	if !valid {
		c.Failures = []batch.Failure{{Check: batch.CheckRange, Feature: group + "_ctr", Detail: "values span [0, 1.4], outside [0, 1]"}}
	}
	return c
}

func TestBatchFeaturesPublishesValidSnapshots(t *testing.T) {
	t.Parallel()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	start := time.Date(2026, 11, 22, 2, 30, 0, 0, time.UTC)
	env.SetStartTime(start)
	var a *activities.BatchFeatures
	prepared := activities.FeaturesPrepared{Events: 1000, Candidates: []batch.Candidate{
		candidate("user_batch", true, true), candidate("item_batch", true, true), candidate("old_batch", true, false),
	}}
	env.OnActivity(a.PrepareSnapshots, mock.Anything, mock.MatchedBy(func(r activities.FeaturesRequest) bool {
		// No cutoff given: the start of the day of the run.
		return r.AsOf.Equal(time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)) && r.WorldID == "w1" && r.Validation.MaxMeanShift == 2
	})).Return(prepared, nil).Once()
	for _, c := range prepared.Candidates[:2] {
		env.OnActivity(a.PublishSnapshot, mock.Anything, c).Return(snapshot.Pointer{Group: c.Group, Version: c.Version}, nil).Once()
	}
	env.ExecuteWorkflow(BatchFeatures, BatchFeaturesParams{WorldID: "w1", Validation: batch.ValidationOptions{MaxMeanShift: 2}})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res BatchFeaturesResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if len(res.Current) != 2 || res.Current[1].Group != "item_batch" || len(res.History) != 1 || !strings.HasPrefix(res.History[0], "old_batch/") || len(res.Rejected) != 0 {
		t.Errorf("result %+v", res)
	}
	env.AssertExpectations(t)
}

func TestBatchFeaturesReportsRejectedSnapshots(t *testing.T) {
	t.Parallel()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	var a *activities.BatchFeatures
	asOf := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	good, bad := candidate("user_batch", true, true), candidate("item_batch", false, true)
	env.OnActivity(a.PrepareSnapshots, mock.Anything, mock.MatchedBy(func(r activities.FeaturesRequest) bool { return r.AsOf.Equal(asOf) })).
		Return(activities.FeaturesPrepared{Candidates: []batch.Candidate{bad, good}}, nil).Once()
	// Only the valid snapshot is published; the rejected one never is.
	env.OnActivity(a.PublishSnapshot, mock.Anything, good).Return(snapshot.Pointer{Group: good.Group, Version: good.Version}, nil).Once()
	env.ExecuteWorkflow(BatchFeatures, BatchFeaturesParams{AsOf: asOf})
	err := env.GetWorkflowError()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != ErrTypeSnapshotRejected {
		t.Fatalf("want a %s error, got %v", ErrTypeSnapshotRejected, err)
	}
	if !strings.Contains(err.Error(), "item_batch/"+bad.Version+": range: item_batch_ctr: values span [0, 1.4], outside [0, 1]") {
		t.Errorf("error %q does not name the failed check", err)
	}
	var res BatchFeaturesResult
	if err := appErr.Details(&res); err != nil {
		t.Fatal(err)
	}
	if len(res.Current) != 1 || res.Current[0].Version != good.Version || len(res.Rejected) != 1 {
		t.Errorf("result %+v", res)
	}
	env.AssertExpectations(t)
}

func TestBatchFeaturesFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                   string
		prepareErr, publishErr error
		want                   string
	}{
		{"prepare refuses", temporal.NewNonRetryableApplicationError("cannot materialize item_embedding", "InvalidParams", nil), nil, "prepare snapshots as of 2026-11-20T00:00:00Z"},
		{"pointer moved", nil, temporal.NewNonRetryableApplicationError("item_batch moved", "Conflict", nil), "publish user_batch/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var s testsuite.WorkflowTestSuite
			env := s.NewTestWorkflowEnvironment()
			var a *activities.BatchFeatures
			env.OnActivity(a.PrepareSnapshots, mock.Anything, mock.Anything).
				Return(activities.FeaturesPrepared{Candidates: []batch.Candidate{candidate("user_batch", true, true)}}, tt.prepareErr).Once()
			env.OnActivity(a.PublishSnapshot, mock.Anything, mock.Anything).Return(snapshot.Pointer{}, tt.publishErr).Maybe()
			env.ExecuteWorkflow(BatchFeatures, BatchFeaturesParams{AsOf: time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)})
			if err := env.GetWorkflowError(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
