package offline

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/snapshot"
	"github.com/adaptrec/adaptrec/features/windowed"
)

// groupCursor walks one batch group's snapshot history forward in event
// time, keeping the snapshot the current examples read loaded.
type groupCursor struct {
	name   string
	entity features.Entity
	hist   []snapshot.Manifest
	next   int // hist[:next] have become usable
	lag    time.Duration
	st     Store
	fs     *features.FeatureSet

	rows  []snapshot.Row
	index map[string]int32
	bind  *snapshot.Binding
	uses  []SnapshotUse
	loads int // snapshots loaded so far
}

// at makes the snapshot usable at t (unix ms) current, loading it when it
// changes.
func (g *groupCursor) at(ctx context.Context, t int64) error {
	n := g.next
	for n < len(g.hist) && g.hist[n].AsOf.Add(g.lag).UnixMilli() <= t {
		n++
	}
	if n == g.next && len(g.uses) > 0 {
		return nil
	}
	g.next = n
	if n == 0 {
		g.uses = append(g.uses, SnapshotUse{Group: g.name})
		return nil
	}
	m := g.hist[n-1]
	s, err := snapshot.Open(ctx, g.st, m.Group, m.Version)
	if err != nil {
		return err
	}
	rows, err := s.ReadAll(ctx)
	if err != nil {
		return err
	}
	bind, err := m.Bind(g.fs)
	if err != nil {
		return err
	}
	g.rows, g.bind = rows, bind
	g.loads++
	g.index = make(map[string]int32, len(rows))
	for i := range rows {
		g.index[rows[i].EntityID] = int32(i)
	}
	g.uses = append(g.uses, SnapshotUse{Group: g.name, Version: m.Version, AsOf: m.AsOf})
	return nil
}

// asOf is the data cutoff of the snapshot current examples read; false
// before the group's first usable one.
func (g *groupCursor) asOf() (time.Time, bool) {
	if g.next == 0 || g.bind == nil {
		return time.Time{}, false
	}
	return g.hist[g.next-1].AsOf, true
}

// apply sets the group's features of the entity id into rec (nothing when
// no snapshot is usable yet or it has no row for the id).
func (g *groupCursor) apply(rec *features.Record, id []byte, t time.Time) error {
	u := &g.uses[len(g.uses)-1]
	if u.Examples == 0 || t.Before(u.First) {
		u.First = t
	}
	if t.After(u.Last) {
		u.Last = t
	}
	u.Examples++
	if g.bind == nil {
		return nil
	}
	i, ok := g.index[string(id)] // no allocation for the lookup
	if !ok {
		return nil
	}
	return g.bind.Apply(rec, &g.rows[i])
}

// example is an impression waiting for its label.
type example struct {
	t                         int64
	eventTime                 time.Time
	eventID, user, item, req  string
	position                  int32
	label, watched, purchased bool
	key                       attrKey
	values                    []float32
}

type attrKey struct {
	user, item int32
	session    int64
}

// pendingEvent is an event of the current millisecond, applied to the
// nearline state (users' and items') only once the log moves past it:
// examples read the state strictly before their own millisecond, as
// serving did before the page was logged.
type pendingEvent struct {
	user, item int32 // -1 for none
	session    int64
	action     windowed.Action
}

// nearlineFeature is how the join sets one feature windowed computes.
type nearlineFeature struct {
	on  bool // in the layout, and defined as windowed computes it
	id  features.ID
	ttl int64 // ms; 0 for none
}

