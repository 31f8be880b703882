package features

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Entity is what a feature describes; its value is looked up by that
// entity's key.
type Entity uint8

// Entities, in canonical order (the order of FeatureSet.All).
const (
	// EntityUser features are keyed by user id.
	EntityUser Entity = iota
	// EntityItem features are keyed by item id.
	EntityItem
	// EntityUserItem features are keyed by a (user id, item id) pair.
	EntityUserItem
	// EntityRequest features are computed from the request itself and are
	// never stored.
	EntityRequest

	numEntities = 4
)

var entityNames = [numEntities]string{"user", "item", "user_item", "request"}

// Entities lists every entity in canonical order.
func Entities() []Entity { return []Entity{EntityUser, EntityItem, EntityUserItem, EntityRequest} }

// String returns the entity's name as written in the definitions file.
func (e Entity) String() string {
	if int(e) < numEntities {
		return entityNames[e]
	}
	return "entity(" + strconv.Itoa(int(e)) + ")"
}

// ParseEntity parses an entity name ("user", "item", "user_item", "request").
func ParseEntity(s string) (Entity, error) {
	for i, n := range entityNames {
		if s == n {
			return Entity(i), nil
		}
	}
	return 0, fmt.Errorf("unknown entity %q (want one of %s)", s, strings.Join(entityNames[:], ", "))
}

// Lane is how a feature's values are computed and kept fresh.
type Lane uint8

// Lanes.
const (
	// LaneBatch features are computed by scheduled jobs over the offline
	// event log and published as snapshots; they have a freshness SLA.
	LaneBatch Lane = iota
	// LaneNearline features are updated from the event stream within
	// seconds; they have a TTL after which a value counts as missing.
	LaneNearline
	// LaneRequest features are computed from the request while serving (and
	// from the archived event while building training rows).
	LaneRequest

	numLanes = 3
)

var laneNames = [numLanes]string{"batch", "nearline", "request"}

// Lanes lists every lane.
func Lanes() []Lane { return []Lane{LaneBatch, LaneNearline, LaneRequest} }

// String returns the lane's name as written in the definitions file.
func (l Lane) String() string {
	if int(l) < numLanes {
		return laneNames[l]
	}
	return "lane(" + strconv.Itoa(int(l)) + ")"
}

// ParseLane parses a lane name ("batch", "nearline", "request").
func ParseLane(s string) (Lane, error) {
	for i, n := range laneNames {
		if s == n {
			return Lane(i), nil
		}
	}
	return 0, fmt.Errorf("unknown lane %q (want one of %s)", s, strings.Join(laneNames[:], ", "))
}

// Kind is the shape of a feature's value.
type Kind uint8

// Kinds.
const (
	// KindFloat is a 32-bit float.
	KindFloat Kind = iota
	// KindInt is a 64-bit signed integer (ids, counts, timestamps).
	KindInt
	// KindVector is a fixed number (Type.Dim) of 32-bit floats.
	KindVector
	// KindList is an ordered list of strings, such as item ids. Lists have
	// no fixed width, so they are not ranker inputs.
	KindList
	// KindMap maps strings to float64, such as clicks by creator id. Maps
	// have no fixed width, so they are not ranker inputs.
	KindMap
)

// MaxVectorDim bounds a vector feature's dimension.
const MaxVectorDim = 4096

// Type is a feature's value type: a kind, plus the dimension of a vector.
type Type struct {
	Kind Kind
	// Dim is the number of components of a vector; 0 for other kinds.
	Dim int
}

// String returns the type as written in the definitions file: "float",
// "int", "vector[16]", "list" or "map".
func (t Type) String() string {
	switch t.Kind {
	case KindFloat:
		return "float"
	case KindInt:
		return "int"
	case KindVector:
		return "vector[" + strconv.Itoa(t.Dim) + "]"
	case KindList:
		return "list"
	case KindMap:
		return "map"
	}
	return "kind(" + strconv.Itoa(int(t.Kind)) + ")"
}

// Width returns how many float32 values the type takes in a ranker input
// row, or 0 for lists and maps, which cannot be ranker inputs.
func (t Type) Width() int {
	switch t.Kind {
	case KindFloat, KindInt:
		return 1
	case KindVector:
		return t.Dim
	}
	return 0
}

// ParseType parses a type ("float", "int", "vector[n]" with n in
// 1..MaxVectorDim, "list", "map").
func ParseType(s string) (Type, error) {
	switch s {
	case "float":
		return Type{Kind: KindFloat}, nil
	case "int":
		return Type{Kind: KindInt}, nil
	case "list":
		return Type{Kind: KindList}, nil
	case "map":
		return Type{Kind: KindMap}, nil
	}
	if inner, ok := strings.CutPrefix(s, "vector["); ok {
		if digits, ok := strings.CutSuffix(inner, "]"); ok {
			n, err := strconv.Atoi(digits)
			if err != nil || n < 1 || n > MaxVectorDim || digits != strconv.Itoa(n) {
				return Type{}, fmt.Errorf("vector dimension in %q must be an integer in 1..%d", s, MaxVectorDim)
			}
			return Type{Kind: KindVector, Dim: n}, nil
		}
	}
	return Type{}, fmt.Errorf("unknown type %q (want float, int, vector[n], list or map)", s)
}

