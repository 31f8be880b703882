package rerank

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// it builds an item; flags holds f (fresh), p (promoted), x (flagged) and
// s (seen).
func it(id int32, score float32, cat, cre int32, flags string) Item {
	return Item{
		ID: id, Score: score, Category: cat, Creator: cre,
		Fresh:    strings.Contains(flags, "f"),
		Promoted: strings.Contains(flags, "p"),
		Flagged:  strings.Contains(flags, "x"),
		Seen:     strings.Contains(flags, "s"),
	}
}

func ids(items []Ranked) []int32 {
	out := make([]int32, len(items))
	for i, r := range items {
		out[i] = r.Item.ID
	}
	return out
}

// statsMap lists the nonzero counts as "rule/action".
func statsMap(s *Stats) map[string]int64 {
	m := map[string]int64{}
	for r := range numRules {
		for a := range numActions {
			if v := s.Count(r, a); v != 0 {
				m[r.String()+"/"+a.String()] = v
			}
		}
	}
	return m
}

func mustNew(t testing.TB, cfg Config) *Reranker {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	return r
}

func TestApplyRules(t *testing.T) {
	t.Parallel()
	const none, unk = "", int32(-1)
	tests := []struct {
		name    string
		cfg     Config
		n       int
		items   []Item
		want    []int32
		relaxed string           // Result.Relaxed
		rules   map[int32]string // Ranked.Rules per ID; unlisted: none
		relax   map[int32]string // Ranked.Relaxed per ID; unlisted: none
		stats   map[string]int64 // every nonzero count
	}{
		{
			name:  "no rules: best scores, ties by smaller ID",
			n:     4,
			items: []Item{it(5, 0.5, 1, 1, none), it(2, 0.9, 1, 1, none), it(9, 0.7, 1, 1, none), it(3, 0.7, 1, 1, none), it(1, 0.1, 1, 1, none)},
			want:  []int32{2, 3, 9, 5},
		},
		{
			name:  "flagged removed",
			n:     3,
			items: []Item{it(1, 0.9, unk, unk, "x"), it(2, 0.8, unk, unk, none), it(3, 0.7, unk, unk, none), it(4, 0.6, unk, unk, none)},
			want:  []int32{2, 3, 4},
			stats: map[string]int64{"flagged/removed": 1},
		},
		{
			name:  "flagged never fills a short list",
			n:     5,
			items: []Item{it(1, 0.9, unk, unk, "x"), it(2, 0.8, unk, unk, "xs"), it(3, 0.1, unk, unk, none)},
			want:  []int32{3},
			stats: map[string]int64{"flagged/removed": 2},
		},
		{
			name:  "flagged removed with every rule off but suppression on",
			cfg:   Config{SuppressSeen: true},
			n:     2,
			items: []Item{it(1, 0.9, unk, unk, "xs"), it(2, 0.1, unk, unk, "s")},
			want:  []int32{2}, relaxed: "seen",
			rules: map[int32]string{2: "seen"}, relax: map[int32]string{2: "seen"},
			stats: map[string]int64{"flagged/removed": 1, "seen/removed": 1, "seen/inserted": 1},
		},
		{
			name:  "seen suppressed",
			cfg:   Config{SuppressSeen: true},
			n:     2,
			items: []Item{it(1, 0.9, unk, unk, "s"), it(2, 0.8, unk, unk, none), it(3, 0.7, unk, unk, none), it(4, 0.6, unk, unk, none)},
			want:  []int32{2, 3},
			stats: map[string]int64{"seen/removed": 1},
		},
		{
			name:    "seen fill the end of a short list, best first",
			cfg:     Config{SuppressSeen: true},
			n:       4,
			items:   []Item{it(1, 0.9, unk, unk, "s"), it(2, 0.5, unk, unk, "s"), it(3, 0.8, unk, unk, none), it(4, 0.1, unk, unk, none)},
			want:    []int32{3, 4, 1, 2},
			relaxed: "seen",
			rules:   map[int32]string{1: "seen", 2: "seen"}, relax: map[int32]string{1: "seen", 2: "seen"},
			stats: map[string]int64{"seen/removed": 2, "seen/inserted": 2},
		},
		{
			name:  "seen compete when suppression is off",
			n:     4,
			items: []Item{it(1, 0.9, unk, unk, "s"), it(2, 0.5, unk, unk, "s"), it(3, 0.8, unk, unk, none), it(4, 0.1, unk, unk, none)},
			want:  []int32{1, 3, 2, 4},
		},
		{
			name:  "promoted boost reorders",
			cfg:   Config{PromotedBoost: 1.5},
			n:     3,
			items: []Item{it(1, 0.5, unk, unk, none), it(2, 0.4, unk, unk, "p"), it(3, 0.2, unk, unk, "p")},
			want:  []int32{2, 1, 3},
			rules: map[int32]string{2: "promoted", 3: "promoted"},
			stats: map[string]int64{"promoted/boosted": 2},
		},
		{
			name:  "boost raises a negative score too",
			cfg:   Config{PromotedBoost: 1.5},
			n:     2,
			items: []Item{it(1, -0.5, unk, unk, none), it(2, -0.6, unk, unk, "p")},
			want:  []int32{2, 1},
			rules: map[int32]string{2: "promoted"},
			stats: map[string]int64{"promoted/boosted": 1},
		},
		{
			name:  "boost of 1 touches nothing",
			cfg:   Config{PromotedBoost: 1},
			n:     2,
			items: []Item{it(1, 0.5, unk, unk, none), it(2, 0.4, unk, unk, "p")},
			want:  []int32{1, 2},
		},
		{
			name:  "promoted cap skips",
			cfg:   Config{MaxPromoted: 1},
			n:     2,
			items: []Item{it(1, 0.9, unk, unk, "p"), it(2, 0.8, unk, unk, "p"), it(3, 0.7, unk, unk, none)},
			want:  []int32{1, 3},
			stats: map[string]int64{"promoted/skipped": 1},
		},
		{
			name:    "promoted cap relaxed when short",
			cfg:     Config{MaxPromoted: 1},
			n:       3,
			items:   []Item{it(1, 0.9, unk, unk, "p"), it(2, 0.8, unk, unk, "p"), it(3, 0.7, unk, unk, none)},
			want:    []int32{1, 3, 2},
			relaxed: "promoted",
			rules:   map[int32]string{2: "promoted"}, relax: map[int32]string{2: "promoted"},
			stats: map[string]int64{"promoted/skipped": 1, "promoted/inserted": 1},
		},
		{
			name: "category cap skips and unknown categories are free",
			cfg:  Config{MaxPerCategory: 2},
			n:    4,
			items: []Item{it(1, 0.9, 1, unk, none), it(2, 0.8, 1, unk, none), it(3, 0.7, 1, unk, none), it(4, 0.6, 2, unk, none),
				it(5, 0.5, 1, unk, none), it(6, 0.4, unk, unk, none), it(7, 0.3, unk, unk, none)},
			want:  []int32{1, 2, 4, 6},
			stats: map[string]int64{"category_cap/skipped": 2},
		},
		{
			name: "category cap relaxed when short, best skipped first",
			cfg:  Config{MaxPerCategory: 2},
			n:    4,
			items: []Item{it(1, 0.9, 1, unk, none), it(2, 0.8, 1, unk, none), it(3, 0.7, 1, unk, none), it(4, 0.6, 1, unk, none),
				it(5, 0.5, 1, unk, none), it(6, 0.1, 2, unk, none)},
			want:    []int32{1, 2, 6, 3},
			relaxed: "category_cap",
			rules:   map[int32]string{3: "category_cap"}, relax: map[int32]string{3: "category_cap"},
			stats: map[string]int64{"category_cap/skipped": 3, "category_cap/inserted": 1},
		},
		{
			name:  "creator cap skips",
			cfg:   Config{MaxPerCreator: 1},
			n:     3,
			items: []Item{it(1, 0.9, unk, 7, none), it(2, 0.8, unk, 7, none), it(3, 0.7, unk, 8, none), it(4, 0.6, unk, unk, none)},
			want:  []int32{1, 3, 4},
			stats: map[string]int64{"creator_cap/skipped": 1},
		},
		{
			name:    "creator cap relaxed when short",
			cfg:     Config{MaxPerCreator: 1},
			n:       3,
			items:   []Item{it(1, 0.9, unk, 7, none), it(2, 0.8, unk, 7, none), it(3, 0.7, unk, 7, none), it(4, 0.6, unk, 8, none)},
			want:    []int32{1, 4, 2},
			relaxed: "creator_cap",
			rules:   map[int32]string{2: "creator_cap"}, relax: map[int32]string{2: "creator_cap"},
			stats: map[string]int64{"creator_cap/skipped": 2, "creator_cap/inserted": 1},
		},
		{
			name:    "item blocked by two caps counts under both",
			cfg:     Config{MaxPerCategory: 1, MaxPerCreator: 1},
			n:       2,
			items:   []Item{it(1, 0.9, 1, 7, none), it(2, 0.8, 1, 7, none)},
			want:    []int32{1, 2},
			relaxed: "category_cap|creator_cap",
			rules:   map[int32]string{2: "category_cap|creator_cap"}, relax: map[int32]string{2: "category_cap|creator_cap"},
			stats: map[string]int64{"category_cap/skipped": 1, "creator_cap/skipped": 1, "category_cap/inserted": 1, "creator_cap/inserted": 1},
		},
		{
			name: "fresh minimum replaces the lowest non-fresh",
			cfg:  Config{MinFresh: 2},
			n:    3,
			items: []Item{it(1, 0.9, unk, unk, none), it(2, 0.8, unk, unk, none), it(3, 0.7, unk, unk, none),
				it(4, 0.6, unk, unk, "f"), it(5, 0.5, unk, unk, "f"), it(6, 0.4, unk, unk, "f")},
			want:  []int32{1, 4, 5},
			rules: map[int32]string{4: "fresh_min", 5: "fresh_min"},
			stats: map[string]int64{"fresh_min/inserted": 2, "fresh_min/removed": 2},
		},
		{
			name:  "fresh minimum already met",
			cfg:   Config{MinFresh: 1},
			n:     2,
			items: []Item{it(1, 0.9, unk, unk, none), it(2, 0.8, unk, unk, "f"), it(3, 0.7, unk, unk, "f")},
			want:  []int32{1, 2},
		},
		{
			name:    "fresh minimum short of fresh items",
			cfg:     Config{MinFresh: 3},
			n:       3,
			items:   []Item{it(1, 0.9, unk, unk, none), it(2, 0.8, unk, unk, none), it(3, 0.7, unk, unk, none), it(4, 0.1, unk, unk, "f")},
			want:    []int32{1, 2, 4},
			relaxed: "fresh_min",
			rules:   map[int32]string{4: "fresh_min"},
			stats:   map[string]int64{"fresh_min/inserted": 1, "fresh_min/removed": 1, "fresh_min/short": 2},
		},
		{
			name:  "fresh minimum bounded by a short list",
			cfg:   Config{MinFresh: 5},
			n:     10,
			items: []Item{it(1, 0.9, unk, unk, "f"), it(2, 0.8, unk, unk, "f")},
			want:  []int32{1, 2},
		},
		{
			name:  "fresh item takes the place of its own category",
			cfg:   Config{MaxPerCategory: 1, MinFresh: 1},
			n:     2,
			items: []Item{it(1, 0.9, 1, unk, none), it(2, 0.8, 2, unk, none), it(3, 0.7, 1, unk, "f")},
			want:  []int32{2, 3},
			rules: map[int32]string{3: "fresh_min"},
			stats: map[string]int64{"fresh_min/inserted": 1, "fresh_min/removed": 1},
		},
		{
			name:    "fresh item that fits no cap stays out",
			cfg:     Config{MaxPerCategory: 1, MinFresh: 2},
			n:       2,
			items:   []Item{it(1, 0.9, 1, unk, "f"), it(2, 0.8, 2, unk, none), it(3, 0.7, 1, unk, "f")},
			want:    []int32{1, 2},
			relaxed: "fresh_min",
			stats:   map[string]int64{"fresh_min/short": 1},
		},
		{
			// Replacing 1 by 4 would keep the caps too, but the bottom of
			// the list changes first.
			name: "fresh minimum changes the bottom first",
			cfg:  Config{MaxPerCategory: 1, MinFresh: 1},
			n:    3,
			items: []Item{it(1, 0.9, 1, unk, none), it(2, 0.8, 2, unk, none), it(3, 0.7, 3, unk, none),
				it(4, 0.6, 1, unk, "f"), it(5, 0.5, 4, unk, "f")},
			want:  []int32{1, 2, 5},
			rules: map[int32]string{5: "fresh_min"},
			stats: map[string]int64{"fresh_min/inserted": 1, "fresh_min/removed": 1},
		},
		{
			// Two promoted at most and two fresh at least: the only fresh
			// candidate is promoted, so it can only take a promoted item's
			// place, and the one promoted item is the best.
			name:  "fresh minimum moves up the list when the caps demand it",
			cfg:   Config{MaxPromoted: 1, MinFresh: 2},
			n:     3,
			items: []Item{it(1, 0.9, unk, unk, "p"), it(2, 0.8, unk, unk, "f"), it(3, 0.7, unk, unk, none), it(4, 0.6, unk, unk, "pf")},
			want:  []int32{2, 3, 4},
			rules: map[int32]string{4: "fresh_min"},
			stats: map[string]int64{"fresh_min/inserted": 1, "fresh_min/removed": 1},
		},
		{
			name:    "fresh minimum never brings in a seen item",
			cfg:     Config{SuppressSeen: true, MinFresh: 1},
			n:       2,
			items:   []Item{it(1, 0.9, unk, unk, none), it(2, 0.8, unk, unk, none), it(3, 0.95, unk, unk, "fs")},
			want:    []int32{1, 2},
			relaxed: "fresh_min",
			stats:   map[string]int64{"seen/removed": 1, "fresh_min/short": 1},
		},
		{
			name: "fresh item replacing a relaxed one is relaxed too",
			cfg:  Config{MaxPerCategory: 1, MinFresh: 1},
			n:    3,
			items: []Item{it(1, 0.9, 1, unk, none), it(2, 0.8, 1, unk, none), it(3, 0.7, 1, unk, none),
				it(4, 0.6, 1, unk, "f")},
			want:    []int32{1, 2, 4},
			relaxed: "category_cap",
			rules:   map[int32]string{2: "category_cap", 4: "category_cap|fresh_min"},
			relax:   map[int32]string{2: "category_cap", 4: "category_cap"},
			stats: map[string]int64{"category_cap/skipped": 3, "category_cap/inserted": 2,
				"fresh_min/inserted": 1, "fresh_min/removed": 1},
		},
		{
			// Scores after the 1.2 boost: 3 → 0.96, 6 → 0.6, 9 → 0.36.
			// Greedy: 3, 1 (0.9); 2 is the third of category 1 and 4 the
			// second of creator 10, so both are skipped; 5 (0.7), 6 (0.6)
			// and 7 (0.55) complete the list. 8 is flagged, 10 seen. The
			// fresh minimum of 2 swaps 7, the lowest non-fresh item, for 9,
			// the best fresh one left.
			name: "combined",
			cfg:  Config{SuppressSeen: true, PromotedBoost: 1.2, MaxPromoted: 3, MaxPerCategory: 2, MaxPerCreator: 1, MinFresh: 2},
			n:    5,
			items: []Item{
				it(1, 0.9, 1, 10, none),
				it(2, 0.85, 1, 11, none),
				it(3, 0.8, 1, 12, "p"),
				it(4, 0.75, 2, 10, none),
				it(5, 0.7, 2, 13, none),
				it(6, 0.5, 3, 14, "pf"),
				it(7, 0.55, 3, 15, none),
				it(8, 0.99, 4, 16, "fx"),
				it(9, 0.3, 4, 17, "pf"),
				it(10, 0.98, 5, 18, "fs"),
			},
			want:  []int32{3, 1, 5, 6, 9},
			rules: map[int32]string{3: "promoted", 6: "promoted", 9: "promoted|fresh_min"},
			stats: map[string]int64{"flagged/removed": 1, "seen/removed": 1, "category_cap/skipped": 1, "creator_cap/skipped": 1,
				"promoted/boosted": 3, "fresh_min/inserted": 1, "fresh_min/removed": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := mustNew(t, tt.cfg)
			var res Result
			if err := r.Apply(&res, tt.items, tt.n); err != nil {
				t.Fatal(err)
			}
			if got := ids(res.Items); !slices.Equal(got, tt.want) {
				t.Fatalf("IDs = %v, want %v", got, tt.want)
			}
			if got := res.Relaxed.String(); got != tt.relaxed {
				t.Errorf("Result.Relaxed = %q, want %q", got, tt.relaxed)
			}
			for _, x := range res.Items {
				if got, want := x.Rules.String(), tt.rules[x.Item.ID]; got != want {
					t.Errorf("item %d: Rules = %q, want %q", x.Item.ID, got, want)
				}
				if got, want := x.Relaxed.String(), tt.relax[x.Item.ID]; got != want {
					t.Errorf("item %d: Relaxed = %q, want %q", x.Item.ID, got, want)
				}
			}
			got := statsMap(&res.Stats)
			want := tt.stats
			if want == nil {
				want = map[string]int64{}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("Stats = %v, want %v", got, want)
			}
			checkInvariants(t, tt.cfg, tt.items, tt.n, &res)
		})
	}
}

