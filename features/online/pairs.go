package online

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/snapshot"
)

// User×item ("pair") features are stored with their user, so a request
// reads them in the user's one round trip and never per candidate:
//
//	<prefix>{<user>}:p:<group>:<version>  the user's pair table of a batch version (string)
//	<prefix>{<user>}:n:<group>            nearline pair values: one field per feature, every item's value
//
// A pair table is a format byte, a uvarint count, then per pair, in
// ascending item id order, the length-prefixed item id and the
// length-prefixed packed record (recordLayout, as user records). A nearline
// pair field is the nearline header (8-byte time, kind) then a uvarint
// count and per item, in ascending id order, the length-prefixed item id
// and the scalar payload (float32 little-endian or zig-zag varint). Items
// a table or field does not list read as the defaults.
//
// A request looks its candidates up in the tables it read: a 1024-bit
// filter of the listed items' id hashes (the hashes the item index
// computes anyway) lets most candidates, which have no pair values, skip
// the binary search.

// pairFormat is the first byte of a pair table.
const pairFormat = 1

// DefaultMaxPairs bounds the pairs of one user a load keeps unless
// LoadOptions.MaxPairs says otherwise: a request reads the whole table.
const DefaultMaxPairs = 2000

func (k keys) pairBatch(group, version, user string) string {
	return k.prefix + "{" + user + "}:p:" + group + ":" + version
}

// PairLoadStats summarises a finished LoadPairsFromSnapshot.
type PairLoadStats struct {
	LoadStats
	// Pairs written, and Dropped beyond LoadOptions.MaxPairs of a user.
	Pairs, Dropped int64
}

// LoadPairsFromSnapshot materializes a user×item batch snapshot in Redis:
// one pair table per user under a key naming the version, then the
// version's meta, as LoadUsersFromSnapshot does for user groups. Snapshot
// rows are pairs in no particular order, so the load groups them by user
// in memory (the packed records, a few bytes each). A user with more than
// LoadOptions.MaxPairs pairs keeps the first MaxPairs by item id; the rest
// are counted in PairLoadStats.Dropped and read as defaults.
func LoadPairsFromSnapshot(ctx context.Context, rdb redis.UniversalClient, fs *features.FeatureSet, snaps Snapshots, group, version string, opts LoadOptions) (PairLoadStats, error) {
	start := time.Now()
	stats := PairLoadStats{LoadStats: LoadStats{Group: group, Version: version}}
	opts = opts.withDefaults()
	v, err := openBatchVersion(ctx, fs, snaps, features.EntityUserItem, group, version)
	if err != nil {
		return stats, err
	}
	r, bind, meta, rl := v.r, v.bind, v.meta, v.rl
	type pair struct{ item, rec string }
	byUser := map[string][]pair{}
	rec := fs.NewRecord(features.EntityUserItem)
	var buf []byte
	for row, err := range r.Rows(ctx) {
		if err != nil {
			return stats, fmt.Errorf("load pairs of %s/%s: %w", group, version, err)
		}
		user, item, ok := snapshot.SplitPairID(row.EntityID)
		if !ok || user == "" || item == "" {
			return stats, fmt.Errorf("load pairs of %s/%s: row id %q is not a (user, item) pair", group, version, strings.ReplaceAll(row.EntityID, snapshot.PairSeparator, "␟"))
		}
		if err := bind.Fill(rec, &row); err != nil {
			return stats, fmt.Errorf("load pairs of %s/%s: %w", group, version, err)
		}
		if buf, err = rl.encode(buf[:0], rec); err != nil {
			return stats, fmt.Errorf("load pairs of %s/%s: pair (%q, %q): %w", group, version, user, item, err)
		}
		byUser[user] = append(byUser[user], pair{strings.Clone(item), string(buf)})
	}
	k := keys{prefix: opts.KeyPrefix}
	expireAt := start.Add(opts.TTL)
	users := make([]string, 0, len(byUser))
	for u := range byUser {
		users = append(users, u)
	}
	slices.Sort(users)
	pipe := rdb.Pipeline()
	pending := 0
	var arena []byte
	flush := func() error {
		if pending == 0 {
			return nil
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("load pairs of %s/%s: write batch: %w", group, version, err)
		}
		stats.Users += int64(pending)
		pending, arena = 0, nil
		if opts.Progress != nil {
			opts.Progress(LoadProgress{Group: group, Version: version, Written: stats.Users, Total: int64(len(users)), Elapsed: time.Since(start)})
		}
		return nil
	}
	for _, u := range users {
		ps := byUser[u]
		slices.SortFunc(ps, func(a, b pair) int { return strings.Compare(a.item, b.item) })
		ps = slices.CompactFunc(ps, func(a, b pair) bool { return a.item == b.item })
		if len(ps) > opts.MaxPairs {
			stats.Dropped += int64(len(ps) - opts.MaxPairs)
			ps = ps[:opts.MaxPairs]
		}
		n := len(arena)
		arena = append(arena, pairFormat)
		arena = binary.AppendUvarint(arena, uint64(len(ps)))
		for _, p := range ps {
			arena = appendStr(arena, p.item)
			arena = appendStr(arena, p.rec)
		}
		pipe.Set(ctx, k.pairBatch(group, version, u), arena[n:len(arena):len(arena)], opts.TTL)
		stats.Bytes += int64(len(arena) - n)
		stats.Pairs += int64(len(ps))
		delete(byUser, u)
		pending++
		if pending == opts.Batch {
			if err := flush(); err != nil {
				return stats, err
			}
		}
	}
	if err := flush(); err != nil {
		return stats, err
	}
	if err := writeVersionMeta(ctx, rdb, k, meta, expireAt); err != nil {
		return stats, err
	}
	stats.Duration = time.Since(start)
	return stats, nil
}