type joiner struct {
	cfg    *Config
	fs     *features.FeatureSet
	layout *features.Layout
	groups []*groupCursor
	byEnt  [3][]*groupCursor // user, item, user_item

	users, items                   map[string]int32
	userIDs, itemIDs               []string
	sessionTTL, lastActionTTL      int64
	from, to, window               int64
	curT                           int64
	pending                        []pendingEvent
	queue                          []*example
	open                           map[attrKey]*example
	free                           []*example
	userRec, itemRec, pairRec, req *features.Record
	key                            []byte
	events                         int64
	out                            *writer
	defaulted                      map[string]string
	// zoned counts examples whose request features had a time zone.
	zoned int64

	// The nearline lane, computed by features/windowed as the nearline
	// consumer computes it: users' state, items' bucketed counts (no
	// lateness: the log is read in time order), and how each feature is
	// set.
	rules     windowed.Rules
	state     []windowed.User
	itemWin   *windowed.Items
	itemsOn   bool // an item feature of windowed is in the layout
	evictHour int64
	nl        [windowed.NumFeatures]nearlineFeature
	// base is the group holding item_clicks_7d, the trending baseline,
	// when item_trending_velocity_30m is in the layout; baselined counts
	// the examples that had one.
	base      *groupCursor
	clicks7d  *features.Feature
	baselined int64

	// The cross features (features.FillCross), when the layout has one:
	// the user's taste is read from the example's user record and the
	// categories of the user's session items, each read from the item
	// snapshots as of the example (cached per item until an item snapshot
	// changes).
	crossOn   bool
	sessionOn bool  // a cross feature reads the session's items
	recentTTL int64 // user_session_recent_items' ttl in ms; 0 for none
	taste     features.Taste
	cats      []int64
	catRec    *features.Record
	catCache  map[int32]itemCategory
	catGen    int
}

// itemCategory is an item's category as the item snapshots of one
// generation hold it.
type itemCategory struct {
	cat int64
	ok  bool
	gen int
}

func newJoiner(ctx context.Context, st Store, fs *features.FeatureSet, layout *features.Layout, cfg *Config) (*joiner, error) {
	j := &joiner{
		cfg: cfg, fs: fs, layout: layout,
		users: map[string]int32{}, items: map[string]int32{},
		open:    map[attrKey]*example{},
		userRec: fs.NewRecord(features.EntityUser), itemRec: fs.NewRecord(features.EntityItem),
		pairRec: fs.NewRecord(features.EntityUserItem), req: fs.NewRecord(features.EntityRequest),
		from: cfg.From.UnixMilli(), to: cfg.To.UnixMilli(), window: cfg.Attribution.Milliseconds(),
		sessionTTL: DefaultSessionTTL.Milliseconds(), lastActionTTL: DefaultLastInteractionTTL.Milliseconds(),
		curT:      -1 << 62,
		defaulted: map[string]string{},
		out:       newWriter(st, cfg.ID, layout.Width(), cfg.RowsPerFile),
		rules:     windowed.RulesFor(fs),
		itemWin:   windowed.NewItems(windowed.DefaultBucket, 0),
	}
	if f, ok := fs.Lookup(features.FeatureSessionKey); ok && f.TTL > 0 {
		j.sessionTTL = f.TTL.Milliseconds()
	}
	if f, ok := fs.Lookup(features.FeatureLastInteractionMs); ok && f.TTL > 0 {
		j.lastActionTTL = f.TTL.Milliseconds()
	}
	inLayout := map[string]bool{}
	for _, n := range layout.Names() {
		inLayout[n] = true
	}
	// A cross feature's inputs are read as the join reads the layout's
	// own features: their groups must be loaded even when the layout does
	// not hold them.
	crossInputs := map[string]bool{}
	for _, f := range fs.CrossFeatures() {
		if inLayout[f.Name] {
			j.crossOn = true
		}
	}
	if j.crossOn {
		j.catRec = fs.NewRecord(features.EntityItem)
		j.catCache = map[int32]itemCategory{}
		j.sessionOn = fs.NeedsSession()
		for _, n := range []string{features.FeatureCategoryAffinity, features.FeatureItemCategory} {
			crossInputs[n] = true
		}
		if f, ok := fs.Lookup(features.FeatureSessionRecentItems); ok {
			j.recentTTL = f.TTL.Milliseconds()
		}
	}
	for f := range windowed.NumFeatures {
		d, ok := fs.Lookup(f.Name())
		if !ok || !inLayout[f.Name()] || !f.Defines(fs) {
			continue
		}
		j.nl[f] = nearlineFeature{on: true, id: d.ID, ttl: d.TTL.Milliseconds()}
		j.itemsOn = j.itemsOn || f.Entity() == features.EntityItem
	}
	// The trending baseline is item_clicks_7d of the item snapshot as of
	// the example, as serving's is that of the current one.
	var baseGroup string
	if j.nl[windowed.ItemTrendingVelocity30m].on {
		f, ok := fs.Lookup(baselineFeature)
		switch {
		case !ok || f.Entity != features.EntityItem || f.Lane != features.LaneBatch || (f.Type.Kind != features.KindInt && f.Type.Kind != features.KindFloat):
			j.nl[windowed.ItemTrendingVelocity30m].on = false
			j.defaulted[windowed.ItemTrendingVelocity30m.Name()] = "no trending baseline: " + fs.Source() + " defines no int or float item batch feature " + baselineFeature
		default:
			j.clicks7d, baseGroup = f, f.Group
		}
	}
	for _, g := range fs.Groups() {
		if g.Lane != features.LaneBatch {
			continue
		}
		used := g.Name == baseGroup
		for _, f := range g.Features {
			used = used || inLayout[f.Name] || crossInputs[f.Name]
		}
		if !used {
			continue
		}
		hist, err := snapshot.History(ctx, st, g.Name)
		if err != nil {
			return nil, fmt.Errorf("snapshots of %s: %w", g.Name, err)
		}
		gc := &groupCursor{name: g.Name, entity: g.Entity, hist: hist, lag: cfg.AvailabilityLag, st: st, fs: fs}
		j.groups = append(j.groups, gc)
		j.byEnt[g.Entity] = append(j.byEnt[g.Entity], gc)
		if g.Name == baseGroup {
			j.base = gc
		}
		if len(hist) == 0 {
			for _, f := range g.Features {
				if inLayout[f.Name] {
					j.defaulted[f.Name] = "group " + g.Name + " has no snapshot"
				}
				if crossInputs[f.Name] {
					j.defaultCross(inLayout, f.Name, g.Name)
				}
			}
			if g.Name == baseGroup {
				j.defaulted[windowed.ItemTrendingVelocity30m.Name()] = "no trending baseline: group " + g.Name + " (" + baselineFeature + ") has no snapshot"
			}
		}
	}
	for _, c := range layout.Columns() {
		f, _ := fs.Lookup(c.Name)
		if f.Lane != features.LaneNearline {
			continue
		}
		if w, ok := windowed.Lookup(f.Name); !ok || !j.nl[w].on {
			if _, why := j.defaulted[f.Name]; !why {
				j.defaulted[f.Name] = "nearline feature the join does not compute: features/windowed has no rule for a " +
					f.Entity.String() + " " + f.Type.String() + " " + f.Name
			}
		}
	}
	return j, nil
}

