package retrieve

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/adaptrec/adaptrec/serving/ann"
	"github.com/adaptrec/adaptrec/serving/catalog"
)

// testANN builds an index over n random vectors of d dims whose ids are
// not catalogue indexes (scattered from 10,000 up), and the map into c: a
// tenth of the ids map to -1 (items the catalogue lacks), the others to
// distinct indexes of c.
func testANN(t testing.TB, c *catalog.Catalog, n, d int, seed uint64) (*ann.Index, []int32, []float32) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 9))
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = 10_000 + int32(i)*3 + int32(rng.IntN(3))
	}
	vecs := make([]float32, n*d)
	for i := range vecs {
		vecs[i] = float32(rng.NormFloat64())
	}
	x, err := ann.Build(t.Context(), ids, vecs, d, ann.Config{Seed: seed, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	m := make([]int32, ids[n-1]+1)
	for i := range m {
		m[i] = -1
	}
	perm := rng.Perm(c.Len())
	for i, id := range ids {
		if rng.IntN(10) != 0 {
			m[id] = int32(perm[i])
		}
	}
	q := make([]float32, d)
	for i := range q {
		q[i] = float32(rng.NormFloat64())
	}
	return x, m, q
}

// TestANNMatchesExact checks the source against the index's brute-force
// Exact, translated and filtered by hand: with a beam as wide as the index
// the search is exact, so the two agree hit for hit.
func TestANNMatchesExact(t *testing.T) {
	t.Parallel()
	c := testCatalog(t, 2000, 5, 8)
	x, m, vec := testANN(t, c, 1200, 16, 8)
	// The user's recent items: ten of the best unexcluded hits, which a
	// search filters after the fact (a few skips) instead of inside the walk.
	top, err := (&ANN{Index: x, Map: m, EfSearch: x.Len()}).Retrieve(t.Context(), &Query{Catalog: c, UserVector: vec}, 30, nil)
	if err != nil {
		t.Fatal(err)
	}
	var recent []int32
	for i := 0; i < 30; i += 3 {
		recent = append(recent, top[i].Item)
	}
	for _, tt := range []struct {
		name    string
		exclude func(int32) bool
		recent  []int32
		k       int
	}{
		{"no exclusions", nil, nil, 50},
		{"recent items excluded", func(i int32) bool { return slices.Contains(recent, i) }, recent, 50},
		{"every third excluded", func(i int32) bool { return i%3 == 0 }, nil, 120},
		{"quota beyond the mapped items", nil, nil, 1500},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			q := &Query{Catalog: c, UserVector: vec, Exclude: tt.exclude, Recent: tt.recent}
			got, err := (&ANN{Index: x, Map: m, EfSearch: x.Len()}).Retrieve(t.Context(), q, tt.k, nil)
			if err != nil {
				t.Fatal(err)
			}
			exact, err := x.Exact(nil, vec, tt.k, func(id int32) bool { return m[id] < 0 || q.Skip(m[id]) })
			if err != nil {
				t.Fatal(err)
			}
			want := []Hit{}
			for _, h := range exact {
				want = append(want, Hit{Item: m[h.ID], Score: h.Score})
			}
			if !slices.Equal(got, want) {
				t.Fatalf("got %d hits %v, want %d %v", len(got), head(got), len(want), head(want))
			}
			if len(got) == 0 {
				t.Fatal("no hits")
			}

			// The graph search at the default beam finds nearly all of them.
			approx, err := (&ANN{Index: x, Map: m}).Retrieve(t.Context(), q, tt.k, nil)
			if err != nil {
				t.Fatal(err)
			}
			in := map[int32]bool{}
			for _, h := range want {
				in[h.Item] = true
			}
			found := 0
			for _, h := range approx {
				if q.Skip(h.Item) {
					t.Fatalf("approximate search returned skipped item %d", h.Item)
				}
				if in[h.Item] {
					found++
				}
			}
			if recall := float64(found) / float64(len(want)); recall < 0.9 {
				t.Fatalf("recall %.3f of the exact top %d at the default beam, want ≥ 0.9", recall, tt.k)
			}
		})
	}
}

// TestANNDroppedSourceStops checks that a search whose source was dropped
// while it ran (the deadline passed; Retrieve's gate then excludes every
// item) returns instead of searching again with the exclusion, which would
// ask about every item of the index for an answer nobody reads.
func TestANNDroppedSourceStops(t *testing.T) {
	t.Parallel()
	c := testCatalog(t, 2000, 5, 8)
	x, m, vec := testANN(t, c, 1200, 16, 8)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	calls := 0
	q := &Query{Catalog: c, UserVector: vec, Exclude: func(int32) bool {
		calls++
		cancel() // the deadline passes as the first search's hits are filtered
		return true
	}}
	got, err := (&ANN{Index: x, Map: m}).Retrieve(ctx, q, 50, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if len(got) != 0 {
		t.Fatalf("%d hits from a dropped search, want none", len(got))
	}
	// One question per hit of the first search (k, the recent items and a
	// margin), none from a second.
	if want := 50 + 50/50 + 1; calls > want {
		t.Fatalf("Exclude asked %d times, want at most %d: the search ran again after its deadline", calls, want)
	}
}

// TestANNEdgeCases checks a query without a vector, a vector of the wrong
// length and a catalogue the map was not built for.
func TestANNEdgeCases(t *testing.T) {
	t.Parallel()
	c := testCatalog(t, 2000, 5, 9)
	other := testCatalog(t, 2000, 5, 10)
	x, m, vec := testANN(t, c, 300, 8, 9)
	src := &ANN{Index: x, Map: m, Catalog: c}
	if got, err := src.Retrieve(t.Context(), &Query{Catalog: c}, 10, nil); err != nil || len(got) != 0 {
		t.Errorf("no vector: %v, %v; want no hits and no error", got, err)
	}
	if _, err := src.Retrieve(t.Context(), &Query{Catalog: c, UserVector: vec[:5]}, 10, nil); !errors.Is(err, ann.ErrDims) {
		t.Errorf("5 values for 8 dims: error %v, want ann.ErrDims", err)
	}
	if _, err := src.Retrieve(t.Context(), &Query{Catalog: other, UserVector: vec}, 10, nil); err == nil || !strings.Contains(err.Error(), "another catalogue") {
		t.Errorf("another catalogue: error %v, want one saying so", err)
	}
	if err := (&ANN{Index: x, Map: m[:10]}).Validate(); err == nil || !strings.Contains(err.Error(), "ANN.Map has 10 entries") {
		t.Errorf("short map: Validate() = %v, want an error naming its length", err)
	}
}
