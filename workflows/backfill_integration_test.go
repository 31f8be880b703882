package workflows

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/consumers/archiver"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

// TestHistoryBackfillOnDevServer runs the workflow on a real Temporal dev
// server with a real broker, S3 server and archiver, and checks that every
// published event is archived exactly once.
func TestHistoryBackfillOnDevServer(t *testing.T) {
	env := testenv.New(t, testenv.Temporal, testenv.Kafka, testenv.S3)
	cfg := env.Config()
	cfg.Consumers.Archiver.FlushInterval = 200 * time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	store := testenv.EventLog(t, cfg)
	arch, err := archiver.New(cfg, store, log)
	if err != nil {
		t.Fatal(err)
	}
	archDone := make(chan error, 1)
	go func() { archDone <- arch.Run(ctx) }()

	tc, err := client.Dial(client.Options{HostPort: cfg.Temporal.HostPort, Namespace: cfg.Temporal.Namespace})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	w := worker.New(tc, activities.TaskQueueDefault, worker.Options{})
	w.RegisterWorkflow(HistoryBackfill)
	w.RegisterActivity(&activities.Backfill{Kafka: cfg.Kafka, Store: store})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	start := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	params := BackfillParams{History: activities.HistoryRequest{
		WorldID: "it-world", Seed: 42, Events: 20000, Users: 300, Items: 2000,
		Start: start, End: start.Add(48 * time.Hour),
	}, ArchiveTimeout: 2 * time.Minute}
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: "it-backfill", TaskQueue: activities.TaskQueueDefault, WorkflowExecutionTimeout: 3 * time.Minute,
	}, HistoryBackfill, params)
	if err != nil {
		t.Fatal(err)
	}
	var res BackfillResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatalf("workflow: %v (archiver: %+v)", err, arch.Stats())
	}
	if res.History.Published != 20000 || res.Archive.Rows != 20000 {
		t.Fatalf("published %d, archived %d; want 20000 each", res.History.Published, res.Archive.Rows)
	}
	if _, _, err := store.Get(ctx, res.History.CatalogueKey); err != nil {
		t.Fatalf("catalogue %s not stored: %v", res.History.CatalogueKey, err)
	}
	cancel()
	if err := <-archDone; err != nil && ctx.Err() == nil {
		t.Fatalf("archiver: %v", err)
	}
}
