package ann

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// clusteredUnit returns n unit vectors of d dims scattered with the given
// noise around clusters random centres (the shape of normalised content
// embeddings; noise 1 makes the clusters overlap broadly).
func clusteredUnit(n, d, clusters int, noise float64, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	centres := make([]float64, clusters*d)
	for i := range centres {
		centres[i] = rng.NormFloat64()
	}
	out := make([]float32, n*d)
	for p := range n {
		c := rng.IntN(clusters)
		v := out[p*d : (p+1)*d]
		var s float64
		for j := range v {
			x := centres[c*d+j] + noise*rng.NormFloat64()
			v[j] = float32(x)
			s += x * x
		}
		for j := range v {
			v[j] /= float32(math.Sqrt(s))
		}
	}
	return out
}

// trainedLike returns n item vectors and q query vectors of d dims shaped
// like implicit-ALS factors: a shared popularity direction, taste clusters
// and noise, each item scaled by a norm that spans two orders of magnitude
// (heavy-tailed, like the number of interactions behind it), and queries
// (users) that lean on the popularity direction too.
func trainedLike(n, q, d int, seed uint64) (items, queries []float32) {
	rng := rand.New(rand.NewPCG(seed, 2))
	const clusters = 40
	pop := make([]float64, d)
	for j := range pop {
		pop[j] = rng.NormFloat64()
	}
	centres := make([]float64, clusters*d)
	for i := range centres {
		centres[i] = rng.NormFloat64()
	}
	draw := func(dst []float32, scale float64) {
		c := rng.IntN(clusters)
		var s float64
		v := make([]float64, d)
		for j := range v {
			v[j] = 0.8*pop[j] + centres[c*d+j] + 0.7*rng.NormFloat64()
			s += v[j] * v[j]
		}
		for j := range v {
			dst[j] = float32(scale * v[j] / math.Sqrt(s))
		}
	}
	items = make([]float32, n*d)
	for i := range n {
		draw(items[i*d:(i+1)*d], math.Exp(1.2*rng.NormFloat64()-1.5))
	}
	queries = make([]float32, q*d)
	for i := range q {
		draw(queries[i*d:(i+1)*d], 1+rng.Float64())
	}
	return items, queries
}

func seqIDs(n int, offset int32) []int32 {
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = offset + int32(i)*3 // ids are not positions
	}
	return ids
}

func recall(got, want []Hit) float64 {
	in := make(map[int32]bool, len(want))
	for _, h := range want {
		in[h.ID] = true
	}
	n := 0
	for _, h := range got {
		if in[h.ID] {
			n++
		}
	}
	return float64(n) / float64(len(want))
}

// checkHits fails unless hits are distinct ids of the index, best first,
// each scored with its own vector.
func checkHits(t *testing.T, x *Index, q []float32, hits []Hit) {
	t.Helper()
	seen := map[int32]bool{}
	for i, h := range hits {
		if seen[h.ID] {
			t.Fatalf("id %d returned twice", h.ID)
		}
		seen[h.ID] = true
		v, ok := x.Vector(h.ID)
		if !ok {
			t.Fatalf("hit %d: unknown id %d", i, h.ID)
		}
		if s := dot(q, v); s != h.Score {
			t.Fatalf("hit %d: id %d scored %v, its vector gives %v", i, h.ID, h.Score, s)
		}
		if i > 0 && hitAbove(h, hits[i-1]) {
			t.Fatalf("hits not best first at %d: %v then %v", i, hits[i-1], h)
		}
	}
}

func TestRecallAgainstExact(t *testing.T) {
	t.Parallel()
	const n, d, nq = 20_000, 32, 200
	trained, trainedQ := trainedLike(n, nq, d, 1)
	unit := clusteredUnit(n+nq, d, 200, 1, 2)
	tests := []struct {
		name      string
		items, qs []float32
		k, ef     int
		want      float64
	}{
		// Default ef: bands small enough are scanned, the rest walked.
		{"trained-like k=200", trained, trainedQ, 200, 0, 0.95},
		{"unit clustered k=200", unit[:n*d], unit[n*d:], 200, 0, 0.95},
		// A narrow beam walks every band: the graphs alone.
		{"trained-like k=50 walked", trained, trainedQ, 50, 60, 0.90},
		{"unit clustered k=50 walked", unit[:n*d], unit[n*d:], 50, 60, 0.90},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			x, err := Build(t.Context(), seqIDs(n, 7), tt.items, d, Config{Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			var sum float64
			var got, want []Hit
			for i := range nq {
				q := tt.qs[i*d : (i+1)*d]
				if got, err = x.Search(got, q, tt.k, SearchOptions{Ef: tt.ef}); err != nil {
					t.Fatal(err)
				}
				if want, err = x.Exact(want, q, tt.k, nil); err != nil {
					t.Fatal(err)
				}
				if len(got) != tt.k || len(want) != tt.k {
					t.Fatalf("query %d: %d and %d hits, want %d", i, len(got), len(want), tt.k)
				}
				checkHits(t, x, q, got)
				sum += recall(got, want)
			}
			r := sum / nq
			t.Logf("%d bands, recall@%d = %.4f", x.Bands(), tt.k, r)
			if r < tt.want {
				t.Fatalf("recall@%d = %.4f, want >= %.2f", tt.k, r, tt.want)
			}
		})
	}
}

