package offline_test

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/offline"
	"github.com/adaptrec/adaptrec/features/snapshot"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/objstore"
)

func projectFeatures(tb testing.TB) *features.FeatureSet {
	tb.Helper()
	fs, err := features.Load("../features.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	return fs
}

// plant writes a snapshot of group as of asOf in which every row holds the
// defaults except the planted values (entity → feature → value).
func plant(t *testing.T, st *objstore.Store, fs *features.FeatureSet, group string, asOf time.Time, values map[string]map[string]float64) string {
	t.Helper()
	names, types, width, _, err := snapshot.Layout(fs, group)
	if err != nil {
		t.Fatal(err)
	}
	var rows []snapshot.Row
	for id, vals := range values {
		row := snapshot.Row{EntityID: id, Values: make([]float64, 0, width)}
		for i, n := range names {
			f, _ := fs.Lookup(n)
			def := snapshot.DefaultValues(f)
			if v, ok := vals[n]; ok {
				if types[i] != "float" && types[i] != "int" {
					t.Fatalf("plant only scalars, not %s", n)
				}
				def = []float64{v}
			}
			row.Values = append(row.Values, def...)
		}
		rows = append(rows, row)
	}
	m, err := snapshot.Write(t.Context(), st, fs, group, asOf, rows, snapshot.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m.Version
}

// column returns a feature's first value in every row.
func column(t *testing.T, m offline.Manifest, rows []offline.Row, name string) []float32 {
	t.Helper()
	return component(t, m, rows, name, 0)
}

// component returns component i of a feature in every row.
func component(t *testing.T, m offline.Manifest, rows []offline.Row, name string, i int) []float32 {
	t.Helper()
	off := 0
	for _, f := range m.Model.Features {
		typ, err := features.ParseType(f.Type)
		if err != nil {
			t.Fatal(err)
		}
		if f.Name == name {
			out := make([]float32, len(rows))
			for k, r := range rows {
				out[k] = r.Features[off+i]
			}
			return out
		}
		off += typ.Width()
	}
	t.Fatalf("no column %s", name)
	return nil
}

func TestPointInTime(t *testing.T) {
	t.Parallel()
	st := s3(t)
	ctx := t.Context()
	fs := projectFeatures(t)
	t1 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	t2 := t1.Add(24 * time.Hour)

	// The snapshot as of t2 holds "future" values: no example before t2
	// may see them.
	s1 := plant(t, st, fs, "item_batch", t1, map[string]map[string]float64{"i1": {"item_ctr_7d": 0.111, "item_impressions_7d": 11}})
	s2 := plant(t, st, fs, "item_batch", t2, map[string]map[string]float64{"i1": {"item_ctr_7d": 0.999, "item_impressions_7d": 99999}})
	u1 := plant(t, st, fs, "user_batch", t1, map[string]map[string]float64{"u1": {"user_clicks_30d": 5}})
	u2 := plant(t, st, fs, "user_batch", t2, map[string]map[string]float64{"u1": {"user_clicks_30d": 7777}})
	p1 := plant(t, st, fs, "user_item_batch", t1.Add(-time.Hour), map[string]map[string]float64{snapshot.PairID("u1", "i1"): {"ui_impressions_7d": 3}})
	// A rejected snapshot is never read either.
	rej := plant(t, st, fs, "item_batch", t1.Add(12*time.Hour), map[string]map[string]float64{"i1": {"item_ctr_7d": 0.5}})
	if err := snapshot.Reject(ctx, st, "item_batch", rej, "test: rejected"); err != nil {
		t.Fatal(err)
	}

	n := 0
	ev := func(at time.Time, a adaptrecv1.Action, session string, pos int32) *adaptrecv1.Event {
		n++
		return interaction(fmt.Sprintf("e%03d", n), at, "u1", "i1", a, pos, 0, session, "home", adaptrecv1.Device_DEVICE_TV)
	}
	imp, click := adaptrecv1.Action_ACTION_IMPRESSION, adaptrecv1.Action_ACTION_CLICK
	archive(t, st,
		ev(t1.Add(-time.Hour), imp, "a", 0),                 // e001: before every item snapshot
		ev(t1.Add(time.Hour), imp, "b", 2),                  // e002: s1
		ev(t1.Add(time.Hour+10*time.Second), click, "b", 2), // clicks e002
		ev(t1.Add(time.Hour+20*time.Second), adaptrecv1.Action_ACTION_WATCH, "b", 2),
		ev(t2.Add(-time.Millisecond), imp, "c", 0),                     // e005: s1, one millisecond before s2's cutoff
		ev(t2, imp, "c", 1),                                            // e006: s2 (cutoff ≤ event time)
		ev(t2.Add(time.Hour), imp, "d", 0),                             // e007: s2
		ev(t2.Add(time.Hour+31*time.Minute), click, "d", 0),            // too late for e007
		ev(t2.Add(3*time.Hour), imp, "e", 0),                           // e009: outside [From, To)
		ev(t2.Add(3*time.Hour+time.Second), click, "other-session", 0), // another session: not e009's
	)

	build := func(lag time.Duration) (offline.Manifest, []offline.Row) {
		t.Helper()
		m, err := offline.Build(ctx, st, fs, offline.Config{
			From: t1.Add(-2 * time.Hour), To: t2.Add(2 * time.Hour), AvailabilityLag: lag,
			Zones: func(string) string { return "Asia/Tokyo" },
		})
		if err != nil {
			t.Fatal(err)
		}
		m2, err := offline.ReadManifest(ctx, st, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := offline.ReadRows(ctx, st, m2)
		if err != nil {
			t.Fatal(err)
		}
		return m2, rows
	}

	m, rows := build(0)
	var gotIDs []string
	for _, r := range rows {
		gotIDs = append(gotIDs, r.EventID)
	}
	if !slices.Equal(gotIDs, []string{"e001", "e002", "e005", "e006", "e007"}) {
		t.Fatalf("examples %v", gotIDs)
	}
	if m.Rows != 5 || m.Positives != 1 || m.Watched != 1 || m.SchemaHash != fs.SchemaHash() || m.Model.SchemaHash != fs.SchemaHash() {
		t.Errorf("manifest rows %d positives %d watched %d hash %s", m.Rows, m.Positives, m.Watched, m.SchemaHash)
	}
	if labels := []int32{rows[0].Label, rows[1].Label, rows[2].Label, rows[3].Label, rows[4].Label}; !slices.Equal(labels, []int32{0, 1, 0, 0, 0}) {
		t.Errorf("labels %v: only e002 was clicked within 30 minutes", labels)
	}
	if want := []float32{0.03, 0.111, 0.111, 0.999, 0.999}; !slices.Equal(column(t, m, rows, "item_ctr_7d"), want) {
		t.Errorf("item_ctr_7d per example %v, want %v (default before the first snapshot; never the later one)", column(t, m, rows, "item_ctr_7d"), want)
	}
	if want := []float32{0, 11, 11, 99999, 99999}; !slices.Equal(column(t, m, rows, "item_impressions_7d"), want) {
		t.Errorf("item_impressions_7d %v, want %v", column(t, m, rows, "item_impressions_7d"), want)
	}
	if want := []float32{0, 5, 5, 7777, 7777}; !slices.Equal(column(t, m, rows, "user_clicks_30d"), want) {
		t.Errorf("user_clicks_30d %v, want %v", column(t, m, rows, "user_clicks_30d"), want)
	}
	if want := []float32{3, 3, 3, 3, 3}; !slices.Equal(column(t, m, rows, "ui_impressions_7d"), want) {
		t.Errorf("ui_impressions_7d %v, want %v", column(t, m, rows, "ui_impressions_7d"), want)
	}
	var uses []string
	for _, u := range m.Snapshots {
		uses = append(uses, fmt.Sprintf("%s:%s:%d", u.Group, u.Version, u.Examples))
	}
	wantUses := []string{
		"user_batch::1", "user_batch:" + u1 + ":2", "user_batch:" + u2 + ":2", "user_embedding::5",
		"item_batch::1", "item_batch:" + s1 + ":2", "item_batch:" + s2 + ":2", "item_embedding::5",
		"user_item_batch:" + p1 + ":5",
	}
	if !slices.Equal(uses, wantUses) {
		t.Errorf("snapshot uses\n%v\nwant\n%v", uses, wantUses)
	}
	if !strings.Contains(m.Defaulted["user_embedding"], "no snapshot") {
		t.Errorf("defaulted %v", m.Defaulted)
	}
	// Request lane: Tokyo is UTC+9, the events are on a TV.
	if got := column(t, m, rows, "req_local_hour"); !slices.Equal(got, []float32{8, 10, 8, 9, 10}) {
		t.Errorf("req_local_hour %v", got)
	}
	if got := component(t, m, rows, "req_device", 3); !slices.Equal(got, []float32{1, 1, 1, 1, 1}) {
		t.Errorf("req_device[tv] %v", got)
	}
	// e006 follows e005 (same session "c") by a millisecond; e005 is an
	// impression, not an action. e007's session "d" is new, and the last
	// action before it is the watch of e002's session, 24h40s earlier.
	if got := column(t, m, rows, "req_session_length_s"); math.Abs(float64(got[3])-0.001) > 1e-6 || got[4] != 0 {
		t.Errorf("req_session_length_s %v", got)
	}
	since := column(t, m, rows, "req_since_last_interaction_s")
	if since[0] != 2592000 || since[1] != 2592000 || since[4] != float32(24*3600-20) {
		t.Errorf("req_since_last_interaction_s %v", since)
	}

	// With a two-hour publication lag, the example at t2 and the one an
	// hour later still read s1: s2 was not available yet.
	m, rows = build(2 * time.Hour)
	if want := []float32{0.03, 0.03, 0.111, 0.111, 0.111}; !slices.Equal(column(t, m, rows, "item_ctr_7d"), want) {
		t.Errorf("with a 2h lag: item_ctr_7d %v, want %v", column(t, m, rows, "item_ctr_7d"), want)
	}
}

// TestRequestFeaturesUseArchivedTimeZone proves the local-time request
// features of a training row come from the client zone archived with the
// event, and are reported as defaulted when no zone is known at all.
func TestRequestFeaturesUseArchivedTimeZone(t *testing.T) {
	st := s3(t)
	fs := projectFeatures(t)
	ctx := t.Context()
	at := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC) // 15:30 in Kolkata, 11:00 in Paris
	zoned := interaction("z1", at, "u1", "i1", adaptrecv1.Action_ACTION_IMPRESSION, 0, 0, "s", "home", adaptrecv1.Device_DEVICE_MOBILE)
	zoned.GetInteraction().TimeZone = "Asia/Kolkata"
	plain := interaction("z2", at.Add(time.Hour), "u2", "i1", adaptrecv1.Action_ACTION_IMPRESSION, 0, 0, "s2", "home", adaptrecv1.Device_DEVICE_MOBILE)
	archive(t, st, zoned, plain)

	build := func(cfg offline.Config) (offline.Manifest, []offline.Row) {
		t.Helper()
		if cfg.From.IsZero() {
			cfg.From, cfg.To = at.Add(-time.Hour), at.Add(3*time.Hour)
		}
		m, err := offline.Build(ctx, st, fs, cfg)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := offline.ReadRows(ctx, st, m)
		if err != nil {
			t.Fatal(err)
		}
		return m, rows
	}
	m, rows := build(offline.Config{Zones: func(string) string { return "Europe/Paris" }})
	// z1 in its archived zone (Kolkata, 15); z2 has none: the home zone (Paris, 12).
	if got := column(t, m, rows, "req_local_hour"); !slices.Equal(got, []float32{15, 12}) {
		t.Errorf("req_local_hour %v, want [15 12]", got)
	}
	if _, ok := m.Defaulted["req_local_hour"]; ok {
		t.Errorf("req_local_hour reported defaulted: %v", m.Defaulted)
	}

	// Without home zones, z1 still has its own zone.
	m, _ = build(offline.Config{})
	if _, ok := m.Defaulted["req_local_hour"]; ok {
		t.Errorf("req_local_hour reported defaulted although an event carried its zone: %v", m.Defaulted)
	}
	// Only z2, and no home zones: no example has a zone.
	m, _ = build(offline.Config{From: at.Add(30 * time.Minute), To: at.Add(3 * time.Hour)})
	if !strings.Contains(m.Defaulted["req_local_hour"], "no time zone") {
		t.Errorf("req_local_hour not reported defaulted without any zone: %v", m.Defaulted)
	}
}
