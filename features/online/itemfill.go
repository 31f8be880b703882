package online

import (
	"github.com/adaptrec/adaptrec/internal/pace"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/adaptrec/adaptrec/features"
)

// Item records. Reading an item's values from the group tables and setting
// them in a record one by one cost most of a request (500 items × 30
// features). So each item view also holds, per item, the record the
// cascade produces, built when the view is: a request uses it as is while
// its outcome cannot have changed (from <= now < until: no value crossed
// its freshness SLA or ttl since), and rebuilds the few others. Records
// are never modified once published, so requests share them.

// itemEntry is an item's record after the cascade, valid for instants in
// [from, until), and its class: one slot, so that a request reads it with
// one cache miss.
type itemEntry struct {
	rec         *features.Record
	from, until int64
	class       uint16
}

// itemClass is how an item record's values were served: per group and
// source, the number of values. Items mostly fall into a few classes, so a
// request counts candidates per class instead of values per feature.
type itemClass []classCount

type classCount struct {
	group int // plan.groups index
	src   Source
	n     int32
}

// maxClasses bounds the classes an item view interns; an item of a class
// beyond it has no record and is always filled per request.
const maxClasses = 1 << 16

// fillItem fills rec (reset by the caller) with every held feature of item
// d as of nowMs through the cascade, counts what served each value into
// groups (indexed like plan.groups), and returns the first instant after
// nowMs at which the outcome can change: a value turning late, stale or
// expired (math.MaxInt64: never).
func (s *Store) fillItem(items *itemView, d int32, nowMs int64, rec *features.Record, groups []GroupResult, item int, tr tracer) (int64, error) {
	p := s.plan
	until := int64(math.MaxInt64)
	boundary := func(b int64) {
		if b > nowMs && b < until {
			until = b
		}
	}
	for k, g := range p.itemBatch {
		gr := &groups[g.index]
		t := items.batch[k]
		if t == nil {
			gr.Counts[SourceDefaultUnavailable] += int32(len(g.held))
			traceAll(tr, item, g.held, SourceDefaultUnavailable)
			continue
		}
		r := int(rowOf(items.batchRows[k], d))
		if r < 0 {
			gr.Counts[SourceDefaultMissing] += int32(len(g.held))
			traceAll(tr, item, g.held, SourceDefaultMissing)
			continue
		}
		nums := t.nums[r*g.numWidth : (r+1)*g.numWidth]
		ints := t.ints[r*g.intCount : (r+1)*g.intCount]
		has := t.has[r*g.words : (r+1)*g.words]
		asOf := t.asOf.UnixMilli()
		age := nowMs - asOf
		for j := range g.held {
			fp := &g.held[j]
			src := SourceBatch
			switch {
			case has[fp.pos>>6]&(1<<(fp.pos&63)) == 0:
				src = SourceDefaultMissing
			case fp.ttl > 0 && age > fp.ttl:
				src = SourceDefaultExpired
			default:
				if fp.sla > 0 {
					if age > fp.sla {
						src = SourceBatchLate
					}
					boundary(asOf + fp.sla + 1)
				}
				if fp.ttl > 0 {
					boundary(asOf + fp.ttl + 1)
				}
				if err := setColumn(rec, fp, nums, ints); err != nil {
					return 0, err
				}
			}
			gr.Counts[src]++
			if tr != nil {
				tr(item, fp.f, src, asOf, t.version)
			}
		}
	}
	for k, g := range p.itemNearline {
		gr := &groups[g.index]
		stale := false
		t := items.near[k]
		r := int32(-1)
		if t != nil {
			r = rowOf(items.nearRows[k], d)
		}
		switch {
		case t == nil:
			stale = true
			gr.Counts[SourceDefaultUnavailable] += int32(len(g.held))
			traceAll(tr, item, g.held, SourceDefaultUnavailable)
		case r < 0:
			gr.Counts[SourceDefaultMissing] += int32(len(g.held))
			traceAll(tr, item, g.held, SourceDefaultMissing)
		default:
			ri := int(r)
			nums := t.nums[ri*g.numWidth : (ri+1)*g.numWidth]
			ints := t.ints[ri*g.intCount : (ri+1)*g.intCount]
			has := t.has[ri*g.words : (ri+1)*g.words]
			at := t.at[ri*len(g.feats) : (ri+1)*len(g.feats)]
			for j := range g.held {
				fp := &g.held[j]
				src, written := SourceDefaultMissing, int64(0)
				if has[fp.pos>>6]&(1<<(fp.pos&63)) != 0 {
					written = at[fp.pos]
					var err error
					src, err = cascade(rec, fp, nowMs-written, func() error { return setColumn(rec, fp, nums, ints) })
					if err != nil {
						return 0, err
					}
					boundary(written + fp.fresh + 1)
					if fp.ttl > 0 {
						boundary(written + fp.ttl + 1)
					}
					if src == SourceNearlineLate || src == SourceBatchFallback {
						stale = true
					}
				}
				gr.Counts[src]++
				if tr != nil {
					tr(item, fp.f, src, written, "")
				}
			}
		}
		gr.Stale = gr.Stale || stale
		if err := s.setIndicator(g, rec, stale, groups, item, tr); err != nil {
			return 0, err
		}
	}
	return until, nil
}

