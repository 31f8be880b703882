package ranker_test

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/adaptrec/adaptrec/features"
	onnx "github.com/adaptrec/adaptrec/gen/onnx"
	"github.com/adaptrec/adaptrec/trainer/ranker"
)

func exportModel(t *testing.T, m *ranker.Model) []byte {
	t.Helper()
	b, err := m.ExportONNX()
	if err != nil {
		t.Fatalf("ExportONNX: %v", err)
	}
	return b
}

func decode(t *testing.T, b []byte) *onnx.ModelProto {
	t.Helper()
	var mp onnx.ModelProto
	if err := proto.Unmarshal(b, &mp); err != nil {
		t.Fatal(err)
	}
	return &mp
}

func TestExportGraph(t *testing.T) {
	t.Parallel()
	d := synthetic(linear, 500, 5, 1)
	tests := []struct {
		hidden []int
		ops    []string
	}{
		{nil, []string{"Sub", "Mul", "Clip", "Gemm", "Sigmoid"}},
		{[]int{8, 4}, []string{"Sub", "Mul", "Clip", "Gemm", "Relu", "Gemm", "Relu", "Gemm", "Sigmoid"}},
	}
	for _, tt := range tests {
		m := train(t, d, ranker.Config{Hidden: tt.hidden, Epochs: 1, Seed: 3}).Model
		mp := decode(t, exportModel(t, m))
		if mp.GetIrVersion() != 8 || len(mp.GetOpsetImport()) != 1 || mp.GetOpsetImport()[0].GetVersion() != 17 || mp.GetOpsetImport()[0].GetDomain() != "" {
			t.Errorf("hidden %v: IR %d, opsets %v; want IR 8 and the default domain at opset 17", tt.hidden, mp.GetIrVersion(), mp.GetOpsetImport())
		}
		g := mp.GetGraph()
		var ops []string
		for _, n := range g.GetNode() {
			ops = append(ops, n.GetOpType())
		}
		if !slices.Equal(ops, tt.ops) {
			t.Errorf("hidden %v: ops %v, want %v", tt.hidden, ops, tt.ops)
		}
		shape := func(v *onnx.ValueInfoProto) []string {
			var dims []string
			for _, d := range v.GetType().GetTensorType().GetShape().GetDim() {
				if p := d.GetDimParam(); p != "" {
					dims = append(dims, p)
				} else {
					dims = append(dims, strconv.FormatInt(d.GetDimValue(), 10))
				}
			}
			return dims
		}
		if len(g.GetInput()) != 1 || g.GetInput()[0].GetName() != "features" || !slices.Equal(shape(g.GetInput()[0]), []string{"batch", "5"}) {
			t.Errorf("hidden %v: inputs %v, want features [batch, 5]", tt.hidden, g.GetInput())
		}
		if len(g.GetOutput()) != 1 || g.GetOutput()[0].GetName() != "score" || !slices.Equal(shape(g.GetOutput()[0]), []string{"batch", "1"}) {
			t.Errorf("hidden %v: outputs %v, want score [batch, 1]", tt.hidden, g.GetOutput())
		}
		if et := g.GetInput()[0].GetType().GetTensorType().GetElemType(); et != int32(onnx.TensorProto_FLOAT) {
			t.Errorf("input element type %d, want FLOAT", et)
		}
	}
}

