package sim

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
)

// Limits on generated worlds. They keep memory predictable (a 200,000-item
// catalogue with 16-dimensional latents is about 40 MB) and let the hot path
// use fixed-size scratch arrays.
const (
	MaxItems      = 200_000
	MaxCategories = 200
	MaxDim        = 64
)

// Default catalogue settings (see CatalogueConfig).
const (
	DefaultItems      = 20_000
	DefaultCategories = 30
	DefaultDim        = 16
	DefaultWindow     = 30 * 24 * time.Hour
)

// CatalogueConfig describes a generated catalogue. Zero values mean the
// documented defaults; the shares take a negative value for "none".
type CatalogueConfig struct {
	// Seed makes the catalogue reproducible.
	Seed uint64
	// Items is the catalogue size, 1..MaxItems; default DefaultItems.
	Items int
	// Categories is the number of categories, 2..MaxCategories; default
	// DefaultCategories. Their sizes follow a Zipf law.
	Categories int
	// Creators is the number of creators; default Items/25 (at least 1).
	// Their output follows a power law: a few creators make many items.
	Creators int
	// Dim is the dimension of the hidden latent vectors, 2..MaxDim; default
	// DefaultDim.
	Dim int
	// Start is the beginning of the history window; required.
	Start time.Time
	// Window is the length of the history window; default DefaultWindow.
	Window time.Duration
	// BackCatalogueShare is the share of items published during the year
	// before Start; default 0.4. The rest are published during the window.
	BackCatalogueShare float64
	// FreshShare is the share of items published during the last day of the
	// window, on top of the window's uniform spread; default 0.02.
	FreshShare float64
	// FlaggedShare is the share of items flagged by moderation; default 0.01.
	FlaggedShare float64
	// PromotedShare is the share of items the platform promotes; default 0.02.
	PromotedShare float64
}

