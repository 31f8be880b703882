package covisit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/internal/artifact"
)

func TestArtifactRoundTrip(t *testing.T) {
	t.Parallel()
	tb := build(t, sessions(100, 200, 2000, 5), Config{Neighbours: 12, RecencyDecay: 0.6, Window: 90 * time.Minute})
	b := saved(t, tb)
	back, err := Load(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if back.Len() != tb.Len() || back.Edges() != tb.Edges() || back.Config() != tb.Config() || back.RecencyDecay() != float64(float32(0.6)) {
		t.Fatalf("loaded %d items, %d edges, %+v; saved %d, %d, %+v", back.Len(), back.Edges(), back.Config(), tb.Len(), tb.Edges(), tb.Config())
	}
	if !slices.Equal(back.ids, tb.ids) || !slices.Equal(back.off, tb.off) || !slices.Equal(back.nbr, tb.nbr) || !slices.Equal(back.wt, tb.wt) {
		t.Fatal("loaded table differs from the saved one")
	}
	if i, ok := back.Lookup(tb.ID(7)); !ok || i != 7 {
		t.Fatalf("Lookup(%q) after load = %d, %v", tb.ID(7), i, ok)
	}
	recent := []int32{3, 1, 4, 1, 5}
	if a, c := tb.Recommend(nil, recent, 10, nil), back.Recommend(nil, recent, 10, nil); !slices.Equal(a, c) || len(a) == 0 {
		t.Fatalf("Recommend differs after a round trip: %v, %v", a, c)
	}
	if !bytes.Equal(saved(t, back), b) {
		t.Fatal("saving the loaded table gives other bytes")
	}

	path := filepath.Join(t.TempDir(), "covisit.bin")
	if err := tb.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	f, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(saved(t, f), b) {
		t.Fatal("WriteFile/ReadFile round trip differs")
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Fatalf("%d files after WriteFile, want 1 (no temporary left)", len(entries))
	}
	raw, _ := os.ReadFile(path)
	raw[len(raw)/2] ^= 0x40
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(path); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Fatalf("corrupt file: %v, want ErrCorrupt naming the path", err)
	}

	empty, err := Load(bytes.NewReader(saved(t, build(t, nil, Config{}))))
	if err != nil || empty.Len() != 0 {
		t.Fatalf("empty table round trip: %v", err)
	}
}

func TestLoadRefusesCorrupt(t *testing.T) {
	t.Parallel()
	tb := build(t, []Interaction{
		visit("u1", "a", 0, 1), visit("u1", "b", 1, 1), visit("u1", "c", 2, 1),
		visit("u2", "b", 0, 1), visit("u2", "c", 1, 2),
	}, Config{})
	good := saved(t, tb)
	le := binary.LittleEndian
	// Payload: 3 ids of 2 bytes (length, letter), 4 offsets, then the
	// edges' neighbours and weights.
	idsAt := artifact.HeaderSize
	offAt := idsAt + 3*2
	nbrAt := offAt + 4*4
	wtAt := nbrAt + 4*tb.Edges()
	edit := func(f func(b []byte)) []byte {
		b := slices.Clone(good)
		f(b)
		return b
	}
	// reseal recomputes the checksum, so the checks behind it run.
	reseal := func(f func(b []byte)) []byte {
		return edit(func(b []byte) {
			f(b)
			le.PutUint32(b[60:], artifact.Checksum(b[:60], b[artifact.HeaderSize:]))
		})
	}
	for _, tt := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "shorter than the 64-byte header"},
		{"half a header", good[:30], "shorter than the 64-byte header"},
		{"wrong magic", edit(func(b []byte) { copy(b, "ADRECIVF") }), "not an adaptrec co-visitation table"},
		{"newer version", reseal(func(b []byte) { le.PutUint32(b[8:], 2) }), "format version 2"},
		{"flipped payload byte", edit(func(b []byte) { b[len(b)-3] ^= 1 }), "checksum"},
		{"flipped header byte", edit(func(b []byte) { b[33] ^= 1 }), "checksum"},
		{"truncated", good[:len(good)-5], "truncated"},
		{"trailing bytes", append(slices.Clone(good), 0), "bytes follow"},
		{"huge payload length", edit(func(b []byte) { le.PutUint64(b[48:], 1<<40) }), "payload of"},
		{"more edges than lists hold", reseal(func(b []byte) { le.PutUint64(b[40:], 1000) }), "neighbours for 3 items"},
		{"recency decay 2", reseal(func(b []byte) { le.PutUint32(b[28:], math.Float32bits(2)) }), "recency decay 2"},
		// Sealed with a valid checksum, but inconsistent inside.
		{"ids out of order", reseal(func(b []byte) { b[idsAt+1], b[idsAt+3] = 'b', 'a' }), "ids must ascend"},
		{"repeated id", reseal(func(b []byte) { b[idsAt+3] = 'a' }), "ids must ascend"},
		{"neighbour is itself", reseal(func(b []byte) { le.PutUint32(b[nbrAt:], 0) }), "item 0 has neighbour 0"},
		{"neighbour out of range", reseal(func(b []byte) { le.PutUint32(b[nbrAt:], 3) }), "neighbour 3 of 3"},
		{"negative weight", reseal(func(b []byte) { le.PutUint32(b[wtAt:], math.Float32bits(-1)) }), "weight -1"},
		{"NaN weight", reseal(func(b []byte) { le.PutUint32(b[wtAt:], 0x7fc00000) }), "weight NaN"},
		{"list out of order", reseal(func(b []byte) {
			// a's list is b, c: swap the weights so c outweighs b.
			w0, w1 := le.Uint32(b[wtAt:]), le.Uint32(b[wtAt+4:])
			le.PutUint32(b[wtAt:], w1)
			le.PutUint32(b[wtAt+4:], w0)
		}), "out of order"},
		{"offsets decrease", reseal(func(b []byte) { le.PutUint32(b[offAt+4:], 5) }), "neighbours, want 0..50"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(bytes.NewReader(tt.b))
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load: %v, want ErrCorrupt mentioning %q", err, tt.want)
			}
		})
	}
	if _, err := Load(bytes.NewReader(good)); err != nil {
		t.Fatalf("the untouched artifact: %v", err)
	}
	if nbr, wt := tb.Neighbours(0); len(nbr) != 2 || !(wt[0] > wt[1]) {
		t.Fatalf("a's neighbours %v %v: the out-of-order case needs two of different weights", nbr, wt)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestLoadReaderError(t *testing.T) {
	t.Parallel()
	if _, err := Load(failingReader{}); err == nil || errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want the reader's error, not ErrCorrupt", err)
	}
	if _, err := ReadFile(filepath.Join(t.TempDir(), "missing.bin")); err == nil || errors.Is(err, ErrCorrupt) {
		t.Fatalf("missing file: err = %v", err)
	}
}
