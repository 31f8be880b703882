package retrieve

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/adaptrec/adaptrec/serving/catalog"
)

// Defaults of Trending.
const (
	DefaultTrendingMinPopularity = 20
	DefaultTrendingMinVelocity   = 1.5
)

// Trending proposes the items whose clicks are rising fastest over their
// usual rate (catalog.Catalog.Trending: clicks in the last 30 minutes over
// the 7-day mean per 30 minutes, both plus one). Its score is that
// velocity. The list is computed once per catalogue (Prepare, or the first
// request on it).
//
// The popularity floor keeps out items with too few clicks for a velocity
// to mean anything: going from 1 to 3 clicks is a velocity of 2 and noise.
// It also keeps out a brand-new item that takes off before it has 7-day
// clicks; Fresh proposes those.
//
// Use a *Trending; it holds that per-catalogue list.
type Trending struct {
	// MinPopularity is the fewest 7-day clicks a trending item has; 0
	// means 20, a negative value no floor.
	MinPopularity float32
	// MinVelocity is the lowest velocity that counts as trending (1 is the
	// usual rate); 0 means 1.5.
	MinVelocity float32

	lists perCatalog[[]int32]
}

var (
	_ Source   = (*Trending)(nil)
	_ Preparer = (*Trending)(nil)
)

// Name returns "trending".
func (*Trending) Name() string { return "trending" }

// Validate reports floors that are not numbers or a negative velocity.
func (t *Trending) Validate() error {
	if !finite(t.MinPopularity) {
		return fmt.Errorf("Trending.MinPopularity is %v, want a number of 7-day clicks", t.MinPopularity)
	}
	if !finite(t.MinVelocity) || t.MinVelocity < 0 {
		return fmt.Errorf("Trending.MinVelocity is %v, want a velocity ≥ 0 (1 is the usual rate; 0 means %v)", t.MinVelocity, DefaultTrendingMinVelocity)
	}
	return nil
}

// Prepare computes the trending list of c.
func (t *Trending) Prepare(c *catalog.Catalog) { t.lists.get(c, t.build) }

// Retrieve appends the k fastest-rising items q does not skip.
func (t *Trending) Retrieve(_ context.Context, q *Query, k int, dst []Hit) ([]Hit, error) {
	return takeList(q, t.lists.get(q.Catalog, t.build), q.Catalog.Trending, k, dst[:0]), nil
}

// build lists the unflagged items above both floors by velocity, ties by
// popularity and then index.
func (t *Trending) build(c *catalog.Catalog) []int32 {
	minPop, minVel := t.MinPopularity, t.MinVelocity
	if minPop == 0 {
		minPop = DefaultTrendingMinPopularity
	}
	if minVel == 0 {
		minVel = DefaultTrendingMinVelocity
	}
	var list []int32
	for i := range int32(c.Len()) {
		if !c.Flagged[i] && c.Popularity[i] >= minPop && c.Trending[i] >= minVel {
			list = append(list, i)
		}
	}
	slices.SortFunc(list, func(a, b int32) int {
		if r := cmp.Compare(c.Trending[b], c.Trending[a]); r != 0 {
			return r
		}
		if r := cmp.Compare(c.Popularity[b], c.Popularity[a]); r != 0 {
			return r
		}
		return cmp.Compare(a, b)
	})
	return list
}
