package snapshot

import (
	"fmt"
	"strings"

	"github.com/adaptrec/adaptrec/features"
)

// Binding maps a snapshot's rows onto features.Records of a feature set, the
// one path from stored values to model inputs for both the online loader
// and training rows (which then flatten Records with features.Layout).
type Binding struct {
	entity  features.Entity
	cols    []boundColumn
	maps    []boundMap
	missing []string
	vec     []float32
}

type boundColumn struct {
	id     features.ID
	kind   features.Kind
	off, w int
}

type boundMap struct {
	id    features.ID
	index int
}

// Bind matches the manifest's features to fs by name. A feature present in
// both must have the same entity and type, or Bind fails (the snapshot was
// computed under an incompatible definition and must be recomputed).
// Features the snapshot left at their default (FeatureStats.NotComputed)
// are not bound, so records read them as unset; features of fs's group that
// the snapshot lacks are listed by Missing and read as defaults too;
// snapshot features fs no longer defines are ignored.
func (m *Manifest) Bind(fs *features.FeatureSet) (*Binding, error) {
	b := &Binding{entity: m.Entity}
	var bad []string
	off := 0
	have := map[string]bool{}
	for i, name := range m.Features {
		typ, err := features.ParseType(m.Types[i])
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, m.Key(), err)
		}
		w := typ.Width()
		have[name] = true
		f, ok := fs.Lookup(name)
		switch {
		case !ok:
		case f.Entity != m.Entity || f.Type != typ:
			bad = append(bad, fmt.Sprintf("%s is a %s %s in the snapshot, a %s %s in %s", name, m.Entity, typ, f.Entity, f.Type, fs.Source()))
		case m.Stats[name].NotComputed != "":
		default:
			b.cols = append(b.cols, boundColumn{id: f.ID, kind: typ.Kind, off: off, w: w})
			if typ.Kind == features.KindVector && w > len(b.vec) {
				b.vec = make([]float32, w)
			}
		}
		off += w
	}
	for i, name := range m.MapFeatures {
		have[name] = true
		f, ok := fs.Lookup(name)
		switch {
		case !ok:
		case f.Entity != m.Entity || f.Type.Kind != features.KindMap:
			bad = append(bad, fmt.Sprintf("%s is a %s map in the snapshot, a %s %s in %s", name, m.Entity, f.Entity, f.Type, fs.Source()))
		case m.Stats[name].NotComputed != "":
		default:
			b.maps = append(b.maps, boundMap{id: f.ID, index: i})
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("snapshot %s/%s cannot be read with %s: %s", m.Group, m.Version, fs.Source(), strings.Join(bad, "; "))
	}
	for _, g := range fs.Groups() {
		if g.Name != m.Group {
			continue
		}
		for _, f := range g.Features {
			if !have[f.Name] {
				b.missing = append(b.missing, f.Name)
			}
		}
	}
	return b, nil
}

// Missing lists the features of the group in the feature set that the
// snapshot does not hold.
func (b *Binding) Missing() []string { return b.missing }

// Fill resets rec (a record of the snapshot's entity) and sets every bound
// feature from row. It does not allocate. A row is nil for an entity the
// snapshot has no row for: rec is then left with every feature unset, so
// all read as their defaults. A Binding is not safe for concurrent use.
func (b *Binding) Fill(rec *features.Record, row *Row) error {
	if rec.Entity() != b.entity {
		return fmt.Errorf("%w: a %s record for a %s snapshot", features.ErrWrongRecord, rec.Entity(), b.entity)
	}
	rec.Reset()
	return b.Apply(rec, row)
}

// Apply sets the bound features from row without resetting rec, so that
// several groups of one entity (user_batch and user_embedding) can fill one
// record; a nil row changes nothing.
func (b *Binding) Apply(rec *features.Record, row *Row) error {
	if rec.Entity() != b.entity {
		return fmt.Errorf("%w: a %s record for a %s snapshot", features.ErrWrongRecord, rec.Entity(), b.entity)
	}
	if row == nil {
		return nil
	}
	for i := range b.cols {
		c := &b.cols[i]
		if c.off+c.w > len(row.Values) {
			return fmt.Errorf("%w: entity %q has %d values", ErrCorrupt, row.EntityID, len(row.Values))
		}
		var err error
		switch c.kind {
		case features.KindFloat:
			err = rec.SetFloat(c.id, row.Values[c.off])
		case features.KindInt:
			err = rec.SetInt(c.id, int64(row.Values[c.off]))
		default:
			v := b.vec[:c.w]
			for j, x := range row.Values[c.off : c.off+c.w] {
				v[j] = float32(x)
			}
			err = rec.SetVector(c.id, v)
		}
		if err != nil {
			return fmt.Errorf("entity %q: %w", row.EntityID, err)
		}
	}
	for _, m := range b.maps {
		if m.index < len(row.Maps) && row.Maps[m.index] != nil {
			if err := rec.SetMap(m.id, row.Maps[m.index]); err != nil {
				return fmt.Errorf("entity %q: %w", row.EntityID, err)
			}
		}
	}
	return nil
}
