package batch

import (
	"cmp"
	"math"
	"math/bits"
	"slices"
	"strconv"

	"github.com/adaptrec/adaptrec/features"
)

// Range bounds every component of a feature's values; validation refuses a
// snapshot with a value outside it.
type Range struct{ Min, Max float64 }

var (
	rate     = Range{0, 1}
	nonNeg   = Range{0, math.Inf(1)}
	indexish = Range{-1, math.Inf(1)}
)

// need is an input beyond the event log that a computation requires.
type need uint8

const (
	needNothing need = iota
	needCatalogue
	needZones
)

// computation computes one batch feature for one entity (an index into the
// aggregator's users, items or pairs) into dst (the feature's width).
type computation struct {
	entity features.Entity
	bounds Range
	needs  need
	fill   func(c *computed, e int32, f *features.Feature, dst []float64)
	// fillMap computes a map feature instead; nil for fixed-width ones.
	fillMap func(c *computed, e int32) map[string]float64
	// vector computations fill a vector of the feature's dimension; the
	// others fill one value.
	vector bool
}

// fits says why a feature defined as f cannot take this computation's
// values, or "" when it can.
func (c computation) fits(f *features.Feature) string {
	switch {
	case f.Entity != c.entity:
		return "computed for the " + c.entity.String() + " entity, defined for " + f.Entity.String()
	case c.fillMap != nil && f.Type.Kind != features.KindMap:
		return "computed as a map, defined as " + f.Type.String()
	case c.fillMap == nil && c.vector && f.Type.Kind != features.KindVector:
		return "computed as a vector, defined as " + f.Type.String()
	case c.fillMap == nil && !c.vector && f.Type.Width() != 1:
		return "computed as one number, defined as " + f.Type.String()
	}
	return ""
}

