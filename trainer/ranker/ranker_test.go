package ranker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/trainer/ranker"
)

// testSchema describes width float features, as a features.Layout would.
func testSchema(width int) features.ModelSchema {
	s := features.ModelSchema{SchemaHash: features.SchemaHashPrefix + strings.Repeat("ab", 32)}
	for i := range width {
		s.Features = append(s.Features, features.RequiredFeature{
			Name: fmt.Sprintf("f%02d", i), Entity: "item", Type: "float", Default: "0",
		})
	}
	return s
}

// problem is a synthetic click problem.
type problem int

const (
	// linear: the label is the sign of a fixed linear function plus a
	// little noise; logistic regression separates it.
	linear problem = iota
	// xor: the label is whether x0 and x1 have the same sign; no linear
	// model can do better than chance.
	xor
	// noisy: the label is drawn with probability sigmoid(2·s) of a linear
	// function s with unit variance, so a good model's scores spread over
	// (0, 1) instead of piling up at 0 and 1.
	noisy
)

// synthetic returns n rows of width columns with the given label rule.
// Columns have very different offsets and spreads (one is constant) so the
// standardization matters; they are not tied to the model seed.
func synthetic(p problem, n, width int, seed uint64) ranker.Dataset {
	rng := rand.New(rand.NewPCG(seed, 42))
	d := ranker.Dataset{Width: width, Rows: make([]float32, n*width), Labels: make([]float32, n)}
	offset := func(j int) float64 { return []float64{0, 1000, -3, 5e4, 0.5}[j%5] }
	spread := func(j int) float64 { return []float64{1, 50, 0.01, 2000, 3}[j%5] }
	for r := 0; r < n; r++ {
		row := d.Rows[r*width : (r+1)*width]
		z := make([]float64, width)
		for j := range row {
			z[j] = rng.NormFloat64()
			row[j] = float32(offset(j) + spread(j)*z[j])
		}
		row[width-1] = 7 // a constant column
		var y bool
		switch p {
		case linear:
			s := 0.3 * rng.NormFloat64()
			for j := 0; j < width-1; j++ {
				s += float64(j%3-1) * z[j]
			}
			y = s > 0
		case xor:
			y = (z[0] > 0) == (z[1] > 0)
		case noisy:
			var s float64
			for j := 0; j < width-1; j++ {
				s += float64(j%3-1) * z[j]
			}
			s /= math.Sqrt(max(1, float64(2*(width-1))/3))
			y = rng.Float64() < 1/(1+math.Exp(-2*s))
		}
		if y {
			d.Labels[r] = 1
		}
	}
	return d
}

func train(t *testing.T, d ranker.Dataset, cfg ranker.Config) *ranker.Result {
	t.Helper()
	if cfg.Schema.SchemaHash == "" {
		cfg.Schema = testSchema(d.Width)
	}
	res, err := ranker.Train(t.Context(), d, cfg)
	if err != nil {
		t.Fatalf("Train: %v", err)
	}
	return res
}

func auc(t *testing.T, m *ranker.Model, d ranker.Dataset) float64 {
	t.Helper()
	p, err := m.Predict(d.Rows, d.Len())
	if err != nil {
		t.Fatal(err)
	}
	a, err := ranker.AUC(p, d.Labels)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestTrainLearnsSeparableProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		problem problem
		hidden  []int
		minAUC  float64
	}{
		{"lr on linear", linear, nil, 0.9},
		{"mlp on linear", linear, []int{16, 8}, 0.9},
		{"mlp on xor", xor, []int{16}, 0.9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := train(t, synthetic(tt.problem, 8000, 6, 1), ranker.Config{
				Hidden: tt.hidden, Epochs: 15, BatchSize: 128, LearningRate: 0.01, Seed: 7,
			})
			holdout := synthetic(tt.problem, 4000, 6, 2)
			got := auc(t, res.Model, holdout)
			if got <= tt.minAUC {
				t.Errorf("holdout AUC %.4f, want > %.2f (history %+v)", got, tt.minAUC, res.History)
			}
			t.Logf("holdout AUC %.4f after %d epochs", got, len(res.History))
			if kind := res.Model.Kind(); (kind == ranker.KindLR) != (len(tt.hidden) == 0) {
				t.Errorf("Kind() = %s for hidden %v", kind, tt.hidden)
			}
		})
	}
	// The xor problem is there to show the hidden layers work: a linear
	// model cannot rank it.
	res := train(t, synthetic(xor, 8000, 6, 1), ranker.Config{Epochs: 5, LearningRate: 0.01, Seed: 7})
	if got := auc(t, res.Model, synthetic(xor, 4000, 6, 2)); got > 0.6 {
		t.Errorf("logistic regression on xor: AUC %.3f, want near 0.5 (is the problem really nonlinear?)", got)
	}
}

