// Package catalog is serving's in-memory view of the item catalogue: one
// dense index per item and the handful of attributes retrieval and
// re-ranking read for hundreds of candidates per request (category, creator,
// age, moderation and promotion flags, popularity, trending velocity).
//
// A Catalog is immutable and read without locks; serving rebuilds one from
// the online feature store's item features (Build) whenever the store's item
// view changes and swaps it in whole. Dense indexes are stable only within
// one Catalog: anything keyed by them (an ANN id map) is rebuilt with it.
package catalog

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/adaptrec/adaptrec/features/online"
)

// Feature names the catalogue reads, all item features of the definitions.
const (
	FeatCategory = "item_category_id"
	FeatCreator  = "item_creator_id"
	FeatAge      = "item_age_hours"
	FeatFlagged  = "item_is_flagged"
	FeatPromoted = "item_is_promoted"
	FeatClicks   = "item_clicks_7d"
	FeatTrending = "item_trending_velocity_30m"
)

// Features are the item features Build reads, in column order.
var Features = []string{FeatCategory, FeatCreator, FeatAge, FeatFlagged, FeatPromoted, FeatClicks, FeatTrending}

// Catalog is every item the store holds features for.
type Catalog struct {
	ids      []string
	index    map[string]int32
	Category []int32   // -1 unknown
	Creator  []int32   // -1 unknown
	AgeHours []float32 // at BuiltAt
	Flagged  []bool
	Promoted []bool
	// Popularity is clicks over the last 7 days; Trending the recent click
	// rate over its 7-day baseline (1 = as usual).
	Popularity []float32
	Trending   []float32
	// BuiltAt is the instant the values were read at.
	BuiltAt time.Time

	categories int
	byCategory [][]int32 // per category, items by popularity, best first
	byPop      []int32   // every item by popularity, best first
}

// Len is the number of items.
func (c *Catalog) Len() int { return len(c.ids) }

// ID returns the id of dense index i.
func (c *Catalog) ID(i int32) string { return c.ids[i] }

// Lookup returns the dense index of an item id.
func (c *Catalog) Lookup(id string) (int32, bool) {
	i, ok := c.index[id]
	return i, ok
}

// Categories is one more than the largest category id.
func (c *Catalog) Categories() int { return c.categories }

// InCategory returns the items of category k by popularity, best first
// (shared: do not modify).
func (c *Catalog) InCategory(k int) []int32 {
	if k < 0 || k >= len(c.byCategory) {
		return nil
	}
	return c.byCategory[k]
}

// ByPopularity returns every item by popularity, best first (shared).
func (c *Catalog) ByPopularity() []int32 { return c.byPop }

// Columns holds the attribute columns New indexes, parallel to the ids.
type Columns struct {
	Category, Creator    []int32
	AgeHours             []float32
	Flagged, Promoted    []bool
	Popularity, Trending []float32
}

// New indexes items with the given attribute columns, each as long as ids.
func New(ids []string, cols Columns, builtAt time.Time) (*Catalog, error) {
	n := len(ids)
	for name, l := range map[string]int{
		"category": len(cols.Category), "creator": len(cols.Creator), "age_hours": len(cols.AgeHours),
		"flagged": len(cols.Flagged), "promoted": len(cols.Promoted), "popularity": len(cols.Popularity), "trending": len(cols.Trending),
	} {
		if l != n {
			return nil, fmt.Errorf("catalog: column %s has %d values for %d items", name, l, n)
		}
	}
	c := &Catalog{
		ids: ids, index: make(map[string]int32, n),
		Category: cols.Category, Creator: cols.Creator, AgeHours: cols.AgeHours,
		Flagged: cols.Flagged, Promoted: cols.Promoted, Popularity: cols.Popularity, Trending: cols.Trending,
		BuiltAt: builtAt,
	}
	for i, id := range ids {
		if _, dup := c.index[id]; dup {
			return nil, fmt.Errorf("catalog: item %q appears twice", id)
		}
		c.index[id] = int32(i)
		if k := cols.Category[i]; k >= MaxID || k < -1 {
			return nil, fmt.Errorf("catalog: item %q has category %d, want -1 (unknown) or 0..%d", id, k, MaxID-1)
		}
		if k := int(cols.Category[i]); k >= c.categories {
			c.categories = k + 1
		}
	}
	c.byPop = make([]int32, n)
	for i := range c.byPop {
		c.byPop[i] = int32(i)
	}
	slices.SortFunc(c.byPop, func(a, b int32) int {
		if r := cmp.Compare(c.Popularity[b], c.Popularity[a]); r != 0 {
			return r
		}
		return cmp.Compare(a, b)
	})
	c.byCategory = make([][]int32, c.categories)
	for _, i := range c.byPop {
		if k := c.Category[i]; k >= 0 {
			c.byCategory[k] = append(c.byCategory[k], i)
		}
	}
	return c, nil
}

