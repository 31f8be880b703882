package online_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/online"
	"github.com/adaptrec/adaptrec/features/snapshot"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

// stack is a real Redis and S3 for one test, with the test definitions.
type stack struct {
	env   *testenv.Env
	fs    *features.FeatureSet
	st    *objstore.Store
	rdb   *redis.Client
	snaps online.ObjectSnapshots
	w     *online.Writer
}

var (
	twins      = map[string]string{"user_clicks_1h": "user_clicks_1h_batch", "item_ctr_1h": "item_ctr_1h_batch"}
	indicators = map[string]string{"user_nearline": "user_nearline_stale", "item_nearline": "item_nearline_stale"}
)

func newStack(t *testing.T, persist bool, extra ...testenv.Component) *stack {
	t.Helper()
	return newStackOf(t, "testdata/features.yaml", persist, extra...)
}

// newStackOf is newStack with the definitions of the file defs.
func newStackOf(t *testing.T, defs string, persist bool, extra ...testenv.Component) *stack {
	t.Helper()
	fs, err := features.Load(defs)
	if err != nil {
		t.Fatal(err)
	}
	env := testenv.NewWithOptions(t, testenv.Options{Components: append([]testenv.Component{testenv.Redis, testenv.S3}, extra...), Persist: persist})
	cfg := env.Config()
	st, err := objstore.New(t.Context(), cfg.S3)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.EnsureBucket(t.Context()); err != nil {
		t.Fatal(err)
	}
	rdb := online.NewClient(cfg.Redis)
	t.Cleanup(func() { rdb.Close() })
	w, err := online.NewWriter(rdb, fs, online.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &stack{env: env, fs: fs, st: st, rdb: rdb, snaps: online.ObjectSnapshots{Store: st}, w: w}
}

func (s *stack) store(t *testing.T, opts online.Options) *online.Store {
	t.Helper()
	if opts.BatchTwins == nil {
		opts.BatchTwins = twins
	}
	if opts.StaleIndicators == nil {
		opts.StaleIndicators = indicators
	}
	if opts.UserReadTimeout == 0 {
		// Tests share two cores: a 2ms budget would make them flaky. The
		// deadline itself is tested with a slow Redis.
		opts.UserReadTimeout = 5 * time.Second
	}
	st, err := online.New(s.fs, s.rdb, s.snaps, opts)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// vals are feature values by name: float64, int, []float32 or
// map[string]float64.
type vals map[string]any

// row builds a snapshot row of group: the given values, defaults for the
// rest.
func (s *stack) row(t *testing.T, group, id string, v vals) snapshot.Row {
	t.Helper()
	names, _, _, maps, err := snapshot.Layout(s.fs, group)
	if err != nil {
		t.Fatal(err)
	}
	r := snapshot.Row{EntityID: id}
	for _, name := range names {
		f, _ := s.fs.Lookup(name)
		switch x := v[name].(type) {
		case nil:
			r.Values = append(r.Values, snapshot.DefaultValues(f)...)
		case float64:
			r.Values = append(r.Values, x)
		case int:
			r.Values = append(r.Values, float64(x))
		case []float32:
			for _, c := range x {
				r.Values = append(r.Values, float64(c))
			}
		default:
			t.Fatalf("%s: value %T", name, x)
		}
	}
	for _, name := range maps {
		m, _ := v[name].(map[string]float64)
		r.Maps = append(r.Maps, m)
	}
	return r
}

// publish writes a snapshot, loads it into Redis when it is a user group,
// and flips the group's pointer to it.
func (s *stack) publish(t *testing.T, group string, asOf time.Time, rows []snapshot.Row) string {
	t.Helper()
	ctx := t.Context()
	m, err := snapshot.Write(ctx, s.st, s.fs, group, asOf, rows, snapshot.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Entity == features.EntityUserItem {
		stats, err := online.LoadPairsFromSnapshot(ctx, s.rdb, s.fs, s.snaps, group, m.Version, online.LoadOptions{Batch: 2})
		if err != nil {
			t.Fatal(err)
		}
		if stats.Pairs != int64(len(rows)) || stats.Dropped != 0 {
			t.Fatalf("load pairs: %+v for %d rows", stats, len(rows))
		}
	}
	if m.Entity == features.EntityUser {
		var progress []int64
		stats, err := online.LoadUsersFromSnapshot(ctx, s.rdb, s.fs, s.snaps, group, m.Version, online.LoadOptions{
			Batch:    2,
			Progress: func(p online.LoadProgress) { progress = append(progress, p.Written) },
		})
		if err != nil {
			t.Fatal(err)
		}
		if stats.Users != int64(len(rows)) || len(progress) != (len(rows)+1)/2 || progress[len(progress)-1] != int64(len(rows)) {
			t.Fatalf("load: %+v, progress %v for %d rows", stats, progress, len(rows))
		}
	}
	if _, err := snapshot.Flip(ctx, s.st, group, m.Version); err != nil {
		t.Fatal(err)
	}
	return m.Version
}

// record builds the record a test expects the store to serve.
func (s *stack) record(t *testing.T, e features.Entity, v vals) *features.Record {
	t.Helper()
	rec := s.fs.NewRecord(e)
	for name, x := range v {
		f, ok := s.fs.Lookup(name)
		if !ok {
			t.Fatalf("no feature %s", name)
		}
		var err error
		switch x := x.(type) {
		case float64:
			err = rec.SetFloat(f.ID, x)
		case int:
			err = rec.SetInt(f.ID, int64(x))
		case []float32:
			err = rec.SetVector(f.ID, x)
		case map[string]float64:
			err = rec.SetMap(f.ID, x)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return rec
}

func (s *stack) rankerLayout(t *testing.T) *features.Layout {
	t.Helper()
	var names []string
	for _, f := range s.fs.RankerInputs() {
		names = append(names, f.Name)
	}
	l, err := s.fs.NewLayout(names)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func nv(name string, at time.Time, v any) online.NearlineValue {
	out := online.NearlineValue{Feature: name, At: at}
	switch x := v.(type) {
	case float64:
		out.Value.Float = float32(x)
	case int:
		out.Value.Int = int64(x)
	case []string:
		out.Value.List = x
	}
	return out
}

// column returns feature name's first value in each row.
func column(l *features.Layout, rows []float32, n int, name string) []float32 {
	for _, c := range l.Columns() {
		if c.Name == name {
			out := make([]float32, n)
			for i := range n {
				out[i] = rows[i*l.Width()+c.Offset]
			}
			return out
		}
	}
	panic("no column " + name)
}

func counts(t *testing.T, res *online.Result, group string) map[online.Source]int32 {
	t.Helper()
	g, ok := res.Group(group)
	if !ok {
		t.Fatalf("no group %s in the result", group)
	}
	out := map[online.Source]int32{}
	for s, n := range g.Counts {
		if n > 0 {
			out[online.Source(s)] = n
		}
	}
	return out
}

func wantCounts(t *testing.T, res *online.Result, group string, want map[online.Source]int32) {
	t.Helper()
	got := counts(t, res, group)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s served %v, want %v", group, got, want)
	}
}

// world is the data the round-trip tests publish.
type world struct {
	now      time.Time
	asOf     time.Time
	user     vals // u1's batch values (both groups)
	items    map[string]vals
	userNear vals
	itemNear map[string]vals
	// pairs are u1's user×item values by item: batch and nearline.
	pairs map[string]vals
}

func (s *stack) publishWorld(t *testing.T) world {
	t.Helper()
	w := world{now: time.Now().UTC().Truncate(time.Millisecond)}
	w.asOf = w.now.Add(-2 * time.Hour).Truncate(time.Second)
	w.user = vals{"user_ctr_30d": 0.25, "user_clicks_30d": 40, "user_tenure_days": 300,
		"user_affinity": []float32{0.5, 0.25, 0, 0.25}, "user_clicks_1h_batch": 3,
		"user_creator_clicks": map[string]float64{"c7": 4}, "user_embedding": []float32{0.1, 0.2, 0.3}}
	w.items = map[string]vals{
		"i1": {"item_ctr_7d": 0.125, "item_clicks_7d": 90, "item_category_id": 3, "item_ctr_1h_batch": 0.0625, "item_embedding": []float32{1, 2, 3, 4}},
		"i2": {"item_ctr_7d": 0.5, "item_clicks_7d": 7, "item_category_id": 0, "item_ctr_1h_batch": 0.5},
		"i3": {"item_ctr_7d": 0.75, "item_clicks_7d": 1, "item_category_id": 9, "item_ctr_1h_batch": 0.25, "item_embedding": []float32{-1, 0, 0, 1}},
	}
	userRow := func(group string) []snapshot.Row {
		return []snapshot.Row{s.row(t, group, "u1", w.user), s.row(t, group, "u2", vals{"user_clicks_30d": 1, "user_embedding": []float32{9, 9, 9}})}
	}
	s.publish(t, "user_batch", w.asOf, userRow("user_batch"))
	s.publish(t, "user_embedding", w.asOf, userRow("user_embedding"))
	var ib, ie []snapshot.Row
	for _, id := range []string{"i1", "i2", "i3"} {
		ib = append(ib, s.row(t, "item_batch", id, w.items[id]))
		if _, ok := w.items[id]["item_embedding"]; ok {
			ie = append(ie, s.row(t, "item_embedding", id, w.items[id]))
		}
	}
	s.publish(t, "item_batch", w.asOf, ib)
	s.publish(t, "item_embedding", w.asOf, ie)
	pairBatch := map[string]vals{"i1": {"ui_clicked_30d": 1, "ui_category_ctr_30d": 0.5}, "i3": {"ui_category_ctr_30d": 0.125}}
	s.publish(t, "user_item_batch", w.asOf, []snapshot.Row{
		s.row(t, "user_item_batch", snapshot.PairID("u1", "i3"), pairBatch["i3"]),
		s.row(t, "user_item_batch", snapshot.PairID("u2", "i2"), vals{"ui_clicked_30d": 1}),
		s.row(t, "user_item_batch", snapshot.PairID("u1", "i1"), pairBatch["i1"]),
	})
	// i2 is listed by the nearline lane only, i3 by the batch lane only.
	if err := s.w.WritePairsNearline(t.Context(), []online.PairUpdate{{User: "u1", Values: []online.PairValues{{
		Feature: "ui_impressions_1h", Items: []string{"i2", "i1"}, Values: []features.Value{{Int: 1}, {Int: 4}}, At: w.now.Add(-15 * time.Second),
	}}}}); err != nil {
		t.Fatal(err)
	}
	w.pairs = map[string]vals{"i1": merge(pairBatch["i1"], vals{"ui_impressions_1h": 4}), "i2": {"ui_impressions_1h": 1}, "i3": pairBatch["i3"]}

	sessionStart := w.now.Add(-10 * time.Minute)
	w.userNear = vals{"user_session_key": int(features.SessionKey("s")), "user_session_start_ms": int(sessionStart.UnixMilli()),
		"user_session_interactions": 6, "user_last_interaction_ms": int(w.now.Add(-30 * time.Second).UnixMilli()), "user_clicks_1h": 5}
	var uv []online.NearlineValue
	for name, x := range w.userNear {
		uv = append(uv, nv(name, w.now.Add(-20*time.Second), x))
	}
	uv = append(uv, nv("user_recent_items", w.now.Add(-20*time.Second), []string{"i2", "i1"}))
	if err := s.w.WriteUserNearline(t.Context(), "u1", uv...); err != nil {
		t.Fatal(err)
	}
	w.itemNear = map[string]vals{"i1": {"item_ctr_1h": 0.375, "item_clicks_1h": 12}, "i3": {"item_clicks_1h": 2}}
	var updates []online.NearlineUpdate
	for _, id := range []string{"i1", "i3"} {
		u := online.NearlineUpdate{ID: id}
		for name, x := range w.itemNear[id] {
			u.Values = append(u.Values, nv(name, w.now.Add(-10*time.Second), x))
		}
		updates = append(updates, u)
	}
	if err := s.w.WriteItemsNearline(t.Context(), updates); err != nil {
		t.Fatal(err)
	}
	return w
}

func merge(vs ...vals) vals {
	out := vals{}
	for _, v := range vs {
		for k, x := range v {
			out[k] = x
		}
	}
	return out
}

func without(v vals, names ...string) vals {
	out := merge(v)
	for _, n := range names {
		delete(out, n)
	}
	return out
}

func TestAssembleRoundTrip(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	w := s.publishWorld(t)
	st := s.store(t, online.Options{})
	ctx := t.Context()
	if err := st.Ready(); err == nil {
		t.Fatal("Ready before anything was loaded")
	}
	if err := st.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.RefreshNearline(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.Ready(); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	l := s.rankerLayout(t)
	a, err := st.NewAssembler(l)
	if err != nil {
		t.Fatal(err)
	}
	items := []string{"i1", "i2", "i3", "i-unknown"}
	rc := features.RequestContext{Time: w.now, TimeZone: "Europe/Paris", SessionID: "s"}
	dst := make([]float32, len(items)*l.Width())
	var res online.Result
	if err := a.Assemble(ctx, "u1", items, online.Request{Context: rc, Now: w.now}, dst, &res); err != nil {
		t.Fatal(err)
	}

	// Expected rows, built from the values the test wrote, through the same
	// layout.
	user := s.record(t, features.EntityUser, without(merge(w.user, w.userNear), "user_creator_clicks"))
	state, err := s.fs.UserStateOf(user)
	if err != nil {
		t.Fatal(err)
	}
	rc.User = state
	req := s.fs.NewRecord(features.EntityRequest)
	if err := s.fs.FillRequest(req, rc); err != nil {
		t.Fatal(err)
	}
	var recs []*features.Record
	for _, id := range items[:3] {
		recs = append(recs, s.record(t, features.EntityItem, merge(w.items[id], w.itemNear[id])))
	}
	recs = append(recs, nil)
	var pairs []*features.Record
	for _, id := range items[:3] {
		pairs = append(pairs, s.record(t, features.EntityUserItem, w.pairs[id]))
	}
	pairs = append(pairs, nil)
	want := make([]float32, len(dst))
	if err := l.FillBatch(want, user, req, recs, pairs); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dst, want) {
		for i, c := range l.Columns() {
			for r := range items {
				if got, exp := dst[r*l.Width()+c.Offset], want[r*l.Width()+c.Offset]; got != exp {
					t.Errorf("row %d (%s) column %d %s = %g, want %g", r, items[r], i, c.Name, got, exp)
				}
			}
		}
		t.FailNow()
	}
	// The request lane saw the nearline session state.
	if got := column(l, dst, 1, "req_session_interactions")[0]; got != 6 {
		t.Errorf("req_session_interactions = %g, want 6 (from user_session_interactions)", got)
	}

	if res.Degraded || res.UnknownItems != 1 {
		t.Errorf("degraded %v, unknown items %d; want false, 1", res.Degraded, res.UnknownItems)
	}
	// Lanes and fallbacks per group: i2 has no nearline values and no
	// embedding; the unknown item reads defaults everywhere.
	wantCounts(t, &res, "user_batch", map[online.Source]int32{online.SourceBatch: 5})
	wantCounts(t, &res, "user_embedding", map[online.Source]int32{online.SourceBatch: 1})
	wantCounts(t, &res, "user_nearline", map[online.Source]int32{online.SourceNearline: 5})
	wantCounts(t, &res, "user_flags", map[online.Source]int32{online.SourceComputed: 1})
	wantCounts(t, &res, "item_batch", map[online.Source]int32{online.SourceBatch: 12, online.SourceDefaultMissing: 4})
	wantCounts(t, &res, "item_embedding", map[online.Source]int32{online.SourceBatch: 2, online.SourceDefaultMissing: 2})
	wantCounts(t, &res, "item_nearline", map[online.Source]int32{online.SourceNearline: 3, online.SourceDefaultMissing: 5})
	wantCounts(t, &res, "item_flags", map[online.Source]int32{online.SourceComputed: 4})
	wantCounts(t, &res, "user_item_batch", map[online.Source]int32{online.SourceBatch: 4, online.SourceDefaultMissing: 4})
	wantCounts(t, &res, "user_item_nearline", map[online.Source]int32{online.SourceNearline: 2, online.SourceDefaultMissing: 2})
	if g, _ := res.Group("item_batch"); g.Version != st.Versions()["item_batch"] || g.Version == "" || g.Main() != online.SourceBatch {
		t.Errorf("item_batch result %+v, store versions %v", g, st.Versions())
	}

	// Explain agrees, and shows what rows cannot: maps, lists, times.
	ex, err := st.Explain(ctx, "u1", []string{"i1"}, online.Request{Context: rc, Now: w.now})
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]online.Explained{}
	for _, e := range ex.Values {
		found[e.EntityID+"/"+e.Feature.Name] = e
	}
	if e := found["u1/user_creator_clicks"]; e.Source != online.SourceBatch || e.Value.Map["c7"] != 4 || !e.UpdatedAt.Equal(w.asOf) {
		t.Errorf("explained map %+v", e)
	}
	if e := found["u1/user_recent_items"]; e.Source != online.SourceNearline || !slices.Equal(e.Value.List, []string{"i2", "i1"}) ||
		!e.UpdatedAt.Equal(w.now.Add(-20*time.Second)) {
		t.Errorf("explained list %+v", e)
	}
	if e := found["i1/item_ctr_1h"]; e.Source != online.SourceNearline || e.Value.Float != 0.375 {
		t.Errorf("explained item nearline %+v", e)
	}
	if e := found["/req_session_interactions"]; e.Source != online.SourceRequest || e.Value.Int != 6 {
		t.Errorf("explained request feature %+v", e)
	}
	if e := found["u1/user_nearline_stale"]; e.Source != online.SourceComputed || e.Value.Int != 0 {
		t.Errorf("explained indicator %+v", e)
	}
	if e := found["i1/ui_impressions_1h"]; e.Entity != features.EntityUserItem || e.Source != online.SourceNearline || e.Value.Int != 4 ||
		!e.UpdatedAt.Equal(w.now.Add(-15*time.Second)) {
		t.Errorf("explained user×item nearline %+v", e)
	}
	if e := found["i1/ui_category_ctr_30d"]; e.Source != online.SourceBatch || e.Value.Float != 0.5 {
		t.Errorf("explained user×item batch %+v", e)
	}
	if n := len(ex.Values); n != s.fs.Len() {
		t.Errorf("Explain listed %d values, want %d", n, s.fs.Len())
	}
}

func TestAssembleFallbackCascade(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	w := s.publishWorld(t)
	st := s.store(t, online.Options{})
	ctx := t.Context()
	if err := st.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.RefreshNearline(ctx); err != nil {
		t.Fatal(err)
	}
	l := s.rankerLayout(t)
	a, err := st.NewAssembler(l)
	if err != nil {
		t.Fatal(err)
	}
	items := []string{"i1", "i2", "i3"}
	dst := make([]float32, len(items)*l.Width())
	assemble := func(user string, now time.Time) *online.Result {
		t.Helper()
		var res online.Result
		rc := features.RequestContext{Time: now, SessionID: "s"}
		if err := a.Assemble(ctx, user, items, online.Request{Context: rc, Now: now}, dst, &res); err != nil {
			t.Fatal(err)
		}
		return &res
	}

	t.Run("stale nearline falls back to the batch twin", func(t *testing.T) {
		// Five minutes later: past the 1m SLA of the clicks and CTR, within
		// their 2h ttl, and the session (ttl 30m, no SLA) still fresh.
		res := assemble("u1", w.now.Add(5*time.Minute))
		if got := column(l, dst, 1, "user_clicks_1h")[0]; got != 3 {
			t.Errorf("user_clicks_1h = %g, want the batch twin's 3", got)
		}
		if got := column(l, dst, 1, "user_nearline_stale")[0]; got != 1 {
			t.Errorf("user_nearline_stale = %g, want 1", got)
		}
		if got := column(l, dst, 1, "req_session_interactions")[0]; got != 6 {
			t.Errorf("req_session_interactions = %g, want 6: the session is fresh", got)
		}
		wantCounts(t, res, "user_nearline", map[online.Source]int32{online.SourceNearline: 4, online.SourceBatchFallback: 1})
		if g, _ := res.Group("user_nearline"); !g.Stale {
			t.Error("user_nearline not reported stale")
		}
		// i1's CTR has a twin; its clicks and i3's do not: served late.
		if got := column(l, dst, 3, "item_ctr_1h"); !slices.Equal(got, []float32{0.0625, 0.03, 0.03}) {
			t.Errorf("item_ctr_1h = %v, want [i1's twin 0.0625, default, default]", got)
		}
		if got := column(l, dst, 3, "item_clicks_1h"); !slices.Equal(got, []float32{12, 0, 2}) {
			t.Errorf("item_clicks_1h = %v, want late values [12 0 2]", got)
		}
		if got := column(l, dst, 3, "item_nearline_stale"); !slices.Equal(got, []float32{1, 0, 1}) {
			t.Errorf("item_nearline_stale = %v, want [1 0 1]", got)
		}
		wantCounts(t, res, "item_nearline", map[online.Source]int32{
			online.SourceBatchFallback: 1, online.SourceNearlineLate: 2, online.SourceDefaultMissing: 3})
	})

	t.Run("expired nearline without a twin reads the default", func(t *testing.T) {
		// Three hours later every nearline value is past its ttl, except the
		// last interaction (30d). The twin still stands in for the clicks.
		res := assemble("u1", w.now.Add(3*time.Hour))
		if got := column(l, dst, 3, "item_clicks_1h"); !slices.Equal(got, []float32{0, 0, 0}) {
			t.Errorf("item_clicks_1h = %v, want defaults", got)
		}
		if got := column(l, dst, 1, "user_session_key")[0]; got != 0 {
			t.Errorf("user_session_key = %g, want the default", got)
		}
		if got := column(l, dst, 1, "user_clicks_1h")[0]; got != 3 {
			t.Errorf("user_clicks_1h = %g, want the twin's 3", got)
		}
		wantCounts(t, res, "user_nearline", map[online.Source]int32{
			online.SourceNearline: 1, online.SourceBatchFallback: 1, online.SourceDefaultExpired: 3})
		// The batch snapshot is now 5h old: within every SLA and ttl.
		wantCounts(t, res, "item_batch", map[online.Source]int32{online.SourceBatch: 12})
	})

	t.Run("late and expired batch snapshots", func(t *testing.T) {
		// 3 days after the cutoff: past the 26h SLA; past the 2d ttl of the
		// twins (defaults), within the 7d ttl of the rest (late).
		res := assemble("u1", w.asOf.Add(72*time.Hour))
		wantCounts(t, res, "item_batch", map[online.Source]int32{online.SourceBatchLate: 9, online.SourceDefaultExpired: 3})
		wantCounts(t, res, "user_batch", map[online.Source]int32{online.SourceBatchLate: 4, online.SourceDefaultExpired: 1})
		if got := column(l, dst, 3, "item_ctr_1h_batch"); !slices.Equal(got, []float32{0.03, 0.03, 0.03}) {
			t.Errorf("item_ctr_1h_batch = %v, want defaults past its ttl", got)
		}
		if got := column(l, dst, 3, "item_ctr_7d"); !slices.Equal(got, []float32{0.125, 0.5, 0.75}) {
			t.Errorf("item_ctr_7d = %v, want late values", got)
		}
	})

	t.Run("missing user reads defaults", func(t *testing.T) {
		res := assemble("nobody", w.now)
		if res.Degraded {
			t.Fatal("an unknown user degraded the result")
		}
		wantCounts(t, res, "user_batch", map[online.Source]int32{online.SourceDefaultMissing: 5})
		wantCounts(t, res, "user_embedding", map[online.Source]int32{online.SourceDefaultMissing: 1})
		wantCounts(t, res, "user_nearline", map[online.Source]int32{online.SourceDefaultMissing: 5})
		for _, c := range l.Columns() {
			if c.Entity != features.EntityUser {
				continue
			}
			f, _ := s.fs.Lookup(c.Name)
			def := snapshot.DefaultValues(f)
			for i := range c.Width {
				if got := dst[c.Offset+i]; float64(got) != float64(float32(def[i])) {
					t.Errorf("%s[%d] = %g, want the default %g", c.Name, i, got, def[i])
				}
			}
		}
		if got := column(l, dst, 1, "req_since_last_interaction_s")[0]; got != 2592000 {
			t.Errorf("req_since_last_interaction_s = %g, want the default cap", got)
		}
	})
}

func TestRedisDownDegradesAndRecovers(t *testing.T) {
	t.Parallel()
	s := newStack(t, true)
	w := s.publishWorld(t)
	st := s.store(t, online.Options{BreakerCooldown: 50 * time.Millisecond})
	ctx := t.Context()
	if err := st.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.RefreshNearline(ctx); err != nil {
		t.Fatal(err)
	}
	l := s.rankerLayout(t)
	a, err := st.NewAssembler(l)
	if err != nil {
		t.Fatal(err)
	}
	items := []string{"i1", "i2", "i3"}
	healthy := make([]float32, len(items)*l.Width())
	var res online.Result
	req := online.Request{Context: features.RequestContext{Time: w.now}, Now: w.now}
	if err := a.Assemble(ctx, "u1", items, req, healthy, &res); err != nil || res.Degraded {
		t.Fatalf("healthy Assemble: %v, degraded %v", err, res.Degraded)
	}

	s.env.StopComponent(testenv.Redis)
	dst := make([]float32, len(healthy))
	// Every call succeeds, quickly, degraded; once failures have lasted a
	// cooldown the breaker opens and calls skip Redis.
	reasons := map[string]int{}
	for deadline := time.Now().Add(5 * time.Second); reasons["breaker_open"] == 0 && time.Now().Before(deadline); {
		start := time.Now()
		if err := a.Assemble(ctx, "u1", items, req, dst, &res); err != nil {
			t.Fatalf("Assemble with Redis down: %v", err)
		}
		if took := time.Since(start); took > 100*time.Millisecond {
			t.Errorf("Assemble with Redis down took %s", took)
		}
		if !res.Degraded {
			t.Fatal("Assemble with Redis down is not degraded")
		}
		reasons[res.DegradedReason]++
	}
	if reasons["breaker_open"] == 0 || reasons["error"] == 0 {
		t.Errorf("degraded reasons %v: want errors, then the breaker open", reasons)
	}
	wantCounts(t, &res, "user_batch", map[online.Source]int32{online.SourceDefaultUnavailable: 5})
	wantCounts(t, &res, "user_nearline", map[online.Source]int32{online.SourceDefaultUnavailable: 5})
	wantCounts(t, &res, "user_item_batch", map[online.Source]int32{online.SourceDefaultUnavailable: 6})
	wantCounts(t, &res, "user_item_nearline", map[online.Source]int32{online.SourceDefaultUnavailable: 3})
	if got := column(l, dst, 3, "ui_category_ctr_30d"); !slices.Equal(got, []float32{0.03, 0.03, 0.03}) {
		t.Errorf("ui_category_ctr_30d = %v with Redis down, want the defaults", got)
	}
	// User features are defaults, with the staleness indicator set; item
	// features still come from the in-process caches.
	if got := column(l, dst, 1, "user_ctr_30d")[0]; got != 0.03 {
		t.Errorf("user_ctr_30d = %g, want the default", got)
	}
	if got := column(l, dst, 1, "user_nearline_stale")[0]; got != 1 {
		t.Errorf("user_nearline_stale = %g, want 1 with Redis down", got)
	}
	if got, want := column(l, dst, 3, "item_ctr_7d"), column(l, healthy, 3, "item_ctr_7d"); !slices.Equal(got, want) {
		t.Errorf("item_ctr_7d = %v with Redis down, want the cached %v", got, want)
	}
	if err := st.RefreshNearline(ctx); err == nil {
		t.Error("RefreshNearline succeeded with Redis down")
	}
	if got, want := column(l, dst, 3, "item_clicks_1h"), column(l, healthy, 3, "item_clicks_1h"); !slices.Equal(got, want) {
		t.Errorf("item_clicks_1h = %v after a failed refresh, want the values read before %v", got, want)
	}

	s.env.StartComponent(testenv.Redis)
	testenv.Eventually(t, 10*time.Second, func() error {
		if err := a.Assemble(ctx, "u1", items, req, dst, &res); err != nil {
			return err
		}
		if res.Degraded {
			return fmt.Errorf("still degraded (%s)", res.DegradedReason)
		}
		return nil
	})
	if !slices.Equal(dst, healthy) {
		t.Error("rows after recovery differ from the rows before the outage")
	}
}

func TestSlowRedisIsBoundedByTheDeadline(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	w := s.publishWorld(t)
	st := s.store(t, online.Options{UserReadTimeout: 5 * time.Millisecond, BreakerFailures: 1000})
	ctx := t.Context()
	if err := st.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	l := s.rankerLayout(t)
	a, err := st.NewAssembler(l)
	if err != nil {
		t.Fatal(err)
	}
	// A script that busies Redis for 300 ms stands for a slow server.
	done := make(chan error, 1)
	go func() {
		done <- s.rdb.Eval(ctx, "local t = redis.call('TIME') local e = t[1]*1e6 + t[2] + 300000 "+
			"repeat t = redis.call('TIME') until t[1]*1e6 + t[2] >= e return 1", nil).Err()
	}()
	// Wait until the script runs: a PING from another connection blocks.
	testenv.Eventually(t, 5*time.Second, func() error {
		pctx, cancel := contextWithTimeout(t, 20*time.Millisecond)
		defer cancel()
		if err := s.rdb.Ping(pctx).Err(); err == nil {
			return fmt.Errorf("redis still answers")
		}
		return nil
	})
	dst := make([]float32, l.Width())
	var res online.Result
	start := time.Now()
	if err := a.Assemble(ctx, "u1", []string{"i1"}, online.Request{Now: w.now}, dst, &res); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 50*time.Millisecond {
		t.Errorf("Assemble took %s against a busy Redis, want about the 5ms deadline", took)
	}
	if !res.Degraded || res.DegradedReason != "timeout" {
		t.Errorf("degraded %v (%s), want a timeout", res.Degraded, res.DegradedReason)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestSnapshotFlipAndRollbackAreAtomic(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	ctx := t.Context()
	now := time.Now().UTC()
	const nItems = 300
	ids := make([]string, nItems)
	for i := range ids {
		ids[i] = fmt.Sprintf("item%04d", i)
	}
	// Version n encodes n in every value: item_clicks_7d = n*10000 + item,
	// user_clicks_30d = n.
	publish := func(n int) (string, string) {
		asOf := now.Add(time.Duration(n-10) * time.Hour).Truncate(time.Second)
		var items []snapshot.Row
		for i, id := range ids {
			items = append(items, s.row(t, "item_batch", id, vals{"item_clicks_7d": n*10000 + i}))
		}
		m, err := snapshot.Write(ctx, s.st, s.fs, "item_batch", asOf, items, snapshot.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		um, err := snapshot.Write(ctx, s.st, s.fs, "user_batch", asOf, []snapshot.Row{s.row(t, "user_batch", "u1", vals{"user_clicks_30d": n})}, snapshot.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := online.LoadUsersFromSnapshot(ctx, s.rdb, s.fs, s.snaps, "user_batch", um.Version, online.LoadOptions{}); err != nil {
			t.Fatal(err)
		}
		return m.Version, um.Version
	}
	flip := func(group, version string) {
		if _, err := snapshot.Flip(ctx, s.st, group, version); err != nil {
			t.Fatal(err)
		}
	}
	i1, u1 := publish(1)
	i2, u2 := publish(2)
	flip("item_batch", i1)
	flip("user_batch", u1)

	st := s.store(t, online.Options{})
	if err := st.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	l := s.rankerLayout(t)
	a, err := st.NewAssembler(l)
	if err != nil {
		t.Fatal(err)
	}

	// Readers check every call reads one version of each group and that
	// versions only move as flips and rollbacks allow.
	var (
		stop     atomic.Bool
		wg       sync.WaitGroup
		calls    atomic.Int64
		mu       sync.Mutex
		seenItem = map[int]bool{}
		seenUser = map[int]bool{}
		failures []string
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 5 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := make([]float32, nItems*l.Width())
			var res online.Result
			for !stop.Load() {
				// Each reader asks for the items in its own order.
				order := slices.Clone(ids)
				for i := range order {
					j := (i*7 + r*13) % nItems
					order[i], order[j] = order[j], order[i]
				}
				if err := a.Assemble(ctx, "u1", order, online.Request{}, dst, &res); err != nil {
					fail("Assemble: %v", err)
					return
				}
				clicks := column(l, dst, nItems, "item_clicks_7d")
				version := int(clicks[0]) / 10000
				for i, c := range clicks {
					var idx int
					fmt.Sscanf(order[i], "item%04d", &idx)
					if int(c) != version*10000+idx {
						fail("row %d (%s) has item_clicks_7d %g; row 0 read version %d: mixed versions", i, order[i], c, version)
						break
					}
				}
				if res.Degraded {
					fail("degraded read: %s", res.DegradedReason)
				}
				userVersion := int(column(l, dst, 1, "user_clicks_30d")[0])
				mu.Lock()
				seenItem[version], seenUser[userVersion] = true, true
				mu.Unlock()
				calls.Add(1)
			}
		}()
	}
	waitCalls := func() {
		t.Helper()
		n := calls.Load()
		testenv.Eventually(t, 10*time.Second, func() error {
			if calls.Load() < n+20 {
				return fmt.Errorf("readers made %d calls", calls.Load()-n)
			}
			return nil
		})
	}
	read := func() (int, int) {
		dst := make([]float32, l.Width())
		if err := a.Assemble(ctx, "u1", ids[:1], online.Request{}, dst, nil); err != nil {
			t.Fatal(err)
		}
		return int(column(l, dst, 1, "item_clicks_7d")[0]) / 10000, int(column(l, dst, 1, "user_clicks_30d")[0])
	}
	waitCalls()
	if iv, uv := read(); iv != 1 || uv != 1 {
		t.Fatalf("before the flip: item version %d, user version %d; want 1, 1", iv, uv)
	}

	// Flip both groups, then announce it as the batch lane does.
	flip("item_batch", i2)
	flip("user_batch", u2)
	for _, e := range []*adaptrecv1.FeatureSnapshotEvent{
		{FeatureView: "item_batch", SnapshotVersion: i2, PreviousVersion: i1},
		{FeatureView: "user_batch", SnapshotVersion: u2, PreviousVersion: u1},
	} {
		if err := st.HandleSnapshotEvent(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if iv, uv := read(); iv != 2 || uv != 2 {
		t.Fatalf("after the flip: item version %d, user version %d; want 2, 2", iv, uv)
	}
	waitCalls()

	// Roll both back; this time the periodic pointer check finds it.
	for _, g := range []string{"item_batch", "user_batch"} {
		if _, err := snapshot.Rollback(ctx, s.st, g); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if iv, uv := read(); iv != 1 || uv != 1 {
		t.Fatalf("after the rollback: item version %d, user version %d; want 1, 1", iv, uv)
	}
	if v := st.Versions(); v["item_batch"] != i1 || v["user_batch"] != u1 {
		t.Errorf("versions after rollback %v, want item_batch %s user_batch %s", v, i1, u1)
	}
	waitCalls()
	stop.Store(true)
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	if !seenItem[1] || !seenItem[2] || !seenUser[1] || !seenUser[2] {
		t.Errorf("readers saw item versions %v and user versions %v, want both of each", seenItem, seenUser)
	}

	// A flip to a user version that was never loaded into Redis is refused
	// and the store keeps serving the loaded one.
	um, err := snapshot.Write(ctx, s.st, s.fs, "user_batch", now.Truncate(time.Second), []snapshot.Row{s.row(t, "user_batch", "u1", vals{"user_clicks_30d": 3})}, snapshot.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	flip("user_batch", um.Version)
	if err := st.Refresh(ctx); err == nil {
		t.Error("Refresh switched to a user version not loaded into Redis")
	}
	if _, uv := read(); uv != 1 {
		t.Errorf("user version %d after a refused flip, want 1", uv)
	}
}

func TestWriterKeepsTheNewestValue(t *testing.T) {
	t.Parallel()
	s := newStack(t, false)
	ctx := t.Context()
	now := time.Now().UTC().Truncate(time.Millisecond)
	write := func(at time.Time, clicks int) {
		t.Helper()
		if err := s.w.WriteItemNearline(ctx, "i1", nv("item_clicks_1h", at, clicks)); err != nil {
			t.Fatal(err)
		}
	}
	write(now, 5)
	write(now.Add(-time.Minute), 1) // a replay of an older event: ignored
	write(now, 6)                   // same time: overwrites
	st := s.store(t, online.Options{})
	if err := st.RefreshNearline(ctx); err != nil {
		t.Fatal(err)
	}
	ex, err := st.Explain(ctx, "", []string{"i1"}, online.Request{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]online.Explained{}
	for _, e := range ex.Values {
		got[e.Feature.Name] = e
	}
	if e := got["item_clicks_1h"]; e.Value.Int != 6 || !e.UpdatedAt.Equal(now) || e.Source != online.SourceNearline {
		t.Errorf("item_clicks_1h = %+v, want 6 written at %s", e, now)
	}
	// The item's key expires with the group's longest ttl.
	ttl, err := s.rdb.PTTL(ctx, online.DefaultKeyPrefix+"{i1}:n:item_nearline").Result()
	if err != nil || ttl <= time.Hour || ttl > 2*time.Hour {
		t.Errorf("nearline key ttl %s (%v), want about 2h", ttl, err)
	}
	// Only items written since the last refresh are read again.
	write(now.Add(time.Second), 7)
	if err := s.w.WriteItemNearline(ctx, "i2", nv("item_ctr_1h", now, 0.5)); err != nil {
		t.Fatal(err)
	}
	if err := st.RefreshNearline(ctx); err != nil {
		t.Fatal(err)
	}
	if n := st.Items(); n != 2 {
		t.Errorf("item cache knows %d items, want 2", n)
	}
	// Writes are checked against the definitions.
	for _, bad := range []online.NearlineValue{
		nv("item_ctr_7d", now, 0.5),          // a batch feature
		nv("user_clicks_1h", now, 1),         // a user feature
		nv("no_such_feature", now, 1),        // unknown
		nv("item_clicks_1h", time.Time{}, 1), // no time
		{Feature: "item_ctr_1h", At: now, Value: features.Value{Float: float32(math.Inf(1))}},
	} {
		if err := s.w.WriteItemNearline(ctx, "i1", bad); err == nil {
			t.Errorf("WriteItemNearline(%+v) succeeded", bad)
		}
	}
}

func contextWithTimeout(t *testing.T, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), d)
}

// TestSnapshotEventSwitchesAtOnce: a store following the feature-snapshot
// topic switches to a flipped version as soon as its FeatureSnapshotEvent
// arrives, long before its pointer check would find it.
func TestSnapshotEventSwitchesAtOnce(t *testing.T) {
	t.Parallel()
	s := newStack(t, false, testenv.Kafka)
	ctx := t.Context()
	cfg := s.env.Config()
	if err := events.CreateTopics(ctx, cfg.Kafka, 2, events.TopicFeatureSnapshots); err != nil {
		t.Fatal(err)
	}
	w := s.publishWorld(t)
	st := s.store(t, online.Options{PointerInterval: time.Hour})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(st.Refresh(ctx))
	old := st.Versions()["item_batch"]

	fctx, stop := context.WithCancel(ctx)
	defer stop()
	handled := make(chan string, 16)
	followed := make(chan error, 1)
	go func() {
		followed <- events.Follow(fctx, cfg.Kafka, events.TopicFeatureSnapshots, nil, func(ctx context.Context, e *adaptrecv1.Event) error {
			err := st.HandleSnapshotEvent(ctx, e.GetFeatureSnapshot())
			handled <- e.GetEnvelope().GetEventId()
			return err
		})
	}()
	go st.Run(fctx) //nolint:errcheck // returns the context's error

	// Flip a new item version, then announce it until the follower (which
	// starts at the topic's end) has seen an announcement.
	next := s.publish(t, "item_batch", w.asOf.Add(time.Hour), []snapshot.Row{s.row(t, "item_batch", "i1", vals{"item_clicks_7d": 4242})})
	p, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{})
	must(err)
	defer p.Close()
	testenv.Eventually(t, 30*time.Second, func() error {
		ev := events.NewFeatureSnapshot(events.NewID(), time.Now(), "test", &adaptrecv1.FeatureSnapshotEvent{
			FeatureView: "item_batch", SnapshotVersion: next, PreviousVersion: old})
		if err := p.Publish(ctx, ev); err != nil {
			return err
		}
		select {
		case <-handled:
		case <-time.After(500 * time.Millisecond):
			return errors.New("the follower has not handled an event yet")
		}
		if v := st.Versions()["item_batch"]; v != next {
			return fmt.Errorf("item_batch serves %s after the event, want %s", v, next)
		}
		return nil
	})
	ex, err := st.Explain(ctx, "u1", []string{"i1"}, online.Request{Now: time.Now()})
	must(err)
	for _, e := range ex.Values {
		if e.EntityID == "i1" && e.Feature.Name == "item_clicks_7d" && e.Value.Int != 4242 {
			t.Errorf("i1 item_clicks_7d = %d after the flip, want 4242", e.Value.Int)
		}
	}
	stop()
	if err := <-followed; err != nil {
		t.Errorf("Follow: %v", err)
	}
}
