package retrieve

import (
	"cmp"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/serving/catalog"
)

// bruteCategory restates CategoryAffinity over plain maps and full scans.
func bruteCategory(q *Query, k, limit int, decay float64) []Hit {
	c := q.Catalog
	weights := map[int32]float64{}
	for cat, a := range q.CategoryAffinity {
		if cat < c.Categories() && a > 0 {
			weights[int32(cat)] = float64(a)
		}
	}
	if len(weights) == 0 {
		distinct := 0
		for pos, i := range q.Recent {
			cat := c.Category[i]
			if _, ok := weights[cat]; cat < 0 || (!ok && distinct == recentCategories) {
				continue
			} else if !ok {
				distinct++
			}
			weights[cat] += math.Pow(decay, float64(pos))
		}
	}
	var cats []int32
	for cat := range weights {
		cats = append(cats, cat)
	}
	slices.SortFunc(cats, func(a, b int32) int {
		if r := cmp.Compare(weights[b], weights[a]); r != 0 {
			return r
		}
		return cmp.Compare(a, b)
	})
	cats = cats[:min(limit, len(cats))]
	if len(cats) == 0 {
		return []Hit{}
	}
	var sum float64
	for _, cat := range cats {
		sum += weights[cat]
	}
	quota := make([]int, len(cats))
	left := k
	for j, cat := range cats {
		quota[j] = int(float64(k) * weights[cat] / sum)
		left -= quota[j]
	}
	for j := 0; left > 0; j = (j + 1) % len(cats) {
		quota[j]++
		left--
	}
	lists := make([][]int32, len(cats))
	for j, cat := range cats {
		for i := range int32(c.Len()) {
			if c.Category[i] == cat && !q.Skip(i) {
				lists[j] = append(lists[j], i)
			}
		}
		slices.SortFunc(lists[j], byPopularity(c))
	}
	taken := make([]int, len(cats))
	var out []Hit
	take := func(j, n int) {
		for ; n > 0 && taken[j] < len(lists[j]); n-- {
			share := weights[cats[j]] / sum
			out = append(out, Hit{Item: lists[j][taken[j]], Score: float32(share / (1 + float64(taken[j])/float64(max(quota[j], 1))))})
			taken[j]++
		}
	}
	short := 0
	for j := range cats {
		take(j, quota[j])
		short += quota[j] - taken[j]
	}
	for j := range cats {
		before := taken[j]
		take(j, short)
		short -= taken[j] - before
	}
	slices.SortFunc(out, hitOrder)
	return out
}

// TestCategoryAffinityBruteForce compares the source with bruteCategory
// on affinities, on recent items alone, with exclusions and quotas that
// exhaust categories.
func TestCategoryAffinityBruteForce(t *testing.T) {
	t.Parallel()
	c := testCatalog(t, 1500, 12, 6)
	aff := make([]float32, c.Categories()+3) // longer than the catalogue knows: ignored
	for i := range aff {
		aff[i] = float32((i * 7) % 5) // 0 for some, ties for others
	}
	aff[3] = float32(math.NaN())
	var recent []int32
	for i := range int32(40) {
		recent = append(recent, (i*37)%int32(c.Len()))
	}
	exclude := func(i int32) bool { return i%4 == 1 }
	for _, tt := range []struct {
		name  string
		src   CategoryAffinity
		q     Query
		k     int
		limit int
		decay float64
	}{
		{"affinity", CategoryAffinity{}, Query{CategoryAffinity: aff}, 100, 5, 0.9},
		{"affinity, 2 categories", CategoryAffinity{Categories: 2}, Query{CategoryAffinity: aff}, 37, 2, 0.9},
		{"affinity, exclusions", CategoryAffinity{Categories: 3}, Query{CategoryAffinity: aff, Exclude: exclude}, 64, 3, 0.9},
		{"affinity, quota beyond the categories", CategoryAffinity{Categories: 2}, Query{CategoryAffinity: aff, Exclude: exclude}, 400, 2, 0.9},
		{"recent", CategoryAffinity{}, Query{Recent: recent}, 90, 5, 0.9},
		{"recent over empty affinity", CategoryAffinity{RecentDecay: 0.5}, Query{Recent: recent, CategoryAffinity: make([]float32, 4)}, 90, 5, 0.5},
		{"recent, one category", CategoryAffinity{Categories: 1}, Query{Recent: recent, Exclude: exclude}, 20, 1, 0.9},
		{"nothing known", CategoryAffinity{}, Query{}, 50, 5, 0.9},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			q := tt.q
			q.Catalog = c
			got, err := tt.src.Retrieve(t.Context(), &q, tt.k, nil)
			if err != nil {
				t.Fatal(err)
			}
			want := bruteCategory(&q, tt.k, tt.limit, tt.decay)
			if len(got) != len(want) {
				t.Fatalf("%d hits, want %d", len(got), len(want))
			}
			for i := range got {
				if got[i].Item != want[i].Item || math.Abs(float64(got[i].Score-want[i].Score)) > 1e-5 {
					t.Fatalf("hit %d is %v, want %v (got %v, want %v)", i, got[i], want[i], head(got), head(want))
				}
			}
			if tt.name != "nothing known" && len(got) == 0 {
				t.Fatal("no hits; the test should exercise the source")
			}
		})
	}
}

// TestCategoryAffinitySplit checks the split on a catalogue small enough to
// work out by hand.
func TestCategoryAffinitySplit(t *testing.T) {
	t.Parallel()
	// Category 0 holds items 0..5, category 1 items 6 and 7; popularity
	// falls with the index.
	const n = 8
	c, err := catalog.New([]string{"a", "b", "c", "d", "e", "f", "g", "h"}, catalog.Columns{
		Category: []int32{0, 0, 0, 0, 0, 0, 1, 1}, Creator: make([]int32, n), AgeHours: make([]float32, n),
		Flagged: make([]bool, n), Promoted: make([]bool, n), Popularity: []float32{80, 70, 60, 50, 40, 30, 20, 10}, Trending: make([]float32, n),
	}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		aff     []float32
		exclude func(int32) bool
		k       int
		want    []Hit
	}{
		// Quotas 3 and 1; shares 0.75 and 0.25.
		{"proportional", []float32{3, 1}, nil, 4, []Hit{{0, 0.75}, {1, 0.75 / (1 + 1.0/3)}, {2, 0.75 / (1 + 2.0/3)}, {6, 0.25}}},
		// Quotas 6 and 2, but category 1 has 2 items: category 0 takes
		// the 4 left over, each scored along its own quota of 2.
		{"shortfall moves on", []float32{1, 3}, nil, 8, []Hit{{6, 0.75}, {7, 0.75 / (1 + 1.0/6)}, {0, 0.25}, {1, 0.25 / 1.5}, {2, 0.125}, {3, 0.1}, {4, 0.25 / 3}, {5, 0.25 / 3.5}}},
		// Quotas 3 and 1: category 1 has one item left, so category 0,
		// quota 1, takes three.
		{"excluded items are passed over", []float32{1, 3}, func(i int32) bool { return i == 6 || i == 0 }, 4, []Hit{{7, 0.75}, {1, 0.25}, {2, 0.125}, {3, 0.25 / 3}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := (&CategoryAffinity{}).Retrieve(t.Context(), &Query{Catalog: c, CategoryAffinity: tt.aff, Exclude: tt.exclude}, tt.k, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, tt.want, func(a, b Hit) bool {
				return a.Item == b.Item && math.Abs(float64(a.Score-b.Score)) < 1e-6
			}) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}
