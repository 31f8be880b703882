package retrieval

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// testUsers is a table of 300 users of 8 dims whose ids are given out of
// order, so NewUserVectors has to sort them.
func testUsers(t *testing.T) (*UserVectors, []string, []float32) {
	t.Helper()
	const n, d = 300, 8
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("user-%d", (i*7919)%n) // a permutation of 0..n-1
	}
	ids[5] = "ünïcode-user"
	vecs := clusteredVectors(n, d, 5, 11)
	u, err := NewUserVectors(ids, vecs, d)
	if err != nil {
		t.Fatal(err)
	}
	return u, ids, vecs
}

// Not parallel: AllocsPerRun refuses to run in a parallel test.
func TestUserVectorsLookup(t *testing.T) {
	u, ids, vecs := testUsers(t)
	if u.Len() != len(ids) || u.Dims() != 8 {
		t.Fatalf("%d users of %d dims", u.Len(), u.Dims())
	}
	for i, id := range ids {
		k, ok := u.Lookup(id)
		if !ok || u.ID(k) != id {
			t.Fatalf("Lookup(%q) = %d, %v (id %q)", id, k, ok, u.ID(k))
		}
		if !slices.Equal(u.Vector(k), vecs[i*8:(i+1)*8]) {
			t.Fatalf("user %q: vector %v, want %v", id, u.Vector(k), vecs[i*8:(i+1)*8])
		}
	}
	for k := int32(1); k < int32(u.Len()); k++ {
		if u.ID(k-1) >= u.ID(k) {
			t.Fatalf("ids out of order at %d: %q, %q", k, u.ID(k-1), u.ID(k))
		}
	}
	for _, id := range []string{"", "user-", "user-300", "zzz", "a", "user-10x", "\xff"} {
		if k, ok := u.Lookup(id); ok {
			t.Errorf("Lookup(%q) found user %d", id, k)
		}
	}
	// A vector is a view whose capacity ends with it: appending to it
	// cannot write into the next user's.
	v := u.Vector(0)
	_ = append(v, 42)
	if u.Vector(1)[0] == 42 {
		t.Fatal("appending to a user's vector changed the next user's")
	}
	// Serving looks a user up on every request: no allocation.
	if a := testing.AllocsPerRun(100, func() {
		k, _ := u.Lookup("user-123")
		_ = u.Vector(k)
	}); a != 0 {
		t.Errorf("Lookup and Vector allocate %v times", a)
	}
}

