package retrieve

import (
	"context"
	"fmt"
	"time"

	"github.com/adaptrec/adaptrec/serving/catalog"
)

// DefaultFreshHorizon is Fresh's default horizon.
const DefaultFreshHorizon = 48 * time.Hour

// Fresh proposes the newest items, younger than Horizon at the catalogue's
// BuiltAt, most popular first: new items have too little history for ANN or
// the popular lists to surface them, and popularity among the new ones
// still tells the hits from the rest. Its score is the item's 7-day
// clicks. The list is computed once per catalogue (Prepare, or the first
// request on it).
//
// Use a *Fresh; it holds that per-catalogue list.
type Fresh struct {
	// Horizon is the largest age of a fresh item; 0 means 48h.
	Horizon time.Duration

	lists perCatalog[[]int32]
}

var (
	_ Source   = (*Fresh)(nil)
	_ Preparer = (*Fresh)(nil)
)

// Name returns "fresh".
func (*Fresh) Name() string { return "fresh" }

// Validate reports a negative horizon.
func (f *Fresh) Validate() error {
	if f.Horizon < 0 {
		return fmt.Errorf("Fresh.Horizon is %v, want a positive age (0 means %v)", f.Horizon, DefaultFreshHorizon)
	}
	return nil
}

// Prepare computes the fresh list of c.
func (f *Fresh) Prepare(c *catalog.Catalog) { f.lists.get(c, f.build) }

// Retrieve appends the k most popular fresh items q does not skip.
func (f *Fresh) Retrieve(_ context.Context, q *Query, k int, dst []Hit) ([]Hit, error) {
	return takeList(q, f.lists.get(q.Catalog, f.build), q.Catalog.Popularity, k, dst[:0]), nil
}

// build lists the unflagged items younger than the horizon, by popularity.
// An unknown age reads as the feature default (a year), so an item without
// one is never fresh; a slightly negative age (a publish time just after the
// snapshot, clock skew) is.
func (f *Fresh) build(c *catalog.Catalog) []int32 {
	h := f.Horizon
	if h <= 0 {
		h = DefaultFreshHorizon
	}
	horizon := float32(h.Hours())
	var list []int32
	for _, i := range c.ByPopularity() {
		if !c.Flagged[i] && c.AgeHours[i] < horizon {
			list = append(list, i)
		}
	}
	return list
}
