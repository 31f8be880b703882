package windowed

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/features"
)

const min_ = int64(time.Minute / time.Millisecond)

func key(s string) int64 { return features.SessionKey(s) }

// TestSessionRule: a new session id or a gap over 30 minutes starts a
// session; impressions are not actions; an empty session id keeps the
// session; an out-of-order event is counted but keeps the session.
func TestSessionRule(t *testing.T) {
	t.Parallel()
	r := DefaultRules
	var u User
	u.Apply(&r, Event{T: 0, Session: key("a"), Item: "i1", Action: ActionImpression})
	if u.sessionKey != key("a") || u.sessionStart != 0 || u.sessionActs != 0 {
		t.Fatalf("after impression: %+v", u)
	}
	u.Apply(&r, Event{T: 10 * min_, Session: key("a"), Item: "i1", Action: ActionClick})
	u.Apply(&r, Event{T: 11 * min_, Item: "i2", Action: ActionView})
	if u.sessionActs != 1 || u.sessionClicks != 1 || u.lastAction != 11*min_ || !slices.Equal(u.recent, []string{"i1"}) {
		t.Fatalf("after click and session-less view: %+v", u)
	}
	u.Apply(&r, Event{T: 42 * min_, Session: key("a"), Item: "i3", Action: ActionView}) // gap 31m: new session
	if u.sessionStart != 42*min_ || u.sessionActs != 1 || u.sessionClicks != 0 || !slices.Equal(u.recent, []string{"i3"}) {
		t.Fatalf("after a 31 minute gap: %+v", u)
	}
	u.Apply(&r, Event{T: 43 * min_, Session: key("b"), Item: "i3", Action: ActionClick}) // new id: new session
	if u.sessionKey != key("b") || u.sessionStart != 43*min_ || u.sessionActs != 1 {
		t.Fatalf("after a new session id: %+v", u)
	}
	u.Apply(&r, Event{T: 40 * min_, Session: key("b"), Item: "i4", Action: ActionClick}) // late: counted, session kept
	if u.sessionStart != 43*min_ || u.sessionActs != 2 || u.lastEvent != 43*min_ || !slices.Equal(u.recent, []string{"i4", "i3"}) {
		t.Fatalf("after a late event: %+v", u)
	}
	v := u.Values(70 * min_) // clicks at 10m (out), 40m and 43m
	if v.Clicks1h != 2 || v.SessionClicks != 2 || v.LastEvent != 43*min_ {
		t.Fatalf("values at 70m: %+v, want 2 clicks in the hour", v)
	}
	if val, at, ok := v.Get(SessionClicks); !ok || at != 43*min_ || val.Int != 2 {
		t.Errorf("Get(SessionClicks) = %v, %d, %v", val, at, ok)
	}
	if val, at, ok := v.Get(UserClicks1h); !ok || at != 70*min_ || val.Int != 2 {
		t.Errorf("Get(UserClicks1h) = %v, %d, %v", val, at, ok)
	}
	// A longer session TTL (the definitions' ttl) keeps the session over
	// the same gap.
	long := Rules{SessionTTL: time.Hour}
	var w User
	w.Apply(&long, Event{T: min_, Session: key("a"), Action: ActionClick})
	w.Apply(&long, Event{T: 50 * min_, Session: key("a"), Action: ActionClick})
	if w.sessionStart != min_ || w.sessionActs != 2 {
		t.Errorf("with a 1h session ttl: %+v", w)
	}
}

// TestRecentItems keeps the newest first, without repeats, at most 10.
func TestRecentItems(t *testing.T) {
	t.Parallel()
	r := DefaultRules
	var u User
	for i := range 12 {
		u.Apply(&r, Event{T: int64(i), Session: 1, Item: fmt.Sprint("i", i), Action: ActionClick})
	}
	u.Apply(&r, Event{T: 20, Session: 1, Item: "i5", Action: ActionView})
	u.Apply(&r, Event{T: 21, Session: 1, Item: "i9", Action: ActionImpression}) // not a click or view
	want := []string{"i5", "i11", "i10", "i9", "i8", "i7", "i6", "i4", "i3", "i2"}
	if !slices.Equal(u.recent, want) {
		t.Fatalf("recent %v, want %v", u.recent, want)
	}
}