func TestApplyScores(t *testing.T) {
	t.Parallel()
	r := mustNew(t, Config{PromotedBoost: 2})
	items := []Item{it(1, 0.3, -1, -1, "p"), it(2, 0.5, -1, -1, ""), it(3, -0.4, -1, -1, "p")}
	var res Result
	if err := r.Apply(&res, items, 3); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		id           int32
		ranker, fin  float32
		promotedRule bool
	}{{1, 0.3, 0.6, true}, {2, 0.5, 0.5, false}, {3, -0.4, -0.2, true}}
	for i, w := range want {
		got := res.Items[i]
		if got.Item.ID != w.id || got.Item.Score != w.ranker || got.Score != w.fin || got.Rules.Has(RulePromoted) != w.promotedRule {
			t.Errorf("item %d = %+v, want ID %d, ranker score %v, final %v, promoted rule %v", i, got, w.id, w.ranker, w.fin, w.promotedRule)
		}
	}
}

func TestApplySizes(t *testing.T) {
	t.Parallel()
	r := mustNew(t, DefaultConfig())
	many := make([]Item, 3*MaxN)
	for i := range many {
		many[i] = it(int32(i), float32(i)/float32(len(many)), -1, -1, "")
	}
	tests := []struct {
		name    string
		items   []Item
		n       int
		wantLen int
		wantErr string
	}{
		{name: "empty input", items: nil, n: 20, wantLen: 0},
		{name: "empty slice", items: []Item{}, n: 0, wantLen: 0},
		{name: "n larger than candidates", items: many[:7], n: 20, wantLen: 7},
		{name: "0 means the default", items: many, n: 0, wantLen: DefaultN},
		{name: "largest n", items: many, n: MaxN, wantLen: MaxN},
		{name: "n of 1", items: many, n: 1, wantLen: 1},
		{name: "negative n", items: many, n: -1, wantErr: "n -1 outside 1..500 (0 means 20)"},
		{name: "n above the max", items: many, n: MaxN + 1, wantErr: "n 501 outside 1..500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := Result{Items: make([]Ranked, 3)} // stale content must go
			err := r.Apply(&res, tt.items, tt.n)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Apply(n=%d) error = %v, want %q", tt.n, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Items) != tt.wantLen {
				t.Fatalf("len = %d, want %d", len(res.Items), tt.wantLen)
			}
			checkInvariants(t, r.Config(), tt.items, tt.n, &res)
		})
	}
}

