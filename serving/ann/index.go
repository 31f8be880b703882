package ann

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"

	"github.com/adaptrec/adaptrec/internal/topk"
)

// Defaults of Config, chosen on ALS item embeddings of simulated worlds
// (about 90,000 and 184,000 × 64) and on clustered unit vectors
// (200,000 × 64) for recall@200 ≥ 0.95 well within a 2 ms p99 on two
// cores (docs/adr/016-ann-index.md).
const (
	DefaultM              = 16
	DefaultEfConstruction = 100
	DefaultEfSearch       = 300
	DefaultNormRatio      = 2
)

// Limits of an index; Build refuses and Load rejects anything beyond them.
const (
	MaxDims  = 1024
	MaxItems = 1<<31 - 1
	MaxM     = 128
	MaxEf    = 1 << 16
	// scanFactor decides when a band is scanned instead of walked: a beam
	// of width ef scores about 12·ef nodes of a band, each a cache miss
	// that costs about four sequential dot products, so a band of at most
	// scanFactor·ef items is cheaper to scan, and the scan is exact.
	scanFactor = 48
	// walkBudgetFactor·ef scored nodes is the least a walk through mostly
	// excluded items may score before Search gives up on the graph for an
	// exact scan: well over an ordinary walk's 12·ef.
	walkBudgetFactor = 32
	// minBandItems keeps bands from being too small to be worth a graph
	// of their own; maxBands bounds the bands a search may visit.
	minBandItems = 1000
	maxBands     = 16
	// maxLevels caps the layers; with M ≥ 2 a node reaches layer 15 with
	// probability at most 2^-15, so the cap only bounds the artifact.
	maxLevels = 16
)

// Config configures Build. Zero values mean the documented defaults.
type Config struct {
	// M is the most neighbours a node keeps on the upper layers; layer 0
	// keeps 2·M. More neighbours raise recall at a given EfSearch and cost
	// build time, memory and time per search step. 0 means 16.
	M int
	// EfConstruction is the beam width while inserting; a wider beam
	// finds better neighbours and builds a better graph, at a build time
	// roughly proportional to it. 0 means 100.
	EfConstruction int
	// EfSearch is the default beam width of a search, stored with the
	// index; a search uses at least k. 0 means 300.
	EfSearch int
	// NormRatio bounds the ratio of the largest to the smallest norm in a
	// band: items are split by norm into bands, largest first, each with
	// its own graph and its own MIPS-to-L2 reduction, and one search walks
	// all of them. Smaller ratios give more bands that each reduce more
	// faithfully. 0 means 2; vectors of equal norms make one band whatever
	// the ratio.
	NormRatio float64
	// Seed fixes the layer of every node and with it the whole graph: the
	// same seed, vectors and parameters give the same index whatever
	// Workers is.
	Seed uint64
	// Workers is the number of goroutines inserting; 0 means GOMAXPROCS.
	Workers int
}

func (c Config) withDefaults() Config {
	if c.M == 0 {
		c.M = DefaultM
	}
	if c.EfConstruction == 0 {
		c.EfConstruction = DefaultEfConstruction
	}
	if c.EfSearch == 0 {
		c.EfSearch = DefaultEfSearch
	}
	if c.NormRatio == 0 {
		c.NormRatio = DefaultNormRatio
	}
	if c.Workers == 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	return c
}

// Validate reports every configuration value out of range, after defaults
// are applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.M < 2 || c.M > MaxM {
		errs = append(errs, fmt.Errorf("ann: M %d, want 2..%d", c.M, MaxM))
	}
	if c.EfConstruction < 1 || c.EfConstruction > MaxEf {
		errs = append(errs, fmt.Errorf("ann: efConstruction %d, want 1..%d", c.EfConstruction, MaxEf))
	}
	if c.EfSearch < 1 || c.EfSearch > MaxEf {
		errs = append(errs, fmt.Errorf("ann: efSearch %d, want 1..%d", c.EfSearch, MaxEf))
	}
	if !(c.NormRatio > 1) || math.IsInf(c.NormRatio, 0) {
		errs = append(errs, fmt.Errorf("ann: norm ratio %v, want a finite value > 1", c.NormRatio))
	}
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("ann: workers %d, want at least 1", c.Workers))
	}
	return errors.Join(errs...)
}

