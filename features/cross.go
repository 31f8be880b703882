package features

import (
	"fmt"
	"sort"
	"strings"
)

// Cross features are user×item features of the request lane: computed per
// candidate at request time from the user's record and the candidate's item
// record, never stored. They put the user's taste and the candidate side by
// side in one number, which a ranker reads directly instead of having to
// learn the product of a taste vector and an item id; and because their
// inputs include the nearline session, a ranker that weighs them adapts to
// what the user is doing now rather than what the last month's snapshot
// says. Serving (features/online) and training (features/offline) both
// compute them with Taste and FillCross from the same inputs, the way the
// request lane shares FillRequest.
//
//   - ui_category_affinity: the user's user_category_affinity component of
//     the candidate's item_category_id (component = category mod the
//     vector's width, as the batch job writes it): the user's long-term
//     share of clicks in the candidate's category. Unset (its default) when
//     the user has no affinity or the candidate no category.
//   - ui_session_category_share: the share of the user's session items
//     (user_session_recent_items: clicked or viewed in the current session)
//     whose item_category_id is the candidate's. Unset when no session item
//     has a known category or the candidate has none.

// The features the cross features read.
const (
	// FeatureCategoryAffinity is the user vector ui_category_affinity reads.
	FeatureCategoryAffinity = "user_category_affinity"
	// FeatureItemCategory is the item int both cross features read.
	FeatureItemCategory = "item_category_id"
	// FeatureSessionRecentItems is the user list whose items'
	// categories ui_session_category_share reads.
	FeatureSessionRecentItems = "user_session_recent_items"
)

type crossOp uint8

const (
	crossNone crossOp = iota
	opCategoryAffinity
	opSessionCategoryShare
)

// crossFeature describes one cross computation and the features it reads
// (name → entity and kind).
type crossFeature struct {
	op     crossOp
	inputs []crossInput
}

type crossInput struct {
	name   string
	entity Entity
	kind   Kind
}

var (
	inAffinity = crossInput{FeatureCategoryAffinity, EntityUser, KindVector}
	inCategory = crossInput{FeatureItemCategory, EntityItem, KindInt}
	inSession  = crossInput{FeatureSessionRecentItems, EntityUser, KindList}
)

// crossLane is every cross computation, by feature name. Each produces a
// float.
var crossLane = map[string]crossFeature{
	"ui_category_affinity":      {op: opCategoryAffinity, inputs: []crossInput{inAffinity, inCategory}},
	"ui_session_category_share": {op: opSessionCategoryShare, inputs: []crossInput{inSession, inCategory}},
}

// CrossFeatureNames lists the cross features the request lane can compute,
// sorted.
func CrossFeatureNames() []string {
	names := make([]string, 0, len(crossLane))
	for n := range crossLane {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// CrossInputs returns the names of the features a cross feature is
// computed from; nil for other names.
func CrossInputs(name string) []string {
	cf, ok := crossLane[name]
	if !ok {
		return nil
	}
	out := make([]string, len(cf.inputs))
	for i, in := range cf.inputs {
		out[i] = in.name
	}
	return out
}

// checkCrossFeature says what is wrong with a user×item request-lane
// definition on its own, or "" when the request lane computes it as
// defined. Its inputs are checked against the whole set by
// checkCrossInputs.
func checkCrossFeature(f *Feature) string {
	if _, ok := crossLane[f.Name]; !ok {
		return fmt.Sprintf("the request lane has no user_item computation for %s (it computes %s)", f.Name, strings.Join(CrossFeatureNames(), ", "))
	}
	if f.Type.Kind != KindFloat {
		return fmt.Sprintf("the request lane computes %s as float, not %s", f.Name, f.Type)
	}
	return ""
}

// checkCrossInputs says, per cross feature of feats, which inputs are
// missing or of the wrong entity or kind; byName holds every valid
// feature.
func checkCrossInputs(f *Feature, byName map[string]*Feature) string {
	cf, ok := crossLane[f.Name]
	if !ok {
		return ""
	}
	var bad []string
	for _, in := range cf.inputs {
		g, ok := byName[in.name]
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("%s (%s %s %s) is not defined", in.name, article(in.entity.String()), in.entity, kindName(in.kind)))
		case g.Entity != in.entity || g.Type.Kind != in.kind:
			bad = append(bad, fmt.Sprintf("%s is %s %s %s, it must be %s %s %s", in.name, article(g.Entity.String()), g.Entity, g.Type, article(in.entity.String()), in.entity, kindName(in.kind)))
		}
	}
	if len(bad) == 0 {
		return ""
	}
	return fmt.Sprintf("%s is computed from its inputs: %s", f.Name, strings.Join(bad, "; "))
}

