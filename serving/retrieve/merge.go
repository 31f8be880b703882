package retrieve

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// merge appends to dst the merged answers of the answered sources in st, in
// configuration order so that sums, and with them the order of equal
// candidates, never depend on which source finished first. A source whose
// hits leave the catalogue of n items is moved to Failed: its answer is
// wrong, not just out of range.
func (r *Retriever) merge(c *call, n int, st *Stats, dst []Candidate) []Candidate {
	if len(c.seen) < n {
		c.seen = make([]uint64, n)
		c.gen = 0
	}
	// A generation stamp marks the items of this call, so the de-duplication
	// array (one word per catalogue item) is never cleared between calls;
	// only when the stamp wraps.
	c.gen++
	if c.gen == 0 {
		clear(c.seen)
		c.gen = 1
	}
	stamp := uint64(c.gen) << 32
	cands := c.cands[:0]
	for i := range r.srcs {
		bit := uint16(1) << i
		if st.Answered&bit == 0 {
			continue
		}
		src, s := &r.srcs[i], &c.slots[i]
		hits := s.hits
		if len(hits) > src.K {
			hits = hits[:src.K]
		}
		if bad := outside(hits, n); bad >= 0 {
			st.Answered &^= bit
			st.Failed |= bit
			st.Err[i] = fmt.Errorf("retrieve: source %s returned item %d, outside the catalogue of %d items (an index of another catalogue?)", src.Name, hits[bad].Item, n)
			src.errors.Inc()
			continue
		}
		if !slices.IsSortedFunc(hits, hitOrder) {
			slices.SortFunc(hits, hitOrder)
		}
		st.Hits[i] = int32(len(hits))
		k := float32(src.K)
		for rank, h := range hits {
			v := src.Weight / (1 + float32(rank)/k)
			e := c.seen[h.Item]
			if e&^(1<<32-1) != stamp {
				c.seen[h.Item] = stamp | uint64(len(cands))
				cands = append(cands, Candidate{Item: h.Item, Score: v, Sources: bit})
				continue
			}
			m := &cands[uint32(e)]
			if m.Sources&bit != 0 {
				continue // a source that repeats an item: its best rank counts
			}
			m.Score += v + r.bonus
			m.Sources |= bit
		}
	}
	st.Distinct = len(cands)
	// Sorting packed keys, best first, is about four times faster than
	// sorting the candidates with a comparison function (which the
	// compiler cannot inline into the sort).
	keys := c.keys[:0]
	for _, m := range cands {
		keys = append(keys, sortKey(m.Score, m.Item))
	}
	slices.Sort(keys)
	for _, k := range keys[:min(len(keys), r.total)] {
		dst = append(dst, cands[uint32(c.seen[uint32(k)])])
	}
	c.cands, c.keys = cands, keys
	return dst
}

// sortKey packs a score and an item into a key whose ascending order is
// the merged list's: descending score, then ascending item. The score's bits
// are mapped to an unsigned integer of the same order (negative floats
// reversed, -0 read as 0) and inverted; the item, never negative here,
// fills the low half.
func sortKey(score float32, item int32) uint64 {
	if score == 0 {
		score = 0 // -0 ties with 0, as cmp.Compare has it
	}
	b := math.Float32bits(score)
	if b&(1<<31) != 0 {
		b = ^b
	} else {
		b |= 1 << 31
	}
	return uint64(^b)<<32 | uint64(uint32(item))
}

// outside returns the position of the first hit outside 0..n-1, or -1.
func outside(hits []Hit, n int) int {
	for i, h := range hits {
		if h.Item < 0 || int(h.Item) >= n {
			return i
		}
	}
	return -1
}

// hitOrder ranks hits best first, ties by lower item.
func hitOrder(a, b Hit) int {
	if r := cmp.Compare(b.Score, a.Score); r != 0 {
		return r
	}
	return cmp.Compare(a.Item, b.Item)
}