func TestExportRoundTrip(t *testing.T) {
	t.Parallel()
	for _, hidden := range [][]int{nil, {6}, {7, 3}} {
		m := train(t, synthetic(xor, 600, 4, 2), ranker.Config{Hidden: hidden, Epochs: 2, Seed: 1234567890123}).Model
		b := exportModel(t, m)
		if again := exportModel(t, m.Clone()); !bytes.Equal(b, again) {
			t.Errorf("hidden %v: exporting the same model twice gave different bytes", hidden)
		}
		back, err := ranker.ParseONNX(b)
		if err != nil {
			t.Fatalf("hidden %v: ParseONNX: %v", hidden, err)
		}
		if !reflect.DeepEqual(back, m) {
			t.Errorf("hidden %v: ParseONNX(ExportONNX(m)) differs from m", hidden)
		}
		md, err := ranker.ReadMetadata(b)
		if err != nil {
			t.Fatalf("hidden %v: ReadMetadata: %v", hidden, err)
		}
		if !reflect.DeepEqual(md, m.Metadata()) {
			t.Errorf("hidden %v: metadata %+v, want %+v", hidden, md, m.Metadata())
		}
		if md.Seed != 1234567890123 || md.Width != 4 || !slices.Equal(md.Hidden, hidden) {
			t.Errorf("hidden %v: metadata seed %d width %d hidden %v", hidden, md.Seed, md.Width, md.Hidden)
		}
	}
}

// TestExportMetadataLetsServingCheckSchema trains on rows of the project's
// feature definitions and checks the exported model's schema is what
// features.FeatureSet.Satisfies accepts, and refuses once a definition the
// model reads changes.
func TestExportMetadataLetsServingCheckSchema(t *testing.T) {
	t.Parallel()
	fs, err := features.Load("../../features/features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fs.RankerInputs() {
		names = append(names, f.Name)
	}
	layout, err := fs.NewLayout(names)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	d := ranker.Dataset{Width: layout.Width()}
	for range 300 {
		for range layout.Width() {
			d.Rows = append(d.Rows, float32(rng.NormFloat64()))
		}
		d.Labels = append(d.Labels, float32(rng.IntN(2)))
	}
	m := train(t, d, ranker.Config{Hidden: []int{8}, Epochs: 1, Seed: 1, Schema: layout.Schema()}).Model
	md, err := ranker.ReadMetadata(exportModel(t, m))
	if err != nil {
		t.Fatal(err)
	}
	if md.Schema.SchemaHash != fs.SchemaHash() || !slices.Equal(md.Schema.Names(), names) {
		t.Errorf("metadata schema %s with %d features, want %s with %d", md.Schema.SchemaHash, len(md.Schema.Features), fs.SchemaHash(), len(names))
	}
	if err := fs.Satisfies(md.Schema); err != nil {
		t.Errorf("the definitions the model was trained on refuse it: %v", err)
	}
	if _, err := fs.LayoutFor(md.Schema); err != nil {
		t.Errorf("LayoutFor: %v", err)
	}
	changed := md.Schema
	changed.Features = slices.Clone(changed.Features)
	changed.Features[0].Default = "12345"
	if err := fs.Satisfies(changed); !errors.Is(err, features.ErrIncompatible) {
		t.Errorf("Satisfies with a changed default: %v, want ErrIncompatible", err)
	}
}

