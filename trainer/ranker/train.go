package ranker

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/adaptrec/adaptrec/features"
)

// Dataset is a set of labelled input rows.
type Dataset struct {
	// Rows holds Len()×Width values, row after row (features.Layout rows).
	Rows []float32
	// Labels holds one label per row: 1 for a click, 0 for none (values in
	// between are soft labels).
	Labels []float32
	// Width is the number of values per row.
	Width int
}

// Len returns the number of rows.
func (d Dataset) Len() int { return len(d.Labels) }

// Row returns row i.
func (d Dataset) Row(i int) []float32 { return d.Rows[i*d.Width : (i+1)*d.Width] }

// Validate checks shapes and that every value is finite and every label in
// [0, 1], naming the first bad one.
func (d Dataset) Validate() error {
	switch {
	case d.Width <= 0:
		return fmt.Errorf("ranker: dataset width %d, want at least 1", d.Width)
	case len(d.Rows) != len(d.Labels)*d.Width:
		return fmt.Errorf("ranker: dataset has %d values for %d labels of width %d, want %d", len(d.Rows), len(d.Labels), d.Width, len(d.Labels)*d.Width)
	}
	for i, y := range d.Labels {
		if !(y >= 0 && y <= 1) {
			return fmt.Errorf("ranker: dataset label %d is %v, want a value in [0, 1]", i, y)
		}
	}
	if i := firstNonFinite(d.Rows); i >= 0 {
		return fmt.Errorf("ranker: dataset row %d column %d is %v", i/d.Width, i%d.Width, d.Rows[i])
	}
	return nil
}

// Config configures Train. Zero values mean the documented defaults.
type Config struct {
	// Hidden lists the hidden layer sizes; empty trains logistic regression.
	Hidden []int
	// Epochs is the most passes over the training rows; 0 means 10.
	Epochs int
	// BatchSize is the number of rows per Adam step; 0 means 512.
	BatchSize int
	// LearningRate is Adam's step size; 0 means 0.001.
	LearningRate float64
	// Beta1, Beta2 and Epsilon are Adam's; 0 means 0.9, 0.999 and 1e-8.
	Beta1, Beta2, Epsilon float64
	// L2 is the coefficient of the L2 penalty 0.5·L2·‖W‖² on weights (not
	// biases); 0 means none.
	L2 float64
	// Seed decides initial weights, the validation split and the order of
	// rows in every epoch. Training is bit-identical for a seed.
	Seed uint64
	// Workers is how many goroutines compute gradients; 0 means GOMAXPROCS.
	// It changes speed only, never the result.
	Workers int
	// ValidationFraction of the rows, drawn at random by Seed, is held out
	// to pick the best epoch and stop early; 0 means no validation split
	// (every row trains, every epoch runs, the last epoch's model is kept).
	ValidationFraction float64
	// Patience is how many epochs without a better validation log loss end
	// training; 0 means 2. Only with a validation split.
	Patience int
	// Schema describes the rows' features (features.Layout.Schema). It is
	// recorded in the model; ExportONNX refuses a model without one.
	Schema features.ModelSchema
	// Progress, if set, is called after every epoch on Train's goroutine.
	Progress func(Progress)
}

// Progress reports one finished epoch.
type Progress struct {
	// Epoch counts from 1; Epochs is Config.Epochs.
	Epoch, Epochs int
	// Loss is the mean training log loss over the epoch's mini-batches
	// (without the L2 penalty).
	Loss float64
	// HasValidation says whether ValLoss and ValAUC are set.
	HasValidation bool
	// ValLoss and ValAUC are the float32 model's log loss and AUC on the
	// validation split after the epoch.
	ValLoss, ValAUC float64
	// Best says this epoch has the lowest validation loss so far (always
	// true without validation).
	Best bool
	// RowsPerSec is the epoch's training throughput.
	RowsPerSec float64
	// Elapsed is the time since Train started.
	Elapsed time.Duration
}

// Result is what Train returns.
type Result struct {
	// Model is the trained model: the best epoch's with a validation split,
	// else the last epoch's.
	Model *Model
	// History has one entry per epoch run.
	History []Progress
	// BestEpoch is the epoch Model comes from (counting from 1).
	BestEpoch int
	// EarlyStopped says training ended before Config.Epochs.
	EarlyStopped bool
	// TrainRows and ValidationRows count the split.
	TrainRows, ValidationRows int
}

