package offline_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features/offline"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/sim"
)

// TestReadColumnsMatchesReadRows reads a simulated training set of several
// parts both ways and requires the same examples, and refuses a manifest
// that disagrees with the parts.
func TestReadColumnsMatchesReadRows(t *testing.T) {
	t.Parallel()
	st := s3(t)
	ctx := t.Context()
	fs := projectFeatures(t)
	w, err := sim.NewWorld(sim.WorldConfig{Seed: 3, Start: time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC), Window: 24 * time.Hour,
		Catalogue: sim.CatalogueConfig{Items: 100}, Population: sim.PopulationConfig{Users: 50}})
	if err != nil {
		t.Fatal(err)
	}
	a := &eventlog.Writer{Store: st, Topic: events.TopicInteractions}
	if _, err := sim.GenerateHistory(ctx, w, sim.HistoryConfig{Events: 3000}, func(ctx context.Context, evs []*adaptrecv1.Event) error {
		return a.Add(ctx, evs...)
	}); err != nil {
		t.Fatal(err)
	}
	if err := a.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := offline.Build(ctx, st, fs, offline.Config{From: w.Start, To: w.End(), RowsPerFile: 500})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Files) < 3 {
		t.Fatalf("%d rows in %d parts; want several parts", m.Rows, len(m.Files))
	}
	rows, err := offline.ReadRows(ctx, st, m)
	if err != nil {
		t.Fatal(err)
	}
	cols, err := offline.ReadColumns(ctx, st, m)
	if err != nil {
		t.Fatal(err)
	}
	if cols.Len() != len(rows) || cols.Width != m.Width || len(cols.Values) != len(rows)*m.Width {
		t.Fatalf("%d columns rows of width %d, %d rows", cols.Len(), cols.Width, len(rows))
	}
	for i, r := range rows {
		if cols.EventTimes[i] != r.EventTime.UnixMilli() || cols.Labels[i] != r.Label || !slices.Equal(cols.Row(i), r.Features) {
			t.Fatalf("row %d differs: %d %d %v, want %d %d %v", i, cols.EventTimes[i], cols.Labels[i], cols.Row(i)[:4],
				r.EventTime.UnixMilli(), r.Label, r.Features[:4])
		}
	}

	for _, tc := range []struct {
		name string
		edit func(*offline.Manifest)
		want string
	}{
		{"width", func(m *offline.Manifest) { m.Width++ }, "values, the manifest says"},
		{"rows", func(m *offline.Manifest) { m.Files[1].Rows-- }, "rows, the manifest says"},
		{"checksum", func(m *offline.Manifest) { m.Files[2].SHA256 = strings.Repeat("0", 64) }, "does not match its manifest checksum"},
	} {
		bad := m
		bad.Files = slices.Clone(m.Files)
		tc.edit(&bad)
		if _, err := offline.ReadColumns(ctx, st, bad); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
