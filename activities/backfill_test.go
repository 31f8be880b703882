package activities

import (
	"testing"
	"time"

	"go.temporal.io/sdk/testsuite"

	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

// TestPublishHistoryResumesFromHeartbeat proves a retried attempt publishes
// only what the last heartbeat had not confirmed, and still stores the
// catalogue and reports the whole history.
func TestPublishHistoryResumesFromHeartbeat(t *testing.T) {
	env := testenv.New(t, testenv.Kafka, testenv.S3)
	cfg := env.Config()
	ctx := t.Context()
	store := testenv.EventLog(t, cfg)
	b := &Backfill{Kafka: cfg.Kafka, Store: store}
	var ts testsuite.WorkflowTestSuite
	aenv := ts.NewTestActivityEnvironment()
	aenv.RegisterActivity(b)
	aenv.SetHeartbeatDetails(int64(15000))
	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	req := HistoryRequest{WorldID: "resume", Seed: 3, Events: 20000, Users: 200, Items: 1000, Start: start, End: start.Add(24 * time.Hour)}
	v, err := aenv.ExecuteActivity(b.PublishHistory, req)
	if err != nil {
		t.Fatal(err)
	}
	var res HistoryResult
	if err := v.Get(&res); err != nil {
		t.Fatal(err)
	}
	if res.Published != 20000 {
		t.Fatalf("Published = %d, want the whole history (20000)", res.Published)
	}
	if got := testenv.TopicMessages(t, cfg.Kafka.Brokers[0], events.TopicInteractions); got != 5000 {
		t.Fatalf("topic holds %d messages, want the 5000 not yet heartbeated", got)
	}
	if _, _, err := store.Get(ctx, CatalogueKey("resume")); err != nil {
		t.Fatalf("catalogue not stored: %v", err)
	}

	// Invalid requests fail without retries.
	bad := req
	bad.End = bad.Start
	if _, err := aenv.ExecuteActivity(b.PublishHistory, bad); err == nil {
		t.Fatal("PublishHistory accepted start == end")
	}
}
