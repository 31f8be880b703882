package online

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/adaptrec/adaptrec/features"
)

// featPlan is one feature of a stored group: where its values sit in the
// store's packed rows and how its freshness is judged.
type featPlan struct {
	f *features.Feature
	// pos is the feature's position in its group: its presence bit and its
	// timestamp column.
	pos int
	// off is the offset of its values in a row's nums (float, vector) or
	// ints (int); lists and maps are not held in rows.
	off   int
	kind  features.Kind
	width int
	// ttl and sla in milliseconds; 0 when not declared.
	ttl, sla int64
	// fresh is how old a nearline value may be before it counts as stale:
	// the SLA, or the ttl when no SLA is declared.
	fresh int64
	// twin is the batch feature that stands in for a stale nearline value.
	twin *features.Feature
	// always: a list or map decoded even for ranking (Session without
	// Lists), because a cross feature reads it.
	always bool
}

// groupPlan is one storage group as the store keeps it.
type groupPlan struct {
	name   string
	entity features.Entity
	lane   features.Lane
	feats  []featPlan
	// held are the features item caches hold: lists and maps are not kept
	// in item rows.
	held   []featPlan
	byName map[string]int
	// Row shape: float and vector values, int values, presence words.
	numWidth, intCount, words int
	// maxTTL is the longest ttl of the group's features: nearline keys
	// expire after it.
	maxTTL time.Duration
	// indicator is set to 1 on entities whose values of this (nearline)
	// group were stale or unavailable.
	indicator *features.Feature
	// served says the store reads this group; false for the request group
	// and groups holding only staleness indicators.
	served bool
	// index is the group's position in plan.groups and Result.Groups.
	index int
}

// plan is everything the store derives once from the feature definitions.
type plan struct {
	fs     *features.FeatureSet
	groups []*groupPlan // every group, in FeatureSet.Groups order
	byName map[string]*groupPlan
	// Groups the store serves, by entity and lane.
	userBatch, userNearline, itemBatch, itemNearline []*groupPlan
	// pairBatch and pairNearline are the user×item groups; pairAll both.
	pairBatch, pairNearline, pairAll []*groupPlan
	// request is the request group, nil when the set has none.
	request *groupPlan
	// cross is the group of the cross features (user×item, computed per
	// candidate by features.FillCross), nil when the set has none.
	cross *groupPlan
	// indicators are the features the store computes.
	indicators map[features.ID]bool
	// featGroup finds a stored feature's group and position.
	featGroup map[features.ID]*groupPlan
	// itemProbe is an item feature whose presence touch reads.
	itemProbe features.ID
}