func TestExportRefusesInvalidModels(t *testing.T) {
	t.Parallel()
	base := train(t, synthetic(linear, 300, 4, 1), ranker.Config{Hidden: []int{3}, Epochs: 1, Seed: 1}).Model
	tests := []struct {
		name   string
		change func(m *ranker.Model)
		want   string
	}{
		{"no schema", func(m *ranker.Model) { m.Schema = features.ModelSchema{} }, `feature schema hash "" is not a fs1: hash`},
		{"schema of other width", func(m *ranker.Model) { m.Schema = testSchema(5) }, "fill rows of width 5, not 4"},
		{"schema with a list", func(m *ranker.Model) { m.Schema.Features[1].Type = "list" }, "a list cannot be a ranker input"},
		{"zero width", func(m *ranker.Model) { m.Width = 0 }, "input width 0"},
		{"short mean", func(m *ranker.Model) { m.Mean = m.Mean[:2] }, "2 means and 4 scales"},
		{"negative scale", func(m *ranker.Model) { m.Scale[1] = -1 }, "scale[1] is -1"},
		{"no layers", func(m *ranker.Model) { m.Layers = nil }, "no layers"},
		{"short weights", func(m *ranker.Model) { m.Layers[0].W = m.Layers[0].W[:5] }, "layer 0 has 5 weights, want 3×4=12"},
		{"broken chain", func(m *ranker.Model) { m.Layers[1].In = 2 }, "layer 1 reads 2 inputs, want 3"},
		{"two outputs", func(m *ranker.Model) {
			m.Layers[1] = ranker.Layer{In: 3, Out: 2, W: make([]float32, 6), B: make([]float32, 2)}
		}, "output layer 1 has 2 outputs, want 1"},
		{"NaN weight", func(m *ranker.Model) { m.Layers[1].W[2] = float32(math.NaN()) }, "layer 1 weight 2 is NaN"},
		{"infinite bias", func(m *ranker.Model) { m.Layers[0].B[0] = float32(math.Inf(-1)) }, "layer 0 bias 0 is -Inf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := base.Clone()
			tt.change(m)
			b, err := m.ExportONNX()
			if b != nil || !errors.Is(err, ranker.ErrInvalidModel) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ExportONNX: %d bytes, %v; want an ErrInvalidModel containing %q", len(b), err, tt.want)
			}
		})
	}
	// Every problem is reported at once.
	m := base.Clone()
	m.Schema = features.ModelSchema{}
	m.Layers[1].W[0] = float32(math.NaN())
	if _, err := m.ExportONNX(); err == nil || !strings.Contains(err.Error(), "NaN") || !strings.Contains(err.Error(), "schema") {
		t.Errorf("two problems: %v, want both named", err)
	}
}

func TestParseONNXRefusesOtherGraphs(t *testing.T) {
	t.Parallel()
	m := train(t, synthetic(linear, 300, 4, 1), ranker.Config{Hidden: []int{3}, Epochs: 1, Seed: 1}).Model
	b := exportModel(t, m)
	tests := []struct {
		name   string
		change func(mp *onnx.ModelProto)
		want   string
	}{
		{"op changed", func(mp *onnx.ModelProto) { mp.Graph.Node[3].OpType = proto.String("Tanh") }, "not the one ExportONNX writes"},
		{"opset changed", func(mp *onnx.ModelProto) { mp.OpsetImport[0].Version = proto.Int64(13) }, "not the one ExportONNX writes"},
		{"initializer missing", func(mp *onnx.ModelProto) { mp.Graph.Initializer = mp.Graph.Initializer[:3] }, "initializer dense0.bias missing"},
		{"no metadata", func(mp *onnx.ModelProto) { mp.MetadataProps = nil }, "missing adaptrec.ranker.format"},
		{"hash mismatch", func(mp *onnx.ModelProto) { setProp(mp, ranker.MetaSchemaHash, "fs1:other") }, "differs from the model schema's"},
		{"names mismatch", func(mp *onnx.ModelProto) { setProp(mp, ranker.MetaFeatureNames, `["a"]`) }, "differs from the model schema's features"},
		{"kind mismatch", func(mp *onnx.ModelProto) { setProp(mp, ranker.MetaKind, "lr") }, `does not match adaptrec.hidden "3"`},
		{"width mismatch", func(mp *onnx.ModelProto) { setProp(mp, ranker.MetaWidth, "5") }, "fill rows of width 4, not 5"},
		{"newer format", func(mp *onnx.ModelProto) { setProp(mp, ranker.MetaFormat, "2") }, `format "2"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mp := decode(t, b)
			tt.change(mp)
			changed, err := proto.Marshal(mp)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := ranker.ParseONNX(changed); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseONNX: %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := ranker.ParseONNX([]byte("not a model")); err == nil {
		t.Error("ParseONNX of garbage: no error")
	}
}

func setProp(mp *onnx.ModelProto, key, value string) {
	for _, p := range mp.MetadataProps {
		if p.GetKey() == key {
			p.Value = proto.String(value)
		}
	}
}