func TestOrderKey(t *testing.T) {
	t.Parallel()
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	negZero := float32(math.Copysign(0, -1))
	// Each key must come strictly before the next.
	order := []struct {
		score float32
		id    int32
	}{
		{inf, 5}, {1, 1}, {1, 2}, {0.5, -3}, {0.5, 0}, {0, 1}, {negZero, 2}, {0, 3},
		{-0.5, 0}, {-1, 0}, {-inf, 0}, {nan, 0}, {nan, 1},
	}
	for i := 1; i < len(order); i++ {
		a, b := order[i-1], order[i]
		ka, kb := orderKey(a.score, a.id), orderKey(b.score, b.id)
		if ka <= kb {
			t.Errorf("orderKey(%v, %d) = %#x, not above orderKey(%v, %d) = %#x", a.score, a.id, ka, b.score, b.id, kb)
		}
	}
	if orderKey(0, 4) != orderKey(negZero, 4) {
		t.Errorf("orderKey tells -0 from 0")
	}
}

func TestCounts(t *testing.T) {
	t.Parallel()
	var c counts
	for _, n := range []int{1, 20, MaxN} {
		c.reset(n)
		want := map[int32]int32{}
		rng := rand.New(rand.NewPCG(uint64(n), 7))
		// 2n distinct keys, the most Apply ever inserts.
		keys := rng.Perm(1 << 20)[:2*n]
		for step := range 6 * n {
			k := int32(keys[rng.IntN(len(keys))])
			if step%7 == 0 {
				k = int32(1<<31 - 1) // the largest key
			}
			d := int32(rng.IntN(3)) - 1
			c.add(k, d)
			want[k] += d
		}
		for k, v := range want {
			if got := c.get(k); got != v {
				t.Fatalf("n=%d: get(%d) = %d, want %d", n, k, got, v)
			}
		}
		if got := c.get(1 << 21); got != 0 {
			t.Errorf("n=%d: get(absent) = %d", n, got)
		}
	}
}

