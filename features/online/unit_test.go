package online

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/features"
)

func testSet(t testing.TB) *features.FeatureSet {
	t.Helper()
	fs, err := features.Load("testdata/features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func mustFeature(t testing.TB, fs *features.FeatureSet, name string) *features.Feature {
	t.Helper()
	f, ok := fs.Lookup(name)
	if !ok {
		t.Fatalf("no feature %s", name)
	}
	return f
}

var testTwins = map[string]string{"user_clicks_1h": "user_clicks_1h_batch", "item_ctr_1h": "item_ctr_1h_batch"}
var testIndicators = map[string]string{"user_nearline": "user_nearline_stale", "item_nearline": "item_nearline_stale"}

func TestRecordLayoutRoundTrip(t *testing.T) {
	t.Parallel()
	fs := testSet(t)
	names := []string{"user_affinity", "user_clicks_1h_batch", "user_clicks_30d", "user_ctr_30d", "user_tenure_days"}
	types := []string{"vector[4]", "int", "int", "float", "int"}
	rl, err := newRecordLayout(fs, features.EntityUser, names, types, []string{"user_creator_clicks"})
	if err != nil {
		t.Fatal(err)
	}
	in := fs.NewRecord(features.EntityUser)
	must(t, in.SetVector(mustFeature(t, fs, "user_affinity").ID, []float32{0.5, -1.25, 0, 3e9}))
	must(t, in.SetInt(mustFeature(t, fs, "user_clicks_30d").ID, -1<<40))
	must(t, in.SetFloat(mustFeature(t, fs, "user_ctr_30d").ID, 0.125))
	must(t, in.SetMap(mustFeature(t, fs, "user_creator_clicks").ID, map[string]float64{"7": 3, "12": 0.5}))
	// user_clicks_1h_batch and user_tenure_days stay unset.
	b, err := rl.encode(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	out := fs.NewRecord(features.EntityUser)
	vec := make([]float32, 8)
	if err := rl.decode(string(b), out, true, vec); err != nil {
		t.Fatal(err)
	}
	for _, name := range append(names, "user_creator_clicks") {
		f := mustFeature(t, fs, name)
		want, wantSet, _ := in.Get(f.ID)
		got, gotSet, _ := out.Get(f.ID)
		if gotSet != wantSet || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: decoded %+v (set %v), want %+v (set %v)", name, got, gotSet, want, wantSet)
		}
	}
	// Without maps the fixed-width values are the same and the map unset.
	out.Reset()
	must(t, rl.decode(string(b), out, false, vec))
	if out.Has(mustFeature(t, fs, "user_creator_clicks").ID) || !out.Has(mustFeature(t, fs, "user_ctr_30d").ID) {
		t.Error("decode without maps: wrong features set")
	}
	for _, bad := range []string{"", "\x02", string(b[:len(b)-3])} {
		if err := rl.decode(bad, out, true, vec); !errors.Is(err, ErrCorruptValue) {
			t.Errorf("decode(%q) = %v, want ErrCorruptValue", bad, err)
		}
	}
}

func TestRecordLayoutSkipsFeaturesTheReaderLacks(t *testing.T) {
	t.Parallel()
	fs := testSet(t)
	// Writer's layout: two features, one the reader does not define.
	writer := &recordLayout{entries: []layoutEntry{
		{name: "user_ctr_30d", kind: features.KindFloat, dim: 1, target: mustFeature(t, fs, "user_ctr_30d")},
		{name: "user_affinity", kind: features.KindVector, dim: 4, target: mustFeature(t, fs, "user_affinity")},
		{name: "user_clicks_30d", kind: features.KindInt, dim: 1, target: mustFeature(t, fs, "user_clicks_30d")},
	}}
	in := fs.NewRecord(features.EntityUser)
	must(t, in.SetFloat(mustFeature(t, fs, "user_ctr_30d").ID, 0.5))
	must(t, in.SetVector(mustFeature(t, fs, "user_affinity").ID, []float32{1, 2, 3, 4}))
	must(t, in.SetInt(mustFeature(t, fs, "user_clicks_30d").ID, 9))
	b, err := writer.encode(nil, in)
	must(t, err)
	// The reader maps by name: a vector it does not know (renamed) and a
	// float whose type it changed are skipped, the int still decodes.
	reader, err := newRecordLayout(fs, features.EntityUser, []string{"user_ctr_30d", "user_affinity_old", "user_clicks_30d"},
		[]string{"float", "vector[4]", "int"}, nil)
	must(t, err)
	out := fs.NewRecord(features.EntityUser)
	must(t, reader.decode(string(b), out, false, make([]float32, 4)))
	if v, set, _ := out.Get(mustFeature(t, fs, "user_clicks_30d").ID); !set || v.Int != 9 {
		t.Errorf("user_clicks_30d = %v (set %v), want 9", v.Int, set)
	}
	if out.Has(mustFeature(t, fs, "user_affinity").ID) {
		t.Error("user_affinity set from a vector of another name")
	}
}

func TestNearlineValueRoundTrip(t *testing.T) {
	t.Parallel()
	fs := testSet(t)
	at := time.Date(2026, 11, 22, 10, 0, 0, 123e6, time.UTC).UnixMilli()
	cases := []struct {
		feature string
		value   features.Value
	}{
		{"item_ctr_1h", features.Value{Float: 0.0625}},
		{"user_clicks_1h", features.Value{Int: -77}},
		{"user_session_key", features.Value{Int: math.MaxInt64}},
		{"user_recent_items", features.Value{List: []string{"i1", "", "ü"}}},
		{"user_embedding", features.Value{Vector: []float32{1, -2, 0.5}}},
		{"user_creator_clicks", features.Value{Map: map[string]float64{"a": 1.5}}},
	}
	for _, c := range cases {
		f := mustFeature(t, fs, c.feature)
		b, err := appendNearline(nil, at, f, c.value)
		if err != nil {
			t.Fatalf("%s: %v", c.feature, err)
		}
		got, err := nearlineTime(string(b), f)
		if err != nil || got != at {
			t.Errorf("%s: time %d, %v; want %d", c.feature, got, err, at)
		}
		rec := fs.NewRecord(f.Entity)
		if err := setNearline(string(b), f, rec, make([]float32, 8), true); err != nil {
			t.Fatalf("%s: %v", c.feature, err)
		}
		v, set, _ := rec.Get(f.ID)
		if !set || !reflect.DeepEqual(v, c.value) {
			t.Errorf("%s: decoded %+v (set %v), want %+v", c.feature, v, set, c.value)
		}
		// Truncation is detected, never read as a value.
		if f.Type.Kind != features.KindList || len(c.value.List) > 0 {
			rec.Reset()
			if err := setNearline(string(b[:len(b)-1]), f, rec, make([]float32, 8), true); !errors.Is(err, ErrCorruptValue) {
				t.Errorf("%s truncated: %v, want ErrCorruptValue", c.feature, err)
			}
		}
	}
	// A value stored with another kind (the definition changed) is refused.
	b, _ := appendNearline(nil, at, mustFeature(t, fs, "item_ctr_1h"), features.Value{Float: 1})
	if _, err := nearlineTime(string(b), mustFeature(t, fs, "item_clicks_1h")); !errors.Is(err, ErrCorruptValue) {
		t.Errorf("kind mismatch: %v, want ErrCorruptValue", err)
	}
	// Times compare as strings in the write script: big-endian order.
	early, _ := appendNearline(nil, at, mustFeature(t, fs, "item_ctr_1h"), features.Value{Float: 1})
	late, _ := appendNearline(nil, at+1, mustFeature(t, fs, "item_ctr_1h"), features.Value{Float: 0})
	if string(early[:8]) >= string(late[:8]) {
		t.Error("stored times do not sort as strings")
	}
	if _, err := appendNearline(nil, at, mustFeature(t, fs, "item_ctr_1h"), features.Value{Float: float32(math.NaN())}); err == nil {
		t.Error("NaN accepted")
	}
}

func TestPlanValidatesTwinsAndIndicators(t *testing.T) {
	t.Parallel()
	fs := testSet(t)
	if _, err := newPlan(fs, testTwins, testIndicators); err != nil {
		t.Fatalf("valid options refused: %v", err)
	}
	cases := []struct {
		name       string
		twins, ind map[string]string
		want       string
	}{
		{"unknown nearline", map[string]string{"nope": "item_ctr_7d"}, nil, `nearline feature "nope" is not defined`},
		{"twin of a batch feature", map[string]string{"item_ctr_7d": "item_ctr_1h_batch"}, nil, "not a user or item nearline feature"},
		{"twin of another type", map[string]string{"item_clicks_1h": "item_ctr_7d"}, nil, "same entity and type"},
		{"twin of another entity", map[string]string{"item_ctr_1h": "user_ctr_30d"}, nil, "same entity and type"},
		{"twin is nearline", map[string]string{"item_ctr_1h": "item_ctr_1h"}, nil, "is not a user or item batch feature"},
		{"indicator of a batch group", nil, map[string]string{"item_batch": "item_nearline_stale"}, "not a user or item nearline group"},
		{"indicator of another entity", nil, map[string]string{"user_nearline": "item_nearline_stale"}, "the group holds user features"},
		{"indicator with a default", nil, map[string]string{"item_nearline": "item_category_id"}, "must default to 0"},
		{"indicator vector", nil, map[string]string{"item_nearline": "item_embedding"}, "want int or float"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := newPlan(fs, c.twins, c.ind)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("newPlan = %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestCascade(t *testing.T) {
	t.Parallel()
	fs := testSet(t)
	p, err := newPlan(fs, testTwins, testIndicators)
	must(t, err)
	g := p.byName["user_nearline"]
	clicks := g.feats[g.byName["user_clicks_1h"]]    // SLA 1m, ttl 2h, twin
	session := g.feats[g.byName["user_session_key"]] // ttl 30m, no SLA, no twin
	noTwin := clicks
	noTwin.twin = nil
	twin := mustFeature(t, fs, "user_clicks_1h_batch")
	min := int64(time.Minute / time.Millisecond)
	cases := []struct {
		name    string
		fp      featPlan
		age     int64
		twinSet bool
		want    Source
		wantVal int64
	}{
		{"fresh", clicks, 59_000, true, SourceNearline, 5},
		{"at the SLA", clicks, min, true, SourceNearline, 5},
		{"past the SLA with twin", clicks, min + 1, true, SourceBatchFallback, 42},
		{"past the SLA, twin unset", clicks, min + 1, false, SourceNearlineLate, 5},
		{"past the ttl with twin", clicks, 3 * 60 * min, true, SourceBatchFallback, 42},
		{"past the ttl, twin unset", clicks, 3 * 60 * min, false, SourceDefaultExpired, 0},
		{"past the SLA, no twin", noTwin, 10 * min, true, SourceNearlineLate, 5},
		{"no SLA: fresh until the ttl", session, 29 * min, false, SourceNearline, 5},
		{"no SLA: past the ttl", session, 31 * min, false, SourceDefaultExpired, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := fs.NewRecord(features.EntityUser)
			if c.twinSet {
				must(t, rec.SetInt(twin.ID, 42))
			}
			src, err := cascade(rec, &c.fp, c.age, func() error { return rec.SetInt(c.fp.f.ID, 5) })
			must(t, err)
			if src != c.want {
				t.Fatalf("source %s, want %s", src, c.want)
			}
			v, _, _ := rec.Get(c.fp.f.ID)
			if want := c.wantVal; v.Int != want && !(want == 0 && v.Int == c.fp.f.Default.Int) {
				t.Errorf("value %d, want %d", v.Int, want)
			}
		})
	}
}

func TestItemViewNearlineUpdates(t *testing.T) {
	t.Parallel()
	fs := testSet(t)
	p, err := newPlan(fs, nil, nil)
	must(t, err)
	bg, ng := p.byName["item_batch"], p.byName["item_nearline"]
	bt := newBatchTable(bg, 2)
	rec := fs.NewRecord(features.EntityItem)
	for i, id := range []string{"a", "b"} {
		rec.Reset()
		must(t, rec.SetInt(mustFeature(t, fs, "item_clicks_7d").ID, int64(10+i)))
		must(t, bt.appendRecord(id, rec))
	}
	v := buildItemView([]*batchTable{bt, nil}, []*nearTable{nil})
	ctr := mustFeature(t, fs, "item_ctr_1h")
	val := func(at int64, x float32) string {
		b, _ := appendNearline(nil, at, ctr, features.Value{Float: x})
		return string(b)
	}
	// "c" is only known to the nearline lane: it gets a dense index too.
	v2, _, bad := v.withNearline(0, ng, []string{"b", "c"}, []map[string]string{{"item_ctr_1h": val(1000, 0.5)}, {"item_ctr_1h": val(2000, 0.25), "unknown": "x"}}, 2000, nil, nil)
	if bad != 0 {
		t.Fatalf("%d values not decoded", bad)
	}
	if v.near[0] != nil {
		t.Fatal("the old view changed")
	}
	nearVal := func(v *itemView, id string) (float32, int64, bool) {
		d, ok := v.lookup(id)
		if !ok {
			return 0, 0, false
		}
		r := rowOf(v.nearRows[0], d)
		if r < 0 {
			return 0, 0, false
		}
		t := v.near[0]
		pos := ng.byName["item_ctr_1h"]
		fp := ng.feats[pos]
		if t.has[int(r)*ng.words]&(1<<pos) == 0 {
			return 0, 0, false
		}
		return t.nums[int(r)*ng.numWidth+fp.off], t.at[int(r)*len(ng.feats)+pos], true
	}
	if x, at, ok := nearVal(v2, "b"); !ok || x != 0.5 || at != 1000 {
		t.Errorf("b = %v at %d (%v), want 0.5 at 1000", x, at, ok)
	}
	if x, _, ok := nearVal(v2, "c"); !ok || x != 0.25 {
		t.Errorf("c = %v (%v), want 0.25", x, ok)
	}
	if _, _, ok := nearVal(v2, "a"); ok {
		t.Error("a has a nearline value")
	}
	// A later refresh overwrites b; an emptied hash (key expired) clears it.
	v3, _, _ := v2.withNearline(0, ng, []string{"b", "c"}, []map[string]string{{"item_ctr_1h": val(3000, 0.75)}, {}}, 3000, nil, nil)
	if x, _, _ := nearVal(v3, "b"); x != 0.75 {
		t.Errorf("b after update = %v, want 0.75", x)
	}
	if _, _, ok := nearVal(v3, "c"); ok {
		t.Error("c still has a value after its hash emptied")
	}
	if x, _, _ := nearVal(v2, "b"); x != 0.5 {
		t.Error("updating changed the previous view")
	}
	// A rebuild (new snapshot) folds c into the index and drops rows whose
	// values are all older than the ttl.
	v4 := buildItemView([]*batchTable{bt, nil}, []*nearTable{v3.near[0].live(3000 + 2*3600*1000 + 1)})
	if _, _, ok := nearVal(v4, "b"); ok {
		t.Error("b kept past its ttl")
	}
	v5 := buildItemView([]*batchTable{bt, nil}, []*nearTable{v3.near[0].live(3001)})
	if x, _, ok := nearVal(v5, "b"); !ok || x != 0.75 || v5.extra != nil {
		t.Errorf("rebuild: b = %v (%v), extra %v", x, ok, v5.extra)
	}
}

// TestBreaker checks that the Options reach the user read breaker as
// documented: BreakerFailures failures lasting BreakerCooldown open it,
// for BreakerCooldown. internal/breaker tests the breaker itself.
func TestBreaker(t *testing.T) {
	t.Parallel()
	b, err := newUserReadBreaker(Options{BreakerFailures: 3, BreakerCooldown: time.Second})
	must(t, err)
	now := time.Unix(1000, 0)
	if !b.Allow(now) {
		t.Fatal("closed breaker refused")
	}
	// A burst of failures shorter than the cooldown is a stall: no opening.
	for range 10 {
		b.Failure(now)
	}
	if !b.Allow(now.Add(500 * time.Millisecond)) {
		t.Fatal("opened on a burst of failures within the cooldown")
	}
	b.Success()
	b.Failure(now)
	b.Failure(now.Add(time.Second))
	if !b.Allow(now.Add(time.Second)) {
		t.Fatal("opened after two failures of three")
	}
	b.Failure(now.Add(time.Second))
	opened := now.Add(time.Second)
	if b.Allow(opened.Add(999 * time.Millisecond)) {
		t.Fatal("open breaker allowed a request before its cooldown")
	}
	later := opened.Add(time.Second)
	if !b.Allow(later) {
		t.Fatal("no probe after the cooldown")
	}
	if b.Allow(later) {
		t.Fatal("two probes in one cooldown")
	}
	b.Success()
	if !b.Allow(later) {
		t.Fatal("closed breaker refused after a success")
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestItemRecordsMatchPerValueFill checks the shortcut requests take: the
// record built for an item must equal what filling it value by value gives
// at every instant of its validity [from, until), and until must be the
// first instant at which the fill changes.
func TestItemRecordsMatchPerValueFill(t *testing.T) {
	t.Parallel()
	fs := testSet(t)
	st, err := New(fs, nil, nil, Options{BatchTwins: testTwins, StaleIndicators: testIndicators})
	must(t, err)
	p := st.plan
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC).UnixMilli()
	hour := int64(time.Hour / time.Millisecond)
	minute := int64(time.Minute / time.Millisecond)

	// Item batch snapshot 25h old: late after 1 more hour (26h SLA), the
	// ctr_1h twin expires after 23 more hours (2d ttl).
	bt := newBatchTable(p.byName["item_batch"], 3)
	bt.version, bt.asOf = "v1", time.UnixMilli(now-25*hour)
	rec := fs.NewRecord(features.EntityItem)
	for i, id := range []string{"a", "b", "c"} {
		rec.Reset()
		must(t, rec.SetFloat(mustFeature(t, fs, "item_ctr_7d").ID, 0.1*float64(i+1)))
		must(t, rec.SetFloat(mustFeature(t, fs, "item_ctr_1h_batch").ID, 0.5))
		if id != "c" {
			must(t, rec.SetInt(mustFeature(t, fs, "item_clicks_7d").ID, int64(10*i)))
		}
		must(t, bt.appendRecord(id, rec))
	}
	et := newBatchTable(p.byName["item_embedding"], 1)
	et.version, et.asOf = "e1", time.UnixMilli(now-time.Hour.Milliseconds())
	rec.Reset()
	must(t, rec.SetVector(mustFeature(t, fs, "item_embedding").ID, []float32{1, 2, 3, 4}))
	must(t, et.appendRecord("b", rec))

	// Nearline: a fresh for 30 more seconds, b already late (twin), d only
	// nearline and about to expire.
	ng := p.byName["item_nearline"]
	enc := func(name string, at int64, v features.Value) string {
		b, err := appendNearline(nil, at, mustFeature(t, fs, name), v)
		must(t, err)
		return string(b)
	}
	v := buildItemView([]*batchTable{bt, et}, []*nearTable{nil})
	v, _, bad := v.withNearline(0, ng, []string{"a", "b", "d"}, []map[string]string{
		{"item_ctr_1h": enc("item_ctr_1h", now-30_000, features.Value{Float: 0.25}), "item_clicks_1h": enc("item_clicks_1h", now-30_000, features.Value{Int: 3})},
		{"item_ctr_1h": enc("item_ctr_1h", now-5*minute, features.Value{Float: 0.75})},
		{"item_clicks_1h": enc("item_clicks_1h", now-2*hour+10_000, features.Value{Int: 1})},
	}, now, nil, nil)
	if bad != 0 {
		t.Fatalf("%d values not decoded", bad)
	}
	must(t, st.buildRecords(v, nil, now, nil))

	itemFeatures := fs.Entity(features.EntityItem)
	fill := func(d int32, at int64) (*features.Record, []GroupResult, int64) {
		r := fs.NewRecord(features.EntityItem)
		groups := make([]GroupResult, len(p.groups))
		until, err := st.fillItem(v, d, at, r, groups, -1, nil)
		must(t, err)
		return r, groups, until
	}
	same := func(x, y *features.Record) string {
		for _, f := range itemFeatures {
			xv, xs, _ := x.Get(f.ID)
			yv, ys, _ := y.Get(f.ID)
			if xs != ys || !reflect.DeepEqual(xv, yv) {
				return fmt.Sprintf("%s: %+v (set %v) vs %+v (set %v)", f.Name, xv, xs, yv, ys)
			}
		}
		return ""
	}
	for _, id := range []string{"a", "b", "c", "d"} {
		d, ok := v.lookup(id)
		if !ok {
			t.Fatalf("%s not indexed", id)
		}
		e := v.entries[d]
		if e.rec == nil || e.from != now || e.until <= now {
			t.Fatalf("%s: entry %+v", id, e)
		}
		cl := v.classes[e.class]
		for _, at := range []int64{e.from, (e.from + e.until) / 2, e.until - 1} {
			r, groups, _ := fill(d, at)
			if diff := same(e.rec, r); diff != "" {
				t.Errorf("%s at +%dms: record and fill differ: %s", id, at-now, diff)
			}
			var counts []classCount
			for g := range groups {
				for src, n := range groups[g].Counts {
					if n != 0 {
						counts = append(counts, classCount{group: g, src: Source(src), n: n})
					}
				}
			}
			if !reflect.DeepEqual(itemClass(counts), cl) {
				t.Errorf("%s at +%dms: class %+v, fill counts %+v", id, at-now, cl, counts)
			}
		}
		if e.until != math.MaxInt64 {
			r, groups, _ := fill(d, e.until)
			before, beforeGroups, _ := fill(d, e.until-1)
			if same(r, before) == "" && reflect.DeepEqual(groups, beforeGroups) {
				t.Errorf("%s: nothing changes at until (+%dms)", id, e.until-now)
			}
		}
	}
	// The validity ends follow the boundaries: a's nearline values turn late
	// 30s from now, b's batch turns late in an hour, d's value expires.
	wantUntil := map[string]int64{"a": now + 30_000 + 1, "b": now + hour + 1, "c": now + hour + 1, "d": now + 10_000 + 1}
	for id, want := range wantUntil {
		d, _ := v.lookup(id)
		if got := v.entries[d].until; got != want {
			t.Errorf("%s valid until +%dms, want +%dms", id, got-now, want-now)
		}
	}
}

// TestPairNearlineRoundTrip: a nearline pair field lists its items sorted,
// each found with its value; unlisted items and corrupt bytes are not.
func TestPairNearlineRoundTrip(t *testing.T) {
	fs := testSet(t)
	f := mustFeature(t, fs, "ui_impressions_1h")
	at := time.UnixMilli(1_700_000_000_123)
	b, err := appendPairNearline(nil, at.UnixMilli(), f, []string{"i9", "i1", "i5"}, []features.Value{{Int: 9}, {Int: -1}, {Int: 5}})
	must(t, err)
	hash := func(s string) uint64 { return uint64(len(s))*0x9e3779b97f4a7c15 ^ uint64(s[len(s)-1]) }
	var tab pairTable
	must(t, tab.parseNearline(string(b), f, hash))
	if tab.atMs != at.UnixMilli() || !reflect.DeepEqual(tab.ids, []string{"i1", "i5", "i9"}) {
		t.Fatalf("parsed %+v", tab)
	}
	rec := fs.NewRecord(features.EntityUserItem)
	for id, want := range map[string]int64{"i1": -1, "i5": 5, "i9": 9} {
		j := tab.find(id, hash(id))
		if j < 0 {
			t.Fatalf("%s not found", id)
		}
		must(t, setPairScalar(rec, f, tab.vals[j]))
		if v, _, _ := rec.Get(f.ID); v.Int != want {
			t.Errorf("%s = %d, want %d", id, v.Int, want)
		}
	}
	if j := tab.find("i2", hash("i2")); j >= 0 {
		t.Errorf("unlisted item found at %d", j)
	}
	tab.reset()
	if err := tab.parseNearline(string(b[:len(b)-1]), f, hash); !errors.Is(err, ErrCorruptValue) || tab.ok || len(tab.ids) != 0 {
		t.Errorf("truncated field: %v, table %+v", err, tab)
	}
	for _, bad := range []struct {
		items []string
		vals  []features.Value
		want  string
	}{
		{[]string{"i1", "i1"}, []features.Value{{}, {}}, "listed twice"},
		{[]string{""}, []features.Value{{}}, "empty item"},
		{[]string{"i1"}, nil, "1 items and 0 values"},
	} {
		if _, err := appendPairNearline(nil, 1, f, bad.items, bad.vals); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%v: error %v, want %q", bad.items, err, bad.want)
		}
	}
	if _, err := appendPairNearline(nil, 1, mustFeature(t, fs, "user_recent_items"), nil, nil); err == nil {
		t.Error("a list feature was accepted as a pair nearline value")
	}
	var bt pairTable
	if err := bt.parseBatch("\x02\x00", hash); !errors.Is(err, ErrCorruptValue) {
		t.Errorf("unknown pair table format: %v", err)
	}
	if err := bt.parseBatch("\x01\x02\x02i2\x00\x02i1\x00", hash); !errors.Is(err, ErrCorruptValue) || bt.ok {
		t.Errorf("unsorted pair table: %v", err)
	}
}
