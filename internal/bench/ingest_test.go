package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

// TestRunIngestFailsClearly checks the failures a user can cause: an
// archiver configured without the benchmark's topic, and events that do not
// become durable in time.
func TestRunIngestFailsClearly(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Kafka, testenv.S3)

	t.Run("topic not archived", func(t *testing.T) {
		cfg := env.Config()
		cfg.Consumers.Archiver.Topics = []string{events.TopicPredictions}
		_, err := RunIngest(t.Context(), cfg, IngestOptions{Events: 10})
		if err == nil || !strings.Contains(err.Error(), "config key consumers.archiver.topics [adaptrec.predictions.v1] lacks adaptrec.interactions.v1") {
			t.Fatalf("RunIngest = %v, want the missing topic named", err)
		}
	})

	t.Run("durable timeout", func(t *testing.T) {
		cfg := env.Config()
		// Nothing is flushed before the deadline: batches wait 30 s or for
		// 50,000 events.
		cfg.Consumers.Archiver.FlushInterval = 30 * time.Second
		start := time.Now()
		_, err := RunIngest(t.Context(), cfg, IngestOptions{Events: 1000, DurableTimeout: 300 * time.Millisecond})
		if err == nil || !strings.Contains(err.Error(), "only 0 of 1000 events durable 300ms after the last publish") {
			t.Fatalf("RunIngest = %v, want the durable timeout reported", err)
		}
		// The archiver still drains on the way out, but nothing waits 30 s.
		if d := time.Since(start); d > 20*time.Second {
			t.Fatalf("failing took %s", d)
		}
	})
}