// buildChunk is how many items Build assembles per call: about a quarter
// of a millisecond of work, the longest a paced build holds a core.
const buildChunk = 1024

// BuildOptions tune Build.
type BuildOptions struct {
	// Share paces the build next to latency-sensitive work: after each
	// chunk of items it sleeps long enough that the build takes at most
	// this share of a core on average (0.25: three times the chunk's
	// time). 0 or 1 or more: no pacing.
	Share float64
}

// Translate maps a table of n items named by id (an index's or a model
// artifact's own numbering) to the catalogue and back: toCat[i] is the
// catalogue index of item i, fromCat[c] the table index of catalogue item
// c, -1 where the other side lacks the item. Serving builds these once per
// catalogue so requests translate with an array read.
func (c *Catalog) Translate(n int, id func(int32) string) (toCat, fromCat []int32) {
	toCat, fromCat = make([]int32, n), make([]int32, c.Len())
	for i := range fromCat {
		fromCat[i] = -1
	}
	for i := range toCat {
		ci, ok := c.Lookup(id(int32(i)))
		if !ok {
			toCat[i] = -1
			continue
		}
		toCat[i], fromCat[ci] = ci, int32(i)
	}
	return toCat, fromCat
}

// SameItems reports whether c and o hold the same items at the same
// indexes, so that anything keyed by index (id maps) carries over.
func (c *Catalog) SameItems(o *Catalog) bool { return slices.Equal(c.ids, o.ids) }

// Build reads the catalogue from the online store's item features as of
// now: every item of the store's current item view, through the same
// fallback cascade requests see (an item missing a value gets the feature's
// default). 200,000 items take about a tenth of a second.
func Build(ctx context.Context, store *online.Store, now time.Time, opts BuildOptions) (*Catalog, error) {
	fs := store.FeatureSet()
	layout, err := fs.NewLayout(Features)
	if err != nil {
		return nil, fmt.Errorf("catalog: the feature definitions (%s) lack a catalogue feature: %w", fs.Source(), err)
	}
	asm, err := store.NewAssembler(layout)
	if err != nil {
		return nil, err
	}
	ids := slices.Clone(store.ItemIDs())
	n := len(ids)
	cols := Columns{
		Category: make([]int32, n), Creator: make([]int32, n), AgeHours: make([]float32, n),
		Flagged: make([]bool, n), Promoted: make([]bool, n), Popularity: make([]float32, n), Trending: make([]float32, n),
	}
	se, err := asm.Begin(ctx, "", online.Request{Now: now}, nil, online.BeginOptions{NoMetrics: true})
	if err != nil {
		return nil, err
	}
	defer se.Close()
	w := layout.Width()
	rows := make([]float32, buildChunk*w)
	for lo := 0; lo < n; lo += buildChunk {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(lo+buildChunk, n)
		start := time.Now()
		if err := se.Assemble(ids[lo:hi], rows); err != nil {
			return nil, fmt.Errorf("catalog: %w", err)
		}
		for i := lo; i < hi; i++ {
			r := rows[(i-lo)*w : (i-lo+1)*w]
			cols.Category[i] = toID(r[0])
			cols.Creator[i] = toID(r[1])
			cols.AgeHours[i] = r[2]
			cols.Flagged[i] = r[3] != 0
			cols.Promoted[i] = r[4] != 0
			cols.Popularity[i] = r[5]
			cols.Trending[i] = r[6]
		}
		if opts.Share > 0 && opts.Share < 1 && hi < n {
			time.Sleep(time.Duration(float64(time.Since(start)) * (1 - opts.Share) / opts.Share))
		}
	}
	return New(ids, cols, now)
}

// MaxID bounds category and creator ids: per-category lists are indexed by
// id, and a larger id (a hash fed in by mistake) reads as unknown rather
// than allocating a slot per value.
const MaxID = 1 << 20

// toID converts an id feature to an index, -1 for unknown or nonsense.
func toID(v float32) int32 {
	if v < 0 || v >= MaxID || v != float32(int32(v)) {
		return -1
	}
	return int32(v)
}
