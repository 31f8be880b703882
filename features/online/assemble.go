package online

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/adaptrec/adaptrec/features"
)

// Request is what Assemble needs besides the user and the candidates.
type Request struct {
	// Context feeds the request lane. Its User state is ignored: Assemble
	// derives it from the user's nearline features (UserStateOf), as
	// training derives it from the point-in-time join.
	Context features.RequestContext
	// Now is the instant freshness is judged at; time.Now() when zero.
	Now time.Time
}

// Assembler builds ranker input rows for one model's layout from a Store.
// It is safe for concurrent use; each call borrows pooled scratch records,
// so a warm Assemble allocates only for its Redis round trip (the keys, the
// client's commands and replies: ~49 allocations, 2.5 KB, measured by
// BenchmarkAssemble in internal/bench).
type Assembler struct {
	s      *Store
	layout *features.Layout
	vecLen int
	pool   sync.Pool
}

// scratch is one call's working memory.
type scratch struct {
	user, req *features.Record
	items     []*features.Record // pooled item records
	rows      []*features.Record // this call's item records; nil = unknown
	dense     []int32            // this call's dense item indexes
	hashes    []uint64           // this call's item id hashes
	vec       []float32
	keys      []string
	keyGroup  []int    // slot of each MGET key: plan.userBatch index, then len(userBatch)+plan.pairBatch index
	batchStr  []string // per slot
	batchOK   []bool
	near      []map[string]string // per plan.userNearline, then plan.pairNearline
	pairs     pairScratch
	hist      []int32 // candidates per item class
	// The cross features' inputs (fillCross): the user's taste, the
	// categories of the session's items, and a record and counts to read
	// an item's category through the cascade.
	taste     features.Taste
	cats      []int64
	catRec    *features.Record
	catGroups []GroupResult
	// degraded says why the user read failed; "" when it did not.
	degraded string
	res      Result
	session  Session
}

// NewAssembler returns an assembler of rows of layout, which must be a
// layout of the store's feature definitions.
func (s *Store) NewAssembler(layout *features.Layout) (*Assembler, error) {
	fs := s.plan.fs
	probe := make([]float32, layout.Width())
	if err := layout.Fill(probe, features.Inputs{User: fs.NewRecord(features.EntityUser)}); err != nil {
		return nil, fmt.Errorf("online: the layout is not one of the store's feature definitions: %w", err)
	}
	a := &Assembler{s: s, layout: layout}
	for _, f := range fs.All() {
		a.vecLen = max(a.vecLen, f.Type.Width())
	}
	a.pool.New = func() any { return a.newScratch() }
	return a, nil
}

func (a *Assembler) newScratch() *scratch {
	fs := a.s.plan.fs
	p := a.s.plan
	sc := &scratch{
		user:     fs.NewRecord(features.EntityUser),
		req:      fs.NewRecord(features.EntityRequest),
		vec:      make([]float32, a.vecLen),
		batchStr: make([]string, len(p.userBatch)+len(p.pairBatch)),
		batchOK:  make([]bool, len(p.userBatch)+len(p.pairBatch)),
		near:     make([]map[string]string, len(p.userNearline)+len(p.pairNearline)),
	}
	sc.pairs.batch = make([]pairTable, len(p.pairBatch))
	sc.pairs.near = make([][]pairTable, len(p.pairNearline))
	for k, g := range p.pairNearline {
		sc.pairs.near[k] = make([]pairTable, len(g.feats))
	}
	return sc
}

// Layout returns the layout rows are built with.
func (a *Assembler) Layout() *features.Layout { return a.layout }

// Assemble writes one row per candidate item into dst (row i at
// dst[i*Width():(i+1)*Width()], see features.Layout.FillBatch): the user's
// features, the request's and each item's, after the fallback cascade. It
// reads the user's stored features with one Redis round trip bounded by
// Options.UserReadTimeout and ctx; if that fails or takes too long, the user
// features take their defaults and res.Degraded is set, but Assemble still
// succeeds. Unknown users and items read as defaults. It returns an error
// only for a dst too small or for values the definitions cannot hold.
// res, when not nil, receives the report of the call.
func (a *Assembler) Assemble(ctx context.Context, userID string, itemIDs []string, req Request, dst []float32, res *Result) error {
	if need := len(itemIDs) * a.layout.Width(); len(dst) < need {
		return fmt.Errorf("assemble: row buffer holds %d values, %d rows of %d need %d", len(dst), len(itemIDs), a.layout.Width(), need)
	}
	// The user's Redis round trip and the items are done one after the
	// other: running the read on another goroutine to overlap them was
	// measured slower on a 2-core VM (cross-thread wake-ups cost more than
	// the round trip they hide).
	se, err := a.Begin(ctx, userID, req, res, BeginOptions{})
	if err != nil {
		return err
	}
	defer se.Close()
	return se.Assemble(itemIDs, dst)
}

