package onnxrt_test

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	onnx "github.com/adaptrec/adaptrec/gen/onnx"
	"github.com/adaptrec/adaptrec/internal/onnxrt"
)

// requireRuntime initialises ONNX Runtime for an integration test. Only
// -short skips; a missing library fails the test with the fix.
func requireRuntime(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs the ONNX Runtime library; run without -short (make test)")
	}
	if err := onnxrt.Init(""); err != nil {
		t.Fatal(err)
	}
}

// model is a test graph: score = Sigmoid(features·w + b), optionally
// squeezed to [N], with every name and dimension adjustable.
type model struct {
	input, output string
	batch         *onnx.TensorShapeProto_Dimension // nil: dynamic
	elemType      onnx.TensorProto_DataType
	w             []float32
	b             float32
	squeeze       bool
	secondOutput  bool
	props         map[string]string
}

func newModel(w []float32, b float32) model {
	return model{input: "features", output: "score", elemType: onnx.TensorProto_FLOAT, w: w, b: b}
}

func (m model) bytes(t *testing.T) []byte {
	t.Helper()
	width := int64(len(m.w))
	batch := m.batch
	if batch == nil {
		batch = &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimParam{DimParam: "batch"}}
	}
	dim := func(n int64) *onnx.TensorShapeProto_Dimension {
		return &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: n}}
	}
	value := func(name string, et onnx.TensorProto_DataType, dims ...*onnx.TensorShapeProto_Dimension) *onnx.ValueInfoProto {
		return &onnx.ValueInfoProto{Name: proto.String(name), Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{
			TensorType: &onnx.TypeProto_Tensor{ElemType: proto.Int32(int32(et)), Shape: &onnx.TensorShapeProto{Dim: dims}},
		}}}
	}
	node := func(op string, in []string, out string, attrs ...*onnx.AttributeProto) *onnx.NodeProto {
		return &onnx.NodeProto{OpType: proto.String(op), Input: in, Output: []string{out}, Attribute: attrs}
	}
	in := m.input
	g := &onnx.GraphProto{
		Name:  proto.String("test"),
		Input: []*onnx.ValueInfoProto{value(m.input, m.elemType, batch, dim(width))},
		Initializer: []*onnx.TensorProto{
			{Name: proto.String("w"), DataType: proto.Int32(int32(onnx.TensorProto_FLOAT)), Dims: []int64{1, width}, FloatData: m.w},
			{Name: proto.String("b"), DataType: proto.Int32(int32(onnx.TensorProto_FLOAT)), Dims: []int64{1}, FloatData: []float32{m.b}},
		},
	}
	if m.elemType != onnx.TensorProto_FLOAT {
		g.Node = append(g.Node, node("Cast", []string{in}, "cast", &onnx.AttributeProto{
			Name: proto.String("to"), Type: onnx.AttributeProto_INT.Enum(), I: proto.Int64(int64(onnx.TensorProto_FLOAT)),
		}))
		in = "cast"
	}
	g.Node = append(g.Node, node("Gemm", []string{in, "w", "b"}, "logit", &onnx.AttributeProto{
		Name: proto.String("transB"), Type: onnx.AttributeProto_INT.Enum(), I: proto.Int64(1),
	}))
	logit := "logit"
	outDims := []*onnx.TensorShapeProto_Dimension{batch, dim(1)}
	if m.squeeze {
		g.Initializer = append(g.Initializer, &onnx.TensorProto{
			Name: proto.String("axes"), DataType: proto.Int32(int32(onnx.TensorProto_INT64)), Dims: []int64{1}, Int64Data: []int64{1},
		})
		g.Node = append(g.Node, node("Squeeze", []string{"logit", "axes"}, "squeezed"))
		logit, outDims = "squeezed", outDims[:1]
	}
	g.Node = append(g.Node, node("Sigmoid", []string{logit}, m.output))
	g.Output = []*onnx.ValueInfoProto{value(m.output, onnx.TensorProto_FLOAT, outDims...)}
	if m.secondOutput {
		g.Output = append(g.Output, value("logit", onnx.TensorProto_FLOAT, outDims...))
	}
	mp := &onnx.ModelProto{
		IrVersion:    proto.Int64(8),
		OpsetImport:  []*onnx.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(17)}},
		ProducerName: proto.String("onnxrt_test"),
		Graph:        g,
	}
	for k, v := range m.props {
		mp.MetadataProps = append(mp.MetadataProps, &onnx.StringStringEntryProto{Key: proto.String(k), Value: proto.String(v)})
	}
	b, err := proto.Marshal(mp)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// want is the model's score in float64.
