package ranker

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/adaptrec/adaptrec/features"
	onnx "github.com/adaptrec/adaptrec/gen/onnx"
)

// The exported graph's contract with serving (internal/onnxrt's defaults).
const (
	// InputName is the graph input: float32 [N, Width], N dynamic.
	InputName = "features"
	// OutputName is the graph output: float32 [N, 1] click probabilities.
	OutputName = "score"
	// Opset is the ONNX operator set version the graph imports.
	Opset = 17
	// IRVersion is the ONNX IR version written (IR 8 goes with opset 17).
	IRVersion = 8
	// BatchDim names the dynamic batch dimension.
	BatchDim = "batch"
	// ProducerName is written to the model's producer_name.
	ProducerName = "adaptrec"
	// GraphName is written to the graph's name.
	GraphName = "adaptrec_ranker"
)

// Metadata keys written into the ONNX model's metadata_props.
const (
	// MetaFormat holds the version of this metadata layout ("1").
	MetaFormat = "adaptrec.ranker.format"
	// MetaKind holds the model family ("lr" or "mlp").
	MetaKind = "adaptrec.model_kind"
	// MetaHidden holds the hidden layer sizes, comma-separated ("" for lr).
	MetaHidden = "adaptrec.hidden"
	// MetaSeed holds the training seed in decimal.
	MetaSeed = "adaptrec.seed"
	// MetaWidth holds the input row width in decimal.
	MetaWidth = "adaptrec.input_width"
	// MetaSchemaHash holds the feature schema hash (features.FeatureSet.SchemaHash).
	MetaSchemaHash = "adaptrec.feature_schema_hash"
	// MetaFeatureNames holds the input features in row order, as a JSON array.
	MetaFeatureNames = "adaptrec.feature_names"
	// MetaModelSchema holds the features.ModelSchema as JSON: what
	// features.FeatureSet.Satisfies needs to accept or refuse the model.
	MetaModelSchema = "adaptrec.model_schema"
)

const metaFormat = "1"

// Metadata is what an exported ranker records about itself.
type Metadata struct {
	Kind   Kind
	Hidden []int
	Seed   uint64
	Width  int
	// Schema is the model's feature schema; serving checks it with
	// features.FeatureSet.Satisfies before accepting the model.
	Schema features.ModelSchema
}

// Metadata returns the model's metadata.
func (m *Model) Metadata() Metadata {
	return Metadata{Kind: m.Kind(), Hidden: m.Hidden(), Seed: m.Seed, Width: m.Width, Schema: m.Schema}
}

// Props returns the metadata as ONNX metadata_props, keys sorted.
func (md Metadata) Props() ([]*onnx.StringStringEntryProto, error) {
	schema, err := json.Marshal(md.Schema)
	if err != nil {
		return nil, fmt.Errorf("encode model schema: %w", err)
	}
	names, err := json.Marshal(md.Schema.Names())
	if err != nil {
		return nil, fmt.Errorf("encode feature names: %w", err)
	}
	hidden := make([]string, len(md.Hidden))
	for i, h := range md.Hidden {
		hidden[i] = strconv.Itoa(h)
	}
	kv := map[string]string{
		MetaFormat:       metaFormat,
		MetaKind:         string(md.Kind),
		MetaHidden:       strings.Join(hidden, ","),
		MetaSeed:         strconv.FormatUint(md.Seed, 10),
		MetaWidth:        strconv.Itoa(md.Width),
		MetaSchemaHash:   md.Schema.SchemaHash,
		MetaFeatureNames: string(names),
		MetaModelSchema:  string(schema),
	}
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	props := make([]*onnx.StringStringEntryProto, len(keys))
	for i, k := range keys {
		props[i] = &onnx.StringStringEntryProto{Key: proto.String(k), Value: proto.String(kv[k])}
	}
	return props, nil
}

