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
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

// partition is the worker of one assigned partition and its state.
type partition struct {
	c      *Consumer
	topic  string
	id     int
	dlq    *kafka.Writer
	commit func(next int64) error

	users   map[string]*userState
	win     *windows
	dedupe  *events.DedupeWindow
	streamT int64 // latest event time of the partition, unix ms

	dirtyUsers, dirtyItems map[string]bool
	dead                   []kafka.Message
	applied                int64
	lastTick               int64 // bucket of the last tick
	// userPhases and itemPhases spread the periodic rewrite of the held
	// users and items over Config.Refresh.
	userPhases, itemPhases *phases
}

func newPartition(c *Consumer, topic string, id int, dlq *kafka.Writer, commit func(int64) error) *partition {
	return &partition{c: c, topic: topic, id: id, dlq: dlq, commit: commit,
		users: map[string]*userState{}, win: newWindows(c.cfg.Bucket, c.cfg.Lateness),
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
	ev := interaction{
		t: e.GetEnvelope().GetEventTime().AsTime().UnixMilli(), user: in.GetUserId(), item: in.GetItemId(), session: in.GetSessionId(),
		isImpression: in.GetAction() == adaptrecv1.Action_ACTION_IMPRESSION, isClick: in.GetAction() == adaptrecv1.Action_ACTION_CLICK,
		isView: in.GetAction() == adaptrecv1.Action_ACTION_VIEW, isPurchase: in.GetAction() == adaptrecv1.Action_ACTION_PURCHASE,
	}
	if ev.user != "" {
		u := p.users[ev.user]
		if u == nil {
			u = &userState{}
			p.users[ev.user] = u
			p.userPhases.add(ev.user)
		}
		u.apply(ev)
		p.dirtyUsers[ev.user] = true
	}
	if ev.item != "" {
		_, held := p.win.items[ev.item]
		late := p.win.add(ev.item, ev.t, ev.isClick, ev.isImpression)
		if _, now := p.win.items[ev.item]; now && !held {
			p.itemPhases.add(ev.item)
		}
		switch late {
		case lateCounted:
			p.c.lateCounted.Add(1)
			lateTotal.WithLabelValues("counted").Inc()
			p.dirtyItems[ev.item] = true
		case lateDropped:
			p.c.lateDropped.Add(1)
			lateTotal.WithLabelValues("dropped").Inc()
		default:
			if ev.isClick || ev.isImpression {
				p.dirtyItems[ev.item] = true
			}
		}
	}
	p.streamT = max(p.streamT, ev.t)
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
	p.win.maxT = max(p.win.maxT, t)
	p.userPhases.advance(t, func(id string) { p.dirtyUsers[id] = true })
	p.itemPhases.advance(t, func(id string) { p.dirtyItems[id] = true })
	b := floorTo(t, p.win.bucket)
	if b == p.lastTick {
		return
	}
	p.lastTick = b
	for id, u := range p.users {
		if u.idle(t) && t-u.lastEvent > 2*hour.Milliseconds() {
			delete(p.users, id)
			delete(p.dirtyUsers, id)
			p.userPhases.remove(id)
		}
	}
	for _, id := range p.win.evict() {
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
		for id := range p.dirtyUsers {
			ups = append(ups, online.NearlineUpdate{ID: id, Values: p.userValues(p.users[id])})
		}
		if err := p.c.w.WriteUsersNearline(ctx, ups); err != nil {
			return fmt.Errorf("write users of %s/%d: %w", p.topic, p.id, err)
		}
		clear(p.dirtyUsers)
	}
	if len(p.dirtyItems) > 0 && len(p.c.item) > 0 {
		ids := make([]string, 0, len(p.dirtyItems))
		totals := make([]shard, 0, len(p.dirtyItems))
		at := max(p.streamT, p.win.maxT)
		for id := range p.dirtyItems {
			ids = append(ids, id)
			totals = append(totals, p.win.totals(id, at))
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

// userValues are the user's nearline values: the session fields and the
// last interaction at the user's latest event (their ttl counts from it),
// the hour windows at the partition's stream time.
func (p *partition) userValues(u *userState) []online.NearlineValue {
	at := max(p.streamT, u.lastEvent)
	clicks1h, purchases1h := u.windows(at)
	last := u.lastAction
	// The session fields as of the user's latest event: their 30m ttl,
	// counted from it, ends the session for readers.
	key, start, acts, clicks, recent := u.sessionKey, u.sessionStart, u.sessionActs, u.sessionClick, u.recent
	ev := time.UnixMilli(u.lastEvent)
	win := time.UnixMilli(at)
	var out []online.NearlineValue
	add := func(name string, v features.Value, t time.Time) {
		if p.c.user[name] && !t.IsZero() && t.UnixMilli() > 0 {
			out = append(out, online.NearlineValue{Feature: name, Value: v, At: t})
		}
	}
	add(features.FeatureSessionKey, features.Value{Int: key}, ev)
	add(features.FeatureSessionStartMs, features.Value{Int: start}, ev)
	add(features.FeatureSessionInteractions, features.Value{Int: acts}, ev)
	add("user_session_clicks", features.Value{Int: clicks}, ev)
	add("user_session_recent_items", features.Value{List: append([]string{}, recent...)}, ev)
	if last > 0 {
		add(features.FeatureLastInteractionMs, features.Value{Int: last}, time.UnixMilli(last))
	}
	add("user_clicks_1h", features.Value{Int: clicks1h}, win)
	add("user_purchases_1h", features.Value{Int: purchases1h}, win)
	return out
}

// itemValues are the item's values from the combined shards.
func (p *partition) itemValues(id string, s shard) []online.NearlineValue {
	at := time.UnixMilli(s.at)
	var out []online.NearlineValue
	add := func(name string, v features.Value) {
		if p.c.item[name] {
			out = append(out, online.NearlineValue{Feature: name, Value: v, At: at})
		}
	}
	add("item_clicks_1h", features.Value{Int: s.clicks1h})
	add("item_impressions_1h", features.Value{Int: s.impressions1h})
	add("item_ctr_1h", features.Value{Float: float32(smoothedRate(s.clicks1h, s.impressions1h, p.c.ctrPrior))})
	if p.c.cfg.ClicksPer30m != nil {
		if base, ok := p.c.cfg.ClicksPer30m(id); ok {
			add("item_trending_velocity_30m", features.Value{Float: float32(velocity(s.clicks30m, base))})
		}
	}
	return out
}

// smoothedRate is features.yaml's rate: (successes + 100·prior) / (trials + 100).
func smoothedRate(successes, trials int64, prior float64) float64 {
	return (float64(successes) + ctrPriorWeight*prior) / (float64(trials) + ctrPriorWeight)
}

// velocity is item_trending_velocity_30m: clicks in the last 30 minutes
// over the mean clicks per 30 minutes, both plus one.
func velocity(clicks30m int64, meanPer30m float64) float64 {
	return (float64(clicks30m) + 1) / (meanPer30m + 1)
}