// baselineFeature is the batch feature the trending baseline is computed
// from (windowed.BaselinePer30m), as serving's features/baseline does.
const baselineFeature = "item_clicks_7d"

// computedNearline reports whether the join computes a nearline feature of
// fs.
func computedNearline(fs *features.FeatureSet, name string) bool {
	f, ok := windowed.Lookup(name)
	return ok && f.Defines(fs)
}

func localTimeFeature(name string) bool {
	switch name {
	case "req_local_hour", "req_hour_sin", "req_hour_cos", "req_day_of_week", "req_is_weekend":
		return true
	}
	return false
}

func (j *joiner) user(id string) int32 {
	if i, ok := j.users[id]; ok {
		return i
	}
	c := strings.Clone(id)
	i := int32(len(j.userIDs))
	j.users[c] = i
	j.userIDs = append(j.userIDs, c)
	j.state = append(j.state, windowed.User{})
	return i
}

func (j *joiner) item(id string) int32 {
	if i, ok := j.items[id]; ok {
		return i
	}
	c := strings.Clone(id)
	i := int32(len(j.itemIDs))
	j.items[c] = i
	j.itemIDs = append(j.itemIDs, c)
	return i
}

// add processes one archived event; events come in event-time order.
func (j *joiner) add(ctx context.Context, r *eventlog.Row) error {
	j.events++
	if r.UserID == "" && r.ItemID == "" {
		return nil
	}
	t := r.EventTime.UnixMilli()
	if t != j.curT {
		j.applyPending()
		j.curT = t
		if err := j.flush(ctx, t); err != nil {
			return err
		}
	}
	u, it := int32(-1), int32(-1)
	if r.UserID != "" {
		u = j.user(r.UserID)
	}
	if r.ItemID != "" {
		it = j.item(r.ItemID)
	}
	session := features.SessionKey(r.SessionID)
	j.pending = append(j.pending, pendingEvent{user: u, item: it, session: session, action: windowed.ActionNamed(r.Action)})
	if u < 0 || it < 0 {
		return nil
	}
	key := attrKey{user: u, item: it, session: session}
	switch r.Action {
	case "ACTION_IMPRESSION":
		if t >= j.from && t < j.to {
			return j.example(ctx, r, t, key)
		}
	case "ACTION_CLICK", "ACTION_WATCH", "ACTION_PURCHASE":
		e, ok := j.open[key]
		if !ok || t-e.t > j.window {
			return nil
		}
		switch r.Action {
		case "ACTION_CLICK":
			e.label = true
		case "ACTION_WATCH":
			e.watched = true
		default:
			e.purchased = true
		}
	}
	return nil
}

