package features

import (
	"errors"
	"fmt"
	"math"
)

// ErrWrongRecord is wrapped by errors about a record that does not belong to
// the feature set or entity it is used with.
var ErrWrongRecord = errors.New("wrong feature record")

// Record holds feature values of one entity instance: one user, one item,
// one (user, item) pair or one request. A feature that was never set (or was
// unset) reads as its default. Records are reusable (Reset) and not safe for
// concurrent writes.
type Record struct {
	set    *FeatureSet
	entity Entity
	nums   []float32 // float and vector values at Feature.slot
	ints   []int64
	lists  [][]string
	maps   []map[string]float64
	has    []uint64 // bit Feature.index: value set
}

// NewRecord returns an empty record for an entity of the set.
func (s *FeatureSet) NewRecord(e Entity) *Record {
	if int(e) >= numEntities {
		panic(fmt.Sprintf("features: NewRecord(%v): no such entity", e))
	}
	return &Record{
		set:    s,
		entity: e,
		nums:   make([]float32, s.nums[e]),
		ints:   make([]int64, s.ints[e]),
		lists:  make([][]string, s.lists[e]),
		maps:   make([]map[string]float64, s.maps[e]),
		has:    make([]uint64, (len(s.byEntity[e])+63)/64),
	}
}

// Entity returns the entity the record describes.
func (r *Record) Entity() Entity { return r.entity }

// Reset unsets every value, so that every feature reads as its default.
func (r *Record) Reset() {
	clear(r.has)
	clear(r.lists)
	clear(r.maps)
}

func (r *Record) feature(id ID, k Kind) (*Feature, error) {
	f, ok := r.set.ByID(id)
	if !ok {
		return nil, fmt.Errorf("%w: no feature with id %d", ErrWrongRecord, id)
	}
	if f.Entity != r.entity {
		return nil, fmt.Errorf("%w: %s is a %s feature, the record holds %s features", ErrWrongRecord, f.Name, f.Entity, r.entity)
	}
	if f.Type.Kind != k {
		return nil, fmt.Errorf("%w: %s is a %s, not a %s", ErrWrongRecord, f.Name, f.Type, Type{Kind: k})
	}
	return f, nil
}

func (r *Record) mark(f *Feature) { r.has[f.index>>6] |= 1 << (f.index & 63) }

func (r *Record) isSet(index int) bool { return r.has[index>>6]&(1<<(index&63)) != 0 }

// SetFloat sets a float feature. The value must be finite and fit a float32:
// a model must never see NaN or infinity.
func (r *Record) SetFloat(id ID, v float64) error {
	f, err := r.feature(id, KindFloat)
	if err != nil {
		return err
	}
	if math.IsNaN(v) || math.IsInf(v, 0) || math.Abs(v) > math.MaxFloat32 {
		return fmt.Errorf("%s: %g is not a finite 32-bit float", f.Name, v)
	}
	r.nums[f.slot] = float32(v)
	r.mark(f)
	return nil
}

// SetInt sets an int feature.
func (r *Record) SetInt(id ID, v int64) error {
	f, err := r.feature(id, KindInt)
	if err != nil {
		return err
	}
	r.ints[f.slot] = v
	r.mark(f)
	return nil
}

// SetVector sets a vector feature, copying v, which must have the declared
// dimension and finite components.
func (r *Record) SetVector(id ID, v []float32) error {
	f, err := r.feature(id, KindVector)
	if err != nil {
		return err
	}
	if len(v) != f.Type.Dim {
		return fmt.Errorf("%s: %d components for a %s", f.Name, len(v), f.Type)
	}
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return fmt.Errorf("%s: component %d is %g, not finite", f.Name, i, x)
		}
	}
	copy(r.nums[f.slot:f.slot+f.Type.Dim], v)
	r.mark(f)
	return nil
}

// SetList sets a list feature. The record keeps v without copying it.
func (r *Record) SetList(id ID, v []string) error {
	f, err := r.feature(id, KindList)
	if err != nil {
		return err
	}
	r.lists[f.slot] = v
	r.mark(f)
	return nil
}

// SetMap sets a map feature. The record keeps v without copying it.
func (r *Record) SetMap(id ID, v map[string]float64) error {
	f, err := r.feature(id, KindMap)
	if err != nil {
		return err
	}
	r.maps[f.slot] = v
	r.mark(f)
	return nil
}

// Unset forgets a value, so that the feature reads as its default.
func (r *Record) Unset(id ID) {
	f, ok := r.set.ByID(id)
	if !ok || f.Entity != r.entity {
		return
	}
	r.has[f.index>>6] &^= 1 << (f.index & 63)
	switch f.Type.Kind {
	case KindList:
		r.lists[f.slot] = nil
	case KindMap:
		r.maps[f.slot] = nil
	}
}

// Has reports whether a value is set for the feature.
func (r *Record) Has(id ID) bool {
	f, ok := r.set.ByID(id)
	return ok && f.Entity == r.entity && r.isSet(f.index)
}

// Get returns a feature's value, or its default when unset, and whether it
// was set. Vector, list and map values share the record's (or the
// definition's) storage: copy them to keep them past a change.
func (r *Record) Get(id ID) (Value, bool, error) {
	f, ok := r.set.ByID(id)
	if !ok || f.Entity != r.entity {
		return Value{}, false, fmt.Errorf("%w: feature id %d is not a %s feature", ErrWrongRecord, id, r.entity)
	}
	if !r.isSet(f.index) {
		return f.Default, false, nil
	}
	switch f.Type.Kind {
	case KindFloat:
		return Value{Float: r.nums[f.slot]}, true, nil
	case KindInt:
		return Value{Int: r.ints[f.slot]}, true, nil
	case KindVector:
		return Value{Vector: r.nums[f.slot : f.slot+f.Type.Dim : f.slot+f.Type.Dim]}, true, nil
	case KindList:
		return Value{List: r.lists[f.slot]}, true, nil
	default:
		return Value{Map: r.maps[f.slot]}, true, nil
	}
}

// vector marks a vector feature set and returns its storage, zeroed, for
// the request lane to write in place.
func (r *Record) vector(f *Feature) []float32 {
	v := r.nums[f.slot : f.slot+f.Type.Dim]
	clear(v)
	r.mark(f)
	return v
}