// TestExactIsBruteForce checks the ground truth itself against a sort of
// every score.
func TestExactIsBruteForce(t *testing.T) {
	t.Parallel()
	const n, d = 3000, 16
	items, qs := trainedLike(n, 5, d, 3)
	ids := seqIDs(n, -500)
	x, err := Build(t.Context(), ids, items, d, Config{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		q := qs[i*d : (i+1)*d]
		all := make([]Hit, n)
		for j := range n {
			all[j] = Hit{ids[j], dot(q, items[j*d:(j+1)*d])}
		}
		slices.SortFunc(all, func(a, b Hit) int {
			if hitAbove(a, b) {
				return -1
			}
			return 1
		})
		got, err := x.Exact(nil, q, 100, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, all[:100]) {
			t.Fatalf("query %d: Exact differs from a sorted scan", i)
		}
	}
}

func TestReduction(t *testing.T) {
	t.Parallel()
	// One band: every item lands on the sphere of radius R, and the item
	// nearest a query in L2 (query extended with 0) is the item of largest
	// inner product.
	const n, d = 500, 8
	items, qs := trainedLike(n, 50, d, 4)
	norms := make([]float64, n)
	for i := range norms {
		norms[i] = norm2(items[i*d : (i+1)*d])
	}
	maxN := slices.Max(norms)
	// reduction reads the band's largest norm at its start: put it there.
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		switch {
		case norms[a] > norms[b]:
			return -1
		case norms[a] < norms[b]:
			return 1
		}
		return 0
	})
	sorted := make([]float64, n)
	for i, o := range order {
		sorted[i] = norms[o]
	}
	aux := reduction(sorted, []band{{start: 0, end: n}})
	for i, o := range order {
		if r := math.Sqrt(norms[o] + float64(aux[i])*float64(aux[i])); math.Abs(r-math.Sqrt(maxN)) > 1e-5 {
			t.Fatalf("item %d: augmented norm %v, want %v", o, r, math.Sqrt(maxN))
		}
	}
	for qi := range 50 {
		q := qs[qi*d : (qi+1)*d]
		bestIP, bestL2 := -1, -1
		ip, l2 := math.Inf(-1), math.Inf(1)
		for i, o := range order {
			v := items[o*d : (o+1)*d]
			s := float64(dot(q, v))
			var dist float64
			for j := range d {
				dist += (float64(q[j]) - float64(v[j])) * (float64(q[j]) - float64(v[j]))
			}
			dist += float64(aux[i]) * float64(aux[i])
			if s > ip {
				ip, bestIP = s, o
			}
			if dist < l2 {
				l2, bestL2 = dist, o
			}
		}
		if bestIP != bestL2 {
			t.Fatalf("query %d: largest inner product at item %d, nearest in L2 after the reduction %d", qi, bestIP, bestL2)
		}
	}
}

func TestPartition(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 5))
	skewed := make([]float64, 50_000)
	for i := range skewed {
		v := math.Exp(1.5 * rng.NormFloat64())
		skewed[i] = v * v
	}
	slices.SortFunc(skewed, func(a, b float64) int { return -cmpF(a, b) })
	equal := slices.Repeat([]float64{1}, 5000)
	withZeros := append(slices.Clone(skewed[:20_000]), make([]float64, 3000)...)
	for _, tt := range []struct {
		name   string
		norms2 []float64
		ratio  float64
		bands  int // 0: check only the invariants
	}{
		{"equal norms", equal, 2, 1},
		{"fewer than a band", skewed[:minBandItems], 1.1, 1},
		{"skewed", skewed, 2, 0},
		{"skewed fine", skewed, 1.2, maxBands},
		{"zeros at the end", withZeros, 2, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bands := partition(tt.norms2, tt.ratio)
			if tt.bands > 0 && len(bands) != tt.bands {
				t.Fatalf("%d bands, want %d", len(bands), tt.bands)
			}
			if len(bands) > maxBands {
				t.Fatalf("%d bands, more than %d", len(bands), maxBands)
			}
			next := int32(0)
			for i, b := range bands {
				if b.start != next || b.end <= b.start {
					t.Fatalf("band %d spans %d..%d after %d", i, b.start, b.end, next)
				}
				next = b.end
				if b.maxNorm != float32(math.Sqrt(tt.norms2[b.start])) {
					t.Fatalf("band %d max norm %v, its first item %v", i, b.maxNorm, math.Sqrt(tt.norms2[b.start]))
				}
				last := i == len(bands)-1
				lo := math.Sqrt(tt.norms2[b.end-1])
				if !last && int(b.end-b.start) > minBandItems && lo*tt.ratio < float64(b.maxNorm)*(1-1e-6) {
					t.Fatalf("band %d spans norms %v..%v, beyond ratio %v", i, lo, b.maxNorm, tt.ratio)
				}
			}
			if int(next) != len(tt.norms2) {
				t.Fatalf("bands cover %d of %d", next, len(tt.norms2))
			}
		})
	}
}

