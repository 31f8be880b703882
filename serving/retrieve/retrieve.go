// Package retrieve gathers the few hundred candidates a Recommend request
// ranks: it asks several sources at once (nearest neighbours of the user
// vector, the user's favourite categories, trending, fresh and popular
// items), each under its own quota and deadline, and merges what comes back
// in time into one de-duplicated, scored list.
//
// Retrieval has about a millisecond and a half of a 10 ms budget, so a slow
// source is dropped rather than waited for: Retrieve returns by the latest
// source deadline whatever a source goroutine is still doing, and counts the
// drop in its Stats and in Prometheus. Each call runs on a pooled state that
// owns every buffer a source reads or writes (a copy of the query, one hit
// buffer per source) and goes back to the pool only when the last source
// goroutine has finished, so a source that runs late can neither read nor
// write memory a later call is using, nor memory the caller reuses; the
// caller's Exclude, which cannot be copied, is switched off for late
// sources before Retrieve returns.
//
// The merged score is rank-based (see Retriever.Retrieve), so sources with
// incomparable scores (inner products, click counts, velocities) mix by
// quota and weight; candidates proposed by several sources get a bonus.
package retrieve

import (
	"context"

	"github.com/adaptrec/adaptrec/serving/catalog"
)

// Hit is one item a source proposes: a catalogue index and the source's own
// score for it, higher better. Scores of different sources are not
// comparable; the merge uses a hit's rank within its source.
type Hit struct {
	Item  int32
	Score float32
}

// Source proposes candidates for a query. It is the one extension point of
// retrieval: the sources of this package and any other (session
// co-visitation) implement it.
//
// Retrieve appends to dst[:0] up to k hits, best first, with distinct
// catalogue indexes of q.Catalog, none that q.Skip reports, and returns the
// slice: dst's storage or, when it grows, a new array, never memory the
// source keeps, because the caller writes into the returned slice. A source
// that finds nothing returns an empty slice and no error; an error means the
// source could not answer and drops its hits. Retrieve is called
// concurrently, from a goroutine of its own; it must return promptly once
// ctx is done when it can block (I/O, locks), and must not keep q, anything
// q references or dst after it returns: a source that missed its deadline
// and is dropped still runs to its end, but on memory the call owns.
type Source interface {
	// Name names the source in metrics, stats and the sources of a served
	// item; short, lower case and stable ("ann", "trending").
	Name() string
	Retrieve(ctx context.Context, q *Query, k int, dst []Hit) ([]Hit, error)
}

// Preparer is implemented by sources that precompute something per
// catalogue (Trending, Fresh). Serving calls Retriever.Prepare when it swaps
// in a new catalogue, so the first requests on it do not pay for the work.
type Preparer interface {
	Prepare(c *catalog.Catalog)
}

// Query is what the sources know of one request. Retrieve hands sources a
// copy whose slices the call owns, so the caller may reuse its own as soon
// as Retrieve returns.
type Query struct {
	// Catalog is the catalogue every index refers to; required.
	Catalog *catalog.Catalog
	// UserVector is the user's embedding for nearest-neighbour search; nil
	// when the user has none (new users), which leaves ANN empty.
	UserVector []float32
	// Recent are the catalogue indexes of the user's recent items, newest
	// first.
	Recent []int32
	// CategoryAffinity is the user's affinity per category id (higher
	// means more interest, 0 none); nil when unknown.
	CategoryAffinity []float32
	// Exclude, when set, reports items the user must not be offered (what
	// was just seen). Sources call it through Skip from their own
	// goroutines, concurrently, so it must be safe for concurrent calls;
	// Retrieve stops every call to it before it returns, so it may read
	// memory the caller changes afterwards.
	Exclude func(item int32) bool
}

// Skip reports whether sources must leave item i out: flagged by
// moderation (never worth a ranking slot) or excluded by the caller.
func (q *Query) Skip(i int32) bool {
	return q.Catalog.Flagged[i] || (q.Exclude != nil && q.Exclude(i))
}

// Candidate is one merged candidate: a catalogue index, its merged score
// (higher better) and the sources that proposed it, bit i for the
// Retriever's source i (see Retriever.SourceNames).
type Candidate struct {
	Item    int32
	Score   float32
	Sources uint16
}
