package batch_test

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/batch"
	"github.com/adaptrec/adaptrec/features/snapshot"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

var asOf = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)

const (
	imp      = adaptrecv1.Action_ACTION_IMPRESSION
	click    = adaptrecv1.Action_ACTION_CLICK
	view     = adaptrecv1.Action_ACTION_VIEW
	watch    = adaptrecv1.Action_ACTION_WATCH
	complete = adaptrecv1.Action_ACTION_COMPLETE
	purchase = adaptrecv1.Action_ACTION_PURCHASE
	skip     = adaptrecv1.Action_ACTION_SKIP
	mobile   = adaptrecv1.Device_DEVICE_MOBILE
	desktop  = adaptrecv1.Device_DEVICE_DESKTOP
	tv       = adaptrecv1.Device_DEVICE_TV
)

// plantedEvents is a small log around asOf whose features are worked out
// by hand in TestComputeByHand; it includes events at and after asOf that
// must not count.
func plantedEvents() []*adaptrecv1.Event {
	h := func(d time.Duration) time.Time { return asOf.Add(d) }
	n := 0
	ev := func(at time.Time, user, item string, a adaptrecv1.Action, pos int32, v float64, session, surface string, d adaptrecv1.Device) *adaptrecv1.Event {
		n++
		return interaction(fmt.Sprintf("e%03d", n), at, user, item, a, pos, v, session, surface, d)
	}
	return []*adaptrecv1.Event{
		ev(h(-31*24*time.Hour), "u2", "i9", imp, 0, 0, "s0", "home", desktop),
		ev(h(-72*time.Hour), "u2", "i1", imp, 1, 0, "s2", "home", desktop),
		ev(h(-72*time.Hour+2*time.Second), "u2", "i1", skip, 1, 0, "s2", "home", desktop),
		ev(h(-2*time.Hour), "u1", "i1", imp, 0, 0, "s1", "home", mobile),
		ev(h(-2*time.Hour), "u1", "i2", imp, 1, 0, "s1", "home", mobile),
		ev(h(-2*time.Hour+5*time.Second), "u1", "i1", click, 0, 0, "s1", "home", mobile),
		ev(h(-2*time.Hour+10*time.Second), "u1", "i1", watch, 0, 120, "s1", "home", mobile),
		ev(h(-2*time.Hour+10*time.Second), "u1", "i1", complete, 0, 120, "s1", "home", mobile),
		ev(h(-2*time.Hour+60*time.Second), "u1", "i1", purchase, 0, 9.5, "s1", "home", mobile),
		ev(h(-time.Hour), "u3", "i2", view, -1, 0, "s3", "browse", tv),
		ev(h(-time.Hour+30*time.Second), "u3", "i2", watch, -1, 30, "s3", "browse", tv),
		// At and after the cutoff: never read.
		ev(asOf, "u1", "i2", click, 1, 0, "s1", "home", mobile),
		ev(asOf, "u4", "i3", imp, 0, 0, "s4", "home", mobile),
		ev(h(time.Hour), "u1", "i2", click, 1, 0, "s5", "home", mobile),
	}
}