// Index is an approximate maximum-inner-product index over item vectors.
// Items are split by norm into bands; each band is an HNSW graph built on
// its vectors after the MIPS-to-L2 reduction. A search visits the bands
// from the largest norms down, scanning the small ones and walking the
// others with a beam, until the rest cannot beat the k-th hit. It is
// immutable once built and safe for concurrent searches; serving replaces
// a whole index, never changes one.
type Index struct {
	g graph
	// ids[node] is the id of the item at node; nodes run in descending
	// norm.
	ids      []int32
	pos      map[int32]int32 // id → node
	efc      int
	efSearch int
	ratio    float64
	seed     uint64

	pool sync.Pool // *scratch
}

// Hit is one search result: an item id and its inner product with the
// query.
type Hit struct {
	ID    int32
	Score float32
}

// Build builds an index over the vectors (len(ids)×dims values, row i for
// ids[i]); ids must be distinct. An empty index (no ids) is valid and finds
// nothing. Build uses cfg.Workers cores and stops early when ctx is done.
func Build(ctx context.Context, ids []int32, vectors []float32, dims int, cfg Config) (*Index, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	n := len(ids)
	switch {
	case dims < 1 || dims > MaxDims:
		return nil, fmt.Errorf("ann: dims %d, want 1..%d", dims, MaxDims)
	case n > MaxItems:
		return nil, fmt.Errorf("ann: %d items, want at most %d", n, MaxItems)
	case len(vectors) != n*dims:
		return nil, fmt.Errorf("ann: %d items × %d dims need %d values, got %d", n, dims, n*dims, len(vectors))
	}
	if i := firstNonFinite(vectors); i >= 0 {
		return nil, fmt.Errorf("ann: item %d vector value %d is %v", ids[i/dims], i%dims, vectors[i])
	}

	// Nodes in descending norm (ties in input order), so bands are runs.
	norms := make([]float64, n)
	for i := range norms {
		norms[i] = norm2(vectors[i*dims : (i+1)*dims])
	}
	order := make([]int32, n)
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(a, b int32) int { return cmp.Compare(norms[b], norms[a]) })
	x := &Index{
		g: graph{
			n: n, dims: dims, m: cfg.M, m0: 2 * cfg.M,
			vecs:   make([]float32, n*dims),
			levels: make([]uint8, n),
			links0: make([]int32, n*(2*cfg.M+1)),
			upper:  make([][]int32, n),
		},
		ids:      make([]int32, n),
		efc:      cfg.EfConstruction,
		efSearch: cfg.EfSearch,
		ratio:    cfg.NormRatio,
		seed:     cfg.Seed,
	}
	sorted := make([]float64, n)
	for node, i := range order {
		x.ids[node] = ids[i]
		copy(x.g.vecs[node*dims:(node+1)*dims], vectors[int(i)*dims:int(i+1)*dims])
		sorted[node] = norms[i]
	}
	if err := x.index(); err != nil {
		return nil, err
	}
	if n == 0 {
		return x, nil
	}
	x.g.bands = partition(sorted, cfg.NormRatio)
	x.g.aux = reduction(sorted, x.g.bands)
	assignLevels(x.g.levels, cfg.M, cfg.Seed)
	for i, l := range x.g.levels {
		if l > 0 {
			x.g.upper[i] = make([]int32, int(l)*(cfg.M+1))
		}
	}
	if err := build(ctx, &x.g, cfg.EfConstruction, cfg.Workers); err != nil {
		return nil, err
	}
	return x, nil
}

// norm2 returns the squared norm of v, in float64.
func norm2(v []float32) float64 {
	var s float64
	for _, f := range v {
		s += float64(f) * float64(f)
	}
	return s
}

