package ranker

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/adaptrec/adaptrec/features"
)

// Kind is a model family.
type Kind string

// Model families.
const (
	// KindLR is logistic regression: one output layer, no hidden layers.
	KindLR Kind = "lr"
	// KindMLP is a multilayer perceptron: hidden layers with ReLU, then the
	// output layer.
	KindMLP Kind = "mlp"
)

// ErrInvalidModel is wrapped by the errors of Model.Validate, and so of
// ExportONNX and ParseONNX.
var ErrInvalidModel = errors.New("invalid ranking model")

// Layer is one fully connected layer: out = W·in + B.
type Layer struct {
	// In and Out are the layer's input and output sizes.
	In, Out int
	// W holds Out×In weights row by row: W[o*In+i] connects input i to
	// output o. It is the B operand of an ONNX Gemm with transB=1.
	W []float32
	// B holds Out biases.
	B []float32
}

// ClipZ bounds every standardized input to [-ClipZ, ClipZ], in training, in
// Predict and in the exported graph (a Clip node). Counts, ages and rates are
// heavy-tailed: a value tens of standard deviations out (a viral item, a
// user's first visit in years) would otherwise dominate a linear score, and a
// column nearly constant in a small training set gets a huge scale. Five
// standard deviations keeps all but outliers as they are.
const ClipZ = 5

func clipZ(v float32) float32 { return min(max(v, -ClipZ), ClipZ) }

// Model is a trained ranking model. Treat it as read-only; it is safe for
// concurrent Predict calls.
type Model struct {
	// Width is the number of float32 values in an input row.
	Width int
	// Mean and Scale standardize an input column c as
	// (x[c] - Mean[c]) * Scale[c]. Scale is 1/std of the training column, or
	// 0 for a column that was constant in training (the model cannot have
	// learned anything from it, so it is ignored). The standardized value is
	// then clipped to [-ClipZ, ClipZ] (see ClipZ).
	Mean, Scale []float32
	// Layers are the hidden layers (each followed by ReLU) and, last, the
	// output layer with one output (followed by sigmoid).
	Layers []Layer
	// Schema describes the features of an input row; ExportONNX records it
	// so serving can check it can build the rows (features.FeatureSet.Satisfies).
	Schema features.ModelSchema
	// Seed is the training seed, recorded for reproducibility.
	Seed uint64
}

// Kind returns KindLR for a model with no hidden layers, else KindMLP.
func (m *Model) Kind() Kind {
	if len(m.Layers) <= 1 {
		return KindLR
	}
	return KindMLP
}

// Hidden returns the sizes of the hidden layers (empty for KindLR).
func (m *Model) Hidden() []int {
	if len(m.Layers) <= 1 {
		return nil
	}
	h := make([]int, len(m.Layers)-1)
	for i := range h {
		h[i] = m.Layers[i].Out
	}
	return h
}

// Validate checks the model's shapes, values and schema, reporting every
// problem at once; the error wraps ErrInvalidModel.
func (m *Model) Validate() error {
	var bad []string
	add := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	if m.Width <= 0 {
		add("input width %d, want at least 1", m.Width)
	}
	if len(m.Mean) != m.Width || len(m.Scale) != m.Width {
		add("%d means and %d scales for input width %d", len(m.Mean), len(m.Scale), m.Width)
	}
	if i := firstNonFinite(m.Mean); i >= 0 {
		add("mean[%d] is %v", i, m.Mean[i])
	}
	for i, s := range m.Scale {
		if !(s >= 0) || math.IsInf(float64(s), 0) {
			add("scale[%d] is %v, want a finite value >= 0", i, s)
			break
		}
	}
	if len(m.Layers) == 0 {
		add("no layers")
	}
	in := m.Width
	for l, layer := range m.Layers {
		last := l == len(m.Layers)-1
		switch {
		case layer.In != in:
			add("layer %d reads %d inputs, want %d (the previous layer's outputs)", l, layer.In, in)
		case layer.Out <= 0:
			add("layer %d has %d outputs", l, layer.Out)
		case last && layer.Out != 1:
			add("output layer %d has %d outputs, want 1", l, layer.Out)
		case len(layer.W) != layer.In*layer.Out:
			add("layer %d has %d weights, want %d×%d=%d", l, len(layer.W), layer.Out, layer.In, layer.In*layer.Out)
		case len(layer.B) != layer.Out:
			add("layer %d has %d biases, want %d", l, len(layer.B), layer.Out)
		}
		if i := firstNonFinite(layer.W); i >= 0 {
			add("layer %d weight %d is %v", l, i, layer.W[i])
		}
		if i := firstNonFinite(layer.B); i >= 0 {
			add("layer %d bias %d is %v", l, i, layer.B[i])
		}
		in = layer.Out
	}
	if err := checkSchema(m.Schema, m.Width); err != nil {
		add("%v", err)
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidModel, strings.Join(bad, "; "))
	}
	return nil
}