// randomItems draws candidates with many ties, few categories and
// creators and every flag, so that every rule and every relaxation
// fires. With unique, IDs are a permutation of 0..n-1; otherwise they
// repeat.
func randomItems(rng *rand.Rand, n int, unique bool) []Item {
	items := make([]Item, n)
	perm := rng.Perm(n)
	for i := range items {
		id := int32(perm[i])
		if !unique {
			id = int32(rng.IntN(n/2 + 1))
		}
		score := float32(rng.IntN(20)) / 20
		switch rng.IntN(20) {
		case 0:
			score = -score
		case 1:
			score = float32(math.NaN())
		}
		cat, cre := int32(rng.IntN(5))-1, int32(rng.IntN(7))-1
		items[i] = Item{
			ID: id, Score: score, Category: cat, Creator: cre,
			Fresh:    rng.IntN(4) == 0,
			Promoted: rng.IntN(6) == 0,
			Flagged:  rng.IntN(10) == 0,
			Seen:     rng.IntN(5) == 0,
		}
	}
	return items
}

func randomConfig(rng *rand.Rand) Config {
	return Config{
		SuppressSeen:   rng.IntN(2) == 0,
		PromotedBoost:  []float64{0, 1, 1.2, 3}[rng.IntN(4)],
		MaxPromoted:    rng.IntN(4),
		MaxPerCategory: rng.IntN(5),
		MaxPerCreator:  rng.IntN(4),
		MinFresh:       rng.IntN(6),
	}
}

