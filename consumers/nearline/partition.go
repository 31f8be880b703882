package nearline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/online"
	"github.com/adaptrec/adaptrec/features/windowed"
)

// partition is the worker of one assigned partition and its state.
type partition struct {
	c      *Consumer
	topic  string
	id     int
	dlq    *kafka.Writer
	commit func(next int64) error

	users   map[string]*user
	win     *windowed.Items
	dedupe  *events.DedupeWindow
	streamT int64 // latest event time of the partition, unix ms

	dirtyUsers, dirtyItems map[string]bool
	dead                   []kafka.Message
	applied                int64
	lastTick               int64 // bucket of the last tick
	// userPhases and itemPhases spread the periodic rewrite of the held
	// users and items over Config.Refresh.
	userPhases, itemPhases *phases
	// pairItems, pairVals and pairSets are reused by every write of
	// ui_impressions_1h.
	pairItems []string
	pairVals  []features.Value
	pairSets  []online.PairValues
	// pairQueue holds the users with impressions not written yet because
	// their set was written less than Config.PairInterval before, each due
	// an interval after it was queued, so in time order
	// (pairQueue[pairHead:]).
	pairQueue []pairDue
	pairHead  int
}

// pairDue is a user whose ui_impressions_1h set is due at a time (unix
// ms).
type pairDue struct {
	user string
	due  int64
}

func newPartition(c *Consumer, topic string, id int, dlq *kafka.Writer, commit func(int64) error) *partition {
	return &partition{c: c, topic: topic, id: id, dlq: dlq, commit: commit,
		users: map[string]*user{}, win: windowed.NewItems(c.cfg.Bucket, c.cfg.Lateness),
		dedupe: events.NewDedupeWindow(max(c.cfg.DedupeWindow, 0)), dirtyUsers: map[string]bool{}, dirtyItems: map[string]bool{},
		userPhases: newPhases(c.cfg.Refresh.Milliseconds()), itemPhases: newPhases(c.cfg.Refresh.Milliseconds())}
}

// run works the partition from committed (the group's committed offset, or
// a kafka.FirstOffset/LastOffset sentinel) until ctx ends.
func (p *partition) run(ctx context.Context, dialer *kafka.Dialer, committed int64) error {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: p.c.cfg.Kafka.Brokers, Topic: p.topic, Partition: p.id, Dialer: dialer,
		MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 250 * time.Millisecond, ReadLagInterval: -1, MaxAttempts: 1 << 20,
	})
	defer r.Close()
	start := committed
	if p.c.cfg.Warmup > 0 && committed >= 0 {
		if err := r.SetOffsetAt(ctx, time.Now().Add(-p.c.cfg.Warmup)); err != nil {
			return fmt.Errorf("warm up %s/%d: %w", p.topic, p.id, err)
		}
		start = min(r.Offset(), committed)
	}
	if err := r.SetOffset(start); err != nil {
		return fmt.Errorf("position %s/%d at %d: %w", p.topic, p.id, start, err)
	}
	// Messages below committed were handled by an earlier owner: they
	// rebuild the state, and their dead letters are not sent again.
	replayUntil := committed
	next := int64(-1)
	for ctx.Err() == nil {
		n := 0
		deadline := time.Now().Add(p.c.cfg.FlushInterval)
		for n < p.c.cfg.BatchEvents {
			fctx, cancel := context.WithDeadline(ctx, deadline)
			m, err := r.FetchMessage(fctx)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				if errors.Is(err, context.DeadlineExceeded) {
					break
				}
				return fmt.Errorf("read %s/%d: %w", p.topic, p.id, err)
			}
			n++
			p.handle(m, m.Offset < replayUntil)
			next = m.Offset + 1
		}
		if n == 0 {
			// Caught up: the values are correct as of now.
			p.tick(time.Now().UnixMilli())
		} else {
			// Busy (or lagging): move the windows of everything held
			// with the stream's own time.
			p.tick(p.streamT)
		}
		if next < 0 || (n == 0 && len(p.dirtyUsers) == 0 && len(p.dirtyItems) == 0) {
			continue
		}
		if err := p.flush(ctx, next, next > replayUntil || replayUntil < 0); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	return nil
}

