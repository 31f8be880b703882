package nearline

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/online"
	"github.com/adaptrec/adaptrec/features/windowed"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
)

const min_ = int64(time.Minute / time.Millisecond)

// TestCombineShards sums partitions' shards, leaving out those of owners
// that saw nothing in the window.
func TestCombineShards(t *testing.T) {
	now := 500 * min_
	got := combine([]windowed.Totals{
		{At: now, Clicks1h: 3, Impressions1h: 10, Clicks30m: 2},
		{At: now - 10*min_, Clicks1h: 1, Impressions1h: 4, Clicks30m: 1},
		{At: now - 40*min_, Clicks1h: 5, Impressions1h: 5, Clicks30m: 5}, // only its hour counts
		{At: now - 61*min_, Clicks1h: 9, Impressions1h: 9, Clicks30m: 9}, // stale
	})
	want := windowed.Totals{At: now, Clicks1h: 9, Impressions1h: 19, Clicks30m: 3}
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

// TestPartitionValues feeds a partition events as Kafka messages and checks
// the values it would write: the names and times the online store reads,
// the numbers features/windowed computes.
func TestPartitionValues(t *testing.T) {
	fs, err := features.Load("../../features/features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	t.Cleanup(func() { rdb.Close() })
	c, err := New(Config{Kafka: config.Kafka{Brokers: []string{"127.0.0.1:1"}}, GroupID: "g",
		ClicksPer30m: func(string) (float64, bool) { return 3, true }}, fs, rdb, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := newPartition(c, events.TopicInteractions, 0, nil, nil)
	t0 := time.Now().Add(-20 * time.Minute).Truncate(time.Minute)
	for i, ev := range []struct {
		at     time.Duration
		user   string
		item   string
		action adaptrecv1.Action
	}{
		{0, "u1", "i1", adaptrecv1.Action_ACTION_IMPRESSION},
		{time.Minute, "u1", "i1", adaptrecv1.Action_ACTION_CLICK},
		{2 * time.Minute, "u1", "i2", adaptrecv1.Action_ACTION_IMPRESSION},
		{3 * time.Minute, "u2", "i1", adaptrecv1.Action_ACTION_IMPRESSION},
	} {
		m, err := events.Message(events.NewInteraction(fmt.Sprint("e", i), t0.Add(ev.at), "test",
			&adaptrecv1.UserInteractionEvent{UserId: ev.user, ItemId: ev.item, Action: ev.action, SessionId: "s-" + ev.user}))
		if err != nil {
			t.Fatal(err)
		}
		m.Offset = int64(i)
		p.handle(m, false)
	}
	at := t0.Add(10 * time.Minute).UnixMilli()
	got := map[string]string{}
	for _, v := range p.userValues(p.users["u1"], at) {
		got[v.Feature] = fmt.Sprintf("%v@%d", v.Value, v.At.UnixMilli()-t0.UnixMilli())
	}
	ms := func(d time.Duration) int64 { return d.Milliseconds() }
	want := map[string]string{
		"user_session_key":          fmt.Sprintf("%v@%d", features.Value{Int: features.SessionKey("s-u1")}, ms(2*time.Minute)),
		"user_session_start_ms":     fmt.Sprintf("%v@%d", features.Value{Int: t0.UnixMilli()}, ms(2*time.Minute)),
		"user_session_interactions": fmt.Sprintf("%v@%d", features.Value{Int: 1}, ms(2*time.Minute)),
		"user_session_clicks":       fmt.Sprintf("%v@%d", features.Value{Int: 1}, ms(2*time.Minute)),
		"user_session_recent_items": fmt.Sprintf("%v@%d", features.Value{List: []string{"i1"}}, ms(2*time.Minute)),
		"user_last_interaction_ms":  fmt.Sprintf("%v@%d", features.Value{Int: t0.Add(time.Minute).UnixMilli()}, ms(time.Minute)),
		"user_clicks_1h":            fmt.Sprintf("%v@%d", features.Value{Int: 1}, ms(10*time.Minute)),
		"user_purchases_1h":         fmt.Sprintf("%v@%d", features.Value{Int: 0}, ms(10*time.Minute)),
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("user values\n%v\nwant\n%v", got, want)
	}
	items, vals := p.users["u1"].AppendPairImpressions(at, nil, nil)
	if len(items) != 2 || vals[0].Int != 1 || vals[1].Int != 1 {
		t.Errorf("u1's pair set %v %v, want i1 and i2 once each", items, vals)
	}

	vals1 := p.itemValues("i1", p.win.Totals("i1", at))
	vals0 := p.itemValues("i9", p.win.Totals("i9", at)) // no traffic
	for _, c := range []struct {
		vals []online.NearlineValue
		want string
	}{
		// (1 + 100·0.03) / (2 + 100); (1 + 1) / (3 + 1).
		{vals1, "item_clicks_1h=1 item_impressions_1h=2 item_ctr_1h=0.039215684 item_trending_velocity_30m=0.5"},
		// No traffic in the hour: the prior and the velocity's default.
		{vals0, "item_clicks_1h=0 item_impressions_1h=0 item_ctr_1h=0.03 item_trending_velocity_30m=1"},
	} {
		var s []string
		for _, v := range c.vals {
			x := fmt.Sprint(v.Value.Int)
			if v.Feature == "item_ctr_1h" || v.Feature == "item_trending_velocity_30m" {
				x = fmt.Sprint(v.Value.Float)
			}
			s = append(s, v.Feature+"="+x)
			if v.At.UnixMilli() != at {
				t.Errorf("%s written at %s, want %s", v.Feature, v.At, time.UnixMilli(at))
			}
		}
		if got := strings.Join(s, " "); got != c.want {
			t.Errorf("item values %s, want %s", got, c.want)
		}
	}
}
