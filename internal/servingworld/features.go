package servingworld

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/batch"
	"github.com/adaptrec/adaptrec/features/online"
	"github.com/adaptrec/adaptrec/features/snapshot"
	"github.com/adaptrec/adaptrec/internal/objstore"
)

// Producer names the world's events' producer.
const Producer = "adaptrec/servingworld"

// publishSnapshots writes a snapshot of every batch group as of asOf and
// makes it current through the batch lane's publish step (batch.Job.Publish):
// user and user×item groups are preloaded into Redis under keyPrefix
// before their pointer moves, and each flip is announced with a
// FeatureSnapshotEvent. It returns the version of each group.
func publishSnapshots(ctx context.Context, obj *objstore.Store, fs *features.FeatureSet, g *gen, pub batch.Publisher,
	rdb redis.UniversalClient, keyPrefix string, asOf time.Time, progress func(string)) (map[string]string, error) {
	j := &batch.Job{
		Store: obj, Features: fs, Events: pub, Producer: Producer,
		Preload: online.Preloader(rdb, fs, online.ObjectSnapshots{Store: obj}, online.LoadOptions{KeyPrefix: keyPrefix}),
	}
	versions := map[string]string{}
	for _, grp := range fs.Groups() {
		if grp.Lane != features.LaneBatch {
			continue
		}
		if grp.Entity == features.EntityUserItem && g.o.PairsPerUser == 0 {
			continue
		}
		start := time.Now()
		rows, err := g.rows(grp)
		if err != nil {
			return nil, err
		}
		m, err := snapshot.Write(ctx, obj, fs, grp.Name, asOf, rows, snapshot.WriteOptions{})
		if err != nil {
			return nil, fmt.Errorf("servingworld: write snapshot of %s: %w", grp.Name, err)
		}
		written := time.Since(start)
		cur, err := snapshot.Current(ctx, obj, grp.Name)
		if err != nil && !errors.Is(err, snapshot.ErrNotFound) {
			return nil, fmt.Errorf("servingworld: %w", err)
		}
		c := batch.Candidate{
			Group: grp.Name, Version: m.Version, AsOf: m.AsOf, Rows: m.Rows, SchemaHash: m.SchemaHash,
			ManifestURI: obj.URI(m.Key()), Base: cur.Version, Flip: true,
		}
		if _, err := j.Publish(ctx, c); err != nil {
			return nil, fmt.Errorf("servingworld: make %s/%s current: %w", grp.Name, m.Version, err)
		}
		versions[grp.Name] = m.Version
		what := "made current"
		if grp.Entity != features.EntityItem {
			what = "loaded into Redis and made current"
		}
		progress(fmt.Sprintf("snapshot %s/%s: %d rows written in %s, %s in %s", grp.Name, m.Version, m.Rows,
			written.Round(time.Millisecond), what, (time.Since(start) - written).Round(time.Millisecond)))
	}
	return versions, nil
}

// rows returns the snapshot rows of a batch group.
func (g *gen) rows(grp features.Group) ([]snapshot.Row, error) {
	names, _, width, maps, err := snapshot.Layout(g.fs, grp.Name)
	if err != nil {
		return nil, err
	}
	feats := make([]*features.Feature, len(names))
	for k, n := range names {
		feats[k], _ = g.fs.Lookup(n)
	}
	mapFeats := make([]*features.Feature, len(maps))
	for k, n := range maps {
		mapFeats[k], _ = g.fs.Lookup(n)
	}
	var rows []snapshot.Row
	check := func(r snapshot.Row) error {
		if len(r.Values) != width {
			return fmt.Errorf("servingworld: %s row %s has %d values, the group is %d wide", grp.Name, r.EntityID, len(r.Values), width)
		}
		return nil
	}
	switch grp.Entity {
	case features.EntityItem:
		rows = make([]snapshot.Row, g.o.Items)
		for i := range rows {
			r := snapshot.Row{EntityID: g.itemIDs[i], Values: make([]float64, 0, width)}
			for _, f := range feats {
				r.Values = g.itemValue(f, i, r.Values)
			}
			rows[i] = r
		}
	case features.EntityUser:
		rows = make([]snapshot.Row, g.o.Users)
		for u := range rows {
			r := snapshot.Row{EntityID: g.userIDs[u], Values: make([]float64, 0, width)}
			for _, f := range feats {
				r.Values = g.userValue(f, u, r.Values)
			}
			if len(mapFeats) > 0 {
				r.Maps = make([]map[string]float64, len(mapFeats))
				for k, f := range mapFeats {
					r.Maps[k] = g.userMap(f, u)
				}
			}
			rows[u] = r
		}
	case features.EntityUserItem:
		for u, items := range g.pairs {
			for _, i := range items {
				r := snapshot.Row{EntityID: snapshot.PairID(g.userIDs[u], g.itemIDs[i]), Values: make([]float64, 0, width)}
				for _, f := range feats {
					r.Values = g.pairValue(f, u, i, r.Values)
				}
				rows = append(rows, r)
			}
		}
	default:
		return nil, fmt.Errorf("servingworld: batch group %s holds %s features, which have no snapshots", grp.Name, grp.Entity)
	}
	if len(rows) > 0 {
		if err := check(rows[0]); err != nil {
			return nil, err
		}
	}
	return rows, nil
}