func appendStr(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// PairValues are one user×item nearline feature's values for one user,
// all correct at At: Values[i] is item Items[i]'s. The set replaces the
// feature's previous one for the user: items it does not list read as the
// feature's default.
type PairValues struct {
	Feature string
	Items   []string
	Values  []features.Value
	At      time.Time
}

// PairUpdate is the nearline pair values of one user.
type PairUpdate struct {
	User   string
	Values []PairValues
}

// WritePairsNearline writes user×item nearline values of many users in one
// pipeline, under the Writer's contract (older writes ignored per feature,
// one user's features of one group applied atomically). Only int and
// float pair features can be written.
func (w *Writer) WritePairsNearline(ctx context.Context, updates []PairUpdate) error {
	calls := make([]scriptCall, 0, len(updates))
	var buf []byte
	for _, u := range updates {
		if u.User == "" {
			return fmt.Errorf("write user×item nearline values: empty user id")
		}
		first := len(calls)
		for _, v := range u.Values {
			f, ok := w.plan.fs.Lookup(v.Feature)
			if !ok {
				return fmt.Errorf("write nearline pair values of user %q: %s is not defined in %s", u.User, v.Feature, w.plan.fs.Source())
			}
			g := w.plan.featGroup[f.ID]
			if f.Entity != features.EntityUserItem || f.Lane != features.LaneNearline || g == nil || !g.served {
				return fmt.Errorf("write nearline pair values of user %q: %s is a %s %s feature, not a user_item nearline feature", u.User, f.Name, f.Entity, f.Lane)
			}
			if v.At.IsZero() {
				return fmt.Errorf("write nearline pair values of user %q: %s has no time (PairValues.At)", u.User, f.Name)
			}
			n := len(buf)
			var err error
			if buf, err = appendPairNearline(buf, v.At.UnixMilli(), f, v.Items, v.Values); err != nil {
				return fmt.Errorf("write nearline pair values of user %q: %w", u.User, err)
			}
			var c *scriptCall
			for i := first; i < len(calls); i++ {
				if calls[i].group == g {
					c = &calls[i]
				}
			}
			if c == nil {
				calls = append(calls, scriptCall{group: g, keys: []string{w.keys.nearline(g.name, u.User)}})
				c = &calls[len(calls)-1]
				ttl := g.maxTTL.Milliseconds()
				c.args = make([]any, 3, 3+2*len(g.feats))
				c.args[0], c.args[1], c.args[2] = ttl, u.User, ttl
			}
			c.args = append(c.args, f.Name, buf[n:len(buf):len(buf)])
		}
	}
	if len(calls) == 0 {
		return nil
	}
	return w.runCalls(ctx, "user_item", calls)
}

// appendPairNearline appends the stored form of a nearline pair feature's
// values.
func appendPairNearline(dst []byte, atMs int64, f *features.Feature, items []string, values []features.Value) ([]byte, error) {
	if f.Type.Kind != features.KindInt && f.Type.Kind != features.KindFloat {
		return nil, fmt.Errorf("%s: a user_item nearline %s cannot be stored; only int and float are", f.Name, f.Type)
	}
	if len(items) != len(values) {
		return nil, fmt.Errorf("%s: %d items and %d values", f.Name, len(items), len(values))
	}
	order := make([]int, len(items))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(items[a], items[b]) })
	dst = binary.BigEndian.AppendUint64(dst, uint64(atMs))
	dst = append(dst, byte(f.Type.Kind))
	dst = binary.AppendUvarint(dst, uint64(len(items)))
	for i, o := range order {
		if items[o] == "" {
			return nil, fmt.Errorf("%s: empty item id", f.Name)
		}
		if i > 0 && items[o] == items[order[i-1]] {
			return nil, fmt.Errorf("%s: item %q listed twice", f.Name, items[o])
		}
		dst = appendStr(dst, items[o])
		if f.Type.Kind == features.KindInt {
			dst = binary.AppendVarint(dst, values[o].Int)
			continue
		}
		x := values[o].Float
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil, fmt.Errorf("%s: item %q: %g is not finite", f.Name, items[o], x)
		}
		dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(x))
	}
	return dst, nil
}

