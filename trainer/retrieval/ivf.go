package retrieval

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"

	"github.com/adaptrec/adaptrec/internal/topk"
)

// Defaults of IndexConfig.
const (
	DefaultNProbe        = 8
	DefaultKMeansIters   = 20
	DefaultPointsPerList = 64
)

// Limits of an index; Load refuses artifacts beyond them.
const (
	maxLists      = 1 << 16
	maxIDLen      = 1 << 12
	maxIndexItems = 1<<31 - 1
)

// IndexConfig configures BuildIndex. Zero values mean the documented
// defaults.
type IndexConfig struct {
	// Lists is the number of inverted lists (k-means clusters); 0 means
	// round(2·√items), at most items/8 and at least 1.
	Lists int
	// NProbe is the default number of lists a search scans, stored in the
	// artifact; 0 means 8.
	NProbe int
	// Iterations is the number of k-means iterations; 0 means 20.
	Iterations int
	// PointsPerList bounds the k-means training sample to PointsPerList ×
	// Lists vectors drawn at random (every item is still assigned); 0
	// means 64.
	PointsPerList int
	// Seed fixes the k-means sample and initial centroids.
	Seed uint64
	// Workers is the number of goroutines assigning vectors; 0 means
	// GOMAXPROCS.
	Workers int
	// Regularization and Alpha, when set, are the ALS values the vectors
	// were trained with; they travel in the artifact so Index.Embedder can
	// fold users in at serving time. Model.BuildIndex sets them.
	Regularization float64
	Alpha          float64
}

func (c IndexConfig) withDefaults(items int) IndexConfig {
	if c.Lists == 0 {
		// √items lists balance centroid scoring against list scans; twice
		// that halves the scan at the same recall on clustered data, and
		// lists shorter than 8 items gain nothing.
		c.Lists = int(math.Round(2 * math.Sqrt(float64(items))))
		c.Lists = max(1, min(c.Lists, items/8, maxLists))
	}
	if c.NProbe == 0 {
		c.NProbe = DefaultNProbe
	}
	if c.Iterations == 0 {
		c.Iterations = DefaultKMeansIters
	}
	if c.PointsPerList == 0 {
		c.PointsPerList = DefaultPointsPerList
	}
	if c.Workers == 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	return c
}

// Index is an IVF-Flat index for maximum-inner-product search: items are
// clustered by k-means into lists; a query scores the list centroids, scans
// the best lists exhaustively and returns the top items by inner product.
// Vectors are stored list after list so a scan reads memory in order. An
// Index is immutable and safe for concurrent use.
type Index struct {
	dims      int
	ids       []string
	pos       map[string]int32 // id → item
	centroids []float32        // lists×dims
	listOff   []int32          // list l holds positions listOff[l]..listOff[l+1]-1
	order     []int32          // position → item
	place     []int32          // item → position
	vectors   []float32        // positions×dims
	nprobe    int
	reg       float64
	alpha     float64

	scratch sync.Pool
	embOnce sync.Once
	emb     *Embedder
	embErr  error
}

// Hit is one search result: an item (an index into the index's ids, in
// the order they were given) and its inner product with the query.
type Hit struct {
	Item  int32
	Score float32
}

