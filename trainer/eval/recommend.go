package eval

import (
	"fmt"
	"math"
	"slices"
)

// Recommender ranks a test user's candidates: the whole catalogue minus
// the items the user saw in the training period.
type Recommender interface {
	// Recommend appends to dst[:0] the user's top k candidates, best
	// first, and returns it. c.Seen is excluded; c.Liked is the profile.
	// c.Relevant must not be read.
	Recommend(dst []int32, c *Case, k int) []int32
}

// inSorted reports whether item is in the ascending slice s.
func inSorted(s []int32, item int32) bool {
	_, ok := slices.BinarySearch(s, item)
	return ok
}

// Popular recommends the items with the most positive training
// interactions, the same list for everyone (ties by lower item).
type Popular struct {
	order []int32
}

// NewPopular counts the positive (rating >= minPositive) training
// interactions per item.
func NewPopular(train []Interaction, items int, minPositive float32) *Popular {
	count := make([]int, items)
	for _, it := range train {
		if it.Rating >= minPositive {
			count[it.Item]++
		}
	}
	order := make([]int32, items)
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(a, b int32) int { return count[b] - count[a] })
	return &Popular{order: order}
}

// Recommend implements Recommender.
func (p *Popular) Recommend(dst []int32, c *Case, k int) []int32 {
	dst = dst[:0]
	for _, item := range p.order {
		if len(dst) == k {
			break
		}
		if !inSorted(c.Seen, item) {
			dst = append(dst, item)
		}
	}
	return dst
}

// maxCoOccurrenceItems bounds the dense item×item matrix of CoOccurrence
// (20,000² float32 is 1.6 GB).
const maxCoOccurrenceItems = 20_000

// CoOccurrence is item-item collaborative filtering: an item scores the
// sum, over the user's liked training items, of its cosine similarity with
// each, where the similarity of i and j is the number of users who liked
// both over √(likers(i)·likers(j)), counted in the training period.
type CoOccurrence struct {
	items int
	sim   []float32 // items×items
}

// NewCoOccurrence counts co-likes (rating >= minPositive) in train.
func NewCoOccurrence(train []Interaction, items int, minPositive float32) (*CoOccurrence, error) {
	if items > maxCoOccurrenceItems {
		return nil, fmt.Errorf("eval: co-occurrence baseline over %d items, at most %d (dense matrix)", items, maxCoOccurrenceItems)
	}
	liked := make(map[int32][]int32)
	var users []int32
	for _, it := range train {
		if it.Rating >= minPositive {
			if liked[it.User] == nil {
				users = append(users, it.User)
			}
			liked[it.User] = append(liked[it.User], it.Item)
		}
	}
	slices.Sort(users)
	co := make([]float32, items*items)
	count := make([]float64, items)
	for _, u := range users {
		l := liked[u]
		slices.Sort(l)
		l = slices.Compact(l)
		for _, i := range l {
			count[i]++
			row := co[int(i)*items:]
			for _, j := range l {
				if j != i {
					row[j]++
				}
			}
		}
	}
	for i := 0; i < items; i++ {
		for j := 0; j < items; j++ {
			if v := co[i*items+j]; v != 0 {
				co[i*items+j] = float32(float64(v) / math.Sqrt(count[i]*count[j]))
			}
		}
	}
	return &CoOccurrence{items: items, sim: co}, nil
}

// Recommend implements Recommender.
func (m *CoOccurrence) Recommend(dst []int32, c *Case, k int) []int32 {
	scores := make([]float32, m.items)
	for _, i := range c.Liked {
		row := m.sim[int(i)*m.items : int(i+1)*m.items]
		for j, v := range row {
			scores[j] += v
		}
	}
	return topItems(dst, scores, c.Seen, k)
}

// topItems appends to dst[:0] the k best-scoring items not in exclude
// (ascending), ties by lower item.
func topItems(dst []int32, scores []float32, exclude []int32, k int) []int32 {
	dst = dst[:0]
	for i := range scores {
		if !inSorted(exclude, int32(i)) {
			dst = append(dst, int32(i))
		}
	}
	slices.SortStableFunc(dst, func(a, b int32) int {
		switch sa, sb := scores[a], scores[b]; {
		case sa > sb:
			return -1
		case sa < sb:
			return 1
		}
		return 0
	})
	return dst[:min(k, len(dst))]
}