// TestTrainIsDeterministic checks bit-identical models for a seed whatever
// the number of workers, and different models for different seeds.
func TestTrainIsDeterministic(t *testing.T) {
	t.Parallel()
	d := synthetic(linear, 3000, 7, 3)
	export := func(seed uint64, workers int) []byte {
		res := train(t, d, ranker.Config{
			Hidden: []int{12, 6}, Epochs: 3, BatchSize: 300, LearningRate: 0.01, L2: 1e-4,
			Seed: seed, Workers: workers, ValidationFraction: 0.2,
		})
		b, err := res.Model.ExportONNX()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	want := export(11, 1)
	for _, workers := range []int{1, 2, 3, 8} {
		if got := export(11, workers); !bytes.Equal(got, want) {
			t.Errorf("seed 11 with %d workers: model differs from the 1-worker model", workers)
		}
	}
	if bytes.Equal(export(12, 2), want) {
		t.Error("seeds 11 and 12 gave the same model")
	}
}

func TestTrainSameSeedSameWeights(t *testing.T) {
	t.Parallel()
	d := synthetic(xor, 2000, 5, 4)
	cfg := ranker.Config{Hidden: []int{8}, Epochs: 2, Seed: 99}
	a, b := train(t, d, cfg).Model, train(t, d, cfg).Model
	if !reflect.DeepEqual(a, b) {
		t.Fatal("two trainings with seed 99 differ")
	}
	cfg.Seed = 100
	if c := train(t, d, cfg).Model; reflect.DeepEqual(a.Layers, c.Layers) {
		t.Fatal("seeds 99 and 100 gave the same weights")
	}
}

func TestTrainProgressAndEarlyStopping(t *testing.T) {
	t.Parallel()
	// Random labels: nothing to learn, so the validation loss stops
	// improving after an epoch or two and training stops early.
	d := synthetic(linear, 2000, 5, 5)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range d.Labels {
		d.Labels[i] = float32(rng.IntN(2))
	}
	var calls []ranker.Progress
	res := train(t, d, ranker.Config{
		Hidden: []int{64, 64}, Epochs: 40, BatchSize: 64, LearningRate: 0.01, Seed: 1,
		ValidationFraction: 0.3, Patience: 2,
		Progress: func(p ranker.Progress) { calls = append(calls, p) },
	})
	if !reflect.DeepEqual(calls, res.History) {
		t.Errorf("Progress calls differ from History")
	}
	if !res.EarlyStopped || len(res.History) >= 40 {
		t.Fatalf("ran %d of 40 epochs, EarlyStopped %v; want an early stop", len(res.History), res.EarlyStopped)
	}
	if res.TrainRows != 1400 || res.ValidationRows != 600 {
		t.Errorf("split %d/%d, want 1400/600", res.TrainRows, res.ValidationRows)
	}
	best := res.History[0]
	for i, p := range res.History {
		if p.Epoch != i+1 || p.Epochs != 40 || !p.HasValidation || p.RowsPerSec <= 0 || p.Loss <= 0 || p.Elapsed <= 0 {
			t.Errorf("progress %d: %+v", i, p)
		}
		if p.ValLoss < best.ValLoss {
			best = p
		}
	}
	if res.BestEpoch != best.Epoch || !best.Best {
		t.Errorf("BestEpoch %d, want %d (lowest validation loss)", res.BestEpoch, best.Epoch)
	}
	if n := len(res.History); n != res.BestEpoch+2 {
		t.Errorf("stopped after epoch %d, want %d (best %d + patience 2)", n, res.BestEpoch+2, res.BestEpoch)
	}
}

func TestTrainStandardizes(t *testing.T) {
	t.Parallel()
	d := synthetic(linear, 5000, 6, 6)
	m := train(t, d, ranker.Config{Epochs: 1, Seed: 1}).Model
	for j := 0; j < d.Width; j++ {
		var sum, ss float64
		for r := 0; r < d.Len(); r++ {
			v := float64((d.Row(r)[j] - m.Mean[j]) * m.Scale[j])
			sum += v
			ss += v * v
		}
		mean, std := sum/float64(d.Len()), math.Sqrt(ss/float64(d.Len()))
		wantStd := 1.0
		if j == d.Width-1 {
			wantStd = 0 // the constant column is ignored
		}
		if math.Abs(mean) > 1e-3 || math.Abs(std-wantStd) > 1e-3 {
			t.Errorf("column %d standardized to mean %.5f std %.5f, want 0 and %v", j, mean, std, wantStd)
		}
	}
}

func TestPredictClipsStandardizedInputs(t *testing.T) {
	t.Parallel()
	d := synthetic(linear, 2000, 4, 8)
	m := train(t, d, ranker.Config{Epochs: 2, Seed: 1}).Model
	// Column 0 at mean + k standard deviations, the others at their means.
	score := func(k float32) float32 {
		row := slices.Clone(m.Mean)
		row[0] += k / m.Scale[0]
		p, err := m.Predict(row, 1)
		if err != nil {
			t.Fatal(err)
		}
		return p[0]
	}
	at4, at5, far := score(4), score(ranker.ClipZ), score(1000)
	if at4 == at5 {
		t.Fatalf("score at 4 sd %v equals score at %d sd: column 0 has no weight, the test proves nothing", at4, ranker.ClipZ)
	}
	if math.Abs(float64(far-at5)) > 1e-6 {
		t.Errorf("score at 1000 sd = %v, want the score at the clip (%d sd) %v", far, ranker.ClipZ, at5)
	}
}

func TestTrainStopsOnContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := ranker.Train(ctx, synthetic(linear, 1000, 4, 1), ranker.Config{Seed: 1})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Train with a canceled context: %v, want context.Canceled", err)
	}
}

