package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// Validator checks a version before Register writes it. m is the manifest
// that will be written (checksums and all); artifacts holds every
// artifact's bytes by name. A non-nil error refuses the version; nothing is
// written. The ONNX runtime's validator loads the ranker and scores a
// probe batch of m.InputWidth-wide rows with it.
type Validator interface {
	Validate(ctx context.Context, m Manifest, artifacts map[string][]byte) error
}

// ValidatorFunc adapts a function to Validator.
type ValidatorFunc func(ctx context.Context, m Manifest, artifacts map[string][]byte) error

var _ Validator = ValidatorFunc(nil)

// Validate calls f.
func (f ValidatorFunc) Validate(ctx context.Context, m Manifest, artifacts map[string][]byte) error {
	return f(ctx, m, artifacts)
}

// ValidationError is a version Register refused. It wraps ErrInvalid and,
// when the Client's Validator refused it, the Validator's error.
type ValidationError struct {
	Model string
	// Version is the version the request would have become; empty when
	// the request was too broken to compute one.
	Version string
	// Problems lists every failed built-in check.
	Problems []string
	// Validator is the error of the Client's Validator, if it ran and
	// refused the version.
	Validator error
}

func (e *ValidationError) Error() string {
	name := e.Model
	if e.Version != "" {
		name += "/" + e.Version
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s refused: %v", name, ErrInvalid)
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p)
	}
	if e.Validator != nil {
		fmt.Fprintf(&b, "\n  validator: %v", e.Validator)
	}
	return b.String()
}

// Unwrap returns ErrInvalid and the Validator's error.
func (e *ValidationError) Unwrap() []error {
	if e.Validator != nil {
		return []error{ErrInvalid, e.Validator}
	}
	return []error{ErrInvalid}
}

// ONNXTensor is a graph input or output as the model declares it.
type ONNXTensor struct {
	Name string
	// ElemType is the ONNX TensorProto.DataType (1 is float32); 0 when
	// not declared.
	ElemType int64
	// Dims are the dimensions; -1 for a symbolic or unknown one.
	Dims []int64
}

// ONNXInfo is what CheckONNX learned about a model.
type ONNXInfo struct {
	IRVersion int64
	// Opsets are the imported operator set versions by domain ("" is the
	// default domain).
	Opsets map[string]int64
	// Nodes is the number of nodes of the main graph.
	Nodes int
	// Inputs are the graph inputs that are not initializers (the ones a
	// caller feeds); Outputs the graph outputs.
	Inputs, Outputs []ONNXTensor
	// Metadata are the model's metadata_props (the trainer's exporter
	// writes adaptrec.feature_schema_hash, adaptrec.input_width and
	// adaptrec.feature_names there; docs/adr/010).
	Metadata map[string]string
}

// Metadata keys Register compares with the manifest when a ranker has them.
const (
	MetaSchemaHash   = "adaptrec.feature_schema_hash"
	MetaInputWidth   = "adaptrec.input_width"
	MetaFeatureNames = "adaptrec.feature_names"
)

// onnxFloat is TensorProto.DataType FLOAT.
const onnxFloat = 1