// partition splits nodes of descending squared norms into bands: a band
// ends where the norm falls below its largest divided by ratio, once it
// holds minBandItems nodes; the last of maxBands bands takes the rest.
func partition(norms2 []float64, ratio float64) []band {
	r2 := ratio * ratio
	var bands []band
	start := 0
	for i := 1; i < len(norms2); i++ {
		if norms2[i]*r2 < norms2[start] && i-start >= minBandItems && len(bands) < maxBands-1 {
			bands = append(bands, band{start: int32(start), end: int32(i)})
			start = i
		}
	}
	bands = append(bands, band{start: int32(start), end: int32(len(norms2))})
	for i := range bands {
		bands[i].maxNorm = float32(math.Sqrt(norms2[bands[i].start]))
	}
	return bands
}

// reduction returns every node's extra coordinate of the MIPS-to-L2
// reduction (Bachrach et al. 2014) within its band: appending
// √(R² − ‖x‖²), R the band's largest norm, puts the band's items on a
// sphere of radius R, and a query extended with 0 then has
// ‖q − x‖² = ‖q‖² + R² − 2·q·x, so the nearest items in L2 are exactly the
// items of largest inner product. Over a whole catalogue of trained
// embeddings, whose norms span two orders of magnitude, the extra
// coordinate would swamp the directions of all but the largest items
// (recall@200 ≈ 0.2 on ALS factors): bands keep it in proportion.
func reduction(norms2 []float64, bands []band) []float32 {
	aux := make([]float32, len(norms2))
	for _, b := range bands {
		r2 := norms2[b.start]
		for i := b.start; i < b.end; i++ {
			aux[i] = float32(math.Sqrt(math.Max(r2-norms2[i], 0)))
		}
	}
	return aux
}

// index fills the id lookup and checks the ids are distinct.
func (x *Index) index() error {
	x.pos = make(map[int32]int32, len(x.ids))
	for node, id := range x.ids {
		if prev, dup := x.pos[id]; dup {
			return fmt.Errorf("ann: id %d appears twice (items %d and %d)", id, prev, node)
		}
		x.pos[id] = int32(node)
	}
	n := len(x.ids)
	x.pool.New = func() any { return newScratch(n) }
	return nil
}

// Len returns the number of items.
func (x *Index) Len() int { return x.g.n }

// Dims returns the vector dimension.
func (x *Index) Dims() int { return x.g.dims }

// M returns the graph's neighbours per node on the upper layers.
func (x *Index) M() int { return x.g.m }

// EfConstruction returns the beam width the index was built with.
func (x *Index) EfConstruction() int { return x.efc }

// EfSearch returns the default beam width of a search.
func (x *Index) EfSearch() int { return x.efSearch }

// NormRatio returns the largest ratio of norms within a band.
func (x *Index) NormRatio() float64 { return x.ratio }

// Bands returns the number of norm bands (0 for an empty index).
func (x *Index) Bands() int { return len(x.g.bands) }

// Vector returns the vector of the item with id (a view, not a copy).
func (x *Index) Vector(id int32) ([]float32, bool) {
	i, ok := x.pos[id]
	if !ok {
		return nil, false
	}
	return x.g.vec(i), true
}

// SearchOptions tunes one search.
type SearchOptions struct {
	// Ef is the beam width; 0 means the index's EfSearch. A search uses
	// at least k. Wider finds more of the true top k and takes longer.
	Ef int
	// Exclude, if set, drops the items (by id) it returns true for, for
	// example what the user already saw. Excluded items are still walked
	// through, so they never cut the graph; it is called from the
	// searching goroutine and must be safe for concurrent use if searches
	// run concurrently.
	Exclude func(id int32) bool
}

// ErrDims is returned by Search for a query whose length is not Dims.
var ErrDims = errors.New("ann: query length differs from the index dimension")