// TestItemsLateEvents: an event behind the watermark is counted while its
// bucket is held and dropped after.
func TestItemsLateEvents(t *testing.T) {
	t.Parallel()
	w := NewItems(time.Minute, 5*time.Minute)
	base := 1000 * 60 * min_
	if got := w.Add("i", base+90*min_, ActionClick); got != OnTime {
		t.Fatalf("first event: %d", got)
	}
	if got := w.Add("i", base+80*min_, ActionClick); got != LateCounted {
		t.Fatalf("10m late: %d, want counted", got)
	}
	if got := w.Add("i", base+20*min_, ActionImpression); got != LateDropped {
		t.Fatalf("70m late: %d, want dropped", got)
	}
	if got := w.Add("i", base, ActionView); got != OnTime || w.Totals("i", base+90*min_).Impressions1h != 0 {
		t.Fatalf("a view: %d, totals %+v; views are not counted", got, w.Totals("i", base+90*min_))
	}
	s := w.Totals("i", base+90*min_)
	if s.Clicks1h != 2 || s.Impressions1h != 0 || s.Clicks30m != 2 {
		t.Fatalf("totals %+v", s)
	}
	s = w.Totals("i", base+115*min_) // the 80m click left the 30m window
	if s.Clicks1h != 2 || s.Clicks30m != 1 {
		t.Fatalf("totals at 115m %+v", s)
	}
	w.Advance(base + 200*min_)
	if gone := w.Evict(); !slices.Equal(gone, []string{"i"}) || w.Len() != 0 {
		t.Fatalf("evict: %v, %d items left", gone, w.Len())
	}
}

// TestItemsBucketGranularity: the hour is the 60 buckets ending with the
// bucket of the time asked for; a bucket after that time is not read.
func TestItemsBucketGranularity(t *testing.T) {
	t.Parallel()
	w := NewItems(time.Minute, 0)
	base := 1000 * 60 * min_
	for _, at := range []int64{base + 10, base + 30*min_ + 59_999, base + 31*min_, base + 59*min_ + 30_000, base + 61*min_} {
		w.Add("i", at, ActionClick)
	}
	w.Add("i", base+5*min_, ActionImpression) // behind the watermark, its bucket still held: counted
	cases := []struct {
		at                 int64
		clicks1h, clicks30 int64
	}{
		{base + 59*min_ + 59_999, 4, 3}, // bucket 59 ends the hour: 0..59; the 30 minutes 30..59
		{base + 60*min_, 3, 2},          // buckets 1..60: the click of bucket 0 left
		{base + 60*min_ + 59_999, 3, 2}, // still buckets 1..60: the click at 61m is after at
		{base + 61*min_, 4, 2},          // buckets 2..61; the 30 minutes are 32..61
	}
	for _, c := range cases {
		s := w.Totals("i", c.at)
		if s.Clicks1h != c.clicks1h || s.Clicks30m != c.clicks30 || s.At != c.at {
			t.Errorf("Totals at +%dms = %+v, want %d clicks in the hour, %d in 30m", c.at-base, s, c.clicks1h, c.clicks30)
		}
	}
	if s := w.Totals("i", base+60*min_); s.Impressions1h != 1 {
		t.Errorf("impressions %+v", s)
	}
}

