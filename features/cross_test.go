package features

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// crossInputs are valid definitions of the features the cross features
// read, one per line (lines 3-5 of a document built by crossDoc).
var crossInputs = []string{
	`  - {name: user_category_affinity, entity: user, type: "vector[4]", lane: batch, default: [0, 0, 0, 0], freshness_sla: 26h, owner: o, description: d}`,
	`  - {name: item_category_id, entity: item, type: int, lane: batch, default: -1, freshness_sla: 26h, owner: o, description: d}`,
	`  - {name: user_session_recent_items, entity: user, type: list, lane: nearline, default: [], ttl: 30m, owner: o, description: d}`,
}

// crossDef is a one-line cross feature definition.
func crossDef(name, typ, def string, extra ...string) string {
	s := "  - {name: " + name + ", entity: user_item, type: " + typ + ", lane: request, default: " + def + ", owner: o, description: d"
	for _, e := range extra {
		s += ", " + e
	}
	return s + "}"
}

// crossDoc is a definitions document: the inputs (lines 3-5) with replace
// applied (by input name; "" drops the input), then lines from line 6 on
// (fewer when inputs are dropped).
func crossDoc(replace map[string]string, lines ...string) []byte {
	out := slices.Clone(header)
	for _, in := range crossInputs {
		name := strings.TrimSuffix(strings.Fields(in)[2], ",")
		if r, ok := replace[name]; ok {
			if r != "" {
				out = append(out, r)
			}
			continue
		}
		out = append(out, in)
	}
	return doc(append(out, lines...)...)
}

func TestParseCrossFeatures(t *testing.T) {
	t.Parallel()
	s := mustParse(t, crossDoc(nil,
		crossDef("ui_session_category_share", "float", "0"),
		crossDef("ui_category_affinity", "float", "0.5"),
		// A stored user×item feature is no cross feature.
		"  - {name: ui_clicked_30d, entity: user_item, type: int, lane: batch, default: 0, freshness_sla: 26h, owner: o, description: d}",
	))
	var names []string
	for _, f := range s.CrossFeatures() {
		names = append(names, f.Name)
		if !f.IsCross() || f.Group != "user_item_request" || f.Lane != LaneRequest || f.Entity != EntityUserItem {
			t.Errorf("%s: IsCross %v, group %q, %s/%s; want a cross feature of group user_item_request", f.Name, f.IsCross(), f.Group, f.Entity, f.Lane)
		}
	}
	if want := []string{"ui_category_affinity", "ui_session_category_share"}; !slices.Equal(names, want) {
		t.Errorf("CrossFeatures() = %v, want %v (canonical order)", names, want)
	}
	if f, _ := s.Lookup("ui_clicked_30d"); f.IsCross() {
		t.Error("ui_clicked_30d (user_item batch) reports IsCross")
	}
	if f, _ := s.Lookup("user_category_affinity"); f.IsCross() {
		t.Error("user_category_affinity reports IsCross")
	}
	if !s.NeedsSession() {
		t.Error("NeedsSession() = false with ui_session_category_share defined")
	}
	if got := CrossFeatureNames(); !slices.Equal(got, []string{"ui_category_affinity", "ui_session_category_share"}) {
		t.Errorf("CrossFeatureNames() = %v", got)
	}
	groups := map[string]int{}
	for _, g := range s.Groups() {
		groups[g.Name] = len(g.Features)
		if g.Name == "user_item_request" && (g.Entity != EntityUserItem || g.Lane != LaneRequest) {
			t.Errorf("group user_item_request is %s/%s", g.Entity, g.Lane)
		}
	}
	if groups["user_item_request"] != 2 {
		t.Errorf("groups %v: want both cross features in user_item_request", groups)
	}

	// Only the affinity: no session needed, and its inputs suffice.
	s = mustParse(t, crossDoc(map[string]string{"user_session_recent_items": ""}, crossDef("ui_category_affinity", "float", "0")))
	if s.NeedsSession() || len(s.CrossFeatures()) != 1 {
		t.Errorf("affinity only: NeedsSession %v, %d cross features; want false, 1", s.NeedsSession(), len(s.CrossFeatures()))
	}
	// No cross feature at all.
	s = mustParse(t, crossDoc(nil))
	if s.NeedsSession() || len(s.CrossFeatures()) != 0 {
		t.Errorf("no cross features: NeedsSession %v, %d cross features", s.NeedsSession(), len(s.CrossFeatures()))
	}
}