func TestNewUserVectorsRejects(t *testing.T) {
	t.Parallel()
	vecs := make([]float32, 3*4)
	nan := slices.Clone(vecs)
	nan[6] = float32(math.NaN())
	tests := []struct {
		name string
		ids  []string
		vecs []float32
		dims int
		want string
	}{
		{"no users", nil, nil, 4, "0 users"},
		{"zero dims", []string{"a", "b", "c"}, vecs, 0, "dims 0"},
		{"too many dims", []string{"a", "b", "c"}, vecs, MaxDims + 1, "dims"},
		{"short vectors", []string{"a", "b", "c"}, vecs[:11], 4, "need 12 values, got 11"},
		{"repeated id", []string{"a", "b", "a"}, vecs, 4, `share id "a"`},
		{"empty id", []string{"a", "", "c"}, vecs, 4, "user 1 id has 0 bytes"},
		{"long id", []string{"a", strings.Repeat("x", maxIDLen+1), "c"}, vecs, 4, "user 1 id has 4097 bytes"},
		{"NaN", []string{"a", "b", "c"}, nan, 4, `user "b" vector value 2 is NaN`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewUserVectors(tt.ids, tt.vecs, tt.dims)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestModelUserVectors(t *testing.T) {
	t.Parallel()
	const users, items = 50, 80
	m, err := Train(t.Context(), users, items, synthInteractions(users, items, 10, 4), Config{Factors: 8, Iterations: 3, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, users)
	for i := range ids {
		ids[i] = fmt.Sprintf("u%03d", users-i) // descending: the table reorders
	}
	uv, err := m.UserVectors(ids)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		k, ok := uv.Lookup(id)
		if !ok || !slices.Equal(uv.Vector(k), m.User(i)) {
			t.Fatalf("user %d (%q): stored %v, trained %v", i, id, uv.Vector(k), m.User(i))
		}
	}
	if _, err := m.UserVectors(ids[1:]); err == nil {
		t.Error("49 ids for 50 users accepted")
	}
}

func TestUserVectorsArtifactRoundTrip(t *testing.T) {
	t.Parallel()
	u, ids, _ := testUsers(t)
	var buf bytes.Buffer
	if err := u.Save(&buf); err != nil {
		t.Fatal(err)
	}
	saved := slices.Clone(buf.Bytes())
	v, err := LoadUserVectors(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if v.Len() != u.Len() || v.Dims() != u.Dims() || v.ids != u.ids || !slices.Equal(v.off, u.off) || !slices.Equal(v.vectors, u.vectors) {
		t.Fatal("loaded table differs from the saved one")
	}
	for _, id := range ids {
		a, _ := u.Lookup(id)
		b, ok := v.Lookup(id)
		if !ok || a != b {
			t.Fatalf("Lookup(%q) after load = %d, %v; before %d", id, b, ok, a)
		}
	}
	var again bytes.Buffer
	if err := v.Save(&again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(saved, again.Bytes()) {
		t.Fatal("re-saved artifact differs")
	}
}

func TestUserVectorsArtifactFile(t *testing.T) {
	t.Parallel()
	u, _, _ := testUsers(t)
	path := filepath.Join(t.TempDir(), "users.emb")
	if err := u.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	v, err := ReadUserVectorsFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(u.vectors, v.vectors) {
		t.Fatal("file round trip changed the vectors")
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Fatalf("%d files left in the directory, want only the artifact", len(entries))
	}
	b, _ := os.ReadFile(path)
	b[len(b)-1] ^= 1
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadUserVectorsFile(path); !errors.Is(err, ErrCorruptUserVectors) || !strings.Contains(err.Error(), path) {
		t.Fatalf("corrupt file: err = %v, want ErrCorruptUserVectors naming the path", err)
	}
}

func TestUserVectorsArtifactCorruptRefused(t *testing.T) {
	t.Parallel()
	u, _, _ := testUsers(t)
	var buf bytes.Buffer
	if err := u.Save(&buf); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	const n, d = 300, 8
	vecAt := len(good) - 4*n*d // the vectors end the file
	mutate := func(f func(b []byte) []byte) []byte { return f(slices.Clone(good)) }
	// reseal recomputes the checksum, so the structural checks behind it
	// are exercised too.
	reseal := func(b []byte) []byte {
		binary.LittleEndian.PutUint32(b[60:], 0)
		binary.LittleEndian.PutUint32(b[60:], crcOf(b[:60], b[indexHeaderSize:]))
		return b
	}
	// firstID is where the first id's bytes start: after the header and
	// its one-byte length.
	const firstID = indexHeaderSize + 1
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "shorter than the 64-byte header"},
		{"half a header", good[:30], "shorter than the 64-byte header"},
		{"an index artifact", func() []byte {
			var b bytes.Buffer
			if err := testIndex(t).Save(&b); err != nil {
				t.Fatal(err)
			}
			return b.Bytes()
		}(), "not an adaptrec user vectors table"},
		{"future version", mutate(func(b []byte) []byte { b[8] = 2; return b }), "format version 2"},
		{"payload bit flip", mutate(func(b []byte) []byte { b[len(b)/2] ^= 0x10; return b }), "checksum"},
		{"header bit flip", mutate(func(b []byte) []byte { b[16] ^= 1; return b }), "checksum"},
		{"checksum bit flip", mutate(func(b []byte) []byte { b[61] ^= 1; return b }), "checksum"},
		{"truncated", good[:len(good)-7], "truncated"},
		{"trailing bytes", append(slices.Clone(good), 0), "bytes follow"},
		{"huge payload length", mutate(func(b []byte) []byte { binary.LittleEndian.PutUint64(b[48:], 1<<40); return b }), "payload of"},
		{"zero dims", mutate(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[12:], 0); return b }), "dims 0"},
		{"zero users", mutate(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[16:], 0); return b }), "0 users"},
		{"reserved field set", mutate(func(b []byte) []byte { b[40] = 1; return b }), "reserved"},
		{"fewer id bytes than users", mutate(func(b []byte) []byte { binary.LittleEndian.PutUint64(b[24:], 10); return b }), "10 id bytes for 300 users"},
		{"resealed: more users than the payload holds", mutate(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[16:], 1<<30)
			binary.LittleEndian.PutUint64(b[24:], 1<<31)
			return reseal(b)
		}), "too few for 1073741824 users"},
		{"resealed: id bytes disagree", mutate(func(b []byte) []byte {
			binary.LittleEndian.PutUint64(b[24:], binary.LittleEndian.Uint64(b[24:])-1)
			return reseal(b)
		}), "past the payload or the header's 2295 id bytes"},
		{"resealed: ids out of order", mutate(func(b []byte) []byte {
			b[firstID] = 'z' // the first id now sorts after the second
			return reseal(b)
		}), "ids must ascend"},
		{"resealed: NaN vector", mutate(func(b []byte) []byte {
			binary.LittleEndian.PutUint32(b[vecAt+4*9:], math.Float32bits(float32(math.NaN())))
			return reseal(b)
		}), "vector value 1 is NaN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := LoadUserVectors(bytes.NewReader(tt.data))
			if !errors.Is(err, ErrCorruptUserVectors) {
				t.Fatalf("err = %v, want ErrCorruptUserVectors", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %q, want it to mention %q", err, tt.want)
			}
		})
	}
}
