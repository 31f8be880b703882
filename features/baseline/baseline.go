// Package baseline holds each item's mean clicks per 30 minutes over the
// last 7 days, the baseline of the nearline feature
// item_trending_velocity_30m (consumers/nearline Config.ClicksPer30m). It
// is the batch feature item_clicks_7d divided by the 336 half-hours of 7
// days, read from the current snapshot of the item batch group that holds
// item_clicks_7d (features/snapshot).
//
// The values are an immutable map behind an atomic pointer: ClicksPer30m
// is a lock-free map lookup, safe to call from every partition goroutine.
// Refresh reads the group's current pointer and, when it names another
// version than the one held (a flip or a rollback), loads that snapshot
// and swaps the map; Run calls it periodically. A load that fails keeps
// the map held before. The map replaced last is kept too, so a rollback
// to it swaps back without reading the object store.
//
// Like serving, the baseline honours item_clicks_7d's ttl: once the held
// snapshot's data cutoff is older than the ttl, ClicksPer30m answers false
// (the velocity is then not written and readers use its default) until a
// newer snapshot is loaded.
package baseline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/snapshot"
	"github.com/adaptrec/adaptrec/features/windowed"
)

// Feature is the batch feature the baseline is computed from.
const Feature = "item_clicks_7d"

// HalfHoursPer7Days divides Feature into clicks per 30 minutes (the
// training join's rule, features/windowed).
const HalfHoursPer7Days = windowed.HalfHoursPer7Days

// DefaultInterval is how often Run checks the current pointer unless
// Options.Interval says otherwise; it matches the serving stores'
// online.DefaultPointerInterval.
const DefaultInterval = 30 * time.Second

var (
	asOfGauge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "adaptrec_features_baseline_as_of_seconds",
		Help: "Data cutoff (Unix seconds) of the snapshot the trending baseline (item_clicks_7d per 30 minutes) was loaded from, by group.",
	}, []string{"group"})
	itemsGauge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "adaptrec_features_baseline_items",
		Help: "Items the trending baseline holds a value for, by group.",
	}, []string{"group"})
	refreshErrorsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_features_baseline_refresh_errors_total",
		Help: "Failed checks or loads of the trending baseline's snapshot, by group; the values loaded before stay in use.",
	}, []string{"group"})
)

// Options configure a Baseline. The zero value means every documented
// default.
type Options struct {
	// Interval is how often Run checks the group's current pointer
	// (DefaultInterval when 0).
	Interval time.Duration
	// Logger receives loads and failed refreshes; slog.Default when nil.
	Logger *slog.Logger
}

// Baseline serves the trending baseline of every item of the current item
// snapshot. Create it with New; it holds nothing until Refresh (or Run)
// finds a snapshot. It is safe for concurrent use.
type Baseline struct {
	st      snapshot.Store
	fs      *features.FeatureSet
	feature *features.Feature
	opts    Options
	now     func() time.Time

	cur atomic.Pointer[table]

	mu   sync.Mutex // serializes Refresh, the writer of cur and prev
	prev *table     // the table cur replaced, for an instant rollback
}

// table is one loaded snapshot's baseline. It is never modified once
// published, except for expired, which Refresh sets once the snapshot is
// older than the feature's ttl.
type table struct {
	version string
	asOf    time.Time
	per30m  map[string]float64
	// expires is asOf plus the feature's ttl; zero when it has none.
	expires time.Time
	expired atomic.Bool
}

// New returns a Baseline reading Feature from st as fs defines it: fs must
// define Feature as an int or float batch feature of items.
func New(fs *features.FeatureSet, st snapshot.Store, opts Options) (*Baseline, error) {
	f, ok := fs.Lookup(Feature)
	if !ok {
		return nil, fmt.Errorf("baseline: %s defines no feature %s", fs.Source(), Feature)
	}
	if f.Entity != features.EntityItem || f.Lane != features.LaneBatch || (f.Type.Kind != features.KindInt && f.Type.Kind != features.KindFloat) {
		return nil, fmt.Errorf("baseline: %s is a %s %s feature of the %s lane in %s, want an int or float item feature of the batch lane",
			Feature, f.Entity, f.Type, f.Lane, fs.Source())
	}
	if opts.Interval < 0 {
		return nil, fmt.Errorf("baseline: Interval must be >= 0 (0: default), got %s", opts.Interval)
	}
	if opts.Interval == 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Baseline{st: st, fs: fs, feature: f, opts: opts, now: time.Now}, nil
}

// Group returns the snapshot group the baseline reads.
func (b *Baseline) Group() string { return b.feature.Group }

// ClicksPer30m returns an item's mean clicks per 30 minutes over the 7
// days before the held snapshot's data cutoff. It returns false when no
// snapshot is loaded, the snapshot has no value for the item (an item it
// does not list, or a snapshot that did not compute Feature), or the
// snapshot is older than the feature's ttl. It does not lock or allocate.
func (b *Baseline) ClicksPer30m(item string) (float64, bool) {
	t := b.cur.Load()
	if t == nil || t.expired.Load() {
		return 0, false
	}
	v, ok := t.per30m[item]
	return v, ok
}

