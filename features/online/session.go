package online

import (
	"context"
	"fmt"
	"time"

	"github.com/adaptrec/adaptrec/features"
)

// Session is one request's view of the store, opened by Assembler.Begin:
// the user's stored features read once (one Redis round trip), the request
// features, and one item view that every Assemble of the session reads, so
// that retrieval (which needs the user's embedding, recent items and
// category affinity before there are candidates) and ranking share the round
// trip and can never see two versions of the items. A Session is not safe for
// concurrent use; Close returns its memory to the assembler's pool and the
// Session must not be used after.
type Session struct {
	a          *Assembler
	sc         *scratch
	v          *view
	res        *Result
	now, start time.Time
	metrics    bool
	// tasted: sc.taste holds the user's taste (read once, at the first
	// Assemble that needs it).
	tasted bool
}

// BeginOptions tunes Begin.
type BeginOptions struct {
	// Lists decodes the user's list and map features too (recent items,
	// creator clicks), which ranking layouts do not need and Assemble skips.
	Lists bool
	// NoMetrics keeps the session's served values out of the Prometheus
	// counters: for bulk reads that are not requests (a catalogue built
	// from item features).
	NoMetrics bool
}

// Begin reads the user's stored features (see Assemble for the deadline,
// the breaker and degradation: a failed read degrades, it does not fail)
// and fills the request's. userID "" reads no user: every user feature is
// its default. res, when not nil, receives the session's report; Assemble
// adds the items' counts to it.
func (a *Assembler) Begin(ctx context.Context, userID string, req Request, res *Result, opts BeginOptions) (*Session, error) {
	start := time.Now()
	now := req.Now
	if now.IsZero() {
		now = start
	}
	sc := a.pool.Get().(*scratch)
	if res == nil {
		res = &sc.res
	}
	se := &sc.session
	*se = Session{a: a, sc: sc, v: a.s.view.Load(), res: res, now: now, start: start, metrics: !opts.NoMetrics}
	res.reset(a.s.plan)
	a.s.readUser(ctx, se.v, userID, start, sc)
	if sc.degraded != "" {
		res.Degraded, res.DegradedReason = true, sc.degraded
	}
	if err := a.s.fillUser(se.v, now, sc, res, opts.Lists, nil); err != nil {
		se.Close()
		return nil, err
	}
	if err := a.s.fillRequest(req.Context, sc, res, nil); err != nil {
		se.Close()
		return nil, err
	}
	return se, nil
}

// User is the user's record after the cascade. It belongs to the session.
func (se *Session) User() *features.Record { return se.sc.user }

// Result is the session's report so far.
func (se *Session) Result() *Result { return se.res }

// Assemble writes one row per candidate into dst like Assembler.Assemble,
// from the session's user and item view. It may be called more than once
// (the items' counts add up in the report).
func (se *Session) Assemble(itemIDs []string, dst []float32) error {
	a, sc := se.a, se.sc
	if need := len(itemIDs) * a.layout.Width(); len(dst) < need {
		return fmt.Errorf("assemble: row buffer holds %d values, %d rows of %d need %d", len(dst), len(itemIDs), a.layout.Width(), need)
	}
	if err := a.s.fillItems(se.v, itemIDs, se.now, sc, se.res, nil); err != nil {
		return err
	}
	if err := a.s.fillPairs(se.v, itemIDs, se.now, sc, se.res, nil); err != nil {
		return err
	}
	if err := a.s.fillCross(se, len(itemIDs), nil); err != nil {
		return err
	}
	a.s.countNotServed(se.res, len(itemIDs))
	var pairs []*features.Record
	if len(sc.pairs.rows) == len(itemIDs) {
		pairs = sc.pairs.rows
	}
	err := a.layout.FillBatch(dst, sc.user, sc.req, sc.rows, pairs)
	clear(sc.rows)
	clear(sc.pairs.rows)
	if err != nil {
		return fmt.Errorf("assemble: %w", err)
	}
	return nil
}

