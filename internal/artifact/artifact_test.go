package artifact

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var errToy = errors.New("toy: corrupt")

// toy is a format with one field (a uint32 at 12) and the length at 40.
var toy = Format{Magic: "ADRECTOY", Version: 3, LengthAt: 40, MaxPayload: 1 << 20, Pkg: "toy", Noun: "thing", What: "toy thing", ErrCorrupt: errToy}

func save(payload []byte, field uint32) []byte {
	var h Header
	binary.LittleEndian.PutUint32(h[12:], field)
	var b bytes.Buffer
	if err := toy.Write(&b, &h, payload); err != nil {
		panic(err)
	}
	return b.Bytes()
}

func load(r io.Reader) ([]byte, error) {
	h, err := toy.ReadHeader(r)
	if err != nil {
		return nil, err
	}
	if binary.LittleEndian.Uint32(h[12:]) != 7 {
		return nil, toy.Corrupt("field %d", binary.LittleEndian.Uint32(h[12:]))
	}
	return toy.ReadPayload(r, &h)
}

func TestFrame(t *testing.T) {
	t.Parallel()
	payload := []byte("the payload bytes")
	good := save(payload, 7)
	le := binary.LittleEndian
	if string(good[:8]) != "ADRECTOY" || le.Uint32(good[8:]) != 3 || le.Uint64(good[40:]) != uint64(len(payload)) ||
		le.Uint32(good[60:]) != Checksum(good[:60], payload) || len(good) != HeaderSize+len(payload) {
		t.Fatalf("frame % x", good[:HeaderSize])
	}
	if got, err := load(bytes.NewReader(good)); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("load: %q, %v", got, err)
	}
	edit := func(f func(b []byte)) []byte {
		b := slices.Clone(good)
		f(b)
		return b
	}
	for _, tt := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "0 bytes, shorter than the 64-byte header"},
		{"short header", good[:63], "63 bytes, shorter"},
		{"magic", edit(func(b []byte) { b[0] = 'X' }), "not an adaptrec toy thing"},
		{"version", edit(func(b []byte) { b[8] = 4 }), "format version 4, this build reads version 3"},
		{"field, before the checksum", edit(func(b []byte) { b[12] = 8 }), "field 8"},
		{"length past the bound", edit(func(b []byte) { le.PutUint64(b[40:], 1<<21) }), "payload of 2097152 bytes"},
		{"truncated", good[:len(good)-1], "truncated: payload has 16 of 17 bytes"},
		{"trailing", append(slices.Clone(good), 'x'), "bytes follow the 17-byte payload"},
		{"payload", edit(func(b []byte) { b[HeaderSize] ^= 1 }), "checksum"},
		{"header", edit(func(b []byte) { b[20] ^= 1 }), "checksum"},
		{"checksum", edit(func(b []byte) { b[62] ^= 1 }), "checksum"},
	} {
		_, err := load(bytes.NewReader(tt.b))
		if !errors.Is(err, errToy) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

type failing struct{ after int }

func (f *failing) Read(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, errors.New("disk on fire")
	}
	n := min(len(p), f.after)
	clear(p[:n])
	f.after -= n
	return n, nil
}

func TestReaderErrorsAreNotCorrupt(t *testing.T) {
	t.Parallel()
	if _, err := toy.ReadHeader(&failing{}); err == nil || errors.Is(err, errToy) || !strings.Contains(err.Error(), "toy: read thing: disk on fire") {
		t.Errorf("header: %v", err)
	}
	h := Header{}
	binary.LittleEndian.PutUint64(h[40:], 10)
	if _, err := toy.ReadPayload(&failing{after: 4}, &h); err == nil || errors.Is(err, errToy) {
		t.Errorf("payload: %v", err)
	}
}

func TestFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "thing.bin")
	payload := []byte("abc")
	if err := toy.WriteFile(path, func(w io.Writer) error {
		var h Header
		binary.LittleEndian.PutUint32(h[12:], 7)
		return toy.Write(w, &h, payload)
	}); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(&toy, path, load)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("ReadFile: %q, %v", got, err)
	}
	// A failed save leaves the old file and no temporary.
	if err := toy.WriteFile(path, func(io.Writer) error { return errors.New("no") }); err == nil {
		t.Fatal("a failed save was not reported")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("%d files after a failed write, want 1", len(entries))
	}
	if got, err := ReadFile(&toy, path, load); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("after a failed write: %q, %v", got, err)
	}
	if err := os.WriteFile(path, save(payload, 9), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(&toy, path, load); !errors.Is(err, errToy) || !strings.Contains(err.Error(), path) {
		t.Errorf("corrupt file: %v, want the path and the sentinel", err)
	}
	if _, err := ReadFile(&toy, filepath.Join(dir, "missing"), load); err == nil || errors.Is(err, errToy) {
		t.Errorf("missing file: %v", err)
	}
}