// handle applies one message to the state.
func (p *partition) handle(m kafka.Message, replay bool) {
	now := time.Now()
	e, err := events.Decode(m.Value, now)
	if err == nil && e.GetInteraction() == nil {
		err = fmt.Errorf("%w: %s carries no interaction", events.ErrMalformed, p.topic)
	}
	if err != nil {
		if !replay {
			p.dead = append(p.dead, deadLetter(m, err.Error(), reasonCode(m.Value, e, now), p.c.cfg.GroupID, now))
		}
		return
	}
	if p.dedupe.Seen(e.GetEnvelope().GetEventId(), m.Offset) {
		if !replay {
			p.c.duplicates.Add(1)
			duplicatesTotal.Inc()
		}
		return
	}
	in := e.GetInteraction()
	ev := windowed.Event{
		T: e.GetEnvelope().GetEventTime().AsTime().UnixMilli(), Item: in.GetItemId(),
		Session: features.SessionKey(in.GetSessionId()), Action: windowed.ActionOf(in.GetAction()),
	}
	if id := in.GetUserId(); id != "" {
		u := p.users[id]
		if u == nil {
			u = &user{}
			p.users[id] = u
			p.userPhases.add(id)
		}
		u.Apply(&p.c.rules, ev)
		p.dirtyUsers[id] = true
		u.pairsNew = u.pairsNew || (ev.Action == windowed.ActionImpression && ev.Item != "")
	}
	if ev.Item != "" {
		held := p.win.Held(ev.Item)
		late := p.win.Add(ev.Item, ev.T, ev.Action)
		if !held && p.win.Held(ev.Item) {
			p.itemPhases.add(ev.Item)
		}
		switch late {
		case windowed.LateCounted:
			p.c.lateCounted.Add(1)
			lateTotal.WithLabelValues("counted").Inc()
			p.dirtyItems[ev.Item] = true
		case windowed.LateDropped:
			p.c.lateDropped.Add(1)
			lateTotal.WithLabelValues("dropped").Inc()
		default:
			if ev.Action.CountsForItems() {
				p.dirtyItems[ev.Item] = true
			}
		}
	}
	p.streamT = max(p.streamT, ev.T)
	if !replay {
		p.applied++
	}
}

// tick moves the partition's time to now: the wall clock when it is caught
// up, its latest event time otherwise. The held users and items whose
// refresh phase has come up since the last tick are marked for rewriting
// (each once per Config.Refresh, spread over it); at a bucket boundary,
// users and items with nothing left in any window are dropped, an
// evicted item getting one last write of its (zero) shard.
func (p *partition) tick(now int64) {
	t := max(now, p.streamT)
	p.streamT = t
	p.win.Advance(t)
	p.userPhases.advance(t, func(id string) { p.dirtyUsers[id] = true })
	p.itemPhases.advance(t, func(id string) { p.dirtyItems[id] = true })
	for p.pairHead < len(p.pairQueue) && p.pairQueue[p.pairHead].due <= t {
		q := &p.pairQueue[p.pairHead]
		if u := p.users[q.user]; u != nil {
			u.pairsQueued = false
			p.dirtyUsers[q.user] = true
		}
		*q = pairDue{}
		p.pairHead++
	}
	if p.pairHead == len(p.pairQueue) {
		p.pairQueue, p.pairHead = p.pairQueue[:0], 0
	}
	b := p.win.BucketStart(t)
	if b == p.lastTick {
		return
	}
	p.lastTick = b
	for id, u := range p.users {
		if u.Idle(&p.c.rules, t) && t-u.LastEvent() > 2*hour.Milliseconds() {
			delete(p.users, id)
			delete(p.dirtyUsers, id)
			p.userPhases.remove(id)
		}
	}
	for _, id := range p.win.Evict() {
		p.dirtyItems[id] = true
		p.itemPhases.remove(id)
	}
}