func (m model) want(row []float32) float64 {
	z := float64(m.b)
	for i, w := range m.w {
		z += float64(w) * float64(row[i])
	}
	return 1 / (1 + math.Exp(-z))
}

func TestScore(t *testing.T) {
	requireRuntime(t)
	t.Parallel()
	for _, squeeze := range []bool{false, true} {
		t.Run(fmt.Sprintf("squeeze=%v", squeeze), func(t *testing.T) {
			t.Parallel()
			m := newModel([]float32{0.5, -1, 2}, 0.25)
			m.squeeze = squeeze
			m.props = map[string]string{"adaptrec.test": "yes"}
			s, err := onnxrt.Load(m.bytes(t), onnxrt.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.Width() != 3 {
				t.Errorf("Width() = %d, want 3", s.Width())
			}
			if got := s.Metadata()["adaptrec.test"]; got != "yes" {
				t.Errorf("metadata adaptrec.test = %q, want yes", got)
			}
			if err := s.Info().RequireMetadata("adaptrec.test", "adaptrec.absent"); err == nil || !strings.Contains(err.Error(), "adaptrec.absent") || strings.Contains(err.Error(), "adaptrec.test") {
				t.Errorf("RequireMetadata: %v, want adaptrec.absent named alone", err)
			}
			if p := s.Info().Producer; p != "onnxrt_test" {
				t.Errorf("producer %q", p)
			}
			for _, n := range []int{1, 2, 500} {
				rows := make([]float32, n*3)
				for i := range rows {
					rows[i] = float32(i%7) - 3
				}
				scores, err := s.Score(rows, n)
				if err != nil {
					t.Fatalf("Score(%d rows): %v", n, err)
				}
				if len(scores) != n {
					t.Fatalf("Score(%d rows) returned %d scores", n, len(scores))
				}
				for r, got := range scores {
					if want := m.want(rows[r*3 : r*3+3]); math.Abs(float64(got)-want) > 1e-6 {
						t.Fatalf("row %d of %d: score %v, want %v", r, n, got, want)
					}
				}
			}
			if got, err := s.Score(nil, 0); err != nil || len(got) != 0 {
				t.Errorf("Score of 0 rows: %v, %v", got, err)
			}
		})
	}
}

func TestScoreChecksShapes(t *testing.T) {
	requireRuntime(t)
	t.Parallel()
	s, err := onnxrt.Load(newModel([]float32{1, 2}, 0).bytes(t), onnxrt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Score(make([]float32, 5), 2); err == nil || !strings.Contains(err.Error(), "5 values for 2 rows of width 2") {
		t.Errorf("Score of 5 values as 2 rows: %v", err)
	}
	if _, err := s.Score(nil, -1); err == nil {
		t.Error("Score of -1 rows: no error")
	}
	if err := s.ScoreInto(make([]float32, 1), make([]float32, 4), 2); err == nil {
		t.Error("ScoreInto a 1-score destination for 2 rows: no error")
	}
}

func TestScoreConcurrently(t *testing.T) {
	requireRuntime(t)
	t.Parallel()
	m := newModel([]float32{0.1, 0.2, -0.3, 0.4}, -0.5)
	s, err := onnxrt.Load(m.bytes(t), onnxrt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			n := 50 + g
			rows := make([]float32, n*4)
			dst := make([]float32, n)
			for iter := range 100 {
				for i := range rows {
					rows[i] = float32((i+g+iter)%11) - 5
				}
				if err := s.ScoreInto(dst, rows, n); err != nil {
					errs <- err
					return
				}
				for r := range n {
					if want := m.want(rows[r*4 : r*4+4]); math.Abs(float64(dst[r])-want) > 1e-6 {
						errs <- fmt.Errorf("goroutine %d iteration %d row %d: %v, want %v", g, iter, r, dst[r], want)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestClose(t *testing.T) {
	requireRuntime(t)
	t.Parallel()
	s, err := onnxrt.Load(newModel([]float32{1}, 0).bytes(t), onnxrt.Options{IntraOpThreads: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.Score([]float32{1}, 1); !errors.Is(err, onnxrt.ErrClosed) {
		t.Errorf("Score after Close: %v, want ErrClosed", err)
	}
}

func TestLoadRefusesNonScorers(t *testing.T) {
	requireRuntime(t)
	t.Parallel()
	static := &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: 4}}
	tests := []struct {
		name   string
		change func(m *model)
		opts   onnxrt.Options
		want   string
	}{
		{"input name", func(m *model) { m.input = "x" }, onnxrt.Options{}, `input is "x", want "features"`},
		{"output name", func(m *model) { m.output = "prob" }, onnxrt.Options{}, `output is "prob", want "score"`},
		{"static batch", func(m *model) { m.batch = static }, onnxrt.Options{}, "want shape [N, width] with a dynamic batch dimension"},
		{"int64 input", func(m *model) { m.elemType = onnx.TensorProto_INT64 }, onnxrt.Options{}, "input features int64[-1 2] is not a float32 tensor"},
		{"two outputs", func(m *model) { m.secondOutput = true }, onnxrt.Options{}, `has 2 outputs`},
		{"other names asked", func(m *model) {}, onnxrt.Options{Input: "x", Output: "y"}, `input is "features", want "x"`},
		{"negative threads", func(m *model) {}, onnxrt.Options{IntraOpThreads: -1}, "IntraOpThreads -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := newModel([]float32{1, 2}, 0)
			tt.change(&m)
			s, err := onnxrt.Load(m.bytes(t), tt.opts)
			if err == nil {
				s.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load: %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := onnxrt.Load([]byte("not a model"), onnxrt.Options{}); err == nil {
		t.Error("Load of garbage: no error")
	}
	m := newModel([]float32{1, 2}, 0)
	m.input = "renamed"
	s, err := onnxrt.Load(m.bytes(t), onnxrt.Options{Input: "renamed"})
	if err != nil {
		t.Fatalf("Load with Options.Input: %v", err)
	}
	s.Close()
}

func TestLoadFile(t *testing.T) {
	requireRuntime(t)
	t.Parallel()
	path := filepath.Join(t.TempDir(), "m.onnx")
	if err := os.WriteFile(path, newModel([]float32{1, 1}, 0).bytes(t), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := onnxrt.LoadFile(path, onnxrt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := onnxrt.LoadFile(path+".missing", onnxrt.Options{}); err == nil {
		t.Error("LoadFile of a missing file: no error")
	}
}

func TestInitOnce(t *testing.T) {
	requireRuntime(t)
	t.Parallel()
	if err := onnxrt.Init(""); err != nil {
		t.Errorf("second Init: %v", err)
	}
	if err := onnxrt.Init(onnxrt.LibraryPath()); err != nil {
		t.Errorf("Init with the loaded path: %v", err)
	}
	if err := onnxrt.Init("/elsewhere/libonnxruntime.so"); err == nil || !strings.Contains(err.Error(), "already initialised") {
		t.Errorf("Init with another library: %v, want an error", err)
	}
	if v := onnxrt.Version(); !strings.HasPrefix(v, "1.") {
		t.Errorf("Version() = %q", v)
	}
	t.Logf("ONNX Runtime %s from %s", onnxrt.Version(), onnxrt.LibraryPath())
}

func TestInspect(t *testing.T) {
	requireRuntime(t)
	t.Parallel()
	m := newModel([]float32{1, 2, 3}, 0)
	m.props = map[string]string{"k": "v"}
	info, err := onnxrt.Inspect(m.bytes(t), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(info.Inputs, info.Outputs); got != "[features float32[-1 3]] [score float32[-1 1]]" {
		t.Errorf("inputs and outputs %s", got)
	}
	if info.Metadata["k"] != "v" || info.Producer != "onnxrt_test" || info.GraphName != "test" {
		t.Errorf("info %+v", info)
	}
	if width, err := info.CheckScorer(onnxrt.DefaultInput, onnxrt.DefaultOutput); err != nil || width != 3 {
		t.Errorf("CheckScorer = %d, %v", width, err)
	}
	if _, err := onnxrt.Inspect([]byte{1, 2, 3}, ""); err == nil {
		t.Error("Inspect of garbage: no error")
	}
}
