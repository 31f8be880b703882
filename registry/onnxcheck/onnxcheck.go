// Package onnxcheck is the model registry's Validator backed by ONNX
// Runtime (internal/onnxrt): before a version is written it loads the
// ranker as serving will, checks its input and output shapes and its
// adaptrec metadata against the version's manifest, and scores a probe
// batch. The registry itself links no runtime (docs/adr/011); this package
// needs cgo and the ONNX Runtime library.
package onnxcheck

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/adaptrec/adaptrec/features"
	onnx "github.com/adaptrec/adaptrec/gen/onnx"
	"github.com/adaptrec/adaptrec/internal/onnxrt"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/serving/ann"
	"github.com/adaptrec/adaptrec/serving/covisit"
	"github.com/adaptrec/adaptrec/trainer/ranker"
	"github.com/adaptrec/adaptrec/trainer/retrieval"
)

// DefaultProbeRows is the size of the probe batch.
const DefaultProbeRows = 64

// ParityTolerance bounds the difference between ONNX Runtime's scores and
// the Go forward pass for a graph that trainer/ranker exported (ADR 010
// measured at most 2.4e-7 on data like the training data; the probe rows
// are further out).
const ParityTolerance = 1e-4

// Validator checks a version's artifacts with ONNX Runtime. The zero value
// is ready to use.
type Validator struct {
	// LibraryPath is the ONNX Runtime library; empty means onnxrt's search
	// ($ADAPTREC_ONNXRUNTIME_LIB, then the checkout's .tools/bin).
	LibraryPath string
	// ProbeRows is the probe batch's size; 0 means DefaultProbeRows.
	ProbeRows int
}

var _ registry.Validator = (*Validator)(nil)