// applyPending applies the events of the millisecond just finished to the
// nearline state, through features/windowed as the nearline consumer
// does.
func (j *joiner) applyPending() {
	t := j.curT
	for _, p := range j.pending {
		e := windowed.Event{T: t, Session: p.session, Action: p.action}
		if p.item >= 0 {
			e.Item = j.itemIDs[p.item]
		}
		if p.user >= 0 {
			j.state[p.user].Apply(&j.rules, e)
		}
		if p.item >= 0 && j.itemsOn {
			j.itemWin.Add(e.Item, t, p.action)
		}
	}
	j.pending = j.pending[:0]
	// Buckets that no window can read any more go once an hour of event
	// time, so memory follows the items of the last hours, not the log.
	if h := t / time.Hour.Milliseconds(); j.itemsOn && h != j.evictHour {
		j.evictHour = h
		j.itemWin.Evict()
	}
}

// nearline sets the example's nearline features, computed by
// features/windowed from the events strictly before its millisecond, as of
// its time t, each read as serving reads it (a value older than the
// feature's ttl is the default), and returns the user's state as the
// request lane reads it.
func (j *joiner) nearline(u int32, item string, t int64) (features.UserState, error) {
	s := &j.state[u]
	uv := s.Values(t)
	var us features.UserState
	if uv.SessionKey != 0 && t-uv.LastEvent <= j.sessionTTL {
		us.SessionKey = uv.SessionKey
		us.SessionStart = time.UnixMilli(uv.SessionStart).UTC()
		us.SessionInteractions = uv.SessionInteractions
	}
	if uv.LastInteraction > 0 && t-uv.LastInteraction <= j.lastActionTTL {
		us.LastInteraction = time.UnixMilli(uv.LastInteraction).UTC()
	}
	for f := windowed.SessionKey; f <= windowed.UserPurchases1h; f++ {
		if v, at, ok := uv.Get(f); ok {
			if err := j.setNearline(j.userRec, f, v, t-at); err != nil {
				return us, err
			}
		}
	}
	if j.itemsOn {
		base, ok := j.baseline(t)
		iv := j.rules.ItemValues(j.itemWin.Totals(item, t), base, ok)
		for f := windowed.ItemClicks1h; f <= windowed.ItemTrendingVelocity30m; f++ {
			if v, at, ok := iv.Get(f); ok {
				if err := j.setNearline(j.itemRec, f, v, t-at); err != nil {
					return us, err
				}
			}
		}
	}
	if j.nl[windowed.PairImpressions1h].on {
		v := features.Value{Int: s.PairImpressions(item, t)}
		if err := j.setNearline(j.pairRec, windowed.PairImpressions1h, v, 0); err != nil {
			return us, err
		}
	}
	return us, nil
}

// defaultCross records, for the cross features of the layout that read
// input, that they hold their defaults because input's group has no
// snapshot.
func (j *joiner) defaultCross(inLayout map[string]bool, input, group string) {
	for _, f := range j.fs.CrossFeatures() {
		if !inLayout[f.Name] || !slices.Contains(features.CrossInputs(f.Name), input) {
			continue
		}
		if _, ok := j.defaulted[f.Name]; !ok {
			j.defaulted[f.Name] = "input " + input + ": group " + group + " has no snapshot"
		}
	}
}

