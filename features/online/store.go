package online

import (
	"context"
	"errors"
	"fmt"
	"github.com/adaptrec/adaptrec/internal/pace"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/snapshot"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/breaker"
)

// Store is one serving instance's view of the online feature store: the
// item caches, the current user batch versions, and the Redis client user
// reads go through. Assemblers read it without locks; Refresh,
// RefreshNearline and HandleSnapshotEvent replace its view atomically.
type Store struct {
	plan  *plan
	rdb   redis.UniversalClient
	snaps Snapshots
	opts  Options
	keys  keys

	view     atomic.Pointer[view]
	counters []*groupCounters // per plan.groups
	breaker  *breaker.Breaker // guards user reads

	mu sync.Mutex // serializes refreshes, the writers of view
	// prevItems keeps the table each item batch group served before its
	// current one, so that a rollback swaps back without reading S3.
	prevItems map[string]*batchTable
	classes   classes
}

// view is everything one request reads; it is never modified once
// published.
type view struct {
	items *itemView
	// users is parallel to plan.userBatch, pairs to plan.pairBatch; nil
	// entries have no version.
	users, pairs []*userVersion
}

// New returns a store serving the features of fs. Nothing is loaded until
// Refresh (and RefreshNearline) succeed: until then every stored feature
// reads as its default. A serving instance calls both before it reports
// ready (Ready), then runs Run to keep the store fresh and passes every
// FeatureSnapshotEvent to HandleSnapshotEvent.
func New(fs *features.FeatureSet, rdb redis.UniversalClient, snaps Snapshots, opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	p, err := newPlan(fs, opts.BatchTwins, opts.StaleIndicators)
	if err != nil {
		return nil, err
	}
	br, err := newUserReadBreaker(opts)
	if err != nil {
		return nil, err
	}
	s := &Store{plan: p, rdb: rdb, snaps: snaps, opts: opts, keys: keys{prefix: opts.KeyPrefix}, breaker: br, prevItems: map[string]*batchTable{}}
	for _, g := range p.groups {
		s.counters = append(s.counters, newGroupCounters(g))
	}
	s.view.Store(&view{
		items: buildItemView(make([]*batchTable, len(p.itemBatch)), make([]*nearTable, len(p.itemNearline))),
		users: make([]*userVersion, len(p.userBatch)),
		pairs: make([]*userVersion, len(p.pairBatch)),
	})
	return s, nil
}

// FeatureSet returns the definitions the store serves.
func (s *Store) FeatureSet() *features.FeatureSet { return s.plan.fs }

// Versions returns the batch snapshot version each served batch group
// reads; groups with none loaded are absent.
func (s *Store) Versions() map[string]string {
	v := s.view.Load()
	out := map[string]string{}
	for k, g := range s.plan.itemBatch {
		if t := v.items.batch[k]; t != nil {
			out[g.name] = t.version
		}
	}
	for k, g := range s.plan.userBatch {
		if u := v.users[k]; u != nil {
			out[g.name] = u.version
		}
	}
	for k, g := range s.plan.pairBatch {
		if u := v.pairs[k]; u != nil {
			out[g.name] = u.version
		}
	}
	return out
}

// Items returns how many items the item caches know.
func (s *Store) Items() int { return s.view.Load().items.size() }

// Ready reports whether every served batch group has a version loaded and
// every item nearline group was refreshed at least once: before that,
// requests read defaults for what is missing.
func (s *Store) Ready() error {
	v := s.view.Load()
	var errs []error
	for k, g := range s.plan.itemBatch {
		if v.items.batch[k] == nil {
			errs = append(errs, fmt.Errorf("item group %s: no snapshot loaded", g.name))
		}
	}
	for k, g := range s.plan.userBatch {
		if v.users[k] == nil {
			errs = append(errs, fmt.Errorf("user group %s: no snapshot version loaded", g.name))
		}
	}
	for k, g := range s.plan.pairBatch {
		if v.pairs[k] == nil {
			errs = append(errs, fmt.Errorf("user×item group %s: no snapshot version loaded", g.name))
		}
	}
	for k, g := range s.plan.itemNearline {
		if v.items.near[k] == nil {
			errs = append(errs, fmt.Errorf("item group %s: nearline values never refreshed", g.name))
		}
	}
	return errors.Join(errs...)
}