// pairTable is one read table (a batch group's, or one nearline pair
// feature's) as a request looks candidates up in it: ids ascending, vals
// the matching records or payloads, all slices of the string read.
type pairTable struct {
	ok     bool // read and parsed
	atMs   int64
	ids    []string
	vals   []string
	filter [16]uint64
}

func (t *pairTable) reset() {
	t.ok, t.atMs = false, 0
	t.ids, t.vals = t.ids[:0], t.vals[:0]
	clear(t.filter[:])
}

// find returns the index of item (whose index hash is h) or -1.
func (t *pairTable) find(item string, h uint64) int {
	if len(t.ids) == 0 || t.filter[(h>>6)&15]&(1<<(h&63)) == 0 {
		return -1
	}
	i, ok := slices.BinarySearch(t.ids, item)
	if !ok {
		return -1
	}
	return i
}

// parseBatch parses a pair table; hash is the item index's hash.
func (t *pairTable) parseBatch(s string, hash func(string) uint64) error {
	r := reader{s: s}
	f, ok := r.bytes(1)
	if !ok || f[0] != pairFormat {
		return fmt.Errorf("%w: pair table: unknown format", ErrCorruptValue)
	}
	n, ok := r.uvarint()
	if !ok || n > uint64(len(s)) {
		return fmt.Errorf("%w: pair table truncated", ErrCorruptValue)
	}
	for range n {
		id, ok1 := r.str()
		rec, ok2 := r.str()
		if !ok1 || !ok2 {
			t.reset()
			return fmt.Errorf("%w: pair table truncated", ErrCorruptValue)
		}
		t.add(id, rec, hash)
	}
	if !slices.IsSorted(t.ids) {
		t.reset()
		return fmt.Errorf("%w: pair table items out of order", ErrCorruptValue)
	}
	t.ok = true
	return nil
}

