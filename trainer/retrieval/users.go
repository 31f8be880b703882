package retrieval

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/adaptrec/adaptrec/internal/artifact"
)

// UserVectors holds user vectors by user id: the ALS user factors of one
// training run, shipped with the item index of the same run so that serving
// can retrieve for a user whose recent items it does not know. Its memory is
// one flat []float32 (users × dims), the ids concatenated into one string
// and one uint32 offset per user: no pointer per user, so a few million
// users cost the garbage collector nothing. Ids are kept in ascending byte
// order and Lookup is a binary search that does not allocate. A
// UserVectors is immutable and safe for concurrent use.
type UserVectors struct {
	dims int
	// ids are every id, ascending, concatenated; user u's is
	// ids[off[u]:off[u+1]].
	ids     string
	off     []uint32
	vectors []float32 // users×dims, row u user u's
}

// maxUsers bounds a user table; Load refuses artifacts beyond it.
const maxUsers = 1<<31 - 2

// NewUserVectors returns the user vectors of ids (vectors holds
// len(ids)×dims values, row i for ids[i]). Ids must be distinct, 1..4096
// bytes, and the values finite. The rows are copied into id order.
func NewUserVectors(ids []string, vectors []float32, dims int) (*UserVectors, error) {
	n := len(ids)
	switch {
	case dims < 1 || dims > MaxDims:
		return nil, fmt.Errorf("retrieval: user vectors dims %d, want 1..%d", dims, MaxDims)
	case n < 1 || n > maxUsers:
		return nil, fmt.Errorf("retrieval: %d users, want 1..%d", n, maxUsers)
	case len(vectors) != n*dims:
		return nil, fmt.Errorf("retrieval: %d users × %d dims need %d values, got %d", n, dims, n*dims, len(vectors))
	}
	order := make([]int32, n)
	size := 0
	for i, id := range ids {
		if id == "" || len(id) > maxIDLen {
			return nil, fmt.Errorf("retrieval: user %d id has %d bytes, want 1..%d", i, len(id), maxIDLen)
		}
		order[i] = int32(i)
		size += len(id)
	}
	if size > math.MaxUint32 {
		return nil, fmt.Errorf("retrieval: user ids of %d bytes in all, want at most %d", size, uint64(math.MaxUint32))
	}
	slices.SortFunc(order, func(a, b int32) int { return strings.Compare(ids[a], ids[b]) })
	u := &UserVectors{dims: dims, off: make([]uint32, n+1), vectors: make([]float32, 0, n*dims)}
	var b strings.Builder
	b.Grow(size)
	for k, i := range order {
		if k > 0 && ids[i] == ids[order[k-1]] {
			return nil, fmt.Errorf("retrieval: users %d and %d share id %q", order[k-1], i, ids[i])
		}
		row := vectors[int(i)*dims : int(i+1)*dims]
		if j := firstNonFinite(row); j >= 0 {
			return nil, fmt.Errorf("retrieval: user %q vector value %d is %v", ids[i], j, row[j])
		}
		b.WriteString(ids[i])
		u.off[k+1] = uint32(b.Len())
		u.vectors = append(u.vectors, row...)
	}
	u.ids = b.String()
	return u, nil
}

// UserVectors returns the model's user vectors by id; ids[u] names user u.
func (m *Model) UserVectors(ids []string) (*UserVectors, error) {
	if len(ids) != m.Users {
		return nil, fmt.Errorf("retrieval: %d ids for a model of %d users", len(ids), m.Users)
	}
	return NewUserVectors(ids, m.UserFactors, m.Dims)
}

// Len returns the number of users.
func (u *UserVectors) Len() int { return len(u.off) - 1 }

// Dims returns the vector dimension.
func (u *UserVectors) Dims() int { return u.dims }

// ID returns user i's id; users are numbered in ascending id order.
func (u *UserVectors) ID(i int32) string { return u.ids[u.off[i]:u.off[i+1]] }

