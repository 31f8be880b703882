package onnxcheck_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	onnx "github.com/adaptrec/adaptrec/gen/onnx"
	"github.com/adaptrec/adaptrec/internal/artifact"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/internal/onnxrt"
	"github.com/adaptrec/adaptrec/internal/testenv"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/registry/onnxcheck"
	"github.com/adaptrec/adaptrec/registry/registrytest"
	"github.com/adaptrec/adaptrec/trainer/ranker"
	"github.com/adaptrec/adaptrec/trainer/retrieval"
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

// trained returns an MLP over registrytest's features (rows of 5), trained
// briefly on synthetic clicks, and its ONNX bytes.
func trained(t *testing.T) (*ranker.Model, []byte) {
	t.Helper()
	schema, err := registrytest.Features().Schema(registrytest.Inputs)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	d := ranker.Dataset{Width: registrytest.Width}
	for range 2000 {
		row := []float32{float32(rng.Float64() * 0.1), float32(rng.Float64() * 0.1), float32(rng.NormFloat64()), float32(rng.NormFloat64()), 1}
		y := float32(0)
		if rng.Float64() < 0.1+3*float64(row[0]) {
			y = 1
		}
		d.Rows = append(d.Rows, row...)
		d.Labels = append(d.Labels, y)
	}
	res, err := ranker.Train(t.Context(), d, ranker.Config{Hidden: []int{8}, Epochs: 2, Seed: 3, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	b, err := res.Model.ExportONNX()
	if err != nil {
		t.Fatal(err)
	}
	return res.Model, b
}

// manifest is the part of a registry manifest the validator reads.
func manifest(t *testing.T) registry.Manifest {
	t.Helper()
	schema, err := registrytest.Features().Schema(registrytest.Inputs)
	if err != nil {
		t.Fatal(err)
	}
	return registry.Manifest{
		Model: "ranker", SchemaHash: schema.SchemaHash, Schema: schema, InputWidth: registrytest.Width,
		Artifacts: []registry.File{{Name: "ranker.onnx", Role: registry.RoleRanker}, {Name: "items.ivf", Role: registry.RoleIndex}},
	}
}

// edit decodes an ONNX model, applies f and encodes it again.
func edit(t *testing.T, b []byte, f func(*onnx.ModelProto)) []byte {
	t.Helper()
	var mp onnx.ModelProto
	if err := proto.Unmarshal(b, &mp); err != nil {
		t.Fatal(err)
	}
	f(&mp)
	out, err := proto.Marshal(&mp)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func index(t *testing.T) []byte {
	t.Helper()
	vecs := make([]float32, 40*4)
	rng := rand.New(rand.NewPCG(5, 6))
	ids := make([]string, 40)
	for i := range ids {
		ids[i] = "i" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		for c := range 4 {
			vecs[i*4+c] = float32(rng.NormFloat64())
		}
	}
	x, err := retrieval.BuildIndex(t.Context(), ids, vecs, 4, retrieval.IndexConfig{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := x.Save(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestValidatorAcceptsAnExportedRankerAndRefusesCorruptOnes(t *testing.T) {
	requireRuntime(t)
	_, good := trained(t)
	ivf := index(t)
	m := manifest(t)
	v := &onnxcheck.Validator{}
	if err := v.Validate(t.Context(), m, map[string][]byte{"ranker.onnx": good, "items.ivf": ivf}); err != nil {
		t.Fatalf("the exported ranker: %v", err)
	}

	otherSchema := m
	otherSchema.SchemaHash = "fs1:" + strings.Repeat("0", 64)
	wider := m
	wider.InputWidth = registrytest.Width + 1
	for _, tc := range []struct {
		name   string
		m      registry.Manifest
		ranker []byte
		index  []byte
		want   string
	}{
		{"truncated", m, good[:len(good)/2], ivf, "does not load in ONNX Runtime"},
		{"not a model", m, []byte("not a model"), ivf, "does not load in ONNX Runtime"},
		{"unknown operator", m, edit(t, good, func(mp *onnx.ModelProto) { mp.Graph.Node[0].OpType = proto.String("Gemx") }), ivf, "does not load in ONNX Runtime"},
		{"NaN weight", m, edit(t, good, func(mp *onnx.ModelProto) {
			for _, init := range mp.Graph.Initializer {
				if init.GetName() == "dense0.weight" {
					init.FloatData[0] = float32(math.NaN())
				}
			}
		}), ivf, "want a finite value in [0, 1]"},
		// A changed but finite weight is still a model both runtimes read
		// alike: accepted.
		{"changed weight", m, edit(t, good, func(mp *onnx.ModelProto) {
			for _, init := range mp.Graph.Initializer {
				if init.GetName() == "dense0.weight" {
					init.FloatData[0] += 0.5
				}
			}
		}), ivf, ""},
		{"no adaptrec metadata", m, registrytest.ONNX(registrytest.Width), ivf, "missing adaptrec.ranker.format"},
		{"metadata for another schema", otherSchema, good, ivf, "metadata has schema hash fs1:"},
		{"width differs from the manifest", wider, good, ivf, "reads rows of 5 values, the manifest's schema has 6"},
		{"corrupt index", m, good, append(bytes.Clone(ivf[:len(ivf)-1]), ivf[len(ivf)-1]^1), "index items.ivf: retrieval: corrupt index artifact"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := v.Validate(t.Context(), tc.m, map[string][]byte{"ranker.onnx": tc.ranker, "items.ivf": tc.index})
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// userVectors is a user-vectors artifact of users of dims.
func userVectors(t *testing.T, ids []string, dims int) []byte {
	t.Helper()
	vecs := make([]float32, len(ids)*dims)
	for i := range vecs {
		vecs[i] = float32(i%7) / 7
	}
	u, err := retrieval.NewUserVectors(ids, vecs, dims)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := u.Save(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestValidatorChecksUserVectors(t *testing.T) {
	requireRuntime(t)
	_, good := trained(t)
	ivf := index(t) // 4 dims
	withUsers := manifest(t)
	withUsers.Artifacts = append(withUsers.Artifacts, registry.File{Name: "users.emb", Role: registry.RoleUserVectors})
	noIndex := manifest(t)
	noIndex.Artifacts = []registry.File{noIndex.Artifacts[0], {Name: "users.emb", Role: registry.RoleUserVectors}}
	users := userVectors(t, []string{"u1", "u2", "u3"}, 4)
	// A repeated id, which NewUserVectors never writes: the second id
	// ("u2", after the header, a length byte, "u1" and a length byte)
	// overwritten with the first, and the checksum recomputed.
	repeated := bytes.Clone(users)
	copy(repeated[64+1+2+1:], "u1")
	v := &onnxcheck.Validator{}
	for _, tc := range []struct {
		name  string
		m     registry.Manifest
		users []byte
		want  string
	}{
		{"of the index's dims", withUsers, users, ""},
		{"of other dims", withUsers, userVectors(t, []string{"u1", "u2"}, 3), "user_vectors users.emb holds vectors of 3 dims, index items.ivf of 4"},
		{"corrupt", withUsers, append(bytes.Clone(users[:len(users)-1]), users[len(users)-1]^1), "user_vectors users.emb: retrieval: corrupt user vectors artifact"},
		{"repeated id", withUsers, reseal(repeated), `ids must ascend, each once`},
		{"without an index", noIndex, users, "the version has no index artifact"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := v.Validate(t.Context(), tc.m, map[string][]byte{"ranker.onnx": good, "items.ivf": ivf, "users.emb": tc.users})
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// reseal recomputes an artifact's CRC-32C (internal/artifact's frame)
// after its bytes were edited.
func reseal(b []byte) []byte {
	binary.LittleEndian.PutUint32(b[60:], artifact.Checksum(b[:64], b[64:]))
	return b
}

// TestValidatorInRegister registers through a registry client that uses
// the validator, against real S3: the exported ranker is registered, a
// corrupt one (NaN weight: intact structure, so only the runtime can tell)
// is refused and leaves no object.
func TestValidatorInRegister(t *testing.T) {
	requireRuntime(t)
	env := testenv.New(t, testenv.S3)
	st := testenv.Bucket(t, env.Config())
	c := &registry.Client{Store: st, Events: &registrytest.Recorder{}, Features: registrytest.Features(), Validator: &onnxcheck.Validator{}}
	_, good := trained(t)
	req := registrytest.Request("ranker", 1, time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC))
	req.Artifacts[0].Data = good
	if _, err := c.Register(t.Context(), req); err != nil {
		t.Fatalf("register the exported ranker: %v", err)
	}
	bad := registrytest.Request("ranker-bad", 2, time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC))
	bad.Artifacts[0].Data = edit(t, good, func(mp *onnx.ModelProto) {
		for _, init := range mp.Graph.Initializer {
			if init.GetName() == "dense1.bias" {
				init.FloatData[0] = float32(math.Inf(1))
			}
		}
	})
	_, err := c.Register(t.Context(), bad)
	var verr *registry.ValidationError
	if !errors.As(err, &verr) || verr.Validator == nil || !strings.Contains(err.Error(), "NaN or infinite values in dense1.bias") {
		t.Fatalf("register a ranker with an infinite bias: %v", err)
	}
	if keys := listKeys(t.Context(), t, st, registry.ModelPrefix("ranker-bad")); len(keys) != 0 {
		t.Errorf("a refused version left %v", keys)
	}
}

func listKeys(ctx context.Context, t *testing.T, st *objstore.Store, prefix string) []string {
	t.Helper()
	var out []string
	for info, err := range st.List(ctx, prefix, objstore.ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, info.Key)
	}
	return out
}