// Search appends to dst[:0] up to k items of highest inner product with q,
// best first (ties by lower id), and returns it. It returns fewer than k
// only when fewer than k items are not excluded: if the graph search comes
// back short (heavy exclusion, or k close to the catalogue size) the
// search falls back to an exact scan. A zero query scores every item 0 and
// returns k of them.
func (x *Index) Search(dst []Hit, q []float32, k int, opt SearchOptions) ([]Hit, error) {
	dst = dst[:0]
	if len(q) != x.g.dims {
		return dst, fmt.Errorf("%w: %d values, want %d", ErrDims, len(q), x.g.dims)
	}
	if i := firstNonFinite(q); i >= 0 {
		return dst, fmt.Errorf("ann: query value %d is %v", i, q[i])
	}
	if k <= 0 || x.g.n == 0 {
		return dst, nil
	}
	ef := opt.Ef
	if ef <= 0 {
		ef = x.efSearch
	}
	ef = max(ef, k)
	s := x.pool.Get().(*scratch)
	defer x.pool.Put(s)
	if ef >= x.g.n {
		return x.exact(s, dst, q, k, opt.Exclude), nil
	}
	var keep func(int32) bool
	if ex := opt.Exclude; ex != nil {
		keep = func(node int32) bool { return !ex(x.ids[node]) }
	}
	g := &x.g
	qq := query{vec: q}
	qn := float32(math.Sqrt(norm2(q)))
	top := topk.New(s.top, k)
	walked := false
	for i := range g.bands {
		b := &g.bands[i]
		// Cauchy–Schwarz: no item of this band or a later one scores
		// above ‖q‖·maxNorm, so once that cannot beat the k-th hit the
		// search is done.
		if top.Full() && qn*b.maxNorm <= top.Worst().Score {
			break
		}
		if int(b.end-b.start) <= scanFactor*ef {
			for node := b.start; node < b.end; node++ {
				top.PushUnless(topk.Hit{ID: x.ids[node], Score: dot(q, g.vec(node))}, opt.Exclude)
			}
			continue
		}
		// The first band walked holds most of any top k; a later one only
		// adds the few items that beat the k-th hit so far, which half
		// the beam finds as well (the same recall on ALS embeddings, a
		// sixth less time).
		width := ef
		if walked {
			width = max(k, ef/2)
		}
		walked = true
		budget := 0
		if keep != nil {
			// A scored node costs about four sequential dot products, so
			// past a quarter of the band an exact scan is the cheaper
			// way to find k items Exclude allows.
			budget = max(int(b.end-b.start)/4, walkBudgetFactor*width)
		}
		if !g.searchLayer(s, qq, g.greedy(qq, b, 0), width, 0, keep, budget) {
			return x.exact(s, dst, q, k, opt.Exclude), nil
		}
		for _, c := range s.beam {
			top.Push(topk.Hit{ID: x.ids[c.node], Score: c.score})
		}
	}
	if top.Len() < k {
		// The beams met fewer than k items they may return: exclusions
		// cut the walks short or the catalogue is barely larger than k.
		// Exact is slower but never returns short.
		return x.exact(s, dst, q, k, opt.Exclude), nil
	}
	return s.hits(dst, &top), nil
}

// Exact appends to dst[:0] the true top k items by inner product with q,
// scanning every vector, best first (ties by lower id). It is the ground
// truth for Search.
func (x *Index) Exact(dst []Hit, q []float32, k int, exclude func(id int32) bool) ([]Hit, error) {
	dst = dst[:0]
	if len(q) != x.g.dims {
		return dst, fmt.Errorf("%w: %d values, want %d", ErrDims, len(q), x.g.dims)
	}
	if i := firstNonFinite(q); i >= 0 {
		return dst, fmt.Errorf("ann: query value %d is %v", i, q[i])
	}
	if k <= 0 || x.g.n == 0 {
		return dst, nil
	}
	s := x.pool.Get().(*scratch)
	defer x.pool.Put(s)
	return x.exact(s, dst, q, k, exclude), nil
}

func (x *Index) exact(s *scratch, dst []Hit, q []float32, k int, exclude func(id int32) bool) []Hit {
	h := topk.New(s.top, k)
	for i, id := range x.ids {
		h.PushUnless(topk.Hit{ID: id, Score: dot(q, x.g.vec(int32(i)))}, exclude)
	}
	return s.hits(dst, &h)
}
