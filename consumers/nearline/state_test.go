package nearline

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/features"
)

const min_ = int64(time.Minute / time.Millisecond)

// TestSessionRuleMatchesOffline replays the cases of features/offline's
// rule: a new session id or a gap over 30 minutes starts a session;
// impressions are not actions; an empty session id keeps the session.
func TestSessionRuleMatchesOffline(t *testing.T) {
	var s userState
	s.apply(interaction{t: 0, session: "a", item: "i1", isImpression: true})
	if s.sessionKey != features.SessionKey("a") || s.sessionStart != 0 || s.sessionActs != 0 {
		t.Fatalf("after impression: %+v", s)
	}
	s.apply(interaction{t: 10 * min_, session: "a", item: "i1", isClick: true})
	s.apply(interaction{t: 11 * min_, session: "", item: "i2", isView: true})
	if s.sessionActs != 1 || s.sessionClick != 1 || s.lastAction != 11*min_ || !slices.Equal(s.recent, []string{"i1"}) {
		t.Fatalf("after click and session-less view: %+v", s)
	}
	s.apply(interaction{t: 42 * min_, session: "a", item: "i3", isView: true}) // gap 31m: new session
	if s.sessionStart != 42*min_ || s.sessionActs != 1 || s.sessionClick != 0 || !slices.Equal(s.recent, []string{"i3"}) {
		t.Fatalf("after a 31 minute gap: %+v", s)
	}
	s.apply(interaction{t: 43 * min_, session: "b", item: "i3", isClick: true}) // new id: new session
	if s.sessionKey != features.SessionKey("b") || s.sessionStart != 43*min_ || s.sessionActs != 1 {
		t.Fatalf("after a new session id: %+v", s)
	}
	s.apply(interaction{t: 40 * min_, session: "b", item: "i4", isClick: true}) // late: counted, session kept
	if s.sessionStart != 43*min_ || s.sessionActs != 2 || s.lastEvent != 43*min_ || !slices.Equal(s.recent, []string{"i4", "i3"}) {
		t.Fatalf("after a late event: %+v", s)
	}
	clicks1h, _ := s.windows(70 * min_) // clicks at 10m (out), 40m and 43m
	if clicks1h != 2 {
		t.Fatalf("clicks in the hour before 70m = %d, want 2", clicks1h)
	}
}

// TestWindowsLateEvents: an event behind the watermark is counted while
// its bucket is held and dropped after.
func TestWindowsLateEvents(t *testing.T) {
	w := newWindows(time.Minute, 5*time.Minute)
	base := 1000 * 60 * min_
	if got := w.add("i", base+90*min_, true, false); got != onTime {
		t.Fatalf("first event: %d", got)
	}
	if got := w.add("i", base+80*min_, true, false); got != lateCounted {
		t.Fatalf("10m late: %d, want counted", got)
	}
	if got := w.add("i", base+20*min_, false, true); got != lateDropped {
		t.Fatalf("70m late: %d, want dropped", got)
	}
	s := w.totals("i", base+90*min_)
	if s.clicks1h != 2 || s.impressions1h != 0 || s.clicks30m != 2 {
		t.Fatalf("totals %+v", s)
	}
	s = w.totals("i", base+115*min_) // the 80m click left the 30m window
	if s.clicks1h != 2 || s.clicks30m != 1 {
		t.Fatalf("totals at 115m %+v", s)
	}
	w.maxT = base + 200*min_
	if gone := w.evict(); !slices.Equal(gone, []string{"i"}) || len(w.items) != 0 {
		t.Fatalf("evict: %v, %d items left", gone, len(w.items))
	}
}

// TestCombineShards sums partitions' shards, leaving out those of owners
// that saw nothing in the window.
func TestCombineShards(t *testing.T) {
	now := 500 * min_
	got := combine([]shard{
		{at: now, clicks1h: 3, impressions1h: 10, clicks30m: 2},
		{at: now - 10*min_, clicks1h: 1, impressions1h: 4, clicks30m: 1},
		{at: now - 40*min_, clicks1h: 5, impressions1h: 5, clicks30m: 5}, // only its hour counts
		{at: now - 61*min_, clicks1h: 9, impressions1h: 9, clicks30m: 9}, // stale
	})
	want := shard{at: now, clicks1h: 9, impressions1h: 19, clicks30m: 3}
	if got != want {
		t.Fatalf("combine = %+v, want %+v", got, want)
	}
	s, err := decodeShard(encodeShard(want))
	if err != nil || s != want {
		t.Fatalf("round trip = %+v, %v", s, err)
	}
	if _, err := decodeShard("1 2"); err == nil {
		t.Fatal("decodeShard accepted a short value")
	}
	if r := smoothedRate(0, 0, 0.03); r != 0.03 {
		t.Fatalf("rate without trials = %v, want the prior", r)
	}
}

// TestPhasesSpreadRefresh: every held id is marked once per period, a
// share at a time; removed ids are not; a jump marks one slot only.
func TestPhasesSpreadRefresh(t *testing.T) {
	const period = 64_000 // ms: one slot per second
	p := newPhases(period)
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = "id" + strconv.Itoa(i)
		p.add(ids[i])
	}
	p.remove(ids[0])
	if p.len() != 999 {
		t.Fatalf("len = %d, want 999", p.len())
	}
	base := int64(1_000_000) * period
	marked := map[string]int{}
	mark := func(id string) { marked[id]++ }
	p.advance(base, mark) // first call: the current slot only
	first := len(marked)
	if first == 0 || first > 100 {
		t.Fatalf("first advance marked %d ids, want one slot's share", first)
	}
	clear(marked)
	most := 0
	for s := int64(1); s <= refreshSlots; s++ {
		before := len(marked)
		p.advance(base+s*1000, mark)
		most = max(most, len(marked)-before)
	}
	if len(marked) != 999 || marked[ids[0]] != 0 {
		t.Fatalf("one period marked %d ids (removed one %d times), want 999 and 0", len(marked), marked[ids[0]])
	}
	for id, n := range marked {
		if n != 1 {
			t.Fatalf("%s marked %d times in one period", id, n)
		}
	}
	if most > 100 {
		t.Fatalf("one second marked %d ids: the refresh is not spread", most)
	}
	clear(marked)
	p.advance(base+10*period, mark) // a jump of many periods
	if len(marked) > 100 {
		t.Fatalf("a jump marked %d ids, want one slot's share", len(marked))
	}
}
