package retrieve

import (
	"cmp"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/serving/catalog"
)

// bruteList scans every item: those keep accepts and q does not skip,
// ordered by less, the first k, scored by score.
func bruteList(q *Query, k int, keep func(int32) bool, order func(a, b int32) int, score []float32) []Hit {
	var all []int32
	for i := range int32(q.Catalog.Len()) {
		if keep(i) && !q.Catalog.Flagged[i] && (q.Exclude == nil || !q.Exclude(i)) {
			all = append(all, i)
		}
	}
	slices.SortFunc(all, order)
	out := []Hit{}
	for _, i := range all[:min(k, len(all))] {
		out = append(out, Hit{Item: i, Score: score[i]})
	}
	return out
}

func byPopularity(c *catalog.Catalog) func(a, b int32) int {
	return func(a, b int32) int {
		if r := cmp.Compare(c.Popularity[b], c.Popularity[a]); r != 0 {
			return r
		}
		return cmp.Compare(a, b)
	}
}

// TestListSources checks Popular, Trending and Fresh against a scan of the
// whole catalogue, with and without exclusions, for quotas below and above
// what they have.
func TestListSources(t *testing.T) {
	t.Parallel()
	c := testCatalog(t, 2000, 8, 5)
	all := func(int32) bool { return true }
	byTrend := func(a, b int32) int {
		if r := cmp.Compare(c.Trending[b], c.Trending[a]); r != 0 {
			return r
		}
		return byPopularity(c)(a, b)
	}
	for _, tt := range []struct {
		name  string
		src   Source
		keep  func(int32) bool
		order func(a, b int32) int
		score []float32
	}{
		{"popular", Popular{}, all, byPopularity(c), c.Popularity},
		{"trending defaults", &Trending{},
			func(i int32) bool { return c.Popularity[i] >= 20 && c.Trending[i] >= 1.5 }, byTrend, c.Trending},
		{"trending, floors set", &Trending{MinPopularity: 50, MinVelocity: 3},
			func(i int32) bool { return c.Popularity[i] >= 50 && c.Trending[i] >= 3 }, byTrend, c.Trending},
		{"trending, no popularity floor", &Trending{MinPopularity: -1},
			func(i int32) bool { return c.Trending[i] >= 1.5 }, byTrend, c.Trending},
		{"fresh defaults", &Fresh{}, func(i int32) bool { return c.AgeHours[i] < 48 }, byPopularity(c), c.Popularity},
		{"fresh 12h", &Fresh{Horizon: 12 * time.Hour}, func(i int32) bool { return c.AgeHours[i] < 12 }, byPopularity(c), c.Popularity},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, k := range []int{1, 50, 5000} {
				for _, q := range []*Query{
					{Catalog: c},
					{Catalog: c, Exclude: func(i int32) bool { return i%3 == 0 }},
				} {
					got, err := tt.src.Retrieve(t.Context(), q, k, nil)
					if err != nil {
						t.Fatal(err)
					}
					want := bruteList(q, k, tt.keep, tt.order, tt.score)
					if !slices.Equal(got, want) {
						t.Fatalf("k=%d exclude=%v: got %d hits %v, want %d %v", k, q.Exclude != nil, len(got), head(got), len(want), head(want))
					}
					if len(got) == 0 {
						t.Fatalf("k=%d: no hits; the test catalogue should have some to offer", k)
					}
				}
			}
		})
	}
}

func head(h []Hit) []Hit { return h[:min(len(h), 8)] }

// TestPerCatalogCache checks a list is built once per catalogue, with the
// two newest kept so overlapping requests at a swap do not rebuild.
func TestPerCatalogCache(t *testing.T) {
	t.Parallel()
	a, b, d := testCatalog(t, 10, 2, 1), testCatalog(t, 10, 2, 2), testCatalog(t, 10, 2, 3)
	var builds atomic.Int32
	var p perCatalog[int]
	build := func(c *catalog.Catalog) int { builds.Add(1); return c.Len() }
	for _, tt := range []struct {
		c     *catalog.Catalog
		total int32
	}{{a, 1}, {a, 1}, {b, 2}, {a, 2}, {b, 2}, {d, 3}, {b, 3}, {a, 4}} {
		if got := p.get(tt.c, build); got != 10 {
			t.Fatalf("get = %d, want 10", got)
		}
		if n := builds.Load(); n != tt.total {
			t.Fatalf("%d builds so far, want %d", n, tt.total)
		}
	}
}