func TestParseCrossProblems(t *testing.T) {
	t.Parallel()
	const lane = "request features and user_item cross features (and only they) use the request lane"
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"unknown cross feature", crossDoc(nil, crossDef("ui_weather_match", "float", "0")),
			"test.yaml:6: ui_weather_match: the request lane has no user_item computation for ui_weather_match (it computes ui_category_affinity, ui_session_category_share)"},
		{"int cross feature", crossDoc(nil, crossDef("ui_category_affinity", "int", "0")),
			"test.yaml:6: ui_category_affinity: the request lane computes ui_category_affinity as float, not int"},
		{"vector cross feature", crossDoc(nil, crossDef("ui_session_category_share", `"vector[2]"`, "[0, 0]")),
			"test.yaml:6: ui_session_category_share: the request lane computes ui_session_category_share as float, not vector[2]"},
		{"affinity missing", crossDoc(map[string]string{"user_category_affinity": ""}, crossDef("ui_category_affinity", "float", "0")),
			"test.yaml:5: ui_category_affinity: ui_category_affinity is computed from its inputs: user_category_affinity (a user vector) is not defined"},
		{"category missing", crossDoc(map[string]string{"item_category_id": ""}, crossDef("ui_session_category_share", "float", "0")),
			"test.yaml:5: ui_session_category_share: ui_session_category_share is computed from its inputs: item_category_id (an item int) is not defined"},
		{"session list missing", crossDoc(map[string]string{"user_session_recent_items": ""}, crossDef("ui_session_category_share", "float", "0")),
			"test.yaml:5: ui_session_category_share: ui_session_category_share is computed from its inputs: user_session_recent_items (a user list) is not defined"},
		{"category of the wrong kind", crossDoc(map[string]string{
			"item_category_id": `  - {name: item_category_id, entity: item, type: float, lane: batch, default: -1, freshness_sla: 26h, owner: o, description: d}`,
		}, crossDef("ui_category_affinity", "float", "0")),
			"test.yaml:6: ui_category_affinity: ui_category_affinity is computed from its inputs: item_category_id is an item float, it must be an item int"},
		{"category of the wrong entity", crossDoc(map[string]string{
			"item_category_id": `  - {name: item_category_id, entity: user, type: int, lane: batch, default: -1, freshness_sla: 26h, owner: o, description: d}`,
		}, crossDef("ui_category_affinity", "float", "0")),
			"test.yaml:6: ui_category_affinity: ui_category_affinity is computed from its inputs: item_category_id is a user int, it must be an item int"},
		{"affinity of the wrong kind", crossDoc(map[string]string{
			"user_category_affinity": `  - {name: user_category_affinity, entity: user, type: float, lane: batch, default: 0, freshness_sla: 26h, owner: o, description: d}`,
		}, crossDef("ui_category_affinity", "float", "0")),
			"test.yaml:6: ui_category_affinity: ui_category_affinity is computed from its inputs: user_category_affinity is a user float, it must be a user vector"},
		{"session list of the wrong kind", crossDoc(map[string]string{
			"user_session_recent_items": `  - {name: user_session_recent_items, entity: user, type: map, lane: nearline, default: {}, ttl: 30m, owner: o, description: d}`,
		}, crossDef("ui_session_category_share", "float", "0")),
			"test.yaml:6: ui_session_category_share: ui_session_category_share is computed from its inputs: user_session_recent_items is a user map, it must be a user list"},
		{"cross feature with a group", crossDoc(nil, crossDef("ui_category_affinity", "float", "0", "group: g")),
			"test.yaml:6: ui_category_affinity: group: request features are never stored, so they have no storage group"},
		{"cross feature with a ttl", crossDoc(nil, crossDef("ui_category_affinity", "float", "0", "ttl: 1h")),
			"test.yaml:6: ui_category_affinity: ttl: request features are computed per request and never stored, so a ttl means nothing"},
		{"user feature in the request lane", crossDoc(nil, "  - {name: user_x, entity: user, type: float, lane: request, default: 0, owner: o, description: d}"),
			"test.yaml:6: user_x: lane request with entity user: " + lane},
		{"item feature in the request lane", crossDoc(nil, "  - {name: item_x, entity: item, type: float, lane: request, default: 0, owner: o, description: d}"),
			"test.yaml:6: item_x: lane request with entity item: " + lane},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := problems(t, tt.data)
			if !slices.Contains(got, tt.want) {
				t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), tt.want)
			}
		})
	}

	// Every problem of a file is reported: both cross features of a set
	// lacking both their shared input.
	got := problems(t, crossDoc(map[string]string{"item_category_id": ""},
		crossDef("ui_category_affinity", "float", "0"), crossDef("ui_session_category_share", "float", "0")))
	want := []string{
		"test.yaml:5: ui_category_affinity: ui_category_affinity is computed from its inputs: item_category_id (an item int) is not defined",
		"test.yaml:6: ui_session_category_share: ui_session_category_share is computed from its inputs: item_category_id (an item int) is not defined",
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// crossProject loads the project's definitions (features/features.yaml).
func crossProject(t testing.TB) *FeatureSet {
	t.Helper()
	s, err := Load("features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustLookup(t testing.TB, s *FeatureSet, name string) *Feature {
	t.Helper()
	f, ok := s.Lookup(name)
	if !ok {
		t.Fatalf("%s is not defined in %s", name, s.Source())
	}
	return f
}

func TestProjectCrossFeatures(t *testing.T) {
	t.Parallel()
	s := crossProject(t)
	var names []string
	for _, f := range s.CrossFeatures() {
		names = append(names, f.Name)
		if f.Type.Kind != KindFloat || f.Default.Float != 0 || f.Group != "user_item_request" {
			t.Errorf("%s: %s default %v group %s; want a float defaulting to 0 in user_item_request", f.Name, f.Type, f.Default.Float, f.Group)
		}
	}
	if want := []string{"ui_category_affinity", "ui_session_category_share"}; !slices.Equal(names, want) {
		t.Errorf("cross features %v, want %v", names, want)
	}
	if !s.NeedsSession() {
		t.Error("NeedsSession() = false")
	}
	if f := mustLookup(t, s, FeatureCategoryAffinity); f.Type.Dim != 32 {
		t.Errorf("%s is a %s; the test of the component mod the width assumes vector[32]", f.Name, f.Type)
	}
}

// crossFixture is the project's set and the ids the cross tests use.
type crossFixture struct {
	s                                      *FeatureSet
	affinity, category, recent, aff, share *Feature
	pairStored                             *Feature
}

func newCrossFixture(t testing.TB) *crossFixture {
	s := crossProject(t)
	return &crossFixture{
		s:          s,
		affinity:   mustLookup(t, s, FeatureCategoryAffinity),
		category:   mustLookup(t, s, FeatureItemCategory),
		recent:     mustLookup(t, s, FeatureSessionRecentItems),
		aff:        mustLookup(t, s, "ui_category_affinity"),
		share:      mustLookup(t, s, "ui_session_category_share"),
		pairStored: mustLookup(t, s, "ui_impressions_7d"),
	}
}

// affinityVector has component i = (i+1)/64: every component differs.
func affinityVector(n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(i+1) / 64
	}
	return v
}

func (x *crossFixture) user(t testing.TB, affinity []float32, recent []string) *Record {
	t.Helper()
	u := x.s.NewRecord(EntityUser)
	if affinity != nil {
		if err := u.SetVector(x.affinity.ID, affinity); err != nil {
			t.Fatal(err)
		}
	}
	if recent != nil {
		if err := u.SetList(x.recent.ID, recent); err != nil {
			t.Fatal(err)
		}
	}
	return u
}

// item is an item record with the category, or none when cat is nil.
func (x *crossFixture) item(t testing.TB, cat *int64) *Record {
	t.Helper()
	it := x.s.NewRecord(EntityItem)
	if cat != nil {
		if err := it.SetInt(x.category.ID, *cat); err != nil {
			t.Fatal(err)
		}
	}
	return it
}

func catPtr(c int64) *int64 { return &c }

// readCross returns a cross feature's value in pair and whether it is set; an
// unset one must read as its default.
func readCross(t testing.TB, pair *Record, f *Feature) (float32, bool) {
	t.Helper()
	v, set, err := pair.Get(f.ID)
	if err != nil {
		t.Fatal(err)
	}
	if set != pair.Has(f.ID) {
		t.Fatalf("%s: Get says set=%v, Has says %v", f.Name, set, pair.Has(f.ID))
	}
	if !set && v.Float != f.Default.Float {
		t.Fatalf("%s unset reads %v, not its default %v", f.Name, v.Float, f.Default.Float)
	}
	return v.Float, set
}

func TestFillCrossValues(t *testing.T) {
	t.Parallel()
	x := newCrossFixture(t)
	aff := affinityVector(32)
	// unset marks a value that must be unset (reads as the default 0).
	const unset = float32(-1)
	tests := []struct {
		name     string
		affinity []float32 // nil: the user has none
		noUser   bool      // Taste gets a nil user
		session  []int64   // the known categories of the session's items
		cat      *int64    // the candidate's category; nil: none
		noItem   bool      // the candidate is unknown (nil record)
		wantAff  float32
		share    float32
	}{
		{"category 33 of 32 components reads component 1", aff, false, []int64{33, 5, 33, 7}, catPtr(33), false, aff[1], 0.5},
		{"category 0", aff, false, []int64{33, 5}, catPtr(0), false, aff[0], 0},
		{"category 31, the last component", aff, false, []int64{31}, catPtr(31), false, aff[31], 1},
		{"category 64 wraps to component 0", aff, false, []int64{64, 0}, catPtr(64), false, aff[0], 0.5},
		{"category 1 shares component 1 with 33 but not the session share", aff, false, []int64{33, 33, 1}, catPtr(1), false, aff[1], float32(1) / 3},
		{"no session item in the candidate's category", aff, false, []int64{4, 5, 6}, catPtr(7), false, aff[7], 0},
		{"empty session: share unset", aff, false, nil, catPtr(3), false, aff[3], unset},
		{"user without affinity: affinity unset", nil, false, []int64{3}, catPtr(3), false, unset, 1},
		{"no user record: affinity unset", nil, true, []int64{3, 4}, catPtr(3), false, unset, 0.5},
		{"candidate without category: both unset", aff, false, []int64{3}, nil, false, unset, unset},
		{"candidate of unknown category -1: both unset", aff, false, []int64{3}, catPtr(-1), false, unset, unset},
		{"unknown candidate (nil record): both unset", aff, false, []int64{3}, nil, true, unset, unset},
		{"nothing known", nil, true, nil, nil, true, unset, unset},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var user *Record
			if !tt.noUser {
				user = x.user(t, tt.affinity, nil)
			}
			var taste Taste
			if err := x.s.Taste(&taste, user, tt.session); err != nil {
				t.Fatal(err)
			}
			var item *Record
			if !tt.noItem {
				item = x.item(t, tt.cat)
			}
			pair := x.s.NewRecord(EntityUserItem)
			if err := x.s.FillCross(pair, &taste, item); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				f    *Feature
				want float32
			}{{x.aff, tt.wantAff}, {x.share, tt.share}} {
				got, set := readCross(t, pair, c.f)
				switch {
				case c.want == unset && set:
					t.Errorf("%s = %v, want unset (its default)", c.f.Name, got)
				case c.want != unset && (!set || got != c.want):
					t.Errorf("%s = %v (set %v), want %v", c.f.Name, got, set, c.want)
				}
			}
		})
	}
}