// Close records the session's metrics and releases its memory.
func (se *Session) Close() {
	if se.sc == nil {
		return
	}
	a, sc := se.a, se.sc
	if se.metrics {
		a.s.record(se.res)
		assembleSeconds.Observe(time.Since(se.start).Seconds())
	}
	se.sc = nil
	a.pool.Put(sc)
}

// ItemIDs returns the ids of every item the store holds features for, in
// the current view. The slice is shared: do not modify it.
func (s *Store) ItemIDs() []string {
	items := s.view.Load().items
	if len(items.extra) == 0 {
		return items.ids
	}
	ids := make([]string, len(items.ids), items.size())
	copy(ids, items.ids)
	ids = ids[:items.size()]
	for id, d := range items.extra {
		ids[d] = id
	}
	return ids
}

// ItemsGeneration identifies one state of the store's item features: two
// calls return equal values (==) exactly when no item value changed in
// between. Serving rebuilds what it derives from item features (its
// catalogue) only when the generation moved.
type ItemsGeneration struct{ v *itemView }

// ItemsGeneration returns the current generation of the item features.
func (s *Store) ItemsGeneration() ItemsGeneration {
	return ItemsGeneration{s.view.Load().items}
}

// fillCross computes the cross features of the session's n candidates
// (features.FillCross) into their pair records, creating the records
// fillPairs left out, from the user's taste: the user record after the
// cascade and the categories of the user's session items in the session's
// item view.
func (s *Store) fillCross(se *Session, n int, tr tracer) error {
	p := s.plan
	g := p.cross
	if g == nil {
		return nil
	}
	fs, sc := p.fs, se.sc
	if !se.tasted {
		nowMs := se.now.UnixMilli()
		sc.cats = sc.cats[:0]
		if fs.NeedsSession() {
			for _, id := range fs.SessionItems(sc.user) {
				if c, ok := s.itemCategory(se.v.items, id, nowMs, sc); ok {
					sc.cats = append(sc.cats, c)
				}
			}
		}
		if err := fs.Taste(&sc.taste, sc.user, sc.cats); err != nil {
			return fmt.Errorf("assemble: %w", err)
		}
		se.tasted = true
	}
	ps := &sc.pairs
	if len(ps.rows) != n { // no pair group: fillPairs sized nothing
		ps.reserve(fs, n)
	}
	gr := &se.res.Groups[g.index]
	for i := range n {
		rec := ps.rows[i]
		if rec == nil {
			rec = ps.recs[i]
			rec.Reset()
			ps.rows[i] = rec
		}
		if err := fs.FillCross(rec, &sc.taste, sc.rows[i]); err != nil {
			return fmt.Errorf("assemble: %w", err)
		}
		for j := range g.feats {
			f := g.feats[j].f
			src := SourceDefaultMissing
			if rec.Has(f.ID) {
				src = SourceRequest
			}
			gr.Counts[src]++
			if tr != nil {
				tr(i, f, src, 0, "")
			}
		}
	}
	return nil
}

// itemCategory returns an item's category in the item view as of nowMs:
// from its record while valid, else through the cascade into a scratch
// record.
func (s *Store) itemCategory(items *itemView, id string, nowMs int64, sc *scratch) (int64, bool) {
	d, ok := items.lookup(id)
	if !ok {
		return 0, false
	}
	fs := s.plan.fs
	if e := &items.entries[d]; e.rec != nil && nowMs >= e.from && nowMs < e.until {
		return fs.ItemCategory(e.rec)
	}
	if sc.catRec == nil {
		sc.catRec = fs.NewRecord(features.EntityItem)
		sc.catGroups = make([]GroupResult, len(s.plan.groups))
	}
	sc.catRec.Reset()
	clear(sc.catGroups)
	if _, err := s.fillItem(items, d, nowMs, sc.catRec, sc.catGroups, -1, nil); err != nil {
		return 0, false
	}
	return fs.ItemCategory(sc.catRec)
}
