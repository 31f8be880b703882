package offline_test

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/offline"
	"github.com/adaptrec/adaptrec/features/snapshot"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/objstore"
)

// plantValues writes a snapshot of group as of asOf in which every row
// holds the defaults except the planted values (entity → feature → its
// values, one per component), vectors included.
func plantValues(t *testing.T, st *objstore.Store, fs *features.FeatureSet, group string, asOf time.Time, values map[string]map[string][]float64) string {
	t.Helper()
	names, _, width, _, err := snapshot.Layout(fs, group)
	if err != nil {
		t.Fatal(err)
	}
	var rows []snapshot.Row
	for _, id := range slices.Sorted(maps.Keys(values)) {
		vals := values[id]
		row := snapshot.Row{EntityID: id, Values: make([]float64, 0, width)}
		for _, n := range names {
			f, _ := fs.Lookup(n)
			v := snapshot.DefaultValues(f)
			if p, ok := vals[n]; ok {
				if len(p) != len(v) {
					t.Fatalf("%s: %d values planted for a %s", n, len(p), f.Type)
				}
				v = p
			}
			row.Values = append(row.Values, v...)
		}
		rows = append(rows, row)
	}
	m, err := snapshot.Write(t.Context(), st, fs, group, asOf, rows, snapshot.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m.Version
}

// crossAffinity is a user_category_affinity whose components all differ:
// component i is (i+1)/64, or (32-i)/64 reversed.
func crossAffinity(reversed bool) []float64 {
	v := make([]float64, 32)
	for i := range v {
		v[i] = float64(i+1) / 64
		if reversed {
			v[i] = float64(32-i) / 64
		}
	}
	return v
}

// categories plants item_category_id per item.
func categories(cats map[string]int64) map[string]map[string][]float64 {
	out := map[string]map[string][]float64{}
	for id, c := range cats {
		out[id] = map[string][]float64{features.FeatureItemCategory: {float64(c)}}
	}
	return out
}

// TestCrossFeaturesInTrainingRows builds a training set whose users have
// viewed and clicked items of known categories before impressions, and
// checks each row's cross features: the share of the session's items (of
// a known category, as of the item snapshot the example reads) in the
// candidate's category, the session list read as serving reads it (not
// once older than its 30-minute ttl), and the user's affinity component
// of the candidate's category mod 32.
func TestCrossFeaturesInTrainingRows(t *testing.T) {
	t.Parallel()
	fs := projectFeatures(t)
	st := s3(t)
	ctx := t.Context()
	t0 := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	m, s := time.Minute, time.Second
	a, b := crossAffinity(false), crossAffinity(true)

	plantValues(t, st, fs, "user_batch", t0.Add(-24*time.Hour), map[string]map[string][]float64{
		"u1": {features.FeatureCategoryAffinity: a},
		"u2": {features.FeatureCategoryAffinity: b},
	})
	// i4 has no row (no category), i5 the unknown category -1, c3 none.
	cats := map[string]int64{"i1": 5, "i2": 5, "i3": 7, "i5": -1, "c1": 5, "c2": 37}
	plantValues(t, st, fs, "item_batch", t0.Add(-24*time.Hour), categories(cats))
	// From a minute after t0, i3 is in category 5.
	cats["i3"] = 5
	plantValues(t, st, fs, "item_batch", t0.Add(m), categories(cats))

	imp, click, view := adaptrecv1.Action_ACTION_IMPRESSION, adaptrecv1.Action_ACTION_CLICK, adaptrecv1.Action_ACTION_VIEW
	evs := []nlEvent{
		// u1's session s: i1, i2 (5), i3 (7, then 5), i4 (none), i5 (-1).
		{"u1-a", -10 * m, "u1", "i1", view, "s"},
		{"u1-b", -8 * m, "u1", "i2", click, "s"},
		{"u1-c", -6 * m, "u1", "i3", view, "s"},
		{"u1-d", -5 * m, "u1", "i4", view, "s"},
		{"u1-e", -4 * m, "u1", "i5", click, "s"},
		{"E1", 0, "u1", "c1", imp, "s"},     // known categories 7, 5, 5: share 2/3
		{"E2", s, "u1", "c2", imp, "s"},     // category 37: share 0, affinity component 5
		{"E3", 2 * s, "u1", "c3", imp, "s"}, // no category: both defaults
		{"E4", 2 * m, "u1", "c1", imp, "s"}, // the later snapshot: i3 in 5, share 3/3
		// u2's session t ended: its last event is 48 minutes before E5.
		{"u2-a", -50 * m, "u2", "i1", view, "t"},
		{"u2-b", -48 * m, "u2", "i2", click, "t"},
		{"E5", 3 * s, "u2", "c1", imp, "t"}, // the list expired: share 0
		{"u2-c", 3 * m, "u2", "i1", view, "t"},
		{"E6", 4 * m, "u2", "c1", imp, "t"}, // a new session of i1: share 1
		// u3 and u4 have no affinity; their views are exactly the ttl and
		// a millisecond more before their impressions.
		{"u3-a", -30 * m, "u3", "i1", view, "x3"},
		{"E7", 0, "u3", "c1", imp, "x3"},
		{"u4-a", -30*m - time.Millisecond, "u4", "i1", view, "x4"},
		{"E8", 0, "u4", "c1", imp, "x4"},
	}
	archiveEvents(t, st, t0, evs)

	want := map[string]struct{ share, affinity float32 }{
		"E1": {float32(2) / 3, float32(a[5])},
		"E2": {0, float32(a[5])},
		"E3": {0, 0},
		"E4": {1, float32(a[5])},
		"E5": {0, float32(b[5])},
		"E6": {1, float32(b[5])},
		"E7": {1, 0},
		"E8": {0, 0},
	}
	check := func(name string, cfg offline.Config) {
		t.Helper()
		cfg.From, cfg.To = t0.Add(-time.Hour), t0.Add(time.Hour)
		mf, err := offline.Build(ctx, st, fs, cfg)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := offline.ReadRows(ctx, st, mf)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != len(want) {
			t.Fatalf("%s: %d rows, want %d", name, len(rows), len(want))
		}
		share := column(t, mf, rows, "ui_session_category_share")
		aff := column(t, mf, rows, "ui_category_affinity")
		for i, r := range rows {
			w, ok := want[r.EventID]
			if !ok {
				t.Fatalf("%s: unexpected example %s", name, r.EventID)
			}
			if share[i] != w.share {
				t.Errorf("%s: %s: ui_session_category_share = %v, want %v", name, r.EventID, share[i], w.share)
			}
			if aff[i] != w.affinity {
				t.Errorf("%s: %s: ui_category_affinity = %v, want %v", name, r.EventID, aff[i], w.affinity)
			}
		}
		for _, n := range []string{"ui_session_category_share", "ui_category_affinity"} {
			if why, ok := mf.Defaulted[n]; ok {
				t.Errorf("%s: %s reported defaulted: %s", name, n, why)
			}
		}
	}
	check("every ranker input", offline.Config{})
	// A row of the cross features alone: the join still reads their
	// inputs, which the row does not hold.
	check("cross features only", offline.Config{Features: []string{"ui_session_category_share", "ui_category_affinity"}})
}
