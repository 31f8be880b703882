package retrieve

import "context"

// Popular proposes the catalogue's most clicked items (7-day clicks), the
// last resort that answers for every user, new ones included. Its score is
// the item's 7-day clicks.
type Popular struct{}

var _ Source = Popular{}

// Name returns "popular".
func (Popular) Name() string { return "popular" }

// Retrieve appends the k most popular items q does not skip.
func (Popular) Retrieve(_ context.Context, q *Query, k int, dst []Hit) ([]Hit, error) {
	return takeList(q, q.Catalog.ByPopularity(), q.Catalog.Popularity, k, dst[:0]), nil
}

// takeList appends to dst the first k items of list (best first) that q
// does not skip, each scored by score[item].
func takeList(q *Query, list []int32, score []float32, k int, dst []Hit) []Hit {
	for _, i := range list {
		if len(dst) >= k {
			break
		}
		if !q.Skip(i) {
			dst = append(dst, Hit{Item: i, Score: score[i]})
		}
	}
	return dst
}
