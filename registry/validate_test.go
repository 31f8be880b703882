package registry_test

import (
	"strings"
	"testing"

	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/registry/registrytest"
)

func TestRegistryCheckONNX(t *testing.T) {
	t.Parallel()
	good := registrytest.ONNX(registrytest.Width)
	info, err := registry.CheckONNX(good)
	if err != nil {
		t.Fatalf("the fixture model: %v", err)
	}
	if info.IRVersion != 8 || info.Opsets[""] != 13 || info.Nodes != 1 {
		t.Errorf("info %+v", info)
	}
	if len(info.Inputs) != 1 || info.Inputs[0].Name != "features" || info.Inputs[0].ElemType != 1 ||
		len(info.Inputs[0].Dims) != 2 || info.Inputs[0].Dims[0] != -1 || info.Inputs[0].Dims[1] != registrytest.Width {
		t.Errorf("inputs %+v", info.Inputs)
	}
	if len(info.Outputs) != 1 || info.Outputs[0].Name != "score" {
		t.Errorf("outputs %+v", info.Outputs)
	}
	meta := map[string]string{registry.MetaSchemaHash: "fs1:abc", registry.MetaInputWidth: "5"}
	if info, err := registry.CheckONNX(registrytest.ONNXWithMetadata(5, meta)); err != nil || len(info.Metadata) != 2 || info.Metadata[registry.MetaSchemaHash] != "fs1:abc" {
		t.Errorf("metadata %v, %v", info.Metadata, err)
	}

	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "empty file"},
		{"truncated", good[:len(good)/2], "malformed protobuf"},
		{"cut by one byte", good[:len(good)-1], "malformed protobuf"},
		{"text", []byte("this is not a model, it is a README\n"), ""},
		{"json", []byte(`{"weights": [1, 2, 3]}`), ""},
		{"zeros", make([]byte, 64), ""},
		{"a graph-less proto", []byte{0x08, 0x08}, "not an ONNX model"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := registry.CheckONNX(tc.b)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
		})
	}
}

func TestRegistryVersionNames(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s  string
		ok bool
	}{
		{"20261122T101500Z-0a1b2c3d", true},
		{"20261122T101500Z-0A1B2C3D", false},
		{"20261122T1015Z-0a1b2c3d", false},
		{"production", false},
		{"", false},
	} {
		if got := registry.IsVersion(tc.s); got != tc.ok {
			t.Errorf("IsVersion(%q) = %v", tc.s, got)
		}
	}
	for _, tc := range []struct {
		s  string
		ok bool
	}{
		{"ranker", true},
		{"two-tower_v2", true},
		{"Ranker", false},
		{"1ranker", false},
		{"a/b", false},
		{"", false},
		{strings.Repeat("a", 65), false},
	} {
		if err := registry.CheckModel(tc.s); (err == nil) != tc.ok {
			t.Errorf("CheckModel(%q) = %v", tc.s, err)
		}
	}
	if got := registry.HistoryKey("ranker", 42); got != "models/ranker/history/000000000042.json" {
		t.Errorf("HistoryKey = %s", got)
	}
	if got := registry.EventID("ranker", 7); got != "model-lifecycle:ranker:r000000000007" {
		t.Errorf("EventID = %s", got)
	}
}
