package offline_test

import (
	"context"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features/batch"
	"github.com/adaptrec/adaptrec/features/offline"
	"github.com/adaptrec/adaptrec/features/snapshot"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/sim"
)

// BenchmarkPointInTimeJoin1M joins 1,000,000+ labelled impressions of a
// simulated 30-day log (1.31M events on a real S3 server) with weekly batch
// snapshots computed from the same log, and writes the training set.
// Setup (simulation, archive, snapshots) is not timed.
func BenchmarkPointInTimeJoin1M(b *testing.B) {
	st := s3(b)
	ctx := b.Context()
	start := time.Date(2026, 10, 23, 0, 0, 0, 0, time.UTC)
	w, err := sim.NewWorld(sim.WorldConfig{Seed: 7, Start: start, Window: 30 * 24 * time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	a := &eventlog.Writer{Store: st, Topic: events.TopicInteractions}
	var impressions int64
	stats, err := sim.GenerateHistory(ctx, w, sim.HistoryConfig{Events: 1_310_000}, func(ctx context.Context, evs []*adaptrecv1.Event) error {
		return a.Add(ctx, evs...)
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := a.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	impressions = stats.ByAction[adaptrecv1.Action_ACTION_IMPRESSION]
	if impressions < 1_000_000 {
		b.Fatalf("only %d impressions", impressions)
	}
	fs := projectFeatures(b)
	zones := func(id string) string {
		if i, ok := w.Users.Lookup(id); ok {
			return w.Users.Users[i].TimeZone.Name
		}
		return ""
	}
	cfg := batch.Config{Catalogue: batch.CatalogueFromSim(w.Catalogue), Zones: zones}
	for day := 8; day <= 29; day += 7 {
		asOf := start.Add(time.Duration(day) * 24 * time.Hour)
		res, err := batch.Compute(ctx, st, fs, asOf, batch.BatchGroups(fs), cfg)
		if err != nil {
			b.Fatal(err)
		}
		for i := range res.Groups {
			g := &res.Groups[i]
			if _, err := snapshot.Write(ctx, st, fs, g.Group, asOf, g.Rows, snapshot.WriteOptions{NotComputed: g.NotComputed}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ResetTimer()
	for b.Loop() {
		began := time.Now()
		m, err := offline.Build(ctx, st, fs, offline.Config{From: start, To: stats.Last.Add(time.Millisecond), Zones: zones})
		if err != nil {
			b.Fatal(err)
		}
		if m.Rows != impressions {
			b.Fatalf("%d examples for %d impressions", m.Rows, impressions)
		}
		b.ReportMetric(float64(m.Rows), "examples")
		b.ReportMetric(float64(m.Rows)/time.Since(began).Seconds(), "examples/s")
		b.ReportMetric(float64(m.Positives)/float64(m.Rows), "ctr")
	}
}
