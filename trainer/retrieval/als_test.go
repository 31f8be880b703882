package retrieval

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// synthInteractions draws implicit feedback from hidden tastes: each user
// likes items whose hidden vector is close to theirs.
func synthInteractions(users, items, perUser int, seed uint64) []Interaction {
	rng := rand.New(rand.NewPCG(seed, 1))
	const k = 8
	uv := make([]float64, users*k)
	iv := make([]float64, items*k)
	for i := range uv {
		uv[i] = rng.NormFloat64()
	}
	for i := range iv {
		iv[i] = rng.NormFloat64()
	}
	var out []Interaction
	scores := make([]float64, items)
	order := make([]int32, items)
	for u := 0; u < users; u++ {
		for i := 0; i < items; i++ {
			s := 0.0
			for j := 0; j < k; j++ {
				s += uv[u*k+j] * iv[i*k+j]
			}
			scores[i] = s + rng.NormFloat64()
			order[i] = int32(i)
		}
		slices.SortFunc(order, func(a, b int32) int {
			return -cmpFloat(scores[a], scores[b])
		})
		for _, i := range order[:perUser] {
			out = append(out, Interaction{User: int32(u), Item: i, Strength: 1 + float32(rng.IntN(3))})
		}
	}
	return out
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func TestTrainDeterministic(t *testing.T) {
	t.Parallel()
	data := synthInteractions(300, 500, 20, 7)
	train := func(seed uint64, workers int) *Model {
		t.Helper()
		m, err := Train(t.Context(), 300, 500, data, Config{Factors: 16, Iterations: 4, Seed: seed, Workers: workers})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a := train(42, 1)
	for _, workers := range []int{1, 2, 5} {
		b := train(42, workers)
		if !slices.Equal(a.UserFactors, b.UserFactors) || !slices.Equal(a.ItemFactors, b.ItemFactors) {
			t.Fatalf("seed 42 with %d workers gave different factors than with 1", workers)
		}
	}
	if c := train(43, 2); slices.Equal(a.UserFactors, c.UserFactors) {
		t.Fatal("seeds 42 and 43 gave identical user factors")
	}
}

func TestTrainProgressLossFalls(t *testing.T) {
	t.Parallel()
	data := synthInteractions(200, 300, 15, 3)
	var got []Progress
	m, err := Train(t.Context(), 200, 300, data, Config{Factors: 8, Iterations: 6, Progress: func(p Progress) { got = append(got, p) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 6 {
		t.Fatalf("%d progress calls, want 6", len(got))
	}
	for i, p := range got {
		if p.Iteration != i+1 || p.Iterations != 6 || !(p.Loss > 0) {
			t.Fatalf("progress %d = %+v", i, p)
		}
		// ALS is a block-coordinate descent: every exact solve lowers
		// the objective (allow float32 rounding).
		if i > 0 && p.Loss > got[i-1].Loss*(1+1e-6) {
			t.Fatalf("loss rose from %v to %v at iteration %d", got[i-1].Loss, p.Loss, p.Iteration)
		}
	}
	if m.Dims != 8 || len(m.UserFactors) != 200*8 || len(m.ItemFactors) != 300*8 {
		t.Fatalf("model shape %d dims, %d user values, %d item values", m.Dims, len(m.UserFactors), len(m.ItemFactors))
	}
}

// TestTrainLearns checks that the factors rank a user's held-out liked
// items above random ones: a model that learned nothing scores AUC 0.5.
func TestTrainLearns(t *testing.T) {
	t.Parallel()
	const users, items = 300, 400
	data := synthInteractions(users, items, 40, 11)
	var train, test []Interaction
	for i, it := range data {
		if i%5 == 0 {
			test = append(test, it)
		} else {
			train = append(train, it)
		}
	}
	m, err := Train(t.Context(), users, items, train, Config{Factors: 16, Regularization: 1, Alpha: 5, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[[2]int32]bool)
	for _, it := range data {
		seen[[2]int32{it.User, it.Item}] = true
	}
	rng := rand.New(rand.NewPCG(5, 5))
	wins, total := 0.0, 0
	for _, it := range test {
		j := int32(rng.IntN(items))
		if seen[[2]int32{it.User, j}] {
			continue
		}
		pos, neg := m.Score(int(it.User), int(it.Item)), m.Score(int(it.User), int(j))
		switch {
		case pos > neg:
			wins++
		case pos == neg:
			wins += 0.5
		}
		total++
	}
	if auc := wins / float64(total); auc < 0.8 {
		t.Fatalf("held-out AUC %.3f, want >= 0.8", auc)
	}
}

func TestTrainRejects(t *testing.T) {
	t.Parallel()
	ok := []Interaction{{0, 0, 1}}
	tests := []struct {
		name         string
		users, items int
		data         []Interaction
		cfg          Config
	}{
		{"no users", 0, 1, ok, Config{}},
		{"user out of range", 1, 1, []Interaction{{1, 0, 1}}, Config{}},
		{"item out of range", 1, 1, []Interaction{{0, -1, 1}}, Config{}},
		{"negative strength", 1, 1, []Interaction{{0, 0, -1}}, Config{}},
		{"NaN strength", 1, 1, []Interaction{{0, 0, float32(math.NaN())}}, Config{}},
		{"negative regularization", 1, 1, ok, Config{Regularization: -1}},
		{"too many factors", 1, 1, ok, Config{Factors: MaxDims + 1}},
		{"negative iterations", 1, 1, ok, Config{Iterations: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := Train(t.Context(), tt.users, tt.items, tt.data, tt.cfg); err == nil {
				t.Fatal("Train succeeded")
			}
		})
	}
}

func TestTrainCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := Train(ctx, 10, 10, synthInteractions(10, 10, 3, 1), Config{Factors: 4})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestTrainMergesDuplicates(t *testing.T) {
	t.Parallel()
	a := []Interaction{{0, 1, 1}, {0, 1, 2}, {1, 0, 1}, {1, 2, 1}}
	b := []Interaction{{1, 2, 1}, {0, 1, 3}, {1, 0, 1}}
	ma, err := Train(t.Context(), 2, 3, a, Config{Factors: 4, Iterations: 3})
	if err != nil {
		t.Fatal(err)
	}
	mb, err := Train(t.Context(), 2, 3, b, Config{Factors: 4, Iterations: 3})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ma.UserFactors, mb.UserFactors) || !slices.Equal(ma.ItemFactors, mb.ItemFactors) {
		t.Fatal("duplicate pairs with strengths 1+2 train differently from one pair of strength 3, or input order matters")
	}
}

func TestCholeskySolve(t *testing.T) {
	t.Parallel()
	// A = [[4,2,0],[2,5,1],[0,1,3]], x = [1,-2,3] → b = A·x.
	a := []float64{4, 2, 0, 0, 5, 1, 0, 0, 3} // upper triangle only
	b := []float64{4*1 + 2*-2, 2*1 + 5*-2 + 1*3, 1*-2 + 3*3}
	if !choleskySolve(a, b, 3) {
		t.Fatal("not positive definite")
	}
	for i, want := range []float64{1, -2, 3} {
		if math.Abs(b[i]-want) > 1e-12 {
			t.Fatalf("x = %v, want [1 -2 3]", b)
		}
	}
	if choleskySolve([]float64{1, 2, 0, 1}, []float64{1, 1}, 2) {
		t.Fatal("[[1,2],[2,1]] is indefinite but was solved")
	}
}
