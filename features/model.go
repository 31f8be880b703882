package features

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// SchemaHashPrefix starts every schema hash; it names the canonical form, so
// a future change of that form cannot collide with today's hashes.
const SchemaHashPrefix = "fs1:"

// ErrIncompatible is wrapped by FeatureSet.Satisfies when a model needs
// features the set does not provide as the model was trained on them.
var ErrIncompatible = errors.New("feature definitions cannot satisfy the model")

// RequiredFeature is one feature a model consumes, as the definitions
// described it when the model was trained: everything that decides the
// values the model sees. Owner, description, lane, group, TTL and freshness
// SLA are left out: they say who computes a value and how fresh it must be,
// not what it means.
type RequiredFeature struct {
	// Name is the feature name.
	Name string `json:"name"`
	// Entity is the entity name ("user", "item", "user_item", "request").
	Entity string `json:"entity"`
	// Type is the type as written in the definitions file ("vector[16]").
	Type string `json:"type"`
	// Default is the canonical encoding of the default: a float32 in
	// shortest form, an integer, or a JSON array or object.
	Default string `json:"default"`
	// Vocabulary names the components of a vector; omitted when positional.
	Vocabulary []string `json:"vocabulary,omitempty"`
}

// ModelSchema is what a model records about its inputs, stored as JSON next
// to the model and every training set built for it.
type ModelSchema struct {
	// SchemaHash is the FeatureSet.SchemaHash of the definitions the model
	// was trained with: provenance, and the key for finding them again.
	SchemaHash string `json:"schema_hash"`
	// Features are the model's inputs in input-row order (see Layout).
	Features []RequiredFeature `json:"features"`
}

// Names returns the feature names in input-row order.
func (m ModelSchema) Names() []string {
	names := make([]string, len(m.Features))
	for i, f := range m.Features {
		names[i] = f.Name
	}
	return names
}

// Required describes f as a model consuming it records it.
func (f *Feature) Required() RequiredFeature {
	return RequiredFeature{
		Name:       f.Name,
		Entity:     f.Entity.String(),
		Type:       f.Type.String(),
		Default:    canonicalValue(f.Type, f.Default),
		Vocabulary: f.Vocabulary,
	}
}

// SchemaHash identifies the definitions that decide model inputs: "fs1:"
// and the hex SHA-256 of the JSON array of every feature's RequiredFeature in
// canonical order (entity, then name). The file's order, owners,
// descriptions, lanes, groups, TTLs and freshness SLAs do not change it;
// adding, removing or renaming a feature, or changing an entity, type,
// default or vocabulary, does. Feature ids are positions in the same order,
// so the hash also identifies the id assignment.
func (s *FeatureSet) SchemaHash() string { return s.hash }

func schemaHash(canonical []*Feature) string {
	req := make([]RequiredFeature, len(canonical))
	for i, f := range canonical {
		req[i] = f.Required()
	}
	b, err := json.Marshal(req)
	if err != nil {
		// Strings and string slices always marshal.
		panic(fmt.Sprintf("features: marshal canonical definitions: %v", err))
	}
	sum := sha256.Sum256(b)
	return SchemaHashPrefix + hex.EncodeToString(sum[:])
}

// canonicalValue encodes a value so that values a model cannot tell apart
// encode alike: floats are rounded to float32, as the model reads them.
func canonicalValue(t Type, v Value) string {
	f32 := func(f float32) string { return strconv.FormatFloat(float64(f), 'g', -1, 32) }
	switch t.Kind {
	case KindFloat:
		return f32(v.Float)
	case KindInt:
		return strconv.FormatInt(v.Int, 10)
	case KindVector:
		var b strings.Builder
		b.WriteByte('[')
		for i, x := range v.Vector {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(f32(x))
		}
		b.WriteByte(']')
		return b.String()
	case KindList:
		list := v.List
		if list == nil {
			list = []string{}
		}
		b, _ := json.Marshal(list)
		return string(b)
	case KindMap:
		m := v.Map
		if m == nil {
			m = map[string]float64{}
		}
		// encoding/json sorts map keys.
		b, _ := json.Marshal(m)
		return string(b)
	}
	return ""
}

// Schema returns the ModelSchema of a model whose inputs are the named
// features in that order. It fails when a name is unknown, repeated, or a
// list or map (not ranker inputs); NewLayout accepts the same names.
func (s *FeatureSet) Schema(names []string) (ModelSchema, error) {
	l, err := s.NewLayout(names)
	if err != nil {
		return ModelSchema{}, err
	}
	return l.Schema(), nil
}

// Satisfies reports whether serving can feed a model with these
// definitions. A model is satisfied when every feature it consumes exists
// with the same entity, type, default and vocabulary; features it does not
// consume may differ or be added freely, so the schema hashes need not be
// equal. The error wraps ErrIncompatible and lists every mismatch.
func (s *FeatureSet) Satisfies(m ModelSchema) error {
	var bad []string
	if !strings.HasPrefix(m.SchemaHash, SchemaHashPrefix) {
		bad = append(bad, fmt.Sprintf("schema hash %q is not a %s hash: the model was not built from feature definitions", m.SchemaHash, SchemaHashPrefix))
	}
	if len(m.Features) == 0 {
		bad = append(bad, "the model lists no input features")
	}
	seen := make(map[string]bool, len(m.Features))
	for _, want := range m.Features {
		if seen[want.Name] {
			bad = append(bad, fmt.Sprintf("%s: listed twice", want.Name))
			continue
		}
		seen[want.Name] = true
		f, ok := s.byName[want.Name]
		if !ok {
			bad = append(bad, fmt.Sprintf("%s: not defined", want.Name))
			continue
		}
		have := f.Required()
		if have.Entity != want.Entity {
			bad = append(bad, fmt.Sprintf("%s: model wants entity %s, definitions have %s", want.Name, want.Entity, have.Entity))
		}
		if have.Type != want.Type {
			bad = append(bad, fmt.Sprintf("%s: model wants type %s, definitions have %s", want.Name, want.Type, have.Type))
		} else if f.Type.Width() == 0 {
			bad = append(bad, fmt.Sprintf("%s: a %s cannot be a ranker input", want.Name, have.Type))
		}
		if have.Type == want.Type && have.Default != want.Default {
			bad = append(bad, fmt.Sprintf("%s: model was trained with default %s, definitions have %s", want.Name, want.Default, have.Default))
		}
		if !slices.Equal(have.Vocabulary, want.Vocabulary) {
			bad = append(bad, fmt.Sprintf("%s: model wants vocabulary %q, definitions have %q", want.Name, want.Vocabulary, have.Vocabulary))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("%w (model schema %s, definitions %s %s):\n  %s",
		ErrIncompatible, shortHash(m.SchemaHash), s.source, shortHash(s.hash), strings.Join(bad, "\n  "))
}

// LayoutFor checks that the set satisfies a model and returns the layout of
// its input rows.
func (s *FeatureSet) LayoutFor(m ModelSchema) (*Layout, error) {
	if err := s.Satisfies(m); err != nil {
		return nil, err
	}
	return s.NewLayout(m.Names())
}

// shortHash abbreviates a schema hash for messages.
func shortHash(h string) string {
	if len(h) > len(SchemaHashPrefix)+12 {
		return h[:len(SchemaHashPrefix)+12]
	}
	return h
}
