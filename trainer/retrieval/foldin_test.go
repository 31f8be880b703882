package retrieval

import (
	"errors"
	"math"
	"slices"
	"testing"
)

func TestEmbedReproducesTrainedUsers(t *testing.T) {
	t.Parallel()
	const users, items = 200, 300
	data := synthInteractions(users, items, 25, 9)
	m, err := Train(t.Context(), users, items, data, Config{Factors: 32, Iterations: 5, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	e, err := m.Embedder()
	if err != nil {
		t.Fatal(err)
	}
	byUser := make([][]Interaction, users)
	for _, it := range data {
		byUser[it.User] = append(byUser[it.User], it)
	}
	var v []float32
	for u, its := range byUser {
		ids := make([]int32, len(its))
		strengths := make([]float32, len(its))
		for k, it := range its {
			ids[k], strengths[k] = it.Item, it.Strength
		}
		// Reverse the order: Embed must not depend on it.
		slices.Reverse(ids)
		slices.Reverse(strengths)
		if v, err = e.Embed(v, ids, strengths); err != nil {
			t.Fatal(err)
		}
		// Bit for bit: the same solve over the same sums in the same order.
		want := m.User(u)
		for j := range want {
			if v[j] != want[j] {
				t.Fatalf("user %d: fold-in %v differs from trained %v at %d", u, v[j], want[j], j)
			}
		}
	}
}

func TestEmbedMergesRepeats(t *testing.T) {
	t.Parallel()
	m, err := Train(t.Context(), 50, 60, synthInteractions(50, 60, 10, 2), Config{Factors: 8, Iterations: 3})
	if err != nil {
		t.Fatal(err)
	}
	e, err := m.Embedder()
	if err != nil {
		t.Fatal(err)
	}
	a, err := e.Embed(nil, []int32{3, 7, 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.Embed(nil, []int32{7, 3}, []float32{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a, b) {
		t.Fatalf("item 3 twice at strength 1 = %v, once at strength 2 = %v", a, b)
	}
}

func TestEmbedRejects(t *testing.T) {
	t.Parallel()
	e, err := NewEmbedder(make([]float32, 4*10), 4, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Embed(nil, nil, nil); !errors.Is(err, ErrNoItems) {
		t.Errorf("empty: err = %v, want ErrNoItems", err)
	}
	for name, call := range map[string]func() error{
		"item out of range": func() error { _, err := e.Embed(nil, []int32{10}, nil); return err },
		"negative item":     func() error { _, err := e.Embed(nil, []int32{-1}, nil); return err },
		"strength count":    func() error { _, err := e.Embed(nil, []int32{1, 2}, []float32{1}); return err },
		"negative strength": func() error { _, err := e.Embed(nil, []int32{1}, []float32{-1}); return err },
		"NaN strength":      func() error { _, err := e.Embed(nil, []int32{1}, []float32{float32(math.NaN())}); return err },
	} {
		if call() == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := NewEmbedder(make([]float32, 10), 4, 1, 1); err == nil {
		t.Error("NewEmbedder accepted 10 values at 4 dims")
	}
	if _, err := NewEmbedder(make([]float32, 8), 4, 0, 1); err == nil {
		t.Error("NewEmbedder accepted regularization 0")
	}
}

// BenchmarkEmbed folds in 50 recent items at d=64 over a 20,000-item
// catalogue: the serving cost of embedding a session.
func BenchmarkEmbed(b *testing.B) {
	const items, d = 20_000, 64
	f := clusteredVectors(items, d, 100, 1)
	e, err := NewEmbedder(f, d, DefaultRegularization, DefaultAlpha)
	if err != nil {
		b.Fatal(err)
	}
	recent := make([]int32, 50)
	for i := range recent {
		recent[i] = int32(i * 397 % items)
	}
	dst := make([]float32, d)
	b.ReportAllocs()
	for b.Loop() {
		if dst, err = e.Embed(dst, recent, nil); err != nil {
			b.Fatal(err)
		}
	}
}
