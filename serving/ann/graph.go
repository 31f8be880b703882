package ann

// The graph is a hierarchical navigable small world (Malkov and Yashunin,
// 2016) per norm band: every node lives on layer 0 of its band's graph and,
// with probability 1/M per step, on the layers above; a search descends
// greedily through the band's sparse upper layers to an entry point and
// then runs a best-first beam search of width ef on layer 0. Scores are
// similarities (higher is closer), never distances, so no sign flips hide
// in the code.

import "github.com/adaptrec/adaptrec/internal/topk"

// cand is a node with its score against the current query.
type cand struct {
	score float32
	node  int32
}

// above reports whether a ranks above b: a higher score, ties to the lower
// node so that results never depend on the order nodes were met.
func above(a, b cand) bool {
	return a.score > b.score || (a.score == b.score && a.node < b.node)
}

// bestHeap pops the best candidate first: the search frontier.
type bestHeap []cand

func (h *bestHeap) push(c cand) {
	*h = append(*h, c)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !above(s[i], s[p]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *bestHeap) pop() cand {
	s := *h
	top := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s = s[:n]
	*h = s
	i := 0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && above(s[r], s[l]) {
			m = r
		}
		if !above(s[m], s[i]) {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	return top
}

// worstHeap keeps the worst of the kept results at its root: the beam.
type worstHeap []cand

func (h *worstHeap) push(c cand) {
	*h = append(*h, c)
	s := *h
	i := len(s) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !above(s[p], s[i]) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

// pop removes the worst kept result.
func (h *worstHeap) pop() {
	s := *h
	n := len(s) - 1
	s[0] = s[n]
	*h = s[:n]
	s[:n].down(0, n)
}

// replaceTop swaps the worst kept result for c and restores the heap.
func (h worstHeap) replaceTop(c cand) {
	h[0] = c
	h.down(0, len(h))
}

func (h worstHeap) down(i, n int) {
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && above(h[l], h[r]) {
			m = r
		}
		if !above(h[i], h[m]) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

// sortBestFirst orders the heap's elements best first, in place.
func (h worstHeap) sortBestFirst() {
	for n := len(h) - 1; n > 0; n-- {
		h[0], h[n] = h[n], h[0]
		h.down(0, n)
	}
}

// band is a run of nodes whose norms lie within a bounded ratio, with a
// graph of its own.
type band struct {
	// start and end delimit the band's nodes.
	start, end int32
	// maxNorm is the largest norm in the band: the radius of its
	// MIPS-to-L2 reduction.
	maxNorm float32
	// entry is a node on the band's top layer, maxLevel that layer.
	entry    int32
	maxLevel int
}

// graph holds the vectors and the layered adjacency lists.
type graph struct {
	n, dims int
	// m is the most neighbours a node keeps on an upper layer, m0 on
	// layer 0 (2·m, as in the paper).
	m, m0 int
	// vecs holds the vectors node after node.
	vecs []float32
	// aux is the extra coordinate of the MIPS-to-L2 reduction within a
	// node's band, √(R² − ‖x‖²) with R the band's largest norm; the graph
	// is built with it and searches never read it (a query's is 0).
	aux []float32
	// levels[i] is the top layer of node i.
	levels []uint8
	// links0 holds layer 0: node i's block of m0+1 values is a count and
	// then that many neighbours.
	links0 []int32
	// upper[i] holds node i's layers 1..levels[i], a block of m+1 values
	// (count, neighbours) per layer; nil for nodes on layer 0 only.
	upper [][]int32
	// bands partition the nodes, largest norms first.
	bands []band
}

func (g *graph) vec(node int32) []float32 {
	i := int(node) * g.dims
	return g.vecs[i : i+g.dims : i+g.dims]
}

// block returns node's adjacency block on level: the count, then room for
// the neighbours.
func (g *graph) block(node int32, level int) []int32 {
	if level == 0 {
		i := int(node) * (g.m0 + 1)
		return g.links0[i : i+g.m0+1 : i+g.m0+1]
	}
	i := (level - 1) * (g.m + 1)
	return g.upper[node][i : i+g.m+1 : i+g.m+1]
}

func (g *graph) neighbours(node int32, level int) []int32 {
	b := g.block(node, level)
	return b[1 : 1+b[0]]
}

func (g *graph) capacity(level int) int {
	if level == 0 {
		return g.m0
	}
	return g.m
}

// query is what a layer search scores nodes against: a vector and its
// extra coordinate (0 for a search, the node's own while inserting it).
type query struct {
	vec []float32
	aux float32
}

func (g *graph) score(q query, node int32) float32 {
	s := dot(q.vec, g.vec(node))
	if q.aux != 0 {
		s += q.aux * g.aux[node]
	}
	return s
}

func (g *graph) nodeQuery(node int32) query {
	return query{vec: g.vec(node), aux: g.aux[node]}
}

// scratch is one search's working memory, pooled per index.
type scratch struct {
	// visited[node] == stamp marks a node met in the current layer search.
	visited []uint32
	stamp   uint32
	front   bestHeap
	beam    worstHeap
	sel     []cand
	batch   []int32
	// top holds a search's top-k heap; the hits are copied out to the
	// caller's slice at the end (internal/topk has its own Hit type).
	top []topk.Hit
	// touch sums what the prefetching loads read, so they are not
	// optimised away.
	touch float32
}

func newScratch(n int) *scratch {
	return &scratch{visited: make([]uint32, n)}
}

// hits appends the heap's hits to dst[:0], best first, and keeps the
// heap's storage for the next search.
func (s *scratch) hits(dst []Hit, h *topk.Heap) []Hit {
	sorted := h.Sorted()
	dst = dst[:0]
	for _, x := range sorted {
		dst = append(dst, Hit(x))
	}
	s.top = sorted[:0]
	return dst
}

func (s *scratch) nextStamp() {
	s.stamp++
	if s.stamp == 0 {
		clear(s.visited)
		s.stamp = 1
	}
}

// greedy descends band b from its entry point through the layers above
// level, moving to the best neighbour while one is better, and returns
// where it ends.
func (g *graph) greedy(q query, b *band, level int) cand {
	cur := cand{g.score(q, b.entry), b.entry}
	for l := b.maxLevel; l > level; l-- {
		for changed := true; changed; {
			changed = false
			for _, nb := range g.neighbours(cur.node, l) {
				if c := (cand{g.score(q, nb), nb}); above(c, cur) {
					cur, changed = c, true
				}
			}
		}
	}
	return cur
}

// searchLayer runs the beam search of width ef on one layer from ep and
// leaves in s.beam the best ef nodes met that keep allows (nil keeps all),
// as a worst-first heap. Nodes keep refuses are still walked through, so
// exclusions never cut the graph. A positive budget bounds the nodes
// scored while the beam is short of ef: past it the search stops and
// reports false (incomplete).
func (g *graph) searchLayer(s *scratch, q query, ep cand, ef, level int, keep func(node int32) bool, budget int) (complete bool) {
	s.nextStamp()
	stamp := s.stamp
	s.front = s.front[:0]
	s.beam = s.beam[:0]
	s.visited[ep.node] = stamp
	s.front.push(ep)
	if keep == nil || keep(ep.node) {
		s.beam.push(ep)
	}
	for len(s.front) > 0 {
		c := s.front.pop()
		if len(s.beam) == ef && above(s.beam[0], c) {
			break
		}
		// Gather the unvisited neighbours first and touch every 64-byte
		// line of their vectors: the loads are independent, so the memory
		// system fetches them in parallel instead of taking one miss per
		// scored node (a quarter off BenchmarkSearch).
		batch := s.batch[:0]
		var touch float32
		for _, nb := range g.neighbours(c.node, level) {
			if s.visited[nb] == stamp {
				continue
			}
			s.visited[nb] = stamp
			batch = append(batch, nb)
			v := g.vec(nb)
			for j := 0; j < len(v); j += 16 {
				touch += v[j]
			}
		}
		s.batch = batch
		s.touch += touch
		if budget > 0 && len(s.beam) < ef {
			// Still short of ef nodes keep allows: refused ones are walked
			// through without filling the beam, and when most are refused
			// the walk would score the whole graph.
			if budget -= len(batch); budget <= 0 {
				return false
			}
		}
		for _, nb := range batch {
			x := cand{g.score(q, nb), nb}
			full := len(s.beam) == ef
			if full && !above(x, s.beam[0]) {
				continue
			}
			s.front.push(x)
			if keep != nil && !keep(nb) {
				continue
			}
			if full {
				s.beam.replaceTop(x)
			} else {
				s.beam.push(x)
			}
		}
	}
	return true
}

// selectNeighbours appends to dst up to m of cands (best first, scored
// against the node being linked) chosen by the paper's heuristic: a
// candidate is kept only if it is closer to the node than to every
// candidate kept before it, which spreads links over directions instead of
// spending them all on one dense cluster.
func (g *graph) selectNeighbours(dst []int32, cands []cand, m int) []int32 {
	start := len(dst)
	for _, c := range cands {
		if len(dst)-start >= m {
			break
		}
		q := g.nodeQuery(c.node)
		good := true
		for _, r := range dst[start:] {
			if g.score(q, r) > c.score {
				good = false
				break
			}
		}
		if good {
			dst = append(dst, c.node)
		}
	}
	return dst
}
