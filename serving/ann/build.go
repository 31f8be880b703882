package ann

import (
	"cmp"
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
)

// Deterministic parallel insertion. A band's nodes are inserted in order,
// in batches: every node of a batch searches the graph as it stood before
// the batch (read only, so the batch's searches run in parallel), writes
// its own links, and then the reverse links the batch asks for are merged
// target by target, each target's requests in node order. Nothing depends
// on which worker did what, so the graph is the same for any number of
// workers. The price is that two nodes of one batch do not see each other
// while they choose neighbours; a batch is at most 1/batchShare of the
// graph, which costs no recall we could measure (docs/adr/016), and the
// first seqNodes nodes of a band, where the graph is too small to share,
// go in one at a time.
const (
	seqNodes   = 1024
	batchShare = 64
)

// assignLevels draws every node's top layer from the paper's geometric law
// with mL = 1/ln(M), from a stream fixed by seed.
func assignLevels(levels []uint8, m int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x6e6e5f6c6576656c))
	ml := 1 / math.Log(float64(m))
	for i := range levels {
		u := 1 - rng.Float64() // (0, 1]
		l := int(-math.Log(u) * ml)
		levels[i] = uint8(min(l, maxLevels-1))
	}
}

// linkRequest asks that src be added to target's neighbours on level.
type linkRequest struct {
	target, src int32
	level       int32
}

// builder holds what the insertion of every band shares.
type builder struct {
	g         *graph
	efc       int
	workers   int
	scratches []*scratch
	reqs      []linkRequest
	groups    []int // start of each (level, target) group in reqs
}

// build inserts every node of every band into g.
func build(ctx context.Context, g *graph, efc, workers int) error {
	bl := &builder{g: g, efc: efc, workers: workers, scratches: make([]*scratch, workers)}
	for w := range bl.scratches {
		bl.scratches[w] = newScratch(g.n)
	}
	for i := range g.bands {
		if err := bl.band(ctx, &g.bands[i]); err != nil {
			return err
		}
	}
	return nil
}

func (bl *builder) band(ctx context.Context, b *band) error {
	g := bl.g
	b.entry, b.maxLevel = b.start, int(g.levels[b.start])
	for lo := int(b.start) + 1; lo < int(b.end); {
		if err := ctx.Err(); err != nil {
			return err
		}
		size := 1
		if done := lo - int(b.start); done >= seqNodes {
			size = max(1, done/batchShare)
		}
		hi := min(int(b.end), lo+size)

		// 1. Every new node finds and writes its own links, reading only
		// the graph of the band's nodes before lo.
		if err := parallel(ctx, lo, hi, bl.workers, func(w, node int) {
			g.insertLinks(bl.scratches[w], b, int32(node), bl.efc)
		}); err != nil {
			return err
		}

		// 2. Reverse links, grouped by (level, target), requests in node
		// order within a group.
		reqs := bl.reqs[:0]
		for node := lo; node < hi; node++ {
			for l := min(int(g.levels[node]), b.maxLevel); l >= 0; l-- {
				for _, nb := range g.neighbours(int32(node), l) {
					reqs = append(reqs, linkRequest{target: nb, src: int32(node), level: int32(l)})
				}
			}
		}
		slices.SortFunc(reqs, func(a, b linkRequest) int {
			return cmp.Or(cmp.Compare(a.level, b.level), cmp.Compare(a.target, b.target), cmp.Compare(a.src, b.src))
		})
		groups := bl.groups[:0]
		for i := range reqs {
			if i == 0 || reqs[i].target != reqs[i-1].target || reqs[i].level != reqs[i-1].level {
				groups = append(groups, i)
			}
		}
		groups = append(groups, len(reqs))
		bl.reqs, bl.groups = reqs, groups
		if err := parallel(ctx, 0, len(groups)-1, bl.workers, func(w, gi int) {
			rs := reqs[groups[gi]:groups[gi+1]]
			g.addReverse(bl.scratches[w], rs[0].target, int(rs[0].level), rs)
		}); err != nil {
			return err
		}

		// 3. The first new node on a new top layer becomes the entry.
		for node := lo; node < hi; node++ {
			if l := int(g.levels[node]); l > b.maxLevel {
				b.entry, b.maxLevel = int32(node), l
			}
		}
		lo = hi
	}
	return nil
}

// insertLinks chooses node's neighbours among the nodes of band b already
// in the graph, on each of node's layers that exist, and writes them into
// node's own blocks.
func (g *graph) insertLinks(s *scratch, b *band, node int32, efc int) {
	q := g.nodeQuery(node)
	top := min(int(g.levels[node]), b.maxLevel)
	ep := g.greedy(q, b, top)
	for l := top; l >= 0; l-- {
		g.searchLayer(s, q, ep, efc, l, nil, 0)
		s.beam.sortBestFirst()
		ep = s.beam[0]
		blk := g.block(node, l)
		sel := g.selectNeighbours(blk[1:1], s.beam, g.m)
		blk[0] = int32(len(sel))
	}
}

// addReverse adds the requests' sources to target's neighbours on level,
// pruning with the selection heuristic when the block overflows.
func (g *graph) addReverse(s *scratch, target int32, level int, rs []linkRequest) {
	blk := g.block(target, level)
	have, capa := int(blk[0]), g.capacity(level)
	if have+len(rs) <= capa {
		for i, r := range rs {
			blk[1+have+i] = r.src
		}
		blk[0] = int32(have + len(rs))
		return
	}
	q := g.nodeQuery(target)
	s.sel = s.sel[:0]
	for _, nb := range blk[1 : 1+have] {
		s.sel = append(s.sel, cand{g.score(q, nb), nb})
	}
	for _, r := range rs {
		s.sel = append(s.sel, cand{g.score(q, r.src), r.src})
	}
	slices.SortFunc(s.sel, compareCands)
	sel := g.selectNeighbours(blk[1:1], s.sel, capa)
	blk[0] = int32(len(sel))
}

func compareCands(a, b cand) int {
	switch {
	case above(a, b):
		return -1
	case above(b, a):
		return 1
	}
	return 0
}

// parallel calls fn(worker, i) for every i in [lo, hi) on up to workers
// goroutines and returns ctx's error if it was cancelled meanwhile.
func parallel(ctx context.Context, lo, hi, workers int, fn func(worker, i int)) error {
	n := hi - lo
	if n <= 0 {
		return ctx.Err()
	}
	if n == 1 || workers == 1 {
		for i := lo; i < hi; i++ {
			if i&255 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			fn(0, i)
		}
		return ctx.Err()
	}
	var next atomic.Int64
	next.Store(int64(lo))
	var wg sync.WaitGroup
	for w := range min(workers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= hi || (i&255 == 0 && ctx.Err() != nil) {
					return
				}
				fn(w, i)
			}
		})
	}
	wg.Wait()
	return ctx.Err()
}
