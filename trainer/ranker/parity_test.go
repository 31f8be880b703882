package ranker_test

import (
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/adaptrec/adaptrec/internal/onnxrt"
	"github.com/adaptrec/adaptrec/trainer/ranker"
)

// TestONNXRuntimeParity exports trained models, loads them in ONNX Runtime
// and holds its scores to the Go forward pass (Predict) within 1e-5, for
// batches of 1 and 500 rows. Only -short skips it; without the runtime
// library it fails with the fix (`make tools`).
func TestONNXRuntimeParity(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs the ONNX Runtime library; run without -short (make test)")
	}
	if err := onnxrt.Init(""); err != nil {
		t.Fatal(err)
	}
	t.Parallel()
	const tolerance = 1e-5
	tests := []struct {
		name   string
		width  int
		hidden []int
	}{
		{"lr", 12, nil},
		{"mlp", 12, []int{32, 16}},
		{"wide mlp", 160, []int{64, 32}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := train(t, synthetic(noisy, 4000, tt.width, 1), ranker.Config{
				Hidden: tt.hidden, Epochs: 3, BatchSize: 128, LearningRate: 0.003, Seed: 5,
			}).Model
			b := exportModel(t, m)
			s, err := onnxrt.Load(b, onnxrt.Options{})
			if err != nil {
				t.Fatalf("ONNX Runtime refused the exported model: %v", err)
			}
			defer s.Close()
			if s.Width() != tt.width {
				t.Errorf("runtime sees width %d, want %d", s.Width(), tt.width)
			}
			md, err := ranker.ParseMetadata(s.Metadata())
			if err != nil {
				t.Fatalf("metadata through the runtime: %v", err)
			}
			if !reflect.DeepEqual(md, m.Metadata()) {
				t.Errorf("metadata through the runtime %+v, want %+v", md, m.Metadata())
			}

			// Rows from the training distribution, with a tenth of the
			// values moved by up to 12 standard deviations (the constant
			// column too) to exercise the standardization and its clip at
			// ClipZ on values it never saw.
			rows := synthetic(noisy, 500, tt.width, 9).Rows
			rng := rand.New(rand.NewPCG(3, 4))
			for i := range rows {
				if c := i % tt.width; rng.IntN(10) == 0 {
					std := float32(1)
					if m.Scale[c] > 0 {
						std = 1 / m.Scale[c]
					}
					rows[i] += std * float32(24*rng.Float64()-12)
				}
			}
			var worst float64
			for _, n := range []int{1, 500} {
				want, err := m.Predict(rows[:n*tt.width], n)
				if err != nil {
					t.Fatal(err)
				}
				got, err := s.Score(rows[:n*tt.width], n)
				if err != nil {
					t.Fatalf("Score(%d rows): %v", n, err)
				}
				var maxDiff float64
				mid := 0
				for i := range want {
					maxDiff = max(maxDiff, math.Abs(float64(got[i])-float64(want[i])))
					if want[i] > 0.05 && want[i] < 0.95 {
						mid++
					}
				}
				if maxDiff > tolerance {
					t.Errorf("batch %d: max |ONNX Runtime - Go| = %.3g, want <= %g", n, maxDiff, tolerance)
				}
				if n == 500 && mid < 50 {
					t.Errorf("only %d of 500 scores in (0.05, 0.95): saturated scores would make parity trivial", mid)
				}
				worst = max(worst, maxDiff)
			}
			t.Logf("%s (width %d, hidden %v): max |ONNX Runtime - Go| = %.3g over batches of 1 and 500", tt.name, tt.width, tt.hidden, worst)
		})
	}
}