// parseNearline parses a nearline pair field of feature f (checked by
// nearlineTime).
func (t *pairTable) parseNearline(s string, f *features.Feature, hash func(string) uint64) error {
	at, err := nearlineTime(s, f)
	if err != nil {
		return err
	}
	r := reader{s: s, i: nearlineHeader}
	n, ok := r.uvarint()
	if !ok || n > uint64(len(s)) {
		return fmt.Errorf("%w: %s truncated", ErrCorruptValue, f.Name)
	}
	for range n {
		id, ok := r.str()
		if !ok {
			t.reset()
			return fmt.Errorf("%w: %s truncated", ErrCorruptValue, f.Name)
		}
		from := r.i
		if f.Type.Kind == features.KindInt {
			_, ok = r.varint()
		} else {
			ok = r.skip(4)
		}
		if !ok {
			t.reset()
			return fmt.Errorf("%w: %s truncated", ErrCorruptValue, f.Name)
		}
		t.add(id, s[from:r.i], hash)
	}
	if !slices.IsSorted(t.ids) {
		t.reset()
		return fmt.Errorf("%w: %s items out of order", ErrCorruptValue, f.Name)
	}
	t.ok, t.atMs = true, at
	return nil
}

func (t *pairTable) add(id, val string, hash func(string) uint64) {
	h := hash(id)
	t.filter[(h>>6)&15] |= 1 << (h & 63)
	t.ids = append(t.ids, id)
	t.vals = append(t.vals, val)
}

// setPairScalar sets an int or float pair feature from its payload.
func setPairScalar(rec *features.Record, f *features.Feature, payload string) error {
	r := reader{s: payload}
	if f.Type.Kind == features.KindInt {
		v, ok := r.varint()
		if !ok {
			return fmt.Errorf("%w: %s truncated", ErrCorruptValue, f.Name)
		}
		return rec.SetInt(f.ID, v)
	}
	v, ok := r.float32()
	if !ok {
		return fmt.Errorf("%w: %s truncated", ErrCorruptValue, f.Name)
	}
	return rec.SetFloat(f.ID, float64(v))
}

// pairScratch is a request's pair state.
type pairScratch struct {
	batch []pairTable   // per plan.pairBatch
	near  [][]pairTable // per plan.pairNearline, per feature
	recs  []*features.Record
	rows  []*features.Record
}

// reserve makes rows n nil entries and recs at least n records to take
// them from.
func (ps *pairScratch) reserve(fs *features.FeatureSet, n int) {
	for len(ps.recs) < n {
		ps.recs = append(ps.recs, fs.NewRecord(features.EntityUserItem))
	}
	if cap(ps.rows) < n {
		ps.rows = make([]*features.Record, n)
	}
	ps.rows = ps.rows[:n]
	clear(ps.rows)
}

