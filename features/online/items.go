package online

import (
	"context"
	"fmt"
	"github.com/adaptrec/adaptrec/internal/pace"
	"slices"
	"time"

	"github.com/adaptrec/adaptrec/features"
)

// batchTable is one batch snapshot of an item group held in memory: a
// packed row per item, in the snapshot's order. It is never modified once
// built, so requests read it without locks.
type batchTable struct {
	g                   *groupPlan
	version, schemaHash string
	asOf                time.Time
	ids                 []string
	nums                []float32 // rows × g.numWidth
	ints                []int64   // rows × g.intCount
	has                 []uint64  // rows × g.words: bit pos set when the value is known
	missing             []string  // group features the snapshot does not hold
}

func newBatchTable(g *groupPlan, rows int) *batchTable {
	return &batchTable{
		g:    g,
		ids:  make([]string, 0, rows),
		nums: make([]float32, 0, rows*g.numWidth),
		ints: make([]int64, 0, rows*g.intCount),
		has:  make([]uint64, 0, rows*g.words),
	}
}

// appendRecord appends a row holding rec's values of the group.
func (t *batchTable) appendRecord(id string, rec *features.Record) error {
	g := t.g
	t.ids = append(t.ids, id)
	nb, ib, hb := len(t.nums), len(t.ints), len(t.has)
	t.nums = append(t.nums, make([]float32, g.numWidth)...)
	t.ints = append(t.ints, make([]int64, g.intCount)...)
	t.has = append(t.has, make([]uint64, g.words)...)
	for i := range g.feats {
		fp := &g.feats[i]
		if fp.width == 0 {
			continue // maps and lists are not held in item rows
		}
		v, set, err := rec.Get(fp.f.ID)
		if err != nil {
			return fmt.Errorf("item %q: %w", id, err)
		}
		if !set {
			continue
		}
		t.has[hb+fp.pos/64] |= 1 << (fp.pos % 64)
		switch fp.kind {
		case features.KindFloat:
			t.nums[nb+fp.off] = v.Float
		case features.KindInt:
			t.ints[ib+fp.off] = v.Int
		case features.KindVector:
			copy(t.nums[nb+fp.off:nb+fp.off+fp.width], v.Vector)
		}
	}
	return nil
}

// loadBatchTable reads an item snapshot into a table, keeping only the
// items filter accepts (all when nil).
func loadBatchTable(ctx context.Context, fs *features.FeatureSet, g *groupPlan, r SnapshotReader, filter func(string) bool) (*batchTable, error) {
	m := r.Manifest()
	if m.Group != g.name || m.Entity != g.entity {
		return nil, fmt.Errorf("snapshot %s/%s holds %s features of group %s, want %s features of %s", m.Group, m.Version, m.Entity, m.Group, g.entity, g.name)
	}
	bind, err := m.Bind(fs)
	if err != nil {
		return nil, err
	}
	capacity := int(m.Rows)
	if filter != nil {
		capacity = 0
	}
	t := newBatchTable(g, capacity)
	t.version, t.schemaHash, t.asOf, t.missing = m.Version, m.SchemaHash, m.AsOf, bind.Missing()
	rec := fs.NewRecord(g.entity)
	for row, err := range r.Rows(ctx) {
		if err != nil {
			return nil, fmt.Errorf("read snapshot %s/%s: %w", m.Group, m.Version, err)
		}
		if filter != nil && !filter(row.EntityID) {
			continue
		}
		if err := bind.Fill(rec, &row); err != nil {
			return nil, fmt.Errorf("snapshot %s/%s: %w", m.Group, m.Version, err)
		}
		if err := t.appendRecord(row.EntityID, rec); err != nil {
			return nil, fmt.Errorf("snapshot %s/%s: %w", m.Group, m.Version, err)
		}
	}
	return t, nil
}

// nearTable holds an item nearline group: a packed row per item that had a
// value written in the last ttl, with a write time per value. Refreshes
// build a new table (copy on write); requests never see one change.
type nearTable struct {
	g    *groupPlan
	ids  []string
	nums []float32
	ints []int64
	has  []uint64
	at   []int64 // rows × len(g.feats): Unix ms the value was computed at
	// cursor is the newest change time (Redis clock, Unix ms) read so far;
	// recent the items read with change times in the overlap before it.
	cursor int64
	recent map[string]int64
}