func sameList(a, b []Ranked) bool {
	return slices.EqualFunc(a, b, func(x, y Ranked) bool {
		same := func(p, q float32) bool { return p == q || p != p && q != q }
		ix, iy := x.Item, y.Item
		ix.Score, iy.Score = 0, 0
		return ix == iy && same(x.Item.Score, y.Item.Score) && same(x.Score, y.Score) && x.Rules == y.Rules && x.Relaxed == y.Relaxed
	})
}

// TestApplyRandom checks Apply on random inputs against a plain
// reference implementation of the same rules, against the invariants,
// and for independence from the input order; it reuses one Result
// throughout, as serving does.
func TestApplyRandom(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	var res, shuffled Result
	for iter := range 3000 {
		cfg := randomConfig(rng)
		r := mustNew(t, cfg)
		unique := iter%4 != 0
		items := randomItems(rng, rng.IntN(60), unique)
		n := rng.IntN(26)
		if err := r.Apply(&res, items, n); err != nil {
			t.Fatal(err)
		}
		wantItems, wantRelaxed := reference(cfg, items, n)
		if !sameList(res.Items, wantItems) || res.Relaxed != wantRelaxed {
			t.Fatalf("iteration %d, config %+v, n %d, items %+v:\ngot  %+v relaxed %v\nwant %+v relaxed %v",
				iter, cfg, n, items, res.Items, res.Relaxed, wantItems, wantRelaxed)
		}
		checkInvariants(t, cfg, items, n, &res)
		if !unique {
			continue
		}
		perm := slices.Clone(items)
		rng.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		if err := r.Apply(&shuffled, perm, n); err != nil {
			t.Fatal(err)
		}
		if !sameList(res.Items, shuffled.Items) || res.Relaxed != shuffled.Relaxed || res.Stats != shuffled.Stats {
			t.Fatalf("iteration %d: shuffling the input changed the result:\n%+v\n%+v", iter, res.Items, shuffled.Items)
		}
	}
}