// nearlineBatch is how many entities one pipelined nearline write carries.
const nearlineBatch = 500

// WriteNearline writes, as the nearline lane would, the nearline values of
// the active items (those with clicks in the last hour) and of the users
// in a session, stamped now. It returns how many of each it wrote.
func (w *World) WriteNearline(ctx context.Context, now time.Time) (items, users int, err error) {
	if err := w.writeNearline(ctx, 0, w.nearlineTotal(), now); err != nil {
		return 0, 0, err
	}
	return len(w.g.active), w.sessionUsers(), nil
}

// KeepNearlineFresh rewrites every nearline value of WriteNearline once
// per period, a slice every nearlineTick, until ctx ends, so that none is
// older than its freshness SLA (one minute for the hourly counts) while a
// benchmark runs: what the nearline lane does for active items and users,
// whose stream consumers write as events arrive rather than in bursts.
// Failed writes are retried on the next pass; it returns ctx's error.
func (w *World) KeepNearlineFresh(ctx context.Context, period time.Duration) error {
	total := w.nearlineTotal()
	ticks := max(int(period/nearlineTick), 1)
	per := (total + ticks - 1) / ticks
	t := time.NewTicker(period / time.Duration(ticks))
	defer t.Stop()
	next := 0
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-t.C:
			if per == 0 {
				continue
			}
			hi := min(next+per, total)
			_ = w.writeNearline(ctx, next, hi, now)
			next = hi % total
		}
	}
}

// nearlineTick is how often KeepNearlineFresh writes a slice.
const nearlineTick = 100 * time.Millisecond

// nearlineTotal counts the entities with nearline values: active items,
// then users in a session.
func (w *World) nearlineTotal() int { return len(w.g.active) + len(w.g.userIDs) }

func (w *World) sessionUsers() int {
	n := 0
	for _, s := range w.g.session {
		if s != nil {
			n++
		}
	}
	return n
}

// writeNearline writes the nearline values of entities lo..hi-1 of the
// order of nearlineTotal, in pipelined batches.
func (w *World) writeNearline(ctx context.Context, lo, hi int, now time.Time) error {
	g := w.g
	var items, users []online.NearlineUpdate
	flush := func(force bool) error {
		if len(items) >= nearlineBatch || (force && len(items) > 0) {
			if err := w.w.WriteItemsNearline(ctx, items); err != nil {
				return fmt.Errorf("servingworld: write item nearline values: %w", err)
			}
			items = items[:0]
		}
		if len(users) >= nearlineBatch || (force && len(users) > 0) {
			if err := w.w.WriteUsersNearline(ctx, users); err != nil {
				return fmt.Errorf("servingworld: write user nearline values: %w", err)
			}
			users = users[:0]
		}
		return nil
	}
	for k := lo; k < hi; k++ {
		if k < len(g.active) {
			i := int(g.active[k])
			if vals := g.itemNearline(i, now); len(vals) > 0 {
				items = append(items, online.NearlineUpdate{ID: g.itemIDs[i], Values: vals})
			}
		} else if u := k - len(g.active); g.session[u] != nil {
			if vals := g.userNearline(u, now); len(vals) > 0 {
				users = append(users, online.NearlineUpdate{ID: g.userIDs[u], Values: vals})
			}
		}
		if err := flush(false); err != nil {
			return err
		}
	}
	return flush(true)
}