func (t *nearTable) clone() *nearTable {
	c := *t
	c.ids = slices.Clone(t.ids)
	c.nums = slices.Clone(t.nums)
	c.ints = slices.Clone(t.ints)
	c.has = slices.Clone(t.has)
	c.at = slices.Clone(t.at)
	return &c
}

func (t *nearTable) appendRow(id string) int32 {
	g := t.g
	t.ids = append(t.ids, id)
	t.nums = append(t.nums, make([]float32, g.numWidth)...)
	t.ints = append(t.ints, make([]int64, g.intCount)...)
	t.has = append(t.has, make([]uint64, g.words)...)
	t.at = append(t.at, make([]int64, len(g.feats))...)
	return int32(len(t.ids) - 1)
}

// setRow replaces row r with the values of a nearline hash (field = feature
// name). Fields of unknown features, of lists and maps, or that cannot be
// decoded are left out; bad reports how many could not be decoded.
func (t *nearTable) setRow(r int32, fields map[string]string) (bad int) {
	g := t.g
	nb, ib, hb, ab := int(r)*g.numWidth, int(r)*g.intCount, int(r)*g.words, int(r)*len(g.feats)
	clear(t.has[hb : hb+g.words])
	for name, s := range fields {
		i, ok := g.byName[name]
		if !ok {
			continue
		}
		fp := &g.feats[i]
		if fp.width == 0 {
			continue
		}
		at, err := nearlineTime(s, fp.f)
		if err != nil {
			bad++
			continue
		}
		var decoded bool
		if fp.kind == features.KindInt {
			decoded = decodeNumbers(s, fp, nil, t.ints[ib+fp.off:ib+fp.off+1])
		} else {
			decoded = decodeNumbers(s, fp, t.nums[nb+fp.off:nb+fp.off+fp.width], nil)
		}
		if !decoded {
			bad++
			continue
		}
		t.at[ab+fp.pos] = at
		t.has[hb+fp.pos/64] |= 1 << (fp.pos % 64)
	}
	return bad
}

// decodeNumbers decodes a stored float, int or vector nearline value into
// nums (floats, vectors) or ints[0] (ints).
func decodeNumbers(s string, fp *featPlan, nums []float32, ints []int64) bool {
	r := reader{s: s, i: nearlineHeader}
	switch fp.kind {
	case features.KindFloat:
		v, ok := r.float32()
		nums[0] = v
		return ok
	case features.KindInt:
		v, ok := r.varint()
		ints[0] = v
		return ok
	case features.KindVector:
		n, ok := r.uvarint()
		if !ok || int(n) != fp.width {
			return false
		}
		for j := range fp.width {
			if nums[j], ok = r.float32(); !ok {
				return false
			}
		}
		return true
	}
	return false
}

// live returns the table without the rows whose every value is older than
// the group's longest ttl; t itself when none is that old.
func (t *nearTable) live(nowMs int64) *nearTable {
	g := t.g
	horizon := nowMs - g.maxTTL.Milliseconds()
	n := len(g.feats)
	dead := func(r int) bool {
		for _, at := range t.at[r*n : (r+1)*n] {
			if at >= horizon {
				return false
			}
		}
		return true
	}
	keep := 0
	for r := range t.ids {
		if !dead(r) {
			keep++
		}
	}
	if keep == len(t.ids) {
		return t
	}
	c := &nearTable{g: g, cursor: t.cursor, recent: t.recent}
	for r := range t.ids {
		if dead(r) {
			continue
		}
		c.ids = append(c.ids, t.ids[r])
		c.nums = append(c.nums, t.nums[r*g.numWidth:(r+1)*g.numWidth]...)
		c.ints = append(c.ints, t.ints[r*g.intCount:(r+1)*g.intCount]...)
		c.has = append(c.has, t.has[r*g.words:(r+1)*g.words]...)
		c.at = append(c.at, t.at[r*n:(r+1)*n]...)
	}
	return c
}

// itemView is every item group as one request sees it: a dense index over
// the items of every table and, per table, the row of each dense index.
type itemView struct {
	index *idIndex
	ids   []string
	// extra indexes the items only nearline values have been read for
	// since the index was built; their dense indexes follow len(ids).
	extra map[string]int32
	// batch and near are parallel to plan.itemBatch and plan.itemNearline;
	// nil when the group has nothing loaded yet.
	batch     []*batchTable
	batchRows [][]int32 // dense index → row, -1 when absent
	near      []*nearTable
	nearRows  [][]int32
	// entries holds per dense index the item's record after the cascade;
	// see itemfill.go.
	entries []itemEntry
	classes []itemClass
}