// fillPairs sets sc.pairs.rows to the candidates' pair records (nil: every
// pair feature its default) from what readUser read, through the cascade.
func (s *Store) fillPairs(v *view, ids []string, now time.Time, sc *scratch, res *Result, tr tracer) error {
	p := s.plan
	ps := &sc.pairs
	if len(p.pairBatch)+len(p.pairNearline) == 0 {
		ps.rows = ps.rows[:0]
		return nil
	}
	hash := v.items.index.hash
	nowMs := now.UnixMilli()
	stored := false
	for k, g := range p.pairBatch {
		t := &ps.batch[k]
		t.reset()
		u := v.pairs[k]
		if u != nil {
			res.Groups[g.index].Version = u.version
		}
		slot := len(p.userBatch) + k
		if u == nil || res.Degraded || !sc.batchOK[slot] {
			continue
		}
		if err := t.parseBatch(sc.batchStr[slot], hash); err != nil {
			corruptValuesTotal.WithLabelValues(g.name).Inc()
			continue
		}
		stored = stored || len(t.ids) > 0
	}
	for k, g := range p.pairNearline {
		fields := sc.near[len(p.userNearline)+k]
		for j := range g.feats {
			t := &ps.near[k][j]
			t.reset()
			if res.Degraded {
				continue
			}
			str, ok := fields[g.feats[j].f.Name]
			if !ok {
				continue
			}
			if err := t.parseNearline(str, g.feats[j].f, hash); err != nil {
				corruptValuesTotal.WithLabelValues(g.name).Inc()
				continue
			}
			stored = stored || len(t.ids) > 0
		}
	}
	ps.reserve(p.fs, len(ids))
	unavailable := func(g *groupPlan) bool {
		if res.Degraded {
			return true
		}
		if g.lane == features.LaneBatch {
			return v.pairs[indexOf(p.pairBatch, g)] == nil
		}
		return false
	}
	if !stored && tr == nil {
		// Nothing stored for this user: every pair value is its default.
		for _, g := range p.pairAll {
			src := SourceDefaultMissing
			if unavailable(g) {
				src = SourceDefaultUnavailable
			}
			res.Groups[g.index].Counts[src] += int32(len(g.feats) * len(ids))
		}
		return nil
	}
	hashes := sc.hashes[:len(ids)] // computed by fillItems
	for i, item := range ids {
		h := hashes[i]
		var rec *features.Record
		take := func() *features.Record {
			if rec == nil {
				rec = ps.recs[i]
				rec.Reset()
				ps.rows[i] = rec
			}
			return rec
		}
		for k, g := range p.pairBatch {
			gr := &res.Groups[g.index]
			t := &ps.batch[k]
			j := -1
			if t.ok {
				j = t.find(item, h)
			}
			if j < 0 {
				src := SourceDefaultMissing
				if unavailable(g) {
					src = SourceDefaultUnavailable
				}
				gr.Counts[src] += int32(len(g.feats))
				traceAll(tr, i, g.feats, src)
				continue
			}
			u := v.pairs[k]
			r := take()
			if err := u.layout.decode(t.vals[j], r, false, sc.vec); err != nil {
				corruptValuesTotal.WithLabelValues(g.name).Inc()
				for x := range g.feats {
					r.Unset(g.feats[x].f.ID)
				}
			}
			age := nowMs - u.asOf.UnixMilli()
			for x := range g.feats {
				fp := &g.feats[x]
				src := SourceDefaultMissing
				if r.Has(fp.f.ID) {
					switch {
					case fp.ttl > 0 && age > fp.ttl:
						r.Unset(fp.f.ID)
						src = SourceDefaultExpired
					case fp.sla > 0 && age > fp.sla:
						src = SourceBatchLate
					default:
						src = SourceBatch
					}
				}
				gr.Counts[src]++
				if tr != nil {
					tr(i, fp.f, src, u.asOf.UnixMilli(), u.version)
				}
			}
		}
		for k, g := range p.pairNearline {
			gr := &res.Groups[g.index]
			for x := range g.feats {
				fp := &g.feats[x]
				t := &ps.near[k][x]
				src, at := SourceDefaultMissing, int64(0)
				switch {
				case res.Degraded:
					src = SourceDefaultUnavailable
				case t.ok:
					if j := t.find(item, h); j >= 0 {
						at = t.atMs
						r := take()
						var err error
						src, err = cascade(r, fp, nowMs-at, func() error { return setPairScalar(r, fp.f, t.vals[j]) })
						if err != nil {
							corruptValuesTotal.WithLabelValues(g.name).Inc()
							r.Unset(fp.f.ID)
							src = SourceDefaultMissing
						}
					}
				}
				gr.Counts[src]++
				if tr != nil {
					tr(i, fp.f, src, at, "")
				}
			}
		}
	}
	return nil
}
