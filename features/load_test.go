package features

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// doc joins lines into a YAML document, so that line numbers in the tests
// can be read off the slice.
func doc(lines ...string) []byte { return []byte(strings.Join(lines, "\n") + "\n") }

// header is lines 1 and 2 of every test document; features start at line 3.
var header = []string{"version: 1", "features:"}

func feature(lines ...string) []string {
	out := slices.Clone(header)
	return append(out, lines...)
}

func mustParse(t *testing.T, data []byte) *FeatureSet {
	t.Helper()
	s, err := Parse("test.yaml", data)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return s
}

func problems(t *testing.T, data []byte) []string {
	t.Helper()
	_, err := Parse("test.yaml", data)
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Parse error = %v, want a *ValidationError", err)
	}
	out := make([]string, len(ve.Problems))
	for i, p := range ve.Problems {
		out[i] = p.String()
	}
	return out
}

func TestParseValid(t *testing.T) {
	t.Parallel()
	s := mustParse(t, doc(feature(
		"  - name: user_ctr_30d",
		"    entity: user",
		"    type: float",
		"    lane: batch",
		"    default: 0.03",
		"    freshness_sla: 26h",
		"    ttl: 7d",
		"    owner: ranking",
		"    description: Smoothed CTR.",
		"  - name: item_embedding",
		"    entity: item",
		"    type: vector[3]",
		"    lane: batch",
		"    group: item_embedding",
		"    default: [0.5, 0, -1]",
		"    freshness_sla: 48h",
		"    owner: trainer",
		"    description: Item tower output.",
		"  - name: item_clicks_1h",
		"    entity: item",
		"    type: int",
		"    lane: nearline",
		"    default: 0",
		"    ttl: 2h",
		"    owner: realtime",
		"    description: Clicks in the last hour.",
		"  - name: user_recent_items",
		"    entity: user",
		"    type: list",
		"    lane: nearline",
		"    default: []",
		"    ttl: 30m",
		"    owner: realtime",
		"    description: Recent items.",
		"  - name: user_creator_clicks",
		"    entity: user",
		"    type: map",
		"    lane: batch",
		"    default: {\"7\": 1.5}",
		"    freshness_sla: 26h",
		"    owner: ranking",
		"    description: Clicks by creator.",
		"  - name: req_device",
		"    entity: request",
		"    type: vector[2]",
		"    lane: request",
		"    vocabulary: [mobile, tv]",
		"    default: [0, 0]",
		"    owner: serving",
		"    description: One-hot device.",
	)...))
	// Canonical order: entity (user, item, user_item, request), then name.
	wantOrder := []string{"user_creator_clicks", "user_ctr_30d", "user_recent_items", "item_clicks_1h", "item_embedding", "req_device"}
	var got []string
	for i, f := range s.All() {
		if int(f.ID) != i {
			t.Errorf("%s: ID %d, want its position %d", f.Name, f.ID, i)
		}
		got = append(got, f.Name)
	}
	if !slices.Equal(got, wantOrder) {
		t.Fatalf("All() = %v, want %v", got, wantOrder)
	}
	tests := []struct {
		name  string
		check func(f *Feature) bool
	}{
		{"user_ctr_30d", func(f *Feature) bool {
			return f.Entity == EntityUser && f.Type == Type{Kind: KindFloat} && f.Lane == LaneBatch &&
				f.Default.Float == 0.03 && f.FreshnessSLA == 26*time.Hour && f.TTL == 7*24*time.Hour &&
				f.Group == "user_batch" && f.Owner == "ranking" && f.Description == "Smoothed CTR." && f.Line == 3
		}},
		{"item_embedding", func(f *Feature) bool {
			return f.Type == Type{Kind: KindVector, Dim: 3} && slices.Equal(f.Default.Vector, []float32{0.5, 0, -1}) &&
				f.Group == "item_embedding" && f.TTL == 0
		}},
		{"item_clicks_1h", func(f *Feature) bool {
			return f.Type.Kind == KindInt && f.Default.Int == 0 && f.TTL == 2*time.Hour && f.Group == "item_nearline"
		}},
		{"user_recent_items", func(f *Feature) bool {
			return f.Type.Kind == KindList && f.Default.List != nil && len(f.Default.List) == 0
		}},
		{"user_creator_clicks", func(f *Feature) bool { return f.Type.Kind == KindMap && f.Default.Map["7"] == 1.5 }},
		{"req_device", func(f *Feature) bool {
			return slices.Equal(f.Vocabulary, []string{"mobile", "tv"}) && f.Group == "request"
		}},
	}
	for _, tt := range tests {
		f, ok := s.Lookup(tt.name)
		if !ok {
			t.Errorf("Lookup(%q) found nothing", tt.name)
			continue
		}
		if byID, _ := s.ByID(f.ID); byID != f {
			t.Errorf("ByID(%d) is not %s", f.ID, tt.name)
		}
		if !tt.check(f) {
			t.Errorf("%s parsed as %+v", tt.name, *f)
		}
	}
	if _, ok := s.Lookup("nope"); ok {
		t.Error(`Lookup("nope") found a feature`)
	}
	if _, ok := s.ByID(ID(s.Len())); ok {
		t.Error("ByID(Len()) found a feature")
	}
	var groups []string
	for _, g := range s.Groups() {
		groups = append(groups, g.Name)
	}
	if want := []string{"user_batch", "user_nearline", "item_embedding", "item_nearline", "request"}; !slices.Equal(groups, want) {
		t.Errorf("Groups() = %v, want %v", groups, want)
	}
	var users []string
	for _, f := range s.Entity(EntityUser) {
		users = append(users, f.Name)
	}
	if want := []string{"user_creator_clicks", "user_ctr_30d", "user_recent_items"}; !slices.Equal(users, want) {
		t.Errorf("Entity(user) = %v, want %v", users, want)
	}
	if n := len(s.RankerInputs()); n != 4 {
		t.Errorf("RankerInputs() has %d features, want 4 (lists and maps excluded)", n)
	}
}

