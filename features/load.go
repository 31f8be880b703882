package features

import (
	"cmp"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// FileVersion is the version of the definitions file format Parse reads.
const FileVersion = 1

// Problem is one thing wrong with a definitions file.
type Problem struct {
	// File is the file (or label) given to Parse.
	File string
	// Line is the 1-based line of the offending YAML node; 0 when unknown.
	Line int
	// Feature names the feature concerned: its name, "features[i]" when
	// the name itself is missing or invalid, or "" for file-level problems.
	Feature string
	// Message says what is wrong, naming the key.
	Message string
}

// String formats the problem as "file:line: feature: message".
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		b.WriteString(":")
		b.WriteString(strconv.Itoa(p.Line))
	}
	b.WriteString(": ")
	if p.Feature != "" {
		b.WriteString(p.Feature)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// ValidationError reports every problem found in a definitions file.
type ValidationError struct {
	// File is the file (or label) given to Parse.
	File string
	// Problems are ordered by line.
	Problems []Problem
}

// Error lists every problem, one per line.
func (e *ValidationError) Error() string {
	var b strings.Builder
	n := len(e.Problems)
	fmt.Fprintf(&b, "%s: %d problem%s in feature definitions:", e.File, n, plural(n))
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Load reads and validates a definitions file.
func Load(path string) (*FeatureSet, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read feature definitions: %w", err)
	}
	return Parse(path, data)
}

// Parse validates definitions read from source (a file name used in
// messages). A YAML syntax error is returned as is; otherwise every problem
// found is reported at once in a *ValidationError.
func Parse(source string, data []byte) (*FeatureSet, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	p := &parser{file: source}
	feats := p.document(&doc)
	p.checkSet(feats)
	if len(p.problems) > 0 {
		slices.SortStableFunc(p.problems, func(a, b Problem) int { return cmp.Compare(a.Line, b.Line) })
		return nil, &ValidationError{File: source, Problems: p.problems}
	}
	return build(source, feats), nil
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// maxNameLen bounds names so they fit log lines and store keys.
const maxNameLen = 64

type parser struct {
	file     string
	problems []Problem
}

func (p *parser) add(line int, feature, format string, args ...any) {
	p.problems = append(p.problems, Problem{File: p.file, Line: line, Feature: feature, Message: fmt.Sprintf(format, args...)})
}

// parsed is a feature read from the file with what is known to be valid.
type parsed struct {
	f        Feature
	label    string // name, or features[i]
	valid    bool   // no problem in this feature's own fields
	nameOK   bool
	typeOK   bool
	entityOK bool
	laneOK   bool
	groupSet bool
}

func (p *parser) document(doc *yaml.Node) []*parsed {
	if doc.Kind == 0 || len(doc.Content) == 0 {
		p.add(0, "", "file is empty: want a mapping with version and features")
		return nil
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		p.add(root.Line, "", "top level must be a mapping with version and features, got %s", describe(root))
		return nil
	}
	var version, list *yaml.Node
	p.pairs(root, "", func(key string, k, v *yaml.Node) {
		switch key {
		case "version":
			version = v
		case "features":
			list = v
		default:
			p.add(k.Line, "", "unknown key %q (known: version, features)", key)
		}
	})
	switch {
	case version == nil:
		p.add(root.Line, "", "version: required (this loader reads version %d)", FileVersion)
	case version.Tag != "!!int" || version.Value != strconv.Itoa(FileVersion):
		p.add(version.Line, "", "version: this loader reads version %d, got %s", FileVersion, describe(version))
	}
	if list == nil {
		p.add(root.Line, "", "features: required")
		return nil
	}
	if list.Kind != yaml.SequenceNode {
		p.add(list.Line, "", "features: want a list of feature definitions, got %s", describe(list))
		return nil
	}
	if len(list.Content) >= MaxFeatures {
		p.add(list.Line, "", "features: %d definitions, at most %d are supported", len(list.Content), MaxFeatures-1)
	}
	out := make([]*parsed, 0, len(list.Content))
	for i, n := range list.Content {
		out = append(out, p.feature(i, n))
	}
	return out
}

// pairs calls fn for each key of a mapping, reporting duplicate and
// non-string keys.
func (p *parser) pairs(m *yaml.Node, feature string, fn func(key string, k, v *yaml.Node)) {
	seen := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Tag != "!!str" {
			p.add(k.Line, feature, "keys must be strings, got %s", describe(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			p.add(k.Line, feature, "key %q repeated (first at line %d)", k.Value, first)
			continue
		}
		seen[k.Value] = k.Line
		fn(k.Value, k, v)
	}
}

var featureKeys = []string{"name", "entity", "type", "lane", "group", "default", "vocabulary",
	"ttl", "freshness_sla", "owner", "description"}

func (p *parser) feature(i int, n *yaml.Node) *parsed {
	pf := &parsed{label: fmt.Sprintf("features[%d]", i), valid: true}
	pf.f.Line = n.Line
	if n.Kind != yaml.MappingNode {
		p.add(n.Line, pf.label, "want a mapping of name, entity, type, lane, default, ..., got %s", describe(n))
		pf.valid = false
		return pf
	}
	before := len(p.problems)
	vals := map[string]*yaml.Node{}
	keyLine := map[string]int{}
	// The name comes first so that every other message can carry it.
	for j := 0; j+1 < len(n.Content); j += 2 {
		if k := n.Content[j]; k.Value == "name" && k.Tag == "!!str" {
			v := n.Content[j+1]
			name, ok := p.str(v, pf.label, "name")
			if ok {
				switch {
				case !nameRE.MatchString(name):
					p.add(v.Line, pf.label, "name %q must match %s", name, nameRE)
				case len(name) > maxNameLen:
					p.add(v.Line, pf.label, "name %q is longer than %d characters", name, maxNameLen)
				default:
					pf.f.Name, pf.label, pf.nameOK = name, name, true
				}
			}
			break
		}
	}
	p.pairs(n, pf.label, func(key string, k, v *yaml.Node) {
		if !slices.Contains(featureKeys, key) {
			p.add(k.Line, pf.label, "unknown key %q (known: %s)", key, strings.Join(featureKeys, ", "))
			return
		}
		vals[key], keyLine[key] = v, k.Line
	})
	if _, ok := vals["name"]; !ok {
		p.add(n.Line, pf.label, "name: required")
	}
	f := &pf.f
	required := func(key string) *yaml.Node {
		v := vals[key]
		if v == nil || v.Tag == "!!null" {
			line := n.Line
			if v != nil {
				line = v.Line
			}
			p.add(line, pf.label, "%s: required", key)
			return nil
		}
		return v
	}
	optional := func(key string) *yaml.Node {
		if v := vals[key]; v != nil && v.Tag != "!!null" {
			return v
		}
		return nil
	}
	if v := required("entity"); v != nil {
		if s, ok := p.str(v, pf.label, "entity"); ok {
			e, err := ParseEntity(s)
			if err != nil {
				p.add(v.Line, pf.label, "entity: %v", err)
			} else {
				f.Entity, pf.entityOK = e, true
			}
		}
	}
	if v := required("type"); v != nil {
		if s, ok := p.str(v, pf.label, "type"); ok {
			t, err := ParseType(s)
			if err != nil {
				p.add(v.Line, pf.label, "type: %v", err)
			} else {
				f.Type, pf.typeOK = t, true
			}
		}
	}
	if v := required("lane"); v != nil {
		if s, ok := p.str(v, pf.label, "lane"); ok {
			l, err := ParseLane(s)
			if err != nil {
				p.add(v.Line, pf.label, "lane: %v", err)
			} else {
				f.Lane, pf.laneOK = l, true
			}
		}
	}
	if v := optional("group"); v != nil {
		if s, ok := p.str(v, pf.label, "group"); ok {
			if !nameRE.MatchString(s) {
				p.add(v.Line, pf.label, "group %q must match %s", s, nameRE)
			} else {
				f.Group, pf.groupSet = s, true
			}
		}
	}
	if v := optional("vocabulary"); v != nil {
		f.Vocabulary = p.vocabulary(v, pf)
	}
	if v := required("default"); v != nil && pf.typeOK {
		if d, ok := p.value(v, f.Type, pf.label); ok {
			f.Default = d
		}
	}
	ttlNode, slaNode := optional("ttl"), optional("freshness_sla")
	if ttlNode != nil {
		f.TTL = p.duration(ttlNode, pf.label, "ttl")
	}
	if slaNode != nil {
		f.FreshnessSLA = p.duration(slaNode, pf.label, "freshness_sla")
	}
	if v := required("owner"); v != nil {
		if s, ok := p.str(v, pf.label, "owner"); ok {
			if strings.TrimSpace(s) == "" {
				p.add(v.Line, pf.label, "owner: required")
			}
			f.Owner = strings.TrimSpace(s)
		}
	}
	if v := required("description"); v != nil {
		if s, ok := p.str(v, pf.label, "description"); ok {
			if strings.TrimSpace(s) == "" {
				p.add(v.Line, pf.label, "description: required")
			}
			f.Description = strings.TrimSpace(s)
		}
	}

	// Rules across fields.
	if pf.entityOK && pf.laneOK && (f.Entity == EntityRequest && f.Lane != LaneRequest || f.Lane == LaneRequest && f.Entity != EntityRequest && f.Entity != EntityUserItem) {
		p.add(keyLine["lane"], pf.label, "lane %s with entity %s: request features and user_item cross features (and only they) use the request lane", f.Lane, f.Entity)
	}
	if pf.laneOK {
		switch f.Lane {
		case LaneBatch:
			if slaNode == nil {
				p.add(n.Line, pf.label, "freshness_sla: required for batch features (how old a snapshot may be)")
			}
		case LaneNearline:
			if ttlNode == nil {
				p.add(n.Line, pf.label, "ttl: required for nearline features (when a value stops counting)")
			}
		case LaneRequest:
			if ttlNode != nil {
				p.add(ttlNode.Line, pf.label, "ttl: request features are computed per request and never stored, so a ttl means nothing")
			}
			if slaNode != nil {
				p.add(slaNode.Line, pf.label, "freshness_sla: request features are computed per request and never stored, so a freshness SLA means nothing")
			}
			if pf.groupSet {
				p.add(keyLine["group"], pf.label, "group: request features are never stored, so they have no storage group")
			}
		}
	}
	if f.TTL > 0 && f.FreshnessSLA > 0 && f.TTL < f.FreshnessSLA {
		p.add(ttlNode.Line, pf.label, "ttl %s is shorter than freshness_sla %s: values would expire while their snapshot is still on time",
			fmtDuration(f.TTL), fmtDuration(f.FreshnessSLA))
	}
	if v := vals["vocabulary"]; v != nil && f.Vocabulary != nil && pf.typeOK {
		if f.Type.Kind != KindVector {
			p.add(v.Line, pf.label, "vocabulary: only vector features name their components, this one is %s", f.Type)
		} else if len(f.Vocabulary) != f.Type.Dim {
			p.add(v.Line, pf.label, "vocabulary: %d name%s for a %s, want %d", len(f.Vocabulary), plural(len(f.Vocabulary)), f.Type, f.Type.Dim)
		}
	}
	pf.valid = len(p.problems) == before
	return pf
}

func (p *parser) str(v *yaml.Node, feature, key string) (string, bool) {
	if v.Kind != yaml.ScalarNode || v.Tag != "!!str" {
		p.add(v.Line, feature, "%s: want a string, got %s", key, describe(v))
		return "", false
	}
	return v.Value, true
}

func (p *parser) vocabulary(v *yaml.Node, pf *parsed) []string {
	if v.Kind != yaml.SequenceNode {
		p.add(v.Line, pf.label, "vocabulary: want a list of component names, got %s", describe(v))
		return nil
	}
	out := make([]string, 0, len(v.Content))
	seen := map[string]bool{}
	for _, e := range v.Content {
		s, ok := p.str(e, pf.label, "vocabulary entry")
		if !ok {
			return nil
		}
		switch {
		case s == "":
			p.add(e.Line, pf.label, "vocabulary: empty entry")
		case seen[s]:
			p.add(e.Line, pf.label, "vocabulary: %q repeated", s)
		}
		seen[s] = true
		out = append(out, s)
	}
	return out
}

// value decodes a default of type t.
func (p *parser) value(v *yaml.Node, t Type, feature string) (Value, bool) {
	bad := func(format string, args ...any) (Value, bool) {
		p.add(v.Line, feature, "default: "+format, args...)
		return Value{}, false
	}
	switch t.Kind {
	case KindFloat:
		f, msg := number(v)
		if msg != "" {
			return bad("%s for a float", msg)
		}
		return Value{Float: float32(f)}, true
	case KindInt:
		if v.Kind != yaml.ScalarNode || v.Tag != "!!int" {
			return bad("want an integer, got %s", describe(v))
		}
		var i int64
		if err := v.Decode(&i); err != nil {
			return bad("%q is not a 64-bit integer", v.Value)
		}
		return Value{Int: i}, true
	case KindVector:
		if v.Kind != yaml.SequenceNode {
			return bad("want a list of %d numbers for a %s, got %s", t.Dim, t, describe(v))
		}
		if len(v.Content) != t.Dim {
			return bad("%d number%s for a %s, want %d", len(v.Content), plural(len(v.Content)), t, t.Dim)
		}
		vec := make([]float32, t.Dim)
		for i, e := range v.Content {
			f, msg := number(e)
			if msg != "" {
				return bad("component %d: %s", i, msg)
			}
			vec[i] = float32(f)
		}
		return Value{Vector: vec}, true
	case KindList:
		if v.Kind != yaml.SequenceNode {
			return bad("want a list of strings, got %s", describe(v))
		}
		list := make([]string, 0, len(v.Content))
		for i, e := range v.Content {
			if e.Kind != yaml.ScalarNode || e.Tag != "!!str" {
				return bad("entry %d: want a string, got %s", i, describe(e))
			}
			list = append(list, e.Value)
		}
		return Value{List: list}, true
	case KindMap:
		if v.Kind != yaml.MappingNode {
			return bad("want a mapping of strings to numbers, got %s", describe(v))
		}
		m := make(map[string]float64, len(v.Content)/2)
		for i := 0; i+1 < len(v.Content); i += 2 {
			k, e := v.Content[i], v.Content[i+1]
			if k.Kind != yaml.ScalarNode || k.Tag != "!!str" {
				return bad("keys must be strings, got %s", describe(k))
			}
			if _, dup := m[k.Value]; dup {
				return bad("key %q repeated", k.Value)
			}
			f, msg := number(e)
			if msg != "" {
				return bad("key %q: %s", k.Value, msg)
			}
			m[k.Value] = f
		}
		return Value{Map: m}, true
	}
	return bad("unsupported type %s", t)
}

// number decodes a finite number that fits a float32, or says why not.
func number(v *yaml.Node) (float64, string) {
	if v.Kind != yaml.ScalarNode || (v.Tag != "!!int" && v.Tag != "!!float") {
		return 0, "want a number, got " + describe(v)
	}
	var f float64
	if err := v.Decode(&f); err != nil {
		return 0, fmt.Sprintf("%q is not a number", v.Value)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > math.MaxFloat32 {
		return 0, fmt.Sprintf("%s is not a finite 32-bit float", v.Value)
	}
	return f, ""
}

// duration parses a positive Go duration ("90s", "30m", "26h") or a whole
// number of days ("7d").
func (p *parser) duration(v *yaml.Node, feature, key string) time.Duration {
	s, ok := p.str(v, feature, key)
	if !ok {
		return 0
	}
	d, err := parseDuration(s)
	if err != nil {
		p.add(v.Line, feature, "%s: %v", key, err)
		return 0
	}
	return d
}

func parseDuration(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > 3650 {
			return 0, fmt.Errorf("%q is not a duration: want a whole number of days in 1..3650 like 7d, or a Go duration like 30m or 26h", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: want a Go duration like 90s, 30m or 26h, or days like 7d", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q must be positive", s)
	}
	return d, nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// fmtDuration writes whole days as "7d" and anything else as Go does.
func fmtDuration(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}

// describe names a YAML node's kind for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!str":
			return strconv.Quote(n.Value)
		case "!!null":
			return "null"
		case "!!bool":
			return "boolean " + n.Value
		case "!!int":
			return "integer " + n.Value
		case "!!float":
			return "number " + n.Value
		}
		return n.Tag + " " + n.Value
	}
	return "an empty document"
}

// checkSet reports problems between features: repeated names, groups that
// mix entities or lanes, request features the request lane cannot compute,
// user state features of the wrong type.
func (p *parser) checkSet(feats []*parsed) {
	names := map[string]*parsed{}
	groups := map[string]*parsed{}
	for _, pf := range feats {
		f := &pf.f
		if pf.nameOK {
			if first, dup := names[f.Name]; dup {
				p.add(f.Line, f.Name, "name repeated (first defined at line %d)", first.f.Line)
				pf.valid = false
				continue
			}
			names[f.Name] = pf
		}
		if !pf.valid {
			continue
		}
		if f.Group == "" {
			f.Group = defaultGroup(f.Entity, f.Lane)
		}
		if first, ok := groups[f.Group]; !ok {
			groups[f.Group] = pf
		} else if first.f.Entity != f.Entity || first.f.Lane != f.Lane {
			p.add(f.Line, f.Name, "group %s: this feature is %s/%s but the group's first feature %s (line %d) is %s/%s; a group is stored and read together, so it has one entity and one lane",
				f.Group, f.Entity, f.Lane, first.f.Name, first.f.Line, first.f.Entity, first.f.Lane)
		}
		switch {
		case f.Lane == LaneRequest && f.Entity == EntityUserItem:
			if msg := checkCrossFeature(f); msg != "" {
				p.add(f.Line, f.Name, "%s", msg)
			}
		case f.Lane == LaneRequest:
			if msg := checkRequestFeature(f); msg != "" {
				p.add(f.Line, f.Name, "%s", msg)
			}
		}
		if msg := checkUserStateFeature(f); msg != "" {
			p.add(f.Line, f.Name, "%s", msg)
		}
	}
	byName := make(map[string]*Feature, len(names))
	for name, pf := range names {
		if pf.valid {
			byName[name] = &pf.f
		}
	}
	for _, pf := range feats {
		if f := &pf.f; pf.valid && f.Entity == EntityUserItem && f.Lane == LaneRequest {
			if msg := checkCrossInputs(f, byName); msg != "" {
				p.add(f.Line, f.Name, "%s", msg)
			}
		}
	}
}

// defaultGroup is "<entity>_<lane>", or "request" for request features.
func defaultGroup(e Entity, l Lane) string {
	if l == LaneRequest && e == EntityRequest {
		return "request"
	}
	return e.String() + "_" + l.String()
}

// build assigns ids and storage slots to valid features.
func build(source string, feats []*parsed) *FeatureSet {
	s := &FeatureSet{source: source, byName: make(map[string]*Feature, len(feats))}
	for _, pf := range feats {
		f := pf.f
		s.features = append(s.features, &f)
	}
	slices.SortFunc(s.features, func(a, b *Feature) int {
		if c := cmp.Compare(a.Entity, b.Entity); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	byGroup := map[string]int{}
	for i, f := range s.features {
		f.ID = ID(i)
		s.byName[f.Name] = f
		e := f.Entity
		f.index = len(s.byEntity[e])
		s.byEntity[e] = append(s.byEntity[e], f)
		switch f.Type.Kind {
		case KindFloat, KindVector:
			f.slot = s.nums[e]
			s.nums[e] += f.Type.Width()
		case KindInt:
			f.slot = s.ints[e]
			s.ints[e]++
		case KindList:
			f.slot = s.lists[e]
			s.lists[e]++
		case KindMap:
			f.slot = s.maps[e]
			s.maps[e]++
		}
		f.defaultRow = rowValue(f.Type, f.Default)
		switch {
		case f.IsCross():
			f.crossOp = crossLane[f.Name].op
			s.cross = append(s.cross, f)
		case f.Lane == LaneRequest:
			f.requestOp = requestLane[f.Name].op
		}
		gi, ok := byGroup[f.Group]
		if !ok {
			gi = len(s.groups)
			byGroup[f.Group] = gi
			s.groups = append(s.groups, Group{Name: f.Group, Entity: f.Entity, Lane: f.Lane})
		}
		s.groups[gi].Features = append(s.groups[gi].Features, f)
	}
	slices.SortFunc(s.groups, func(a, b Group) int {
		if c := cmp.Compare(a.Entity, b.Entity); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	s.hash = schemaHash(s.features)
	input := func(in crossInput) *Feature {
		if f := s.byName[in.name]; f != nil && f.Entity == in.entity && f.Type.Kind == in.kind {
			return f
		}
		return nil
	}
	s.crossAffinity, s.crossCategory, s.crossSession = input(inAffinity), input(inCategory), input(inSession)
	return s
}

// rowValue is a value as ranker input; nil for lists and maps.
func rowValue(t Type, v Value) []float32 {
	switch t.Kind {
	case KindFloat:
		return []float32{v.Float}
	case KindInt:
		return []float32{float32(v.Int)}
	case KindVector:
		return slices.Clone(v.Vector)
	}
	return nil
}
