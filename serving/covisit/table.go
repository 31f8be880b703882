package covisit

import (
	"math/bits"
	"sync"
	"time"

	"github.com/adaptrec/adaptrec/internal/topk"
)

// Table holds every item's co-visitation neighbours: an id table (items
// indexed in id order) and CSR neighbour lists with their weights,
// heaviest first. It is immutable once built or loaded and safe for
// concurrent use.
type Table struct {
	ids []string
	pos map[string]int32
	// off[i]..off[i+1] are item i's entries of nbr and wt.
	off []int32
	nbr []int32
	wt  []float32

	// The build's parameters, kept with the table; recencyDecay is the
	// query's.
	window        time.Duration
	maxDistance   int
	distanceDecay float32
	neighbours    int
	recencyDecay  float32

	pool sync.Pool // *Scorer
}

// Hit is a recommendation: an item, as a table index (Table.ID gives its
// id), and its score.
type Hit struct {
	Item  int32
	Score float32
}

// init derives the id lookup and the scorer pool.
func (t *Table) init() {
	t.pos = make(map[string]int32, len(t.ids))
	for i, id := range t.ids {
		t.pos[id] = int32(i)
	}
	t.pool.New = func() any { return t.NewScorer() }
}

// Len returns the number of items.
func (t *Table) Len() int { return len(t.ids) }

// Edges returns the number of neighbour entries over all items.
func (t *Table) Edges() int { return len(t.nbr) }

// ID returns item i's id; i must be in 0..Len()-1.
func (t *Table) ID(i int32) string { return t.ids[i] }

// Lookup returns the index of the item with id.
func (t *Table) Lookup(id string) (int32, bool) {
	i, ok := t.pos[id]
	return i, ok
}

// Neighbours returns item i's neighbours and their weights, heaviest
// first (views, not copies); i must be in 0..Len()-1.
func (t *Table) Neighbours(i int32) ([]int32, []float32) {
	lo, hi := t.off[i], t.off[i+1]
	return t.nbr[lo:hi:hi], t.wt[lo:hi:hi]
}

// RecencyDecay returns the weight ratio of each recent item to the next
// newer one in Recommend.
func (t *Table) RecencyDecay() float64 { return float64(t.recencyDecay) }

// Config returns the configuration the table was built with (Workers 0).
func (t *Table) Config() Config {
	return Config{
		Window: t.window, MaxDistance: t.maxDistance, DistanceDecay: float64(t.distanceDecay),
		Neighbours: t.neighbours, RecencyDecay: float64(t.recencyDecay),
	}
}

// Recommend appends to dst[:0] the k best-scored neighbours of the recent
// items, best first (ties by lower index), and returns it. recent are
// table indexes, newest first; the i-th weighs RecencyDecay^i, and a
// candidate scores the sum over recent items of that weight times its
// neighbour weight. Indexes outside the table (an id the table does not
// know, mapped to -1) are skipped but keep their place in the recency
// order. exclude, when set, drops candidates, for example what the user
// has seen: the recent items themselves are not dropped otherwise. It
// allocates nothing once dst has capacity k.
func (t *Table) Recommend(dst []Hit, recent []int32, k int, exclude func(int32) bool) []Hit {
	s := t.pool.Get().(*Scorer)
	dst = s.Recommend(dst, recent, k, exclude)
	t.pool.Put(s)
	return dst
}

// Scorer is Recommend's working memory for one table: a goroutine that
// serves many requests can hold one instead of taking a pooled one each
// time. A Scorer is not safe for concurrent use.
type Scorer struct {
	t *Table
	// keys and vals are an open-addressing map from candidate to score,
	// keys -1 when free; used lists the slots taken, in insertion order.
	keys  []int32
	vals  []float32
	used  []int32
	shift uint
	top   []topk.Hit
}

// NewScorer returns a Scorer for t.
func (t *Table) NewScorer() *Scorer { return &Scorer{t: t} }

// Recommend is Table.Recommend with s's memory.
func (s *Scorer) Recommend(dst []Hit, recent []int32, k int, exclude func(int32) bool) []Hit {
	dst = dst[:0]
	t := s.t
	n := int32(len(t.ids))
	if k <= 0 {
		return dst
	}
	total := 0
	for _, r := range recent {
		if r >= 0 && r < n {
			total += int(t.off[r+1] - t.off[r])
		}
	}
	if total == 0 {
		return dst
	}
	s.reserve(total)
	w := float32(1)
	for _, r := range recent {
		if r >= 0 && r < n {
			lo, hi := t.off[r], t.off[r+1]
			for e := lo; e < hi; e++ {
				s.add(t.nbr[e], w*t.wt[e])
			}
		}
		w *= t.recencyDecay
	}
	h := topk.New(s.top, k)
	for _, slot := range s.used {
		h.PushUnless(topk.Hit{ID: s.keys[slot], Score: s.vals[slot]}, exclude)
		s.keys[slot] = -1
	}
	s.used = s.used[:0]
	sorted := h.Sorted()
	for _, x := range sorted {
		dst = append(dst, Hit{Item: x.ID, Score: x.Score})
	}
	s.top = sorted[:0]
	return dst
}

// reserve makes the map hold at least total keys at a load of at most a
// half, so probes stay short.
func (s *Scorer) reserve(total int) {
	size := 1 << bits.Len(uint(2*total-1))
	if size <= len(s.keys) {
		return
	}
	s.keys = make([]int32, size)
	for i := range s.keys {
		s.keys[i] = -1
	}
	s.vals = make([]float32, size)
	s.shift = uint(64 - bits.Len(uint(size-1)))
	s.used = make([]int32, 0, size)
}

// add adds v to item's score.
func (s *Scorer) add(item int32, v float32) {
	mask := uint64(len(s.keys) - 1)
	// Fibonacci hashing: the top bits of a multiplication spread
	// neighbouring indexes across the table.
	slot := (uint64(uint32(item)) * 0x9E3779B97F4A7C15) >> s.shift
	for {
		switch s.keys[slot] {
		case item:
			s.vals[slot] += v
			return
		case -1:
			s.keys[slot] = item
			s.vals[slot] = v
			s.used = append(s.used, int32(slot))
			return
		}
		slot = (slot + 1) & mask
	}
}
