package sim

import (
	"math"
	"testing"
	"time"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

// handmadeWorld has two categories and items that differ in one attribute
// at a time, and users without drift, so each term of the response model
// can be checked alone.
func handmadeWorld(t *testing.T) (*Catalogue, *Population, *ResponseModel) {
	t.Helper()
	liked := []float32{1, 0, 0, 0}
	other := []float32{0, 1, 0, 0}
	published := testStart.Add(-100 * 24 * time.Hour)
	item := func(id string, latent []float32, mutate func(*Item)) Item {
		it := Item{ID: id, Categories: []int32{0}, Creator: -1, Published: published,
			Latent: latent, Quality: 0.5, Duration: 600, Price: 10}
		if mutate != nil {
			mutate(&it)
		}
		return it
	}
	cat := &Catalogue{
		Dim: 4,
		Categories: []Category{
			{Name: "a", Centroid: liked, PeakHour: 21},
			{Name: "b", Centroid: other, PeakHour: 9},
		},
		Items: []Item{
			item("base", liked, nil),
			item("disliked", other, nil),
			item("good", liked, func(it *Item) { it.Quality = 0.9 }),
			item("bad", liked, func(it *Item) { it.Quality = 0.1 }),
			item("fresh", liked, func(it *Item) { it.Published = testStart.Add(-time.Hour) }),
			item("flagged", liked, func(it *Item) { it.Flagged = true }),
			item("future", liked, func(it *Item) { it.Published = testStart.Add(time.Hour) }),
			item("long", liked, func(it *Item) { it.Duration = 7200 }),
			item("pricey", liked, func(it *Item) { it.Price = 200 }),
		},
	}
	if err := cat.index(); err != nil {
		t.Fatal(err)
	}
	pop, err := NewPopulation(cat, PopulationConfig{Seed: 1, Users: 50, Start: testStart, DriftPerDay: -1})
	if err != nil {
		t.Fatal(err)
	}
	// Give user 0 a known taste: exactly the "liked" direction.
	u := &pop.Users[0]
	copy(u.pref0, liked)
	copy(u.pref1, liked)
	u.bias = 0
	u.TimeZone, u.offset = TimeZone{"Europe/London", 0}, 0
	return cat, pop, NewResponseModel(cat, pop, ResponseParams{})
}

func TestResponseModelTerms(t *testing.T) {
	t.Parallel()
	cat, pop, m := handmadeWorld(t)
	u := &pop.Users[0]
	get := func(id string) *Item {
		i, ok := cat.Lookup(id)
		if !ok {
			t.Fatalf("no item %s", id)
		}
		return &cat.Items[i]
	}
	at := testStart.Add(21 * time.Hour) // 21:00 in London: category a's peak
	exp := func(id string, pos int, when time.Time, dev adaptrecv1.Device) Probabilities {
		return m.Probabilities(u, get(id), Exposure{Position: pos, At: when, Device: dev})
	}
	base := exp("base", 0, at, adaptrecv1.Device_DEVICE_MOBILE)
	tests := []struct {
		name    string
		got     float64
		compare string // "<" or ">" relative to ref
		ref     float64
	}{
		{"affinity raises clicks", base.Click, ">", exp("disliked", 0, at, 0).Click},
		{"affinity lowers skips", base.Skip, "<", exp("disliked", 0, at, 0).Skip},
		{"quality raises clicks", exp("good", 0, at, 0).Click, ">", exp("bad", 0, at, 0).Click},
		{"quality raises completion", exp("good", 0, at, 0).Complete / exp("good", 0, at, 0).Watch, ">",
			exp("bad", 0, at, 0).Complete / exp("bad", 0, at, 0).Watch},
		{"freshness raises clicks", exp("fresh", 0, at, 0).Click, ">", base.Click},
		{"flagged items are clicked less", exp("flagged", 0, at, 0).Click, "<", base.Click},
		{"flagged items are skipped more", exp("flagged", 0, at, 0).Skip, ">", base.Skip},
		{"position bias", exp("base", 5, at, 0).Click, "<", base.Click},
		{"time of day: peak beats 12h later", base.Click, ">", exp("base", 0, at.Add(12*time.Hour), 0).Click},
		{"long items are completed less", exp("long", 0, at, 0).Complete, "<", base.Complete},
		{"TV completes more than mobile", exp("base", 0, at, adaptrecv1.Device_DEVICE_TV).Complete, ">", base.Complete},
		{"expensive items are bought less", exp("pricey", 0, at, 0).Purchase, "<", base.Purchase},
		{"unpublished items are never clicked", exp("future", 0, testStart, 0).Click, "<", 1e-12},
	}
	for _, tt := range tests {
		ok := tt.got > tt.ref
		if tt.compare == "<" {
			ok = tt.got < tt.ref
		}
		if !ok {
			t.Errorf("%s: got %.5f, want %s %.5f", tt.name, tt.got, tt.compare, tt.ref)
		}
	}
	if got := m.ClickProbability(u, get("base"), Exposure{Position: 0, At: at}); got != base.Click {
		t.Errorf("ClickProbability = %g, Probabilities.Click = %g", got, base.Click)
	}
	// Organic exposure (no position) has no position bias.
	if org := exp("base", -1, at, 0); org.Examine != 1 || org.Click < base.Click {
		t.Errorf("organic exposure: examine %g click %g, want 1 and >= %g", org.Examine, org.Click, base.Click)
	}
}

func TestProbabilitiesAreConsistent(t *testing.T) {
	t.Parallel()
	w := testWorld(t, 11, 3000, 200)
	at := w.Start.Add(10 * 24 * time.Hour)
	for ui := range 50 {
		u := &w.Users.Users[ui]
		for ii := 0; ii < w.Catalogue.Len(); ii += 37 {
			for _, pos := range []int{-1, 0, 3, 9, 80} {
				p := w.Model.Probabilities(u, &w.Catalogue.Items[ii], Exposure{Position: pos, At: at, Device: u.Device})
				ok := p.Examine >= 0 && p.Examine <= 1 &&
					p.Click >= 0 && p.Click <= p.Examine &&
					p.Watch <= p.Click && p.Complete <= p.Watch && p.Purchase <= p.Click &&
					p.Skip >= 0 && p.Skip <= p.Examine-p.Click+1e-12
				if !ok {
					t.Fatalf("user %d item %d pos %d: inconsistent %+v", ui, ii, pos, p)
				}
			}
		}
	}
}

// TestSamplingMatchesOracle checks that the sampler used by the history and
// live users produces each response at the rate the oracle states.
func TestSamplingMatchesOracle(t *testing.T) {
	t.Parallel()
	w := testWorld(t, 12, 2000, 100)
	at := w.Start.Add(5 * 24 * time.Hour)
	u := &w.Users.Users[3]
	best := w.Model.BestItems(u, at, 1)[0]
	tests := []struct {
		name string
		item int
		pos  int
	}{
		{"best item on top", best, 0},
		{"best item low", best, 7},
		{"random item", 1234, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			it := &w.Catalogue.Items[tt.item]
			want := w.Model.Probabilities(u, it, Exposure{Position: tt.pos, At: at, Device: u.Device})
			var v viewer
			w.Model.setViewer(&v, u, at.Unix(), u.Device)
			resp := w.Model.respond(&v, int32(tt.item))
			r := newRNG(99)
			const n = 200_000
			var click, watch, complete, purchase, skip float64
			for range n {
				o := w.Model.sample(&r, &resp, it, tt.pos)
				click += b2f(o.click)
				watch += b2f(o.watch)
				complete += b2f(o.complete)
				purchase += b2f(o.purchase)
				skip += b2f(o.skip)
			}
			for _, c := range []struct {
				name      string
				got, want float64
			}{
				{"click", click / n, want.Click},
				{"watch", watch / n, want.Watch},
				{"complete", complete / n, want.Complete},
				{"purchase", purchase / n, want.Purchase},
				{"skip", skip / n, want.Skip},
			} {
				// Five standard errors of a binomial proportion.
				tol := 5*math.Sqrt(c.want*(1-c.want)/n) + 1e-4
				if math.Abs(c.got-c.want) > tol {
					t.Errorf("%s rate %.4f, oracle %.4f (tolerance %.4f)", c.name, c.got, c.want, tol)
				}
			}
		})
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func TestBestItems(t *testing.T) {
	t.Parallel()
	w := testWorld(t, 13, 3000, 100)
	at := w.Start.Add(3 * 24 * time.Hour)
	for ui := range 20 {
		u := &w.Users.Users[ui]
		best := w.Model.BestItems(u, at, 10)
		if len(best) != 10 {
			t.Fatalf("BestItems returned %d items", len(best))
		}
		click := func(i int) float64 {
			return w.Model.ClickProbability(u, &w.Catalogue.Items[i], Exposure{Position: 0, At: at, Device: u.Device})
		}
		for i := 1; i < len(best); i++ {
			if click(best[i]) > click(best[i-1]) {
				t.Fatalf("user %d: BestItems not sorted at %d", ui, i)
			}
		}
		worstKept := click(best[len(best)-1])
		for i := range w.Catalogue.Items {
			if click(i) > worstKept+1e-12 && !containsInt(best, i) {
				t.Fatalf("user %d: item %d (p=%.4f) beats the 10th best (p=%.4f) but was left out", ui, i, click(i), worstKept)
			}
			if w.Catalogue.Items[i].Published.After(at) && containsInt(best, i) {
				t.Fatalf("user %d: unpublished item %d recommended", ui, i)
			}
		}
	}
}

func containsInt(list []int, x int) bool {
	for _, v := range list {
		if v == x {
			return true
		}
	}
	return false
}

// TestShiftMakesStaleRecommendationsWorse shows what the shift is for: the
// best items computed before it are much worse for shifted users after it,
// so a model retrained on later data can show that it adapts.
func TestShiftMakesStaleRecommendationsWorse(t *testing.T) {
	t.Parallel()
	shiftAt := testStart.Add(15 * 24 * time.Hour)
	w, err := NewWorld(WorldConfig{
		Seed: 14, Start: testStart, Window: 30 * 24 * time.Hour,
		Catalogue:  CatalogueConfig{Items: 3000},
		Population: PopulationConfig{Users: 200, Shift: Shift{At: shiftAt, Share: 0.5}},
	})
	if err != nil {
		t.Fatal(err)
	}
	before, after := shiftAt.Add(-time.Hour), shiftAt.Add(time.Hour)
	mean := func(u *User, items []int) float64 {
		s := 0.0
		for pos, i := range items {
			s += w.Model.ClickProbability(u, &w.Catalogue.Items[i], Exposure{Position: pos, At: after, Device: u.Device})
		}
		return s / float64(len(items))
	}
	var staleS, freshS, staleU, freshU, nS, nU float64
	for i := range w.Users.Users {
		u := &w.Users.Users[i]
		stale, fresh := mean(u, w.Model.BestItems(u, before, 10)), mean(u, w.Model.BestItems(u, after, 10))
		if u.Shifted {
			staleS, freshS, nS = staleS+stale, freshS+fresh, nS+1
		} else {
			staleU, freshU, nU = staleU+stale, freshU+fresh, nU+1
		}
	}
	t.Logf("expected CTR of top-10 after the shift: shifted users stale %.3f fresh %.3f; others stale %.3f fresh %.3f",
		staleS/nS, freshS/nS, staleU/nU, freshU/nU)
	if staleS > 0.6*freshS {
		t.Errorf("shifted users: stale top-10 expected CTR %.3f, fresh %.3f; want stale well below", staleS, freshS)
	}
	if staleU < 0.95*freshU {
		t.Errorf("unshifted users: stale top-10 expected CTR %.3f, fresh %.3f; want about equal", staleU, freshU)
	}
}