// ParseMetadata reads a ranker's metadata from its ONNX metadata_props (as
// internal/onnxrt's Session.Metadata returns them) and checks it is
// consistent: the schema hash and feature names agree with the model
// schema, whose feature widths add up to the input width.
func ParseMetadata(props map[string]string) (Metadata, error) {
	var missing []string
	for _, k := range []string{MetaFormat, MetaKind, MetaHidden, MetaSeed, MetaWidth, MetaSchemaHash, MetaFeatureNames, MetaModelSchema} {
		if _, ok := props[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return Metadata{}, fmt.Errorf("ranker metadata: missing %s (not a model exported by trainer/ranker)", strings.Join(missing, ", "))
	}
	if f := props[MetaFormat]; f != metaFormat {
		return Metadata{}, fmt.Errorf("ranker metadata: format %q, this build reads %q", f, metaFormat)
	}
	var md Metadata
	var bad []string
	md.Kind = Kind(props[MetaKind])
	if md.Kind != KindLR && md.Kind != KindMLP {
		bad = append(bad, fmt.Sprintf("%s %q is not %q or %q", MetaKind, md.Kind, KindLR, KindMLP))
	}
	if h := props[MetaHidden]; h != "" {
		for _, s := range strings.Split(h, ",") {
			n, err := strconv.Atoi(s)
			if err != nil || n <= 0 {
				bad = append(bad, fmt.Sprintf("%s %q is not a list of positive sizes", MetaHidden, h))
				break
			}
			md.Hidden = append(md.Hidden, n)
		}
	}
	if (md.Kind == KindLR) != (len(md.Hidden) == 0) {
		bad = append(bad, fmt.Sprintf("%s %q does not match %s %q", MetaKind, md.Kind, MetaHidden, props[MetaHidden]))
	}
	var err error
	if md.Seed, err = strconv.ParseUint(props[MetaSeed], 10, 64); err != nil {
		bad = append(bad, fmt.Sprintf("%s %q is not an unsigned integer", MetaSeed, props[MetaSeed]))
	}
	if md.Width, err = strconv.Atoi(props[MetaWidth]); err != nil || md.Width <= 0 {
		bad = append(bad, fmt.Sprintf("%s %q is not a positive integer", MetaWidth, props[MetaWidth]))
	}
	if err := json.Unmarshal([]byte(props[MetaModelSchema]), &md.Schema); err != nil {
		bad = append(bad, fmt.Sprintf("%s: %v", MetaModelSchema, err))
	} else {
		if md.Schema.SchemaHash != props[MetaSchemaHash] {
			bad = append(bad, fmt.Sprintf("%s %q differs from the model schema's %q", MetaSchemaHash, props[MetaSchemaHash], md.Schema.SchemaHash))
		}
		var names []string
		if err := json.Unmarshal([]byte(props[MetaFeatureNames]), &names); err != nil || !slices.Equal(names, md.Schema.Names()) {
			bad = append(bad, fmt.Sprintf("%s %s differs from the model schema's features", MetaFeatureNames, props[MetaFeatureNames]))
		}
		if md.Width > 0 {
			if err := checkSchema(md.Schema, md.Width); err != nil {
				bad = append(bad, err.Error())
			}
		}
	}
	if len(bad) > 0 {
		return Metadata{}, fmt.Errorf("ranker metadata: %s", strings.Join(bad, "; "))
	}
	return md, nil
}

// ExportONNX returns the model as a serialised ONNX model: opset 17, input
// "features" float32 [N, Width] with N dynamic, output "score" float32
// [N, 1], computing Sigmoid(Gemm(...Relu(Gemm(Mul(Sub(features, mean),
// scale), W0, B0)...))), with the model's Metadata in metadata_props. It
// refuses an invalid model (see Validate). The same model always gives
// the same bytes.
func (m *Model) ExportONNX() ([]byte, error) {
	mp, err := m.onnxModel()
	if err != nil {
		return nil, err
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(mp)
	if err != nil {
		return nil, fmt.Errorf("ranker: export: marshal ONNX: %w", err)
	}
	return b, nil
}

// Initializer names in the exported graph.
const (
	initMean    = "standardize.mean"
	initScale   = "standardize.scale"
	initClipMin = "standardize.clip_min"
	initClipMax = "standardize.clip_max"
)

func layerWeight(l int) string { return "dense" + strconv.Itoa(l) + ".weight" }
func layerBias(l int) string   { return "dense" + strconv.Itoa(l) + ".bias" }

func (m *Model) onnxModel() (*onnx.ModelProto, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("ranker: export: %w", err)
	}
	props, err := m.Metadata().Props()
	if err != nil {
		return nil, fmt.Errorf("ranker: export: %w", err)
	}
	g := &onnx.GraphProto{
		Name:      proto.String(GraphName),
		DocString: proto.String(fmt.Sprintf("adaptrec click-probability ranker (%s, hidden %v) over %d-wide feature rows, schema %s", m.Kind(), m.Hidden(), m.Width, m.Schema.SchemaHash)),
		Input:     []*onnx.ValueInfoProto{tensorValue(InputName, dimParam(BatchDim), dimValue(int64(m.Width)))},
		Output:    []*onnx.ValueInfoProto{tensorValue(OutputName, dimParam(BatchDim), dimValue(1))},
		Initializer: []*onnx.TensorProto{
			floatTensor(initMean, m.Mean, int64(m.Width)),
			floatTensor(initScale, m.Scale, int64(m.Width)),
			floatTensor(initClipMin, []float32{-ClipZ}),
			floatTensor(initClipMax, []float32{ClipZ}),
		},
	}
	node := func(op, name string, inputs []string, output string, attrs ...*onnx.AttributeProto) {
		g.Node = append(g.Node, &onnx.NodeProto{
			OpType: proto.String(op), Name: proto.String(name),
			Input: inputs, Output: []string{output}, Attribute: attrs,
		})
	}
	node("Sub", "standardize.sub", []string{InputName, initMean}, "standardize.centered")
	node("Mul", "standardize.mul", []string{"standardize.centered", initScale}, "standardize.scaled")
	node("Clip", "standardize.clip", []string{"standardize.scaled", initClipMin, initClipMax}, "standardize.out")
	x := "standardize.out"
	for l, layer := range m.Layers {
		w, b := layerWeight(l), layerBias(l)
		g.Initializer = append(g.Initializer,
			floatTensor(w, layer.W, int64(layer.Out), int64(layer.In)),
			floatTensor(b, layer.B, int64(layer.Out)))
		gemm := "dense" + strconv.Itoa(l) + ".gemm"
		node("Gemm", gemm, []string{x, w, b}, gemm, intAttr("transB", 1))
		x = gemm
		if l < len(m.Layers)-1 {
			relu := "dense" + strconv.Itoa(l) + ".relu"
			node("Relu", relu, []string{x}, relu)
			x = relu
		}
	}
	node("Sigmoid", "sigmoid", []string{x}, OutputName)
	return &onnx.ModelProto{
		IrVersion:       proto.Int64(IRVersion),
		OpsetImport:     []*onnx.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(Opset)}},
		ProducerName:    proto.String(ProducerName),
		ProducerVersion: proto.String(metaFormat),
		Graph:           g,
		MetadataProps:   props,
	}, nil
}