func traceAll(tr tracer, item int, feats []featPlan, src Source) {
	if tr == nil {
		return
	}
	for i := range feats {
		tr(item, feats[i].f, src, 0, "")
	}
}

// fillItems sets sc.rows to one record per candidate: the item view's
// record when still valid now, else one filled into scratch; nil for an
// unknown item. tr, when set, forces the per-value path so that it sees
// every value.
func (s *Store) fillItems(v *view, ids []string, now time.Time, sc *scratch, res *Result, tr tracer) error {
	p := s.plan
	fs := p.fs
	items := v.items
	for len(sc.items) < len(ids) {
		sc.items = append(sc.items, fs.NewRecord(features.EntityItem))
	}
	if cap(sc.rows) < len(ids) {
		sc.rows = make([]*features.Record, len(ids))
	}
	sc.rows = sc.rows[:len(ids)]
	if cap(sc.hist) < len(items.classes) {
		sc.hist = make([]int32, len(items.classes))
	}
	hist := sc.hist[:len(items.classes)]
	clear(hist)
	for k, g := range p.itemBatch {
		if t := items.batch[k]; t != nil {
			res.Groups[g.index].Version = t.version
		}
	}
	nowMs := now.UnixMilli()
	unknown := int32(0)
	// Passes with little work each, rather than one loop: the index, the
	// entries and the records of 500 random items are mostly not in the
	// CPU caches, and short loops let the CPU overlap those misses.
	if cap(sc.dense) < len(ids) {
		sc.dense = make([]int32, len(ids))
	}
	dense := sc.dense[:len(ids)]
	if cap(sc.hashes) < len(ids) {
		sc.hashes = make([]uint64, len(ids))
	}
	hashes := sc.hashes[:len(ids)]
	var sink uint32
	for i, id := range ids {
		hashes[i] = items.index.hash(id)
		sink |= items.index.touch(hashes[i])
	}
	touchSink.Store(int32(sink))
	for i, id := range ids {
		dense[i], _ = items.lookupHashed(id, hashes[i])
	}
	if tr == nil {
		for i, d := range dense {
			sc.rows[i] = nil
			if d < 0 {
				continue
			}
			if e := &items.entries[d]; e.rec != nil && nowMs >= e.from && nowMs < e.until {
				sc.rows[i] = e.rec
				hist[e.class]++
				dense[i] = -2 // served from its record
			}
		}
		touch(sc.rows, s.plan.itemProbe)
	}
	for i, d := range dense {
		if d == -2 {
			continue
		}
		if d < 0 {
			sc.rows[i] = nil
			unknown++
			if tr != nil {
				for _, g := range p.itemBatch {
					traceAll(tr, i, g.held, SourceDefaultMissing)
				}
				for _, g := range p.itemNearline {
					traceAll(tr, i, g.held, SourceDefaultMissing)
					if g.indicator != nil {
						tr(i, g.indicator, SourceComputed, 0, "")
					}
				}
			}
			continue
		}
		rec := sc.items[i]
		rec.Reset()
		sc.rows[i] = rec
		if _, err := s.fillItem(items, d, nowMs, rec, res.Groups, i, tr); err != nil {
			return err
		}
	}
	for c, n := range hist {
		if n == 0 {
			continue
		}
		for _, cc := range items.classes[c] {
			gr := &res.Groups[cc.group]
			gr.Counts[cc.src] += n * cc.n
			if gr.Lane == features.LaneNearline && (cc.src == SourceNearlineLate || cc.src == SourceBatchFallback || cc.src == SourceDefaultUnavailable) {
				gr.Stale = true
			}
		}
	}
	if unknown > 0 {
		res.UnknownItems += int(unknown)
		for _, g := range p.itemBatch {
			res.Groups[g.index].Counts[SourceDefaultMissing] += unknown * int32(len(g.held))
		}
		for _, g := range p.itemNearline {
			res.Groups[g.index].Counts[SourceDefaultMissing] += unknown * int32(len(g.held))
			if g.indicator != nil {
				res.Groups[p.byName[g.indicator.Group].index].Counts[SourceComputed] += unknown
			}
		}
	}
	return nil
}

