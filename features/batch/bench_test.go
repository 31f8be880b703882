package batch_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/batch"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/sim"
)

// simulatedArchive archives n events of a simulated 30-day history ending
// at the returned time and returns the world it came from.
func simulatedArchive(tb testing.TB, st *objstore.Store, n int64) (*sim.World, time.Time) {
	tb.Helper()
	start := time.Date(2026, 10, 23, 0, 0, 0, 0, time.UTC)
	w, err := sim.NewWorld(sim.WorldConfig{Seed: 7, Start: start, Window: 30 * 24 * time.Hour})
	if err != nil {
		tb.Fatal(err)
	}
	a := &eventlog.Writer{Store: st, Topic: events.TopicInteractions}
	var last time.Time
	if _, err := sim.GenerateHistory(tb.Context(), w, sim.HistoryConfig{Events: n}, func(ctx context.Context, b []*adaptrecv1.Event) error {
		last = b[len(b)-1].GetEnvelope().GetEventTime().AsTime()
		return a.Add(ctx, b...)
	}); err != nil {
		tb.Fatal(err)
	}
	if err := a.Flush(tb.Context()); err != nil {
		tb.Fatal(err)
	}
	return w, last.Truncate(time.Hour).Add(time.Hour)
}

func projectFeatures(tb testing.TB) *features.FeatureSet {
	tb.Helper()
	fs, err := features.Load("../features.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	return fs
}

// BenchmarkPrepare1M computes every batch group from 1,000,000 archived
// events of a simulated 30-day log on a real S3 server (versitygw), with
// the catalogue and zones, then writes and validates the snapshots: the
// whole batch job but the pointer flip and the event.
func BenchmarkPrepare1M(b *testing.B) {
	st := s3(b)
	w, asOf := simulatedArchive(b, st, 1_000_000)
	job := &batch.Job{
		Store: st, Features: projectFeatures(b), Events: noEvents{},
		Config: batch.Config{Catalogue: batch.CatalogueFromSim(w.Catalogue), Zones: zonesOf(w)},
	}
	b.ResetTimer()
	for b.Loop() {
		cands, rep, err := job.Prepare(b.Context(), batch.Request{AsOf: asOf})
		if err != nil {
			b.Fatal(err)
		}
		if rep.Events != 1_000_000 {
			b.Fatalf("read %d events", rep.Events)
		}
		var rows int64
		for _, c := range cands {
			if !c.Valid() {
				b.Fatalf("%s rejected: %v", c.Group, c.Failures)
			}
			rows += c.Rows
		}
		b.ReportMetric(rep.Scan.Seconds(), "scan-s")
		b.ReportMetric(rep.Build.Seconds(), "build-s")
		b.ReportMetric(rep.Write.Seconds(), "write+validate-s")
		b.ReportMetric(float64(rows), "rows")
	}
}

// noEvents is a Publisher for runs that never publish (Prepare).
type noEvents struct{}

func (noEvents) Publish(context.Context, ...*adaptrecv1.Event) error {
	return errors.New("Prepare must not publish")
}

func zonesOf(w *sim.World) func(string) string {
	return func(id string) string {
		i, ok := w.Users.Lookup(id)
		if !ok {
			return ""
		}
		return w.Users.Users[i].TimeZone.Name
	}
}