// reference applies the rules the obvious way — sorting, maps, linear
// scans — to check Apply's heap and tables.
func reference(cfg Config, items []Item, n int) ([]Ranked, Rules) {
	if n == 0 {
		n = DefaultN
	}
	var boost float32
	if cfg.PromotedBoost > 1 {
		boost = float32(cfg.PromotedBoost)
	}
	final := func(x Item) float32 {
		if x.Promoted && boost != 0 {
			if x.Score >= 0 {
				return x.Score * boost
			}
			return x.Score / boost
		}
		return x.Score
	}
	order := func(a, b int) int {
		sa, sb := final(items[a]), final(items[b])
		if na, nb := sa != sa, sb != sb; na != nb {
			if na {
				return 1
			}
			return -1
		} else if !na && sa != sb {
			return -cmp.Compare(sa, sb)
		}
		return cmp.Or(cmp.Compare(items[a].ID, items[b].ID), cmp.Compare(a, b))
	}
	var tiers [2][]int
	for i, x := range items {
		switch {
		case x.Flagged:
		case x.Seen && cfg.SuppressSeen:
			tiers[1] = append(tiers[1], i)
		default:
			tiers[0] = append(tiers[0], i)
		}
	}
	slices.SortFunc(tiers[0], order)
	slices.SortFunc(tiers[1], order)

	type rp struct {
		idx     int
		sec     int
		rules   Rules
		relaxed Rules
	}
	var list []rp
	cats, cres := map[int32]int{}, map[int32]int{}
	promo := 0
	tally := func(x Item, d int) {
		if x.Category >= 0 {
			cats[x.Category] += d
		}
		if x.Creator >= 0 {
			cres[x.Creator] += d
		}
		if x.Promoted {
			promo += d
		}
	}
	exceeds := func(x Item, slack int) Rules {
		var b Rules
		if cfg.MaxPerCategory > 0 && x.Category >= 0 && cats[x.Category] >= cfg.MaxPerCategory+slack {
			b |= 1 << RuleCategoryCap
		}
		if cfg.MaxPerCreator > 0 && x.Creator >= 0 && cres[x.Creator] >= cfg.MaxPerCreator+slack {
			b |= 1 << RuleCreatorCap
		}
		if cfg.MaxPromoted > 0 && x.Promoted && promo >= cfg.MaxPromoted+slack {
			b |= 1 << RulePromoted
		}
		return b
	}
	seenUsed := false
	for t := range 2 {
		if len(list) >= n {
			break
		}
		if len(tiers[t]) == 0 {
			continue
		}
		seenUsed = t == 1
		var base Rules
		if t == 1 {
			base = 1 << RuleSeen
		}
		var skipped []int
		for _, i := range tiers[t] {
			if len(list) == n {
				break
			}
			if exceeds(items[i], 0) != 0 {
				skipped = append(skipped, i)
				continue
			}
			tally(items[i], 1)
			list = append(list, rp{idx: i, sec: 2 * t, relaxed: base})
		}
		for _, i := range skipped {
			if len(list) == n {
				break
			}
			b := exceeds(items[i], 0)
			tally(items[i], 1)
			list = append(list, rp{idx: i, sec: 2*t + 1, relaxed: base | b})
		}
	}

	var relaxed Rules
	if cfg.MinFresh > 0 {
		want := min(cfg.MinFresh, len(list))
		have := 0
		in := map[int]bool{}
		for _, p := range list {
			in[p.idx] = true
			if items[p.idx].Fresh {
				have++
			}
		}
		var cands []int
		for _, c := range tiers[0] {
			if !in[c] && items[c].Fresh {
				cands = append(cands, c)
			}
		}
		var victims []int
		for i := len(list) - 1; i >= 0; i-- {
			if !items[list[i].idx].Fresh {
				victims = append(victims, list[i].idx)
			}
		}
		for _, v := range victims {
			if have >= want || seenUsed {
				break
			}
			y := items[v]
			// A swap may not raise any count that ends above its cap.
			fits := func(c int) bool {
				x := items[c]
				for _, d := range []struct {
					cap      int
					in, same bool
					count    int
				}{
					{cfg.MaxPerCategory, x.Category >= 0, x.Category == y.Category, cats[x.Category]},
					{cfg.MaxPerCreator, x.Creator >= 0, x.Creator == y.Creator, cres[x.Creator]},
					{cfg.MaxPromoted, x.Promoted, y.Promoted, promo},
				} {
					after := d.count + 1
					if d.same {
						after--
					}
					if d.cap > 0 && d.in && after > d.cap && after > d.count {
						return false
					}
				}
				return true
			}
			c := slices.IndexFunc(cands, fits)
			if c < 0 {
				continue
			}
			x := items[cands[c]]
			p := rp{idx: cands[c], rules: 1 << RuleFreshMin}
			cands = slices.Delete(cands, c, c+1)
			tally(y, -1)
			list = slices.DeleteFunc(list, func(q rp) bool { return q.idx == v })
			tally(x, 1)
			if over := exceeds(x, 1); over != 0 {
				p.sec, p.relaxed = 1, over
			}
			at, _ := slices.BinarySearchFunc(list, p, func(a, b rp) int {
				return cmp.Or(cmp.Compare(a.sec, b.sec), order(a.idx, b.idx))
			})
			list = slices.Insert(list, at, p)
			have++
		}
		if have < want {
			relaxed |= 1 << RuleFreshMin
		}
	}
	out := []Ranked{}
	for _, p := range list {
		x := items[p.idx]
		rules := p.rules | p.relaxed
		if x.Promoted && boost != 0 {
			rules |= 1 << RulePromoted
		}
		relaxed |= p.relaxed
		out = append(out, Ranked{Item: x, Score: final(x), Rules: rules, Relaxed: p.relaxed})
	}
	return out, relaxed
}