// Validate refuses the version, naming every problem, unless:
//   - its ranker loads in ONNX Runtime as a scorer (one float32 input
//     [N, width] with a dynamic N, one float32 output [N, 1] or [N]) whose
//     width is the manifest's InputWidth;
//   - its metadata (trainer/ranker.ParseMetadata) is present and
//     consistent, with the manifest's schema hash, width and feature names;
//   - no float initializer holds NaN or ±Inf;
//   - a probe batch (zeros, the features' defaults, then seeded values of
//     growing magnitude) scores finite values in [0, 1], a row scored alone
//     scores as in the batch, and, for a graph trainer/ranker exported, the
//     scores match its Go forward pass within ParityTolerance;
//   - every index artifact loads as a trainer/retrieval index, every ANN
//     index as a serving/ann index and every co-visitation table as a
//     serving/covisit table;
//   - every user-vectors artifact loads as trainer/retrieval user vectors
//     (which refuses repeated ids) of the dims of the version's index, which
//     it must have: user vectors are searched against its item vectors.
func (v *Validator) Validate(ctx context.Context, m registry.Manifest, artifacts map[string][]byte) error {
	var bad []string
	add := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }
	indexes := map[string]*retrieval.Index{}
	var users []registry.File
	for _, f := range m.Artifacts {
		var err error
		switch f.Role {
		case registry.RoleIndex:
			var x *retrieval.Index
			if x, err = retrieval.Load(bytes.NewReader(artifacts[f.Name])); err == nil {
				indexes[f.Name] = x
			}
		case registry.RoleANNIndex:
			_, err = ann.Load(bytes.NewReader(artifacts[f.Name]))
		case registry.RoleCovisit:
			_, err = covisit.Load(bytes.NewReader(artifacts[f.Name]))
		case registry.RoleUserVectors:
			users = append(users, f)
		default:
			continue
		}
		if err != nil {
			add("%s %s: %v", f.Role, f.Name, err)
		}
	}
	for _, f := range users {
		u, err := retrieval.LoadUserVectors(bytes.NewReader(artifacts[f.Name]))
		if err != nil {
			add("%s %s: %v", f.Role, f.Name, err)
			continue
		}
		if !slices.ContainsFunc(m.Artifacts, func(a registry.File) bool { return a.Role == registry.RoleIndex }) {
			add("%s %s: the version has no %s artifact whose item vectors its user vectors belong with", f.Role, f.Name, registry.RoleIndex)
		}
		for _, name := range slices.Sorted(maps.Keys(indexes)) {
			if x := indexes[name]; x.Dims() != u.Dims() {
				add("%s %s holds vectors of %d dims, %s %s of %d: not from the same embeddings", f.Role, f.Name, u.Dims(), registry.RoleIndex, name, x.Dims())
			}
		}
	}
	f, ok := m.Ranker()
	if !ok {
		return errors.New("onnxcheck: the version has no ranker artifact")
	}
	data := artifacts[f.Name]
	sess, err := onnxrt.Load(data, onnxrt.Options{LibraryPath: v.LibraryPath})
	var missing *onnxrt.MissingLibraryError
	if errors.As(err, &missing) {
		return fmt.Errorf("onnxcheck: cannot run ranker %s: %w", f.Name, err)
	}
	if err != nil {
		add("ranker %s does not load in ONNX Runtime: %v", f.Name, err)
		return fmt.Errorf("onnxcheck: %s", strings.Join(bad, "; "))
	}
	defer sess.Close()
	width := sess.Width()
	if width != m.InputWidth {
		add("ranker %s reads rows of %d values, the manifest's schema has %d", f.Name, width, m.InputWidth)
	}
	md, err := ranker.ParseMetadata(sess.Metadata())
	switch {
	case err != nil:
		add("ranker %s: %v", f.Name, err)
	default:
		if md.Schema.SchemaHash != m.SchemaHash {
			add("ranker %s metadata has schema hash %s, the manifest %s", f.Name, md.Schema.SchemaHash, m.SchemaHash)
		}
		if md.Width != width {
			add("ranker %s metadata says width %d, its input has %d", f.Name, md.Width, width)
		}
		if !slices.Equal(md.Schema.Names(), m.Schema.Names()) {
			add("ranker %s metadata lists features %v, the manifest %v", f.Name, md.Schema.Names(), m.Schema.Names())
		}
	}
	if names := nonFinite(data); len(names) > 0 {
		add("ranker %s has NaN or infinite values in %s", f.Name, strings.Join(names, ", "))
	}
	if width == m.InputWidth && width > 0 {
		if err := v.probe(ctx, sess, data, m.Schema, width); err != nil {
			add("ranker %s: %v", f.Name, err)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("onnxcheck: %s", strings.Join(bad, "; "))
	}
	return nil
}

// nonFinite names the float32 initializers holding NaN or ±Inf: a weight
// that saturates a sigmoid would still score in [0, 1].
func nonFinite(data []byte) []string {
	var mp onnx.ModelProto
	if err := proto.Unmarshal(data, &mp); err != nil {
		return nil // ONNX Runtime loaded it; nothing more to learn here
	}
	var out []string
	for _, t := range mp.GetGraph().GetInitializer() {
		if t.GetDataType() != int32(onnx.TensorProto_FLOAT) {
			continue
		}
		vals := t.GetFloatData()
		if raw := t.GetRawData(); len(raw) > 0 {
			vals = make([]float32, len(raw)/4)
			for i := range vals {
				vals[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			}
		}
		for _, v := range vals {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				out = append(out, t.GetName())
				break
			}
		}
	}
	return out
}