// Refresh reads every served batch group's current snapshot pointer and
// switches the groups whose version changed: item groups by loading the
// snapshot into a new cache, user groups once the version is loaded into
// Redis. All switches of one call become visible to requests at once. A
// group that fails keeps its version; the errors are joined.
func (s *Store) Refresh(ctx context.Context) error {
	var groups []*groupPlan
	groups = append(groups, s.plan.itemBatch...)
	groups = append(groups, s.plan.userBatch...)
	groups = append(groups, s.plan.pairBatch...)
	return s.refresh(ctx, groups)
}

// RefreshGroup is Refresh for one group; a group the store does not serve
// from snapshots is ignored.
func (s *Store) RefreshGroup(ctx context.Context, group string) error {
	g, ok := s.plan.byName[group]
	if !ok || !g.served || g.lane != features.LaneBatch {
		return nil
	}
	return s.refresh(ctx, []*groupPlan{g})
}

// HandleSnapshotEvent reacts to a FeatureSnapshotEvent (a flip or a
// rollback) by refreshing the group it names. The group's pointer, not
// the event, decides the version, so late or repeated events are harmless.
func (s *Store) HandleSnapshotEvent(ctx context.Context, e *adaptrecv1.FeatureSnapshotEvent) error {
	return s.RefreshGroup(ctx, e.GetFeatureView())
}

func (s *Store) refresh(ctx context.Context, groups []*groupPlan) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.view.Load()
	batch := append([]*batchTable(nil), cur.items.batch...)
	users := append([]*userVersion(nil), cur.users...)
	pairs := append([]*userVersion(nil), cur.pairs...)
	itemsChanged, usersChanged := false, false
	var errs []error
	for _, g := range groups {
		p, err := s.snaps.Current(ctx, g.name)
		if errors.Is(err, snapshot.ErrNotFound) {
			continue // nothing published yet: defaults
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("group %s: %w", g.name, err))
			continue
		}
		switch g.entity {
		case features.EntityItem:
			k := indexOf(s.plan.itemBatch, g)
			if t := batch[k]; t != nil && t.version == p.Version {
				continue
			}
			t, err := s.itemTable(ctx, g, p.Version)
			if err != nil {
				snapshotLoadsTotal.WithLabelValues(g.name, "error").Inc()
				errs = append(errs, fmt.Errorf("group %s: load %s: %w", g.name, p.Version, err))
				continue
			}
			if old := batch[k]; old != nil {
				s.prevItems[g.name] = old
			}
			batch[k], itemsChanged = t, true
			snapshotAge.WithLabelValues(g.name).Set(float64(t.asOf.Unix()))
		case features.EntityUser, features.EntityUserItem:
			list, versions := s.plan.userBatch, users
			if g.entity == features.EntityUserItem {
				list, versions = s.plan.pairBatch, pairs
			}
			k := indexOf(list, g)
			if u := versions[k]; u != nil && u.version == p.Version {
				continue
			}
			u, err := readUserVersion(ctx, s.rdb, s.plan.fs, s.keys, g.entity, g.name, p.Version)
			if err != nil {
				snapshotLoadsTotal.WithLabelValues(g.name, "error").Inc()
				errs = append(errs, fmt.Errorf("group %s: %w", g.name, err))
				continue
			}
			versions[k], usersChanged = u, true
			snapshotAge.WithLabelValues(g.name).Set(float64(u.asOf.Unix()))
		}
		snapshotLoadsTotal.WithLabelValues(g.name, "ok").Inc()
	}
	if itemsChanged || usersChanged {
		next := &view{items: cur.items, users: users, pairs: pairs}
		if itemsChanged {
			now := time.Now().UnixMilli()
			near := make([]*nearTable, len(cur.items.near))
			for k, t := range cur.items.near {
				if t != nil {
					near[k] = t.live(now)
				}
			}
			next.items = buildItemView(batch, near)
			// A switch while serving is paced; the first load is not.
			var p *pace.Pacer
			if cur.items.size() > 0 {
				p = pace.New(s.opts.BackgroundDuty)
			}
			if err := s.buildRecords(next.items, nil, now, p); err != nil {
				return fmt.Errorf("refresh feature snapshots: %w", err)
			}
		}
		s.view.Store(next)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("refresh feature snapshots: %w", err)
	}
	return nil
}