func (c Config) withDefaults() Config {
	c.Hidden = slices.Clone(c.Hidden)
	if c.Epochs == 0 {
		c.Epochs = 10
	}
	if c.BatchSize == 0 {
		c.BatchSize = 512
	}
	if c.LearningRate == 0 {
		c.LearningRate = 0.001
	}
	if c.Beta1 == 0 {
		c.Beta1 = 0.9
	}
	if c.Beta2 == 0 {
		c.Beta2 = 0.999
	}
	if c.Epsilon == 0 {
		c.Epsilon = 1e-8
	}
	if c.Workers == 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.Patience == 0 {
		c.Patience = 2
	}
	return c
}

// Validate reports every bad setting.
func (c Config) Validate() error {
	var bad []error
	for i, h := range c.Hidden {
		if h <= 0 {
			bad = append(bad, fmt.Errorf("Hidden[%d] is %d, want at least 1", i, h))
		}
	}
	if c.Epochs < 0 {
		bad = append(bad, fmt.Errorf("Epochs %d is negative", c.Epochs))
	}
	if c.BatchSize < 0 {
		bad = append(bad, fmt.Errorf("BatchSize %d is negative", c.BatchSize))
	}
	if c.LearningRate < 0 || math.IsNaN(c.LearningRate) || math.IsInf(c.LearningRate, 0) {
		bad = append(bad, fmt.Errorf("LearningRate %v, want a positive number", c.LearningRate))
	}
	if !(c.Beta1 >= 0 && c.Beta1 < 1) || !(c.Beta2 >= 0 && c.Beta2 < 1) || !(c.Epsilon >= 0) {
		bad = append(bad, fmt.Errorf("Adam Beta1 %v, Beta2 %v, Epsilon %v: want betas in [0, 1) and epsilon >= 0", c.Beta1, c.Beta2, c.Epsilon))
	}
	if !(c.L2 >= 0) || math.IsInf(c.L2, 0) {
		bad = append(bad, fmt.Errorf("L2 %v, want a finite value >= 0", c.L2))
	}
	if c.Workers < 0 {
		bad = append(bad, fmt.Errorf("Workers %d is negative", c.Workers))
	}
	if !(c.ValidationFraction >= 0 && c.ValidationFraction < 1) {
		bad = append(bad, fmt.Errorf("ValidationFraction %v, want a value in [0, 1)", c.ValidationFraction))
	}
	if c.Patience < 0 {
		bad = append(bad, fmt.Errorf("Patience %d is negative", c.Patience))
	}
	if err := errors.Join(bad...); err != nil {
		return fmt.Errorf("ranker: config: %w", err)
	}
	return nil
}

// gradChunk is the number of rows whose gradient one task computes. It fixes
// the summation order of a mini-batch's gradient (rows within a chunk in
// order, then chunks in order) independently of the number of workers.
const gradChunk = 64

// statsChunk is the number of rows per task when computing column statistics.
const statsChunk = 4096

