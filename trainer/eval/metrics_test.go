package eval

import (
	"errors"
	"math"
	"testing"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestRecallAndNDCG(t *testing.T) {
	t.Parallel()
	ln := math.Log2
	tests := []struct {
		name             string
		ranked, relevant []int32
		k                int
		recall, ndcg     float64
	}{
		// Hits at ranks 1 and 3 of 3 relevant; the ideal puts 3 hits first.
		{"two of three", []int32{5, 1, 7, 9}, []int32{5, 7, 8}, 4, 2.0 / 3,
			(1 + 1/ln(4)) / (1 + 1/ln(3) + 1/ln(4))},
		// Cut at 2: only rank 1 counts; the ideal has 2 hits.
		{"cut at k", []int32{5, 1, 7, 9}, []int32{5, 7, 8}, 2, 1.0 / 3,
			1 / (1 + 1/ln(3))},
		// One relevant item at rank 2: ideal DCG is 1.
		{"single relevant", []int32{1, 2, 3}, []int32{2}, 10, 1, 1 / ln(3)},
		{"perfect", []int32{3, 4}, []int32{3, 4}, 2, 1, 1},
		{"miss", []int32{1, 2}, []int32{3}, 2, 0, 0},
		{"nothing relevant", []int32{1, 2}, nil, 2, 0, 0},
		{"short list", []int32{3}, []int32{3, 4}, 10, 0.5, 1 / (1 + 1/ln(3))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := RecallAt(tt.ranked, tt.relevant, tt.k); !near(got, tt.recall) {
				t.Errorf("RecallAt = %v, want %v", got, tt.recall)
			}
			if got := NDCGAt(tt.ranked, tt.relevant, tt.k); !near(got, tt.ndcg) {
				t.Errorf("NDCGAt = %v, want %v", got, tt.ndcg)
			}
		})
	}
}

func TestCoverage(t *testing.T) {
	t.Parallel()
	lists := [][]int32{{1, 2, 3}, {2, 3, 4}, {9}}
	// Top 2 of each: {1,2}, {2,3}, {9} → 4 distinct of 10.
	if got := Coverage(lists, 2, 10); !near(got, 0.4) {
		t.Errorf("Coverage@2 = %v, want 0.4", got)
	}
	if got := Coverage(lists, 3, 10); !near(got, 0.5) {
		t.Errorf("Coverage@3 = %v, want 0.5", got)
	}
	if got := Coverage(nil, 3, 10); got != 0 {
		t.Errorf("Coverage of no lists = %v", got)
	}
}

func TestAUC(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		scores []float32
		labels []float32
		want   float64
	}{
		{"perfect", []float32{0.9, 0.8, 0.2, 0.1}, []float32{1, 1, 0, 0}, 1},
		{"inverted", []float32{0.1, 0.2, 0.8, 0.9}, []float32{1, 1, 0, 0}, 0},
		// Pairs (pos, neg): (0.8,0.5)✓ (0.8,0.3)✓ (0.4,0.5)✗ (0.4,0.3)✓ → 3/4.
		{"three of four pairs", []float32{0.8, 0.5, 0.4, 0.3}, []float32{1, 0, 1, 0}, 0.75},
		// A tie between a positive and a negative counts half: (0.5,0.5)=½, (0.5,0.1)=1 → 0.75.
		{"tie counts half", []float32{0.5, 0.5, 0.1}, []float32{1, 0, 0}, 0.75},
		{"all tied", []float32{0.3, 0.3, 0.3, 0.3}, []float32{1, 0, 1, 0}, 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := AUC(tt.scores, tt.labels)
			if err != nil || !near(got, tt.want) {
				t.Fatalf("AUC = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	if got, err := AUC([]float32{0.1, 0.2}, []float32{1, 1}); err != nil || !math.IsNaN(got) {
		t.Errorf("one class: AUC = %v, %v; want NaN", got, err)
	}
	if _, err := AUC([]float32{0.1}, []float32{1, 0}); !errors.Is(err, ErrLengths) {
		t.Errorf("length mismatch: err = %v", err)
	}
}

func TestLogLoss(t *testing.T) {
	t.Parallel()
	got, err := LogLoss([]float32{0.8, 0.25}, []float32{1, 0})
	want := -(math.Log(float64(float32(0.8))) + math.Log(1-float64(float32(0.25)))) / 2
	if err != nil || !near(got, want) {
		t.Fatalf("LogLoss = %v, %v; want %v", got, err, want)
	}
	// A confident miss is clipped, not infinite.
	got, err = LogLoss([]float32{0}, []float32{1})
	if err != nil || !near(got, -math.Log(1e-7)) {
		t.Fatalf("clipped LogLoss = %v, %v; want %v", got, err, -math.Log(1e-7))
	}
	if _, err := LogLoss(nil, nil); !errors.Is(err, ErrLengths) {
		t.Errorf("empty: err = %v", err)
	}
}