// lookup returns an item's dense index, -1 when unknown.
func (v *itemView) lookup(id string) (int32, bool) {
	return v.lookupHashed(id, v.index.hash(id))
}

// lookupHashed is lookup with the index hash of id already computed.
func (v *itemView) lookupHashed(id string, h uint64) (int32, bool) {
	if d, ok := v.index.getHashed(id, h); ok {
		return d, true
	}
	if d, ok := v.extra[id]; ok {
		return d, true
	}
	return -1, false
}

// size is the number of dense indexes.
func (v *itemView) size() int { return len(v.ids) + len(v.extra) }

// rowOf returns the row of dense index d in a table's rows, -1 when absent.
func rowOf(rows []int32, d int32) int32 {
	if int(d) < len(rows) {
		return rows[d]
	}
	return -1
}

// buildItemView indexes the items of every table anew.
func buildItemView(batch []*batchTable, near []*nearTable) *itemView {
	n := 0
	for _, t := range batch {
		if t != nil {
			n = max(n, len(t.ids))
		}
	}
	v := &itemView{batch: batch, near: near}
	index := make(map[string]int32, n)
	dense := func(ids []string) []int32 {
		out := make([]int32, len(ids))
		for r, id := range ids {
			d, ok := index[id]
			if !ok {
				d = int32(len(v.ids))
				index[id] = d
				v.ids = append(v.ids, id)
			}
			out[r] = d
		}
		return out
	}
	rowsOf := func(ds []int32) []int32 {
		rows := make([]int32, len(v.ids))
		for i := range rows {
			rows[i] = -1
		}
		for r, d := range ds {
			rows[d] = int32(r)
		}
		return rows
	}
	bd := make([][]int32, len(batch))
	for k, t := range batch {
		if t != nil {
			bd[k] = dense(t.ids)
		}
	}
	nd := make([][]int32, len(near))
	for k, t := range near {
		if t != nil {
			nd[k] = dense(t.ids)
		}
	}
	v.batchRows = make([][]int32, len(batch))
	for k := range batch {
		if batch[k] != nil {
			v.batchRows[k] = rowsOf(bd[k])
		}
	}
	v.nearRows = make([][]int32, len(near))
	for k := range near {
		if near[k] != nil {
			v.nearRows[k] = rowsOf(nd[k])
		}
	}
	v.index = newIDIndex(v.ids)
	return v
}

// withNearline returns a view in which near table k holds the hashes read
// for ids (an empty hash: the key is gone), the dense indexes of those ids,
// and how many values could not be decoded; the old view is unchanged. The
// records of the returned view still need rebuilding for those indexes.
func (v *itemView) withNearline(k int, g *groupPlan, ids []string, fields []map[string]string, cursor int64, recent map[string]int64, p *pace.Pacer) (*itemView, []int32, int) {
	c := *v
	c.near = slices.Clone(v.near)
	c.nearRows = slices.Clone(v.nearRows)
	c.entries = slices.Clone(v.entries)
	changed := make([]int32, 0, len(ids))
	var t *nearTable
	if old := v.near[k]; old != nil {
		t = old.clone()
	} else {
		t = &nearTable{g: g}
	}
	t.cursor, t.recent = max(t.cursor, cursor), recent
	rows := slices.Clone(v.nearRows[k])
	copied := false
	bad := 0
	for i, id := range ids {
		d, ok := c.lookup(id)
		if !ok {
			if !copied {
				extra := make(map[string]int32, len(v.extra)+1)
				for id, d := range v.extra {
					extra[id] = d
				}
				c.extra, copied = extra, true
			}
			d = int32(c.size())
			c.extra[id] = d
		}
		for int(d) >= len(rows) {
			rows = append(rows, -1)
		}
		changed = append(changed, d)
		r := rows[d]
		if r < 0 {
			if len(fields[i]) == 0 {
				continue
			}
			r = t.appendRow(id)
			rows[d] = r
		}
		bad += t.setRow(r, fields[i])
		p.Yield()
	}
	c.near[k] = t
	c.nearRows[k] = rows
	return &c, changed, bad
}
