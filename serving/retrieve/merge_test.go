package retrieve

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestMerge checks de-duplication, rank normalisation, weights, the
// multi-source bonus, the cap and the order of the merged list.
func TestMerge(t *testing.T) {
	t.Parallel()
	cat := testCatalog(t, 100, 3, 4)
	type want struct {
		item    int32
		score   float32
		sources uint16
	}
	for _, tt := range []struct {
		name    string
		cfg     Config
		want    []want
		failed  uint16
		errPart string
	}{
		{
			// a: 10→1, 11→1/(1+1/4)=0.8, 12→1/(1+2/4); b (weight 2):
			// 11→2, 13→2/(1+1/2); 11 gets both plus one bonus.
			name: "ranks, weights and bonus",
			cfg: Config{Sources: []SourceConfig{
				{Source: fixed("a", hits(10, 11, 12)...), K: 4},
				{Source: fixed("b", hits(11, 13)...), K: 2, Weight: 2},
			}},
			want: []want{{11, 0.8 + 2 + 0.1, 3}, {13, 2 / 1.5, 2}, {10, 1, 1}, {12, 1 / 1.5, 1}},
		},
		{
			// 20 (from a and b) and 5 (from c) both sum to 1.5; the bonus
			// puts the item two sources agree on first, where the tie
			// would have put the lower item 5 first.
			name: "two sources beat one",
			cfg: Config{Sources: []SourceConfig{
				{Source: fixed("a", hits(20)...), K: 1},
				{Source: fixed("b", hits(20)...), K: 1, Weight: 0.5},
				{Source: fixed("c", hits(5)...), K: 1, Weight: 1.5},
			}},
			want: []want{{20, 1.6, 3}, {5, 1.5, 4}},
		},
		{
			name: "no bonus: ties by item",
			cfg: Config{MultiSourceBonus: -1, Sources: []SourceConfig{
				{Source: fixed("a", hits(20)...), K: 1},
				{Source: fixed("b", hits(20)...), K: 1, Weight: 0.5},
				{Source: fixed("c", hits(5)...), K: 1, Weight: 1.5},
			}},
			want: []want{{5, 1.5, 4}, {20, 1.5, 3}},
		},
		{
			name: "three sources, two bonuses",
			cfg: Config{MultiSourceBonus: 0.25, Sources: []SourceConfig{
				{Source: fixed("a", hits(1)...), K: 1},
				{Source: fixed("b", hits(1)...), K: 1},
				{Source: fixed("c", hits(1)...), K: 1},
			}},
			want: []want{{1, 3.5, 7}},
		},
		{
			name: "a source's repeat counts once, at its best rank",
			cfg: Config{Sources: []SourceConfig{
				{Source: fixed("a", hits(10, 10, 11)...), K: 3},
			}},
			want: []want{{10, 1, 1}, {11, 1 / (1 + 2.0/3), 1}},
		},
		{
			name: "unsorted answer is sorted by score",
			cfg: Config{Sources: []SourceConfig{
				{Source: fixed("a", Hit{Item: 12, Score: 1}, Hit{Item: 10, Score: 3}, Hit{Item: 11, Score: 3}), K: 3},
			}},
			want: []want{{10, 1, 1}, {11, 1 / (1 + 1.0/3), 1}, {12, 0.6, 1}},
		},
		{
			name: "capped at total",
			cfg: Config{Total: 2, Sources: []SourceConfig{
				{Source: fixed("a", hits(10, 11, 12)...), K: 3},
			}},
			want: []want{{10, 1, 1}, {11, 0.75, 1}},
		},
		{
			name: "an item outside the catalogue fails the source",
			cfg: Config{Sources: []SourceConfig{
				{Source: fixed("a", hits(10)...), K: 1},
				{Source: fixed("b", hits(11, 100)...), K: 2},
			}},
			want:    []want{{10, 1, 1}},
			failed:  2,
			errPart: "returned item 100, outside the catalogue of 100 items",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRetriever(t, tt.cfg)
			out, st := r.Retrieve(t.Context(), &Query{Catalog: cat}, nil)
			got := make([]want, len(out))
			for i, c := range out {
				got[i] = want{c.Item, c.Score, c.Sources}
			}
			if !slices.EqualFunc(got, tt.want, func(a, b want) bool {
				return a.item == b.item && a.sources == b.sources && math.Abs(float64(a.score-b.score)) < 1e-5
			}) {
				t.Errorf("merged %v, want %v", got, tt.want)
			}
			if st.Failed != tt.failed {
				t.Errorf("failed %b, want %b", st.Failed, tt.failed)
			}
			if tt.errPart != "" {
				if i := 1; st.Err[i] == nil || !strings.Contains(st.Err[i].Error(), tt.errPart) {
					t.Errorf("Err[1] = %v, want one containing %q", st.Err[i], tt.errPart)
				}
			}
		})
	}
}

// TestSourceNames checks a candidate's mask names its sources in order,
// with configured names overriding the sources' own.
func TestSourceNames(t *testing.T) {
	t.Parallel()
	r := newRetriever(t, Config{Sources: []SourceConfig{
		{Source: Popular{}, K: 1},
		{Source: fixed("x"), Name: "renamed", K: 1},
		{Source: &Fresh{}, K: 1},
	}})
	if got := r.SourceNames(0b101, nil); !slices.Equal(got, []string{"popular", "fresh"}) {
		t.Errorf("SourceNames(101) = %v, want [popular fresh]", got)
	}
	if got := r.SourceNames(0b010, []string{"pre"}); !slices.Equal(got, []string{"pre", "renamed"}) {
		t.Errorf("SourceNames(010) = %v, want [pre renamed]", got)
	}
}

// TestSortKeyOrder checks sorting packed keys orders candidates as the
// comparison would: descending score, ties by ascending item, negative
// and zero scores included.
func TestSortKeyOrder(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 5))
	scores := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 0.5, -0.5, 1e-30, -1e-30, 3.5, math.MaxFloat32, -math.MaxFloat32}
	cands := make([]Candidate, 2000)
	for i := range cands {
		cands[i] = Candidate{Item: int32(rng.IntN(50_000)), Score: scores[rng.IntN(len(scores))]}
		if i%2 == 0 {
			cands[i].Score = float32(rng.NormFloat64())
		}
	}
	want := slices.Clone(cands)
	slices.SortFunc(want, func(a, b Candidate) int {
		if r := cmp.Compare(b.Score, a.Score); r != 0 {
			return r
		}
		return cmp.Compare(a.Item, b.Item)
	})
	keys := make([]uint64, len(cands))
	for i, c := range cands {
		keys[i] = sortKey(c.Score, c.Item)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if item := int32(uint32(k)); item != want[i].Item || sortKey(want[i].Score, want[i].Item) != k {
			t.Fatalf("position %d: key of item %d, want item %d (score %v)", i, item, want[i].Item, want[i].Score)
		}
	}
}
