package offline_test

import (
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/offline"
	"github.com/adaptrec/adaptrec/features/windowed"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/objstore"
)

// nlEvent is an interaction at a time relative to the test's labelled
// event.
type nlEvent struct {
	id      string
	at      time.Duration
	user    string
	item    string
	action  adaptrecv1.Action
	session string
}

// nearlineNames are the nearline ranker inputs the join computes.
func nearlineNames(t *testing.T, fs *features.FeatureSet) []string {
	t.Helper()
	var out []string
	for f := range windowed.NumFeatures {
		if d, ok := fs.Lookup(f.Name()); ok && d.Type.Width() > 0 {
			out = append(out, f.Name())
		}
	}
	if len(out) != 12 {
		t.Fatalf("%d nearline ranker inputs: %v", len(out), out)
	}
	return out
}

// sharedNearline computes an example's nearline values the way the
// nearline consumer does — features/windowed fed with the events, in
// order — from the events strictly before t, and reads them as serving
// does (a value older than its feature's ttl is the default). baselines
// are the items' item_clicks_7d of the snapshot the example reads.
func sharedNearline(fs *features.FeatureSet, evs []nlEvent, t0, t time.Time, user, item string, clicks7d map[string]float64) map[string]float32 {
	rules := windowed.RulesFor(fs)
	users := map[string]*windowed.User{}
	items := windowed.NewItems(windowed.DefaultBucket, 0)
	evs = slices.Clone(evs)
	sort.SliceStable(evs, func(a, b int) bool { return evs[a].at < evs[b].at })
	for _, e := range evs {
		at := t0.Add(e.at).UnixMilli()
		if at >= t.UnixMilli() {
			continue
		}
		we := windowed.Event{T: at, Item: e.item, Session: features.SessionKey(e.session), Action: windowed.ActionOf(e.action)}
		if users[e.user] == nil {
			users[e.user] = &windowed.User{}
		}
		users[e.user].Apply(&rules, we)
		items.Add(e.item, at, we.Action)
	}
	u := users[user]
	if u == nil {
		u = &windowed.User{}
	}
	now := t.UnixMilli()
	out := map[string]float32{}
	read := func(f windowed.Feature, v features.Value, at int64, ok bool) {
		d, _ := fs.Lookup(f.Name())
		if d.Type.Width() == 0 {
			return
		}
		x := d.Default.Float
		if d.Type.Kind == features.KindInt {
			x = float32(d.Default.Int)
		}
		if ok && (d.TTL == 0 || now-at <= d.TTL.Milliseconds()) {
			x = v.Float
			if d.Type.Kind == features.KindInt {
				x = float32(v.Int)
			}
		}
		out[f.Name()] = x
	}
	uv := u.Values(now)
	for f := windowed.SessionKey; f <= windowed.UserPurchases1h; f++ {
		v, at, ok := uv.Get(f)
		read(f, v, at, ok)
	}
	base, hasBase := clicks7d[item]
	iv := rules.ItemValues(items.Totals(item, now), windowed.BaselinePer30m(base), hasBase)
	for f := windowed.ItemClicks1h; f <= windowed.ItemTrendingVelocity30m; f++ {
		v, at, ok := iv.Get(f)
		read(f, v, at, ok)
	}
	read(windowed.PairImpressions1h, features.Value{Int: u.PairImpressions(item, now)}, now, true)
	return out
}

