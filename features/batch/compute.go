package batch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/snapshot"
)

// DefaultTenureLookback is how far back Compute looks for a user's first
// interaction (user_tenure_days) unless Config says otherwise.
const DefaultTenureLookback = 365 * Day

// DefaultBrowseSurface is the surface of items users found by themselves
// (the simulator's sim.BrowseSurface).
const DefaultBrowseSurface = "browse"

// Config configures Compute. Zero values mean the documented defaults.
type Config struct {
	// Topic is the archived topic read; events.TopicInteractions when
	// empty.
	Topic string
	// TenureLookback bounds the search for a user's first interaction:
	// user_tenure_days saturates at it, and users whose last event is
	// older get no row. DefaultTenureLookback when zero; at least 30 days.
	TenureLookback time.Duration
	// BrowseSurface names the surface item_browse_views_7d counts;
	// DefaultBrowseSurface when empty.
	BrowseSurface string
	// Catalogue, when set, provides item metadata (category, creator,
	// publish time, duration, price, flags). Without it the features that
	// need it keep their defaults and say so in the manifest.
	Catalogue *Catalogue
	// Zones, when set, returns a user's home IANA time zone ("" when
	// unknown); user_hour_profile needs it, since archived events carry no
	// zone.
	Zones func(userID string) string
	// Progress, when set, is called after every event-log object read.
	Progress func(ScanProgress)
}

// ScanProgress reports how far the scan of the event log is.
type ScanProgress struct {
	Objects, ObjectsTotal int
	Events                int64
	Elapsed               time.Duration
}

func (c Config) withDefaults() Config {
	if c.Topic == "" {
		c.Topic = events.TopicInteractions
	}
	if c.TenureLookback == 0 {
		c.TenureLookback = DefaultTenureLookback
	}
	c.TenureLookback = max(c.TenureLookback, MaxDays*Day)
	if c.BrowseSurface == "" {
		c.BrowseSurface = DefaultBrowseSurface
	}
	return c
}

// GroupData is one group's computed snapshot content.
type GroupData struct {
	// Group and Entity name the storage group and what its rows describe.
	Group  string
	Entity features.Entity
	// Rows has one row per entity: every user seen in the tenure lookback,
	// every item seen in the 30-day window or published by asOf in the
	// catalogue, every (user, item) pair with an event in the 30-day
	// window.
	Rows []snapshot.Row
	// NotComputed maps each feature left at its default for every row to
	// the reason.
	NotComputed map[string]string
	// Bounds are the ranges validation holds each computed feature to.
	Bounds map[string]Range
	// Active are the ids of entities with an event in the 30-day window;
	// every one of them must have a row.
	Active []string
}

// Result is what Compute produced.
type Result struct {
	AsOf   time.Time
	Groups []GroupData
	// Events counts the archived events read; InWindow those in the
	// 30-day window.
	Events, InWindow int64
	// Objects is the number of event-log objects read.
	Objects int
	// Scan is the time spent reading and aggregating, Build the time spent
	// turning aggregates into rows.
	Scan, Build time.Duration
}

// Group returns the data of a group.
func (r *Result) Group(name string) (*GroupData, bool) {
	for i := range r.Groups {
		if r.Groups[i].Group == name {
			return &r.Groups[i], true
		}
	}
	return nil, false
}

// BatchGroups returns the batch groups of fs whose features this package
// computes at least in part, in fs's order: the groups Materialize makes by
// default. Groups it computes nothing of (embeddings published by the
// trainer) are left out.
func BatchGroups(fs *features.FeatureSet) []string {
	var out []string
	for _, g := range fs.Groups() {
		if g.Lane != features.LaneBatch {
			continue
		}
		for _, f := range g.Features {
			if c, ok := computations[f.Name]; ok && c.fits(f) == "" {
				out = append(out, g.Name)
				break
			}
		}
	}
	return out
}

// Compute reads the archived interactions before asOf (back to the tenure
// lookback, most features using the last 1, 7 or 30 days) and computes the
// snapshot content of the named batch groups of fs.
func Compute(ctx context.Context, src eventlog.Source, fs *features.FeatureSet, asOf time.Time, groups []string, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	if asOf.IsZero() {
		return nil, errors.New("batch features: as-of time required")
	}
	// Snapshots record the cutoff to the second; compute with exactly it.
	asOf = asOf.UTC().Truncate(time.Second)
	if len(groups) == 0 {
		return nil, errors.New("batch features: no groups requested")
	}
	for _, g := range groups {
		if _, _, _, _, err := snapshot.Layout(fs, g); err != nil {
			return nil, err
		}
	}
	var devices []string
	if f, ok := fs.Lookup("user_device_share"); ok {
		devices = f.Vocabulary
	}
	a := newAggregator(asOf, &cfg, devices)

	start := time.Now()
	from := asOf.Add(-cfg.TenureLookback)
	objs, err := eventlog.ListObjects(ctx, src, cfg.Topic, from, asOf)
	if err != nil {
		return nil, fmt.Errorf("list %s from %s to %s: %w", cfg.Topic, from.Format(time.RFC3339), asOf.Format(time.RFC3339), err)
	}
	for i, o := range objs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := eventlog.ReadObject(ctx, src, o, from, asOf, func(r *eventlog.Row) error {
			a.add(r)
			return nil
		}); err != nil {
			return nil, fmt.Errorf("read %s: %w", o.Key, err)
		}
		if cfg.Progress != nil {
			cfg.Progress(ScanProgress{Objects: i + 1, ObjectsTotal: len(objs), Events: a.events, Elapsed: time.Since(start)})
		}
	}
	res := &Result{AsOf: asOf, Events: a.events, InWindow: a.inWindow, Objects: len(objs), Scan: time.Since(start)}

	start = time.Now()
	c := a.finish()
	for _, g := range groups {
		gd, err := c.build(fs, g, &cfg)
		if err != nil {
			return nil, err
		}
		res.Groups = append(res.Groups, gd)
	}
	res.Build = time.Since(start)
	return res, nil
}