// Value is one feature value; only the field of the feature's kind is used.
type Value struct {
	// Float is the value of a float feature.
	Float float32
	// Int is the value of an int feature.
	Int int64
	// Vector is the value of a vector feature, Type.Dim components.
	Vector []float32
	// List is the value of a list feature.
	List []string
	// Map is the value of a map feature.
	Map map[string]float64
}

// ID is a feature's compact numeric id: its position in the canonical order
// of its FeatureSet. Ids are only meaningful together with the schema hash
// of the set that assigned them (see FeatureSet.SchemaHash).
type ID uint16

// MaxFeatures is the most features one FeatureSet can hold (ids are uint16).
const MaxFeatures = 1 << 16

// Feature is one feature definition. Treat it as read-only.
type Feature struct {
	// Name is unique in the set and matches ^[a-z][a-z0-9_]*$.
	Name string
	// ID is assigned by the loader (see ID).
	ID ID
	// Entity is what the feature describes.
	Entity Entity
	// Type is the value type.
	Type Type
	// Lane is how the value is computed.
	Lane Lane
	// Group names the features stored and read together: the same entity
	// and lane, usually produced by one job. It defaults to
	// "<entity>_<lane>"; a file may split an entity's lane into several
	// groups (e.g. embeddings published by the trainer).
	Group string
	// Default is the value used whenever the feature is missing: unknown
	// key, expired (TTL), or not computable from the request.
	Default Value
	// Vocabulary names the components of a vector (one-hot encodings,
	// shares per device); nil when components are positional.
	Vocabulary []string
	// TTL is how long a stored value stays usable; after it the default is
	// used. Required for nearline features, optional for batch features,
	// zero for request features.
	TTL time.Duration
	// FreshnessSLA is how old a batch feature's snapshot may be before it
	// counts as late (alerts, fallbacks). Required for batch features,
	// optional for nearline features (stream lag), zero for request
	// features.
	FreshnessSLA time.Duration
	// Owner is the team or person to ask about the feature.
	Owner string
	// Description says what the value means, how it is computed and what
	// the default stands for.
	Description string
	// Line is the line of the definitions file where the feature starts.
	Line int

	index      int       // position among its entity's features
	slot       int       // offset in the Record storage of its kind
	defaultRow []float32 // Default as ranker input; nil for lists and maps
	requestOp  requestOp // computation of a request feature
	crossOp    crossOp   // computation of a cross feature
}

// FeatureSet is a validated set of feature definitions. It is read-only and
// safe for concurrent use.
type FeatureSet struct {
	source   string
	features []*Feature // canonical order; features[i].ID == i
	byName   map[string]*Feature
	byEntity [numEntities][]*Feature
	groups   []Group
	hash     string
	cross    []*Feature // cross features (user×item, request lane)
	// The cross features' inputs when defined as they read them; nil
	// otherwise (looked up once: FillCross runs per candidate).
	crossAffinity, crossCategory, crossSession *Feature
	// storage sizes of a Record, per entity
	nums, ints, lists, maps [numEntities]int
}

// Group is a set of features of one entity and lane that are stored and read
// together.
type Group struct {
	// Name is the group name (Feature.Group).
	Name string
	// Entity and Lane are shared by every feature of the group.
	Entity Entity
	Lane   Lane
	// Features are the group's features in canonical order.
	Features []*Feature
}

// Source returns the file (or label) the set was loaded from.
func (s *FeatureSet) Source() string { return s.source }

// Len returns the number of features.
func (s *FeatureSet) Len() int { return len(s.features) }

// All returns every feature in canonical order: by entity (user, item,
// user_item, request), then by name. Feature i has ID i. The slice is shared:
// do not modify it.
func (s *FeatureSet) All() []*Feature { return s.features }

// Lookup returns the feature with the given name.
func (s *FeatureSet) Lookup(name string) (*Feature, bool) {
	f, ok := s.byName[name]
	return f, ok
}

// ByID returns the feature with the given id.
func (s *FeatureSet) ByID(id ID) (*Feature, bool) {
	if int(id) >= len(s.features) {
		return nil, false
	}
	return s.features[id], true
}

// Entity returns the features of an entity, ordered by name. The slice is
// shared: do not modify it.
func (s *FeatureSet) Entity(e Entity) []*Feature {
	if int(e) >= numEntities {
		return nil
	}
	return s.byEntity[e]
}

// Groups returns the storage groups ordered by entity, then name.
func (s *FeatureSet) Groups() []Group { return s.groups }

// RankerInputs returns the features that can be ranker inputs (every kind
// but lists and maps), in canonical order: the widest row a model of this
// set can read.
func (s *FeatureSet) RankerInputs() []*Feature {
	var out []*Feature
	for _, f := range s.features {
		if f.Type.Width() > 0 {
			out = append(out, f)
		}
	}
	return out
}
