package eval

import (
	"math"
	"slices"
	"testing"
)

// tiny is a training log of four users over five items; ratings >= 4 are
// positives.
//
//	user 0 likes 0, 1, 2    user 1 likes 0, 1    user 2 likes 1, 3
//	user 3 likes 0 and rated 4 with 2 (not a positive)
var tiny = []Interaction{
	{0, 0, 5, 1}, {0, 1, 4, 2}, {0, 2, 5, 3},
	{1, 0, 4, 4}, {1, 1, 5, 5},
	{2, 1, 4, 6}, {2, 3, 5, 7},
	{3, 0, 5, 8}, {3, 4, 2, 9},
}

func TestPopular(t *testing.T) {
	t.Parallel()
	p := NewPopular(tiny, 5, 4)
	// Positives: item 1 ×3, item 0 ×3, item 2 ×1, item 3 ×1, item 4 ×0;
	// ties by lower item.
	c := &Case{User: 9}
	if got := p.Recommend(nil, c, 5); !slices.Equal(got, []int32{0, 1, 2, 3, 4}) {
		t.Fatalf("order %v, want [0 1 2 3 4]", got)
	}
	c.Seen = []int32{0, 2}
	if got := p.Recommend(nil, c, 2); !slices.Equal(got, []int32{1, 3}) {
		t.Fatalf("excluding 0 and 2: %v, want [1 3]", got)
	}
}

func TestCoOccurrence(t *testing.T) {
	t.Parallel()
	m, err := NewCoOccurrence(tiny, 5, 4)
	if err != nil {
		t.Fatal(err)
	}
	// Likers: item 0 {0,1,3}, item 1 {0,1,2}, item 2 {0}, item 3 {2}.
	// co(0,1)=2 → 2/√9; co(0,2)=1 → 1/√3; co(1,2)=1 → 1/√3; co(1,3)=1 → 1/√3.
	want := map[[2]int]float64{{0, 1}: 2.0 / 3, {0, 2}: 1 / math.Sqrt(3), {1, 2}: 1 / math.Sqrt(3), {1, 3}: 1 / math.Sqrt(3)}
	for i := 0; i < 5; i++ {
		for j := 0; j < 5; j++ {
			w := want[[2]int{min(i, j), max(i, j)}]
			if got := float64(m.sim[i*5+j]); math.Abs(got-w) > 1e-6 {
				t.Fatalf("sim(%d,%d) = %v, want %v", i, j, got, w)
			}
		}
	}
	// A user who liked 0 and saw 0 and 4: item 1 scores 2/3, item 2 1/√3,
	// item 3 0.
	c := &Case{Seen: []int32{0, 4}, Liked: []int32{0}}
	if got := m.Recommend(nil, c, 3); !slices.Equal(got, []int32{1, 2, 3}) {
		t.Fatalf("recommend %v, want [1 2 3]", got)
	}
	// Liking 2 and 3 as well: item 1 = 2/3 + 1/√3 + 1/√3 beats the rest.
	c = &Case{Seen: []int32{0, 2, 3}, Liked: []int32{0, 2, 3}}
	if got := m.Recommend(nil, c, 1); !slices.Equal(got, []int32{1}) {
		t.Fatalf("recommend %v, want [1]", got)
	}
}

func TestEvaluateAverages(t *testing.T) {
	t.Parallel()
	cases := []Case{
		{User: 0, Relevant: []int32{0}},
		{User: 1, Relevant: []int32{3}},
	}
	fixed := recommenderFunc(func(dst []int32, c *Case, k int) []int32 {
		return append(dst[:0], []int32{0, 1, 2}[:min(k, 3)]...)
	})
	m := Evaluate(cases, fixed, 10)
	// User 0 hits at rank 1 (NDCG 1, recall 1); user 1 misses.
	if !near(m.NDCG10, 0.5) || !near(m.Recall20, 0.5) || !near(m.Coverage, 0.3) || m.Users != 2 {
		t.Fatalf("metrics %+v, want NDCG@10 0.5, Recall@20 0.5, coverage 0.3, 2 users", m)
	}
}

type recommenderFunc func(dst []int32, c *Case, k int) []int32

func (f recommenderFunc) Recommend(dst []int32, c *Case, k int) []int32 { return f(dst, c, k) }
