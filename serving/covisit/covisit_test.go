package covisit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)

// visit is an interaction in a compact form for tests: minutes after t0.
func visit(user, item string, minute int, w float32) Interaction {
	return Interaction{User: user, Item: item, Time: t0.Add(time.Duration(minute) * time.Minute), Weight: w}
}

func build(t testing.TB, in []Interaction, cfg Config) *Table {
	t.Helper()
	tb, err := Build(t.Context(), in, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// neighboursOf returns item id's neighbours as "id:weight" with weights to
// four places, heaviest first.
func neighboursOf(t testing.TB, tb *Table, id string) []string {
	t.Helper()
	i, ok := tb.Lookup(id)
	if !ok {
		t.Fatalf("item %s is not in the table", id)
	}
	nbr, wt := tb.Neighbours(i)
	out := []string{}
	for k, j := range nbr {
		out = append(out, fmt.Sprintf("%s:%.4f", tb.ID(j), wt[k]))
	}
	return out
}

func TestNeighboursWithinWindowAndUser(t *testing.T) {
	t.Parallel()
	in := []Interaction{
		// u1: a and b ten minutes apart; c three hours later.
		visit("u1", "a", 0, 1), visit("u1", "b", 10, 1), visit("u1", "c", 190, 1),
		// d and e at the same minute, but by different users.
		visit("u2", "d", 0, 1), visit("u3", "e", 0, 1),
		// u4: f g h i one minute apart; with MaxDistance 2, f–i are 3
		// steps apart.
		visit("u4", "f", 0, 1), visit("u4", "g", 1, 1), visit("u4", "h", 2, 1), visit("u4", "i", 3, 1),
	}
	tb := build(t, in, Config{MaxDistance: 2})
	if tb.Len() != 9 || tb.ID(0) != "a" || tb.ID(8) != "i" {
		t.Fatalf("%d items, first %s: want a..i in id order", tb.Len(), tb.ID(0))
	}
	for _, tt := range []struct {
		item string
		want []string
	}{
		{"a", []string{"b:1.0000"}},
		{"b", []string{"a:1.0000"}},
		{"c", []string{}}, // past the window from b
		{"d", []string{}}, // e was another user's
		{"e", []string{}},
		{"f", []string{"g:1.0000", "h:0.8000"}}, // i is 3 steps away
		{"g", []string{"f:1.0000", "h:1.0000", "i:0.8000"}},
	} {
		if got := neighboursOf(t, tb, tt.item); !slices.Equal(got, tt.want) {
			t.Errorf("neighbours of %s = %v, want %v", tt.item, got, tt.want)
		}
	}
	// A wider window joins b and c, and then a and c.
	if got := neighboursOf(t, build(t, in, Config{Window: 3 * time.Hour}), "c"); !slices.Equal(got, []string{"b:1.0000"}) {
		t.Errorf("with a 3h window, neighbours of c = %v", got)
	}
	if got := neighboursOf(t, build(t, in, Config{Window: 4 * time.Hour}), "c"); !slices.Equal(got, []string{"b:1.0000", "a:0.8000"}) {
		t.Errorf("with a 4h window, neighbours of c = %v", got)
	}
}

func TestPairWeights(t *testing.T) {
	t.Parallel()
	tb := build(t, []Interaction{
		// A view, a click and a purchase of one item are one step, with
		// the largest strength: x and y are adjacent.
		visit("u1", "x", 0, 1), visit("u1", "x", 1, 3), visit("u1", "x", 2, 2), visit("u1", "y", 3, 4),
		// One user bouncing between p and q counts the pair once.
		visit("u2", "p", 0, 1), visit("u2", "q", 1, 1), visit("u2", "p", 2, 1), visit("u2", "q", 3, 1),
		visit("u3", "p", 0, 1), visit("u3", "r", 1, 1),
	}, Config{})
	// C(x, y) = sqrt(3·4); P(x) = 3, P(y) = 4: the cosine is 1.
	if got := neighboursOf(t, tb, "x"); !slices.Equal(got, []string{"y:1.0000"}) {
		t.Errorf("neighbours of x = %v", got)
	}
	// C(p, q) = 1 (u2 once), P(p) = 2 (u2, u3), P(q) = 1: 1/√2; the same
	// for r, ties to the lower index.
	if got := neighboursOf(t, tb, "p"); !slices.Equal(got, []string{"q:0.7071", "r:0.7071"}) {
		t.Errorf("neighbours of p = %v", got)
	}
}

func TestPopularityNormalisation(t *testing.T) {
	t.Parallel()
	var in []Interaction
	// Users 0-2 visit q then x; users 3-7 q then pop; users 8-102 only
	// pop.
	for u := range 103 {
		user := fmt.Sprintf("u%03d", u)
		switch {
		case u < 3:
			in = append(in, visit(user, "q", 0, 1), visit(user, "x", 1, 1))
		case u < 8:
			in = append(in, visit(user, "q", 0, 1), visit(user, "pop", 1, 1))
		default:
			in = append(in, visit(user, "pop", 0, 1))
		}
	}
	tb := build(t, in, Config{})
	// pop co-occurs with q more often (5 users against 3), but pop is
	// everyone's: 3/√(8·3) = 0.6124 for x against 5/√(8·100) = 0.1768.
	if got := neighboursOf(t, tb, "q"); !slices.Equal(got, []string{"x:0.6124", "pop:0.1768"}) {
		t.Errorf("neighbours of q = %v, want x above the popular item", got)
	}
}

// recencyTable has items r0..r3, each co-visited with its own c0..c3 only,
// all with weight 1.
func recencyTable(t testing.TB) *Table {
	var in []Interaction
	for k := range 4 {
		user := fmt.Sprintf("u%d", k)
		in = append(in, visit(user, fmt.Sprintf("r%d", k), 0, 1), visit(user, fmt.Sprintf("c%d", k), 1, 1))
	}
	return build(t, in, Config{RecencyDecay: 0.5})
}

func idx(t testing.TB, tb *Table, ids ...string) []int32 {
	t.Helper()
	out := make([]int32, len(ids))
	for k, id := range ids {
		i, ok := tb.Lookup(id)
		if !ok {
			t.Fatalf("no item %s", id)
		}
		out[k] = i
	}
	return out
}

func hitsOf(tb *Table, hits []Hit) []string {
	out := []string{}
	for _, h := range hits {
		out = append(out, fmt.Sprintf("%s:%.4f", tb.ID(h.Item), h.Score))
	}
	return out
}

func TestRecommendRecencyAndExclude(t *testing.T) {
	t.Parallel()
	tb := recencyTable(t)
	for _, tt := range []struct {
		name    string
		recent  []string
		k       int
		exclude []string
		want    []string
	}{
		{"newest first", []string{"r2", "r0", "r3"}, 10, nil, []string{"c2:1.0000", "c0:0.5000", "c3:0.2500"}},
		{"reversed", []string{"r3", "r0", "r2"}, 10, nil, []string{"c3:1.0000", "c0:0.5000", "c2:0.2500"}},
		{"k", []string{"r2", "r0", "r3"}, 2, nil, []string{"c2:1.0000", "c0:0.5000"}},
		{"exclude", []string{"r2", "r0", "r3"}, 2, []string{"c2"}, []string{"c0:0.5000", "c3:0.2500"}},
		// A repeated item adds up: 1 + 0.25.
		{"repeat", []string{"r1", "r0", "r1"}, 10, nil, []string{"c1:1.2500", "c0:0.5000"}},
		{"nothing recent", nil, 10, nil, []string{}},
		{"k 0", []string{"r0"}, 0, nil, []string{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			excl := map[int32]bool{}
			for _, i := range idx(t, tb, tt.exclude...) {
				excl[i] = true
			}
			got := tb.Recommend(nil, idx(t, tb, tt.recent...), tt.k, func(i int32) bool { return excl[i] })
			if s := hitsOf(tb, got); !slices.Equal(s, tt.want) {
				t.Errorf("Recommend = %v, want %v", s, tt.want)
			}
		})
	}
	// Indexes the table does not have are skipped but keep their place:
	// r0 is third, so weighs 0.25.
	got := tb.Recommend(nil, []int32{-1, int32(tb.Len()), idx(t, tb, "r0")[0]}, 5, nil)
	if s := hitsOf(tb, got); !slices.Equal(s, []string{"c0:0.2500"}) {
		t.Errorf("with unknown recent items: %v", s)
	}
}

func TestRecommendScoresAndScorer(t *testing.T) {
	t.Parallel()
	tb := build(t, sessions(300, 400, 6000, 1), Config{Neighbours: 20})
	rng := rand.New(rand.NewPCG(2, 2))
	s := tb.NewScorer()
	dst := make([]Hit, 0, 30)
	for range 50 {
		recent := make([]int32, 1+rng.IntN(25))
		for k := range recent {
			recent[k] = int32(rng.IntN(tb.Len()))
		}
		exclude := func(i int32) bool { return i%7 == 0 }
		// The brute force: a dense score per item.
		want := make([]float64, tb.Len())
		w := 1.0
		for _, r := range recent {
			nbr, wt := tb.Neighbours(r)
			for k, j := range nbr {
				want[j] += w * float64(wt[k])
			}
			w *= tb.RecencyDecay()
		}
		dst = s.Recommend(dst, recent, 30, exclude)
		if pooled := tb.Recommend(nil, recent, 30, exclude); !slices.Equal(pooled, dst) {
			t.Fatalf("Table.Recommend %v, Scorer.Recommend %v", pooled, dst)
		}
		candidates := 0
		for j, v := range want {
			if v > 0 && !exclude(int32(j)) {
				candidates++
			}
		}
		if len(dst) != min(30, candidates) {
			t.Fatalf("%d hits of %d candidates", len(dst), candidates)
		}
		for k, h := range dst {
			if exclude(h.Item) || math.Abs(float64(h.Score)-want[h.Item]) > 1e-5 {
				t.Fatalf("hit %d: item %d score %v, want %v (excluded %v)", k, h.Item, h.Score, want[h.Item], exclude(h.Item))
			}
			if k > 0 && !(dst[k-1].Score > h.Score || dst[k-1].Score == h.Score && dst[k-1].Item < h.Item) {
				t.Fatalf("hits %d and %d out of order: %v, %v", k-1, k, dst[k-1], h)
			}
		}
		// Nothing left out scores above the last hit.
		if len(dst) > 0 {
			last := dst[len(dst)-1]
			for j, v := range want {
				if !exclude(int32(j)) && !slices.ContainsFunc(dst, func(h Hit) bool { return h.Item == int32(j) }) && float32(v) > last.Score+1e-5 {
					t.Fatalf("item %d scores %v, above the last hit %v", j, v, last)
				}
			}
		}
	}
}

// TestRecommendAllocs is not parallel: AllocsPerRun counts the whole
// process's allocations.
func TestRecommendAllocs(t *testing.T) {
	tb := build(t, sessions(300, 400, 6000, 1), Config{})
	s := tb.NewScorer()
	dst := make([]Hit, 0, 30)
	recent := []int32{1, 2, 3, 5, 8, 13, 21, 34, 55, 89}
	exclude := func(i int32) bool { return i%2 == 0 }
	if allocs := testing.AllocsPerRun(100, func() { dst = s.Recommend(dst, recent, 30, exclude) }); allocs != 0 {
		t.Errorf("Scorer.Recommend allocates %v times per call", allocs)
	}
	if len(dst) == 0 {
		t.Fatal("no recommendations to measure")
	}
}

// sessions simulates users browsing: each session picks a topic and visits
// a few of its items a minute or two apart; sessions are days apart.
func sessions(users, items, n int, seed uint64) []Interaction {
	rng := rand.New(rand.NewPCG(seed, 7))
	const topics = 20
	out := make([]Interaction, 0, n)
	for len(out) < n {
		u := rng.IntN(users)
		topic := rng.IntN(topics)
		at := t0.Add(time.Duration(rng.IntN(30*24)) * time.Hour)
		for range 2 + rng.IntN(8) {
			item := topic + topics*rng.IntN(items/topics)
			if rng.IntN(10) == 0 {
				item = rng.IntN(items) // a detour
			}
			out = append(out, Interaction{
				User: fmt.Sprintf("user-%04d", u), Item: fmt.Sprintf("item-%05d", item),
				Time: at, Weight: float32(1 + rng.IntN(3)),
			})
			at = at.Add(time.Duration(30+rng.IntN(120)) * time.Second)
		}
	}
	return out
}

func saved(t testing.TB, tb *Table) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := tb.Save(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestBuildDeterministic(t *testing.T) {
	t.Parallel()
	in := sessions(200, 300, 5000, 3)
	one := build(t, in, Config{Workers: 1})
	shuffled := slices.Clone(in)
	rand.New(rand.NewPCG(9, 9)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	two := build(t, shuffled, Config{Workers: max(2, runtime.GOMAXPROCS(0))})
	if !bytes.Equal(saved(t, one), saved(t, two)) {
		t.Fatal("the same interactions in another order, on more workers, built another table")
	}
	// Topics make neighbours: most items have some, and a list's
	// neighbours mostly share its topic.
	var with, same, all int
	for i := range int32(one.Len()) {
		nbr, _ := one.Neighbours(i)
		if len(nbr) > 0 {
			with++
		}
		topic := func(j int32) int { var n int; fmt.Sscanf(one.ID(j), "item-%d", &n); return n % 20 }
		for _, j := range nbr[:min(5, len(nbr))] {
			all++
			if topic(j) == topic(i) {
				same++
			}
		}
	}
	if with < one.Len()*9/10 || same < all*8/10 {
		t.Errorf("%d of %d items have neighbours, %d of %d top-5 neighbours share the topic", with, one.Len(), same, all)
	}
	// Symmetric weights: C and the normalisation are.
	for i := range int32(one.Len()) {
		nbr, wt := one.Neighbours(i)
		for k, j := range nbr {
			back, bw := one.Neighbours(j)
			if p := slices.Index(back, i); p >= 0 && bw[p] != wt[k] {
				t.Fatalf("w(%d, %d) = %v but w(%d, %d) = %v", i, j, wt[k], j, i, bw[p])
			}
		}
	}
}

func TestBuildRefuses(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		in   []Interaction
		cfg  Config
		want string
	}{
		{"no user", []Interaction{visit("", "a", 0, 1)}, Config{}, `user "" and item "a"`},
		{"zero weight", []Interaction{visit("u", "a", 0, 1), visit("u", "b", 0, 0)}, Config{}, `interaction 1 (user "u", item "b") has weight 0`},
		{"NaN weight", []Interaction{visit("u", "a", 0, float32(math.NaN()))}, Config{}, "weight NaN"},
		{"config", nil, Config{Window: -time.Second, MaxDistance: -1, DistanceDecay: 1.5, Neighbours: 5000, RecencyDecay: -1, Workers: -1},
			"window -1s"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Build(t.Context(), tt.in, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Build: %v, want %q", err, tt.want)
			}
		})
	}
	err := Config{MaxDistance: -1, DistanceDecay: 1.5, Neighbours: 5000, RecencyDecay: -1, Workers: -1}.Validate()
	for _, want := range []string{"max distance -1", "distance decay 1.5", "neighbours 5000", "recency decay -1", "workers -1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v, want %q", err, want)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Build(ctx, sessions(10, 100, 100, 1), Config{}); !errors.Is(err, ctx.Err()) {
		t.Errorf("Build on a cancelled context: %v", err)
	}
	empty := build(t, nil, Config{})
	if empty.Len() != 0 || len(empty.Recommend(nil, []int32{0}, 5, nil)) != 0 {
		t.Errorf("empty table: %d items", empty.Len())
	}
}