// BuildIndex builds an index over the item vectors (len(ids)×dims, row i
// for ids[i]). ids must be distinct and non-empty.
func BuildIndex(ctx context.Context, ids []string, vectors []float32, dims int, cfg IndexConfig) (*Index, error) {
	n := len(ids)
	switch {
	case dims < 1 || dims > MaxDims:
		return nil, fmt.Errorf("retrieval: index dims %d, want 1..%d", dims, MaxDims)
	case n < 1 || n > maxIndexItems:
		return nil, fmt.Errorf("retrieval: index of %d items, want 1..%d", n, maxIndexItems)
	case len(vectors) != n*dims:
		return nil, fmt.Errorf("retrieval: index of %d items × %d dims needs %d values, got %d", n, dims, n*dims, len(vectors))
	}
	cfg = cfg.withDefaults(n)
	switch {
	case cfg.Lists < 1 || cfg.Lists > min(n, maxLists):
		return nil, fmt.Errorf("retrieval: index lists %d, want 1..%d", cfg.Lists, min(n, maxLists))
	case cfg.NProbe < 1:
		return nil, fmt.Errorf("retrieval: index nprobe %d, want at least 1", cfg.NProbe)
	case cfg.Iterations < 1 || cfg.PointsPerList < 1 || cfg.Workers < 1:
		return nil, fmt.Errorf("retrieval: index iterations %d, points per list %d, workers %d: want each at least 1", cfg.Iterations, cfg.PointsPerList, cfg.Workers)
	case cfg.Regularization < 0 || cfg.Alpha < 0 || math.IsInf(cfg.Regularization, 0) || math.IsInf(cfg.Alpha, 0) ||
		math.IsNaN(cfg.Regularization) || math.IsNaN(cfg.Alpha):
		return nil, fmt.Errorf("retrieval: index fold-in regularization %v, alpha %v: want finite values >= 0", cfg.Regularization, cfg.Alpha)
	}
	if i := firstNonFinite(vectors); i >= 0 {
		return nil, fmt.Errorf("retrieval: item %q vector value %d is %v", ids[i/dims], i%dims, vectors[i])
	}

	// Train k-means on a sample, then assign every item.
	sample := vectors
	if limit := cfg.PointsPerList * cfg.Lists; n > limit {
		perm := randPerm(n, cfg.Seed)[:limit]
		slices.Sort(perm)
		sample = make([]float32, 0, limit*dims)
		for _, p := range perm {
			sample = append(sample, vectors[p*dims:(p+1)*dims]...)
		}
	}
	cent, err := kmeans(ctx, sample, dims, cfg.Lists, cfg.Iterations, cfg.Seed, cfg.Workers)
	if err != nil {
		return nil, err
	}
	assign := make([]int32, n)
	if err := assignNearest(ctx, vectors, cent, dims, assign, cfg.Workers); err != nil {
		return nil, err
	}
	listOff := make([]int32, cfg.Lists+1)
	for _, l := range assign {
		listOff[l+1]++
	}
	for l := 0; l < cfg.Lists; l++ {
		listOff[l+1] += listOff[l]
	}
	order := make([]int32, n)
	next := slices.Clone(listOff[:cfg.Lists])
	for item, l := range assign {
		order[next[l]] = int32(item)
		next[l]++
	}
	vecs := make([]float32, n*dims)
	for p, item := range order {
		copy(vecs[p*dims:(p+1)*dims], vectors[int(item)*dims:int(item+1)*dims])
	}
	return newIndex(dims, slices.Clone(ids), cent, listOff, order, vecs, cfg.NProbe, cfg.Regularization, cfg.Alpha)
}

// BuildIndex builds the item index of the model's item factors with the
// model's fold-in parameters; ids[i] names item i.
func (m *Model) BuildIndex(ctx context.Context, ids []string, cfg IndexConfig) (*Index, error) {
	if len(ids) != m.Items {
		return nil, fmt.Errorf("retrieval: %d ids for a model of %d items", len(ids), m.Items)
	}
	cfg.Regularization, cfg.Alpha = m.Regularization, m.Alpha
	return BuildIndex(ctx, ids, m.ItemFactors, m.Dims, cfg)
}

