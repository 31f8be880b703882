package retrieval

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// clusteredVectors returns n unit vectors of d dims scattered around
// clusters random centres.
func clusteredVectors(n, d, clusters int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 2))
	centres := make([]float64, clusters*d)
	for i := range centres {
		centres[i] = rng.NormFloat64()
	}
	out := make([]float32, n*d)
	for p := 0; p < n; p++ {
		c := rng.IntN(clusters)
		v := out[p*d : (p+1)*d]
		var norm float64
		for j := range v {
			x := centres[c*d+j] + 0.5*rng.NormFloat64()
			v[j] = float32(x)
			norm += x * x
		}
		inv := float32(1 / math.Sqrt(norm))
		for j := range v {
			v[j] *= inv
		}
	}
	return out
}

func itemIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("item-%d", i)
	}
	return ids
}

func recallOf(got, want []Hit) float64 {
	in := make(map[int32]bool, len(want))
	for _, h := range want {
		in[h.Item] = true
	}
	n := 0
	for _, h := range got {
		if in[h.Item] {
			n++
		}
	}
	return float64(n) / float64(len(want))
}

func TestIVFRecallOnClusteredSet(t *testing.T) {
	t.Parallel()
	const n, d, k = 20_000, 64, 100
	vecs := clusteredVectors(n, d, 200, 1)
	x, err := BuildIndex(t.Context(), itemIDs(n), vecs, d, IndexConfig{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if x.Lists() != 283 || x.NProbe() != DefaultNProbe {
		t.Fatalf("%d lists, nprobe %d; want round(2·√20000) = 283 and %d", x.Lists(), x.NProbe(), DefaultNProbe)
	}
	queries := clusteredVectors(200, d, 200, 1) // same centres, new draws
	var sum float64
	var got, want []Hit
	for q := 0; q < 200; q++ {
		qv := queries[q*d : (q+1)*d]
		got = x.Search(got, qv, k, SearchOptions{})
		want = x.Exact(want, qv, k, nil)
		if len(got) != k || len(want) != k {
			t.Fatalf("query %d: %d and %d hits, want %d", q, len(got), len(want), k)
		}
		for i := 1; i < len(got); i++ {
			if got[i].Score > got[i-1].Score {
				t.Fatalf("query %d: hits not best first at %d", q, i)
			}
		}
		sum += recallOf(got, want)
	}
	if recall := sum / 200; recall < 0.95 {
		t.Fatalf("recall@%d at nprobe %d = %.3f, want >= 0.95", k, DefaultNProbe, recall)
	} else {
		t.Logf("recall@%d at nprobe %d = %.4f", k, DefaultNProbe, recall)
	}
}

func TestSearchAllListsIsExact(t *testing.T) {
	t.Parallel()
	const n, d = 3000, 16
	vecs := clusteredVectors(n, d, 30, 4)
	x, err := BuildIndex(t.Context(), itemIDs(n), vecs, d, IndexConfig{Lists: 40, Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	exclude := func(item int32) bool { return item%3 == 0 }
	for q := 0; q < 20; q++ {
		qv := vecs[q*d : (q+1)*d]
		got := x.Search(nil, qv, 50, SearchOptions{NProbe: x.Lists(), Exclude: exclude})
		want := x.Exact(nil, qv, 50, exclude)
		if !slices.Equal(got, want) {
			t.Fatalf("query %d: probing every list %v differs from exact %v", q, got[:3], want[:3])
		}
		// Brute force by hand: the exact top 50 by score, ties by item.
		var all []Hit
		for i := 0; i < n; i++ {
			if !exclude(int32(i)) {
				all = append(all, Hit{int32(i), dot(qv, vecs[i*d:(i+1)*d])})
			}
		}
		slices.SortFunc(all, func(a, b Hit) int {
			if c := cmp.Compare(b.Score, a.Score); c != 0 {
				return c
			}
			return cmp.Compare(a.Item, b.Item)
		})
		if !slices.Equal(want, all[:50]) {
			t.Fatalf("query %d: Exact differs from a sorted scan", q)
		}
		for _, h := range got {
			if exclude(h.Item) {
				t.Fatalf("query %d: excluded item %d returned", q, h.Item)
			}
		}
	}
}

func TestSearchNeverReturnsShort(t *testing.T) {
	t.Parallel()
	const n, d = 500, 8
	x, err := BuildIndex(t.Context(), itemIDs(n), clusteredVectors(n, d, 10, 5), d, IndexConfig{Lists: 50, NProbe: 1})
	if err != nil {
		t.Fatal(err)
	}
	q := make([]float32, d)
	q[0] = 1
	// One list holds about 10 items; 200 must still come back.
	got := x.Search(nil, q, 200, SearchOptions{Exclude: func(i int32) bool { return i < 100 }})
	if len(got) != 200 {
		t.Fatalf("%d hits, want 200", len(got))
	}
	if got := x.Search(nil, q, 1000, SearchOptions{}); len(got) != n {
		t.Fatalf("k beyond the catalogue: %d hits, want %d", len(got), n)
	}
	if got := x.Search(nil, q, 0, SearchOptions{}); len(got) != 0 {
		t.Fatalf("k=0: %d hits", len(got))
	}
}

func TestSelectTop(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 1))
	better := func(a, b listScore) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		return cmp.Compare(a.list, b.list)
	}
	for trial := 0; trial < 500; trial++ {
		n := 1 + rng.IntN(60)
		s := make([]listScore, n)
		for i := range s {
			// Few distinct scores, so ties are common.
			s[i] = listScore{int32(i), float32(rng.IntN(8))}
		}
		k := 1 + rng.IntN(n)
		want := slices.Clone(s)
		slices.SortFunc(want, better)
		selectTop(s, k, better)
		got := slices.Clone(s[:k])
		slices.SortFunc(got, better)
		if !slices.Equal(got, want[:k]) {
			t.Fatalf("n=%d k=%d: selected %v, want %v", n, k, got, want[:k])
		}
	}
}

func TestBuildIndexRejects(t *testing.T) {
	t.Parallel()
	v := clusteredVectors(10, 4, 2, 1)
	nan := slices.Clone(v)
	nan[5] = float32(math.NaN())
	tests := []struct {
		name string
		ids  []string
		vecs []float32
		cfg  IndexConfig
	}{
		{"no items", nil, nil, IndexConfig{}},
		{"short vectors", itemIDs(10), v[:36], IndexConfig{}},
		{"duplicate ids", append(itemIDs(9), "item-0"), v, IndexConfig{}},
		{"empty id", append(itemIDs(9), ""), v, IndexConfig{}},
		{"NaN", itemIDs(10), nan, IndexConfig{}},
		{"more lists than items", itemIDs(10), v, IndexConfig{Lists: 11}},
		{"negative alpha", itemIDs(10), v, IndexConfig{Alpha: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := BuildIndex(t.Context(), tt.ids, tt.vecs, 4, tt.cfg); err == nil {
				t.Fatal("BuildIndex succeeded")
			}
		})
	}
}

func TestIndexEmbedder(t *testing.T) {
	t.Parallel()
	const users, items = 100, 150
	data := synthInteractions(users, items, 15, 8)
	m, err := Train(t.Context(), users, items, data, Config{Factors: 16, Iterations: 4})
	if err != nil {
		t.Fatal(err)
	}
	x, err := m.BuildIndex(t.Context(), itemIDs(items), IndexConfig{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := x.Embedder()
	if err != nil {
		t.Fatal(err)
	}
	var ids []int32
	var s []float32
	for _, it := range data {
		if it.User == 7 {
			ids, s = append(ids, it.Item), append(s, it.Strength)
		}
	}
	v, err := e.Embed(nil, ids, s)
	if err != nil {
		t.Fatal(err)
	}
	// The artifact's embedder rebuilds item order, so it too reproduces
	// the trained vector bit for bit.
	if !slices.Equal(v, m.User(7)) {
		t.Fatalf("index fold-in %v, trained %v", v, m.User(7))
	}
	if i, ok := x.Lookup("item-42"); !ok || i != 42 || x.ID(42) != "item-42" || !slices.Equal(x.Vector(42), m.Item(42)) {
		t.Fatalf("Lookup(item-42) = %d, %v", i, ok)
	}
	plain, err := BuildIndex(t.Context(), itemIDs(items), m.ItemFactors, m.Dims, IndexConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Embedder(); err != ErrNoFoldIn {
		t.Fatalf("index without fold-in parameters: err = %v, want ErrNoFoldIn", err)
	}
}

// BenchmarkSearch measures a top-200 IVF search on 50,000 clustered unit
// vectors of 64 dims at the default nprobe.
func BenchmarkSearch(b *testing.B) {
	const n, d = 50_000, 64
	vecs := clusteredVectors(n, d, 500, 1)
	x, err := BuildIndex(b.Context(), itemIDs(n), vecs, d, IndexConfig{Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	queries := clusteredVectors(256, d, 500, 2)
	dst := make([]Hit, 0, 200)
	b.ReportAllocs()
	q := 0
	for b.Loop() {
		dst = x.Search(dst, queries[q*d:(q+1)*d], 200, SearchOptions{})
		q = (q + 1) % 256
	}
}
