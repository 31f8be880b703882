package retrieve

import (
	"context"
	"fmt"
	"slices"
)

// Limits and defaults of CategoryAffinity.
const (
	DefaultAffinityCategories = 5
	MaxAffinityCategories     = 32
	DefaultRecentDecay        = 0.9
)

// recentCategories bounds the distinct categories read from the recent
// items: newest first, so the ones dropped are the oldest interests.
const recentCategories = 64

// CategoryAffinity proposes the most popular items of the user's favourite
// categories. The favourites are the Categories with the highest
// q.CategoryAffinity; a user without affinities (new, or not yet in the
// batch features) gets the categories of q.Recent instead, each recent item
// weighing RecentDecay^position (newest first), so the session's current
// interest leads. The quota k is split across the favourites in proportion
// to their weights (the rounding remainder going to the leading ones), and
// a category with fewer items than its share leaves the rest to the next
// ones.
//
// The score of the r-th item (from 0) taken from a category with share s of
// the total weight and quota n is s / (1 + r/n): the favourite's best item
// leads, and each category's items fall from s to about s/2 across its
// quota, so the categories interleave by weight.
type CategoryAffinity struct {
	// Categories is how many favourite categories share the quota; 0
	// means 5, at most 32.
	Categories int
	// RecentDecay is the weight of a recent item relative to the next
	// newer one, in (0, 1]; 0 means 0.9.
	RecentDecay float32
}

var _ Source = (*CategoryAffinity)(nil)

// Name returns "category".
func (*CategoryAffinity) Name() string { return "category" }

// Validate reports settings out of range.
func (s *CategoryAffinity) Validate() error {
	if s.Categories < 0 || s.Categories > MaxAffinityCategories {
		return fmt.Errorf("CategoryAffinity.Categories is %d, want 0 (meaning %d) to %d", s.Categories, DefaultAffinityCategories, MaxAffinityCategories)
	}
	if !finite(s.RecentDecay) || s.RecentDecay < 0 || s.RecentDecay > 1 {
		return fmt.Errorf("CategoryAffinity.RecentDecay is %v, want (0, 1], or 0 for %v", s.RecentDecay, DefaultRecentDecay)
	}
	return nil
}

// weighted is a category and the user's weight for it.
type weighted struct {
	cat int32
	w   float32
}

// Retrieve appends up to k popular items of the user's favourite
// categories that q does not skip, best first.
func (s *CategoryAffinity) Retrieve(_ context.Context, q *Query, k int, dst []Hit) ([]Hit, error) {
	dst = dst[:0]
	if k <= 0 {
		return dst, nil
	}
	if err := s.Validate(); err != nil {
		return dst, fmt.Errorf("retrieve: %w", err)
	}
	limit := s.Categories
	if limit == 0 {
		limit = DefaultAffinityCategories
	}
	var topBuf [MaxAffinityCategories]weighted
	top := topBuf[:0]
	cats := q.Catalog.Categories()
	for c, a := range q.CategoryAffinity {
		if c >= cats {
			break
		}
		if a > 0 && finite(a) {
			top = pushTop(top, limit, weighted{cat: int32(c), w: a})
		}
	}
	if len(top) == 0 {
		top = s.recentTop(q, top, limit)
	}
	if len(top) == 0 {
		return dst, nil
	}
	var sum float32
	for _, t := range top {
		sum += t.w
	}
	var quota, taken, next [MaxAffinityCategories]int
	assigned := 0
	for j, t := range top {
		quota[j] = int(float32(k) * t.w / sum)
		assigned += quota[j]
	}
	for j := 0; assigned < k; j = (j + 1) % len(top) {
		quota[j]++
		assigned++
	}
	// take appends up to n more items of favourite j.
	take := func(j, n int) {
		list := q.Catalog.InCategory(int(top[j].cat))
		share, per := top[j].w/sum, float32(max(quota[j], 1))
		for ; n > 0 && next[j] < len(list); next[j]++ {
			if i := list[next[j]]; !q.Skip(i) {
				dst = append(dst, Hit{Item: i, Score: share / (1 + float32(taken[j])/per)})
				taken[j]++
				n--
			}
		}
	}
	short := 0
	for j := range top {
		take(j, quota[j])
		short += quota[j] - taken[j]
	}
	for j := 0; j < len(top) && short > 0; j++ {
		before := taken[j]
		take(j, short)
		short -= taken[j] - before
	}
	slices.SortFunc(dst, hitOrder)
	return dst, nil
}

// recentTop appends to top the favourite categories of q.Recent.
func (s *CategoryAffinity) recentTop(q *Query, top []weighted, limit int) []weighted {
	decay := s.RecentDecay
	if decay == 0 {
		decay = DefaultRecentDecay
	}
	var accBuf [recentCategories]weighted
	acc := accBuf[:0]
	n, w := int32(q.Catalog.Len()), float32(1)
	for _, i := range q.Recent {
		if i >= 0 && i < n {
			if c := q.Catalog.Category[i]; c >= 0 {
				acc = addWeight(acc, c, w)
			}
		}
		w *= decay
	}
	for _, a := range acc {
		top = pushTop(top, limit, a)
	}
	return top
}

// addWeight adds w to category c in acc, a new entry while there is room.
func addWeight(acc []weighted, c int32, w float32) []weighted {
	for j := range acc {
		if acc[j].cat == c {
			acc[j].w += w
			return acc
		}
	}
	if len(acc) < cap(acc) {
		acc = append(acc, weighted{cat: c, w: w})
	}
	return acc
}

// pushTop keeps top the limit heaviest categories, heaviest first (ties by
// lower id), inserting x if it belongs there.
func pushTop(top []weighted, limit int, x weighted) []weighted {
	above := func(a, b weighted) bool { return a.w > b.w || (a.w == b.w && a.cat < b.cat) }
	if len(top) == limit {
		if !above(x, top[len(top)-1]) {
			return top
		}
		top = top[:len(top)-1]
	}
	top = append(top, x)
	for j := len(top) - 1; j > 0 && above(top[j], top[j-1]); j-- {
		top[j], top[j-1] = top[j-1], top[j]
	}
	return top
}
