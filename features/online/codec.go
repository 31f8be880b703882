package online

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/adaptrec/adaptrec/features"
)

// ErrCorruptValue is wrapped by errors about stored bytes that cannot be
// decoded: a truncated record, an unknown format, a kind other than the one
// the definitions declare.
var ErrCorruptValue = errors.New("corrupt online feature value")

// recordFormat is the first byte of every packed batch record.
const recordFormat = 1

// recordLayout is the value order of the packed user records of one batch
// snapshot version: the group's fixed-width and map features as the loader's
// definitions list them (recorded in the version's meta), mapped to the
// features of the reader's definitions, so that a reader with other
// definitions (another schema hash) still decodes records by name.
type recordLayout struct {
	entries []layoutEntry // fixed-width features in manifest order
	maps    []layoutEntry // map features in manifest order
}

type layoutEntry struct {
	name string
	kind features.Kind
	dim  int // components of a vector; 1 otherwise
	// target is the reader's feature of that name, nil when the reader does
	// not define it with the same entity and type: its bytes are skipped.
	target *features.Feature
}

// newRecordLayout maps features (names and types, in value order) and map
// features to the reader's definitions for entity e.
func newRecordLayout(fs *features.FeatureSet, e features.Entity, names, types, mapNames []string) (*recordLayout, error) {
	if len(names) != len(types) {
		return nil, fmt.Errorf("%w: %d feature names and %d types", ErrCorruptValue, len(names), len(types))
	}
	rl := &recordLayout{}
	for i, name := range names {
		t, err := features.ParseType(types[i])
		if err != nil {
			return nil, fmt.Errorf("%w: feature %s: %v", ErrCorruptValue, name, err)
		}
		if t.Width() == 0 {
			return nil, fmt.Errorf("%w: feature %s: a %s has no fixed width", ErrCorruptValue, name, t)
		}
		le := layoutEntry{name: name, kind: t.Kind, dim: t.Width()}
		if f, ok := fs.Lookup(name); ok && f.Entity == e && f.Type == t {
			le.target = f
		}
		rl.entries = append(rl.entries, le)
	}
	for _, name := range mapNames {
		le := layoutEntry{name: name, kind: features.KindMap}
		if f, ok := fs.Lookup(name); ok && f.Entity == e && f.Type.Kind == features.KindMap {
			le.target = f
		}
		rl.maps = append(rl.maps, le)
	}
	return rl, nil
}

// encode appends the packed record of rec (a record of the layout's
// entity, filled by snapshot.Binding) to dst: the format byte, a presence
// bit per fixed-width feature (unset values are absent and read as their
// defaults), the present values (float32 for floats and vector components,
// zig-zag varints for ints), then each map feature as count+1 (0: unset)
// and its entries. Only features with a target are written: the layout
// the writer builds from its own definitions has one for every entry.
func (rl *recordLayout) encode(dst []byte, rec *features.Record) ([]byte, error) {
	dst = append(dst, recordFormat)
	bits := len(dst)
	for range (len(rl.entries) + 7) / 8 {
		dst = append(dst, 0)
	}
	for i, e := range rl.entries {
		if e.target == nil {
			continue
		}
		v, set, err := rec.Get(e.target.ID)
		if err != nil {
			return nil, err
		}
		if !set {
			continue
		}
		dst[bits+i/8] |= 1 << (i % 8)
		switch e.kind {
		case features.KindInt:
			dst = binary.AppendVarint(dst, v.Int)
		case features.KindFloat:
			dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(v.Float))
		default:
			for _, x := range v.Vector {
				dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(x))
			}
		}
	}
	for _, e := range rl.maps {
		var m map[string]float64
		if e.target != nil {
			v, set, err := rec.Get(e.target.ID)
			if err != nil {
				return nil, err
			}
			if set {
				m = v.Map
				if m == nil {
					m = map[string]float64{}
				}
			}
		}
		if m == nil {
			dst = binary.AppendUvarint(dst, 0)
			continue
		}
		dst = binary.AppendUvarint(dst, uint64(len(m))+1)
		for k, v := range m {
			dst = binary.AppendUvarint(dst, uint64(len(k)))
			dst = append(dst, k...)
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
		}
	}
	return dst, nil
}

