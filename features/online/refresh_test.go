package online

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

// TestNearlineRefreshReadsOnlyWhatChanged writes more item updates than one
// page of the change set and checks that a refresh reads every written item
// once, and the next one only the items written since.
func TestNearlineRefreshReadsOnlyWhatChanged(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Redis)
	fs := testSet(t)
	rdb := NewClient(env.Config().Redis)
	t.Cleanup(func() { rdb.Close() })
	ctx := t.Context()
	w, err := NewWriter(rdb, fs, WriterOptions{})
	must(t, err)
	st, err := New(fs, rdb, nil, Options{})
	must(t, err)
	now := time.Now().UTC().Truncate(time.Millisecond)
	write := func(from, to int, clicks int64) {
		t.Helper()
		var ups []NearlineUpdate
		for i := from; i < to; i++ {
			ups = append(ups, NearlineUpdate{ID: fmt.Sprintf("i%05d", i), Values: []NearlineValue{
				{Feature: "item_clicks_1h", Value: features.Value{Int: clicks}, At: now}}})
		}
		must(t, w.WriteItemsNearline(ctx, ups))
	}
	// Redis counts the hashes read: HGETALL calls, one per item.
	reads := func() float64 {
		t.Helper()
		info, err := rdb.Info(ctx, "commandstats").Result()
		must(t, err)
		m := regexp.MustCompile(`cmdstat_hgetall:calls=(\d+)`).FindStringSubmatch(info)
		if m == nil {
			return 0
		}
		n, err := strconv.ParseFloat(m[1], 64)
		must(t, err)
		return n
	}
	// Explain with no user reads no hash, so it does not disturb the count.
	clicks := func(id string) int64 {
		t.Helper()
		ex, err := st.Explain(ctx, "", []string{id}, Request{Now: now})
		must(t, err)
		for _, e := range ex.Values {
			if e.Feature.Name == "item_clicks_1h" {
				return e.Value.Int
			}
		}
		t.Fatalf("no item_clicks_1h for %s", id)
		return 0
	}

	write(0, 3*changesPage+17, 1)
	before := reads()
	must(t, st.RefreshNearline(ctx))
	if n := st.Items(); n != 3*changesPage+17 {
		t.Fatalf("item cache holds %d items after the first refresh, want %d", n, 3*changesPage+17)
	}
	first := reads() - before

	// Items written in the newest millisecond a refresh saw are read again
	// by the next: a write in that millisecond has the same score.
	changes := st.keys.changes("item_nearline")
	newest := func() string {
		t.Helper()
		z, err := rdb.ZRevRangeWithScores(ctx, changes, 0, 0).Result()
		must(t, err)
		return strconv.FormatFloat(z[0].Score, 'f', -1, 64)
	}
	atScore := func(score string) float64 {
		t.Helper()
		n, err := rdb.ZCount(ctx, changes, score, score).Result()
		must(t, err)
		return float64(n)
	}
	last := newest()

	write(3*changesPage+17, 3*changesPage+617, 1) // 600 new items
	write(0, 100, 2)                              // 100 updated
	again := atScore(last)
	before = reads()
	must(t, st.RefreshNearline(ctx))
	if got := reads() - before; got != 700+again {
		t.Errorf("second refresh read %v items, want the 700 written since the first and %v of its newest millisecond (the first read %v)", got, again, first)
	}
	if first < 3*changesPage+17 {
		t.Errorf("first refresh read %v items, want all %d", first, 3*changesPage+17)
	}
	if n := st.Items(); n != 3*changesPage+617 {
		t.Errorf("item cache holds %d items, want %d", n, 3*changesPage+617)
	}
	if c := clicks("i00042"); c != 2 {
		t.Errorf("updated item reads %d clicks, want 2", c)
	}
	if c := clicks("i00142"); c != 1 {
		t.Errorf("item written once reads %d clicks, want 1", c)
	}
	// Nothing written: only the newest millisecond is read again.
	last = newest()
	again = atScore(last)
	before = reads()
	must(t, st.RefreshNearline(ctx))
	if got := reads() - before; got != again {
		t.Errorf("a refresh with no writes read %v items, want the %v of the newest millisecond", got, again)
	}
	if again > 200 {
		t.Errorf("%v items share the newest millisecond: the test cannot tell re-reads from reads", again)
	}
}

func TestPreloaderLoadsOnlyUserAndPairBatchGroups(t *testing.T) {
	t.Parallel()
	fs := testSet(t)
	// No Redis and no snapshots: groups that need nothing must not touch
	// them, unknown ones must fail.
	pre := Preloader(nil, fs, nil, LoadOptions{})
	for _, g := range []string{"item_batch", "item_embedding"} {
		if err := pre(t.Context(), g, "20261122T000000Z-00000000"); err != nil {
			t.Errorf("preload %s: %v", g, err)
		}
	}
	if err := pre(t.Context(), "no_such_group", "v"); err == nil {
		t.Error("preloading an unknown group succeeded")
	}
}