// checkSchema checks that s names the features of rows of the given width.
func checkSchema(s features.ModelSchema, width int) error {
	if !strings.HasPrefix(s.SchemaHash, features.SchemaHashPrefix) {
		return fmt.Errorf("feature schema hash %q is not a %s hash (set Config.Schema from the features.Layout the rows were built with)", s.SchemaHash, features.SchemaHashPrefix)
	}
	if len(s.Features) == 0 {
		return errors.New("feature schema lists no features")
	}
	total := 0
	seen := make(map[string]bool, len(s.Features))
	for _, f := range s.Features {
		if f.Name == "" || seen[f.Name] {
			return fmt.Errorf("feature schema: feature name %q empty or repeated", f.Name)
		}
		seen[f.Name] = true
		t, err := features.ParseType(f.Type)
		if err != nil {
			return fmt.Errorf("feature schema: %s: %w", f.Name, err)
		}
		if t.Width() == 0 {
			return fmt.Errorf("feature schema: %s: a %s cannot be a ranker input", f.Name, f.Type)
		}
		total += t.Width()
	}
	if total != width {
		return fmt.Errorf("feature schema's %d features fill rows of width %d, not %d", len(s.Features), total, width)
	}
	return nil
}

func firstNonFinite(v []float32) int {
	for i, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return i
		}
	}
	return -1
}

// Predict returns the click probability of each of n rows of Width values,
// laid out row after row. It computes exactly the exported graph in float32:
// Sub, Mul, then per layer Gemm (ReLU between layers), then Sigmoid.
func (m *Model) Predict(rows []float32, n int) ([]float32, error) {
	dst := make([]float32, n)
	if err := m.PredictInto(dst, rows, n); err != nil {
		return nil, err
	}
	return dst, nil
}

// PredictInto is Predict writing into dst[:n].
func (m *Model) PredictInto(dst, rows []float32, n int) error {
	switch {
	case n < 0:
		return fmt.Errorf("ranker: predict: negative row count %d", n)
	case len(rows) != n*m.Width:
		return fmt.Errorf("ranker: predict: %d values for %d rows of width %d, want %d", len(rows), n, m.Width, n*m.Width)
	case len(dst) < n:
		return fmt.Errorf("ranker: predict: destination holds %d scores, want %d", len(dst), n)
	}
	a, b := m.scratch()
	for r := 0; r < n; r++ {
		dst[r] = m.predictRow(rows[r*m.Width:(r+1)*m.Width], a, b)
	}
	return nil
}

// scratch returns two activation buffers large enough for any layer.
func (m *Model) scratch() (a, b []float32) {
	size := m.Width
	for _, l := range m.Layers {
		size = max(size, l.Out)
	}
	return make([]float32, size), make([]float32, size)
}

// predictRow scores one row using a and b as activation buffers.
func (m *Model) predictRow(row, a, b []float32) float32 {
	x := a[:m.Width]
	mean, scale := m.Mean[:len(x)], m.Scale[:len(x)]
	for c, v := range row[:len(x)] {
		x[c] = clipZ((v - mean[c]) * scale[c])
	}
	for l := range m.Layers {
		layer := &m.Layers[l]
		out := b[:layer.Out]
		for o := range out {
			w := layer.W[o*layer.In : (o+1)*layer.In]
			var acc float32
			for i, xi := range x[:len(w)] {
				acc += w[i] * xi
			}
			acc += layer.B[o]
			if l < len(m.Layers)-1 && acc < 0 {
				acc = 0
			}
			out[o] = acc
		}
		x, a, b = out, b, a
	}
	return sigmoid32(x[0])
}

// sigmoid32 is the logistic function, computed in float64 and rounded once.
func sigmoid32(z float32) float32 {
	return float32(1 / (1 + math.Exp(-float64(z))))
}

// Clone returns a deep copy of the model.
func (m *Model) Clone() *Model {
	c := *m
	c.Mean = slices.Clone(m.Mean)
	c.Scale = slices.Clone(m.Scale)
	c.Layers = make([]Layer, len(m.Layers))
	for i, l := range m.Layers {
		c.Layers[i] = Layer{In: l.In, Out: l.Out, W: slices.Clone(l.W), B: slices.Clone(l.B)}
	}
	c.Schema.Features = slices.Clone(m.Schema.Features)
	return &c
}