// decode sets the record's features from a packed record. Features the
// record does not hold stay unset (their defaults). Map features are only
// decoded withMaps: they are not ranker inputs and cost allocations. vec is
// scratch for vector values, at least as long as the widest vector.
func (rl *recordLayout) decode(s string, rec *features.Record, withMaps bool, vec []float32) error {
	if len(s) == 0 || s[0] != recordFormat {
		return fmt.Errorf("%w: packed record does not start with format %d", ErrCorruptValue, recordFormat)
	}
	r := reader{s: s, i: 1}
	nbits := (len(rl.entries) + 7) / 8
	bits, ok := r.bytes(nbits)
	if !ok {
		return fmt.Errorf("%w: packed record truncated", ErrCorruptValue)
	}
	for i := range rl.entries {
		e := &rl.entries[i]
		if bits[i/8]&(1<<(i%8)) == 0 {
			continue
		}
		var err error
		switch e.kind {
		case features.KindInt:
			v, ok := r.varint()
			if !ok {
				return fmt.Errorf("%w: %s truncated", ErrCorruptValue, e.name)
			}
			if e.target != nil {
				err = rec.SetInt(e.target.ID, v)
			}
		case features.KindFloat:
			v, ok := r.float32()
			if !ok {
				return fmt.Errorf("%w: %s truncated", ErrCorruptValue, e.name)
			}
			if e.target != nil {
				err = rec.SetFloat(e.target.ID, float64(v))
			}
		default:
			if e.target == nil {
				if !r.skip(4 * e.dim) {
					return fmt.Errorf("%w: %s truncated", ErrCorruptValue, e.name)
				}
				continue
			}
			v := vec[:e.dim]
			for j := range v {
				if v[j], ok = r.float32(); !ok {
					return fmt.Errorf("%w: %s truncated", ErrCorruptValue, e.name)
				}
			}
			err = rec.SetVector(e.target.ID, v)
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrCorruptValue, err)
		}
	}
	if !withMaps {
		return nil
	}
	for i := range rl.maps {
		e := &rl.maps[i]
		n, ok := r.uvarint()
		if !ok {
			return fmt.Errorf("%w: %s truncated", ErrCorruptValue, e.name)
		}
		if n == 0 {
			continue
		}
		m := make(map[string]float64, n-1)
		for range n - 1 {
			k, ok1 := r.str()
			v, ok2 := r.float64()
			if !ok1 || !ok2 {
				return fmt.Errorf("%w: %s truncated", ErrCorruptValue, e.name)
			}
			m[k] = v
		}
		if e.target != nil {
			if err := rec.SetMap(e.target.ID, m); err != nil {
				return fmt.Errorf("%w: %v", ErrCorruptValue, err)
			}
		}
	}
	return nil
}

// A nearline value is stored as one hash field named after its feature:
// 8 bytes of big-endian Unix milliseconds (when the value was computed, so
// the writer's script can compare timestamps as strings), one byte of
// features.Kind, then the payload: float32 little-endian; a zig-zag varint;
// a uvarint dimension and float32 components; a uvarint count of
// length-prefixed strings; a uvarint count of (length-prefixed key, float64)
// entries.
const nearlineHeader = 9

// appendNearline appends the stored form of a nearline value.
func appendNearline(dst []byte, atMs int64, f *features.Feature, v features.Value) ([]byte, error) {
	dst = binary.BigEndian.AppendUint64(dst, uint64(atMs))
	dst = append(dst, byte(f.Type.Kind))
	switch f.Type.Kind {
	case features.KindFloat:
		if math.IsNaN(float64(v.Float)) || math.IsInf(float64(v.Float), 0) {
			return nil, fmt.Errorf("%s: %g is not finite", f.Name, v.Float)
		}
		dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(v.Float))
	case features.KindInt:
		dst = binary.AppendVarint(dst, v.Int)
	case features.KindVector:
		if len(v.Vector) != f.Type.Dim {
			return nil, fmt.Errorf("%s: %d components for a %s", f.Name, len(v.Vector), f.Type)
		}
		dst = binary.AppendUvarint(dst, uint64(len(v.Vector)))
		for i, x := range v.Vector {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return nil, fmt.Errorf("%s: component %d is %g, not finite", f.Name, i, x)
			}
			dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(x))
		}
	case features.KindList:
		dst = binary.AppendUvarint(dst, uint64(len(v.List)))
		for _, s := range v.List {
			dst = binary.AppendUvarint(dst, uint64(len(s)))
			dst = append(dst, s...)
		}
	case features.KindMap:
		dst = binary.AppendUvarint(dst, uint64(len(v.Map)))
		for k, x := range v.Map {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return nil, fmt.Errorf("%s: entry %q is %g, not finite", f.Name, k, x)
			}
			dst = binary.AppendUvarint(dst, uint64(len(k)))
			dst = append(dst, k...)
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(x))
		}
	default:
		return nil, fmt.Errorf("%s: unsupported type %s", f.Name, f.Type)
	}
	return dst, nil
}

