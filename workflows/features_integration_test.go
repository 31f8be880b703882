package workflows

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/proto"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features/snapshot"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

// TestBatchFeaturesOnDevServer runs the workflow on a real Temporal dev
// server over a small archive on a real S3 server, publishing to a real
// broker, and checks that every group became current and was announced.
func TestBatchFeaturesOnDevServer(t *testing.T) {
	env := testenv.New(t, testenv.Temporal, testenv.Kafka, testenv.S3)
	cfg := env.Config()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	store := testenv.EventLog(t, cfg)

	// One hour of 30 users seeing 20 items, every 4th impression clicked.
	hour := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	var rows []eventlog.Row
	for i := range 600 {
		a := adaptrecv1.Action_ACTION_IMPRESSION
		if i%4 == 3 {
			a = adaptrecv1.Action_ACTION_CLICK
		}
		e := events.NewInteraction(fmt.Sprintf("ev%04d", i), hour.Add(time.Duration(i)*5*time.Second), "test", &adaptrecv1.UserInteractionEvent{
			UserId: fmt.Sprintf("u%02d", i%30), ItemId: fmt.Sprintf("i%02d", i%20), Action: a, Position: int32(i % 10),
			SessionId: fmt.Sprintf("s%02d", i%30), Surface: "home", Device: adaptrecv1.Device_DEVICE_DESKTOP,
		})
		b, err := proto.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, eventlog.NewRow(e, b, eventlog.Provenance{Topic: events.TopicInteractions, Offset: int64(i)}))
	}
	var enc eventlog.Encoder
	b, err := enc.Encode(rows)
	if err != nil {
		t.Fatal(err)
	}
	ref := eventlog.Ref{Topic: events.TopicInteractions, Hour: hour}
	if _, err := store.Put(ctx, ref.Key(), b, objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}

	tc, err := client.Dial(client.Options{HostPort: cfg.Temporal.HostPort, Namespace: cfg.Temporal.Namespace})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	w := worker.New(tc, activities.TaskQueueDefault, worker.Options{})
	w.RegisterWorkflow(BatchFeatures)
	w.RegisterActivity(&activities.BatchFeatures{Kafka: cfg.Kafka, Store: store, FeaturesFile: "../features/features.yaml"})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	asOf := hour.Add(2 * time.Hour)
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: "it-batch-features", TaskQueue: activities.TaskQueueDefault, WorkflowExecutionTimeout: 2 * time.Minute,
	}, BatchFeatures, BatchFeaturesParams{AsOf: asOf})
	if err != nil {
		t.Fatal(err)
	}
	var res BatchFeaturesResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatalf("workflow: %v", err)
	}
	if res.Prepared.Events != 600 || len(res.Current) != 3 || len(res.Rejected) != 0 {
		t.Fatalf("result %+v", res)
	}
	wantRows := map[string]int64{"user_batch": 30, "item_batch": 20, "user_item_batch": 60}
	for i, p := range res.Current {
		c := res.Prepared.Candidates[i]
		cur, err := snapshot.Current(ctx, store, p.Group)
		if err != nil || cur.Version != c.Version || c.Rows != wantRows[p.Group] {
			t.Errorf("%s: pointer %+v (%v), candidate %s with %d rows, want %d", p.Group, cur, err, c.Version, c.Rows, wantRows[p.Group])
		}
	}
	if n := testenv.TopicMessages(t, cfg.Kafka.Brokers[0], events.TopicFeatureSnapshots); n != 3 {
		t.Errorf("%d snapshot events, want 3", n)
	}
}
