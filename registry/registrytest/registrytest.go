// Package registrytest provides fixtures for tests of code that uses the
// model registry: a small feature set, a real (tiny) ONNX ranker, valid
// registration requests, and a Publisher that records events.
package registrytest

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/adaptrec/adaptrec/features"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/registry"
)

// Defs are the definitions Features parses: user_ctr, item_ctr (floats)
// and item_vec (vector[3]), so a ranker over all three reads rows of 5.
const Defs = `
version: 1
features:
  - name: user_ctr
    entity: user
    type: float
    lane: batch
    default: 0.03
    freshness_sla: 26h
    owner: test
    description: test feature
  - name: item_ctr
    entity: item
    type: float
    lane: batch
    default: 0.03
    freshness_sla: 26h
    owner: test
    description: test feature
  - name: item_vec
    entity: item
    type: vector[3]
    lane: batch
    default: [0, 0, 1]
    freshness_sla: 26h
    owner: test
    description: test feature
`

// Inputs are the ranker inputs of Request, in row order; Width their row
// width.
var Inputs = []string{"user_ctr", "item_ctr", "item_vec"}

// Width is the row width of Inputs.
const Width = 5

// Features parses Defs.
func Features() *features.FeatureSet {
	fs, err := features.Parse("registrytest.yaml", []byte(Defs))
	if err != nil {
		panic(fmt.Sprintf("registrytest: %v", err))
	}
	return fs
}

// ONNX returns a valid ONNX model (IR 8, opset 13) that scores rows of
// width float32 values: input "features" [N, width], output "score"
// [N, 1] = features × w, with w an initializer of weights 1/(i+1).
func ONNX(width int) []byte { return ONNXWithMetadata(width, nil) }

// ONNXWithMetadata is ONNX with metadata_props (sorted by key), as the
// trainer's exporter writes adaptrec.feature_schema_hash and the like.
func ONNXWithMetadata(width int, meta map[string]string) []byte {
	w := make([]byte, 4*width)
	for i := range width {
		binary.LittleEndian.PutUint32(w[4*i:], math.Float32bits(1/float32(i+1)))
	}
	tensorType := func(dims ...any) []byte {
		var shape []byte
		for _, d := range dims {
			var dim []byte
			switch d := d.(type) {
			case int:
				dim = appendVarint(dim, 1, uint64(d))
			case string:
				dim = appendBytes(dim, 2, []byte(d))
			}
			shape = appendBytes(shape, 1, dim)
		}
		var tt []byte
		tt = appendVarint(tt, 1, 1) // elem_type FLOAT
		tt = appendBytes(tt, 2, shape)
		return appendBytes(nil, 1, tt) // TypeProto.tensor_type
	}
	valueInfo := func(name string, typ []byte) []byte {
		return appendBytes(appendBytes(nil, 1, []byte(name)), 2, typ)
	}
	var node []byte
	node = appendBytes(node, 1, []byte("features"))
	node = appendBytes(node, 1, []byte("w"))
	node = appendBytes(node, 2, []byte("score"))
	node = appendBytes(node, 3, []byte("matmul"))
	node = appendBytes(node, 4, []byte("MatMul"))
	var init []byte
	init = appendVarint(init, 1, uint64(width)) // dims
	init = appendVarint(init, 1, 1)
	init = appendVarint(init, 2, 1) // data_type FLOAT
	init = appendBytes(init, 8, []byte("w"))
	init = appendBytes(init, 9, w) // raw_data
	var graph []byte
	graph = appendBytes(graph, 1, node)
	graph = appendBytes(graph, 2, []byte("ranker"))
	graph = appendBytes(graph, 5, init)
	graph = appendBytes(graph, 11, valueInfo("features", tensorType("N", width)))
	graph = appendBytes(graph, 12, valueInfo("score", tensorType("N", 1)))
	var opset []byte
	opset = appendBytes(opset, 1, nil) // default domain
	opset = appendVarint(opset, 2, 13)
	var model []byte
	model = appendVarint(model, 1, 8) // ir_version
	model = appendBytes(model, 2, []byte("adaptrec-registrytest"))
	model = appendBytes(model, 7, graph)
	model = appendBytes(model, 8, opset)
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		model = appendBytes(model, 14, appendBytes(appendBytes(nil, 1, []byte(k)), 2, []byte(meta[k])))
	}
	return model
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(b, num, protowire.VarintType), v)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(b, num, protowire.BytesType), v)
}

// Request returns a valid registration of model over Features' Inputs;
// seed varies the metrics (and so the version) and created is the
// creation time (now when zero).
func Request(model string, seed int, created time.Time) registry.RegisterRequest {
	schema, err := Features().Schema(Inputs)
	if err != nil {
		panic(fmt.Sprintf("registrytest: %v", err))
	}
	return registry.RegisterRequest{
		Model:       model,
		CreatedAt:   created,
		Schema:      schema,
		TrainingSet: fmt.Sprintf("ts-%04d", seed),
		CodeVersion: "0123abcd",
		Parameters:  map[string]string{"learning_rate": "0.05", "trees": "300"},
		Metrics:     map[string]float64{"auc": 0.7 + float64(seed%100)/1000, "logloss": 0.4},
		Artifacts: []registry.Artifact{
			{Name: "ranker.onnx", Role: registry.RoleRanker, Data: ONNX(Width)},
			{Name: "item_embeddings.bin", Role: registry.RoleEmbeddings, Data: fmt.Appendf(nil, "embeddings %d", seed)},
		},
		Actor:  "registrytest",
		Reason: fmt.Sprintf("fixture %d", seed),
	}
}

// Recorder is a Publisher that keeps every event it is given, or fails
// with Err when set.
type Recorder struct {
	mu     sync.Mutex
	events []*adaptrecv1.Event
	err    error
}

var _ registry.Publisher = (*Recorder)(nil)

// Publish records evs, or returns the error set by Fail.
func (r *Recorder) Publish(_ context.Context, evs ...*adaptrecv1.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.events = append(r.events, evs...)
	return nil
}

// Fail makes every later Publish fail with err (nil: succeed again).
func (r *Recorder) Fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
}

// Events returns the events recorded so far.
func (r *Recorder) Events() []*adaptrecv1.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*adaptrecv1.Event(nil), r.events...)
}