// probe scores the probe batch and checks the scores.
func (v *Validator) probe(ctx context.Context, sess *onnxrt.Session, data []byte, schema features.ModelSchema, width int) error {
	n := v.ProbeRows
	if n <= 0 {
		n = DefaultProbeRows
	}
	rows := ProbeRows(schema, width, max(n, 3))
	n = len(rows) / width
	if err := ctx.Err(); err != nil {
		return err
	}
	scores, err := sess.Score(rows, n)
	if err != nil {
		return fmt.Errorf("scoring %d probe rows: %w", n, err)
	}
	for i, s := range scores {
		if !(s >= 0 && s <= 1) {
			return fmt.Errorf("probe row %d scores %v, want a finite value in [0, 1]", i, s)
		}
	}
	last := n - 1
	alone, err := sess.Score(rows[last*width:], 1)
	if err != nil {
		return fmt.Errorf("scoring one probe row: %w", err)
	}
	if d := math.Abs(float64(alone[0] - scores[last])); d > ParityTolerance {
		return fmt.Errorf("probe row %d scores %v alone and %v in a batch of %d", last, alone[0], scores[last], n)
	}
	// Graphs of another exporter are not ours to interpret: parity is
	// checked for trainer/ranker's own, on rows like its training data
	// (within 3 standard deviations of its columns' means), where float32
	// summation order cannot explain a difference.
	model, err := ranker.ParseONNX(data)
	if err != nil {
		return nil
	}
	rows = parityRows(model, n)
	if scores, err = sess.Score(rows, n); err != nil {
		return fmt.Errorf("scoring %d parity rows: %w", n, err)
	}
	want, err := model.Predict(rows, n)
	if err != nil {
		return fmt.Errorf("Go forward pass: %w", err)
	}
	for i := range want {
		if d := math.Abs(float64(want[i] - scores[i])); !(d <= ParityTolerance) {
			return fmt.Errorf("parity row %d scores %v in ONNX Runtime and %v in the Go forward pass of the exported graph (difference %.3g > %g)",
				i, scores[i], want[i], d, ParityTolerance)
		}
	}
	return nil
}

// parityRows draws n seeded rows within 3 standard deviations of the
// model's column means.
func parityRows(m *ranker.Model, n int) []float32 {
	rows := make([]float32, n*m.Width)
	rng := rand.New(rand.NewPCG(0x9a7, 0x1e5))
	for i := range n {
		for c := range m.Width {
			v := m.Mean[c]
			if m.Scale[c] > 0 {
				v += float32(6*rng.Float64()-3) / m.Scale[c]
			}
			rows[i*m.Width+c] = v
		}
	}
	return rows
}

// ProbeRows returns n probe rows of width values for a model with schema:
// zeros, then every feature's default, then rows whose values are drawn
// (seeded, so every run probes the same rows) around the defaults with a
// spread that grows to 100.
func ProbeRows(schema features.ModelSchema, width, n int) []float32 {
	defaults := make([]float32, 0, width)
	for _, f := range schema.Features {
		t, err := features.ParseType(f.Type)
		if err != nil || t.Width() == 0 {
			continue
		}
		vals := parseDefault(f.Default, t.Width())
		defaults = append(defaults, vals...)
	}
	if len(defaults) != width {
		defaults = make([]float32, width)
	}
	rows := make([]float32, n*width)
	copy(rows[width:], defaults)
	rng := rand.New(rand.NewPCG(0x0cc, 0x9b3))
	for i := 2; i < n; i++ {
		spread := math.Pow(100, float64(i-2)/float64(max(n-3, 1)))
		row := rows[i*width : (i+1)*width]
		for c := range row {
			row[c] = defaults[c] + float32((2*rng.Float64()-1)*spread)
		}
	}
	return rows
}

// parseDefault reads a RequiredFeature's canonical default: a number, or a
// JSON array of numbers; anything else gives zeros.
func parseDefault(s string, width int) []float32 {
	out := make([]float32, width)
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "[") {
		parts := strings.Split(strings.Trim(s, "[]"), ",")
		if len(parts) != width {
			return out
		}
		for i, p := range parts {
			if v, err := strconv.ParseFloat(strings.TrimSpace(p), 32); err == nil {
				out[i] = float32(v)
			}
		}
		return out
	}
	if v, err := strconv.ParseFloat(s, 32); err == nil && width == 1 {
		out[0] = float32(v)
	}
	return out
}