// readUser reads the user's stored records into sc with one round trip, or
// says in sc.degraded why it could not. wall is the current time, for the
// breaker.
func (s *Store) readUser(ctx context.Context, v *view, userID string, wall time.Time, sc *scratch) {
	p := s.plan
	sc.degraded = ""
	clear(sc.batchOK)
	clear(sc.near)
	sc.keys, sc.keyGroup = sc.keys[:0], sc.keyGroup[:0]
	if userID == "" || len(p.userBatch)+len(p.userNearline)+len(p.pairBatch)+len(p.pairNearline) == 0 {
		return
	}
	for k, g := range p.userBatch {
		if u := v.users[k]; u != nil {
			sc.keys = append(sc.keys, s.keys.userBatch(g.name, u.version, userID))
			sc.keyGroup = append(sc.keyGroup, k)
		}
	}
	for k, g := range p.pairBatch {
		if u := v.pairs[k]; u != nil {
			sc.keys = append(sc.keys, s.keys.pairBatch(g.name, u.version, userID))
			sc.keyGroup = append(sc.keyGroup, len(p.userBatch)+k)
		}
	}
	if len(sc.keys) == 0 && len(p.userNearline)+len(p.pairNearline) == 0 {
		return
	}
	if !s.breaker.Allow(wall) {
		sc.degraded = "breaker_open"
		return
	}
	rctx, cancel := context.WithTimeout(ctx, s.opts.UserReadTimeout)
	defer cancel()
	pipe := s.rdb.Pipeline()
	var mget *redis.SliceCmd
	if len(sc.keys) > 0 {
		mget = pipe.MGet(rctx, sc.keys...)
	}
	var hget [4]*redis.MapStringStringCmd
	hcmds := hget[:0]
	for _, g := range p.userNearline {
		hcmds = append(hcmds, pipe.HGetAll(rctx, s.keys.nearline(g.name, userID)))
	}
	for _, g := range p.pairNearline {
		hcmds = append(hcmds, pipe.HGetAll(rctx, s.keys.nearline(g.name, userID)))
	}
	if _, err := pipe.Exec(rctx); err != nil {
		switch {
		case ctx.Err() != nil:
			// The caller gave up; that says nothing about Redis.
			sc.degraded = "canceled"
		case isTimeout(err):
			sc.degraded = "timeout"
			s.breaker.Failure(wall)
		default:
			sc.degraded = "error"
			s.breaker.Failure(wall)
		}
		return
	}
	s.breaker.Success()
	if mget != nil {
		for i, x := range mget.Val() {
			if str, ok := x.(string); ok {
				k := sc.keyGroup[i]
				sc.batchStr[k], sc.batchOK[k] = str, true
			}
		}
	}
	for k, c := range hcmds {
		sc.near[k] = c.Val()
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// tracer receives how each value was served, for Explain; nil on the hot
// path. item is the candidate's index, -1 for user and request values.
type tracer func(item int, f *features.Feature, src Source, atMs int64, version string)

// fillUser fills sc.user from what readUser read, applying the cascade.
func (s *Store) fillUser(v *view, now time.Time, sc *scratch, res *Result, withMaps bool, tr tracer) error {
	p := s.plan
	rec := sc.user
	rec.Reset()
	nowMs := now.UnixMilli()
	for k, g := range p.userBatch {
		gr := &res.Groups[g.index]
		u := v.users[k]
		if u != nil {
			gr.Version = u.version
		}
		switch {
		case u == nil || res.Degraded:
			for i := range g.feats {
				if withMaps || g.feats[i].width > 0 || g.feats[i].always {
					gr.Counts[SourceDefaultUnavailable]++
					if tr != nil {
						tr(-1, g.feats[i].f, SourceDefaultUnavailable, 0, gr.Version)
					}
				}
			}
			continue
		case sc.batchOK[k]:
			if err := u.layout.decode(sc.batchStr[k], rec, withMaps, sc.vec); err != nil {
				corruptValuesTotal.WithLabelValues(g.name).Inc()
				for i := range g.feats {
					rec.Unset(g.feats[i].f.ID)
				}
			}
		}
		age := nowMs - u.asOf.UnixMilli()
		for i := range g.feats {
			fp := &g.feats[i]
			if !withMaps && fp.width == 0 && !fp.always {
				continue
			}
			src := SourceDefaultMissing
			if rec.Has(fp.f.ID) {
				switch {
				case fp.ttl > 0 && age > fp.ttl:
					rec.Unset(fp.f.ID)
					src = SourceDefaultExpired
				case fp.sla > 0 && age > fp.sla:
					src = SourceBatchLate
				default:
					src = SourceBatch
				}
			}
			gr.Counts[src]++
			if tr != nil {
				tr(-1, fp.f, src, u.asOf.UnixMilli(), u.version)
			}
		}
	}
	for k, g := range p.userNearline {
		gr := &res.Groups[g.index]
		stale := false
		if res.Degraded {
			stale = true
			for i := range g.feats {
				if withMaps || g.feats[i].width > 0 || g.feats[i].always {
					gr.Counts[SourceDefaultUnavailable]++
					if tr != nil {
						tr(-1, g.feats[i].f, SourceDefaultUnavailable, 0, "")
					}
				}
			}
		} else {
			fields := sc.near[k]
			for i := range g.feats {
				fp := &g.feats[i]
				if !withMaps && fp.width == 0 && !fp.always {
					continue
				}
				src, at := SourceDefaultMissing, int64(0)
				if str, ok := fields[fp.f.Name]; ok {
					var err error
					if at, err = nearlineTime(str, fp.f); err != nil {
						corruptValuesTotal.WithLabelValues(g.name).Inc()
					} else {
						src, err = cascade(rec, fp, nowMs-at, func() error { return setNearline(str, fp.f, rec, sc.vec, withMaps || fp.always) })
						if err != nil {
							corruptValuesTotal.WithLabelValues(g.name).Inc()
							src = SourceDefaultMissing
						}
					}
				}
				if src == SourceNearlineLate || src == SourceBatchFallback {
					stale = true
				}
				gr.Counts[src]++
				if tr != nil {
					tr(-1, fp.f, src, at, "")
				}
			}
		}
		gr.Stale = gr.Stale || stale
		if err := s.setIndicator(g, rec, stale, res.Groups, -1, tr); err != nil {
			return err
		}
	}
	return nil
}

// cascade applies the nearline fallback cascade to one stored value of age
// ms: set stores the nearline value in rec.
func cascade(rec *features.Record, fp *featPlan, age int64, set func() error) (Source, error) {
	switch {
	case age <= fp.fresh:
		return SourceNearline, set()
	case fp.twin != nil && rec.Has(fp.twin.ID):
		return SourceBatchFallback, copyTwin(rec, fp)
	case fp.ttl > 0 && age <= fp.ttl:
		return SourceNearlineLate, set()
	}
	return SourceDefaultExpired, nil
}

// copyTwin sets a nearline feature to its batch twin's value.
func copyTwin(rec *features.Record, fp *featPlan) error {
	v, _, err := rec.Get(fp.twin.ID)
	if err != nil {
		return err
	}
	switch fp.kind {
	case features.KindFloat:
		return rec.SetFloat(fp.f.ID, float64(v.Float))
	case features.KindInt:
		return rec.SetInt(fp.f.ID, v.Int)
	case features.KindVector:
		return rec.SetVector(fp.f.ID, v.Vector)
	case features.KindList:
		return rec.SetList(fp.f.ID, v.List)
	}
	return rec.SetMap(fp.f.ID, v.Map)
}

// setIndicator sets a nearline group's staleness indicator on rec.
func (s *Store) setIndicator(g *groupPlan, rec *features.Record, stale bool, groups []GroupResult, item int, tr tracer) error {
	f := g.indicator
	if f == nil {
		return nil
	}
	groups[s.plan.byName[f.Group].index].Counts[SourceComputed]++
	if tr != nil {
		tr(item, f, SourceComputed, 0, "")
	}
	if !stale {
		return nil
	}
	if f.Type.Kind == features.KindInt {
		return rec.SetInt(f.ID, 1)
	}
	return rec.SetFloat(f.ID, 1)
}

// fillRequest computes the request features, with the user state read from
// sc.user.
func (s *Store) fillRequest(c features.RequestContext, sc *scratch, res *Result, tr tracer) error {
	fs := s.plan.fs
	state, err := fs.UserStateOf(sc.user)
	if err != nil {
		return fmt.Errorf("assemble: %w", err)
	}
	c.User = state
	if err := fs.FillRequest(sc.req, c); err != nil {
		return fmt.Errorf("assemble: %w", err)
	}
	g := s.plan.request
	if g == nil {
		return nil
	}
	gr := &res.Groups[g.index]
	for i := range g.feats {
		f := g.feats[i].f
		src := SourceDefaultMissing
		if sc.req.Has(f.ID) {
			src = SourceRequest
		}
		gr.Counts[src]++
		if tr != nil {
			tr(-1, f, src, 0, "")
		}
	}
	return nil
}

// setColumn sets a feature from a packed item row.
func setColumn(rec *features.Record, fp *featPlan, nums []float32, ints []int64) error {
	switch fp.kind {
	case features.KindFloat:
		return rec.SetFloat(fp.f.ID, float64(nums[fp.off]))
	case features.KindInt:
		return rec.SetInt(fp.f.ID, ints[fp.off])
	case features.KindVector:
		return rec.SetVector(fp.f.ID, nums[fp.off:fp.off+fp.width])
	}
	return nil
}

// countNotServed counts the defaults of the groups the store does not
// serve (user×item).
func (s *Store) countNotServed(res *Result, items int) {
	for _, g := range s.plan.groups {
		if g.served || g == s.plan.request || g == s.plan.cross || len(g.feats) == 0 {
			continue
		}
		n := len(g.feats)
		if g.entity != features.EntityUser {
			n *= items
		}
		res.Groups[g.index].Counts[SourceDefaultNotServed] += int32(n)
	}
}

// record adds a call's counts to the metrics.
func (s *Store) record(res *Result) {
	for i := range res.Groups {
		c := s.counters[i]
		for src, n := range res.Groups[i].Counts {
			if n > 0 {
				c[src].Add(float64(n))
			}
		}
	}
	if res.Degraded {
		degradedTotal.WithLabelValues(res.DegradedReason).Inc()
	}
}