// flush writes the dead letters and the dirty values, retrying until they
// are acknowledged, then commits next when commit is set.
func (p *partition) flush(ctx context.Context, next int64, commit bool) error {
	backoff := 100 * time.Millisecond
	for step := ""; ; {
		err := p.write(ctx)
		step = "write"
		if err == nil && commit {
			step = "commit"
			err = p.commit(next)
		}
		if err == nil {
			break
		}
		flushErrorsTotal.WithLabelValues(step).Inc()
		p.c.logger.Warn("nearline flush failed; retrying", "topic", p.topic, "partition", p.id, "step", step, "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("flush %s/%d: %w", p.topic, p.id, ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	if commit {
		p.c.commits.Add(1)
	}
	p.c.applied.Add(p.applied)
	eventsTotal.Add(float64(p.applied))
	p.applied = 0
	return nil
}

// write sends the dead letters and the values of the dirty users and
// items. It is idempotent: a retry sends the same or newer values.
func (p *partition) write(ctx context.Context) error {
	if len(p.dead) > 0 {
		if err := p.dlq.WriteMessages(ctx, p.dead...); err != nil {
			return fmt.Errorf("write %d dead letters: %w", len(p.dead), err)
		}
		for _, m := range p.dead {
			deadLetteredTotal.WithLabelValues(headerValue(m, events.DeadLetterHeaderReasonCode)).Inc()
		}
		p.c.deadLettered.Add(int64(len(p.dead)))
		p.dead = p.dead[:0]
	}
	if len(p.dirtyUsers) > 0 {
		ups := make([]online.NearlineUpdate, 0, len(p.dirtyUsers))
		var pairs []online.PairUpdate
		items, vals, sets := p.pairItems[:0], p.pairVals[:0], p.pairSets[:0]
		for id := range p.dirtyUsers {
			u := p.users[id]
			at := max(p.streamT, u.LastEvent())
			ups = append(ups, online.NearlineUpdate{ID: id, Values: p.userValues(u, at)})
			if !p.c.writesPairs || (!u.pairsNew && !u.pairsOut) {
				continue // nothing shown since the set stored was cleared
			}
			if at-u.pairsAt < p.c.cfg.PairInterval.Milliseconds() {
				if u.pairsNew && !u.pairsQueued {
					u.pairsQueued = true
					// Due an interval after now, not after the last write:
					// the queue stays in time order.
					p.pairQueue = append(p.pairQueue, pairDue{user: id, due: at + p.c.cfg.PairInterval.Milliseconds()})
				}
				continue
			}
			n := len(items)
			items, vals = u.AppendPairImpressions(at, items, vals)
			if len(items) == n && !u.pairsOut {
				u.pairsNew = false // only impressions already out of the hour
				continue
			}
			// The slices of the arenas stay valid when a later append
			// moves them: an arena only grows within one write.
			sets = append(sets, online.PairValues{Feature: windowed.PairImpressions1h.Name(),
				Items: items[n:len(items):len(items)], Values: vals[n:len(vals):len(vals)], At: time.UnixMilli(at)})
			pairs = append(pairs, online.PairUpdate{User: id, Values: sets[len(sets)-1 : len(sets) : len(sets)]})
		}
		if err := p.c.w.WriteUsersNearline(ctx, ups); err != nil {
			return fmt.Errorf("write users of %s/%d: %w", p.topic, p.id, err)
		}
		if len(pairs) > 0 {
			if err := p.c.w.WritePairsNearline(ctx, pairs); err != nil {
				return fmt.Errorf("write user×item values of %s/%d: %w", p.topic, p.id, err)
			}
			for _, pu := range pairs {
				u := p.users[pu.User]
				u.pairsOut, u.pairsNew, u.pairsAt = len(pu.Values[0].Items) > 0, false, pu.Values[0].At.UnixMilli()
			}
		}
		clear(items)
		p.pairItems, p.pairVals, p.pairSets = items[:0], vals[:0], sets[:0]
		clear(p.dirtyUsers)
	}
	if len(p.dirtyItems) > 0 && p.c.writesItems {
		ids := make([]string, 0, len(p.dirtyItems))
		totals := make([]windowed.Totals, 0, len(p.dirtyItems))
		at := max(p.streamT, p.win.MaxT())
		for id := range p.dirtyItems {
			ids = append(ids, id)
			totals = append(totals, p.win.Totals(id, at))
		}
		field := p.topic + "/" + strconv.Itoa(p.id)
		sums, err := publishShards(ctx, p.c.rdb, p.c.cfg.KeyPrefix, field, 2*hour.Milliseconds(), ids, totals)
		if err != nil {
			return fmt.Errorf("items of %s/%d: %w", p.topic, p.id, err)
		}
		ups := make([]online.NearlineUpdate, 0, len(ids))
		for i, id := range ids {
			ups = append(ups, online.NearlineUpdate{ID: id, Values: p.itemValues(id, sums[i])})
		}
		if err := p.c.w.WriteItemsNearline(ctx, ups); err != nil {
			return fmt.Errorf("write items of %s/%d: %w", p.topic, p.id, err)
		}
	}
	clear(p.dirtyItems)
	return nil
}

// userValues are the user's nearline values as of at (the partition's
// stream time): the session fields at the user's latest event (their ttl,
// counted from it, ends the session for readers exactly as the training
// join's rule does), the last interaction at itself, the hour windows at
// at.
func (p *partition) userValues(u *user, at int64) []online.NearlineValue {
	v := u.Values(at)
	var out []online.NearlineValue
	for f := windowed.SessionKey; f <= windowed.UserPurchases1h; f++ {
		if !p.c.writes[f] {
			continue
		}
		val, t, ok := v.Get(f)
		if !ok {
			continue
		}
		if f == windowed.SessionRecentItems {
			val.List = append([]string{}, val.List...)
		}
		out = append(out, online.NearlineValue{Feature: f.Name(), Value: val, At: time.UnixMilli(t)})
	}
	return out
}

// itemValues are the item's values from the combined shards.
func (p *partition) itemValues(id string, s windowed.Totals) []online.NearlineValue {
	base, ok := 0.0, false
	if p.c.cfg.ClicksPer30m != nil {
		base, ok = p.c.cfg.ClicksPer30m(id)
	}
	v := p.c.rules.ItemValues(s, base, ok)
	var out []online.NearlineValue
	for f := windowed.ItemClicks1h; f <= windowed.ItemTrendingVelocity30m; f++ {
		if !p.c.writes[f] {
			continue
		}
		if val, t, ok := v.Get(f); ok {
			out = append(out, online.NearlineValue{Feature: f.Name(), Value: val, At: time.UnixMilli(t)})
		}
	}
	return out
}