// Train fits a model to data. It is deterministic: the same data, Config
// and Seed give a bit-identical model whatever Workers and scheduling.
// It stops with ctx's error when ctx is done.
func Train(ctx context.Context, data Dataset, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if err := data.Validate(); err != nil {
		return nil, err
	}
	if len(cfg.Schema.Features) > 0 || cfg.Schema.SchemaHash != "" {
		if err := checkSchema(cfg.Schema, data.Width); err != nil {
			return nil, fmt.Errorf("ranker: config: %w", err)
		}
	}
	start := time.Now()

	// Split: a seeded permutation; the first rows validate.
	n := data.Len()
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	nVal := int(math.Round(cfg.ValidationFraction * float64(n)))
	if cfg.ValidationFraction > 0 {
		nVal = max(nVal, 1)
		split := rand.New(rand.NewPCG(cfg.Seed, 0x5b11))
		split.Shuffle(n, func(i, j int) { order[i], order[j] = order[j], order[i] })
	}
	val, train := order[:nVal], order[nVal:]
	if len(train) == 0 {
		return nil, fmt.Errorf("ranker: no training rows (%d rows, validation fraction %v)", n, cfg.ValidationFraction)
	}

	t := newTrainer(data, cfg, train)
	t.init(rand.New(rand.NewPCG(cfg.Seed, 0x1417)))
	shuffle := rand.New(rand.NewPCG(cfg.Seed, 0x5f1e))

	var valSet Dataset
	if nVal > 0 {
		valSet = subset(data, val)
	}
	res := &Result{TrainRows: len(train), ValidationRows: nVal}
	var best []float64
	bestLoss, sinceBest := math.Inf(1), 0
	for epoch := 1; epoch <= cfg.Epochs; epoch++ {
		epochStart := time.Now()
		shuffle.Shuffle(len(train), func(i, j int) { train[i], train[j] = train[j], train[i] })
		loss, err := t.epoch(ctx, train)
		if err != nil {
			return nil, err
		}
		if math.IsNaN(loss) || math.IsInf(loss, 0) {
			return nil, fmt.Errorf("ranker: training diverged in epoch %d (loss %v): lower LearningRate", epoch, loss)
		}
		p := Progress{
			Epoch: epoch, Epochs: cfg.Epochs, Loss: loss, Best: true,
			RowsPerSec: float64(len(train)) / max(time.Since(epochStart).Seconds(), 1e-9),
		}
		if nVal > 0 {
			scores := t.model().predictParallel(valSet, cfg.Workers)
			p.HasValidation = true
			p.ValLoss, err = LogLoss(scores, valSet.Labels)
			if err != nil {
				return nil, fmt.Errorf("ranker: validation: %w", err)
			}
			if p.ValAUC, err = AUC(scores, valSet.Labels); err != nil {
				return nil, fmt.Errorf("ranker: validation: %w", err)
			}
			p.Best = p.ValLoss < bestLoss
		}
		if p.Best {
			bestLoss, sinceBest, res.BestEpoch = p.ValLoss, 0, epoch
			best = append(best[:0], t.params...)
		} else {
			sinceBest++
		}
		p.Elapsed = time.Since(start)
		res.History = append(res.History, p)
		if cfg.Progress != nil {
			cfg.Progress(p)
		}
		if nVal > 0 && sinceBest >= cfg.Patience && epoch < cfg.Epochs {
			res.EarlyStopped = true
			break
		}
	}
	if best != nil {
		copy(t.params, best)
	}
	res.Model = t.model()
	return res, nil
}

// subset copies the rows idx of d.
func subset(d Dataset, idx []int) Dataset {
	s := Dataset{Width: d.Width, Rows: make([]float32, 0, len(idx)*d.Width), Labels: make([]float32, len(idx))}
	for k, i := range idx {
		s.Rows = append(s.Rows, d.Row(i)...)
		s.Labels[k] = d.Labels[i]
	}
	return s
}

// trainer holds the parameters in float64, flattened layer after layer as
// W then B, with their Adam moments.
type trainer struct {
	data    Dataset
	cfg     Config
	sizes   []int // layer widths: input, hidden..., 1
	offW    []int // offset of layer l's W in params
	offB    []int // offset of layer l's B in params
	params  []float64
	m, v    []float64
	step    int
	mean    []float32
	scale   []float32
	grads   [][]float64 // one per chunk of a mini-batch
	losses  []float64   // one per chunk
	scratch []*workspace
}

// workspace is one worker's per-row buffers.
type workspace struct {
	act   [][]float64 // activations per layer; act[0] is the standardized row
	delta [][]float64 // loss gradient w.r.t. each layer's pre-activation
}

func newTrainer(data Dataset, cfg Config, train []int) *trainer {
	t := &trainer{data: data, cfg: cfg}
	t.sizes = append(append([]int{data.Width}, cfg.Hidden...), 1)
	total := 0
	for l := 0; l+1 < len(t.sizes); l++ {
		t.offW = append(t.offW, total)
		total += t.sizes[l] * t.sizes[l+1]
		t.offB = append(t.offB, total)
		total += t.sizes[l+1]
	}
	t.params = make([]float64, total)
	t.m = make([]float64, total)
	t.v = make([]float64, total)
	t.mean, t.scale = columnStats(data, train, cfg.Workers)
	chunks := (cfg.BatchSize + gradChunk - 1) / gradChunk
	t.grads = make([][]float64, chunks)
	for i := range t.grads {
		t.grads[i] = make([]float64, total)
	}
	t.losses = make([]float64, chunks)
	t.scratch = make([]*workspace, cfg.Workers)
	for w := range t.scratch {
		ws := &workspace{}
		for _, s := range t.sizes {
			ws.act = append(ws.act, make([]float64, s))
			ws.delta = append(ws.delta, make([]float64, s))
		}
		t.scratch[w] = ws
	}
	return t
}

