package ann

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func testIndex(t *testing.T) *Index {
	t.Helper()
	const n, d = 3000, 8
	items, _ := trainedLike(n, 0, d, 20)
	x, err := Build(t.Context(), seqIDs(n, -100), items, d, Config{M: 6, EfConstruction: 20, EfSearch: 40, NormRatio: 1.5, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	if x.Bands() < 2 {
		t.Fatalf("%d bands; the artifact tests want several", x.Bands())
	}
	return x
}

func saved(t *testing.T, x *Index) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := x.Save(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestArtifactRoundTrip(t *testing.T) {
	t.Parallel()
	x := testIndex(t)
	b := saved(t, x)
	y, err := Load(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if y.Len() != x.Len() || y.Dims() != x.Dims() || y.M() != 6 || y.EfConstruction() != 20 || y.EfSearch() != 40 ||
		y.NormRatio() != 1.5 || y.Bands() != x.Bands() || y.seed != 9 {
		t.Fatalf("loaded %d items, %d dims, M %d, efc %d, ef %d, ratio %v, %d bands",
			y.Len(), y.Dims(), y.M(), y.EfConstruction(), y.EfSearch(), y.NormRatio(), y.Bands())
	}
	if !slices.Equal(x.ids, y.ids) || !slices.Equal(x.g.vecs, y.g.vecs) || !slices.Equal(x.g.levels, y.g.levels) ||
		!slices.Equal(x.g.bands, y.g.bands) {
		t.Fatal("loaded index differs from the saved one")
	}
	for node := range int32(x.Len()) {
		for l := 0; l <= int(x.g.levels[node]); l++ {
			if !slices.Equal(x.g.neighbours(node, l), y.g.neighbours(node, l)) {
				t.Fatalf("node %d layer %d: links differ", node, l)
			}
		}
	}
	if !bytes.Equal(saved(t, y), b) {
		t.Fatal("saving the loaded index gives other bytes")
	}
	for i := range 20 {
		q, _ := x.Vector(int32(-100 + 3*i*17))
		a, _ := x.Search(nil, q, 25, SearchOptions{})
		c, _ := y.Search(nil, q, 25, SearchOptions{})
		if !slices.Equal(a, c) {
			t.Fatalf("query %d: search differs after a round trip", i)
		}
	}

	path := filepath.Join(t.TempDir(), "items.ann")
	if err := x.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	z, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(saved(t, z), b) {
		t.Fatal("WriteFile/ReadFile round trip differs")
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Fatalf("%d files after WriteFile, want 1 (no temporary left)", len(entries))
	}

	empty, err := Build(t.Context(), nil, nil, 4, Config{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := Load(bytes.NewReader(saved(t, empty)))
	if err != nil || e.Len() != 0 || e.Dims() != 4 {
		t.Fatalf("empty index round trip: %v, %v", e, err)
	}
}

// reseal recomputes the checksum of an artifact whose bytes were changed,
// so Load gets past the checksum to the invariants behind it.
func reseal(b []byte) []byte {
	b = slices.Clone(b)
	binary.LittleEndian.PutUint32(b[60:], crcOf(b[:60], b[artifactHeaderSize:]))
	return b
}

func TestLoadRefusesCorrupt(t *testing.T) {
	t.Parallel()
	x := testIndex(t)
	good := saved(t, x)
	le := binary.LittleEndian
	n, d := x.Len(), x.Dims()
	levelsAt := artifactHeaderSize + 4*n + 4*n*d
	bandsAt := levelsAt + n
	linksAt := bandsAt + 16*x.Bands()
	edit := func(f func(b []byte) []byte) []byte { return f(slices.Clone(good)) }
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short header", good[:40]},
		{"wrong magic", edit(func(b []byte) []byte { b[0] = 'X'; return b })},
		{"newer version", edit(func(b []byte) []byte { le.PutUint32(b[8:], 2); return reseal(b) })},
		{"truncated payload", good[:len(good)-7]},
		{"trailing bytes", append(slices.Clone(good), 0)},
		{"flipped vector bit", edit(func(b []byte) []byte { b[artifactHeaderSize+4*n+5] ^= 0x10; return b })},
		{"flipped header bit", edit(func(b []byte) []byte { b[30] ^= 1; return b })},
		{"flipped checksum", edit(func(b []byte) []byte { b[61] ^= 1; return b })},
		{"huge payload length", edit(func(b []byte) []byte { le.PutUint64(b[52:], 1<<40); return b })},
		{"huge item count", edit(func(b []byte) []byte { le.PutUint32(b[16:], 1<<30); return reseal(b) })},
		{"zero dims", edit(func(b []byte) []byte { le.PutUint32(b[12:], 0); return reseal(b) })},
		{"ratio 1", edit(func(b []byte) []byte { le.PutUint64(b[36:], 0x3ff0000000000000); return reseal(b) })},
		// Sealed with a valid checksum, but inconsistent inside.
		{"duplicate id", edit(func(b []byte) []byte {
			copy(b[artifactHeaderSize+4:], b[artifactHeaderSize:artifactHeaderSize+4])
			return reseal(b)
		})},
		{"NaN vector", edit(func(b []byte) []byte {
			le.PutUint32(b[artifactHeaderSize+4*n:], 0x7fc00000)
			return reseal(b)
		})},
		{"layer out of range", edit(func(b []byte) []byte { b[levelsAt] = maxLevels; return reseal(b) })},
		{"bands overlap", edit(func(b []byte) []byte { le.PutUint32(b[bandsAt+16:], 1); return reseal(b) })},
		{"entry outside its band", edit(func(b []byte) []byte {
			le.PutUint32(b[bandsAt+8:], le.Uint32(b[bandsAt+4:]))
			return reseal(b)
		})},
		{"too many links", edit(func(b []byte) []byte { le.PutUint32(b[linksAt:], 1000); return reseal(b) })},
		{"link out of range", edit(func(b []byte) []byte {
			le.PutUint32(b[linksAt:], 1)
			le.PutUint32(b[linksAt+4:], uint32(n))
			return reseal(b)
		})},
		{"link to itself", edit(func(b []byte) []byte {
			le.PutUint32(b[linksAt+4:], 0)
			return reseal(b)
		})},
		{"link into another band", edit(func(b []byte) []byte {
			le.PutUint32(b[linksAt+4:], uint32(n-1))
			return reseal(b)
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			x, err := Load(bytes.NewReader(tt.b))
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Load = %v, %v; want ErrCorrupt", x, err)
			}
		})
	}
	if _, err := Load(bytes.NewReader(good)); err != nil {
		t.Fatalf("the untouched artifact: %v", err)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestLoadReaderError(t *testing.T) {
	t.Parallel()
	if _, err := Load(failingReader{}); err == nil || errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want the reader's error, not ErrCorrupt", err)
	}
	if _, err := ReadFile(filepath.Join(t.TempDir(), "missing.ann")); err == nil || errors.Is(err, ErrCorrupt) {
		t.Fatalf("missing file: err = %v", err)
	}
}
