package retrieve

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/adaptrec/adaptrec/serving/ann"
	"github.com/adaptrec/adaptrec/serving/catalog"
)

// ANN proposes the items whose embeddings have the highest inner product
// with the user vector, from an HNSW index (serving/ann). Its score is the
// inner product. A query without a user vector (a new user) gets no hits
// and no error: the other sources answer for it.
//
// The index's ids are its own, assigned when it was built; Map translates
// them to indexes of the catalogue (-1 for an item the catalogue lacks).
// Items Map cannot place and items the query skips are left out: filtered
// from a slightly larger search when they are few, excluded inside the
// search when they are many, so the index still returns k hits (it falls
// back to an exact scan when exclusions starve its beams).
type ANN struct {
	// Index is the index; required.
	Index *ann.Index
	// Map translates an index id to a catalogue index, -1 when the
	// catalogue lacks the item; ids beyond its end count as -1 too.
	Map []int32
	// Catalog, when set, is the catalogue Map was built against: a query
	// on another one fails rather than proposing whatever items its indexes
	// happen to name there. Serving rebuilds Map with every catalogue.
	Catalog *catalog.Catalog
	// EfSearch is the search's beam width; 0 means the index's default.
	EfSearch int
}

var _ Source = (*ANN)(nil)

// annHits holds search buffers: the index speaks ann.Hit and its ids, the
// retriever Hit and catalogue indexes.
var annHits = sync.Pool{New: func() any { return new([]ann.Hit) }}

// Name returns "ann"; SourceConfig.Name tells two ANN sources apart.
func (*ANN) Name() string { return "ann" }

// Validate reports a missing index or map.
func (a *ANN) Validate() error {
	switch {
	case a.Index == nil:
		return errors.New("ANN.Index is nil; load the model's index")
	case len(a.Map) < a.Index.Len():
		return fmt.Errorf("ANN.Map has %d entries for an index of %d items; build the id map from the index's ids", len(a.Map), a.Index.Len())
	case a.EfSearch < 0 || a.EfSearch > ann.MaxEf:
		return fmt.Errorf("ANN.EfSearch is %d, want 0 (the index's default) to %d", a.EfSearch, ann.MaxEf)
	}
	return nil
}

// Retrieve appends the k items of highest inner product with q.UserVector
// that the catalogue has and q does not skip.
func (a *ANN) Retrieve(ctx context.Context, q *Query, k int, dst []Hit) ([]Hit, error) {
	dst = dst[:0]
	if len(q.UserVector) == 0 || k <= 0 {
		return dst, nil
	}
	if a.Index == nil {
		return dst, errors.New("retrieve: ANN source has no index; set ANN.Index")
	}
	if a.Catalog != nil && a.Catalog != q.Catalog {
		return dst, fmt.Errorf("retrieve: the ANN source maps its ids into another catalogue (built at %v) than the query's (built at %v); rebuild the source with each catalogue",
			a.Catalog.BuiltAt, q.Catalog.BuiltAt)
	}
	// The search takes about a millisecond and cannot be interrupted, so
	// the one useful check is whether there is still time to start it.
	if err := ctx.Err(); err != nil {
		return dst, err
	}
	m, n := a.Map, int32(q.Catalog.Len())
	skip := func(id int32) bool {
		if id < 0 || int(id) >= len(m) {
			return true
		}
		i := m[id]
		return i < 0 || i >= n || q.Skip(i)
	}
	// Search a few more than k without an exclusion callback and drop
	// the skipped hits after: the index would call it for every node its
	// walk visits (thousands per search, a tenth of the search's time),
	// while the items to skip are the user's few recent ones and the
	// catalogue's rare flagged ones. The margin covers the recent items and
	// 2% flagged; when more were skipped than that (a caller excluding
	// many items), the search runs again with the callback, which never
	// comes back short.
	want := k + len(q.Recent) + k/50 + 1
	buf := annHits.Get().(*[]ann.Hit)
	defer annHits.Put(buf)
	hits, err := a.Index.Search((*buf)[:0], q.UserVector, want, ann.SearchOptions{Ef: max(a.EfSearch, want)})
	*buf = hits
	if err != nil {
		return dst, fmt.Errorf("retrieve: ANN search: %w", err)
	}
	for _, h := range hits {
		if len(dst) == k {
			break
		}
		if !skip(h.ID) {
			dst = append(dst, Hit{Item: m[h.ID], Score: h.Score})
		}
	}
	if len(dst) < k && len(hits) == want {
		// A source past its deadline has been dropped: Retrieve has
		// returned, and its gate now excludes every item, which would
		// turn this search into a walk of the whole graph and an exact
		// scan, a core's worth of work for nobody.
		if err := ctx.Err(); err != nil {
			return dst[:0], err
		}
		hits, err = a.Index.Search((*buf)[:0], q.UserVector, k, ann.SearchOptions{Ef: a.EfSearch, Exclude: skip})
		*buf = hits
		if err != nil {
			return dst[:0], fmt.Errorf("retrieve: ANN search: %w", err)
		}
		dst = dst[:0]
		for _, h := range hits {
			dst = append(dst, Hit{Item: m[h.ID], Score: h.Score})
		}
	}
	return dst, nil
}