// init draws initial weights: He-normal for layers followed by ReLU,
// Glorot-normal (variance 1/in) for the output layer; biases start at 0.
func (t *trainer) init(rng *rand.Rand) {
	layers := len(t.sizes) - 1
	for l := 0; l < layers; l++ {
		in := t.sizes[l]
		std := math.Sqrt(2 / float64(in))
		if l == layers-1 {
			std = math.Sqrt(1 / float64(in))
		}
		w := t.params[t.offW[l]:t.offB[l]]
		for i := range w {
			w[i] = rng.NormFloat64() * std
		}
	}
}

// columnStats returns per-column means and scales (1/std, 0 for a constant
// column) of the rows idx, computed in fixed chunks summed in order.
func columnStats(d Dataset, idx []int, workers int) (mean, scale []float32) {
	w := d.Width
	chunks := (len(idx) + statsChunk - 1) / statsChunk
	partial := make([][]float64, chunks)
	pass := func(f func(part []float64, row []float32)) []float64 {
		parallel(chunks, workers, func(_, c int) {
			part := make([]float64, w)
			for _, i := range idx[c*statsChunk : min((c+1)*statsChunk, len(idx))] {
				f(part, d.Row(i))
			}
			partial[c] = part
		})
		sum := make([]float64, w)
		for _, part := range partial {
			for j, v := range part {
				sum[j] += v
			}
		}
		return sum
	}
	nrows := float64(len(idx))
	mu := pass(func(part []float64, row []float32) {
		for j, v := range row {
			part[j] += float64(v)
		}
	})
	for j := range mu {
		mu[j] /= nrows
	}
	// The second pass sums squared deviations from the mean, which keeps its
	// precision for columns whose mean is large next to their spread.
	ss := pass(func(part []float64, row []float32) {
		for j, v := range row {
			dv := float64(v) - mu[j]
			part[j] += dv * dv
		}
	})
	mean, scale = make([]float32, w), make([]float32, w)
	for j := range mean {
		mean[j] = float32(mu[j])
		std := math.Sqrt(ss[j] / nrows)
		if std > 1e-6*max(1, math.Abs(mu[j])) {
			scale[j] = float32(1 / std)
		}
	}
	return mean, scale
}

// parallel runs f(worker, task) for tasks 0..n-1 on up to workers
// goroutines, task k on worker k mod workers.
func parallel(n, workers int, f func(worker, task int)) {
	workers = min(workers, n)
	if workers <= 1 {
		for k := 0; k < n; k++ {
			f(0, k)
		}
		return
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			for k := w; k < n; k += workers {
				f(w, k)
			}
		})
	}
	wg.Wait()
}

// epoch runs one pass of mini-batch Adam over rows in the given order and
// returns the mean log loss of its batches' rows.
func (t *trainer) epoch(ctx context.Context, order []int) (float64, error) {
	var lossSum float64
	for start := 0; start < len(order); start += t.cfg.BatchSize {
		if err := ctx.Err(); err != nil {
			return 0, fmt.Errorf("ranker: train: %w", err)
		}
		batch := order[start:min(start+t.cfg.BatchSize, len(order))]
		chunks := (len(batch) + gradChunk - 1) / gradChunk
		parallel(chunks, t.cfg.Workers, func(w, c int) {
			t.chunkGrad(t.scratch[w], batch[c*gradChunk:min((c+1)*gradChunk, len(batch))], t.grads[c], &t.losses[c])
		})
		// Fixed-order reduction: chunk 0, 1, 2... whatever finished first.
		g := t.grads[0]
		for c := 1; c < chunks; c++ {
			for j, v := range t.grads[c] {
				g[j] += v
			}
		}
		for c := 0; c < chunks; c++ {
			lossSum += t.losses[c]
		}
		t.adam(g, float64(len(batch)))
	}
	return lossSum / float64(len(order)), nil
}

