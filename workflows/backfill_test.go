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
	"github.com/adaptrec/adaptrec/events"
)

var t0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func backfillParams() BackfillParams {
	return BackfillParams{History: activities.HistoryRequest{
		WorldID: "w1", Seed: 7, Events: 1000, Users: 100, Items: 500, Start: t0, End: t0.Add(24 * time.Hour),
	}}
}

func TestHistoryBackfillPublishesThenWaitsForArchive(t *testing.T) {
	t.Parallel()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	var a *activities.Backfill
	published := activities.HistoryResult{Published: 1000, FirstEvent: t0.Add(time.Minute), LastEvent: t0.Add(23 * time.Hour)}
	env.OnActivity(a.PublishHistory, mock.Anything, backfillParams().History).Return(published, nil).Once()
	env.OnActivity(a.AwaitArchived, mock.Anything, mock.MatchedBy(func(w activities.ArchiveWait) bool {
		return w.Topic == events.TopicInteractions && w.Producer == activities.HistoryProducer("w1") &&
			w.From.Equal(published.FirstEvent) && w.To.Equal(published.LastEvent.Add(time.Millisecond)) &&
			w.Want == 1000 && !w.WrittenAfter.IsZero()
	})).Return(activities.ArchiveStatus{Rows: 1000, Objects: 24, Location: "s3://b/events/x/"}, nil).Once()

	env.ExecuteWorkflow(HistoryBackfill, backfillParams())
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res BackfillResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.History.Published != 1000 || res.Archive.Rows != 1000 {
		t.Fatalf("result = %+v", res)
	}
	env.AssertExpectations(t)
	q, err := env.QueryWorkflow(QueryStage)
	if err != nil {
		t.Fatal(err)
	}
	var stage string
	if err := q.Get(&stage); err != nil || stage != "done" {
		t.Fatalf("stage = %q, %v; want done", stage, err)
	}
}

func TestHistoryBackfillFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		params     func() BackfillParams
		publishErr error
		archiveErr error
		want       string
	}{
		{"no events", func() BackfillParams { p := backfillParams(); p.History.Events = 0; return p }, nil, nil, "history.events must be > 0"},
		{"publish refuses", backfillParams, temporal.NewNonRetryableApplicationError("bad world", "InvalidParams", nil), nil, "publish history"},
		{"archive never completes", backfillParams, nil, temporal.NewNonRetryableApplicationError("archived 10 of 1000", "Timeout", nil), "wait for the archiver"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var s testsuite.WorkflowTestSuite
			env := s.NewTestWorkflowEnvironment()
			var a *activities.Backfill
			env.OnActivity(a.PublishHistory, mock.Anything, mock.Anything).Return(
				activities.HistoryResult{Published: 1000, FirstEvent: t0, LastEvent: t0.Add(time.Hour)}, tt.publishErr).Maybe()
			env.OnActivity(a.AwaitArchived, mock.Anything, mock.Anything).Return(activities.ArchiveStatus{}, tt.archiveErr).Maybe()
			env.ExecuteWorkflow(HistoryBackfill, tt.params())
			err := env.GetWorkflowError()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("workflow error = %v, want it to mention %q", err, tt.want)
			}
			var appErr *temporal.ApplicationError
			if !errors.As(err, &appErr) {
				t.Fatalf("workflow error %v carries no application error", err)
			}
		})
	}
}
