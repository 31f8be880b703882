package serving

import (
	"testing"
	"time"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

func act(item string, a adaptrecv1.Action) *adaptrecv1.UserInteractionEvent {
	return &adaptrecv1.UserInteractionEvent{UserId: "u", ItemId: item, Action: a}
}

func ids(items []ScoredItem) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.ItemID
	}
	return out
}

func TestPopularityRanksByDecayedEngagement(t *testing.T) {
	t.Parallel()
	p := NewPopularity(time.Hour, 100)
	t0 := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	// "old" gets 3 purchases 5 hours ago (weight 9 * 2^-5 ≈ 0.28 now);
	// "new" gets one click now (1); "skipped" only negative signal.
	for range 3 {
		p.Observe(act("old", adaptrecv1.Action_ACTION_PURCHASE), t0)
	}
	p.Observe(act("new", adaptrecv1.Action_ACTION_CLICK), t0.Add(5*time.Hour))
	p.Observe(act("skipped", adaptrecv1.Action_ACTION_SKIP), t0.Add(5*time.Hour))
	p.Observe(act("shown", adaptrecv1.Action_ACTION_IMPRESSION), t0.Add(5*time.Hour))
	p.Refresh()
	got := ids(p.Top(nil, 10, nil))
	if len(got) != 2 || got[0] != "new" || got[1] != "old" {
		t.Fatalf("Top = %v, want [new old]", got)
	}
	if got := ids(p.Top(nil, 10, map[string]bool{"new": true})); len(got) != 1 || got[0] != "old" {
		t.Fatalf("Top excluding new = %v, want [old]", got)
	}
	if got := p.Top(nil, 1, nil); len(got) != 1 || got[0].Score != 1 {
		t.Fatalf("Top(1) = %v, want one item normalised to score 1", got)
	}
}

func TestPopularityRebaseKeepsOrder(t *testing.T) {
	t.Parallel()
	p := NewPopularity(time.Minute, 10)
	t0 := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	p.Observe(act("a", adaptrecv1.Action_ACTION_CLICK), t0)
	// 40 half-lives later forces a rebase; "a" decays to ~0 and is dropped.
	later := t0.Add(40 * time.Minute)
	p.Observe(act("b", adaptrecv1.Action_ACTION_CLICK), later)
	p.Observe(act("c", adaptrecv1.Action_ACTION_COMPLETE), later)
	p.Refresh()
	if got := ids(p.Top(nil, 10, nil)); len(got) != 2 || got[0] != "c" || got[1] != "b" {
		t.Fatalf("Top = %v, want [c b]", got)
	}
}