// Lookup returns the user with id. It does not allocate.
func (u *UserVectors) Lookup(id string) (int32, bool) {
	lo, hi := 0, u.Len()
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if u.ids[u.off[m]:u.off[m+1]] < id {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < u.Len() && u.ids[u.off[lo]:u.off[lo+1]] == id {
		return int32(lo), true
	}
	return -1, false
}

// Vector returns user i's vector (a view, not a copy: do not change it).
func (u *UserVectors) Vector(i int32) []float32 {
	return u.vectors[int(i)*u.dims : int(i+1)*u.dims : int(i+1)*u.dims]
}

// The user-vectors artifact, little-endian throughout, framed by
// internal/artifact (magic, version, payload length and checksum):
//
//	offset size  field
//	0      8     magic "ADRECUSR"
//	8      4     format version (1)
//	12     4     dims
//	16     4     users
//	20     4     reserved, 0
//	24     8     id bytes: the lengths of all ids added up
//	32     16    reserved, 0
//	48     8     payload length in bytes
//	56     4     reserved, 0
//	60     4     CRC-32C (Castagnoli) of bytes 0..59 and the payload
//	64           payload:
//	               users × (uvarint length, id bytes), ids strictly ascending
//	               users × dims float32 vectors, in id order
//
// Nothing follows the payload.
const UserVectorsVersion = 1

// ErrCorruptUserVectors is wrapped by every error LoadUserVectors returns
// for bytes that are not a valid user-vectors artifact (as opposed to a
// failing reader).
var ErrCorruptUserVectors = errors.New("retrieval: corrupt user vectors artifact")

// usersFormat frames the artifact (internal/artifact): magic, version, the
// payload length at offset 48 and the checksum.
var usersFormat = artifact.Format{
	Magic: "ADRECUSR", Version: UserVectorsVersion, LengthAt: 48,
	Pkg: "retrieval", Noun: "user vectors", What: "user vectors table", ErrCorrupt: ErrCorruptUserVectors,
}

// Save writes the user-vectors artifact to w.
func (u *UserVectors) Save(w io.Writer) error {
	n := u.Len()
	size := len(u.ids) + 4*len(u.vectors)
	for i := range n {
		size += uvarintLen(uint64(u.off[i+1] - u.off[i]))
	}
	payload := make([]byte, 0, size)
	for i := range int32(n) {
		id := u.ID(i)
		payload = binary.AppendUvarint(payload, uint64(len(id)))
		payload = append(payload, id...)
	}
	payload = appendFloats(payload, u.vectors)

	var hdr artifact.Header
	le := binary.LittleEndian
	le.PutUint32(hdr[12:], uint32(u.dims))
	le.PutUint32(hdr[16:], uint32(n))
	le.PutUint64(hdr[24:], uint64(len(u.ids)))
	return usersFormat.Write(w, &hdr, payload)
}

// WriteFile saves the user vectors to path atomically: it writes a
// temporary file in the same directory, syncs it and renames it over path.
func (u *UserVectors) WriteFile(path string) error {
	return usersFormat.WriteFile(path, u.Save)
}

// ReadUserVectorsFile loads the user-vectors artifact at path.
func ReadUserVectorsFile(path string) (*UserVectors, error) {
	return artifact.ReadFile(&usersFormat, path, LoadUserVectors)
}

// LoadUserVectors reads a user-vectors artifact written by Save, and reads
// r to its end: a wrong magic or version, a checksum mismatch, a truncated
// or overlong file, or contents that break the table's invariants (an id
// empty, too long, repeated or out of order, a value not finite) are
// refused with an error wrapping ErrCorruptUserVectors. It allocates the
// vectors, the ids and their offsets, and nothing per user.
func LoadUserVectors(r io.Reader) (*UserVectors, error) {
	hdr, err := usersFormat.ReadHeader(r)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	dims, n, idBytes := le.Uint32(hdr[12:]), le.Uint32(hdr[16:]), le.Uint64(hdr[24:])
	reserved := le.Uint32(hdr[20:]) | le.Uint32(hdr[56:])
	for _, v := range hdr[32:48] {
		reserved |= uint32(v)
	}
	switch {
	case reserved != 0:
		return nil, usersFormat.Corrupt("reserved header fields are not zero")
	case dims < 1 || dims > MaxDims:
		return nil, usersFormat.Corrupt("dims %d, want 1..%d", dims, MaxDims)
	case n < 1 || n > maxUsers:
		return nil, usersFormat.Corrupt("%d users", n)
	case idBytes < uint64(n) || idBytes > uint64(n)*maxIDLen || idBytes > math.MaxUint32:
		return nil, usersFormat.Corrupt("%d id bytes for %d users", idBytes, n)
	}
	payload, err := usersFormat.ReadPayload(r, &hdr)
	if err != nil {
		return nil, err
	}
	u, err := decodeUsers(payload, int(dims), int(n), int(idBytes))
	if err != nil {
		return nil, usersFormat.Corrupt("%v", err)
	}
	return u, nil
}

// decodeUsers builds the table from a checksummed payload, checking every
// invariant Lookup and Vector rely on.
func decodeUsers(p []byte, d, n, idBytes int) (*UserVectors, error) {
	// Checked before anything is allocated, so the claimed sizes cannot
	// make this allocate more than the payload's own size.
	if want := n + idBytes + 4*n*d; len(p) < want {
		return nil, fmt.Errorf("%d payload bytes, too few for %d users of %d dims with %d id bytes", len(p), n, d, idBytes)
	}
	u := &UserVectors{dims: d, off: make([]uint32, n+1)}
	var b strings.Builder
	b.Grow(idBytes)
	var prev []byte // a view of the payload
	for i := range n {
		l, k := binary.Uvarint(p)
		if k <= 0 || l < 1 || l > maxIDLen || l > uint64(len(p)-k) || uint64(b.Len())+l > uint64(idBytes) {
			return nil, fmt.Errorf("id of user %d runs past the payload or the header's %d id bytes, or is not 1..%d bytes", i, idBytes, maxIDLen)
		}
		id := p[k : k+int(l)]
		if i > 0 && bytes.Compare(id, prev) <= 0 {
			return nil, fmt.Errorf("user %d id %q does not follow %q: ids must ascend, each once", i, id, prev)
		}
		b.Write(id)
		u.off[i+1] = uint32(b.Len())
		p, prev = p[k+int(l):], id
	}
	if b.Len() != idBytes {
		return nil, fmt.Errorf("ids of %d bytes, the header says %d", b.Len(), idBytes)
	}
	if len(p) != 4*n*d {
		return nil, fmt.Errorf("%d bytes after the ids, want %d for %d users of %d dims", len(p), 4*n*d, n, d)
	}
	u.ids = b.String()
	u.vectors, _ = readFloats(p, n*d)
	if i := firstNonFinite(u.vectors); i >= 0 {
		return nil, fmt.Errorf("user %q vector value %d is %v", u.ID(int32(i/d)), i%d, u.vectors[i])
	}
	return u, nil
}
