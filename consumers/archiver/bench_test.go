package archiver_test

import (
	"testing"

	"github.com/adaptrec/adaptrec/internal/bench"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

// BenchmarkPipeline measures producer -> Kafka -> archiver -> Parquet on S3
// with the default archiver settings (8 partitions, all event topics, 1 s
// flush interval) through bench.RunIngest, the code behind `adaptrec bench
// ingest`: b.N simulated events are published by bench.DefaultIngestProducers
// concurrent producers while the archiver runs in-process, either as fast as
// the broker takes them (burst) or at a steady 50,000 events/s; it reports
// end-to-end events/s and the event-time to durable latency.
//
//	go test -run '^$' -bench Pipeline -benchtime 1000000x ./consumers/archiver/
func BenchmarkPipeline(b *testing.B) {
	b.Run("burst", func(b *testing.B) { benchPipeline(b, 0) })
	b.Run("rate=50000", func(b *testing.B) { benchPipeline(b, 50000) })
}

func benchPipeline(b *testing.B, rate float64) {
	env := testenv.New(b, testenv.Kafka, testenv.S3)
	cfg := env.Config()
	cfg.Consumers.Archiver = config.Default().Consumers.Archiver
	b.ResetTimer()
	res, err := bench.RunIngest(b.Context(), cfg, bench.IngestOptions{Events: b.N, Rate: rate})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.ThroughputPerS, "events/s")
	b.ReportMetric(res.ProducePerS, "produced/s")
	b.ReportMetric(res.P50Ms, "p50-durable-ms")
	b.ReportMetric(res.P99Ms, "p99-durable-ms")
	b.ReportMetric(res.MaxMs, "max-durable-ms")
	b.Logf("%d events in %.3fs, %d objects (%d bytes), %d flushes, %d rows verified",
		res.Events, res.DurationS, res.Objects, res.Bytes, res.Flushes, res.RowsVerified)
}