// TestParseReportsEveryProblem checks that one file with many mistakes gets
// all of them reported, each with its line and feature.
func TestParseReportsEveryProblem(t *testing.T) {
	t.Parallel()
	got := problems(t, doc(
		"version: 1", // 1
		"features:",  // 2
		"  - name: item_ctr",
		"    entity: item",
		"    type: float",
		"    lane: batch",
		"    default: \"0.03\"", // 7: string for a float
		"    freshness_sla: 26h",
		"    owner: ranking",
		"    description: CTR.",
		"  - name: Item-CTR",  // 11: bad name
		"    entity: product", // 12: unknown entity
		"    type: double",    // 13: unknown type
		"    lane: streaming", // 14: unknown lane
		"    default: 0",
		"    owner: ranking",
		"    description: x",
		"    colour: blue", // 18: unknown key
		"  - name: item_emb",
		"    entity: item",
		"    type: vector[3]",
		"    lane: batch",
		"    default: [0, 0]", // 23: wrong length
		"    freshness_sla: 2d",
		"    ttl: 1d", // 25: shorter than the SLA
		"    owner: trainer",
		"    description: Embedding.",
		"  - name: item_clicks_1h", // 28: nearline without ttl, no default
		"    entity: item",
		"    type: int",
		"    lane: nearline",
		"    owner: realtime",
		"    description: Clicks.",
		"  - name: item_age", // 34: batch without freshness_sla
		"    entity: item",
		"    type: int",
		"    lane: batch",
		"    default: 1.5", // 38: float for an int
		"    owner: catalogue",
		"    description: Age.",
		"  - name: req_local_hour",
		"    entity: request",
		"    type: int",
		"    lane: request",
		"    default: -1",
		"    ttl: 1h", // 46: ttl on a request feature
		"    owner: serving",
		"    description: Hour.",
		"  - name: item_ctr", // 49: repeated name
		"    entity: item",
		"    type: float",
		"    lane: batch",
		"    default: 0.03",
		"    freshness_sla: 26h",
		"    owner: ranking",
		"    description: CTR again.",
	))
	want := []string{
		`test.yaml:7: item_ctr: default: want a number, got "0.03" for a float`,
		`test.yaml:11: features[1]: name "Item-CTR" must match ^[a-z][a-z0-9_]*$`,
		`test.yaml:12: features[1]: entity: unknown entity "product" (want one of user, item, user_item, request)`,
		`test.yaml:13: features[1]: type: unknown type "double" (want float, int, vector[n], list or map)`,
		`test.yaml:14: features[1]: lane: unknown lane "streaming" (want one of batch, nearline, request)`,
		`test.yaml:18: features[1]: unknown key "colour" (known: name, entity, type, lane, group, default, vocabulary, ttl, freshness_sla, owner, description)`,
		`test.yaml:23: item_emb: default: 2 numbers for a vector[3], want 3`,
		`test.yaml:25: item_emb: ttl 1d is shorter than freshness_sla 2d: values would expire while their snapshot is still on time`,
		`test.yaml:28: item_clicks_1h: default: required`,
		`test.yaml:28: item_clicks_1h: ttl: required for nearline features (when a value stops counting)`,
		`test.yaml:34: item_age: freshness_sla: required for batch features (how old a snapshot may be)`,
		`test.yaml:38: item_age: default: want an integer, got number 1.5`,
		`test.yaml:46: req_local_hour: ttl: request features are computed per request and never stored, so a ttl means nothing`,
		`test.yaml:49: item_ctr: name repeated (first defined at line 3)`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestParseProblems(t *testing.T) {
	t.Parallel()
	// ok is a valid batch feature body after its name line (lines 4-10
	// when the name is on line 3).
	ok := []string{"    entity: item", "    type: float", "    lane: batch", "    default: 0",
		"    freshness_sla: 26h", "    owner: ranking", "    description: d."}
	with := func(name string, replace map[string]string, extra ...string) []byte {
		lines := feature("  - name: " + name)
		for _, l := range ok {
			key := strings.TrimSpace(strings.SplitN(l, ":", 2)[0])
			if r, found := replace[key]; found {
				if r == "" {
					continue
				}
				l = "    " + key + ": " + r
			}
			lines = append(lines, l)
		}
		return doc(append(lines, extra...)...)
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty file", []byte(""), "test.yaml: file is empty: want a mapping with version and features"},
		{"top level list", []byte("- a\n"), "test.yaml:1: top level must be a mapping with version and features, got a list"},
		{"no version", []byte("features: []\n"), "test.yaml:1: version: required (this loader reads version 1)"},
		{"wrong version", []byte("version: 2\nfeatures: []\n"), "test.yaml:1: version: this loader reads version 1, got integer 2"},
		{"unknown top key", []byte("version: 1\nfeatures: []\nextra: 1\n"), `test.yaml:3: unknown key "extra" (known: version, features)`},
		{"no features", []byte("version: 1\n"), "test.yaml:1: features: required"},
		{"features not a list", []byte("version: 1\nfeatures: {a: 1}\n"), "test.yaml:2: features: want a list of feature definitions, got a mapping"},
		{"feature not a mapping", doc(feature("  - item_ctr")...), "test.yaml:3: features[0]: want a mapping of name, entity, type, lane, default, ..., got \"item_ctr\""},
		{"missing name", doc(feature("  - entity: item", "    type: float", "    lane: batch", "    default: 0",
			"    freshness_sla: 26h", "    owner: o", "    description: d")...), "test.yaml:3: features[0]: name: required"},
		{"name not a string", doc(feature("  - name: 12")...), "test.yaml:3: features[0]: name: want a string, got integer 12"},
		{"name too long", with(strings.Repeat("a", 65), nil), `test.yaml:3: features[0]: name "` + strings.Repeat("a", 65) + `" is longer than 64 characters`},
		{"repeated key", with("item_x", nil, "    owner: again"), `test.yaml:11: item_x: key "owner" repeated (first at line 9)`},
		{"missing entity", with("item_x", map[string]string{"entity": ""}), "test.yaml:3: item_x: entity: required"},
		{"null type", with("item_x", map[string]string{"type": "null"}), "test.yaml:5: item_x: type: required"},
		{"vector dim 0", with("item_x", map[string]string{"type": "vector[0]"}), `test.yaml:5: item_x: type: vector dimension in "vector[0]" must be an integer in 1..4096`},
		{"vector dim not a number", with("item_x", map[string]string{"type": "vector[n]"}), `test.yaml:5: item_x: type: vector dimension in "vector[n]" must be`},
		{"vector dim with sign", with("item_x", map[string]string{"type": "vector[+3]"}), `test.yaml:5: item_x: type: vector dimension in "vector[+3]" must be`},
		{"string default for float", with("item_x", map[string]string{"default": "high"}), `test.yaml:7: item_x: default: want a number, got "high" for a float`},
		{"bool default for float", with("item_x", map[string]string{"default": "true"}), "test.yaml:7: item_x: default: want a number, got boolean true for a float"},
		{"NaN default", with("item_x", map[string]string{"default": ".nan"}), "test.yaml:7: item_x: default: .nan is not a finite 32-bit float for a float"},
		{"float32 overflow", with("item_x", map[string]string{"default": "1e39"}), "test.yaml:7: item_x: default: 1e39 is not a finite 32-bit float for a float"},
		{"null default", with("item_x", map[string]string{"default": "null"}), "test.yaml:7: item_x: default: required"},
		{"vector default not a list", with("item_x", map[string]string{"type": "vector[2]", "default": "0"}),
			"test.yaml:7: item_x: default: want a list of 2 numbers for a vector[2], got integer 0"},
		{"vector default with a string", with("item_x", map[string]string{"type": "vector[2]", "default": "[0, x]"}),
			`test.yaml:7: item_x: default: component 1: want a number, got "x"`},
		{"list default of numbers", with("item_x", map[string]string{"type": "list", "default": "[1]"}),
			"test.yaml:7: item_x: default: entry 0: want a string, got integer 1"},
		{"map default not a mapping", with("item_x", map[string]string{"type": "map", "default": "[]"}),
			"test.yaml:7: item_x: default: want a mapping of strings to numbers, got a list"},
		{"map default with a string value", with("item_x", map[string]string{"type": "map", "default": "{a: b}"}),
			`test.yaml:7: item_x: default: key "a": want a number, got "b"`},
		{"int default too large", with("item_x", map[string]string{"type": "int", "default": "99999999999999999999"}),
			"test.yaml:7: item_x: default: want an integer, got number 99999999999999999999"},
		{"bad duration", with("item_x", map[string]string{"freshness_sla": "a day"}),
			`test.yaml:8: item_x: freshness_sla: "a day" is not a duration: want a Go duration like 90s, 30m or 26h, or days like 7d`},
		{"negative duration", with("item_x", map[string]string{"freshness_sla": "-1h"}), `test.yaml:8: item_x: freshness_sla: "-1h" must be positive`},
		{"zero days", with("item_x", map[string]string{"freshness_sla": "0d"}), `test.yaml:8: item_x: freshness_sla: "0d" is not a duration: want a whole number of days in 1..3650`},
		{"duration not a string", with("item_x", map[string]string{"freshness_sla": "60"}), "test.yaml:8: item_x: freshness_sla: want a string, got integer 60"},
		{"empty owner", with("item_x", map[string]string{"owner": `" "`}), "test.yaml:9: item_x: owner: required"},
		{"missing description", with("item_x", map[string]string{"description": ""}), "test.yaml:3: item_x: description: required"},
		{"request lane on an item", with("item_x", map[string]string{"lane": "request", "freshness_sla": ""}),
			"test.yaml:6: item_x: lane request with entity item: request features and user_item cross features (and only they) use the request lane"},
		{"request entity in batch lane", with("req_x", map[string]string{"entity": "request"}),
			"test.yaml:6: req_x: lane batch with entity request: request features and user_item cross features (and only they) use the request lane"},
		{"vocabulary on a float", with("item_x", nil, "    vocabulary: [a]"),
			"test.yaml:11: item_x: vocabulary: only vector features name their components, this one is float"},
		{"vocabulary of the wrong size", with("item_x", map[string]string{"type": "vector[2]", "default": "[0, 0]"}, "    vocabulary: [a]"),
			"test.yaml:11: item_x: vocabulary: 1 name for a vector[2], want 2"},
		{"vocabulary repeats", with("item_x", map[string]string{"type": "vector[2]", "default": "[0, 0]"}, "    vocabulary: [a, a]"),
			`test.yaml:11: item_x: vocabulary: "a" repeated`},
		{"bad group name", with("item_x", nil, "    group: Item"), `test.yaml:11: item_x: group "Item" must match ^[a-z][a-z0-9_]*$`},
		{"unknown request feature", doc(feature("  - name: req_weather", "    entity: request", "    type: float",
			"    lane: request", "    default: 0", "    owner: o", "    description: d")...),
			"test.yaml:3: req_weather: the request lane has no computation for req_weather (it computes req_day_of_week, "},
		{"request feature with the wrong type", doc(feature("  - name: req_local_hour", "    entity: request", "    type: float",
			"    lane: request", "    default: 0", "    owner: o", "    description: d")...),
			"test.yaml:3: req_local_hour: the request lane computes req_local_hour as int, not float"},
		{"one-hot without vocabulary", doc(feature("  - name: req_device", "    entity: request", "    type: vector[1]",
			"    lane: request", "    default: [0]", "    owner: o", "    description: d")...),
			"test.yaml:3: req_device: vocabulary: required: req_device is one-hot, each component names a value"},
		{"device vocabulary with an unknown device", doc(feature("  - name: req_device", "    entity: request", "    type: vector[1]",
			"    lane: request", "    vocabulary: [phone]", "    default: [0]", "    owner: o", "    description: d")...),
			`test.yaml:3: req_device: vocabulary entry "phone" is not a device (known: mobile, desktop, tablet, tv)`},
		{"request feature with a group", doc(feature("  - name: req_local_hour", "    entity: request", "    type: int",
			"    lane: request", "    group: g", "    default: 0", "    owner: o", "    description: d")...),
			"test.yaml:7: req_local_hour: group: request features are never stored, so they have no storage group"},
		{"request feature with a freshness SLA", doc(feature("  - name: req_local_hour", "    entity: request", "    type: int",
			"    lane: request", "    freshness_sla: 1m", "    default: 0", "    owner: o", "    description: d")...),
			"test.yaml:7: req_local_hour: freshness_sla: request features are computed per request and never stored, so a freshness SLA means nothing"},
		{"user state feature of the wrong type", doc(feature("  - name: user_session_start_ms", "    entity: user", "    type: float",
			"    lane: nearline", "    default: 0", "    ttl: 30m", "    owner: o", "    description: d")...),
			"test.yaml:3: user_session_start_ms: the request lane reads user_session_start_ms as the user's nearline state: it must be a user int feature, not user float"},
		{"group mixing lanes", doc(feature("  - name: item_a", "    entity: item", "    type: float", "    lane: batch",
			"    group: item_stats", "    default: 0", "    freshness_sla: 26h", "    owner: o", "    description: d",
			"  - name: item_b", "    entity: item", "    type: float", "    lane: nearline", "    group: item_stats",
			"    default: 0", "    ttl: 1h", "    owner: o", "    description: d")...),
			"test.yaml:12: item_b: group item_stats: this feature is item/nearline but the group's first feature item_a (line 3) is item/batch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := problems(t, tt.data)
			for _, p := range got {
				if strings.HasPrefix(p, tt.want) {
					return
				}
			}
			t.Errorf("problems:\n  %s\nwant one starting with:\n  %s", strings.Join(got, "\n  "), tt.want)
		})
	}
}

func TestParseYAMLSyntaxError(t *testing.T) {
	t.Parallel()
	_, err := Parse("test.yaml", []byte("version: 1\nfeatures: [\n"))
	var ve *ValidationError
	if err == nil || errors.As(err, &ve) || !strings.HasPrefix(err.Error(), "test.yaml: yaml: line") {
		t.Fatalf("Parse(bad YAML) = %v, want the YAML error with its line", err)
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "features.yaml")
	if err := os.WriteFile(path, doc(header[0], "features: []"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Load(path)
	if err != nil || s.Len() != 0 || s.Source() != path {
		t.Fatalf("Load(%s) = %v, %v; want an empty set from that source", path, s, err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "read feature definitions") {
		t.Fatalf("Load(missing) = %v, want a read error", err)
	}
}

func TestParseType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in    string
		want  Type
		width int
		err   bool
	}{
		{"float", Type{Kind: KindFloat}, 1, false},
		{"int", Type{Kind: KindInt}, 1, false},
		{"vector[16]", Type{Kind: KindVector, Dim: 16}, 16, false},
		{"vector[4096]", Type{Kind: KindVector, Dim: 4096}, 4096, false},
		{"list", Type{Kind: KindList}, 0, false},
		{"map", Type{Kind: KindMap}, 0, false},
		{"vector[4097]", Type{}, 0, true},
		{"vector[016]", Type{}, 0, true},
		{"vector16", Type{}, 0, true},
		{"Float", Type{}, 0, true},
	}
	for _, tt := range tests {
		got, err := ParseType(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseType(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.err)
			continue
		}
		if err == nil && (got.String() != tt.in || got.Width() != tt.width) {
			t.Errorf("ParseType(%q) = %v of width %d; want it to print back and width %d", tt.in, got, got.Width(), tt.width)
		}
	}
}

func TestParseDuration(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"90s", 90 * time.Second},
		{"26h", 26 * time.Hour},
		{"7d", 7 * 24 * time.Hour},
		{"1d", 24 * time.Hour},
		{"1.5d", 0},
		{"d", 0},
		{"0s", 0},
		{"3651d", 0},
	}
	for _, tt := range tests {
		got, err := parseDuration(tt.in)
		if tt.want == 0 {
			if err == nil {
				t.Errorf("parseDuration(%q) = %v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if s := fmtDuration(got); tt.in[len(tt.in)-1] == 'd' && s != tt.in {
			t.Errorf("fmtDuration(%v) = %q, want %q", got, s, tt.in)
		}
	}
}
