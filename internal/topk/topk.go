// Package topk keeps the k best scored items of a stream: the selection
// every index search and recommender ends with.
//
// It is deliberately not generic. A heap generic over its element calls
// the comparison through the instantiation's dictionary, which the
// compiler cannot inline; measured on a 65,536-score stream into a top
// 100 that made every push 2.6 times slower, and an exact scan pushes
// once per item. Callers whose result type differs (trainer/retrieval's
// Hit names its index Item) copy the k results out at the end.
package topk

// Hit is a scored item: an id or index, and its score.
type Hit struct {
	ID    int32
	Score float32
}

// Above reports whether a ranks above b: a higher score, or the same score
// and a lower id, so that results never depend on the order items were
// pushed in.
func (a Hit) Above(b Hit) bool {
	return a.Score > b.Score || (a.Score == b.Score && a.ID < b.ID)
}

// Heap keeps the k best hits pushed into it, in a min-heap with the worst
// kept hit at the root. The zero Heap keeps nothing; make one with New.
type Heap struct {
	hits []Hit
	k    int
}

// New returns a heap keeping the k best hits in dst's storage (from
// dst[:0]), so a caller that passes a buffer of capacity k allocates
// nothing.
func New(dst []Hit, k int) Heap {
	return Heap{hits: dst[:0], k: k}
}

// Len returns the number of hits kept, at most k.
func (h *Heap) Len() int { return len(h.hits) }

// Full reports whether k hits are kept, so a new one must beat Worst.
func (h *Heap) Full() bool { return len(h.hits) >= h.k }

// Worst returns the lowest-ranked kept hit; the heap must not be empty.
func (h *Heap) Worst() Hit { return h.hits[0] }

// Push offers x: it is kept if fewer than k hits are, or if it ranks above
// the worst of them, which it then replaces.
func (h *Heap) Push(x Hit) {
	if len(h.hits) < h.k {
		h.hits = append(h.hits, x)
		i := len(h.hits) - 1
		for i > 0 {
			p := (i - 1) / 2
			if !h.hits[p].Above(h.hits[i]) {
				break
			}
			h.hits[i], h.hits[p] = h.hits[p], h.hits[i]
			i = p
		}
		return
	}
	if h.k <= 0 || !x.Above(h.hits[0]) {
		return
	}
	h.hits[0] = x
	h.down(0, len(h.hits))
}

// PushUnless pushes x unless exclude (when set) drops its id. It asks
// exclude only about hits that would be kept: most of a scan never reaches
// the top k, and an exclusion test (a set lookup) costs more than the
// comparison.
func (h *Heap) PushUnless(x Hit, exclude func(id int32) bool) {
	if len(h.hits) >= h.k && (h.k <= 0 || !x.Above(h.hits[0])) {
		return
	}
	if exclude != nil && exclude(x.ID) {
		return
	}
	h.Push(x)
}

// down restores the heap below i among the first n hits.
func (h *Heap) down(i, n int) {
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h.hits[l].Above(h.hits[r]) {
			m = r
		}
		if !h.hits[i].Above(h.hits[m]) {
			return
		}
		h.hits[i], h.hits[m] = h.hits[m], h.hits[i]
		i = m
	}
}

// Sorted orders the kept hits best first, in place, and returns them; the
// heap is spent afterwards.
func (h *Heap) Sorted() []Hit {
	for n := len(h.hits) - 1; n > 0; n-- {
		h.hits[0], h.hits[n] = h.hits[n], h.hits[0]
		h.down(0, n)
	}
	return h.hits
}
