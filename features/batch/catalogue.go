package batch

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/adaptrec/adaptrec/sim"
)

// ItemInfo is what the batch lane reads from the catalogue about an item.
type ItemInfo struct {
	// Category is the primary category index, Creator the creator index;
	// -1 when unknown.
	Category, Creator int32
	// Published is when the item became available; zero when unknown.
	Published time.Time
	// Duration is the running time in seconds, Price the purchase price;
	// 0 when unknown.
	Duration, Price float64
	// Flagged and Promoted are the moderation and promotion flags.
	Flagged, Promoted bool
}

// Catalogue holds item metadata the event log lacks (categories,
// creators, publish times, durations, prices, flags). It is optional: the
// features that need it keep their defaults without one.
type Catalogue struct {
	ids   []string
	infos []ItemInfo
	index map[string]int
}

// NewCatalogue builds a catalogue from item ids and their metadata; ids must
// be unique.
func NewCatalogue(ids []string, infos []ItemInfo) (*Catalogue, error) {
	if len(ids) != len(infos) {
		return nil, fmt.Errorf("catalogue: %d ids for %d items", len(ids), len(infos))
	}
	c := &Catalogue{ids: ids, infos: infos, index: make(map[string]int, len(ids))}
	for i, id := range ids {
		if _, dup := c.index[id]; dup {
			return nil, fmt.Errorf("catalogue: item %q appears twice", id)
		}
		c.index[id] = i
	}
	return c, nil
}

// CatalogueFromSim converts a simulated world's catalogue.
func CatalogueFromSim(sc *sim.Catalogue) *Catalogue {
	ids := make([]string, len(sc.Items))
	infos := make([]ItemInfo, len(sc.Items))
	for i := range sc.Items {
		it := &sc.Items[i]
		ids[i] = it.ID
		infos[i] = ItemInfo{
			Category:  it.Category(),
			Creator:   it.Creator,
			Published: it.Published,
			Duration:  float64(it.Duration),
			Price:     float64(it.Price),
			Flagged:   it.Flagged,
			Promoted:  it.Promoted,
		}
	}
	c, _ := NewCatalogue(ids, infos) // sim catalogues have unique ids
	return c
}

// ReadSimCatalogue reads a simulated world's catalogue stored at key (the
// demo stores it at worlds/<id>/catalogue.bin, activities.CatalogueKey).
func ReadSimCatalogue(ctx context.Context, st Store, key string) (*Catalogue, error) {
	b, _, err := st.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read catalogue: %w", err)
	}
	sc, err := sim.ReadCatalogue(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("read catalogue %s: %w", key, err)
	}
	return CatalogueFromSim(sc), nil
}

// Len returns the number of items.
func (c *Catalogue) Len() int { return len(c.ids) }

// Lookup returns an item's metadata.
func (c *Catalogue) Lookup(id string) (ItemInfo, bool) {
	i, ok := c.index[id]
	if !ok {
		return ItemInfo{}, false
	}
	return c.infos[i], true
}