// Version returns the snapshot version held and its data cutoff; "" and
// the zero time when none is loaded.
func (b *Baseline) Version() (string, time.Time) {
	t := b.cur.Load()
	if t == nil {
		return "", time.Time{}
	}
	return t.version, t.asOf
}

// Items returns how many items the held snapshot has a value for.
func (b *Baseline) Items() int {
	t := b.cur.Load()
	if t == nil {
		return 0
	}
	return len(t.per30m)
}

// Refresh reads the group's current pointer and, when it names a version
// other than the one held, loads that snapshot and switches to it. A
// group without a snapshot yet is not an error while none is held. On any
// error the values held before stay in use.
func (b *Baseline) Refresh(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.cur.Load()
	group := b.Group()
	p, err := snapshot.Current(ctx, b.st, group)
	if errors.Is(err, snapshot.ErrNotFound) && cur == nil {
		return nil // nothing published yet
	}
	if err != nil {
		return fmt.Errorf("baseline %s: %w", group, err)
	}
	if cur == nil || cur.version != p.Version {
		next := b.prev
		if next == nil || next.version != p.Version {
			start := time.Now()
			if next, err = b.load(ctx, p.Version); err != nil {
				return fmt.Errorf("baseline %s: load %s: %w", group, p.Version, err)
			}
			b.opts.Logger.Info("trending baseline loaded", "group", group, "version", p.Version,
				"as_of", next.asOf, "items", len(next.per30m), "took", time.Since(start).Round(time.Millisecond),
				"replaces", versionOf(cur))
		} else {
			b.opts.Logger.Info("trending baseline switched back", "group", group, "version", p.Version,
				"as_of", next.asOf, "items", len(next.per30m), "replaces", versionOf(cur))
		}
		b.prev = cur
		b.cur.Store(next)
		cur = next
		asOfGauge.WithLabelValues(group).Set(float64(cur.asOf.Unix()))
		itemsGauge.WithLabelValues(group).Set(float64(len(cur.per30m)))
	}
	if expired := !cur.expires.IsZero() && b.now().After(cur.expires); expired != cur.expired.Load() {
		cur.expired.Store(expired)
		if expired {
			b.opts.Logger.Warn("trending baseline expired: its snapshot is older than the feature's ttl; the velocity is not written until a newer one is current",
				"group", group, "version", cur.version, "as_of", cur.asOf, "ttl", b.feature.TTL)
		}
	}
	return nil
}

func versionOf(t *table) string {
	if t == nil {
		return "none"
	}
	return t.version
}

// load reads Feature of every row of a snapshot through the same Binding
// serving uses, so a snapshot computed under an incompatible definition
// is refused rather than misread.
func (b *Baseline) load(ctx context.Context, version string) (*table, error) {
	s, err := snapshot.Open(ctx, b.st, b.Group(), version)
	if err != nil {
		return nil, err
	}
	m := s.Manifest()
	if m.Entity != features.EntityItem {
		return nil, fmt.Errorf("snapshot %s/%s holds %s rows, want item rows", m.Group, m.Version, m.Entity)
	}
	bind, err := m.Bind(b.fs)
	if err != nil {
		return nil, err
	}
	t := &table{version: m.Version, asOf: m.AsOf}
	if b.feature.TTL > 0 {
		t.expires = m.AsOf.Add(b.feature.TTL)
	}
	if why := m.Stats[Feature].NotComputed; why != "" || slices.Contains(bind.Missing(), Feature) {
		if why == "" {
			why = "the snapshot does not hold it"
		}
		b.opts.Logger.Warn("trending baseline: the current snapshot has no "+Feature+"; the velocity is not written while it is current",
			"group", m.Group, "version", m.Version, "reason", why)
		t.per30m = map[string]float64{}
		return t, nil
	}
	t.per30m = make(map[string]float64, m.Rows)
	rec := b.fs.NewRecord(features.EntityItem)
	for row, err := range s.Rows(ctx) {
		if err != nil {
			return nil, err
		}
		if err := bind.Fill(rec, &row); err != nil {
			return nil, err
		}
		v, set, err := rec.Get(b.feature.ID)
		if err != nil {
			return nil, err
		}
		if !set {
			continue
		}
		clicks := float64(v.Int)
		if b.feature.Type.Kind == features.KindFloat {
			clicks = float64(v.Float)
		}
		t.per30m[row.EntityID] = windowed.BaselinePer30m(clicks)
	}
	return t, nil
}

// Run calls Refresh at once and then every Options.Interval until ctx ends,
// logging failures (the values held before stay in use); it returns ctx's
// error.
func (b *Baseline) Run(ctx context.Context) error {
	tick := time.NewTicker(b.opts.Interval)
	defer tick.Stop()
	for {
		if err := b.Refresh(ctx); err != nil && ctx.Err() == nil {
			refreshErrorsTotal.WithLabelValues(b.Group()).Inc()
			version, _ := b.Version()
			if version == "" {
				version = "none"
			}
			b.opts.Logger.Warn("trending baseline refresh failed; keeping the values held", "version", version, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