// checkInvariants checks what must hold of any result, whatever the
// configuration, without reimplementing the selection.
func checkInvariants(t *testing.T, cfg Config, items []Item, n int, res *Result) {
	t.Helper()
	if n == 0 {
		n = DefaultN
	}
	eligible, seenEligible, freshUnseen, flagged := 0, 0, 0, 0
	for _, x := range items {
		switch {
		case x.Flagged:
			flagged++
		case x.Seen && cfg.SuppressSeen:
			seenEligible++
			eligible++
		default:
			if x.Fresh {
				freshUnseen++
			}
			eligible++
		}
	}
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("config %+v, n %d, items %+v, result %+v relaxed %v:\n%s", cfg, n, items, res.Items, res.Relaxed, fmt.Sprintf(format, args...))
	}
	if got, want := len(res.Items), min(n, eligible); got != want {
		fail("%d items, want %d", got, want)
	}
	st := &res.Stats
	if got := st.Count(RuleFlagged, ActionRemoved); got != int64(flagged) {
		fail("flagged/removed = %d, want %d", got, flagged)
	}
	if got := st.Count(RuleSeen, ActionRemoved); got != int64(seenEligible) {
		fail("seen/removed = %d, want %d", got, seenEligible)
	}

	var (
		cats, cres             = map[int32]int{}, map[int32]int{}
		catRelaxed, creRelaxed = map[int32]int{}, map[int32]int{}
		promo, promoRelaxed    int
		fresh, seen, boosted   int
		freshInserted          int
		anyRelaxed             Rules
		lastSec                = -1
		last                   Ranked
	)
	for i, x := range res.Items {
		it := x.Item
		if it.Flagged {
			fail("item %d (ID %d) is flagged", i, it.ID)
		}
		if x.Relaxed&^x.Rules != 0 {
			fail("item %d: Relaxed %v not within Rules %v", i, x.Relaxed, x.Rules)
		}
		anyRelaxed |= x.Relaxed
		if it.Fresh {
			fresh++
		}
		if x.Rules.Has(RuleFreshMin) {
			freshInserted++
			if !it.Fresh {
				fail("item %d: fresh_min rule on a non-fresh item", i)
			}
		}
		isSeen := it.Seen && cfg.SuppressSeen
		if isSeen != x.Relaxed.Has(RuleSeen) {
			fail("item %d: seen %v but Relaxed %v", i, it.Seen, x.Relaxed)
		}
		if isSeen {
			seen++
		}
		boost := cfg.PromotedBoost > 1 && it.Promoted
		if boost {
			boosted++
		}
		if boost != x.Rules.Has(RulePromoted) && !x.Relaxed.Has(RulePromoted) {
			fail("item %d: promoted %v, boost %v, Rules %v", i, it.Promoted, cfg.PromotedBoost, x.Rules)
		}
		if !boost && x.Score != it.Score && x.Score == x.Score {
			fail("item %d: score %v changed to %v without a boost", i, it.Score, x.Score)
		}
		if cfg.MaxPerCategory > 0 && it.Category >= 0 {
			cats[it.Category]++
			if x.Relaxed.Has(RuleCategoryCap) {
				catRelaxed[it.Category]++
			}
		}
		if cfg.MaxPerCreator > 0 && it.Creator >= 0 {
			cres[it.Creator]++
			if x.Relaxed.Has(RuleCreatorCap) {
				creRelaxed[it.Creator]++
			}
		}
		if cfg.MaxPromoted > 0 && it.Promoted {
			promo++
			if x.Relaxed.Has(RulePromoted) {
				promoRelaxed++
			}
		}
		// Sections: kept, relaxed caps, seen kept, seen relaxed; each in
		// score order, ties by ID.
		sec := 0
		if x.Relaxed&^(1<<RuleSeen) != 0 {
			sec = 1
		}
		if isSeen {
			sec += 2
		}
		if sec < lastSec {
			fail("item %d in section %d after section %d", i, sec, lastSec)
		}
		if sec == lastSec && orderKey(x.Score, it.ID) > orderKey(last.Score, last.Item.ID) {
			fail("item %d (%v, ID %d) ranks above item %d (%v, ID %d)", i, x.Score, it.ID, i-1, last.Score, last.Item.ID)
		}
		lastSec, last = sec, x
	}
	for c, k := range cats {
		if k > cfg.MaxPerCategory+catRelaxed[c] {
			fail("category %d: %d items, cap %d, %d marked relaxed", c, k, cfg.MaxPerCategory, catRelaxed[c])
		}
	}
	for c, k := range cres {
		if k > cfg.MaxPerCreator+creRelaxed[c] {
			fail("creator %d: %d items, cap %d, %d marked relaxed", c, k, cfg.MaxPerCreator, creRelaxed[c])
		}
	}
	if promo > cfg.MaxPromoted+promoRelaxed {
		fail("%d promoted items, cap %d, %d marked relaxed", promo, cfg.MaxPromoted, promoRelaxed)
	}
	if seen > 0 && len(res.Items)-seen != eligible-seenEligible {
		fail("%d seen items fill the list while %d of %d unseen are in it", seen, len(res.Items)-seen, eligible-seenEligible)
	}
	if res.Relaxed&^(1<<RuleFreshMin) != anyRelaxed {
		fail("Result.Relaxed %v, items relax %v", res.Relaxed, anyRelaxed)
	}
	want := min(cfg.MinFresh, len(res.Items))
	if fresh < want != res.Relaxed.Has(RuleFreshMin) {
		fail("%d fresh items for a minimum of %d, Result.Relaxed %v", fresh, want, res.Relaxed)
	}
	if got := st.Count(RuleFreshMin, ActionShort); got != int64(max(0, want-fresh)) {
		fail("fresh_min/short = %d, want %d", got, max(0, want-fresh))
	}
	// With no cap to respect and no seen item held back, every fresh
	// candidate can come in: the minimum is met whenever they suffice.
	if cfg.MaxPerCategory == 0 && cfg.MaxPerCreator == 0 && cfg.MaxPromoted == 0 && seen == 0 &&
		fresh < want && freshUnseen >= want {
		fail("%d fresh items for a minimum of %d, with %d fresh candidates and no caps", fresh, want, freshUnseen)
	}
	if got := st.Count(RuleFreshMin, ActionInserted); got != int64(freshInserted) || st.Count(RuleFreshMin, ActionRemoved) != got {
		fail("fresh_min inserted %d, removed %d, items marked %d", got, st.Count(RuleFreshMin, ActionRemoved), freshInserted)
	}
	if got := st.Count(RuleSeen, ActionInserted); got != int64(seen) {
		fail("seen/inserted = %d, want %d", got, seen)
	}
	if got := st.Count(RulePromoted, ActionBoosted); got != int64(boosted) {
		fail("promoted/boosted = %d, want %d", got, boosted)
	}
	for r := range numRules {
		for a := range numActions {
			if st.Count(r, a) != 0 && !slices.Contains(validActions[r], a) {
				fail("%v/%v = %d, a pair outside validActions", r, a, st.Count(r, a))
			}
		}
	}
}

