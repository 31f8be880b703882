package features

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
)

// hashDoc is a small definitions file; the hash tests edit one line of it.
var hashDoc = []string{
	"version: 1",
	"features:",
	"  - name: item_ctr_7d",
	"    entity: item",
	"    type: float",
	"    lane: batch",
	"    default: 0.03",
	"    freshness_sla: 26h",
	"    owner: ranking",
	"    description: Smoothed CTR.",
	"  - name: user_device_share",
	"    entity: user",
	"    type: vector[2]",
	"    lane: batch",
	"    vocabulary: [mobile, tv]",
	"    default: [0, 0]",
	"    freshness_sla: 26h",
	"    owner: ranking",
	"    description: Device share.",
	"  - name: user_clicks_1h",
	"    entity: user",
	"    type: int",
	"    lane: nearline",
	"    default: 0",
	"    ttl: 2h",
	"    owner: realtime",
	"    description: Clicks in the last hour.",
	"  - name: req_local_hour",
	"    entity: request",
	"    type: int",
	"    lane: request",
	"    default: -1",
	"    owner: serving",
	"    description: Local hour.",
}

// hashDocCanonical is the canonical form of hashDoc as SchemaHash documents
// it: RequiredFeature JSON in (entity, name) order.
const hashDocCanonical = `[{"name":"user_clicks_1h","entity":"user","type":"int","default":"0"},` +
	`{"name":"user_device_share","entity":"user","type":"vector[2]","default":"[0,0]","vocabulary":["mobile","tv"]},` +
	`{"name":"item_ctr_7d","entity":"item","type":"float","default":"0.03"},` +
	`{"name":"req_local_hour","entity":"request","type":"int","default":"-1"}]`

// hashDocHash pins the hash of hashDoc: the canonical form must not change
// by accident, or every recorded model would be refused.
const hashDocHash = "fs1:692125e7b455af85efaf12a70d231d584576ad53ed182658848ea6a7eb5a305b"

func edit(lines []string, line int, text string) []string {
	out := slices.Clone(lines)
	out[line-1] = text
	return out
}

// reordered swaps the first two features of hashDoc.
func reordered() []string {
	out := slices.Clone(hashDoc[:2])
	out = append(out, hashDoc[10:19]...)
	out = append(out, hashDoc[2:10]...)
	return append(out, hashDoc[19:]...)
}

func TestSchemaHash(t *testing.T) {
	t.Parallel()
	base := mustParse(t, doc(hashDoc...)).SchemaHash()
	if !strings.HasPrefix(base, SchemaHashPrefix) || len(base) != len(SchemaHashPrefix)+64 {
		t.Fatalf("SchemaHash() = %q, want %s and 64 hex digits", base, SchemaHashPrefix)
	}
	tests := []struct {
		name    string
		lines   []string
		changes bool
	}{
		{"same file", hashDoc, false},
		{"features reordered", reordered(), false},
		{"description edited", edit(hashDoc, 10, "    description: Clicks over impressions, smoothed."), false},
		{"owner changed", edit(hashDoc, 9, "    owner: growth"), false},
		{"freshness SLA changed", edit(hashDoc, 8, "    freshness_sla: 48h"), false},
		{"ttl changed", edit(hashDoc, 25, "    ttl: 3h"), false},
		{"lane changed", edit(edit(hashDoc, 23, "    lane: batch"), 25, "    freshness_sla: 1h"), false},
		{"group set", edit(hashDoc, 8, "    freshness_sla: 26h\n    group: item_stats"), false},
		{"same default written differently", edit(hashDoc, 7, "    default: 3e-2"), false},
		{"type changed", edit(edit(hashDoc, 5, "    type: int"), 7, "    default: 0"), true},
		{"float default changed", edit(hashDoc, 7, "    default: 0.05"), true},
		{"int default changed", edit(hashDoc, 32, "    default: 0"), true},
		{"vector default changed", edit(hashDoc, 16, "    default: [0.5, 0.5]"), true},
		{"vocabulary changed", edit(hashDoc, 15, "    vocabulary: [tv, mobile]"), true},
		{"name changed", edit(hashDoc, 3, "  - name: item_ctr_week"), true},
		{"entity changed", edit(hashDoc, 4, "    entity: user"), true},
		{"feature removed", append(slices.Clone(hashDoc[:19]), hashDoc[27:]...), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := mustParse(t, doc(tt.lines...)).SchemaHash()
			if (got != base) != tt.changes {
				t.Errorf("SchemaHash() = %s, base %s; want a change: %v", got, base, tt.changes)
			}
		})
	}
}

func TestSchemaHashIsPinned(t *testing.T) {
	t.Parallel()
	sum := sha256.Sum256([]byte(hashDocCanonical))
	if h := SchemaHashPrefix + hex.EncodeToString(sum[:]); h != hashDocHash {
		t.Fatalf("sha256 of the documented canonical form = %s, pinned %s", h, hashDocHash)
	}
	if got := mustParse(t, doc(hashDoc...)).SchemaHash(); got != hashDocHash {
		t.Errorf("SchemaHash() = %s, pinned %s: the canonical form changed; that invalidates every recorded model, so it needs a new prefix (fs2:)", got, hashDocHash)
	}
}

func TestRequiredCanonicalDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		typ  Type
		v    Value
		want string
	}{
		{Type{Kind: KindFloat}, Value{Float: 0.03}, "0.03"},
		{Type{Kind: KindFloat}, Value{Float: -1}, "-1"},
		{Type{Kind: KindInt}, Value{Int: -9007199254740993}, "-9007199254740993"},
		{Type{Kind: KindVector, Dim: 3}, Value{Vector: []float32{0.1, 0, 2.5e10}}, "[0.1,0,2.5e+10]"},
		{Type{Kind: KindList}, Value{}, "[]"},
		{Type{Kind: KindList}, Value{List: []string{"a", `b"c`}}, `["a","b\"c"]`},
		{Type{Kind: KindMap}, Value{}, "{}"},
		{Type{Kind: KindMap}, Value{Map: map[string]float64{"z": 1, "a": 0.5}}, `{"a":0.5,"z":1}`},
	}
	for _, tt := range tests {
		if got := canonicalValue(tt.typ, tt.v); got != tt.want {
			t.Errorf("canonicalValue(%v, %+v) = %s, want %s", tt.typ, tt.v, got, tt.want)
		}
	}
}

func TestSatisfies(t *testing.T) {
	t.Parallel()
	trained := mustParse(t, doc(hashDoc...))
	model, err := trained.Schema([]string{"req_local_hour", "user_device_share", "item_ctr_7d"})
	if err != nil {
		t.Fatal(err)
	}
	// The schema travels as JSON next to the model.
	b, err := json.Marshal(model)
	if err != nil {
		t.Fatal(err)
	}
	var stored ModelSchema
	if err := json.Unmarshal(b, &stored); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(stored.Names(), []string{"req_local_hour", "user_device_share", "item_ctr_7d"}) || stored.SchemaHash != trained.SchemaHash() {
		t.Fatalf("schema after a JSON round trip = %+v", stored)
	}
	if !strings.Contains(string(b), `"type":"vector[2]","default":"[0,0]","vocabulary":["mobile","tv"]`) {
		t.Errorf("JSON schema %s does not record the vector's type, default and vocabulary", b)
	}

	added := append(slices.Clone(hashDoc),
		"  - name: item_clicks_7d", "    entity: item", "    type: int", "    lane: batch", "    default: 0",
		"    freshness_sla: 26h", "    owner: ranking", "    description: Clicks.")
	tests := []struct {
		name  string
		lines []string
		model func(m ModelSchema) ModelSchema
		want  []string // mismatch lines; none when satisfied
	}{
		{"same definitions", hashDoc, nil, nil},
		{"docs edited", edit(hashDoc, 10, "    description: Another text."), nil, nil},
		{"a feature added", added, nil, nil},
		{"a feature the model does not read changed", edit(hashDoc, 24, "    default: 5"), nil, nil},
		{"feature removed", hashDoc[:27],
			nil, []string{"req_local_hour: not defined"}},
		{"type changed", edit(edit(hashDoc, 5, "    type: int"), 7, "    default: 0"), nil,
			[]string{"item_ctr_7d: model wants type float, definitions have int"}},
		{"vector dimension changed", edit(edit(edit(hashDoc, 13, "    type: vector[3]"), 15, "    vocabulary: [mobile, tv, tablet]"), 16, "    default: [0, 0, 0]"), nil,
			[]string{"user_device_share: model wants type vector[2], definitions have vector[3]",
				`user_device_share: model wants vocabulary ["mobile" "tv"], definitions have ["mobile" "tv" "tablet"]`}},
		{"default changed", edit(hashDoc, 7, "    default: 0.05"), nil,
			[]string{"item_ctr_7d: model was trained with default 0.03, definitions have 0.05"}},
		{"vocabulary reordered", edit(hashDoc, 15, "    vocabulary: [tv, mobile]"), nil,
			[]string{`user_device_share: model wants vocabulary ["mobile" "tv"], definitions have ["tv" "mobile"]`}},
		{"entity changed", edit(hashDoc, 4, "    entity: user"), nil,
			[]string{"item_ctr_7d: model wants entity item, definitions have user"}},
		{"every mismatch at once", edit(edit(edit(hashDoc, 5, "    type: int"), 7, "    default: 0"), 32, "    default: 0"), nil,
			[]string{"item_ctr_7d: model wants type float, definitions have int",
				"req_local_hour: model was trained with default -1, definitions have 0"}},
		{"model without a hash", hashDoc, func(m ModelSchema) ModelSchema { m.SchemaHash = ""; return m },
			[]string{`schema hash "" is not a fs1: hash`}},
		{"model without features", hashDoc, func(m ModelSchema) ModelSchema { m.Features = nil; return m },
			[]string{"the model lists no input features"}},
		{"feature listed twice", hashDoc, func(m ModelSchema) ModelSchema {
			m.Features = append(slices.Clone(m.Features), m.Features[0])
			return m
		}, []string{"req_local_hour: listed twice"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			set := mustParse(t, doc(tt.lines...))
			m := stored
			if tt.model != nil {
				m = tt.model(m)
			}
			err := set.Satisfies(m)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Satisfies() = %v, want nil", err)
				}
				l, err := set.LayoutFor(m)
				if err != nil || !slices.Equal(l.Names(), m.Names()) {
					t.Fatalf("LayoutFor() = %v, %v; want a layout of %v", l, err, m.Names())
				}
				return
			}
			if !errors.Is(err, ErrIncompatible) {
				t.Fatalf("Satisfies() = %v, want ErrIncompatible", err)
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, "\n  "+w) {
					t.Errorf("Satisfies() error:\n%s\nwant a line %q", msg, w)
				}
			}
			if n := strings.Count(msg, "\n  "); n != len(tt.want) {
				t.Errorf("Satisfies() error lists %d mismatches, want %d:\n%s", n, len(tt.want), msg)
			}
			if _, err := set.LayoutFor(m); !errors.Is(err, ErrIncompatible) {
				t.Errorf("LayoutFor() = %v, want ErrIncompatible", err)
			}
		})
	}
}
