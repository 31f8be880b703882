package topk

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestHeapKeepsTheBest(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tt := range []struct{ n, k int }{{0, 5}, {3, 5}, {5, 5}, {100, 1}, {1000, 37}, {50, 0}} {
		all := make([]Hit, tt.n)
		for i := range all {
			// Few distinct scores, so ties are common.
			all[i] = Hit{ID: int32(rng.IntN(1000)) - 500, Score: float32(rng.IntN(20))}
		}
		want := slices.Clone(all)
		slices.SortFunc(want, func(a, b Hit) int { return cmp.Or(cmp.Compare(b.Score, a.Score), cmp.Compare(a.ID, b.ID)) })
		want = want[:min(tt.k, tt.n)]
		dst := make([]Hit, 0, tt.k)
		h := New(dst, tt.k)
		for _, x := range all {
			h.Push(x)
		}
		if h.Len() != len(want) || h.Full() != (tt.n >= tt.k) {
			t.Errorf("n %d k %d: Len %d, Full %v", tt.n, tt.k, h.Len(), h.Full())
		}
		if got := h.Sorted(); !slices.Equal(got, want) {
			t.Errorf("n %d k %d: %v, want %v", tt.n, tt.k, got, want)
		}
	}
}

func TestPushUnless(t *testing.T) {
	t.Parallel()
	h := New(nil, 2)
	var asked []int32
	exclude := func(id int32) bool {
		asked = append(asked, id)
		return id == 3
	}
	for _, x := range []Hit{{1, 5}, {2, 4}, {3, 9}, {4, 1}, {5, 6}} {
		h.PushUnless(x, exclude)
	}
	if got := h.Sorted(); !slices.Equal(got, []Hit{{5, 6}, {1, 5}}) {
		t.Errorf("kept %v", got)
	}
	// Item 4 (score 1) could not beat the worst kept hit: never asked.
	if !slices.Equal(asked, []int32{1, 2, 3, 5}) {
		t.Errorf("exclude asked about %v", asked)
	}
}

func TestAboveBreaksTiesByID(t *testing.T) {
	t.Parallel()
	if !(Hit{1, 2}).Above(Hit{2, 2}) || (Hit{2, 2}).Above(Hit{1, 2}) || (Hit{1, 2}).Above(Hit{1, 2}) || !(Hit{9, 3}).Above(Hit{1, 2}) {
		t.Error("Above does not order by score, then lower id")
	}
}