// CheckONNX parses b as an ONNX ModelProto far enough to tell a model from
// a truncated, empty or foreign file: the wire format must be intact, and
// the model must declare an IR version, an operator set and a graph with
// nodes, inputs and outputs. It does not load or run the model (the
// Validator does).
func CheckONNX(b []byte) (ONNXInfo, error) {
	info := ONNXInfo{Opsets: map[string]int64{}, Metadata: map[string]string{}}
	if len(b) == 0 {
		return info, errors.New("empty file")
	}
	var graph []byte
	graphs := 0
	err := walk(b, "model", func(num protowire.Number, typ protowire.Type, v uint64, raw []byte) error {
		switch num {
		case 1: // ir_version
			if typ != protowire.VarintType {
				return fmt.Errorf("model.ir_version has wire type %d", typ)
			}
			info.IRVersion = int64(v)
		case 8: // opset_import
			if typ != protowire.BytesType {
				return fmt.Errorf("model.opset_import has wire type %d", typ)
			}
			var domain string
			var version int64
			if err := walk(raw, "model.opset_import", func(num protowire.Number, typ protowire.Type, v uint64, raw []byte) error {
				switch {
				case num == 1 && typ == protowire.BytesType:
					domain = string(raw)
				case num == 2 && typ == protowire.VarintType:
					version = int64(v)
				}
				return nil
			}); err != nil {
				return err
			}
			info.Opsets[domain] = version
		case 7: // graph
			if typ != protowire.BytesType {
				return fmt.Errorf("model.graph has wire type %d", typ)
			}
			graph = raw
			graphs++
		case 14: // metadata_props
			if typ != protowire.BytesType {
				return fmt.Errorf("model.metadata_props has wire type %d", typ)
			}
			var k, v string
			if err := walk(raw, "model.metadata_props", func(num protowire.Number, typ protowire.Type, _ uint64, raw []byte) error {
				switch {
				case num == 1 && typ == protowire.BytesType:
					k = string(raw)
				case num == 2 && typ == protowire.BytesType:
					v = string(raw)
				}
				return nil
			}); err != nil {
				return err
			}
			info.Metadata[k] = v
		}
		return nil
	})
	if err != nil {
		return info, err
	}
	var bad []string
	if info.IRVersion < 3 {
		bad = append(bad, fmt.Sprintf("ir_version %d (ONNX models have 3 or more)", info.IRVersion))
	}
	if len(info.Opsets) == 0 {
		bad = append(bad, "no opset_import")
	}
	if graphs != 1 {
		bad = append(bad, fmt.Sprintf("%d graphs, want 1", graphs))
	}
	if len(bad) > 0 {
		return info, errors.New("not an ONNX model: " + strings.Join(bad, "; "))
	}
	initializers := map[string]bool{}
	var inputs []ONNXTensor
	err = walk(graph, "graph", func(num protowire.Number, typ protowire.Type, _ uint64, raw []byte) error {
		if (num == 1 || num == 5 || num == 11 || num == 12) && typ != protowire.BytesType {
			return fmt.Errorf("graph field %d has wire type %d", num, typ)
		}
		switch num {
		case 1: // node
			op := ""
			if err := walk(raw, "graph.node", func(num protowire.Number, typ protowire.Type, _ uint64, raw []byte) error {
				if num == 4 && typ == protowire.BytesType {
					op = string(raw)
				}
				return nil
			}); err != nil {
				return err
			}
			if op == "" {
				return fmt.Errorf("graph node %d has no op_type", info.Nodes)
			}
			info.Nodes++
		case 5: // initializer
			return walk(raw, "graph.initializer", func(num protowire.Number, typ protowire.Type, _ uint64, raw []byte) error {
				if num == 8 && typ == protowire.BytesType {
					initializers[string(raw)] = true
				}
				return nil
			})
		case 11, 12: // input, output
			t, err := parseValueInfo(raw)
			if err != nil {
				return err
			}
			if num == 11 {
				inputs = append(inputs, t)
			} else {
				info.Outputs = append(info.Outputs, t)
			}
		}
		return nil
	})
	if err != nil {
		return info, err
	}
	for _, in := range inputs {
		if !initializers[in.Name] {
			info.Inputs = append(info.Inputs, in)
		}
	}
	switch {
	case info.Nodes == 0:
		bad = append(bad, "the graph has no nodes")
	case len(info.Inputs) == 0:
		bad = append(bad, "the graph has no inputs")
	case len(info.Outputs) == 0:
		bad = append(bad, "the graph has no outputs")
	}
	if len(bad) > 0 {
		return info, errors.New("not a usable ONNX model: " + strings.Join(bad, "; "))
	}
	return info, nil
}

func parseValueInfo(b []byte) (ONNXTensor, error) {
	var t ONNXTensor
	err := walk(b, "value_info", func(num protowire.Number, typ protowire.Type, _ uint64, raw []byte) error {
		switch {
		case num == 1 && typ == protowire.BytesType:
			t.Name = string(raw)
		case num == 2 && typ == protowire.BytesType: // TypeProto
			return walk(raw, "type", func(num protowire.Number, typ protowire.Type, _ uint64, raw []byte) error {
				if num != 1 || typ != protowire.BytesType { // tensor_type
					return nil
				}
				return walk(raw, "tensor_type", func(num protowire.Number, typ protowire.Type, v uint64, raw []byte) error {
					switch {
					case num == 1 && typ == protowire.VarintType:
						t.ElemType = int64(v)
					case num == 2 && typ == protowire.BytesType: // shape
						return walk(raw, "shape", func(num protowire.Number, typ protowire.Type, _ uint64, raw []byte) error {
							if num != 1 || typ != protowire.BytesType { // dim
								return nil
							}
							d := int64(-1)
							err := walk(raw, "dim", func(num protowire.Number, typ protowire.Type, v uint64, _ []byte) error {
								if num == 1 && typ == protowire.VarintType {
									d = int64(v)
								}
								return nil
							})
							t.Dims = append(t.Dims, d)
							return err
						})
					}
					return nil
				})
			})
		}
		return nil
	})
	if err == nil && t.Name == "" {
		err = errors.New("a graph input or output has no name")
	}
	return t, err
}

