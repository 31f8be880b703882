package retrieve

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/internal/metricstest"
	"github.com/adaptrec/adaptrec/serving/catalog"
)

// testCatalog returns n items in cats categories with the shapes the
// sources read: a few items with no category and a few flagged, a fifth of
// them younger than 72 hours, heavy-tailed whole click counts (so ties
// occur) and velocities mostly at the usual rate 1.
func testCatalog(t testing.TB, n, cats int, seed uint64) *catalog.Catalog {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	ids := make([]string, n)
	cols := catalog.Columns{
		Category: make([]int32, n), Creator: make([]int32, n), AgeHours: make([]float32, n),
		Flagged: make([]bool, n), Promoted: make([]bool, n), Popularity: make([]float32, n), Trending: make([]float32, n),
	}
	for i := range n {
		ids[i] = fmt.Sprintf("item-%d", i)
		cols.Category[i] = int32(rng.IntN(cats))
		if rng.IntN(20) == 0 {
			cols.Category[i] = -1
		}
		cols.Creator[i] = int32(rng.IntN(100))
		cols.AgeHours[i] = float32(100 + rng.IntN(9000))
		if rng.IntN(5) == 0 {
			cols.AgeHours[i] = float32(rng.IntN(72*4)) / 4
		}
		cols.Flagged[i] = rng.IntN(30) == 0
		cols.Popularity[i] = float32(math.Floor(math.Exp(1.5*rng.NormFloat64() + 3)))
		cols.Trending[i] = 1
		if rng.IntN(4) == 0 {
			cols.Trending[i] = float32(1+rng.IntN(40)) / 8
		}
	}
	c, err := catalog.New(ids, cols, time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// funcSource is a test source made of a function.
type funcSource struct {
	name string
	fn   func(ctx context.Context, q *Query, k int, dst []Hit) ([]Hit, error)
}

func (f *funcSource) Name() string { return f.name }

func (f *funcSource) Retrieve(ctx context.Context, q *Query, k int, dst []Hit) ([]Hit, error) {
	return f.fn(ctx, q, k, dst)
}

// fixed returns a source that answers hits (the first k of them), as they
// are, whatever the query.
func fixed(name string, hits ...Hit) *funcSource {
	return &funcSource{name: name, fn: func(_ context.Context, _ *Query, k int, dst []Hit) ([]Hit, error) {
		return append(dst[:0], hits[:min(k, len(hits))]...), nil
	}}
}

// hits builds best-first hits for items, scores falling from len(items).
func hits(items ...int32) []Hit {
	out := make([]Hit, len(items))
	for i, it := range items {
		out[i] = Hit{Item: it, Score: float32(len(items) - i)}
	}
	return out
}

func newRetriever(t testing.TB, cfg Config) *Retriever {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// metric reads a counter or a histogram's sample count; 0 before the
// series exists.
func metric(t *testing.T, name string, labels map[string]string) float64 {
	v, _ := metricstest.Value(t, name, labels)
	return v
}

func dropped(t *testing.T, source, reason string) float64 {
	return metric(t, "adaptrec_retrieval_source_dropped_total", map[string]string{"source": source, "reason": reason})
}