func TestTrainRefusesBadInput(t *testing.T) {
	t.Parallel()
	good := synthetic(linear, 100, 3, 1)
	nan := synthetic(linear, 100, 3, 1)
	nan.Rows[7] = float32(math.NaN())
	badLabel := synthetic(linear, 100, 3, 1)
	badLabel.Labels[3] = 2
	tests := []struct {
		name string
		data ranker.Dataset
		cfg  ranker.Config
		want string
	}{
		{"short rows", ranker.Dataset{Width: 3, Rows: make([]float32, 5), Labels: make([]float32, 2)}, ranker.Config{}, "5 values for 2 labels of width 3"},
		{"zero width", ranker.Dataset{}, ranker.Config{}, "width 0"},
		{"NaN value", nan, ranker.Config{}, "row 2 column 1 is NaN"},
		{"label out of range", badLabel, ranker.Config{}, "label 3 is 2"},
		{"negative hidden", good, ranker.Config{Hidden: []int{4, 0}}, "Hidden[1] is 0"},
		{"validation fraction", good, ranker.Config{ValidationFraction: 1}, "ValidationFraction 1"},
		{"bad learning rate", good, ranker.Config{LearningRate: math.Inf(1)}, "LearningRate +Inf"},
		{"schema width", good, ranker.Config{Schema: testSchema(4)}, "fill rows of width 4, not 3"},
		{"diverges", good, ranker.Config{LearningRate: 1e308, Epochs: 5}, "diverged"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ranker.Train(t.Context(), tt.data, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Train: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestPredictChecksShapes(t *testing.T) {
	t.Parallel()
	m := train(t, synthetic(linear, 200, 4, 1), ranker.Config{Epochs: 1, Seed: 1}).Model
	if _, err := m.Predict(make([]float32, 7), 2); err == nil {
		t.Error("Predict of 7 values as 2 rows of width 4: no error")
	}
	if err := m.PredictInto(make([]float32, 1), make([]float32, 8), 2); err == nil {
		t.Error("PredictInto with a 1-score destination for 2 rows: no error")
	}
	p, err := m.Predict(nil, 0)
	if err != nil || len(p) != 0 {
		t.Errorf("Predict of 0 rows: %v, %v", p, err)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	aucTests := []struct {
		scores, labels []float32
		want           float64
	}{
		{[]float32{0.1, 0.2, 0.8, 0.9}, []float32{0, 0, 1, 1}, 1},
		{[]float32{0.9, 0.8, 0.2, 0.1}, []float32{0, 0, 1, 1}, 0},
		{[]float32{0.5, 0.5, 0.5, 0.5}, []float32{0, 1, 0, 1}, 0.5},
		// Pairs (pos, neg): (0.4 > 0.1) (0.4 < 0.6) (0.8 > 0.1) (0.8 > 0.6) → 3/4.
		{[]float32{0.1, 0.4, 0.6, 0.8}, []float32{0, 1, 0, 1}, 0.75},
		// A tie between a positive and a negative counts half: (0.5 = 0.5)
		// and (0.5 > 0.2) → 1.5/2.
		{[]float32{0.2, 0.5, 0.5}, []float32{0, 0, 1}, 0.75},
	}
	for _, tt := range aucTests {
		got, err := ranker.AUC(tt.scores, tt.labels)
		if err != nil || math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("AUC(%v, %v) = %v, %v; want %v", tt.scores, tt.labels, got, err, tt.want)
		}
	}
	if got, _ := ranker.AUC([]float32{0.1, 0.2}, []float32{1, 1}); !math.IsNaN(got) {
		t.Errorf("AUC with only positives = %v, want NaN", got)
	}
	if _, err := ranker.AUC([]float32{0.1}, []float32{1, 0}); err == nil {
		t.Error("AUC with mismatched lengths: no error")
	}
	ll, err := ranker.LogLoss([]float32{0.8, 0.4}, []float32{1, 0})
	if want := -(math.Log(0.8) + math.Log(0.6)) / 2; err != nil || math.Abs(ll-want) > 1e-6 {
		t.Errorf("LogLoss = %v, %v; want %v", ll, err, want)
	}
	if ll, _ := ranker.LogLoss([]float32{0}, []float32{1}); math.IsInf(ll, 0) || ll < 15 {
		t.Errorf("LogLoss of a certain miss = %v, want a large finite value", ll)
	}
	if _, err := ranker.LogLoss(nil, nil); err == nil {
		t.Error("LogLoss of nothing: no error")
	}
}