func newPlan(fs *features.FeatureSet, twins, indicators map[string]string) (*plan, error) {
	p := &plan{
		fs:         fs,
		byName:     map[string]*groupPlan{},
		indicators: map[features.ID]bool{},
		featGroup:  map[features.ID]*groupPlan{},
	}
	var errs []error
	for _, name := range sortedKeys(indicators) {
		f, ok := fs.Lookup(indicators[name])
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("StaleIndicators[%s]: feature %q is not defined in %s", name, indicators[name], fs.Source()))
			continue
		case f.Type.Kind != features.KindInt && f.Type.Kind != features.KindFloat:
			errs = append(errs, fmt.Errorf("StaleIndicators[%s]: %s is a %s, want int or float", name, f.Name, f.Type))
		case f.Default.Int != 0 || f.Default.Float != 0:
			errs = append(errs, fmt.Errorf("StaleIndicators[%s]: %s must default to 0 (not stale)", name, f.Name))
		}
		p.indicators[f.ID] = true
	}
	for i, g := range fs.Groups() {
		gp := &groupPlan{name: g.Name, entity: g.Entity, lane: g.Lane, byName: map[string]int{}, index: i}
		for _, f := range g.Features {
			if p.indicators[f.ID] {
				continue
			}
			fp := featPlan{f: f, pos: len(gp.feats), kind: f.Type.Kind, width: f.Type.Width(),
				ttl: f.TTL.Milliseconds(), sla: f.FreshnessSLA.Milliseconds()}
			fp.fresh = fp.sla
			if fp.fresh == 0 {
				fp.fresh = fp.ttl
			}
			switch fp.kind {
			case features.KindFloat, features.KindVector:
				fp.off = gp.numWidth
				gp.numWidth += fp.width
			case features.KindInt:
				fp.off = gp.intCount
				gp.intCount++
			}
			gp.maxTTL = max(gp.maxTTL, f.TTL)
			gp.byName[f.Name] = len(gp.feats)
			gp.feats = append(gp.feats, fp)
			p.featGroup[f.ID] = gp
		}
		gp.words = (len(gp.feats) + 63) / 64
		switch {
		case len(gp.feats) == 0:
			// Only staleness indicators: computed, never read.
		case g.Entity == features.EntityRequest:
			p.request = gp
		case g.Entity == features.EntityUserItem && g.Lane == features.LaneRequest:
			p.cross = gp
		case g.Entity == features.EntityUser && g.Lane == features.LaneBatch:
			gp.served = true
			p.userBatch = append(p.userBatch, gp)
		case g.Entity == features.EntityUser && g.Lane == features.LaneNearline:
			gp.served = true
			p.userNearline = append(p.userNearline, gp)
		case g.Entity == features.EntityItem && g.Lane == features.LaneBatch:
			gp.served = true
			p.itemBatch = append(p.itemBatch, gp)
		case g.Entity == features.EntityItem && g.Lane == features.LaneNearline:
			gp.served = true
			p.itemNearline = append(p.itemNearline, gp)
		case g.Entity == features.EntityUserItem && g.Lane == features.LaneBatch:
			gp.served = true
			p.pairBatch = append(p.pairBatch, gp)
			p.pairAll = append(p.pairAll, gp)
		case g.Entity == features.EntityUserItem && g.Lane == features.LaneNearline:
			gp.served = true
			p.pairNearline = append(p.pairNearline, gp)
			p.pairAll = append(p.pairAll, gp)
		}
		p.groups = append(p.groups, gp)
		p.byName[g.Name] = gp
	}
	for _, name := range sortedKeys(indicators) {
		gp, ok := p.byName[name]
		f, fok := fs.Lookup(indicators[name])
		switch {
		case !fok:
		case !ok || gp.lane != features.LaneNearline || !gp.served || gp.entity == features.EntityUserItem:
			errs = append(errs, fmt.Errorf("StaleIndicators[%s]: not a user or item nearline group of %s", name, fs.Source()))
		case f.Entity != gp.entity:
			errs = append(errs, fmt.Errorf("StaleIndicators[%s]: %s is a %s feature, the group holds %s features", name, f.Name, f.Entity, gp.entity))
		default:
			gp.indicator = f
		}
	}
	for _, name := range sortedKeys(twins) {
		nf, ok := fs.Lookup(name)
		if !ok {
			errs = append(errs, fmt.Errorf("BatchTwins: nearline feature %q is not defined in %s", name, fs.Source()))
			continue
		}
		bf, ok := fs.Lookup(twins[name])
		if !ok {
			errs = append(errs, fmt.Errorf("BatchTwins[%s]: batch feature %q is not defined in %s", name, twins[name], fs.Source()))
			continue
		}
		ng, bg := p.featGroup[nf.ID], p.featGroup[bf.ID]
		switch {
		case nf.Lane != features.LaneNearline || ng == nil || !ng.served:
			errs = append(errs, fmt.Errorf("BatchTwins[%s]: not a user or item nearline feature", name))
		case bf.Lane != features.LaneBatch || bg == nil || !bg.served:
			errs = append(errs, fmt.Errorf("BatchTwins[%s]: %s is not a user or item batch feature", name, bf.Name))
		case nf.Entity != bf.Entity || nf.Type != bf.Type:
			errs = append(errs, fmt.Errorf("BatchTwins[%s]: %s is a %s %s, the nearline feature a %s %s: a twin has the same entity and type",
				name, bf.Name, bf.Entity, bf.Type, nf.Entity, nf.Type))
		default:
			ng.feats[ng.byName[name]].twin = bf
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("online: %w", errors.Join(errs...))
	}
	if items := fs.Entity(features.EntityItem); len(items) > 0 {
		p.itemProbe = items[0].ID
	}
	if p.cross != nil && fs.NeedsSession() {
		if f, ok := fs.Lookup(features.FeatureSessionRecentItems); ok {
			if gp := p.featGroup[f.ID]; gp != nil {
				gp.feats[gp.byName[f.Name]].always = true
			}
		}
	}
	// Copies, so taken once twins are known.
	for _, gp := range p.groups {
		for _, fp := range gp.feats {
			if fp.width > 0 {
				gp.held = append(gp.held, fp)
			}
		}
	}
	return p, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