// classes interns item classes for the store's views; guarded by Store.mu.
type classes struct {
	index map[string]uint16
	list  []itemClass
	key   []byte
}

func (c *classes) intern(groups []GroupResult) (uint16, bool) {
	c.key = c.key[:0]
	for g := range groups {
		for src, n := range groups[g].Counts {
			if n != 0 {
				c.key = strconv.AppendInt(c.key, int64(g), 10)
				c.key = append(c.key, '.')
				c.key = strconv.AppendInt(c.key, int64(src), 10)
				c.key = append(c.key, '=')
				c.key = strconv.AppendInt(c.key, int64(n), 10)
				c.key = append(c.key, ' ')
			}
		}
	}
	if id, ok := c.index[string(c.key)]; ok {
		return id, true
	}
	k := string(c.key)
	if len(c.list) >= maxClasses {
		return 0, false
	}
	var cl itemClass
	for g := range groups {
		for src, n := range groups[g].Counts {
			if n != 0 {
				cl = append(cl, classCount{group: g, src: Source(src), n: n})
			}
		}
	}
	id := uint16(len(c.list))
	if c.index == nil {
		c.index = map[string]uint16{}
	}
	c.index[k] = id
	c.list = append(c.list, cl)
	return id, true
}

// buildRecords builds the records of dense indexes ds of v (every one when
// ds is nil) as of nowMs. v must not be published yet. Store.mu is held.
func (s *Store) buildRecords(v *itemView, ds []int32, nowMs int64, p *pace.Pacer) error {
	n := v.size()
	if len(v.entries) < n {
		v.entries = append(v.entries, make([]itemEntry, n-len(v.entries))...)
	}
	groups := make([]GroupResult, len(s.plan.groups))
	build := func(d int32) error {
		clear(groups)
		rec := s.plan.fs.NewRecord(features.EntityItem)
		until, err := s.fillItem(v, d, nowMs, rec, groups, -1, nil)
		if err != nil {
			return err
		}
		id, ok := s.classes.intern(groups)
		if !ok {
			v.entries[d] = itemEntry{}
			return nil
		}
		v.entries[d] = itemEntry{rec: rec, from: nowMs, until: until, class: id}
		return nil
	}
	if ds == nil {
		for d := range int32(n) {
			if err := build(d); err != nil {
				return err
			}
			p.Yield()
		}
	} else {
		for _, d := range ds {
			if err := build(d); err != nil {
				return err
			}
			p.Yield() // background work: requests first
		}
	}
	v.classes = s.classes.list
	return nil
}

// expiredRecords lists the dense indexes whose record's outcome changed by
// nowMs.
func (v *itemView) expiredRecords(nowMs int64) []int32 {
	var out []int32
	for d := range v.entries {
		if e := &v.entries[d]; e.until <= nowMs && e.rec != nil {
			out = append(out, int32(d))
		}
	}
	return out
}

// touch reads each record's header, then its presence bits, in loops with
// nothing else to do, so that the cache misses of hundreds of records
// overlap instead of stalling FillBatch one record at a time: the records
// of 500 random items out of 200,000 are rarely in the CPU caches
// (measured: ~5% per request; reading the value arrays too gained nothing).
func touch(rows []*features.Record, probe features.ID) {
	var sink features.Entity
	for _, rec := range rows {
		if rec != nil {
			sink |= rec.Entity()
		}
	}
	for _, rec := range rows {
		if rec != nil && rec.Has(probe) {
			sink++
		}
	}
	touchSink.Store(int32(sink))
}

// touchSink keeps the compiler from dropping touch's reads.
var touchSink atomic.Int32
