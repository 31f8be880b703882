package online

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/adaptrec/adaptrec/features"
)

// Explained is one feature value as Explain found it.
type Explained struct {
	// Entity is the value's entity; EntityID the user or item id ("" for
	// request features).
	Entity   features.Entity
	EntityID string
	// Feature is the definition.
	Feature *features.Feature
	// Value is the value served (a copy).
	Value features.Value
	// Source says where it came from.
	Source Source
	// UpdatedAt is when a stored value was computed: its snapshot's data
	// cutoff for batch values, its write time for nearline values; zero
	// for defaults and request values.
	UpdatedAt time.Time
	// Version is the batch snapshot version read; empty otherwise.
	Version string
}

// Explanation is the outcome of Explain.
type Explanation struct {
	// Result is the per-group report, as Assemble gives it.
	Result Result
	// Values holds every feature of the user, the request and each item in
	// turn, each item followed by its user×item features (EntityID is the
	// item's id: the user is the one asked about), each entity's in
	// canonical order.
	Values []Explained
}

// Explain reads every feature of a user, a request and some items, lists
// and maps included, through the same reads and cascade as Assemble, and
// says for each value where it came from. It is the diagnostic path behind
// `adaptrec features get`: it allocates freely.
func (s *Store) Explain(ctx context.Context, userID string, itemIDs []string, req Request) (*Explanation, error) {
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	a := &Assembler{s: s}
	for _, f := range s.plan.fs.All() {
		a.vecLen = max(a.vecLen, f.Type.Width())
	}
	sc := a.newScratch()
	ex := &Explanation{}
	res := &ex.Result
	v := s.view.Load()
	res.reset(s.plan)

	type traced struct {
		item    int
		f       *features.Feature
		src     Source
		atMs    int64
		version string
	}
	var seen []traced
	tr := func(item int, f *features.Feature, src Source, atMs int64, version string) {
		seen = append(seen, traced{item, f, src, atMs, version})
	}
	s.readUser(ctx, v, userID, time.Now(), sc)
	if sc.degraded != "" {
		res.Degraded, res.DegradedReason = true, sc.degraded
	}
	if err := s.fillUser(v, now, sc, res, true, tr); err != nil {
		return nil, err
	}
	if err := s.fillRequest(req.Context, sc, res, tr); err != nil {
		return nil, err
	}
	if err := s.fillItems(v, itemIDs, now, sc, res, tr); err != nil {
		return nil, err
	}
	if err := s.fillPairs(v, itemIDs, now, sc, res, tr); err != nil {
		return nil, err
	}
	se := &Session{sc: sc, v: v, res: res, now: now}
	if err := s.fillCross(se, len(itemIDs), tr); err != nil {
		return nil, err
	}
	s.countNotServed(res, len(itemIDs))

	// One entry per (entity, feature) in canonical order.
	slices.SortStableFunc(seen, func(x, y traced) int {
		if x.item != y.item {
			return x.item - y.item
		}
		if x.f.Entity != y.f.Entity {
			return int(x.f.Entity) - int(y.f.Entity)
		}
		return int(x.f.ID) - int(y.f.ID)
	})
	for _, t := range seen {
		e := Explained{Entity: t.f.Entity, Feature: t.f, Source: t.src, Version: t.version}
		rec := sc.user
		switch {
		case t.item >= 0 && t.f.Entity == features.EntityUserItem:
			e.EntityID = itemIDs[t.item]
			rec = nil
			if t.item < len(sc.pairs.rows) {
				rec = sc.pairs.rows[t.item]
			}
		case t.item >= 0:
			e.EntityID = itemIDs[t.item]
			rec = sc.rows[t.item]
		case t.f.Entity == features.EntityRequest:
			rec = sc.req
		default:
			e.EntityID = userID
		}
		if rec != nil {
			val, _, err := rec.Get(t.f.ID)
			if err != nil {
				return nil, err
			}
			e.Value = cloneValue(val)
		} else {
			e.Value = cloneValue(t.f.Default)
		}
		if t.atMs > 0 && !t.src.IsDefault() {
			e.UpdatedAt = time.UnixMilli(t.atMs).UTC()
		}
		ex.Values = append(ex.Values, e)
	}
	return ex, nil
}

func cloneValue(v features.Value) features.Value {
	v.Vector = slices.Clone(v.Vector)
	v.List = slices.Clone(v.List)
	if v.Map != nil {
		v.Map = maps.Clone(v.Map)
	}
	return v
}