// TestNearlineFeaturesPointInTime proves that a training row's nearline
// values are what features/windowed — the nearline consumer's code —
// computes from the events before the example, and that events after it
// (one in the same millisecond included) and a later item snapshot change
// none of them.
func TestNearlineFeaturesPointInTime(t *testing.T) {
	t.Parallel()
	fs := projectFeatures(t)
	// The labelled impression E is at 12:00:30; the item windows are the
	// 1-minute buckets 11:01 to 12:00.
	t0 := time.Date(2026, 11, 20, 12, 0, 30, 0, time.UTC)
	imp, click, view, buy := adaptrecv1.Action_ACTION_IMPRESSION, adaptrecv1.Action_ACTION_CLICK, adaptrecv1.Action_ACTION_VIEW, adaptrecv1.Action_ACTION_PURCHASE
	m := time.Minute
	past := []nlEvent{
		{"u1-a", -70 * m, "u1", "i1", imp, "old"},               // out of every hour window
		{"u1-b", -61 * m, "u1", "i9", click, "old"},             // out of the user's hour
		{"u1-c", -50 * m, "u1", "i1", imp, "s"},                 // a new session id: session s from here
		{"u3-a", -59*m - 45*time.Second, "u3", "i1", imp, "x3"}, // 11:00:45: within the exact hour, but its bucket is not
		{"u4-a", -59*m - 30*time.Second, "u4", "i1", imp, "x4"}, // 11:01:00: the hour's first bucket
		{"u5-a", -40 * m, "u5", "i1", click, "x5"},              // in the hour, not in the 30 minutes
		{"u2-a", -20*m - time.Second, "u2", "i1", imp, "x2"},
		{"u2-b", -20 * m, "u2", "i1", click, "x2"},
		{"u1-d", -5 * m, "u1", "i1", imp, "s"}, // 45 minutes later: session s starts again
		{"u1-e", -4 * m, "u1", "i1", click, "s"},
		{"u1-f", -3 * m, "u1", "i2", click, "s"},
		{"u1-g", -2 * m, "u1", "i2", buy, "s"},
		{"u6-a", -30 * time.Second, "u6", "i7", imp, "x6"}, // an item without history or baseline
		{"u1-h", -m, "u1", "i3", view, "s"},
		{"E", 0, "u1", "i1", imp, "s"},
	}
	future := []nlEvent{
		{"f-same-user", 0, "u1", "i1", click, "s"}, // the same millisecond as E: its label, not its features
		{"f-same-ms", 0, "u2", "i1", click, "x2"},
		{"f-1ms", time.Millisecond, "u1", "i1", imp, "s"},
		{"f-u7-imp", time.Second, "u7", "i1", imp, "x7"},
		{"f-u7-click", 2 * time.Second, "u7", "i1", click, "x7"},
		{"f-buy", m, "u1", "i2", buy, "s2"},
	}
	clicks7d := map[string]float64{"i1": 5 * windowed.HalfHoursPer7Days} // a baseline of 5 clicks per 30 minutes

	build := func(evs []nlEvent, futureSnapshot bool) (offline.Manifest, []offline.Row) {
		t.Helper()
		st := s3(t)
		plant(t, st, fs, "item_batch", t0.Add(-24*time.Hour), map[string]map[string]float64{"i1": {"item_clicks_7d": clicks7d["i1"]}})
		if futureSnapshot {
			// Data cutoffs are whole seconds: the first after E.
			plant(t, st, fs, "item_batch", t0.Add(time.Second), map[string]map[string]float64{"i1": {"item_clicks_7d": 99 * windowed.HalfHoursPer7Days}})
		}
		archiveEvents(t, st, t0, evs)
		mf, err := offline.Build(t.Context(), st, fs, offline.Config{From: t0.Add(-2 * time.Hour), To: t0.Add(2 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		rows, err := offline.ReadRows(t.Context(), st, mf)
		if err != nil {
			t.Fatal(err)
		}
		return mf, rows
	}
	mf, rows := build(past, false)
	names := nearlineNames(t, fs)
	for _, n := range names {
		if why, ok := mf.Defaulted[n]; ok {
			t.Errorf("%s reported defaulted: %s", n, why)
		}
	}
	if !slices.Contains(offline.DefaultFeatures(fs), "item_ctr_1h") {
		t.Error("DefaultFeatures leaves out item_ctr_1h")
	}
	cols := map[string][]float32{}
	for _, n := range names {
		cols[n] = column(t, mf, rows, n)
	}
	byID := map[string]nlEvent{}
	for _, e := range past {
		byID[e.id] = e
	}

	// Every example's nearline values are the shared code's.
	for i, r := range rows {
		e := byID[r.EventID]
		want := sharedNearline(fs, past, t0, t0.Add(e.at), e.user, e.item, clicks7d)
		for _, n := range names {
			if got := cols[n][i]; got != want[n] {
				t.Errorf("example %s: %s = %v, the nearline code computes %v", r.EventID, n, got, want[n])
			}
		}
	}

	// And they are what the rules say, worked out by hand for E.
	e := slices.IndexFunc(rows, func(r offline.Row) bool { return r.EventID == "E" })
	if e < 0 {
		t.Fatal("no row for E")
	}
	prior := windowed.RulesFor(fs).CTRPrior
	want := map[string]float32{
		"user_session_key":           float32(features.SessionKey("s")),
		"user_session_start_ms":      float32(t0.Add(-5 * m).UnixMilli()),
		"user_session_interactions":  4, // two clicks, a purchase, a view
		"user_session_clicks":        2,
		"user_last_interaction_ms":   float32(t0.Add(-m).UnixMilli()),
		"user_clicks_1h":             2, // not the one 61 minutes before
		"user_purchases_1h":          1,
		"item_clicks_1h":             3, // u5, u2, u1
		"item_impressions_1h":        4, // u4, u1 twice, u2; not u3's (bucket 11:00) nor u1's 70 minutes before
		"item_ctr_1h":                float32((3 + 100*prior) / (4 + 100)),
		"item_trending_velocity_30m": float32((2.0 + 1) / (5 + 1)), // u2's and u1's clicks in the buckets from 11:31
		"ui_impressions_1h":          2,                            // 50 and 5 minutes before
	}
	for n, w := range want {
		if got := cols[n][e]; got != w {
			t.Errorf("E: %s = %v, want %v", n, got, w)
		}
	}
	u6 := slices.IndexFunc(rows, func(r offline.Row) bool { return r.EventID == "u6-a" })
	if got := cols["item_trending_velocity_30m"][u6]; got != 1 {
		t.Errorf("an item without a baseline: velocity %v, want the default 1", got)
	}
	if got := cols["item_ctr_1h"][u6]; got != float32(prior) {
		t.Errorf("an item without events: ctr %v, want the prior", got)
	}

	// Planting the future — events after E, some in its millisecond, and a
	// snapshot with another baseline after it — changes E's label, but
	// none of its features.
	all := append(slices.Clone(past), future...)
	mf2, rows2 := build(all, true)
	e2 := slices.IndexFunc(rows2, func(r offline.Row) bool { return r.EventID == "E" })
	if e2 < 0 {
		t.Fatal("no row for E with the future planted")
	}
	if !slices.Equal(rows[e].Features, rows2[e2].Features) {
		for _, c := range mf2.Model.Features {
			if a, b := column(t, mf, rows, c.Name)[e], column(t, mf2, rows2, c.Name)[e2]; a != b {
				t.Errorf("E: %s = %v, %v with the future planted", c.Name, a, b)
			}
		}
		t.Fatal("the future changed E's features")
	}
	if rows[e].Label != 0 || rows2[e2].Label != 1 {
		t.Errorf("E's label %d, then %d with the future: want 0, then 1 (the same-millisecond click)", rows[e].Label, rows2[e2].Label)
	}
	// A later example does see the earlier future: f-1ms's impression of
	// i1 counts u1's impressions at E, 1ms before, in its hour.
	f1 := slices.IndexFunc(rows2, func(r offline.Row) bool { return r.EventID == "f-1ms" })
	if got := column(t, mf2, rows2, "ui_impressions_1h")[f1]; got != 3 {
		t.Errorf("f-1ms: ui_impressions_1h = %v, want 3 (E's impression included)", got)
	}
}

// archiveEvents writes interactions at times relative to t0, in time
// order.
func archiveEvents(t *testing.T, st *objstore.Store, t0 time.Time, evs []nlEvent) {
	t.Helper()
	evs = slices.Clone(evs)
	sort.SliceStable(evs, func(a, b int) bool { return evs[a].at < evs[b].at })
	var out []*adaptrecv1.Event
	for _, e := range evs {
		out = append(out, interaction(e.id, t0.Add(e.at), e.user, e.item, e.action, 0, 0, e.session, "home", adaptrecv1.Device_DEVICE_MOBILE))
	}
	archive(t, st, out...)
}