// article is the indefinite article of an entity's name ("an item", "a
// user", "a user_item", "a request").
func article(entity string) string {
	if entity == EntityItem.String() {
		return "an"
	}
	return "a"
}

func kindName(k Kind) string {
	if k == KindVector {
		return "vector"
	}
	return Type{Kind: k}.String()
}

// IsCross reports whether f is a cross feature: user×item, computed per
// candidate by the request lane (FillCross), never stored.
func (f *Feature) IsCross() bool { return f.Entity == EntityUserItem && f.Lane == LaneRequest }

// CrossFeatures returns the set's cross features, in canonical order.
func (s *FeatureSet) CrossFeatures() []*Feature { return s.cross }

// NeedsSession reports whether a cross feature of the set reads the user's
// session items, whose categories Taste then needs.
func (s *FeatureSet) NeedsSession() bool {
	for _, f := range s.cross {
		if f.crossOp == opSessionCategoryShare {
			return true
		}
	}
	return false
}

// Taste is what the cross features know of a user at one request: the
// long-term category affinity and the categories of the session's items.
// Build it once per request with (*FeatureSet).Taste and read it for every
// candidate with FillCross. The zero value knows nothing; a Taste may be
// reused (it keeps its storage).
type Taste struct {
	affinity    []float32
	hasAffinity bool
	// session holds the known categories of the session's items.
	session []int64
}

// SessionItems returns the user record's session items (newest first), or
// nil when unset or not defined. The slice is the record's.
func (s *FeatureSet) SessionItems(user *Record) []string {
	f := s.crossSession
	if f == nil || user == nil || user.set != s || user.entity != EntityUser || !user.isSet(f.index) {
		return nil
	}
	return user.lists[f.slot]
}

// ItemCategory returns an item record's item_category_id, and false when
// unset, negative (unknown) or not defined.
func (s *FeatureSet) ItemCategory(item *Record) (int64, bool) {
	f := s.crossCategory
	if f == nil || item == nil || item.set != s || item.entity != EntityItem || !item.isSet(f.index) {
		return 0, false
	}
	c := item.ints[f.slot]
	return c, c >= 0
}

// Taste fills t from the user's record (after the fallback cascade, as
// served or as of the training example's time) and the categories of the
// user's session items (SessionItems, each looked up with ItemCategory;
// unknown ones left out). user may be nil: no affinity.
func (s *FeatureSet) Taste(t *Taste, user *Record, sessionCategories []int64) error {
	if user != nil && (user.set != s || user.entity != EntityUser) {
		return fmt.Errorf("%w: Taste needs a user record of %s, got a %s record", ErrWrongRecord, s.source, user.entity)
	}
	t.hasAffinity = false
	t.affinity = t.affinity[:0]
	t.session = append(t.session[:0], sessionCategories...)
	f := s.crossAffinity
	if user == nil || f == nil || !user.isSet(f.index) {
		return nil
	}
	t.affinity = append(t.affinity, user.nums[f.slot:f.slot+f.Type.Dim]...)
	t.hasAffinity = true
	return nil
}

// FillCross computes every cross feature of the set into pair (a user×item
// record) for the candidate whose item record is item (nil: unknown item),
// from the user's taste. Each cross feature is unset first; one whose
// inputs are missing stays unset and reads as its default. It does not
// allocate.
func (s *FeatureSet) FillCross(pair *Record, t *Taste, item *Record) error {
	if pair.set != s || pair.entity != EntityUserItem {
		return fmt.Errorf("%w: FillCross needs a user_item record of %s, got a %s record", ErrWrongRecord, s.source, pair.entity)
	}
	if item != nil && (item.set != s || item.entity != EntityItem) {
		return fmt.Errorf("%w: FillCross needs an item record of %s, got a %s record", ErrWrongRecord, s.source, item.entity)
	}
	cat, catOK := s.ItemCategory(item)
	for _, f := range s.cross {
		pair.has[f.index>>6] &^= 1 << (f.index & 63)
		if !catOK {
			continue
		}
		switch f.crossOp {
		case opCategoryAffinity:
			if t.hasAffinity && len(t.affinity) > 0 {
				pair.nums[f.slot] = t.affinity[cat%int64(len(t.affinity))]
				pair.mark(f)
			}
		case opSessionCategoryShare:
			if len(t.session) > 0 {
				n := 0
				for _, c := range t.session {
					if c == cat {
						n++
					}
				}
				pair.nums[f.slot] = float32(n) / float32(len(t.session))
				pair.mark(f)
			}
		}
	}
	return nil
}
