package features

import (
	"errors"
	"fmt"
	"strings"
)

// Column is one feature's place in a ranker input row.
type Column struct {
	// Name, Entity and Type are the feature's.
	Name   string
	Entity Entity
	Type   Type
	// Offset is the index of the feature's first value in the row; Width
	// the number of values (1, or a vector's dimension).
	Offset, Width int
}

// Layout maps features to positions in a ranker input row. It is the one
// path from feature values to model inputs: training rows and serving
// requests are both built with Fill or FillBatch, so defaults, vector
// expansion and int conversion are identical on both sides.
//
// The row holds the features in the order given to NewLayout. Floats take
// one value; ints one value, converted to float32 (exact up to 2^24 in
// magnitude, rounded beyond: ids and counts fit, raw timestamps do not and
// should reach models as durations); vectors their Dim values in order.
// Lists and maps have no fixed width and are refused: derive a float, int or
// vector feature from them instead. A missing record, or a value not set in
// a record, contributes the feature's default.
//
// A Layout is read-only and safe for concurrent use.
type Layout struct {
	set  *FeatureSet
	cols []column // in row order
	// Copies of cols by entity, for the fill loops: user and request
	// columns are the same on every row of a request.
	user, request, item, pair []column
	width                     int
}

type column struct {
	Column
	index int // Feature.index: bit in Record.has
	slot  int
	kind  Kind
	def   []float32
}

// NewLayout returns the layout of rows holding the named features in that
// order. It reports every unknown, repeated or unflattenable name at once.
func (s *FeatureSet) NewLayout(names []string) (*Layout, error) {
	if len(names) == 0 {
		return nil, errors.New("layout: no features named")
	}
	l := &Layout{set: s, cols: make([]column, 0, len(names))}
	var bad []string
	seen := make(map[string]bool, len(names))
	for _, name := range names {
		f, ok := s.byName[name]
		switch {
		case seen[name]:
			bad = append(bad, fmt.Sprintf("%s: named twice", name))
			continue
		case !ok:
			bad = append(bad, fmt.Sprintf("%s: not defined in %s", name, s.source))
			continue
		case f.Type.Width() == 0:
			bad = append(bad, fmt.Sprintf("%s: a %s has no fixed width and cannot be a ranker input", name, f.Type))
			continue
		}
		seen[name] = true
		c := column{
			Column: Column{Name: f.Name, Entity: f.Entity, Type: f.Type, Offset: l.width, Width: f.Type.Width()},
			index:  f.index,
			slot:   f.slot,
			kind:   f.Type.Kind,
			def:    f.defaultRow,
		}
		l.width += c.Width
		l.cols = append(l.cols, c)
		switch f.Entity {
		case EntityUser:
			l.user = append(l.user, c)
		case EntityRequest:
			l.request = append(l.request, c)
		case EntityItem:
			l.item = append(l.item, c)
		case EntityUserItem:
			l.pair = append(l.pair, c)
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("layout: %s", strings.Join(bad, "; "))
	}
	return l, nil
}

// Width returns the number of float32 values in a row.
func (l *Layout) Width() int { return l.width }

// Columns returns the features of a row in order.
func (l *Layout) Columns() []Column {
	out := make([]Column, len(l.cols))
	for i := range l.cols {
		out[i] = l.cols[i].Column
	}
	return out
}

// Names returns the feature names in row order.
func (l *Layout) Names() []string {
	out := make([]string, len(l.cols))
	for i := range l.cols {
		out[i] = l.cols[i].Name
	}
	return out
}

// Schema returns the ModelSchema of a model trained on rows of this layout.
func (l *Layout) Schema() ModelSchema {
	m := ModelSchema{SchemaHash: l.set.hash, Features: make([]RequiredFeature, len(l.cols))}
	for i := range l.cols {
		m.Features[i] = l.set.byName[l.cols[i].Name].Required()
	}
	return m
}

// Inputs are the records one row is built from. A nil record means the
// entity is unknown: all its features take their defaults.
type Inputs struct {
	User, Item, UserItem, Request *Record
}

// Fill writes one row into dst[:Width()].
func (l *Layout) Fill(dst []float32, in Inputs) error {
	if len(dst) < l.width {
		return fmt.Errorf("layout: row buffer holds %d values, the layout needs %d", len(dst), l.width)
	}
	if err := l.check(in.User, EntityUser); err != nil {
		return err
	}
	if err := l.check(in.Request, EntityRequest); err != nil {
		return err
	}
	if err := l.check(in.Item, EntityItem); err != nil {
		return err
	}
	if err := l.check(in.UserItem, EntityUserItem); err != nil {
		return err
	}
	fillColumns(dst, l.user, in.User)
	fillColumns(dst, l.request, in.Request)
	fillColumns(dst, l.item, in.Item)
	fillColumns(dst, l.pair, in.UserItem)
	return nil
}

// FillBatch writes one row per candidate item into dst, row i at
// dst[i*Width():(i+1)*Width()]: the user and request features (the same on
// every row) once, then each item's and (user, item) pair's. pairs is nil
// when no pair features are known, or else has one record (or nil) per
// item; an item record may be nil. It does not allocate.
func (l *Layout) FillBatch(dst []float32, user, request *Record, items, pairs []*Record) error {
	n := len(items)
	if len(dst) < n*l.width {
		return fmt.Errorf("layout: row buffer holds %d values, %d rows of %d need %d", len(dst), n, l.width, n*l.width)
	}
	if pairs != nil && len(pairs) != n {
		return fmt.Errorf("layout: %d user×item records for %d items", len(pairs), n)
	}
	if err := l.check(user, EntityUser); err != nil {
		return err
	}
	if err := l.check(request, EntityRequest); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	first := dst[:l.width]
	fillColumns(first, l.user, user)
	fillColumns(first, l.request, request)
	for r := range n {
		row := dst[r*l.width : (r+1)*l.width]
		if r > 0 {
			copy(row, first)
		}
		item := items[r]
		if err := l.check(item, EntityItem); err != nil {
			return fmt.Errorf("item %d: %w", r, err)
		}
		var pair *Record
		if pairs != nil {
			pair = pairs[r]
			if err := l.check(pair, EntityUserItem); err != nil {
				return fmt.Errorf("item %d: %w", r, err)
			}
		}
		fillColumns(row, l.item, item)
		fillColumns(row, l.pair, pair)
	}
	return nil
}

func (l *Layout) check(r *Record, e Entity) error {
	if r == nil {
		return nil
	}
	if r.set != l.set {
		return fmt.Errorf("%w: the %s record belongs to other feature definitions than the layout", ErrWrongRecord, r.entity)
	}
	if r.entity != e {
		return fmt.Errorf("%w: a %s record was given as the %s record", ErrWrongRecord, r.entity, e)
	}
	return nil
}

// fillColumns writes one entity's columns of a row from r (nil: defaults).
func fillColumns(row []float32, cols []column, r *Record) {
	if r == nil {
		for i := range cols {
			c := &cols[i]
			copy(row[c.Offset:c.Offset+c.Width], c.def)
		}
		return
	}
	for i := range cols {
		c := &cols[i]
		if r.has[c.index>>6]&(1<<(c.index&63)) == 0 {
			copy(row[c.Offset:c.Offset+c.Width], c.def)
			continue
		}
		switch c.kind {
		case KindFloat:
			row[c.Offset] = r.nums[c.slot]
		case KindInt:
			row[c.Offset] = float32(r.ints[c.slot])
		default:
			copy(row[c.Offset:c.Offset+c.Width], r.nums[c.slot:c.slot+c.Width])
		}
	}
}