func dimParam(name string) *onnx.TensorShapeProto_Dimension {
	return &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimParam{DimParam: name}}
}

func dimValue(n int64) *onnx.TensorShapeProto_Dimension {
	return &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: n}}
}

func tensorValue(name string, dims ...*onnx.TensorShapeProto_Dimension) *onnx.ValueInfoProto {
	return &onnx.ValueInfoProto{
		Name: proto.String(name),
		Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{TensorType: &onnx.TypeProto_Tensor{
			ElemType: proto.Int32(int32(onnx.TensorProto_FLOAT)),
			Shape:    &onnx.TensorShapeProto{Dim: dims},
		}}},
	}
}

func floatTensor(name string, data []float32, dims ...int64) *onnx.TensorProto {
	return &onnx.TensorProto{
		Name:      proto.String(name),
		DataType:  proto.Int32(int32(onnx.TensorProto_FLOAT)),
		Dims:      dims,
		FloatData: slices.Clone(data),
	}
}

func intAttr(name string, v int64) *onnx.AttributeProto {
	return &onnx.AttributeProto{Name: proto.String(name), Type: onnx.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

// ReadMetadata decodes a serialised ONNX model and parses its ranker
// metadata (see ParseMetadata), without ONNX Runtime: enough for a registry
// to check a model's feature schema before anything loads it.
func ReadMetadata(data []byte) (Metadata, error) {
	var mp onnx.ModelProto
	if err := proto.Unmarshal(data, &mp); err != nil {
		return Metadata{}, fmt.Errorf("ranker: decode ONNX model: %w", err)
	}
	return ParseMetadata(propsMap(&mp))
}

func propsMap(mp *onnx.ModelProto) map[string]string {
	props := make(map[string]string, len(mp.GetMetadataProps()))
	for _, p := range mp.GetMetadataProps() {
		props[p.GetKey()] = p.GetValue()
	}
	return props
}

// ParseONNX decodes a model written by ExportONNX back into a Model, so the
// Go forward pass can run an artifact from the registry. It accepts only
// graphs of exactly that shape, and checks the result with Validate.
func ParseONNX(data []byte) (*Model, error) {
	var mp onnx.ModelProto
	if err := proto.Unmarshal(data, &mp); err != nil {
		return nil, fmt.Errorf("ranker: decode ONNX model: %w", err)
	}
	md, err := ParseMetadata(propsMap(&mp))
	if err != nil {
		return nil, fmt.Errorf("ranker: parse ONNX model: %w", err)
	}
	m := &Model{Width: md.Width, Seed: md.Seed, Schema: md.Schema}
	// Rebuild the graph this metadata implies and compare structure: any
	// other graph is not ours to interpret.
	sizes := append(append([]int{md.Width}, md.Hidden...), 1)
	inits := make(map[string]*onnx.TensorProto, len(mp.GetGraph().GetInitializer()))
	for _, t := range mp.GetGraph().GetInitializer() {
		inits[t.GetName()] = t
	}
	var bad []string
	get := func(name string, dims ...int64) []float32 {
		t, ok := inits[name]
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("initializer %s missing", name))
			return nil
		case t.GetDataType() != int32(onnx.TensorProto_FLOAT) || !slices.Equal(t.GetDims(), dims):
			bad = append(bad, fmt.Sprintf("initializer %s is type %d dims %v, want float dims %v", name, t.GetDataType(), t.GetDims(), dims))
			return nil
		case len(t.GetRawData()) > 0:
			bad = append(bad, fmt.Sprintf("initializer %s uses raw_data; ExportONNX writes float_data", name))
			return nil
		}
		return slices.Clone(t.GetFloatData())
	}
	m.Mean = get(initMean, int64(md.Width))
	m.Scale = get(initScale, int64(md.Width))
	for _, c := range []struct {
		name string
		want float32
	}{{initClipMin, -ClipZ}, {initClipMax, ClipZ}} {
		if v := get(c.name); v != nil && (len(v) != 1 || v[0] != c.want) {
			bad = append(bad, fmt.Sprintf("initializer %s is %v, want [%v]", c.name, v, c.want))
		}
	}
	for l := 0; l+1 < len(sizes); l++ {
		in, out := sizes[l], sizes[l+1]
		m.Layers = append(m.Layers, Layer{
			In: in, Out: out,
			W: get(layerWeight(l), int64(out), int64(in)),
			B: get(layerBias(l), int64(out)),
		})
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("ranker: parse ONNX model: %w: %s", ErrInvalidModel, strings.Join(bad, "; "))
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("ranker: parse ONNX model: %w", err)
	}
	want, err := m.onnxModel()
	if err != nil {
		return nil, fmt.Errorf("ranker: parse ONNX model: %w", err)
	}
	if !sameGraphStructure(want.GetGraph(), mp.GetGraph()) || mp.GetIrVersion() != IRVersion ||
		len(mp.GetOpsetImport()) != 1 || mp.GetOpsetImport()[0].GetVersion() != Opset {
		return nil, fmt.Errorf("ranker: parse ONNX model: %w: the graph is not the one ExportONNX writes for a %s model with hidden layers %v", ErrInvalidModel, md.Kind, md.Hidden)
	}
	return m, nil
}

// sameGraphStructure compares nodes, inputs and outputs, not initializer data.
func sameGraphStructure(a, b *onnx.GraphProto) bool {
	strip := func(g *onnx.GraphProto) *onnx.GraphProto {
		return &onnx.GraphProto{Node: g.GetNode(), Input: g.GetInput(), Output: g.GetOutput()}
	}
	return proto.Equal(strip(a), strip(b))
}