// walk calls f for every field of one protobuf message: v holds a varint
// or fixed value, raw a length-delimited one. Malformed bytes are an error
// naming where they are.
func walk(b []byte, where string, f func(num protowire.Number, typ protowire.Type, v uint64, raw []byte) error) error {
	for off := 0; off < len(b); {
		num, typ, n := protowire.ConsumeTag(b[off:])
		if n < 0 {
			return fmt.Errorf("malformed protobuf in %s at byte %d: %v", where, off, protowire.ParseError(n))
		}
		off += n
		var v uint64
		var raw []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b[off:])
		case protowire.Fixed32Type:
			var x uint32
			x, n = protowire.ConsumeFixed32(b[off:])
			v = uint64(x)
		case protowire.Fixed64Type:
			v, n = protowire.ConsumeFixed64(b[off:])
		case protowire.BytesType:
			raw, n = protowire.ConsumeBytes(b[off:])
		default:
			// ONNX uses no groups; a group here is corruption.
			return fmt.Errorf("malformed protobuf in %s at byte %d: field %d has wire type %d", where, off, num, typ)
		}
		if n < 0 {
			return fmt.Errorf("malformed protobuf in %s at byte %d: field %d: %v", where, off, num, protowire.ParseError(n))
		}
		off += n
		if err := f(num, typ, v, raw); err != nil {
			return err
		}
	}
	return nil
}

// builtinProblems runs the checks Register always makes on the artifacts:
// the ranker parses as an ONNX model whose single fed input, when its last
// dimension is fixed, is m.InputWidth wide and float32, and whose adaptrec
// metadata, when present, names the manifest's schema hash, width and
// features.
func builtinProblems(m *Manifest, artifacts map[string][]byte) []string {
	var bad []string
	r, ok := m.Ranker()
	if !ok {
		return nil // reported by Manifest.problems
	}
	info, err := CheckONNX(artifacts[r.Name])
	if err != nil {
		return append(bad, fmt.Sprintf("ranker %s: %v", r.Name, err))
	}
	if len(info.Inputs) == 1 && m.InputWidth > 0 {
		in := info.Inputs[0]
		if n := len(in.Dims); n > 0 && in.Dims[n-1] > 0 && in.Dims[n-1] != int64(m.InputWidth) {
			bad = append(bad, fmt.Sprintf("ranker %s: input %s takes rows of %d values, the schema's features make %d", r.Name, in.Name, in.Dims[n-1], m.InputWidth))
		}
		if in.ElemType != 0 && in.ElemType != onnxFloat {
			bad = append(bad, fmt.Sprintf("ranker %s: input %s has element type %d, serving feeds float32 (1)", r.Name, in.Name, in.ElemType))
		}
	}
	if h, ok := info.Metadata[MetaSchemaHash]; ok && h != m.SchemaHash {
		bad = append(bad, fmt.Sprintf("ranker %s: metadata %s is %q, the manifest's schema hash is %q", r.Name, MetaSchemaHash, h, m.SchemaHash))
	}
	if w, ok := info.Metadata[MetaInputWidth]; ok && w != strconv.Itoa(m.InputWidth) {
		bad = append(bad, fmt.Sprintf("ranker %s: metadata %s is %q, the schema's features make %d", r.Name, MetaInputWidth, w, m.InputWidth))
	}
	if js, ok := info.Metadata[MetaFeatureNames]; ok {
		var names []string
		if err := json.Unmarshal([]byte(js), &names); err != nil {
			bad = append(bad, fmt.Sprintf("ranker %s: metadata %s is not a JSON array of names: %v", r.Name, MetaFeatureNames, err))
		} else if !slices.Equal(names, m.Schema.Names()) {
			bad = append(bad, fmt.Sprintf("ranker %s: metadata %s lists %q, the schema %q", r.Name, MetaFeatureNames, names, m.Schema.Names()))
		}
	}
	return bad
}