// nearlineTime returns a stored nearline value's Unix milliseconds and
// checks its kind against the feature's.
func nearlineTime(s string, f *features.Feature) (int64, error) {
	if len(s) < nearlineHeader {
		return 0, fmt.Errorf("%w: %s: %d bytes, shorter than the header", ErrCorruptValue, f.Name, len(s))
	}
	if features.Kind(s[8]) != f.Type.Kind {
		return 0, fmt.Errorf("%w: %s: stored as kind %d, defined as %s", ErrCorruptValue, f.Name, s[8], f.Type)
	}
	var at uint64
	for i := range 8 {
		at = at<<8 | uint64(s[i])
	}
	return int64(at), nil
}

// setNearline decodes a stored nearline value (checked by nearlineTime)
// into the record. Lists and maps are decoded only withLists.
func setNearline(s string, f *features.Feature, rec *features.Record, vec []float32, withLists bool) error {
	r := reader{s: s, i: nearlineHeader}
	var err error
	ok := true
	switch f.Type.Kind {
	case features.KindFloat:
		var v float32
		if v, ok = r.float32(); ok {
			err = rec.SetFloat(f.ID, float64(v))
		}
	case features.KindInt:
		var v int64
		if v, ok = r.varint(); ok {
			err = rec.SetInt(f.ID, v)
		}
	case features.KindVector:
		var n uint64
		if n, ok = r.uvarint(); ok {
			if int(n) != f.Type.Dim {
				return fmt.Errorf("%w: %s: %d components for a %s", ErrCorruptValue, f.Name, n, f.Type)
			}
			v := vec[:n]
			for j := range v {
				if v[j], ok = r.float32(); !ok {
					break
				}
			}
			if ok {
				err = rec.SetVector(f.ID, v)
			}
		}
	case features.KindList:
		if !withLists {
			return nil
		}
		var n uint64
		if n, ok = r.uvarint(); ok && n <= uint64(len(s)) {
			list := make([]string, 0, n)
			for range n {
				var e string
				if e, ok = r.str(); !ok {
					break
				}
				list = append(list, e)
			}
			if ok {
				err = rec.SetList(f.ID, list)
			}
		}
	case features.KindMap:
		if !withLists {
			return nil
		}
		var n uint64
		if n, ok = r.uvarint(); ok && n <= uint64(len(s)) {
			m := make(map[string]float64, n)
			for range n {
				k, ok1 := r.str()
				v, ok2 := r.float64()
				if ok = ok1 && ok2; !ok {
					break
				}
				m[k] = v
			}
			if ok {
				err = rec.SetMap(f.ID, m)
			}
		}
	}
	if !ok {
		return fmt.Errorf("%w: %s truncated", ErrCorruptValue, f.Name)
	}
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorruptValue, err)
	}
	return nil
}

// reader decodes little-endian values and varints from a string without
// copying it.
type reader struct {
	s string
	i int
}

func (r *reader) bytes(n int) (string, bool) {
	if n < 0 || r.i+n > len(r.s) {
		return "", false
	}
	b := r.s[r.i : r.i+n]
	r.i += n
	return b, true
}

func (r *reader) skip(n int) bool { _, ok := r.bytes(n); return ok }

func (r *reader) float32() (float32, bool) {
	b, ok := r.bytes(4)
	if !ok {
		return 0, false
	}
	return math.Float32frombits(uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24), true
}

func (r *reader) float64() (float64, bool) {
	b, ok := r.bytes(8)
	if !ok {
		return 0, false
	}
	var u uint64
	for i := 7; i >= 0; i-- {
		u = u<<8 | uint64(b[i])
	}
	return math.Float64frombits(u), true
}

func (r *reader) uvarint() (uint64, bool) {
	var x uint64
	var shift uint
	for n := 0; n < binary.MaxVarintLen64; n++ {
		if r.i >= len(r.s) {
			return 0, false
		}
		b := r.s[r.i]
		r.i++
		if b < 0x80 {
			if n == binary.MaxVarintLen64-1 && b > 1 {
				return 0, false
			}
			return x | uint64(b)<<shift, true
		}
		x |= uint64(b&0x7f) << shift
		shift += 7
	}
	return 0, false
}

func (r *reader) varint() (int64, bool) {
	ux, ok := r.uvarint()
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x, ok
}

func (r *reader) str() (string, bool) {
	n, ok := r.uvarint()
	if !ok || n > uint64(len(r.s)) {
		return "", false
	}
	return r.bytes(int(n))
}
