package testenv

import (
	"testing"

	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
)

// EventLog prepares the event log that cfg describes — every adaptrec topic
// created with cfg.Kafka.Partitions partitions, the S3 bucket created — and
// returns a client for the bucket.
func EventLog(t testing.TB, cfg config.Config) *objstore.Store {
	t.Helper()
	if err := events.EnsureTopics(t.Context(), cfg.Kafka); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return Bucket(t, cfg)
}

// Bucket creates cfg's S3 bucket if needed and returns a client for it.
func Bucket(t testing.TB, cfg config.Config) *objstore.Store {
	t.Helper()
	ctx := t.Context()
	store, err := objstore.New(ctx, cfg.S3)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	if err := store.EnsureBucket(ctx); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return store
}
