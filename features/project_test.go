package features_test

import (
	"slices"
	"testing"

	"github.com/adaptrec/adaptrec/features"
)

// TestProjectDefinitions checks features/features.yaml against what the
// platform needs from it.
func TestProjectDefinitions(t *testing.T) {
	t.Parallel()
	s := loadProject(t)
	count := map[features.Entity]map[features.Lane]int{}
	for _, f := range s.All() {
		if count[f.Entity] == nil {
			count[f.Entity] = map[features.Lane]int{}
		}
		count[f.Entity][f.Lane]++
	}
	minimums := []struct {
		entity features.Entity
		lane   features.Lane
		min    int
	}{
		{features.EntityItem, features.LaneBatch, 20},
		{features.EntityItem, features.LaneNearline, 3},
		{features.EntityUser, features.LaneBatch, 8},
		{features.EntityUser, features.LaneNearline, 3},
		{features.EntityUserItem, features.LaneBatch, 2},
		{features.EntityRequest, features.LaneRequest, 6},
	}
	for _, m := range minimums {
		if n := count[m.entity][m.lane]; n < m.min {
			t.Errorf("%s %s features: %d, want at least %d", m.entity, m.lane, n, m.min)
		}
	}
	if s.Len() < 45 {
		t.Errorf("%d features, want at least 45", s.Len())
	}
	// The ranker reads at least 40 features per candidate item.
	if n := len(s.RankerInputs()); n < 40 {
		t.Errorf("%d ranker inputs per item row, want at least 40", n)
	}
	if _, err := s.NewLayout(names(s.RankerInputs())); err != nil {
		t.Errorf("the full row cannot be laid out: %v", err)
	}

	// Types other code relies on.
	types := []struct{ name, typ string }{
		{"item_embedding", "vector[16]"},
		{"user_embedding", "vector[16]"},
		{"item_category_id", "int"},
		{"item_creator_id", "int"},
		{"item_ctr_7d", "float"},
		{"user_session_recent_items", "list"},
		{"user_creator_clicks_30d", "map"},
		{features.FeatureSessionKey, "int"},
		{features.FeatureSessionStartMs, "int"},
		{features.FeatureSessionInteractions, "int"},
		{features.FeatureLastInteractionMs, "int"},
	}
	for _, tt := range types {
		f, ok := s.Lookup(tt.name)
		if !ok || f.Type.String() != tt.typ {
			t.Errorf("%s: %v (defined %v), want a %s", tt.name, f, ok, tt.typ)
		}
	}
	// Every computation of the request lane is declared, so none is dead.
	var req []string
	for _, f := range s.Entity(features.EntityRequest) {
		req = append(req, f.Name)
	}
	if want := features.RequestFeatureNames(); !slices.Equal(req, want) {
		t.Errorf("request features %v, the request lane computes %v", req, want)
	}
	// The request lane's caps are the declared defaults of "never".
	if f, _ := s.Lookup("req_since_last_interaction_s"); f.Default.Float != float32(features.MaxSinceLastInteraction.Seconds()) {
		t.Errorf("req_since_last_interaction_s default %v, want the cap %v", f.Default.Float, features.MaxSinceLastInteraction.Seconds())
	}
}

func names(fs []*features.Feature) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.Name
	}
	return out
}