func TestApplyAllocs(t *testing.T) {
	r := mustNew(t, DefaultConfig())
	items := benchItems(500)
	var res Result
	for _, n := range []int{DefaultN, MaxN} {
		if err := r.Apply(&res, items, n); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []int{DefaultN, MaxN} {
		allocs := testing.AllocsPerRun(50, func() {
			if err := r.Apply(&res, items, n); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("n=%d: %v allocations per Apply on a warm Result, want 0", n, allocs)
		}
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestRecord(t *testing.T) {
	var s, batch Stats
	s.n[RuleFlagged][ActionRemoved] = 2
	s.n[RuleFreshMin][ActionShort] = 1
	batch.Add(&s)
	batch.Add(&s)
	counters := []prometheus.Counter{
		actionsTotal.WithLabelValues("flagged", "removed"),
		actionsTotal.WithLabelValues("fresh_min", "short"),
		actionsTotal.WithLabelValues("category_cap", "skipped"),
	}
	var before, delta []float64
	for _, c := range counters {
		before = append(before, counterValue(t, c))
	}
	Record(&batch)
	for i, c := range counters {
		delta = append(delta, counterValue(t, c)-before[i])
	}
	if !slices.Equal(delta, []float64{4, 2, 0}) {
		t.Fatalf("counter increases %v, want [4 2 0]", delta)
	}

	// Every valid pair is exported before its first event.
	ch := make(chan prometheus.Metric, 64)
	actionsTotal.Collect(ch)
	close(ch)
	series := map[string]bool{}
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err != nil {
			t.Fatal(err)
		}
		labels := map[string]string{}
		for _, l := range pb.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		series[labels["rule"]+"/"+labels["action"]] = true
	}
	for r, actions := range validActions {
		for _, a := range actions {
			if key := Rule(r).String() + "/" + a.String(); !series[key] {
				t.Errorf("no series for %s", key)
			}
		}
	}
}

// benchItems draws a realistic candidate set: probabilities from the
// ranker, 40 categories, 150 creators, a tenth fresh, 5% promoted, 1%
// flagged and a tenth seen.
func benchItems(n int) []Item {
	rng := rand.New(rand.NewPCG(42, 42))
	items := make([]Item, n)
	for i := range items {
		items[i] = Item{
			ID:       int32(rng.IntN(200_000)),
			Score:    rng.Float32(),
			Category: int32(rng.IntN(40)),
			Creator:  int32(rng.IntN(150)),
			Fresh:    rng.IntN(10) == 0,
			Promoted: rng.IntN(20) == 0,
			Flagged:  rng.IntN(100) == 0,
			Seen:     rng.IntN(10) == 0,
		}
	}
	return items
}

func BenchmarkApply(b *testing.B) {
	r := mustNew(b, DefaultConfig())
	items := benchItems(500)
	for _, n := range []int{DefaultN, MaxN} {
		b.Run(fmt.Sprintf("candidates=500/n=%d", n), func(b *testing.B) {
			var res Result
			b.ReportAllocs()
			for b.Loop() {
				if err := r.Apply(&res, items, n); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