// newIndex checks the invariants Search relies on (and a loaded artifact
// must meet) and derives the lookup tables.
func newIndex(dims int, ids []string, cent []float32, listOff, order []int32, vecs []float32, nprobe int, reg, alpha float64) (*Index, error) {
	n, lists := len(ids), len(listOff)-1
	switch {
	case lists < 1 || len(cent) != lists*dims:
		return nil, fmt.Errorf("%d centroid values for %d lists of %d dims", len(cent), lists, dims)
	case len(order) != n || len(vecs) != n*dims:
		return nil, fmt.Errorf("%d positions and %d vector values for %d items", len(order), len(vecs), n)
	case listOff[0] != 0 || int(listOff[lists]) != n:
		return nil, fmt.Errorf("list offsets run %d..%d, want 0..%d", listOff[0], listOff[lists], n)
	case nprobe < 1:
		return nil, fmt.Errorf("nprobe %d", nprobe)
	}
	for l := 0; l < lists; l++ {
		if listOff[l+1] < listOff[l] {
			return nil, fmt.Errorf("list %d offsets decrease (%d, %d)", l, listOff[l], listOff[l+1])
		}
	}
	x := &Index{
		dims: dims, ids: ids, pos: make(map[string]int32, n),
		centroids: cent, listOff: listOff, order: order, place: make([]int32, n), vectors: vecs,
		nprobe: nprobe, reg: reg, alpha: alpha,
	}
	for i := range x.place {
		x.place[i] = -1
	}
	for p, item := range order {
		if item < 0 || int(item) >= n || x.place[item] >= 0 {
			return nil, fmt.Errorf("position %d holds item %d: not a permutation of 0..%d", p, item, n-1)
		}
		x.place[item] = int32(p)
	}
	for i, id := range ids {
		if id == "" || len(id) > maxIDLen {
			return nil, fmt.Errorf("item %d id has %d bytes, want 1..%d", i, len(id), maxIDLen)
		}
		if prev, dup := x.pos[id]; dup {
			return nil, fmt.Errorf("items %d and %d share id %q", prev, i, id)
		}
		x.pos[id] = int32(i)
	}
	if i := firstNonFinite(cent); i >= 0 {
		return nil, fmt.Errorf("centroid %d value %d is %v", i/dims, i%dims, cent[i])
	}
	if i := firstNonFinite(vecs); i >= 0 {
		return nil, fmt.Errorf("item %q vector value %d is %v", ids[order[i/dims]], i%dims, vecs[i])
	}
	x.scratch.New = func() any { return &searchScratch{listScores: make([]listScore, lists)} }
	return x, nil
}

// Len returns the number of items.
func (x *Index) Len() int { return len(x.ids) }

// Dims returns the vector dimension.
func (x *Index) Dims() int { return x.dims }

// Lists returns the number of inverted lists.
func (x *Index) Lists() int { return len(x.listOff) - 1 }

// NProbe returns the default number of lists a search scans.
func (x *Index) NProbe() int { return x.nprobe }

// ID returns item i's id.
func (x *Index) ID(item int32) string { return x.ids[item] }

// Lookup returns the item with id.
func (x *Index) Lookup(id string) (int32, bool) {
	i, ok := x.pos[id]
	return i, ok
}

// Vector returns item i's vector (a view, not a copy).
func (x *Index) Vector(item int32) []float32 {
	p := int(x.place[item])
	return x.vectors[p*x.dims : (p+1)*x.dims]
}

// ErrNoFoldIn is returned by Embedder for an index built without ALS
// fold-in parameters.
var ErrNoFoldIn = errors.New("retrieval: index has no fold-in parameters (built without regularization and alpha)")

// Embedder returns the fold-in embedder over the index's vectors, so a
// serving process needs only the artifact to embed users from their recent
// items. Item arguments of Embed are the index's items. Built once, on
// first use.
func (x *Index) Embedder() (*Embedder, error) {
	x.embOnce.Do(func() {
		if !(x.reg > 0 && x.alpha > 0) {
			x.embErr = ErrNoFoldIn
			return
		}
		// Item order, not list order, so Embed takes item numbers.
		f := make([]float32, len(x.vectors))
		for item, p := range x.place {
			copy(f[item*x.dims:(item+1)*x.dims], x.vectors[int(p)*x.dims:int(p+1)*x.dims])
		}
		x.emb, x.embErr = NewEmbedder(f, x.dims, x.reg, x.alpha)
	})
	return x.emb, x.embErr
}

// SearchOptions tunes one search.
type SearchOptions struct {
	// NProbe is the least number of lists to scan; 0 means the index's
	// default. The search scans further lists, best first, until it has
	// seen at least k items that are not excluded, so a small catalogue or
	// a large k never returns short.
	NProbe int
	// Exclude, if set, drops the items it returns true for (for example
	// what the user already saw).
	Exclude func(item int32) bool
}

type listScore struct {
	list  int32
	score float32
}

type searchScratch struct {
	listScores []listScore
	// top holds the top-k heap; the hits are copied out to the caller's
	// slice at the end (internal/topk has its own Hit type).
	top []topk.Hit
}