// TestPairImpressions counts a user's impressions per item in the hour and
// keeps the MaxPairItems items shown last.
func TestPairImpressions(t *testing.T) {
	t.Parallel()
	r := DefaultRules
	var u User
	base := 1000 * 60 * min_
	imp := func(at int64, item string) {
		u.Apply(&r, Event{T: at, Item: item, Session: 1, Action: ActionImpression})
	}
	imp(base, "a")
	imp(base+10*min_, "a")
	imp(base+20*min_, "b")
	u.Apply(&r, Event{T: base + 21*min_, Item: "a", Session: 1, Action: ActionClick}) // not an impression
	if n := u.PairImpressions("a", base+30*min_); n != 2 {
		t.Errorf("a at 30m: %d, want 2", n)
	}
	if n := u.PairImpressions("a", base+60*min_); n != 1 {
		t.Errorf("a at 60m: %d, want 1 (the one at 0m left the hour)", n)
	}
	items, vals := u.AppendPairImpressions(base+75*min_, nil, nil)
	if !slices.Equal(items, []string{"b"}) || len(vals) != 1 || vals[0].Int != 1 {
		t.Errorf("set at 75m: %v %v, want b:1", items, vals)
	}
	if !u.Idle(&r, base+81*min_) || u.Idle(&r, base+79*min_) {
		t.Errorf("idle at 81m = %v, at 79m = %v; want true, false", u.Idle(&r, base+81*min_), u.Idle(&r, base+79*min_))
	}

	// 250 more items, one a second: the 200 shown last are kept; a is
	// shown again after and takes the place of the least recent one.
	t0 := base + 30*min_
	for i := range 250 {
		imp(t0+int64(i)*1000, fmt.Sprintf("x%03d", i))
	}
	imp(t0+250_000, "a")
	items, _ = u.AppendPairImpressions(t0+250_000, nil, nil)
	slices.Sort(items)
	if len(items) != MaxPairItems || items[0] != "a" || items[1] != "x051" || items[len(items)-1] != "x249" {
		t.Fatalf("%d items kept: %v … %v", len(items), items[:3], items[len(items)-1])
	}
	if n := u.PairImpressions("a", t0+250_000); n != 1 {
		t.Errorf("a after being forgotten: %d impressions, want 1 (its older ones were forgotten with it)", n)
	}
	// A late impression of an item older than every kept one is not kept.
	imp(t0-1000, "late")
	if n := u.PairImpressions("late", t0+250_000); n != 0 {
		t.Errorf("late item kept with %d impressions", n)
	}
}

// TestItemValues: the smoothed rate with the definitions' prior, and the
// velocity rule (none without a baseline, the default without traffic).
func TestItemValues(t *testing.T) {
	t.Parallel()
	fs, err := features.Load("../features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := RulesFor(fs)
	if r.SessionTTL != 30*time.Minute || r.CTRPrior != float64(float32(0.03)) || r.VelocityDefault != 1 {
		t.Fatalf("rules %+v", r)
	}
	v := r.ItemValues(Totals{At: 5, Clicks1h: 7, Impressions1h: 7, Clicks30m: 3}, 1, true)
	want := ItemValues{At: 5, Clicks1h: 7, Impressions1h: 7, CTR: float32((7 + 100*r.CTRPrior) / 107), Velocity: 2, HasVelocity: true}
	if v != want {
		t.Errorf("ItemValues = %+v, want %+v", v, want)
	}
	if v := r.ItemValues(Totals{At: 5}, 3, true); v.Velocity != 1 || !v.HasVelocity || v.CTR != float32(r.CTRPrior) {
		t.Errorf("without traffic: %+v, want the defaults", v)
	}
	if v := r.ItemValues(Totals{At: 5, Impressions1h: 1}, 3, true); v.Velocity != 0.25 {
		t.Errorf("impressions only: velocity %v, want 1/4", v.Velocity)
	}
	if v := r.ItemValues(Totals{At: 5, Clicks1h: 1}, 3, false); v.HasVelocity {
		t.Errorf("without a baseline: %+v", v)
	}
	if _, _, ok := v.Get(ItemTrendingVelocity30m); !ok {
		t.Error("Get(velocity) not ok with a baseline")
	}
	if BaselinePer30m(336) != 1 {
		t.Error("BaselinePer30m(336) != 1")
	}
	// Every feature is defined by the project's definitions as the entity
	// and lane the package says.
	for f := range NumFeatures {
		d, ok := fs.Lookup(f.Name())
		if !ok || d.Entity != f.Entity() || d.Lane != features.LaneNearline {
			t.Errorf("%s: defined %v as %v", f.Name(), ok, d)
		}
		if g, ok := Lookup(f.Name()); !ok || g != f {
			t.Errorf("Lookup(%s) = %d, %v", f.Name(), g, ok)
		}
	}
}

// TestApplyDoesNotAllocate: a warmed-up user applies events without
// allocating.
func TestApplyDoesNotAllocate(t *testing.T) {
	r := DefaultRules
	var u User
	items := []string{"a", "b", "c", "d"}
	actions := []Action{ActionImpression, ActionImpression, ActionClick, ActionView, ActionPurchase}
	at := int64(1_000_000_000)
	step := func() {
		at += 20_000
		u.Apply(&r, Event{T: at, Item: items[at/20_000%4], Session: 1, Action: actions[at/20_000%5]})
	}
	for range 1000 {
		step()
	}
	if n := testing.AllocsPerRun(1000, step); n > 0 {
		t.Errorf("Apply allocates %.1f times per event", n)
	}
}