// computations are the batch features this package computes, by name.
var computations = map[string]computation{
	// ------------------------------------------------------------- items
	"item_ctr_1d": itemRate(func(a *itemAgg) (float64, float64) { return float64(a.clicks1d), float64(a.impr1d) }),
	"item_ctr_7d": itemRate(func(a *itemAgg) (float64, float64) { return float64(a.clicks7d), float64(a.impr7d) }),
	"item_ctr_30d": itemRate(func(a *itemAgg) (float64, float64) {
		return float64(a.clicks30d), float64(a.impr30d)
	}),
	"item_ctr_position_adjusted_7d": {entity: features.EntityItem, bounds: nonNeg, fill: func(c *computed, e int32, f *features.Feature, dst []float64) {
		a := &c.it[e]
		expected := a.posWeight7d * c.globalCTR7d
		// Not capped at 1: above 1 the item beats its slots.
		dst[0] = (float64(a.clicks7d) + PriorWeight*prior(f)) / (expected + PriorWeight)
	}},
	"item_impressions_1d":    itemCount(func(a *itemAgg) int64 { return a.impr1d }),
	"item_impressions_7d":    itemCount(func(a *itemAgg) int64 { return a.impr7d }),
	"item_clicks_7d":         itemCount(func(a *itemAgg) int64 { return a.clicks7d }),
	"item_unique_viewers_7d": itemCount(func(a *itemAgg) int64 { return a.viewers7d }),
	"item_browse_views_7d":   itemCount(func(a *itemAgg) int64 { return a.browseViews7d }),
	"item_watch_rate_7d":     itemRate(func(a *itemAgg) (float64, float64) { return float64(a.watches7d), float64(a.opens7d) }),
	"item_completion_rate_7d": itemRate(func(a *itemAgg) (float64, float64) {
		return float64(a.completes7d), float64(a.watches7d)
	}),
	"item_watch_seconds_mean_7d": itemFloat(nonNeg, needNothing, func(c *computed, a *itemAgg) (float64, bool) {
		return mean(a.watchSec7d, a.watches7d), true
	}),
	"item_watch_fraction_mean_7d": itemFloat(rate, needCatalogue, func(c *computed, a *itemAgg) (float64, bool) {
		return mean(a.watchFrac7d, a.watchFracN), a.hasInfo
	}),
	"item_skip_rate_7d": itemRate(func(a *itemAgg) (float64, float64) { return float64(a.skips7d), float64(a.impr7d) }),
	"item_purchase_rate_30d": itemRate(func(a *itemAgg) (float64, float64) {
		return float64(a.purchases30d), float64(a.opens30d)
	}),
	"item_revenue_7d": itemFloat(nonNeg, needNothing, func(c *computed, a *itemAgg) (float64, bool) { return a.revenue7d, true }),
	"item_age_hours": itemFloat(nonNeg, needCatalogue, func(c *computed, a *itemAgg) (float64, bool) {
		if !a.hasInfo || a.info.Published.IsZero() {
			return 0, false
		}
		return max(float64(c.asOf-a.info.Published.UnixMilli())/3.6e6, 0), true
	}),
	"item_category_id": itemFloat(indexish, needCatalogue, func(c *computed, a *itemAgg) (float64, bool) {
		return float64(a.info.Category), a.hasInfo
	}),
	"item_creator_id": itemFloat(indexish, needCatalogue, func(c *computed, a *itemAgg) (float64, bool) {
		return float64(a.info.Creator), a.hasInfo
	}),
	"item_duration_s": itemFloat(nonNeg, needCatalogue, func(c *computed, a *itemAgg) (float64, bool) {
		return max(a.info.Duration, 0), a.hasInfo
	}),
	"item_price": itemFloat(nonNeg, needCatalogue, func(c *computed, a *itemAgg) (float64, bool) {
		return max(a.info.Price, 0), a.hasInfo
	}),
	"item_is_flagged": itemFloat(rate, needCatalogue, func(c *computed, a *itemAgg) (float64, bool) {
		return b2f(a.info.Flagged), a.hasInfo
	}),
	"item_is_promoted": itemFloat(rate, needCatalogue, func(c *computed, a *itemAgg) (float64, bool) {
		return b2f(a.info.Promoted), a.hasInfo
	}),
	"item_creator_ctr_30d": {entity: features.EntityItem, bounds: rate, needs: needCatalogue, fill: func(c *computed, e int32, f *features.Feature, dst []float64) {
		a := &c.it[e]
		if !a.hasInfo || a.info.Creator < 0 {
			setDefault(f, dst)
			return
		}
		cr := a.info.Creator
		dst[0] = smooth(float64(c.creatorClicks30d[cr]), float64(c.creatorImpr30d[cr]), prior(f))
	}},
	"item_creator_items": itemFloat(nonNeg, needCatalogue, func(c *computed, a *itemAgg) (float64, bool) {
		if !a.hasInfo || a.info.Creator < 0 {
			return 0, false
		}
		return float64(c.creatorItems[a.info.Creator]), true
	}),
	"item_category_ctr_7d": {entity: features.EntityItem, bounds: rate, needs: needCatalogue, fill: func(c *computed, e int32, f *features.Feature, dst []float64) {
		a := &c.it[e]
		if !a.hasInfo || a.info.Category < 0 {
			setDefault(f, dst)
			return
		}
		k := a.info.Category
		dst[0] = smooth(float64(c.catClicks7d[k]), float64(c.catImpr7d[k]), prior(f))
	}},

	// ------------------------------------------------------------- users
	"user_ctr_30d": {entity: features.EntityUser, bounds: rate, fill: func(c *computed, e int32, f *features.Feature, dst []float64) {
		dst[0] = c.userCTR(e, prior(f))
	}},
	"user_impressions_30d":   userCount(func(a *userAgg) int64 { return a.impr }),
	"user_clicks_30d":        userCount(func(a *userAgg) int64 { return a.clicks }),
	"user_purchases_30d":     userCount(func(a *userAgg) int64 { return a.purchases }),
	"user_spend_30d":         userValue(func(a *userAgg) float64 { return a.spend }),
	"user_watch_seconds_30d": userValue(func(a *userAgg) float64 { return a.watchSec }),
	"user_completion_rate_30d": userRate(func(a *userAgg) (float64, float64) {
		return float64(a.completes), float64(a.watches)
	}),
	"user_skip_rate_30d": userRate(func(a *userAgg) (float64, float64) { return float64(a.skips), float64(a.impr) }),
	"user_active_days_30d": {entity: features.EntityUser, bounds: Range{0, MaxDays + 1}, fill: func(c *computed, e int32, f *features.Feature, dst []float64) {
		dst[0] = float64(bits.OnesCount64(c.u[e].days))
	}},
	"user_sessions_30d": {entity: features.EntityUser, bounds: nonNeg, fill: func(c *computed, e int32, f *features.Feature, dst []float64) {
		dst[0] = float64(c.sessions[e])
	}},
	"user_avg_session_length_s": {entity: features.EntityUser, bounds: nonNeg, fill: func(c *computed, e int32, f *features.Feature, dst []float64) {
		dst[0] = mean(c.sessionSeconds[e], c.sessions[e])
	}},
	"user_tenure_days": {entity: features.EntityUser, bounds: nonNeg, fill: func(c *computed, e int32, f *features.Feature, dst []float64) {
		dst[0] = float64((c.asOf - c.u[e].first) / Day.Milliseconds())
	}},
	"user_category_affinity": {entity: features.EntityUser, bounds: rate, vector: true, needs: needCatalogue, fill: func(c *computed, e int32, f *features.Feature, dst []float64) {
		a := &c.u[e]
		clear(dst)
		if a.knownCatClicks == 0 {
			return
		}
		for k, n := range a.catClicks {
			dst[k%len(dst)] += float64(n) / float64(a.knownCatClicks)
		}
	}},
	"user_hour_profile": {entity: features.EntityUser, bounds: rate, vector: true, needs: needZones, fill: func(c *computed, e int32, f *features.Feature, dst []float64) {
		a := &c.u[e]
		clear(dst)
		var total int32
		for _, n := range a.hours {
			total += n
		}
		if total == 0 || len(dst) != len(a.hours) {
			setDefault(f, dst)
			return
		}
		for h, n := range a.hours {
			dst[h] = float64(n) / float64(total)
		}
	}},
	"user_device_share": {entity: features.EntityUser, bounds: rate, vector: true, fill: func(c *computed, e int32, f *features.Feature, dst []float64) {
		clear(dst)
		if c.sessions[e] == 0 {
			return
		}
		for d, n := range c.deviceSessions[e] {
			if d < len(dst) {
				dst[d] = float64(n) / float64(c.sessions[e])
			}
		}
	}},
	"user_creator_clicks_30d": {entity: features.EntityUser, bounds: nonNeg, needs: needCatalogue, fillMap: func(c *computed, e int32) map[string]float64 {
		return topCreators(c.u[e].creators, MaxCreatorsPerUser)
	}},

	// ------------------------------------------------------- user × item
	"ui_creator_affinity_30d": {entity: features.EntityUserItem, bounds: rate, needs: needCatalogue, fill: func(c *computed, e int32, f *features.Feature, dst []float64) {
		p := &c.pairs[e]
		u, it := &c.u[p.user], &c.it[p.item]
		if u.clicks == 0 || !it.hasInfo || it.info.Creator < 0 {
			dst[0] = 0
			return
		}
		dst[0] = float64(u.creators[it.info.Creator]) / float64(u.clicks)
	}},
	"ui_category_ctr_30d": {entity: features.EntityUserItem, bounds: rate, needs: needCatalogue, fill: func(c *computed, e int32, f *features.Feature, dst []float64) {
		p := &c.pairs[e]
		it := &c.it[p.item]
		// The prior is the user's own smoothed CTR (0.03 without
		// impressions: user_ctr_30d's default, which equals this one's).
		userCTR := c.userCTR(p.user, prior(f))
		if !it.hasInfo || it.info.Category < 0 {
			dst[0] = userCTR
			return
		}
		uc := c.userCategory[ucKey(p.user, it.info.Category)]
		dst[0] = smooth(float64(uc.clicks), float64(uc.impr), userCTR)
	}},
	"ui_impressions_7d": {entity: features.EntityUserItem, bounds: nonNeg, fill: func(c *computed, e int32, f *features.Feature, dst []float64) {
		dst[0] = float64(c.pairs[e].impr7d)
	}},
	"ui_clicked_30d": {entity: features.EntityUserItem, bounds: rate, fill: func(c *computed, e int32, f *features.Feature, dst []float64) {
		dst[0] = b2f(c.pairs[e].clicks30d > 0)
	}},
}