func cmpF(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestBuildDeterministic(t *testing.T) {
	t.Parallel()
	const n, d = 6000, 16
	items, _ := trainedLike(n, 0, d, 6)
	save := func(seed uint64, workers int) []byte {
		t.Helper()
		x, err := Build(t.Context(), seqIDs(n, 0), items, d, Config{Seed: seed, Workers: workers})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := x.Save(&buf); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	a := save(42, 1)
	for _, workers := range []int{2, 5} {
		if !bytes.Equal(a, save(42, workers)) {
			t.Fatalf("seed 42 with %d workers built a different index than with 1", workers)
		}
	}
	if bytes.Equal(a, save(43, 2)) {
		t.Fatal("seeds 42 and 43 built identical indexes")
	}
}

func TestSearchExclude(t *testing.T) {
	t.Parallel()
	const n, d = 20_000, 32
	items, qs := trainedLike(n, 50, d, 7)
	ids := seqIDs(n, 1)
	x, err := Build(t.Context(), ids, items, d, Config{})
	if err != nil {
		t.Fatal(err)
	}
	q := qs[:d]
	top, err := x.Exact(nil, q, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	// What the user has seen: the 30 best items and every tenth id.
	seen := map[int32]bool{}
	for _, h := range top[:30] {
		seen[h.ID] = true
	}
	exclude := func(id int32) bool { return seen[id] || id%10 == 1 }
	got, err := x.Search(nil, q, 100, SearchOptions{Exclude: exclude})
	if err != nil {
		t.Fatal(err)
	}
	want, err := x.Exact(nil, q, 100, exclude)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 100 {
		t.Fatalf("%d hits, want 100", len(got))
	}
	for _, h := range got {
		if exclude(h.ID) {
			t.Fatalf("excluded id %d returned", h.ID)
		}
	}
	checkHits(t, x, q, got)
	if r := recall(got, want); r < 0.95 {
		t.Fatalf("recall with exclusions %.3f, want >= 0.95", r)
	}

	// Everything but 40 items excluded: the graph walk comes back short
	// and the exact fallback returns exactly those 40.
	allowed := map[int32]bool{}
	for _, id := range ids[1000:1040] {
		allowed[id] = true
	}
	got, err = x.Search(got, q, 100, SearchOptions{Exclude: func(id int32) bool { return !allowed[id] }})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 40 {
		t.Fatalf("%d hits with 40 items allowed, want 40", len(got))
	}
	for _, h := range got {
		if !allowed[h.ID] {
			t.Fatalf("id %d returned, not allowed", h.ID)
		}
	}

	// Everything excluded (a retrieval source whose call was dropped sees
	// this): the walks give up within their budget instead of scoring the
	// whole graph before the exact scan, which asks about every item once.
	// (A narrow beam, so that the bands are walked rather than scanned.)
	calls := 0
	got, err = x.Search(got, q, 20, SearchOptions{Ef: 20, Exclude: func(int32) bool { calls++; return true }})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("%d hits with every item excluded, want none", len(got))
	}
	if calls > n+n/2 {
		t.Fatalf("Exclude asked %d times with every item excluded, want at most %d (a bounded walk and one exact scan of %d items)", calls, n+n/2, n)
	}

	// Nine items in ten excluded: the walk may give up, but the answer is
	// still the exact top k of the rest.
	sparse := func(id int32) bool { return id%10 != 3 }
	got, err = x.Search(got, q, 100, SearchOptions{Exclude: sparse})
	if err != nil {
		t.Fatal(err)
	}
	want, err = x.Exact(want, q, 100, sparse)
	if err != nil {
		t.Fatal(err)
	}
	if r := recall(got, want); len(got) != 100 || r < 0.95 {
		t.Fatalf("%d hits, recall %.3f with nine in ten items excluded, want 100 and >= 0.95", len(got), r)
	}
}

func TestConcurrentSearch(t *testing.T) {
	t.Parallel()
	const n, d, nq = 5000, 16, 64
	items, qs := trainedLike(n, nq, d, 8)
	x, err := Build(t.Context(), seqIDs(n, 0), items, d, Config{EfSearch: 80})
	if err != nil {
		t.Fatal(err)
	}
	want := make([][]Hit, nq)
	for i := range nq {
		if want[i], err = x.Search(nil, qs[i*d:(i+1)*d], 20, SearchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			var dst []Hit
			for r := range 20 {
				i := (w*7 + r*13) % nq
				var err error
				dst, err = x.Search(dst, qs[i*d:(i+1)*d], 20, SearchOptions{Exclude: func(id int32) bool { return false }})
				if err != nil {
					errs <- err
					return
				}
				if !slices.Equal(dst, want[i]) {
					errs <- fmt.Errorf("goroutine %d query %d: %v, alone %v", w, i, dst[:3], want[i][:3])
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestEdgeCases(t *testing.T) {
	t.Parallel()
	const d = 8
	empty, err := Build(t.Context(), nil, nil, d, Config{})
	if err != nil {
		t.Fatal(err)
	}
	q := []float32{1, 0, 0, 0, 0, 0, 0, 0}
	if hits, err := empty.Search(nil, q, 10, SearchOptions{}); err != nil || len(hits) != 0 || empty.Len() != 0 || empty.Bands() != 0 {
		t.Fatalf("empty index: %v, %v", hits, err)
	}

	const n = 300
	items, _ := trainedLike(n, 0, d, 9)
	ids := seqIDs(n, 0)
	x, err := Build(t.Context(), ids, items, d, Config{EfSearch: 16})
	if err != nil {
		t.Fatal(err)
	}
	// k beyond the catalogue: every item, in exact order.
	hits, err := x.Search(nil, q, 1000, SearchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := x.Exact(nil, q, n, nil)
	if len(hits) != n || !slices.Equal(hits, want) {
		t.Fatalf("k > n: %d hits, want all %d in exact order", len(hits), n)
	}
	if hits, _ := x.Search(hits, q, 0, SearchOptions{}); len(hits) != 0 {
		t.Fatalf("k = 0: %d hits", len(hits))
	}
	// A zero query scores everything 0: k hits, ties by lower id.
	hits, err = x.Search(hits, make([]float32, d), 5, SearchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != 5 {
		t.Fatalf("zero query: %d hits, want 5", len(hits))
	}
	for _, h := range hits {
		if h.Score != 0 {
			t.Fatalf("zero query scored %v", h.Score)
		}
	}
	if _, err := x.Search(nil, q[:3], 5, SearchOptions{}); !errors.Is(err, ErrDims) {
		t.Fatalf("short query: err = %v, want ErrDims", err)
	}
	nan := slices.Clone(q)
	nan[2] = float32(math.NaN())
	if _, err := x.Search(nil, nan, 5, SearchOptions{}); err == nil {
		t.Fatal("NaN query accepted")
	}
	// One item, and zero vectors in the catalogue.
	one, err := Build(t.Context(), []int32{42}, make([]float32, d), d, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if hits, err := one.Search(nil, q, 3, SearchOptions{}); err != nil || len(hits) != 1 || hits[0] != (Hit{42, 0}) {
		t.Fatalf("one zero item: %v, %v", hits, err)
	}
	zeros, _ := trainedLike(3000, 0, d, 9)
	clear(zeros[:100*d])
	z, err := Build(t.Context(), seqIDs(3000, 0), zeros, d, Config{EfSearch: 16})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := z.Search(nil, q, 10, SearchOptions{})
	exact, _ := z.Exact(nil, q, 10, nil)
	if len(got) != 10 || recall(got, exact) < 0.9 {
		t.Fatalf("catalogue with zero vectors: %v, exact %v", got, exact)
	}
}

func TestBuildRejects(t *testing.T) {
	t.Parallel()
	const d = 4
	v, _ := trainedLike(10, 0, d, 10)
	nan := slices.Clone(v)
	nan[5] = float32(math.Inf(1))
	tests := []struct {
		name string
		ids  []int32
		vecs []float32
		dims int
		cfg  Config
	}{
		{"short vectors", seqIDs(10, 0), v[:36], d, Config{}},
		{"duplicate ids", append(seqIDs(9, 0), 0), v, d, Config{}},
		{"infinite value", seqIDs(10, 0), nan, d, Config{}},
		{"zero dims", nil, nil, 0, Config{}},
		{"M of 1", seqIDs(10, 0), v, d, Config{M: 1}},
		{"negative ef", seqIDs(10, 0), v, d, Config{EfSearch: -1}},
		{"ratio of 1", seqIDs(10, 0), v, d, Config{NormRatio: 1}},
		{"negative workers", seqIDs(10, 0), v, d, Config{Workers: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := Build(t.Context(), tt.ids, tt.vecs, tt.dims, tt.cfg); err == nil {
				t.Fatal("Build succeeded")
			}
		})
	}
}

func TestBuildCancelled(t *testing.T) {
	t.Parallel()
	items, _ := trainedLike(5000, 0, 8, 11)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Build(ctx, seqIDs(5000, 0), items, 8, Config{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestSearchAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's sync.Pool drops items at random")
	}
	// One band of 20,000 is walked, not scanned, at the default ef.
	const n, d = 20_000, 32
	all := clusteredUnit(n+1, d, 100, 1, 12)
	items, qs := all[:n*d], all[n*d:]
	x, err := Build(t.Context(), seqIDs(n, 0), items, d, Config{})
	if err != nil {
		t.Fatal(err)
	}
	dst := make([]Hit, 0, 200)
	seen := map[int32]bool{3: true}
	exclude := func(id int32) bool { return seen[id] }
	dst, _ = x.Search(dst, qs, 200, SearchOptions{Exclude: exclude}) // warm the pool
	allocs := testing.AllocsPerRun(50, func() {
		dst, _ = x.Search(dst, qs, 200, SearchOptions{Exclude: exclude})
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per search, want none", allocs)
	}
}

// BenchmarkSearch measures a top-200 search at the default beam width on
// 50,000 clustered unit vectors of 64 dims: one band, walked.
func BenchmarkSearch(b *testing.B) {
	const n, d = 50_000, 64
	all := clusteredUnit(n+256, d, 500, 1, 13)
	items, qs := all[:n*d], all[n*d:]
	x, err := Build(b.Context(), seqIDs(n, 0), items, d, Config{})
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]Hit, 0, 200)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		dst, _ = x.Search(dst, qs[i*d:(i+1)*d], 200, SearchOptions{})
		i = (i + 1) % 256
	}
}

// BenchmarkBuild measures building 20,000 trained-like vectors of 64 dims
// on GOMAXPROCS workers.
func BenchmarkBuild(b *testing.B) {
	const n, d = 20_000, 64
	items, _ := trainedLike(n, 0, d, 14)
	for b.Loop() {
		if _, err := Build(b.Context(), seqIDs(n, 0), items, d, Config{}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestGraphWalkRecall checks the graphs alone: every band walked with a
// beam, no scans, against the band's exact top k.
func TestGraphWalkRecall(t *testing.T) {
	t.Parallel()
	const n, d, nq, k, ef = 20_000, 32, 100, 50, 80
	trained, trainedQ := trainedLike(n, nq, d, 15)
	unit := clusteredUnit(n+nq, d, 200, 1, 16)
	for _, tt := range []struct {
		name      string
		items, qs []float32
		want      float64
	}{
		{"trained-like", trained, trainedQ, 0.97},
		{"unit clustered", unit[:n*d], unit[n*d:], 0.93},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			x, err := Build(t.Context(), seqIDs(n, 0), tt.items, d, Config{})
			if err != nil {
				t.Fatal(err)
			}
			g := &x.g
			s := newScratch(n)
			var sum float64
			var walks int
			for bi := range g.bands {
				b := &g.bands[bi]
				if b.end-b.start < 4*ef {
					continue
				}
				for i := range nq {
					q := query{vec: tt.qs[i*d : (i+1)*d]}
					g.searchLayer(s, q, g.greedy(q, b, 0), ef, 0, nil, 0)
					exact := topHits{k: k}
					for node := b.start; node < b.end; node++ {
						exact.push(Hit{node, g.score(q, node)})
					}
					walked := topHits{k: k}
					for _, c := range s.beam {
						walked.push(Hit{c.node, c.score})
					}
					sum += recall(walked.sorted(), exact.sorted())
					walks++
				}
			}
			r := sum / float64(walks)
			t.Logf("%d bands, %d walks: recall@%d at ef %d = %.4f", len(g.bands), walks, k, ef, r)
			if r < tt.want {
				t.Fatalf("recall@%d of the walks = %.4f, want >= %.2f", k, r, tt.want)
			}
		})
	}
}
