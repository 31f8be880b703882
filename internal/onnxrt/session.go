package onnxrt

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// Default tensor names of a scoring model: one float32 input [N, width] and
// one float32 output [N, 1] or [N], N dynamic.
const (
	DefaultInput  = "features"
	DefaultOutput = "score"
)

// Options configure Load. The zero value loads a scoring model with the
// default names on one intra-op thread, finding the library with FindLibrary.
type Options struct {
	// LibraryPath is the ONNX Runtime shared library; empty means
	// FindLibrary's search ($ADAPTREC_ONNXRUNTIME_LIB, then .tools/bin). Only
	// the first Load (or Init) of a process picks the library.
	LibraryPath string
	// IntraOpThreads is how many threads one Score may use; 0 means 1.
	// Serving scores many requests at once on their own goroutines, so
	// splitting one small batch across threads only adds contention.
	IntraOpThreads int
	// Input and Output name the tensors to score with; empty means
	// DefaultInput and DefaultOutput.
	Input, Output string
}

// Validate reports a bad option.
func (o Options) Validate() error {
	if o.IntraOpThreads < 0 {
		return fmt.Errorf("onnxrt: IntraOpThreads %d is negative", o.IntraOpThreads)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.IntraOpThreads == 0 {
		o.IntraOpThreads = 1
	}
	if o.Input == "" {
		o.Input = DefaultInput
	}
	if o.Output == "" {
		o.Output = DefaultOutput
	}
	return o
}

// TensorInfo describes one input or output of a model.
type TensorInfo struct {
	// Name is the tensor's name in the graph.
	Name string
	// Kind is the value kind ("tensor", "sequence", "map", ...); only
	// tensors can be scored.
	Kind string
	// ElemType is the element type as ONNX Runtime names it ("float32", "int64").
	ElemType string
	// Shape holds the dimensions; -1 marks a dynamic one.
	Shape []int64
}

// String formats the tensor as name float32[-1 12].
func (t TensorInfo) String() string {
	if t.Kind != "tensor" {
		return fmt.Sprintf("%s (%s)", t.Name, t.Kind)
	}
	return fmt.Sprintf("%s %s%v", t.Name, t.ElemType, t.Shape)
}

// Info is what ONNX Runtime reports about a model.
type Info struct {
	Inputs, Outputs []TensorInfo
	// Metadata holds the model's metadata_props.
	Metadata map[string]string
	// Producer, GraphName, Domain and Description are the model's own fields.
	Producer, GraphName, Domain, Description string
	// ModelVersion is the model's model_version field.
	ModelVersion int64
}

// CheckScorer checks that the model is a scorer: exactly one input, named
// input, float32 of shape [N, width] with N dynamic and width fixed, and
// exactly one output, named output, float32 of shape [N, 1] or [N]. It
// returns the width, or an error listing every mismatch.
func (i Info) CheckScorer(input, output string) (int, error) {
	var bad []string
	width := 0
	if len(i.Inputs) != 1 {
		bad = append(bad, fmt.Sprintf("has %d inputs %v, want one %q", len(i.Inputs), i.Inputs, input))
	} else {
		in := i.Inputs[0]
		switch {
		case in.Name != input:
			bad = append(bad, fmt.Sprintf("input is %q, want %q", in.Name, input))
		case in.Kind != "tensor" || in.ElemType != "float32":
			bad = append(bad, fmt.Sprintf("input %s is not a float32 tensor", in))
		case len(in.Shape) != 2 || in.Shape[0] >= 0 || in.Shape[1] <= 0:
			bad = append(bad, fmt.Sprintf("input %s: want shape [N, width] with a dynamic batch dimension N and a fixed width", in))
		default:
			width = int(in.Shape[1])
		}
	}
	if len(i.Outputs) != 1 {
		bad = append(bad, fmt.Sprintf("has %d outputs %v, want one %q", len(i.Outputs), i.Outputs, output))
	} else {
		out := i.Outputs[0]
		switch {
		case out.Name != output:
			bad = append(bad, fmt.Sprintf("output is %q, want %q", out.Name, output))
		case out.Kind != "tensor" || out.ElemType != "float32":
			bad = append(bad, fmt.Sprintf("output %s is not a float32 tensor", out))
		case !(len(out.Shape) == 1 && out.Shape[0] < 0) && !(len(out.Shape) == 2 && out.Shape[0] < 0 && out.Shape[1] == 1):
			bad = append(bad, fmt.Sprintf("output %s: want shape [N, 1] or [N] with a dynamic N", out))
		}
	}
	if len(bad) > 0 {
		return 0, fmt.Errorf("not a scoring model: %s", strings.Join(bad, "; "))
	}
	return width, nil
}

// RequireMetadata checks that every key is in the model's metadata, naming
// the missing ones.
func (i Info) RequireMetadata(keys ...string) error {
	var missing []string
	for _, k := range keys {
		if _, ok := i.Metadata[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("model metadata lacks %s", strings.Join(missing, ", "))
	}
	return nil
}

// Inspect loads a model into a throwaway ONNX Runtime session and returns
// its inputs, outputs and metadata, initialising the runtime (Init(libPath))
// if needed. It proves the runtime accepts the model.
func Inspect(data []byte, libPath string) (Info, error) {
	if err := Init(libPath); err != nil {
		return Info{}, err
	}
	ins, outs, err := ort.GetInputOutputInfoWithONNXData(data)
	if err != nil {
		return Info{}, fmt.Errorf("onnxrt: inspect model: %w", err)
	}
	md, err := ort.GetModelMetadataWithONNXData(data)
	if err != nil {
		return Info{}, fmt.Errorf("onnxrt: inspect model metadata: %w", err)
	}
	defer md.Destroy()
	return newInfo(ins, outs, md)
}

func newInfo(ins, outs []ort.InputOutputInfo, md *ort.ModelMetadata) (Info, error) {
	info := Info{Inputs: tensorInfos(ins), Outputs: tensorInfos(outs), Metadata: map[string]string{}}
	var errs []error
	str := func(f func() (string, error)) string {
		s, err := f()
		errs = append(errs, err)
		return s
	}
	info.Producer = str(md.GetProducerName)
	info.GraphName = str(md.GetGraphName)
	info.Domain = str(md.GetDomain)
	info.Description = str(md.GetDescription)
	v, err := md.GetVersion()
	errs = append(errs, err)
	info.ModelVersion = v
	keys, err := md.GetCustomMetadataMapKeys()
	errs = append(errs, err)
	for _, k := range keys {
		val, _, err := md.LookupCustomMetadataMap(k)
		errs = append(errs, err)
		info.Metadata[k] = val
	}
	if err := errors.Join(errs...); err != nil {
		return Info{}, fmt.Errorf("onnxrt: read model metadata: %w", err)
	}
	return info, nil
}

func tensorInfos(in []ort.InputOutputInfo) []TensorInfo {
	out := make([]TensorInfo, len(in))
	for i, t := range in {
		out[i] = TensorInfo{Name: t.Name, Kind: kindName(t.OrtValueType)}
		if t.OrtValueType == ort.ONNXTypeTensor {
			out[i].ElemType = elemTypeName(t.DataType)
			out[i].Shape = slices.Clone([]int64(t.Dimensions))
		}
	}
	return out
}

func kindName(t ort.ONNXType) string {
	switch t {
	case ort.ONNXTypeTensor:
		return "tensor"
	case ort.ONNXTypeSequence:
		return "sequence"
	case ort.ONNXTypeMap:
		return "map"
	case ort.ONNXTypeSparseTensor:
		return "sparse tensor"
	case ort.ONNXTypeOptional:
		return "optional"
	case ort.ONNXTypeOpaque:
		return "opaque"
	}
	return "unknown"
}

func elemTypeName(t ort.TensorElementDataType) string {
	switch t {
	case ort.TensorElementDataTypeFloat:
		return "float32"
	case ort.TensorElementDataTypeDouble:
		return "float64"
	case ort.TensorElementDataTypeInt64:
		return "int64"
	case ort.TensorElementDataTypeInt32:
		return "int32"
	}
	return strings.ToLower(t.String())
}

// ErrClosed is returned by Score on a closed Session.
var ErrClosed = errors.New("onnxrt: session closed")

// Session scores rows with one loaded scoring model. It is safe for
// concurrent use: ONNX Runtime runs one session from many threads, and each
// Score call brings its own tensors.
type Session struct {
	mu    sync.RWMutex // Score holds it shared, Close exclusively
	sess  *ort.DynamicAdvancedSession
	info  Info
	width int
	// outRank is the output's rank (1 or 2), for the output tensor's shape.
	outRank int
}

// Load creates a scoring session from a serialised ONNX model. It
// initialises the runtime on first use (see Init), and refuses a model that
// is not a scorer (see Info.CheckScorer).
func Load(data []byte, opts Options) (*Session, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	if err := Init(opts.LibraryPath); err != nil {
		return nil, err
	}
	ins, outs, err := ort.GetInputOutputInfoWithONNXData(data)
	if err != nil {
		return nil, fmt.Errorf("onnxrt: load model: %w", err)
	}
	info := Info{Inputs: tensorInfos(ins), Outputs: tensorInfos(outs)}
	width, err := info.CheckScorer(opts.Input, opts.Output)
	if err != nil {
		return nil, fmt.Errorf("onnxrt: load model: %w", err)
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("onnxrt: session options: %w", err)
	}
	defer so.Destroy()
	if err := so.SetIntraOpNumThreads(opts.IntraOpThreads); err != nil {
		return nil, fmt.Errorf("onnxrt: set intra-op threads: %w", err)
	}
	if err := so.SetInterOpNumThreads(1); err != nil {
		return nil, fmt.Errorf("onnxrt: set inter-op threads: %w", err)
	}
	sess, err := ort.NewDynamicAdvancedSessionWithONNXData(data, []string{opts.Input}, []string{opts.Output}, so)
	if err != nil {
		return nil, fmt.Errorf("onnxrt: create session: %w", err)
	}
	md, err := sess.GetModelMetadata()
	if err == nil {
		info, err = newInfo(ins, outs, md)
		md.Destroy()
	}
	if err != nil {
		sess.Destroy()
		return nil, fmt.Errorf("onnxrt: load model: %w", err)
	}
	return &Session{sess: sess, info: info, width: width, outRank: len(info.Outputs[0].Shape)}, nil
}

// LoadFile is Load with the model read from path.
func LoadFile(path string, opts Options) (*Session, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("onnxrt: %w", err)
	}
	s, err := Load(data, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Info returns what the runtime reported about the model.
func (s *Session) Info() Info { return s.info }

// Metadata returns the model's metadata_props (shared; do not modify).
func (s *Session) Metadata() map[string]string { return s.info.Metadata }

// Width returns the number of float32 values in one input row.
func (s *Session) Width() int { return s.width }

// Score returns the model's output for n rows of Width values each, laid
// out row after row in rows.
func (s *Session) Score(rows []float32, n int) ([]float32, error) {
	if n < 0 {
		return nil, fmt.Errorf("onnxrt: score: negative row count %d", n)
	}
	dst := make([]float32, n)
	if err := s.ScoreInto(dst, rows, n); err != nil {
		return nil, err
	}
	return dst, nil
}

// ScoreInto is Score writing the n scores into dst[:n], for callers that
// reuse buffers.
func (s *Session) ScoreInto(dst, rows []float32, n int) error {
	switch {
	case n < 0:
		return fmt.Errorf("onnxrt: score: negative row count %d", n)
	case len(rows) != n*s.width:
		return fmt.Errorf("onnxrt: score: %d values for %d rows of width %d, want %d", len(rows), n, s.width, n*s.width)
	case len(dst) < n:
		return fmt.Errorf("onnxrt: score: destination holds %d scores, want %d", len(dst), n)
	case n == 0:
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.sess == nil {
		return ErrClosed
	}
	in, err := ort.NewTensor(ort.Shape{int64(n), int64(s.width)}, rows)
	if err != nil {
		return fmt.Errorf("onnxrt: score: input tensor: %w", err)
	}
	defer in.Destroy()
	outShape := ort.Shape{int64(n), 1}
	if s.outRank == 1 {
		outShape = ort.Shape{int64(n)}
	}
	out, err := ort.NewTensor(outShape, dst[:n])
	if err != nil {
		return fmt.Errorf("onnxrt: score: output tensor: %w", err)
	}
	defer out.Destroy()
	if err := s.sess.Run([]ort.Value{in}, []ort.Value{out}); err != nil {
		return fmt.Errorf("onnxrt: score %d rows: %w", n, err)
	}
	return nil
}

// Close releases the session; Score then returns ErrClosed. It waits for
// Score calls in flight.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sess == nil {
		return nil
	}
	err := s.sess.Destroy()
	s.sess = nil
	if err != nil {
		return fmt.Errorf("onnxrt: close session: %w", err)
	}
	return nil
}
