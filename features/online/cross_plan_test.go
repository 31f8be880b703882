package online

import (
	"testing"

	"github.com/adaptrec/adaptrec/features"
)

// TestPlanDecodesTheSessionListForCrossFeatures: with a cross feature that
// reads the session's items, user_session_recent_items is decoded even for
// ranking (no BeginOptions.Lists), and no other list or map is; without
// one, nothing is.
func TestPlanDecodesTheSessionListForCrossFeatures(t *testing.T) {
	t.Parallel()
	project, err := features.Load("../features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		fs     *features.FeatureSet
		always []string
		cross  bool
	}{
		{"project definitions", project, []string{features.FeatureSessionRecentItems}, true},
		{"test definitions without cross features", testSet(t), nil, false},
	} {
		p, err := newPlan(tc.fs, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		var always []string
		for _, g := range p.groups {
			for _, fp := range g.feats {
				if fp.always {
					always = append(always, fp.f.Name)
				}
			}
		}
		if len(always) != len(tc.always) || (len(always) > 0 && always[0] != tc.always[0]) {
			t.Errorf("%s: decoded for ranking: %v, want %v", tc.name, always, tc.always)
		}
		if (p.cross != nil) != tc.cross {
			t.Errorf("%s: cross group %v, want one: %v", tc.name, p.cross != nil, tc.cross)
		}
		if p.cross != nil {
			if p.cross.name != "user_item_request" || p.cross.served || len(p.cross.feats) != len(tc.fs.CrossFeatures()) {
				t.Errorf("%s: cross group %s served %v with %d features", tc.name, p.cross.name, p.cross.served, len(p.cross.feats))
			}
			for _, g := range p.pairAll {
				if g == p.cross {
					t.Errorf("%s: the cross group is read from Redis as a pair group", tc.name)
				}
			}
		}
	}
}
