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
	"github.com/adaptrec/adaptrec/predictions"
)

func computed(version int64, failures ...predictions.Failure) activities.PredictionsComputed {
	return activities.PredictionsComputed{
		Meta:   predictions.Meta{Version: version, Model: "ranker", ModelVersion: "m7", Users: 950, ActiveUsers: 1000, K: 50, Failures: failures},
		Events: 12000, Levels: map[string]int{"DEGRADATION_LEVEL_FULL": 950},
	}
}

func TestBatchPredictionsFlipsAValidVersion(t *testing.T) {
	t.Parallel()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	start := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	env.SetStartTime(start)
	var a *activities.BatchPredictions
	env.OnActivity(a.ComputePredictions, mock.Anything, mock.MatchedBy(func(r activities.PredictionsRequest) bool {
		// No as-of given: the start of the run; zero K and window: the
		// worker's configuration.
		return r.AsOf.Equal(start) && r.K == 0 && r.ActiveWindow == 0 && r.MinCoverage == 0.9
	})).Return(computed(4), nil).Once()
	prev := predictions.Meta{Version: 3}
	published := activities.PredictionsPublished{Pointer: predictions.Pointer{Current: computed(4).Meta, Previous: &prev}, Pruned: []int64{1}, Kept: []int64{2, 3, 4}}
	env.OnActivity(a.PublishPredictions, mock.Anything, int64(4)).Return(published, nil).Once()
	env.ExecuteWorkflow(BatchPredictions, BatchPredictionsParams{MinCoverage: 0.9})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res BatchPredictionsResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.Published.Pointer.Current.Version != 4 || res.Published.Pointer.Previous.Version != 3 || res.Computed.Meta.ModelVersion != "m7" || !res.AsOf.Equal(start) {
		t.Errorf("result %+v", res)
	}
	q, err := env.QueryWorkflow(QueryStage)
	if err != nil {
		t.Fatal(err)
	}
	var stage string
	if err := q.Get(&stage); err != nil || stage != "done" {
		t.Errorf("stage %q (%v), want done", stage, err)
	}
	env.AssertExpectations(t)
}

func TestBatchPredictionsRejectedVersionNeverFlips(t *testing.T) {
	t.Parallel()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	var a *activities.BatchPredictions
	asOf := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	bad := computed(5,
		predictions.Failure{Check: predictions.CheckScore, Lists: 3, Detail: "3 lists, first user u17: item i4 at position 2 scores NaN"},
		predictions.Failure{Check: predictions.CheckCoverage, Detail: "700 of 1000 active users have a list (0.7000), below the minimum 0.9500"})
	bad.Errors, bad.FirstError = 300, "rank user u9: ONNX Runtime: boom"
	env.OnActivity(a.ComputePredictions, mock.Anything, mock.MatchedBy(func(r activities.PredictionsRequest) bool { return r.AsOf.Equal(asOf) && r.K == 20 })).
		Return(bad, nil).Once()
	env.ExecuteWorkflow(BatchPredictions, BatchPredictionsParams{AsOf: asOf, K: 20})
	err := env.GetWorkflowError()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != ErrTypePredictionsRejected {
		t.Fatalf("want a %s error, got %v", ErrTypePredictionsRejected, err)
	}
	for _, want := range []string{
		"predictions_v5 (model ranker@m7, 950 of 1000 active users) rejected, the pointer did not move",
		"score: 3 lists, first user u17: item i4 at position 2 scores NaN",
		"coverage: 700 of 1000 active users have a list (0.7000), below the minimum 0.9500",
		"300 users failed to rank, first: rank user u9: ONNX Runtime: boom",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	var res BatchPredictionsResult
	if err := appErr.Details(&res); err != nil || res.Computed.Meta.Version != 5 {
		t.Errorf("details %+v (%v)", res, err)
	}
	// PublishPredictions has no mock: calling it would fail the test.
	env.AssertExpectations(t)
}

func TestBatchPredictionsFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                   string
		computeErr, publishErr error
		want                   string
	}{
		{"compute refuses", temporal.NewNonRetryableApplicationError("k 900 must be in 1..500", "InvalidParams", nil), nil,
			"compute batch predictions as of 2026-11-20T00:00:00Z"},
		{"pointer moved", nil, temporal.NewNonRetryableApplicationError("the pointer moved away from predictions_v3", activities.ErrTypePredictionsConflict, nil),
			"make predictions_v4 current"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var s testsuite.WorkflowTestSuite
			env := s.NewTestWorkflowEnvironment()
			var a *activities.BatchPredictions
			env.OnActivity(a.ComputePredictions, mock.Anything, mock.Anything).Return(computed(4), tt.computeErr).Once()
			env.OnActivity(a.PublishPredictions, mock.Anything, mock.Anything).Return(activities.PredictionsPublished{}, tt.publishErr).Maybe()
			env.ExecuteWorkflow(BatchPredictions, BatchPredictionsParams{AsOf: time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)})
			if err := env.GetWorkflowError(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