// chunkGrad sets grad to the sum over rows of the log-loss gradient and
// *loss to the rows' summed log loss.
func (t *trainer) chunkGrad(ws *workspace, rows []int, grad []float64, loss *float64) {
	clear(grad)
	layers := len(t.sizes) - 1
	var lsum float64
	for _, r := range rows {
		// Standardize in float32 exactly as the exported graph does.
		x := ws.act[0]
		for j, v := range t.data.Row(r) {
			x[j] = float64(clipZ((v - t.mean[j]) * t.scale[j]))
		}
		// Forward.
		for l := 0; l < layers; l++ {
			in, out := ws.act[l], ws.act[l+1]
			w, b := t.params[t.offW[l]:t.offB[l]], t.params[t.offB[l]:t.offB[l]+len(out)]
			for o := range out {
				row := w[o*len(in) : (o+1)*len(in)]
				acc := b[o]
				for i, xi := range in[:len(row)] {
					acc += row[i] * xi
				}
				if l < layers-1 && acc < 0 {
					acc = 0 // ReLU; a zero activation also marks a zero derivative
				}
				out[o] = acc
			}
		}
		z := ws.act[layers][0]
		y := float64(t.data.Labels[r])
		// Log loss from the logit, stable for any z:
		// max(z,0) - z·y + log(1 + e^-|z|).
		lsum += math.Max(z, 0) - z*y + math.Log1p(math.Exp(-math.Abs(z)))
		// Backward.
		ws.delta[layers][0] = sigmoid(z) - y
		for l := layers - 1; l >= 0; l-- {
			in, d := ws.act[l], ws.delta[l+1]
			gw, gb := grad[t.offW[l]:t.offB[l]], grad[t.offB[l]:t.offB[l]+len(d)]
			w := t.params[t.offW[l]:t.offB[l]]
			for o, do := range d {
				if do == 0 {
					continue
				}
				gb[o] += do
				row := gw[o*len(in) : (o+1)*len(in)]
				for i, xi := range in[:len(row)] {
					row[i] += do * xi
				}
			}
			if l == 0 {
				break
			}
			// Propagate to the previous layer's ReLU outputs.
			prev := ws.delta[l]
			clear(prev)
			for o, do := range d {
				if do == 0 {
					continue
				}
				row := w[o*len(in) : (o+1)*len(in)]
				for i, wi := range row[:len(prev)] {
					prev[i] += wi * do
				}
			}
			for i, a := range in {
				if a <= 0 {
					prev[i] = 0
				}
			}
		}
	}
	*loss = lsum
}

// adam applies one Adam step with the summed gradient g of n rows.
func (t *trainer) adam(g []float64, n float64) {
	t.step++
	c := t.cfg
	lr := c.LearningRate * math.Sqrt(1-math.Pow(c.Beta2, float64(t.step))) / (1 - math.Pow(c.Beta1, float64(t.step)))
	for l := range t.offW {
		end := len(t.params)
		if l+1 < len(t.offW) {
			end = t.offW[l+1]
		}
		for j := t.offW[l]; j < end; j++ {
			gj := g[j] / n
			if j < t.offB[l] { // a weight, not a bias
				gj += c.L2 * t.params[j]
			}
			t.m[j] = c.Beta1*t.m[j] + (1-c.Beta1)*gj
			t.v[j] = c.Beta2*t.v[j] + (1-c.Beta2)*gj*gj
			t.params[j] -= lr * t.m[j] / (math.Sqrt(t.v[j]) + c.Epsilon)
		}
	}
}

func sigmoid(z float64) float64 {
	if z >= 0 {
		return 1 / (1 + math.Exp(-z))
	}
	e := math.Exp(z)
	return e / (1 + e)
}

// model rounds the current parameters into a float32 Model.
func (t *trainer) model() *Model {
	m := &Model{
		Width:  t.data.Width,
		Mean:   slices.Clone(t.mean),
		Scale:  slices.Clone(t.scale),
		Schema: t.cfg.Schema,
		Seed:   t.cfg.Seed,
	}
	m.Schema.Features = slices.Clone(t.cfg.Schema.Features)
	for l := 0; l+1 < len(t.sizes); l++ {
		in, out := t.sizes[l], t.sizes[l+1]
		layer := Layer{In: in, Out: out, W: make([]float32, in*out), B: make([]float32, out)}
		for j := range layer.W {
			layer.W[j] = float32(t.params[t.offW[l]+j])
		}
		for j := range layer.B {
			layer.B[j] = float32(t.params[t.offB[l]+j])
		}
		m.Layers = append(m.Layers, layer)
	}
	return m
}

// predictParallel scores every row of d on up to workers goroutines.
func (m *Model) predictParallel(d Dataset, workers int) []float32 {
	out := make([]float32, d.Len())
	chunks := (d.Len() + statsChunk - 1) / statsChunk
	bufs := make([][2][]float32, max(workers, 1))
	for w := range bufs {
		bufs[w][0], bufs[w][1] = m.scratch()
	}
	parallel(chunks, workers, func(w, c int) {
		for r := c * statsChunk; r < min((c+1)*statsChunk, d.Len()); r++ {
			out[r] = m.predictRow(d.Row(r), bufs[w][0], bufs[w][1])
		}
	})
	return out
}