// build turns the aggregates into a group's rows.
func (c *computed) build(fs *features.FeatureSet, group string, cfg *Config) (GroupData, error) {
	names, _, width, maps, err := snapshot.Layout(fs, group)
	if err != nil {
		return GroupData{}, err
	}
	gd := GroupData{Group: group, NotComputed: map[string]string{}, Bounds: map[string]Range{}}
	type column struct {
		f    *features.Feature
		comp computation
		off  int
		ok   bool
		def  []float64
	}
	var cols []column
	off := 0
	status := func(f *features.Feature) (computation, bool) {
		comp, ok := computations[f.Name]
		switch {
		case !ok:
			gd.NotComputed[f.Name] = "no batch computation in features/batch (model outputs are published by the trainer)"
		case comp.fits(f) != "":
			gd.NotComputed[f.Name] = "definition does not fit the computation: " + comp.fits(f)
		case comp.needs == needCatalogue && cfg.Catalogue == nil:
			gd.NotComputed[f.Name] = "needs the item catalogue (categories, creators, publish times, durations, prices, flags)"
		case comp.needs == needZones && cfg.Zones == nil:
			gd.NotComputed[f.Name] = "needs users' home time zones (archived events carry none)"
		default:
			gd.Bounds[f.Name] = comp.bounds
			return comp, true
		}
		return comp, false
	}
	for _, name := range names {
		f, _ := fs.Lookup(name)
		gd.Entity = f.Entity
		comp, ok := status(f)
		cols = append(cols, column{f: f, comp: comp, off: off, ok: ok, def: snapshot.DefaultValues(f)})
		off += f.Type.Width()
	}
	type mapColumn struct {
		comp computation
		ok   bool
	}
	var mcols []mapColumn
	for _, name := range maps {
		f, _ := fs.Lookup(name)
		gd.Entity = f.Entity
		comp, ok := status(f)
		mcols = append(mcols, mapColumn{comp: comp, ok: ok})
	}

	var ids []string
	var active []bool
	switch gd.Entity {
	case features.EntityUser:
		ids = c.users.ids
		active = make([]bool, len(ids))
		for i := range c.u {
			active[i] = c.u[i].active
		}
	case features.EntityItem:
		ids = c.items.ids
		active = make([]bool, len(ids))
		for i := range c.it {
			active[i] = c.it[i].active
		}
	case features.EntityUserItem:
		ids = make([]string, len(c.pairs))
		active = make([]bool, len(ids))
		for i, p := range c.pairs {
			ids[i] = snapshot.PairID(c.users.ids[p.user], c.items.ids[p.item])
			active[i] = true
		}
	default:
		return GroupData{}, fmt.Errorf("batch features: group %s holds %s features, which are not stored", group, gd.Entity)
	}

	values := make([]float64, len(ids)*width)
	gd.Rows = make([]snapshot.Row, len(ids))
	for e, id := range ids {
		row := &gd.Rows[e]
		row.EntityID = id
		row.Values = values[e*width : (e+1)*width : (e+1)*width]
		for i := range cols {
			col := &cols[i]
			dst := row.Values[col.off : col.off+len(col.def)]
			if col.ok {
				col.comp.fill(c, int32(e), col.f, dst)
			} else {
				copy(dst, col.def)
			}
		}
		for i, mc := range mcols {
			if !mc.ok {
				continue
			}
			if m := mc.comp.fillMap(c, int32(e)); len(m) > 0 {
				if row.Maps == nil {
					row.Maps = make([]map[string]float64, len(mcols))
				}
				row.Maps[i] = m
			}
		}
		if active[e] {
			gd.Active = append(gd.Active, id)
		}
	}
	slices.Sort(gd.Active)
	return gd, nil
}

// describe lists the features of a group left at their defaults, for logs.
func (g *GroupData) describe() string {
	names := make([]string, 0, len(g.NotComputed))
	for n := range g.NotComputed {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}