func share(v, def float64) float64 {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

func (c CatalogueConfig) withDefaults() CatalogueConfig {
	if c.Items == 0 {
		c.Items = DefaultItems
	}
	if c.Categories == 0 {
		c.Categories = DefaultCategories
	}
	if c.Creators == 0 {
		c.Creators = max(1, c.Items/25)
	}
	if c.Dim == 0 {
		c.Dim = DefaultDim
	}
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	c.BackCatalogueShare = share(c.BackCatalogueShare, 0.4)
	c.FreshShare = share(c.FreshShare, 0.02)
	c.FlaggedShare = share(c.FlaggedShare, 0.01)
	c.PromotedShare = share(c.PromotedShare, 0.02)
	return c
}

// Validate reports every invalid field (after defaults are applied).
func (c CatalogueConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Items < 1 || c.Items > MaxItems {
		errs = append(errs, fmt.Errorf("catalogue items: %d is not in 1..%d", c.Items, MaxItems))
	}
	if c.Categories < 2 || c.Categories > MaxCategories {
		errs = append(errs, fmt.Errorf("catalogue categories: %d is not in 2..%d", c.Categories, MaxCategories))
	}
	if c.Creators < 1 {
		errs = append(errs, fmt.Errorf("catalogue creators: must be >= 1, got %d", c.Creators))
	}
	if c.Dim < 2 || c.Dim > MaxDim {
		errs = append(errs, fmt.Errorf("catalogue dim: %d is not in 2..%d", c.Dim, MaxDim))
	}
	if c.Start.IsZero() {
		errs = append(errs, errors.New("catalogue start: required"))
	}
	if c.Window < time.Hour {
		errs = append(errs, fmt.Errorf("catalogue window: must be >= 1h, got %s", c.Window))
	}
	if s := c.BackCatalogueShare + c.FreshShare; s > 1 {
		errs = append(errs, fmt.Errorf("catalogue back_catalogue_share + fresh_share: %g is more than 1", s))
	}
	for name, v := range map[string]float64{"flagged_share": c.FlaggedShare, "promoted_share": c.PromotedShare} {
		if v > 1 {
			errs = append(errs, fmt.Errorf("catalogue %s: %g is more than 1", name, v))
		}
	}
	return errors.Join(errs...)
}

// Category is a content category. Items of a category have latent vectors
// close to its centroid, and its taste peaks at a local hour of the day.
type Category struct {
	// Name is a display name ("comedy", or a MovieLens genre).
	Name string
	// Centroid is the unit latent vector the category's items cluster
	// around; nil for catalogues without latents (MovieLens).
	Centroid []float32
	// PeakHour is the local hour (0..24) at which users like the category
	// most.
	PeakHour float32
}

// Item is one catalogue item. The latent vector and quality are hidden
// ground truth: recommenders must learn them from interactions.
type Item struct {
	// ID is the item id used in events ("i000042").
	ID string
	// Title is a display name; generated items have none.
	Title string
	// Categories are indexes into Catalogue.Categories, primary first;
	// generated items have exactly one.
	Categories []int32
	// Creator is the creator index (0..Catalogue.Creators-1), -1 if unknown.
	Creator int32
	// Published is when the item became available; the zero time when
	// unknown. Items are never shown before they are published.
	Published time.Time
	// Latent is the hidden unit vector whose dot product with a user's
	// preference drives the response model; nil when the catalogue has none.
	Latent []float32
	// Quality in [0, 1] raises click, completion and purchase rates.
	Quality float32
	// Duration is the running time in seconds (0 if unknown).
	Duration float32
	// Price is the purchase price (0 if unknown).
	Price float32
	// Flagged items were flagged by moderation: users skip them more.
	Flagged bool
	// Promoted items get extra exposure from the organic feed.
	Promoted bool
}

// Category returns the item's primary category, or -1 when it has none.
func (it *Item) Category() int32 {
	if len(it.Categories) == 0 {
		return -1
	}
	return it.Categories[0]
}

// Catalogue is the set of items of a world plus the indexes the simulator
// browses by. Treat it as read-only once built; it is safe for concurrent
// reads.
type Catalogue struct {
	// Dim is the latent dimension (0 when items have no latents).
	Dim int
	// Categories are indexed by Item.Categories.
	Categories []Category
	// Creators is the number of creators.
	Creators int
	// Items are indexed by Lookup's result.
	Items []Item

	ids         map[string]int32
	pubUnix     []int64   // Published as unix seconds, for the hot path
	byPublished []int32   // all items by publish time
	byCategory  [][]int32 // per primary category, by publish time
	byCreator   [][]int32 // per creator, by publish time
	fame        []float64 // organic popularity prior per item
}

// Len returns the number of items.
func (c *Catalogue) Len() int { return len(c.Items) }

// Lookup returns the index of the item with the given id.
func (c *Catalogue) Lookup(id string) (int, bool) {
	i, ok := c.ids[id]
	return int(i), ok
}

// ItemID returns the id of the generated item with index i.
func ItemID(i int) string { return "i" + pad(i, 6) }

func pad(i, width int) string {
	s := strconv.Itoa(i)
	if len(s) >= width {
		return s
	}
	b := make([]byte, width)
	n := width - len(s)
	for j := 0; j < n; j++ {
		b[j] = '0'
	}
	copy(b[n:], s)
	return string(b)
}

var categoryNames = []string{
	"comedy", "music", "news", "gaming", "sports", "drama", "kids", "cooking",
	"tech", "travel", "fitness", "documentary", "fashion", "science", "animation",
	"finance", "crime", "history", "diy", "pets", "beauty", "cars", "nature",
	"horror", "romance", "thriller", "education", "podcasts", "anime", "live",
	"reality", "health", "art", "language", "parenting", "business", "esports",
	"politics", "faith", "comics", "poetry", "magic", "dance", "outdoors",
	"photography", "gardening", "architecture", "astronomy", "chess", "opera",
}

func categoryName(i int) string {
	if i < len(categoryNames) {
		return categoryNames[i]
	}
	return "category-" + strconv.Itoa(i)
}

// NewCatalogue generates a catalogue; the same configuration always gives the
// same catalogue.
func NewCatalogue(cfg CatalogueConfig) (*Catalogue, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	r := newRNG(mix(cfg.Seed, streamCatalogue))
	dim := cfg.Dim
	c := &Catalogue{Dim: dim, Creators: cfg.Creators}

	// Categories: Zipf sizes, random centroids, a taste peak hour and a
	// typical running time.
	catWeights := zipfWeights(cfg.Categories, 0.9)
	catAlias := newAlias(catWeights)
	centroids := make([]float32, cfg.Categories*dim)
	durScale := make([]float64, cfg.Categories)
	c.Categories = make([]Category, cfg.Categories)
	for i := range c.Categories {
		v := centroids[i*dim : (i+1)*dim : (i+1)*dim]
		randomUnit(&r, v)
		c.Categories[i] = Category{Name: categoryName(i), Centroid: v, PeakHour: float32(r.float64() * 24)}
		durScale[i] = 300 * math.Exp(0.8*r.norm())
	}

	// Creators: power-law output, a home category, a quality level.
	creatorAlias := newAlias(zipfWeights(cfg.Creators, 1.1))
	creatorCat := make([]int32, cfg.Creators)
	creatorQuality := make([]float64, cfg.Creators)
	for i := range creatorCat {
		creatorCat[i] = int32(catAlias.sample(&r))
		creatorQuality[i] = 0.6 * r.norm()
	}

	n := cfg.Items
	latents := make([]float32, n*dim)
	cats := make([]int32, n)
	c.Items = make([]Item, n)
	start := cfg.Start.Unix()
	window := int64(cfg.Window / time.Second)
	end := start + window
	noise := make([]float32, dim)
	for i := range c.Items {
		it := &c.Items[i]
		it.ID = ItemID(i)
		creator := creatorAlias.sample(&r)
		it.Creator = int32(creator)
		cat := creatorCat[creator]
		if !r.bernoulli(0.75) {
			cat = int32(catAlias.sample(&r))
		}
		cats[i] = cat
		it.Categories = cats[i : i+1 : i+1]

		lat := latents[i*dim : (i+1)*dim : (i+1)*dim]
		// Items sit around their category's centroid: cosine to it ~0.8.
		for j := range noise {
			noise[j] = float32(r.norm() / math.Sqrt(float64(dim)))
		}
		cen := c.Categories[cat].Centroid
		for j := range lat {
			lat[j] = cen[j] + 0.75*noise[j]
		}
		normalize(lat)
		it.Latent = lat

		it.Quality = float32(sigmoid(creatorQuality[creator] + 0.8*r.norm()))
		if r.bernoulli(cfg.FlaggedShare) {
			it.Flagged = true
			it.Quality *= 0.5
		}
		it.Promoted = r.bernoulli(cfg.PromotedShare)

		var pub int64
		switch u := r.float64(); {
		case u < cfg.BackCatalogueShare:
			pub = start - int64(r.float64()*365*86400)
		case u < cfg.BackCatalogueShare+cfg.FreshShare:
			pub = end - int64(r.float64()*86400)
		default:
			pub = start + int64(r.float64()*float64(window))
		}
		it.Published = time.Unix(pub, 0).UTC()

		d := durScale[cat] * math.Exp(0.6*r.norm())
		it.Duration = float32(math.Round(min(max(d, 10), 4*3600)))
		p := 9.99 * math.Exp(0.9*r.norm())
		it.Price = float32(math.Round(min(max(p, 0.99), 999)*100) / 100)
	}
	if err := c.index(); err != nil {
		return nil, err
	}
	return c, nil
}

// index checks the catalogue and builds the lookup and browsing indexes.
func (c *Catalogue) index() error {
	n := len(c.Items)
	c.ids = make(map[string]int32, n)
	c.pubUnix = make([]int64, n)
	c.byCategory = make([][]int32, len(c.Categories))
	if c.Creators < 0 {
		return fmt.Errorf("catalogue: creators %d < 0", c.Creators)
	}
	c.byCreator = make([][]int32, c.Creators)
	for i := range c.Categories {
		if cen := c.Categories[i].Centroid; cen != nil && len(cen) != c.Dim {
			return fmt.Errorf("catalogue category %d: centroid has %d dimensions, want %d", i, len(cen), c.Dim)
		}
	}
	for i := range c.Items {
		it := &c.Items[i]
		if it.ID == "" {
			return fmt.Errorf("catalogue item %d: empty id", i)
		}
		if j, dup := c.ids[it.ID]; dup {
			return fmt.Errorf("catalogue item %d: id %q already used by item %d", i, it.ID, j)
		}
		c.ids[it.ID] = int32(i)
		if it.Latent != nil && len(it.Latent) != c.Dim {
			return fmt.Errorf("catalogue item %s: latent has %d dimensions, want %d", it.ID, len(it.Latent), c.Dim)
		}
		for _, cat := range it.Categories {
			if cat < 0 || int(cat) >= len(c.Categories) {
				return fmt.Errorf("catalogue item %s: category %d out of range 0..%d", it.ID, cat, len(c.Categories)-1)
			}
		}
		if it.Creator < -1 || int(it.Creator) >= c.Creators {
			return fmt.Errorf("catalogue item %s: creator %d out of range -1..%d", it.ID, it.Creator, c.Creators-1)
		}
		if it.Published.IsZero() {
			c.pubUnix[i] = math.MinInt64
		} else {
			c.pubUnix[i] = it.Published.Unix()
		}
	}
	byPub := func(a, b int32) int {
		if d := cmpInt64(c.pubUnix[a], c.pubUnix[b]); d != 0 {
			return d
		}
		return cmpInt64(int64(a), int64(b))
	}
	c.byPublished = make([]int32, n)
	for i := range c.byPublished {
		c.byPublished[i] = int32(i)
	}
	slices.SortFunc(c.byPublished, byPub)
	for _, i := range c.byPublished {
		it := &c.Items[i]
		if cat := it.Category(); cat >= 0 {
			c.byCategory[cat] = append(c.byCategory[cat], i)
		}
		if it.Creator >= 0 {
			c.byCreator[it.Creator] = append(c.byCreator[it.Creator], i)
		}
	}
	// The organic feed's prior: famous creators (low indexes: creator
	// output and fame both follow their rank) and promoted items are seen
	// more before any interaction exists.
	c.fame = make([]float64, n)
	for i := range c.fame {
		it := &c.Items[i]
		f := 0.5 + float64(it.Quality)
		if it.Creator >= 0 {
			f /= math.Pow(float64(it.Creator)+1, 0.8)
		} else {
			f /= 10
		}
		if it.Promoted {
			f *= 4
		}
		c.fame[i] = f
	}
	return nil
}

// fingerprint hashes what the simulator uses of every item, so that two
// catalogues that behave differently get different fingerprints.
func (c *Catalogue) fingerprint() uint64 {
	h := mix(uint64(c.Dim), uint64(len(c.Categories)), uint64(c.Creators), uint64(len(c.Items)))
	for _, cat := range c.Categories {
		h = mix(h, uint64(math.Float32bits(cat.PeakHour)), hashFloats(cat.Centroid))
	}
	for i := range c.Items {
		it := &c.Items[i]
		var flags uint64
		if it.Flagged {
			flags |= 1
		}
		if it.Promoted {
			flags |= 2
		}
		h = mix(h, hashString(it.ID), uint64(it.Category()), uint64(it.Creator), uint64(c.pubUnix[i]),
			uint64(math.Float32bits(it.Quality))<<32|uint64(math.Float32bits(it.Duration)),
			uint64(math.Float32bits(it.Price))<<2|flags, hashFloats(it.Latent))
	}
	return h
}

func hashFloats(v []float32) uint64 {
	h := uint64(len(v))
	for _, x := range v {
		h = splitmix(h ^ uint64(math.Float32bits(x)))
	}
	return h
}

func hashString(s string) uint64 {
	h := uint64(len(s))
	for i := 0; i < len(s); i++ {
		h = h*0x100000001b3 ^ uint64(s[i])
	}
	return h
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// publishedBefore returns how many items of list (sorted by publish time)
// are published at or before t (unix seconds).
func (c *Catalogue) publishedBefore(list []int32, t int64) int {
	i, _ := slices.BinarySearchFunc(list, t, func(item int32, t int64) int {
		if c.pubUnix[item] <= t {
			return -1
		}
		return 1
	})
	return i
}