func plantedCatalogue(t *testing.T) *batch.Catalogue {
	t.Helper()
	c, err := batch.NewCatalogue(
		[]string{"i1", "i2", "i9", "i10", "i11"},
		[]batch.ItemInfo{
			{Category: 2, Creator: 5, Published: asOf.Add(-240 * time.Hour), Duration: 240, Price: 9.5},
			{Category: 3, Creator: 5, Published: asOf.Add(-48 * time.Hour), Duration: 60, Flagged: true},
			{Category: 2, Creator: 7, Published: asOf.Add(-900 * time.Hour), Duration: 100},
			{Category: 2, Creator: 5, Published: asOf.Add(24 * time.Hour)},
			{Category: 4, Creator: 8, Published: asOf.Add(-24 * time.Hour), Promoted: true},
		})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// values reads a feature of one entity from computed group data.
type values struct {
	t  *testing.T
	fs *features.FeatureSet
	r  *batch.Result
}

func (v values) get(group, entity, feature string) []float64 {
	v.t.Helper()
	g, ok := v.r.Group(group)
	if !ok {
		v.t.Fatalf("no group %s", group)
	}
	names, types, _, _, err := snapshot.Layout(v.fs, group)
	if err != nil {
		v.t.Fatal(err)
	}
	off := 0
	for i, n := range names {
		typ, _ := features.ParseType(types[i])
		if n == feature {
			for _, row := range g.Rows {
				if row.EntityID == entity {
					return row.Values[off : off+typ.Width()]
				}
			}
			v.t.Fatalf("%s: no row for %q", group, entity)
		}
		off += typ.Width()
	}
	v.t.Fatalf("%s has no feature %s", group, feature)
	return nil
}

func (v values) want(group, entity, feature string, want ...float64) {
	v.t.Helper()
	got := v.get(group, entity, feature)
	if len(got) != len(want) {
		v.t.Errorf("%s[%q].%s = %v, want %v", group, entity, feature, got, want)
		return
	}
	for i := range got {
		if math.Abs(got[i]-want[i]) > 1e-9 {
			v.t.Errorf("%s[%q].%s = %v, want %v", group, entity, feature, got, want)
			return
		}
	}
}

func ids(g *batch.GroupData) []string {
	var out []string
	for _, r := range g.Rows {
		out = append(out, strings.ReplaceAll(r.EntityID, snapshot.PairSeparator, "×"))
	}
	slices.Sort(out)
	return out
}

func TestComputeByHand(t *testing.T) {
	t.Parallel()
	st := s3(t)
	archive(t, st, plantedEvents()...)
	fs := projectFeatures(t)
	groups := []string{"item_batch", "user_batch", "user_item_batch"}
	if got := batch.BatchGroups(fs); !slices.Equal(got, []string{"user_batch", "item_batch", "user_item_batch"}) {
		t.Errorf("BatchGroups = %v", got)
	}

	t.Run("event log only", func(t *testing.T) {
		res, err := batch.Compute(t.Context(), st, fs, asOf, groups, batch.Config{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Events != 11 || res.InWindow != 10 {
			t.Errorf("read %d events, %d in the window; want 11 and 10 (3 are at or after the cutoff)", res.Events, res.InWindow)
		}
		items, _ := res.Group("item_batch")
		users, _ := res.Group("user_batch")
		pairs, _ := res.Group("user_item_batch")
		if got := ids(items); !slices.Equal(got, []string{"i1", "i2"}) {
			t.Errorf("item rows %v: items of the window only (i9 is older, i3 at the cutoff)", got)
		}
		if got := ids(users); !slices.Equal(got, []string{"u1", "u2", "u3"}) {
			t.Errorf("user rows %v (u4 only has an event at the cutoff)", got)
		}
		if got := ids(pairs); !slices.Equal(got, []string{"u1×i1", "u1×i2", "u2×i1", "u3×i2"}) {
			t.Errorf("pair rows %v", got)
		}
		if !slices.Equal(items.Active, []string{"i1", "i2"}) || !slices.Equal(users.Active, []string{"u1", "u2", "u3"}) {
			t.Errorf("active items %v users %v", items.Active, users.Active)
		}
		for _, name := range []string{"item_category_id", "item_age_hours", "item_creator_ctr_30d", "item_watch_fraction_mean_7d"} {
			if !strings.Contains(items.NotComputed[name], "catalogue") {
				t.Errorf("%s: not computed because %q, want the catalogue", name, items.NotComputed[name])
			}
		}
		if !strings.Contains(users.NotComputed["user_hour_profile"], "time zones") {
			t.Errorf("user_hour_profile: %q", users.NotComputed["user_hour_profile"])
		}
		v := values{t, fs, res}
		// Item i1: u2 saw it 3 days ago (and skipped it), u1 2 hours ago
		// (clicked, watched 120 s to the end, bought for 9.5).
		v.want("item_batch", "i1", "item_ctr_1d", (1+3)/101.0)
		v.want("item_batch", "i1", "item_ctr_7d", (1+3)/102.0)
		v.want("item_batch", "i1", "item_ctr_30d", (1+3)/102.0)
		v.want("item_batch", "i1", "item_impressions_1d", 1)
		v.want("item_batch", "i1", "item_impressions_7d", 2)
		v.want("item_batch", "i1", "item_clicks_7d", 1)
		v.want("item_batch", "i1", "item_unique_viewers_7d", 1)
		v.want("item_batch", "i1", "item_watch_rate_7d", (1+50)/101.0)
		v.want("item_batch", "i1", "item_completion_rate_7d", (1+30)/101.0)
		v.want("item_batch", "i1", "item_watch_seconds_mean_7d", 120)
		v.want("item_batch", "i1", "item_skip_rate_7d", (1+10)/102.0)
		v.want("item_batch", "i1", "item_purchase_rate_30d", (1+1)/101.0)
		v.want("item_batch", "i1", "item_revenue_7d", 9.5)
		// 3 impressions and 1 click in 7 days: global CTR 1/3; i1 was at
		// positions 1 and 0.
		expected := (math.Pow(2, -0.7) + 1) / 3
		v.want("item_batch", "i1", "item_ctr_position_adjusted_7d", (1+100)/(expected+100))
		v.want("item_batch", "i1", "item_category_id", -1)
		// Item i2: shown to u1 (the click at the cutoff does not count),
		// found by u3 on the browse surface and watched for 30 s.
		v.want("item_batch", "i2", "item_ctr_7d", 3/101.0)
		v.want("item_batch", "i2", "item_browse_views_7d", 1)
		v.want("item_batch", "i2", "item_unique_viewers_7d", 1)
		v.want("item_batch", "i2", "item_watch_rate_7d", (1+50)/101.0)
		v.want("item_batch", "i2", "item_watch_seconds_mean_7d", 30)

		v.want("user_batch", "u1", "user_ctr_30d", (1+3)/102.0)
		v.want("user_batch", "u1", "user_impressions_30d", 2)
		v.want("user_batch", "u1", "user_clicks_30d", 1)
		v.want("user_batch", "u1", "user_purchases_30d", 1)
		v.want("user_batch", "u1", "user_spend_30d", 9.5)
		v.want("user_batch", "u1", "user_watch_seconds_30d", 120)
		v.want("user_batch", "u1", "user_completion_rate_30d", (1+30)/101.0)
		v.want("user_batch", "u1", "user_skip_rate_30d", 10/102.0)
		v.want("user_batch", "u1", "user_active_days_30d", 1)
		v.want("user_batch", "u1", "user_sessions_30d", 1)
		v.want("user_batch", "u1", "user_avg_session_length_s", 60)
		v.want("user_batch", "u1", "user_tenure_days", 0)
		v.want("user_batch", "u1", "user_device_share", 1, 0, 0, 0)
		v.want("user_batch", "u2", "user_tenure_days", 31)
		v.want("user_batch", "u2", "user_sessions_30d", 1)
		v.want("user_batch", "u2", "user_avg_session_length_s", 2)
		v.want("user_batch", "u2", "user_skip_rate_30d", (1+10)/101.0)
		v.want("user_batch", "u2", "user_device_share", 0, 1, 0, 0)
		v.want("user_batch", "u3", "user_ctr_30d", 0.03)
		v.want("user_batch", "u3", "user_device_share", 0, 0, 0, 1)
		v.want("user_batch", "u3", "user_category_affinity", make([]float64, 32)...)

		v.want("user_item_batch", snapshot.PairID("u1", "i1"), "ui_clicked_30d", 1)
		v.want("user_item_batch", snapshot.PairID("u1", "i1"), "ui_impressions_7d", 1)
		v.want("user_item_batch", snapshot.PairID("u1", "i2"), "ui_clicked_30d", 0)
		v.want("user_item_batch", snapshot.PairID("u2", "i1"), "ui_impressions_7d", 1)
		v.want("user_item_batch", snapshot.PairID("u3", "i2"), "ui_impressions_7d", 0)
		v.want("user_item_batch", snapshot.PairID("u1", "i1"), "ui_category_ctr_30d", 0.03)
	})

	t.Run("with catalogue and zones", func(t *testing.T) {
		zones := map[string]string{"u1": "Europe/Paris"}
		res, err := batch.Compute(t.Context(), st, fs, asOf, groups, batch.Config{
			Catalogue: plantedCatalogue(t),
			Zones:     func(u string) string { return zones[u] },
		})
		if err != nil {
			t.Fatal(err)
		}
		items, _ := res.Group("item_batch")
		if got := ids(items); !slices.Equal(got, []string{"i1", "i11", "i2", "i9"}) {
			t.Errorf("item rows %v: published catalogue items and the window's (i10 is published after the cutoff)", got)
		}
		if !slices.Equal(items.Active, []string{"i1", "i2"}) {
			t.Errorf("active items %v", items.Active)
		}
		for name, why := range items.NotComputed {
			if name != "item_embedding" {
				t.Errorf("%s not computed: %s", name, why)
			}
		}
		v := values{t, fs, res}
		v.want("item_batch", "i1", "item_category_id", 2)
		v.want("item_batch", "i1", "item_creator_id", 5)
		v.want("item_batch", "i1", "item_duration_s", 240)
		v.want("item_batch", "i1", "item_price", 9.5)
		v.want("item_batch", "i1", "item_age_hours", 240)
		v.want("item_batch", "i1", "item_watch_fraction_mean_7d", 0.5)
		v.want("item_batch", "i2", "item_watch_fraction_mean_7d", 0.5)
		v.want("item_batch", "i2", "item_is_flagged", 1)
		v.want("item_batch", "i11", "item_is_promoted", 1)
		v.want("item_batch", "i11", "item_ctr_7d", 0.03)
		v.want("item_batch", "i1", "item_creator_items", 2)
		v.want("item_batch", "i1", "item_creator_ctr_30d", (1+3)/103.0)
		v.want("item_batch", "i2", "item_creator_ctr_30d", (1+3)/103.0)
		v.want("item_batch", "i9", "item_creator_ctr_30d", 0.03)
		v.want("item_batch", "i1", "item_category_ctr_7d", (1+3)/102.0)
		affinity := make([]float64, 32)
		affinity[2] = 1
		v.want("user_batch", "u1", "user_category_affinity", affinity...)
		hours := make([]float64, 24)
		hours[23] = 1 // 22:00 UTC is 23:00 in Paris in November
		v.want("user_batch", "u1", "user_hour_profile", hours...)
		v.want("user_batch", "u2", "user_hour_profile", make([]float64, 24)...)
		v.want("user_item_batch", snapshot.PairID("u1", "i2"), "ui_creator_affinity_30d", 1)
		v.want("user_item_batch", snapshot.PairID("u2", "i1"), "ui_creator_affinity_30d", 0)
		v.want("user_item_batch", snapshot.PairID("u1", "i1"), "ui_category_ctr_30d", (1+100*(4/102.0))/101)
		users, _ := res.Group("user_batch")
		for _, r := range users.Rows {
			if r.EntityID == "u1" && (len(r.Maps) != 1 || len(r.Maps[0]) != 1 || r.Maps[0]["5"] != 1) {
				t.Errorf("u1 user_creator_clicks_30d = %v, want {5: 1}", r.Maps)
			}
		}
	})
}
