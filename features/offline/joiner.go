package offline

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/snapshot"
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
	g.index = make(map[string]int32, len(rows))
	for i := range rows {
		g.index[rows[i].EntityID] = int32(i)
	}
	g.uses = append(g.uses, SnapshotUse{Group: g.name, Version: m.Version, AsOf: m.AsOf})
	return nil
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

// userState is what the nearline lane knows about a user, replayed from the
// log.
type userState struct {
	lastEvent    int64 // unix ms of the latest event, any action
	sessionKey   int64
	sessionStart int64
	sessionActs  int64
	lastAction   int64 // unix ms of the latest action that is not an impression
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

// pendingEvent is an event of the current millisecond, applied to the user
// state only once the log moves past it: examples read the state strictly
// before their own millisecond, as serving did before the page was logged.
type pendingEvent struct {
	user    int32
	session int64
	act     bool // an action, not an impression
}

type joiner struct {
	cfg    *Config
	fs     *features.FeatureSet
	layout *features.Layout
	groups []*groupCursor
	byEnt  [3][]*groupCursor // user, item, user_item

	users, items                   map[string]int32
	userIDs                        []string
	state                          []userState
	sessionTTL, lastActionTTL      int64
	stateIDs                       [4]features.ID
	stateDefined                   [4]bool
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
	}
	if f, ok := fs.Lookup(features.FeatureSessionKey); ok && f.TTL > 0 {
		j.sessionTTL = f.TTL.Milliseconds()
	}
	if f, ok := fs.Lookup(features.FeatureLastInteractionMs); ok && f.TTL > 0 {
		j.lastActionTTL = f.TTL.Milliseconds()
	}
	for i, n := range []string{features.FeatureSessionKey, features.FeatureSessionStartMs, features.FeatureSessionInteractions, features.FeatureLastInteractionMs} {
		if f, ok := fs.Lookup(n); ok && f.Entity == features.EntityUser && f.Type.Kind == features.KindInt {
			j.stateIDs[i], j.stateDefined[i] = f.ID, true
		}
	}

	inLayout := map[string]bool{}
	for _, n := range layout.Names() {
		inLayout[n] = true
	}
	for _, g := range fs.Groups() {
		if g.Lane != features.LaneBatch {
			continue
		}
		used := false
		for _, f := range g.Features {
			used = used || inLayout[f.Name]
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
		if len(hist) == 0 {
			for _, f := range g.Features {
				if inLayout[f.Name] {
					j.defaulted[f.Name] = "group " + g.Name + " has no snapshot"
				}
			}
		}
	}
	for _, c := range layout.Columns() {
		f, _ := fs.Lookup(c.Name)
		switch {
		case f.Lane == features.LaneNearline && !isStateFeature(f.Name):
			j.defaulted[f.Name] = "nearline feature: the offline join replays only the user state the request lane reads (user_session_*, user_last_interaction_ms)"
		}
	}
	return j, nil
}

func isStateFeature(name string) bool {
	switch name {
	case features.FeatureSessionKey, features.FeatureSessionStartMs, features.FeatureSessionInteractions, features.FeatureLastInteractionMs:
		return true
	}
	return false
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
	j.state = append(j.state, userState{})
	return i
}

func (j *joiner) item(id string) int32 {
	if i, ok := j.items[id]; ok {
		return i
	}
	i := int32(len(j.items))
	j.items[strings.Clone(id)] = i
	return i
}

// add processes one archived event; events come in event-time order.
func (j *joiner) add(ctx context.Context, r *eventlog.Row) error {
	j.events++
	if r.UserID == "" {
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
	u := j.user(r.UserID)
	session := features.SessionKey(r.SessionID)
	isImpression := r.Action == "ACTION_IMPRESSION"
	j.pending = append(j.pending, pendingEvent{user: u, session: session, act: !isImpression})
	if r.ItemID == "" {
		return nil
	}
	key := attrKey{user: u, item: j.item(r.ItemID), session: session}
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
// users' nearline state.
func (j *joiner) applyPending() {
	for _, p := range j.pending {
		s := &j.state[p.user]
		t := j.curT
		if p.session != 0 && (p.session != s.sessionKey || t-s.lastEvent > j.sessionTTL) {
			s.sessionKey, s.sessionStart, s.sessionActs = p.session, t, 0
		}
		s.lastEvent = t
		if p.act {
			if p.session != 0 && p.session == s.sessionKey {
				s.sessionActs++
			}
			s.lastAction = t
		}
	}
	j.pending = j.pending[:0]
}

// stateAt returns the user's nearline state as serving would read it at t.
func (j *joiner) stateAt(u int32, t int64) features.UserState {
	s := &j.state[u]
	var us features.UserState
	if s.sessionKey != 0 && t-s.lastEvent <= j.sessionTTL {
		us.SessionKey = s.sessionKey
		us.SessionStart = time.UnixMilli(s.sessionStart).UTC()
		us.SessionInteractions = s.sessionActs
	}
	if s.lastAction > 0 && t-s.lastAction <= j.lastActionTTL {
		us.LastInteraction = time.UnixMilli(s.lastAction).UTC()
	}
	return us
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
	us := j.stateAt(key.user, t)
	if err := j.setState(us); err != nil {
		return err
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
	e.eventID, e.user, e.item, e.req = strings.Clone(r.EventID), j.userIDs[key.user], strings.Clone(r.ItemID), strings.Clone(r.RequestID)
	e.position = -1
	if r.Position != nil {
		e.position = *r.Position
	}
	j.queue = append(j.queue, e)
	j.open[key] = e // the latest impression of the key takes later clicks
	return nil
}

func (j *joiner) setState(us features.UserState) error {
	vals := [4]int64{us.SessionKey, 0, us.SessionInteractions, 0}
	if !us.SessionStart.IsZero() {
		vals[1] = us.SessionStart.UnixMilli()
	}
	if !us.LastInteraction.IsZero() {
		vals[3] = us.LastInteraction.UnixMilli()
	}
	known := [4]bool{us.SessionKey != 0, us.SessionKey != 0, us.SessionKey != 0, !us.LastInteraction.IsZero()}
	for i, id := range j.stateIDs {
		if j.stateDefined[i] && known[i] {
			if err := j.userRec.SetInt(id, vals[i]); err != nil {
				return err
			}
		}
	}
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
		Defaulted:       j.defaultedWithZones(),
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

// defaultedWithZones adds the local-time request features to the defaulted
// ones when no example had a time zone (neither archived with the event nor
// from Config.Zones).
func (j *joiner) defaultedWithZones() map[string]string {
	if j.zoned > 0 {
		return j.defaulted
	}
	for _, c := range j.layout.Columns() {
		if f, _ := j.fs.Lookup(c.Name); f.Lane == features.LaneRequest && localTimeFeature(f.Name) {
			j.defaulted[f.Name] = "no time zone: events archived without time_zone and no Config.Zones"
		}
	}
	return j.defaulted
}