// cross computes the example's cross features into pairRec, from the user
// and item records already applied and the categories of the user's
// session items as of t (the list read as serving reads it: the default,
// empty, once older than its ttl).
func (j *joiner) cross(u int32, t int64, at time.Time) error {
	if !j.crossOn {
		return nil
	}
	j.cats = j.cats[:0]
	if j.sessionOn {
		uv := j.state[u].Values(t)
		if v, when, ok := uv.Get(windowed.SessionRecentItems); ok && (j.recentTTL == 0 || t-when <= j.recentTTL) {
			gen := 0
			for _, g := range j.byEnt[features.EntityItem] {
				gen += g.loads
			}
			for _, id := range v.List {
				if c, ok := j.category(id, gen, at); ok {
					j.cats = append(j.cats, c)
				}
			}
		}
	}
	if err := j.fs.Taste(&j.taste, j.userRec, j.cats); err != nil {
		return err
	}
	return j.fs.FillCross(j.pairRec, &j.taste, j.itemRec)
}

// category returns an item's category in the item snapshots the example
// reads (gen identifies them).
func (j *joiner) category(id string, gen int, at time.Time) (int64, bool) {
	idx, known := j.items[id]
	if known {
		if c, ok := j.catCache[idx]; ok && c.gen == gen {
			return c.cat, c.ok
		}
	}
	j.catRec.Reset()
	j.key = append(j.key[:0], id...)
	for _, g := range j.byEnt[features.EntityItem] {
		if g.bind == nil {
			continue
		}
		if i, ok := g.index[string(j.key)]; ok {
			if err := g.bind.Apply(j.catRec, &g.rows[i]); err != nil {
				return 0, false
			}
		}
	}
	c, ok := j.fs.ItemCategory(j.catRec)
	if known {
		j.catCache[idx] = itemCategory{cat: c, ok: ok, gen: gen}
	}
	return c, ok
}

// setNearline sets a nearline value of age ms into rec, unless the feature
// is not in the layout or the value is older than its ttl.
func (j *joiner) setNearline(rec *features.Record, f windowed.Feature, v features.Value, age int64) error {
	nf := &j.nl[f]
	if !nf.on || (nf.ttl > 0 && age > nf.ttl) {
		return nil
	}
	switch f.Kind() {
	case features.KindInt:
		return rec.SetInt(nf.id, v.Int)
	case features.KindFloat:
		return rec.SetFloat(nf.id, float64(v.Float))
	}
	return nil // lists are not ranker inputs
}

// baseline returns the trending baseline of the example's item: its
// item_clicks_7d per 30 minutes in the item snapshot the example reads
// (already applied to itemRec), unless that snapshot is older than the
// feature's ttl — what serving's baseline holds at t.
func (j *joiner) baseline(t int64) (float64, bool) {
	if j.base == nil || j.clicks7d == nil {
		return 0, false
	}
	asOf, ok := j.base.asOf()
	if !ok || (j.clicks7d.TTL > 0 && t > asOf.Add(j.clicks7d.TTL).UnixMilli()) {
		return 0, false
	}
	v, set, err := j.itemRec.Get(j.clicks7d.ID)
	if err != nil || !set {
		return 0, false
	}
	j.baselined++
	if j.clicks7d.Type.Kind == features.KindFloat {
		return windowed.BaselinePer30m(float64(v.Float)), true
	}
	return windowed.BaselinePer30m(float64(v.Int)), true
}