// hits appends the heap's hits to dst[:0], best first, and keeps the
// heap's storage for the next search.
func (sc *searchScratch) hits(dst []Hit, h *topk.Heap) []Hit {
	sorted := h.Sorted()
	dst = dst[:0]
	for _, x := range sorted {
		dst = append(dst, Hit{Item: x.ID, Score: x.Score})
	}
	sc.top = sorted[:0]
	return dst
}

// Search appends to dst[:0] the top k items by inner product with q among
// the probed lists, best first (ties by lower item), and returns it. q must
// hold Dims values.
func (x *Index) Search(dst []Hit, q []float32, k int, opt SearchOptions) []Hit {
	dst = dst[:0]
	if k <= 0 {
		return dst
	}
	q = q[:x.dims]
	nprobe := opt.NProbe
	if nprobe <= 0 {
		nprobe = x.nprobe
	}
	lists := x.Lists()
	sc := x.scratch.Get().(*searchScratch)
	defer x.scratch.Put(sc)
	ls := sc.listScores[:lists]
	for l := range ls {
		ls[l] = listScore{int32(l), dot(q, x.centroids[l*x.dims:(l+1)*x.dims])}
	}
	better := func(a, b listScore) int {
		switch {
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		}
		return int(a.list) - int(b.list)
	}
	probe := min(nprobe, lists)
	if probe < lists {
		selectTop(ls, probe, better)
	}
	slices.SortFunc(ls[:probe], better)

	h := topk.New(sc.top, k)
	seen := 0
	for i := 0; i < lists; i++ {
		if i >= probe {
			if seen >= k {
				break
			}
			if i == probe {
				// The probed lists held fewer than k items: order the
				// rest and go on, a list at a time, until k are seen.
				slices.SortFunc(ls[probe:], better)
			}
		}
		l := ls[i].list
		for p := x.listOff[l]; p < x.listOff[l+1]; p++ {
			item := x.order[p]
			if opt.Exclude != nil && opt.Exclude(item) {
				continue
			}
			seen++
			h.Push(topk.Hit{ID: item, Score: dot(q, x.vectors[int(p)*x.dims:int(p+1)*x.dims])})
		}
	}
	return sc.hits(dst, &h)
}

// Exact appends to dst[:0] the true top k items by inner product with q,
// scanning every vector, best first (ties by lower item). It is the ground
// truth for Search. q must hold Dims values.
func (x *Index) Exact(dst []Hit, q []float32, k int, exclude func(item int32) bool) []Hit {
	dst = dst[:0]
	if k <= 0 {
		return dst
	}
	q = q[:x.dims]
	sc := x.scratch.Get().(*searchScratch)
	defer x.scratch.Put(sc)
	h := topk.New(sc.top, k)
	for p, item := range x.order {
		if exclude != nil && exclude(item) {
			continue
		}
		h.Push(topk.Hit{ID: item, Score: dot(q, x.vectors[p*x.dims:(p+1)*x.dims])})
	}
	return sc.hits(dst, &h)
}

// selectTop moves the k best elements (by cmp, best first) of s to s[:k]
// in no particular order, by quickselect with a deterministic pivot.
func selectTop(s []listScore, k int, cmp func(a, b listScore) int) {
	lo, hi := 0, len(s)-1
	for lo < hi {
		// Median of three for a pivot.
		mid := lo + (hi-lo)/2
		if cmp(s[mid], s[lo]) < 0 {
			s[mid], s[lo] = s[lo], s[mid]
		}
		if cmp(s[hi], s[lo]) < 0 {
			s[hi], s[lo] = s[lo], s[hi]
		}
		if cmp(s[hi], s[mid]) < 0 {
			s[hi], s[mid] = s[mid], s[hi]
		}
		pivot := s[mid]
		i, j := lo, hi
		for i <= j {
			for cmp(s[i], pivot) < 0 {
				i++
			}
			for cmp(pivot, s[j]) < 0 {
				j--
			}
			if i <= j {
				s[i], s[j] = s[j], s[i]
				i++
				j--
			}
		}
		switch {
		case k-1 <= j:
			hi = j
		case k-1 >= i:
			lo = i
		default:
			return
		}
	}
}

// firstNonFinite returns the index of the first NaN or infinite value, or -1.
func firstNonFinite(v []float32) int {
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return i
		}
	}
	return -1
}
