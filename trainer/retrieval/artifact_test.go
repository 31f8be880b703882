package retrieval

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func testIndex(t *testing.T) *Index {
	t.Helper()
	const n, d = 400, 8
	ids := itemIDs(n)
	ids[3] = "ünïcode-id" // ids are bytes; nothing forces ASCII
	x, err := BuildIndex(t.Context(), ids, clusteredVectors(n, d, 12, 3), d, IndexConfig{Lists: 20, NProbe: 3, Regularization: 40, Alpha: 10})
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func TestArtifactRoundTrip(t *testing.T) {
	t.Parallel()
	x := testIndex(t)
	var buf bytes.Buffer
	if err := x.Save(&buf); err != nil {
		t.Fatal(err)
	}
	saved := slices.Clone(buf.Bytes())
	y, err := Load(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if y.Len() != x.Len() || y.Dims() != x.Dims() || y.Lists() != x.Lists() || y.NProbe() != 3 || y.reg != 40 || y.alpha != 10 {
		t.Fatalf("loaded %d items, %d dims, %d lists, nprobe %d, reg %v, alpha %v",
			y.Len(), y.Dims(), y.Lists(), y.NProbe(), y.reg, y.alpha)
	}
	if !slices.Equal(x.ids, y.ids) || !slices.Equal(x.centroids, y.centroids) || !slices.Equal(x.listOff, y.listOff) ||
		!slices.Equal(x.order, y.order) || !slices.Equal(x.vectors, y.vectors) {
		t.Fatal("loaded index differs from the saved one")
	}
	if i, ok := y.Lookup("ünïcode-id"); !ok || i != 3 {
		t.Fatalf("Lookup after load = %d, %v", i, ok)
	}
	q := x.Vector(17)
	if a, b := x.Search(nil, q, 30, SearchOptions{}), y.Search(nil, q, 30, SearchOptions{}); !slices.Equal(a, b) {
		t.Fatal("search differs after a round trip")
	}
	ex, err := x.Embedder()
	if err != nil {
		t.Fatal(err)
	}
	ey, err := y.Embedder()
	if err != nil {
		t.Fatal(err)
	}
	va, _ := ex.Embed(nil, []int32{1, 5, 9}, nil)
	vb, _ := ey.Embed(nil, []int32{1, 5, 9}, nil)
	if !slices.Equal(va, vb) {
		t.Fatal("fold-in differs after a round trip")
	}
	// Saving the loaded index gives the same bytes.
	var again bytes.Buffer
	if err := y.Save(&again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(saved, again.Bytes()) {
		t.Fatal("re-saved artifact differs")
	}
}

func TestArtifactFile(t *testing.T) {
	t.Parallel()
	x := testIndex(t)
	path := filepath.Join(t.TempDir(), "items.ivf")
	if err := x.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	y, err := ReadIndexFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(x.vectors, y.vectors) {
		t.Fatal("file round trip changed the vectors")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("%d files left in the directory, want only the artifact", len(entries))
	}
	b, _ := os.ReadFile(path)
	b[len(b)-1] ^= 1
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadIndexFile(path); !errors.Is(err, ErrCorruptIndex) || !strings.Contains(err.Error(), path) {
		t.Fatalf("corrupt file: err = %v, want ErrCorruptIndex naming the path", err)
	}
}

func TestArtifactCorruptRefused(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := testIndex(t).Save(&buf); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	mutate := func(f func(b []byte) []byte) []byte { return f(slices.Clone(good)) }
	// reseal recomputes the checksum, so the structural checks behind it
	// are exercised too.
	reseal := func(b []byte) []byte {
		binary.LittleEndian.PutUint32(b[60:], 0)
		crc := crcOf(b[:60], b[indexHeaderSize:])
		binary.LittleEndian.PutUint32(b[60:], crc)
		return b
	}
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "shorter than the 64-byte header"},
		{"half a header", good[:30], "shorter than the 64-byte header"},
		{"wrong magic", mutate(func(b []byte) []byte { copy(b, "PK\x03\x04"); return b }), "not an adaptrec retrieval index"},
		{"future version", mutate(func(b []byte) []byte { b[8] = 2; return b }), "format version 2"},
		{"payload bit flip", mutate(func(b []byte) []byte { b[len(b)/2] ^= 0x10; return b }), "checksum"},
		{"header bit flip", mutate(func(b []byte) []byte { b[24] ^= 1; return b }), "checksum"},
		{"checksum bit flip", mutate(func(b []byte) []byte { b[61] ^= 1; return b }), "checksum"},
		{"truncated", good[:len(good)-7], "truncated"},
		{"trailing bytes", append(slices.Clone(good), 0), "bytes follow"},
		{"huge payload length", mutate(func(b []byte) []byte { binary.LittleEndian.PutUint64(b[48:], 1<<40); return b }), "payload of"},
		{"zero dims", mutate(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[12:], 0); return b }), "dims 0"},
		{"resealed bad item number", mutate(func(b []byte) []byte {
			// The last position's item number sits just before the
			// vectors (items × dims float32 at the end).
			at := len(b) - 400*8*4 - 4
			binary.LittleEndian.PutUint32(b[at:], 0)
			return reseal(b)
		}), "not a permutation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(bytes.NewReader(tt.data))
			if !errors.Is(err, ErrCorruptIndex) {
				t.Fatalf("err = %v, want ErrCorruptIndex", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %q, want it to mention %q", err, tt.want)
			}
		})
	}
}
