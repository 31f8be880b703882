package online_test

import (
	"maps"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/offline"
	"github.com/adaptrec/adaptrec/features/online"
	"github.com/adaptrec/adaptrec/features/snapshot"
	"github.com/adaptrec/adaptrec/features/windowed"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

// newProjectStack is newStack with the project's definitions
// (features/features.yaml), which define the cross features.
func newProjectStack(t *testing.T) *stack {
	t.Helper()
	return newStackOf(t, "../features.yaml", false)
}

// crossEvent is an interaction at a time relative to the test's t0.
type crossEvent struct {
	id      string
	at      time.Duration
	user    string
	item    string
	action  adaptrecv1.Action
	session string
}

// crossAffinity is a user_category_affinity whose components all differ.
func crossAffinity(reversed bool) []float32 {
	v := make([]float32, 32)
	for i := range v {
		v[i] = float32(i+1) / 64
		if reversed {
			v[i] = float32(32-i) / 64
		}
	}
	return v
}

// TestCrossFeaturesServedAsTrained serves the cross features of
// impressions from the snapshots and nearline session lists the platform
// would hold at their times (the lists as the nearline consumer writes
// them: features/windowed fed with the events before the impression), and
// requires the values the training join computes for the same impressions
// from the same snapshots and archived events, and the values worked out
// by hand: the share of the session's items of a known category in the
// candidate's category (nothing once the list is older than its 30-minute
// ttl) and the user's affinity component of the category mod 32. Ranking
// sessions (no BeginOptions.Lists) must still decode the session list.
func TestCrossFeaturesServedAsTrained(t *testing.T) {
	t.Parallel()
	s := newProjectStack(t)
	ctx := t.Context()
	t0 := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	asOf := t0.Add(-2 * time.Hour)
	a, b := crossAffinity(false), crossAffinity(true)
	s.publish(t, "user_batch", asOf, []snapshot.Row{
		s.row(t, "user_batch", "u1", vals{features.FeatureCategoryAffinity: a}),
		s.row(t, "user_batch", "u2", vals{features.FeatureCategoryAffinity: b}),
	})
	// i4 has no row (no category), i5 the unknown category -1, c3 none.
	cats := map[string]int{"i1": 5, "i2": 5, "i3": 7, "i5": -1, "c1": 5, "c2": 37}
	var items []snapshot.Row
	for _, id := range slices.Sorted(maps.Keys(cats)) {
		items = append(items, s.row(t, "item_batch", id, vals{features.FeatureItemCategory: cats[id]}))
	}
	s.publish(t, "item_batch", asOf, items)

	m, sec := time.Minute, time.Second
	imp, click, view := adaptrecv1.Action_ACTION_IMPRESSION, adaptrecv1.Action_ACTION_CLICK, adaptrecv1.Action_ACTION_VIEW
	evs := []crossEvent{
		{"u1-a", -10 * m, "u1", "i1", view, "s"},
		{"u1-b", -8 * m, "u1", "i2", click, "s"},
		{"u1-c", -6 * m, "u1", "i3", view, "s"},
		{"u1-d", -5 * m, "u1", "i4", view, "s"},
		{"u1-e", -4 * m, "u1", "i5", click, "s"},
		{"E1", 0, "u1", "c1", imp, "s"},
		{"E2", sec, "u1", "c2", imp, "s"},
		{"E3", 2 * sec, "u1", "c3", imp, "s"},
		{"u2-a", -50 * m, "u2", "i1", view, "t"},
		{"u2-b", -48 * m, "u2", "i2", click, "t"},
		{"E5", 3 * sec, "u2", "c1", imp, "t"},
		{"u2-c", 3 * m, "u2", "i1", view, "t"},
		{"E6", 4 * m, "u2", "c1", imp, "t"},
		{"u3-a", -30 * m, "u3", "i1", view, "x3"},
		{"E7", 0, "u3", "c1", imp, "x3"},
		{"u4-a", -30*m - time.Millisecond, "u4", "i1", view, "x4"},
		{"E8", 0, "u4", "c1", imp, "x4"},
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].at < evs[j].at })
	want := map[string]struct{ share, affinity float32 }{
		"E1": {float32(2) / 3, a[5]}, // known categories 7, 5, 5
		"E2": {0, a[5]},              // category 37: component 5
		"E3": {0, 0},                 // no category
		"E5": {0, b[5]},              // the list is 48 minutes old
		"E6": {1, b[5]},              // a new session
		"E7": {1, 0},                 // exactly the ttl; no affinity
		"E8": {0, 0},                 // a millisecond past it
	}

	// Training rows.
	var archived []*adaptrecv1.Event
	for _, e := range evs {
		archived = append(archived, events.NewInteraction(e.id, t0.Add(e.at), "test", &adaptrecv1.UserInteractionEvent{
			UserId: e.user, ItemId: e.item, Action: e.action, SessionId: e.session, Surface: "home", Device: adaptrecv1.Device_DEVICE_MOBILE,
		}))
	}
	aw := &eventlog.Writer{Store: s.st, Topic: events.TopicInteractions}
	if err := aw.Add(ctx, archived...); err != nil {
		t.Fatal(err)
	}
	if err := aw.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	mf, err := offline.Build(ctx, s.st, s.fs, offline.Config{From: t0.Add(-time.Hour), To: t0.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	rows, err := offline.ReadRows(ctx, s.st, mf)
	if err != nil {
		t.Fatal(err)
	}
	trained := map[string][2]float32{}
	tl, err := s.fs.LayoutFor(mf.Model)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		trained[r.EventID] = [2]float32{
			column(tl, r.Features, 1, "ui_session_category_share")[0],
			column(tl, r.Features, 1, "ui_category_affinity")[0],
		}
	}
	if len(trained) != len(want) {
		t.Fatalf("%d training rows %v, want %d", len(trained), trained, len(want))
	}

	// Serving, impression by impression in time order, each after the
	// nearline consumer wrote the user's state of the events before it.
	st := s.store(t, online.Options{BatchTwins: map[string]string{}, StaleIndicators: map[string]string{}})
	if err := st.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	l := s.rankerLayout(t)
	asm, err := st.NewAssembler(l)
	if err != nil {
		t.Fatal(err)
	}
	rules := windowed.RulesFor(s.fs)
	dst := make([]float32, 4*l.Width())
	for _, e := range evs {
		if e.action != imp {
			continue
		}
		at := t0.Add(e.at)
		var u windowed.User
		for _, p := range evs {
			if p.user == e.user && p.at < e.at {
				u.Apply(&rules, windowed.Event{T: t0.Add(p.at).UnixMilli(), Item: p.item, Session: features.SessionKey(p.session), Action: windowed.ActionOf(p.action)})
			}
		}
		uv := u.Values(at.UnixMilli())
		list, listAt, ok := uv.Get(windowed.SessionRecentItems)
		if !ok {
			t.Fatalf("%s: no session list", e.id)
		}
		if err := s.w.WriteUserNearline(ctx, e.user, nv(features.FeatureSessionRecentItems, time.UnixMilli(listAt), slices.Clone(list.List))); err != nil {
			t.Fatal(err)
		}
		var res online.Result
		se, err := asm.Begin(ctx, e.user, online.Request{Now: at}, &res, online.BeginOptions{})
		if err != nil {
			t.Fatal(err)
		}
		err = se.Assemble([]string{e.item}, dst)
		se.Close()
		if err != nil {
			t.Fatal(err)
		}
		got := [2]float32{column(l, dst, 1, "ui_session_category_share")[0], column(l, dst, 1, "ui_category_affinity")[0]}
		w := want[e.id]
		if got != [2]float32{w.share, w.affinity} {
			t.Errorf("%s: served share %v, affinity %v; want %v, %v", e.id, got[0], got[1], w.share, w.affinity)
		}
		if got != trained[e.id] {
			t.Errorf("%s: served share %v, affinity %v; trained on %v, %v", e.id, got[0], got[1], trained[e.id][0], trained[e.id][1])
		}
		if res.Degraded {
			t.Errorf("%s: degraded: %s", e.id, res.DegradedReason)
		}
	}

	// u1 at E3's time once more (its list is the one written for E3, as
	// for E1: impressions leave it alone), every candidate in one session:
	// with and without Lists, and through Assembler.Assemble.
	e1 := t0.Add(2 * sec)
	cands := []string{"c1", "c2", "c3", "c-unknown"}
	wantShare := []float32{float32(2) / 3, 0, 0, 0}
	wantAff := []float32{a[5], a[5], 0, 0}
	for _, lists := range []bool{false, true} {
		var res online.Result
		se, err := asm.Begin(ctx, "u1", online.Request{Now: e1}, &res, online.BeginOptions{Lists: lists})
		if err != nil {
			t.Fatal(err)
		}
		if got := s.fs.SessionItems(se.User()); !slices.Equal(got, []string{"i5", "i4", "i3", "i2", "i1"}) {
			t.Errorf("Lists %v: the session's user record holds session items %v", lists, got)
		}
		clear(dst)
		// Twice: the second Assemble reads the taste of the first.
		for range 2 {
			if err := se.Assemble(cands, dst); err != nil {
				t.Fatal(err)
			}
			if got := column(l, dst, len(cands), "ui_session_category_share"); !slices.Equal(got, wantShare) {
				t.Errorf("Lists %v: ui_session_category_share %v, want %v", lists, got, wantShare)
			}
			if got := column(l, dst, len(cands), "ui_category_affinity"); !slices.Equal(got, wantAff) {
				t.Errorf("Lists %v: ui_category_affinity %v, want %v", lists, got, wantAff)
			}
		}
		se.Close()
		// c1 and c2 have both values, c3 and the unknown item none: twice.
		wantCounts(t, &res, "user_item_request", map[online.Source]int32{online.SourceRequest: 8, online.SourceDefaultMissing: 8})
	}
	clear(dst)
	if err := asm.Assemble(ctx, "u1", cands, online.Request{Now: e1}, dst, nil); err != nil {
		t.Fatal(err)
	}
	if got := column(l, dst, len(cands), "ui_session_category_share"); !slices.Equal(got, wantShare) {
		t.Errorf("Assemble: ui_session_category_share %v, want %v", got, wantShare)
	}
	if got := column(l, dst, len(cands), "ui_category_affinity"); !slices.Equal(got, wantAff) {
		t.Errorf("Assemble: ui_category_affinity %v, want %v", got, wantAff)
	}

	// Explain says the same, and where each value came from.
	ex, err := st.Explain(ctx, "u1", cands, online.Request{Now: e1})
	if err != nil {
		t.Fatal(err)
	}
	type key struct{ item, feature string }
	seen := map[key]online.Explained{}
	for _, v := range ex.Values {
		if v.Feature.IsCross() {
			seen[key{v.EntityID, v.Feature.Name}] = v
		}
	}
	if len(seen) != 2*len(cands) {
		t.Errorf("Explain lists %d cross values, want %d", len(seen), 2*len(cands))
	}
	for i, id := range cands {
		for _, c := range []struct {
			name string
			want float32
		}{{"ui_session_category_share", wantShare[i]}, {"ui_category_affinity", wantAff[i]}} {
			v, ok := seen[key{id, c.name}]
			src := online.SourceRequest
			if i >= 2 {
				src = online.SourceDefaultMissing
			}
			if !ok || v.Value.Float != c.want || v.Source != src || v.Entity != features.EntityUserItem {
				t.Errorf("Explain %s %s: %+v (listed %v), want %v from %v", id, c.name, v.Value, ok, c.want, src)
			}
		}
	}
}