// MaxCreatorsPerUser is how many creators user_creator_clicks_30d keeps.
const MaxCreatorsPerUser = 50

// Computed lists the features this package computes, sorted.
func Computed() []string {
	out := make([]string, 0, len(computations))
	for n := range computations {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func itemRate(sn func(*itemAgg) (float64, float64)) computation {
	return computation{entity: features.EntityItem, bounds: rate, fill: func(c *computed, e int32, f *features.Feature, dst []float64) {
		s, n := sn(&c.it[e])
		dst[0] = smooth(s, n, prior(f))
	}}
}

func itemCount(n func(*itemAgg) int64) computation {
	return computation{entity: features.EntityItem, bounds: nonNeg, fill: func(c *computed, e int32, f *features.Feature, dst []float64) {
		dst[0] = float64(n(&c.it[e]))
	}}
}

// itemFloat computes a one-value item feature; ok false means the input is
// unknown for this item and the feature keeps its default.
func itemFloat(r Range, nd need, v func(*computed, *itemAgg) (float64, bool)) computation {
	return computation{entity: features.EntityItem, bounds: r, needs: nd, fill: func(c *computed, e int32, f *features.Feature, dst []float64) {
		x, ok := v(c, &c.it[e])
		if !ok {
			setDefault(f, dst)
			return
		}
		dst[0] = x
	}}
}

func userRate(sn func(*userAgg) (float64, float64)) computation {
	return computation{entity: features.EntityUser, bounds: rate, fill: func(c *computed, e int32, f *features.Feature, dst []float64) {
		s, n := sn(&c.u[e])
		dst[0] = smooth(s, n, prior(f))
	}}
}

func userCount(n func(*userAgg) int64) computation {
	return computation{entity: features.EntityUser, bounds: nonNeg, fill: func(c *computed, e int32, f *features.Feature, dst []float64) {
		dst[0] = float64(n(&c.u[e]))
	}}
}

func userValue(v func(*userAgg) float64) computation {
	return computation{entity: features.EntityUser, bounds: nonNeg, fill: func(c *computed, e int32, f *features.Feature, dst []float64) {
		dst[0] = v(&c.u[e])
	}}
}

func mean[N int64 | int32](sum float64, n N) float64 {
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// prior is a float feature's default as written in features.yaml (0.3,
// not the float32 0.30000001192…).
func prior(f *features.Feature) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(float64(f.Default.Float), 'g', -1, 32), 64)
	return v
}

func setDefault(f *features.Feature, dst []float64) {
	switch f.Type.Kind {
	case features.KindFloat:
		dst[0] = prior(f)
	case features.KindInt:
		dst[0] = float64(f.Default.Int)
	case features.KindVector:
		for i, v := range f.Default.Vector {
			dst[i] = float64(v)
		}
	}
}

// topCreators keeps the n creators with the most clicks (ties: lower
// index first), keyed by decimal creator index.
func topCreators(m map[int32]int32, n int) map[string]float64 {
	if len(m) == 0 {
		return nil
	}
	type kv struct{ k, v int32 }
	all := make([]kv, 0, len(m))
	for k, v := range m {
		all = append(all, kv{k, v})
	}
	slices.SortFunc(all, func(a, b kv) int { return cmp.Or(cmp.Compare(b.v, a.v), cmp.Compare(a.k, b.k)) })
	out := make(map[string]float64, min(n, len(all)))
	for _, e := range all[:min(n, len(all))] {
		out[strconv.Itoa(int(e.k))] = float64(e.v)
	}
	return out
}

type ucCounts struct{ impr, clicks int64 }

func ucKey(user, category int32) uint64 { return uint64(uint32(user))<<32 | uint64(uint32(category)) }

// computed is the aggregator after the scan, with the derived per-user
// tables the computations read.
type computed struct {
	*aggregator
	globalCTR7d    float64
	sessions       []int64
	sessionSeconds []float64
	deviceSessions [][]int64
	userCategory   map[uint64]ucCounts
}

func (a *aggregator) finish() *computed {
	c := &computed{aggregator: a}
	if a.impr7d > 0 {
		c.globalCTR7d = float64(a.clicks7d) / float64(a.impr7d)
	}
	c.sessions = make([]int64, len(a.u))
	c.sessionSeconds = make([]float64, len(a.u))
	c.deviceSessions = make([][]int64, len(a.u))
	for s, sa := range a.sess {
		u := a.sessUser[s]
		c.sessions[u]++
		c.sessionSeconds[u] += float64(sa.last-sa.first) / 1e3
		if sa.device >= 0 {
			if c.deviceSessions[u] == nil {
				c.deviceSessions[u] = make([]int64, len(a.devices))
			}
			c.deviceSessions[u][sa.device]++
		}
	}
	if a.catalogue != nil {
		c.userCategory = make(map[uint64]ucCounts)
		for i := range a.pairs {
			p := &a.pairs[i]
			it := &a.it[p.item]
			if !it.hasInfo || it.info.Category < 0 || (p.impr30d == 0 && p.clicks30d == 0) {
				continue
			}
			k := ucKey(p.user, it.info.Category)
			uc := c.userCategory[k]
			uc.impr += int64(p.impr30d)
			uc.clicks += int64(p.clicks30d)
			c.userCategory[k] = uc
		}
	}
	return c
}

func (c *computed) userCTR(u int32, prior float64) float64 {
	a := &c.u[u]
	return smooth(float64(a.clicks), float64(a.impr), prior)
}