// example builds the row of one impression.
func (j *joiner) example(ctx context.Context, r *eventlog.Row, t int64, key attrKey) error {
	for _, g := range j.groups {
		if err := g.at(ctx, t); err != nil {
			return fmt.Errorf("snapshot of %s as of %s: %w", g.name, r.EventTime.Format(time.RFC3339), err)
		}
	}
	j.userRec.Reset()
	j.itemRec.Reset()
	j.pairRec.Reset()
	j.key = append(j.key[:0], r.UserID...)
	for _, g := range j.byEnt[features.EntityUser] {
		if err := g.apply(j.userRec, j.key, r.EventTime); err != nil {
			return err
		}
	}
	j.key = append(j.key[:0], r.ItemID...)
	for _, g := range j.byEnt[features.EntityItem] {
		if err := g.apply(j.itemRec, j.key, r.EventTime); err != nil {
			return err
		}
	}
	j.key = append(append(append(j.key[:0], r.UserID...), snapshot.PairSeparator...), r.ItemID...)
	for _, g := range j.byEnt[features.EntityUserItem] {
		if err := g.apply(j.pairRec, j.key, r.EventTime); err != nil {
			return err
		}
	}
	us, err := j.nearline(key.user, j.itemIDs[key.item], t)
	if err != nil {
		return err
	}
	if err := j.cross(key.user, t, r.EventTime); err != nil {
		return err
	}
	// The client's zone archived with the event, else the user's home zone.
	zone := r.TimeZone
	if zone == "" && j.cfg.Zones != nil {
		zone = j.cfg.Zones(r.UserID)
	}
	if zone != "" {
		j.zoned++
	}
	rc := features.RequestFromEvent(features.ArchivedEvent{
		EventTime: r.EventTime, Device: r.Device, SessionID: r.SessionID, Surface: r.Surface,
	}, zone, us)
	if err := j.fs.FillRequest(j.req, rc); err != nil {
		return err
	}

	e := j.newExample()
	if err := j.layout.Fill(e.values, features.Inputs{User: j.userRec, Item: j.itemRec, UserItem: j.pairRec, Request: j.req}); err != nil {
		return err
	}
	e.t, e.eventTime, e.key = t, r.EventTime, key
	e.eventID, e.user, e.item, e.req = strings.Clone(r.EventID), j.userIDs[key.user], j.itemIDs[key.item], strings.Clone(r.RequestID)
	e.position = -1
	if r.Position != nil {
		e.position = *r.Position
	}
	j.queue = append(j.queue, e)
	j.open[key] = e // the latest impression of the key takes later clicks
	return nil
}

func (j *joiner) newExample() *example {
	if n := len(j.free); n > 0 {
		e := j.free[n-1]
		j.free = j.free[:n-1]
		vals := e.values
		*e = example{values: vals}
		return e
	}
	return &example{values: make([]float32, j.layout.Width())}
}

// flush writes the examples whose attribution window closed before t (all
// of them when t < 0).
func (j *joiner) flush(ctx context.Context, t int64) error {
	n := 0
	for _, e := range j.queue {
		if t >= 0 && e.t+j.window >= t {
			break
		}
		if err := j.out.add(ctx, e); err != nil {
			return err
		}
		if j.open[e.key] == e {
			delete(j.open, e.key)
		}
		j.free = append(j.free, e)
		n++
	}
	if n > 0 {
		j.queue = append(j.queue[:0], j.queue[n:]...)
	}
	return nil
}

func (j *joiner) manifest() Manifest {
	m := Manifest{
		Format:          1,
		ID:              j.cfg.ID,
		CreatedAt:       time.Now().UTC(),
		SchemaHash:      j.fs.SchemaHash(),
		Model:           j.layout.Schema(),
		Width:           j.layout.Width(),
		From:            j.cfg.From.UTC(),
		To:              j.cfg.To.UTC(),
		Label:           LabelRule,
		Attribution:     j.cfg.Attribution.String(),
		AvailabilityLag: j.cfg.AvailabilityLag.String(),
		StateLookback:   j.cfg.StateLookback.String(),
		Rows:            j.out.rows,
		Positives:       j.out.positives,
		Watched:         j.out.watched,
		Purchased:       j.out.purchased,
		EventsRead:      j.events,
		Files:           j.out.files,
		Defaulted:       j.defaultedWithoutInputs(),
	}
	for _, g := range j.groups {
		for _, u := range g.uses {
			if u.Examples > 0 {
				m.Snapshots = append(m.Snapshots, u)
			}
		}
	}
	return m
}

// defaultedWithoutInputs adds to the defaulted features those no example
// had the input of: the local-time request features when no example had
// a time zone (neither archived with the event nor from Config.Zones), and
// the trending velocity when no example had a baseline.
func (j *joiner) defaultedWithoutInputs() map[string]string {
	for _, c := range j.layout.Columns() {
		f, _ := j.fs.Lookup(c.Name)
		if _, ok := j.defaulted[f.Name]; ok {
			continue
		}
		switch {
		case j.zoned == 0 && f.Lane == features.LaneRequest && localTimeFeature(f.Name):
			j.defaulted[f.Name] = "no time zone: events archived without time_zone and no Config.Zones"
		case j.baselined == 0 && j.out.rows > 0 && f.Name == windowed.ItemTrendingVelocity30m.Name():
			j.defaulted[f.Name] = "no trending baseline: no example's item had " + baselineFeature + " in the item snapshot it read (serving writes no velocity without one)"
		}
	}
	return j.defaulted
}