// itemTable returns the table of an item group version: the previous one
// when rolling back to it, else loaded from the snapshot.
func (s *Store) itemTable(ctx context.Context, g *groupPlan, version string) (*batchTable, error) {
	if t := s.prevItems[g.name]; t != nil && t.version == version {
		return t, nil
	}
	r, err := s.snaps.Open(ctx, g.name, version)
	if err != nil {
		return nil, err
	}
	return loadBatchTable(ctx, s.plan.fs, g, r, s.opts.ItemFilter)
}

func indexOf(gs []*groupPlan, g *groupPlan) int {
	for i, x := range gs {
		if x == g {
			return i
		}
	}
	panic("online: group " + g.name + " not in its list")
}

// RefreshNearline reads the item nearline values written since the last
// refresh (all live ones the first time) and swaps them in. It reads the
// group's change set, not every item: the cost follows the write rate.
func (s *Store) RefreshNearline(ctx context.Context) error {
	start := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	p := pace.New(s.opts.BackgroundDuty)
	for k, g := range s.plan.itemNearline {
		if err := s.refreshNearlineGroup(ctx, k, g, p); err != nil {
			errs = append(errs, fmt.Errorf("group %s: %w", g.name, err))
		}
	}
	nearlineRefreshSeconds.Observe(time.Since(start).Seconds())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("refresh item nearline values: %w", err)
	}
	return nil
}

// changesPage is how many change-set entries one read returns: Redis
// serves a range in one go, and a range of tens of thousands of entries
// held it (and every request's read) for over 10 ms.
const changesPage = 512

// changesSince reads the group's change set from score lo on, a page at a
// time. Pages continue from the last score read, skipping the entries at
// that score already read.
func (s *Store) changesSince(ctx context.Context, g *groupPlan, lo string, p *pace.Pacer) ([]redis.Z, error) {
	var out []redis.Z
	offset := int64(0)
	for {
		page, err := s.rdb.ZRangeByScoreWithScores(ctx, s.keys.changes(g.name),
			&redis.ZRangeBy{Min: lo, Max: "+inf", Offset: offset, Count: changesPage}).Result()
		if err != nil {
			return nil, fmt.Errorf("read changes: %w", err)
		}
		out = append(out, page...)
		if len(page) < changesPage {
			return out, nil
		}
		last := page[len(page)-1].Score
		atLast := int64(0)
		for _, z := range page {
			if z.Score == last {
				atLast++
			}
		}
		next := strconv.FormatFloat(last, 'f', -1, 64)
		if next == lo {
			offset += int64(len(page)) // a page of one score: move within it
		} else {
			lo, offset = next, atLast
		}
		p.Yield()
	}
}

// nearlineChunk is how many item hashes one pipelined read fetches: small
// enough that a request's read queued behind it in single-threaded Redis
// waits well under its deadline.
const nearlineChunk = 200