// TestFillCrossReusesRecords fills a record with every value, then with
// inputs that give none: nothing of the first candidate may remain. It
// leaves the pair's stored features alone.
func TestFillCrossReusesRecords(t *testing.T) {
	t.Parallel()
	x := newCrossFixture(t)
	s := x.s
	var taste Taste
	if err := s.Taste(&taste, x.user(t, affinityVector(32), nil), []int64{9, 9}); err != nil {
		t.Fatal(err)
	}
	pair := s.NewRecord(EntityUserItem)
	if err := pair.SetInt(x.pairStored.ID, 4); err != nil {
		t.Fatal(err)
	}
	if err := s.FillCross(pair, &taste, x.item(t, catPtr(9))); err != nil {
		t.Fatal(err)
	}
	if v, set := readCross(t, pair, x.aff); !set || v != affinityVector(32)[9] {
		t.Fatalf("first candidate: affinity %v (set %v)", v, set)
	}
	if v, set := readCross(t, pair, x.share); !set || v != 1 {
		t.Fatalf("first candidate: share %v (set %v)", v, set)
	}
	// A candidate without category: both unset.
	if err := s.FillCross(pair, &taste, x.item(t, nil)); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*Feature{x.aff, x.share} {
		if v, set := readCross(t, pair, f); set {
			t.Errorf("after a candidate without category: %s = %v, want unset", f.Name, v)
		}
	}
	if v, set, _ := pair.Get(x.pairStored.ID); !set || v.Int != 4 {
		t.Errorf("FillCross changed the stored pair feature %s: %v (set %v)", x.pairStored.Name, v.Int, set)
	}

	// A reused Taste forgets the previous user: no affinity, empty session.
	if err := s.FillCross(pair, &taste, x.item(t, catPtr(9))); err != nil {
		t.Fatal(err)
	}
	if err := s.Taste(&taste, x.user(t, nil, nil), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.FillCross(pair, &taste, x.item(t, catPtr(9))); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*Feature{x.aff, x.share} {
		if v, set := readCross(t, pair, f); set {
			t.Errorf("after a user with nothing known: %s = %v, want unset", f.Name, v)
		}
	}
	// And a nil user after one with affinity.
	if err := s.Taste(&taste, x.user(t, affinityVector(32), nil), []int64{9}); err != nil {
		t.Fatal(err)
	}
	if err := s.Taste(&taste, nil, []int64{9}); err != nil {
		t.Fatal(err)
	}
	if err := s.FillCross(pair, &taste, x.item(t, catPtr(9))); err != nil {
		t.Fatal(err)
	}
	if v, set := readCross(t, pair, x.aff); set {
		t.Errorf("nil user after one with affinity: affinity %v, want unset", v)
	}
	if v, set := readCross(t, pair, x.share); !set || v != 1 {
		t.Errorf("nil user: share %v (set %v), want 1", v, set)
	}
}

// TestTasteCopiesItsInputs: the taste keeps its own copies, so a caller
// may reuse its category slice and user record.
func TestTasteCopiesItsInputs(t *testing.T) {
	t.Parallel()
	x := newCrossFixture(t)
	user := x.user(t, affinityVector(32), nil)
	cats := []int64{5, 5}
	var taste Taste
	if err := x.s.Taste(&taste, user, cats); err != nil {
		t.Fatal(err)
	}
	cats[0], cats[1] = 6, 6
	if err := user.SetVector(x.affinity.ID, make([]float32, 32)); err != nil {
		t.Fatal(err)
	}
	pair := x.s.NewRecord(EntityUserItem)
	if err := x.s.FillCross(pair, &taste, x.item(t, catPtr(5))); err != nil {
		t.Fatal(err)
	}
	if v, _ := readCross(t, pair, x.share); v != 1 {
		t.Errorf("share %v after the caller changed its slice, want 1", v)
	}
	if v, _ := readCross(t, pair, x.aff); v != affinityVector(32)[5] {
		t.Errorf("affinity %v after the user record changed, want %v", v, affinityVector(32)[5])
	}
}

func TestCrossRefusesOtherRecords(t *testing.T) {
	t.Parallel()
	x := newCrossFixture(t)
	s := x.s
	other := crossProject(t)
	var taste Taste
	if err := s.Taste(&taste, x.user(t, affinityVector(32), nil), []int64{1}); err != nil {
		t.Fatal(err)
	}
	item := x.item(t, catPtr(1))
	pair := s.NewRecord(EntityUserItem)
	for _, tc := range []struct {
		name       string
		pair, item *Record
	}{
		{"user record as the pair", s.NewRecord(EntityUser), item},
		{"item record as the pair", s.NewRecord(EntityItem), item},
		{"pair of another set", other.NewRecord(EntityUserItem), item},
		{"user record as the item", pair, s.NewRecord(EntityUser)},
		{"pair record as the item", pair, s.NewRecord(EntityUserItem)},
		{"item of another set", pair, other.NewRecord(EntityItem)},
	} {
		if err := s.FillCross(tc.pair, &taste, tc.item); !errors.Is(err, ErrWrongRecord) {
			t.Errorf("FillCross(%s) = %v, want ErrWrongRecord", tc.name, err)
		}
	}
	for _, tc := range []struct {
		name string
		user *Record
	}{
		{"item record", s.NewRecord(EntityItem)},
		{"pair record", s.NewRecord(EntityUserItem)},
		{"user of another set", other.NewRecord(EntityUser)},
	} {
		if err := s.Taste(&taste, tc.user, nil); !errors.Is(err, ErrWrongRecord) {
			t.Errorf("Taste(%s) = %v, want ErrWrongRecord", tc.name, err)
		}
	}
	// A refused call leaves the pair as it was.
	if err := s.FillCross(pair, &taste, item); err != nil {
		t.Fatal(err)
	}
	if err := s.FillCross(pair, &taste, other.NewRecord(EntityItem)); err == nil || !pair.Has(x.aff.ID) || !pair.Has(x.share.ID) {
		t.Errorf("refused FillCross: %v, values still set %v %v; want an error and both kept", err, pair.Has(x.aff.ID), pair.Has(x.share.ID))
	}
}

func TestSessionItemsAndItemCategory(t *testing.T) {
	t.Parallel()
	x := newCrossFixture(t)
	s := x.s
	recent := []string{"i3", "i1"}
	if got := s.SessionItems(x.user(t, nil, recent)); !slices.Equal(got, recent) {
		t.Errorf("SessionItems = %v, want %v", got, recent)
	}
	for _, tc := range []struct {
		name string
		rec  *Record
	}{
		{"unset", x.user(t, affinityVector(32), nil)},
		{"nil", nil},
		{"item record", s.NewRecord(EntityItem)},
		{"user of another set", func() *Record {
			o := crossProject(t)
			r := o.NewRecord(EntityUser)
			f, _ := o.Lookup(FeatureSessionRecentItems)
			if err := r.SetList(f.ID, recent); err != nil {
				t.Fatal(err)
			}
			return r
		}()},
	} {
		if got := s.SessionItems(tc.rec); got != nil {
			t.Errorf("SessionItems(%s) = %v, want nil", tc.name, got)
		}
	}

	for _, tc := range []struct {
		name string
		rec  *Record
		cat  int64
		ok   bool
	}{
		{"set", x.item(t, catPtr(33)), 33, true},
		{"zero", x.item(t, catPtr(0)), 0, true},
		{"unknown -1", x.item(t, catPtr(-1)), 0, false},
		{"unset", x.item(t, nil), 0, false},
		{"nil", nil, 0, false},
		{"user record", s.NewRecord(EntityUser), 0, false},
	} {
		c, ok := s.ItemCategory(tc.rec)
		if ok != tc.ok || (ok && c != tc.cat) {
			t.Errorf("ItemCategory(%s) = %d, %v; want %d, %v", tc.name, c, ok, tc.cat, tc.ok)
		}
	}

	// Definitions without the inputs: nothing to read, and FillCross
	// leaves every value unset.
	bare := mustParse(t, crossDoc(map[string]string{"user_session_recent_items": "", "item_category_id": ""}))
	if got := bare.SessionItems(bare.NewRecord(EntityUser)); got != nil {
		t.Errorf("SessionItems without the list defined = %v", got)
	}
	if _, ok := bare.ItemCategory(bare.NewRecord(EntityItem)); ok {
		t.Error("ItemCategory without the feature defined says ok")
	}
	var taste Taste
	if err := bare.Taste(&taste, bare.NewRecord(EntityUser), []int64{1}); err != nil {
		t.Fatal(err)
	}
	if err := bare.FillCross(bare.NewRecord(EntityUserItem), &taste, bare.NewRecord(EntityItem)); err != nil {
		t.Errorf("FillCross of a set without cross features: %v", err)
	}
}

// TestFillCrossDoesNotAllocate: FillCross runs per candidate on the hot
// path. Not parallel: AllocsPerRun needs that.
func TestFillCrossDoesNotAllocate(t *testing.T) {
	x := newCrossFixture(t)
	s := x.s
	user := x.user(t, affinityVector(32), nil)
	cats := []int64{1, 2, 3, 1, 33}
	items := []*Record{x.item(t, catPtr(1)), x.item(t, catPtr(33)), x.item(t, nil), nil}
	pair := s.NewRecord(EntityUserItem)
	var taste Taste
	if err := s.Taste(&taste, user, cats); err != nil {
		t.Fatal(err)
	}
	var err error
	if n := testing.AllocsPerRun(100, func() {
		for _, it := range items {
			if e := s.FillCross(pair, &taste, it); e != nil {
				err = e
			}
		}
	}); n != 0 {
		t.Errorf("FillCross allocates %v times per 4 candidates, want 0", n)
	}
	if err != nil {
		t.Fatal(err)
	}
	// A reused Taste keeps its storage.
	if n := testing.AllocsPerRun(100, func() {
		if e := s.Taste(&taste, user, cats); e != nil {
			err = e
		}
	}); n != 0 {
		t.Errorf("Taste on a reused Taste allocates %v times, want 0", n)
	}
	if err != nil {
		t.Fatal(err)
	}
	// The measured calls did compute: the last candidate pass ended with
	// an unknown item, so fill a known one and check.
	if err := s.FillCross(pair, &taste, items[1]); err != nil {
		t.Fatal(err)
	}
	if v, set := readCross(t, pair, x.share); !set || v != 0.2 {
		t.Errorf("share %v (set %v), want 0.2", v, set)
	}
}