func (s *Store) refreshNearlineGroup(ctx context.Context, k int, g *groupPlan, p *pace.Pacer) error {
	cur := s.view.Load()
	lo := "-inf"
	if t := cur.items.near[k]; t != nil && t.cursor > 0 {
		lo = strconv.FormatInt(t.cursor-s.opts.NearlineOverlap.Milliseconds(), 10)
	}
	zs, err := s.changesSince(ctx, g, lo, p)
	if err != nil {
		return err
	}
	var cursor int64
	for _, z := range zs {
		cursor = max(cursor, int64(z.Score))
	}
	// Items read before at the same change time need no second read: the
	// overlap is there for writes that commit late, not to re-read. Only
	// below the newest change time read before: a write in that same
	// millisecond gets the same score and must still be read.
	var seen map[string]int64
	prevCursor := int64(0)
	if t := cur.items.near[k]; t != nil {
		seen, prevCursor = t.recent, t.cursor
		cursor = max(cursor, t.cursor)
	}
	recent := map[string]int64{}
	horizon := cursor - s.opts.NearlineOverlap.Milliseconds()
	ids := make([]string, 0, len(zs))
	listed := make(map[string]bool, len(zs))
	for _, z := range zs {
		id, ok := z.Member.(string)
		if !ok || listed[id] || (s.opts.ItemFilter != nil && !s.opts.ItemFilter(id)) {
			continue
		}
		listed[id] = true
		score := int64(z.Score)
		if score >= horizon {
			recent[id] = score
		}
		if prev, ok := seen[id]; ok && prev == score && score < prevCursor {
			continue
		}
		ids = append(ids, id)
	}
	if len(ids) == 0 && cur.items.near[k] != nil && len(cur.items.expiredRecords(time.Now().UnixMilli())) == 0 {
		return nil // nothing new, nothing to rebuild: keep the view
	}
	fields := make([]map[string]string, len(ids))
	for from := 0; from < len(ids); from += nearlineChunk {
		to := min(from+nearlineChunk, len(ids))
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.MapStringStringCmd, 0, to-from)
		for _, id := range ids[from:to] {
			cmds = append(cmds, pipe.HGetAll(ctx, s.keys.nearline(g.name, id)))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("read %d items: %w", to-from, err)
		}
		for i, c := range cmds {
			fields[from+i] = c.Val()
		}
		p.Yield() // background work: requests first
	}
	next := &view{users: cur.users, pairs: cur.pairs}
	items, changed, bad := cur.items.withNearline(k, g, ids, fields, cursor, recent, p)
	if bad > 0 {
		corruptValuesTotal.WithLabelValues(g.name).Add(float64(bad))
	}
	// Rebuild the records of the items read and of those whose outcome
	// changed since they were built (a value turned stale or expired), so
	// requests rarely fill items one value at a time.
	now := time.Now().UnixMilli()
	rebuild := append(changed, items.expiredRecords(now)...)
	if cur.items.near[k] == nil {
		rebuild = nil // the group turns from unavailable to read: every item
	}
	if err := s.buildRecords(items, rebuild, now, p); err != nil {
		return err
	}
	next.items = items
	nearlineRefreshedTotal.WithLabelValues(g.name).Add(float64(len(ids)))
	s.view.Store(next)
	return nil
}

// Run keeps the store fresh until ctx ends: it refreshes the item nearline
// values every NearlineInterval and checks the snapshot pointers every
// PointerInterval, logging failures (the store keeps serving what it has).
// It returns ctx's error.
func (s *Store) Run(ctx context.Context) error {
	near := time.NewTicker(s.opts.NearlineInterval)
	defer near.Stop()
	ptr := time.NewTicker(s.opts.PointerInterval)
	defer ptr.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-near.C:
			if len(s.plan.itemNearline) == 0 {
				continue
			}
			if err := s.RefreshNearline(ctx); err != nil && ctx.Err() == nil {
				refreshErrorsTotal.WithLabelValues("nearline").Inc()
				s.opts.Logger.Warn("online features: nearline refresh failed; serving the values read before", "err", err)
			}
		case <-ptr.C:
			if err := s.Refresh(ctx); err != nil && ctx.Err() == nil {
				refreshErrorsTotal.WithLabelValues("pointer").Inc()
				s.opts.Logger.Warn("online features: snapshot refresh failed; serving the versions loaded before", "err", err)
			}
		}
	}
}

// userReadBreaker names the breaker of user reads in metrics. The Stores
// of one process share its series; a serving process has one Store.
const userReadBreaker = "online_features_redis"

// newUserReadBreaker returns the breaker that stops sending user reads to a
// Redis that keeps failing, from opts with its defaults applied. It opens
// once reads have failed BreakerFailures times in a row over at least
// BreakerCooldown (a stall of a few milliseconds fails a burst of reads but
// is over before a breaker would help, and opening then would only turn it
// into a longer outage), stays open for BreakerCooldown, then lets one
// request probe.
func newUserReadBreaker(opts Options) (*breaker.Breaker, error) {
	b, err := breaker.New(breaker.Config{
		Name:           userReadBreaker,
		Failures:       opts.BreakerFailures,
		MinFailureSpan: opts.BreakerCooldown,
		Cooldown:       opts.BreakerCooldown,
	})
	if err != nil {
		return nil, fmt.Errorf("online: user read breaker: %w", err)
	}
	return b, nil
}
