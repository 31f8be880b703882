package retrieval

import (
	"encoding/binary"
	"errors"
	"io"
	"math"

	"github.com/adaptrec/adaptrec/internal/artifact"
)

// The index artifact, little-endian throughout, framed by
// internal/artifact (magic, version, payload length and checksum):
//
//	offset size  field
//	0      8     magic "ADRECIVF"
//	8      4     format version (1)
//	12     4     dims
//	16     4     items
//	20     4     lists
//	24     4     default nprobe
//	28     4     reserved, 0
//	32     8     fold-in regularization (float64; 0 when absent)
//	40     8     fold-in alpha (float64; 0 when absent)
//	48     8     payload length in bytes
//	56     4     reserved, 0
//	60     4     CRC-32C (Castagnoli) of bytes 0..59 and the payload
//	64           payload:
//	               items × (uvarint length, id bytes), in item order
//	               lists × dims float32 centroids
//	               (lists+1) uint32 list offsets
//	               items uint32 item at each position
//	               items × dims float32 vectors, in position order
//
// Nothing follows the payload.
const IndexVersion = 1

// ErrCorruptIndex is wrapped by every error Load returns for bytes that are
// not a valid index artifact (as opposed to a failing reader).
var ErrCorruptIndex = errors.New("retrieval: corrupt index artifact")

// indexFormat frames the artifact (internal/artifact): magic, version, the
// payload length at offset 48 and the checksum.
var indexFormat = artifact.Format{
	Magic: "ADRECIVF", Version: IndexVersion, LengthAt: 48,
	Pkg: "retrieval", Noun: "index", What: "retrieval index", ErrCorrupt: ErrCorruptIndex,
}

func corrupt(format string, args ...any) error { return indexFormat.Corrupt(format, args...) }

// Save writes the index artifact to w.
func (x *Index) Save(w io.Writer) error {
	n, lists := len(x.ids), x.Lists()
	size := 0
	for _, id := range x.ids {
		size += uvarintLen(uint64(len(id))) + len(id)
	}
	size += 4*lists*x.dims + 4*(lists+1) + 4*n + 4*n*x.dims
	payload := make([]byte, 0, size)
	for _, id := range x.ids {
		payload = binary.AppendUvarint(payload, uint64(len(id)))
		payload = append(payload, id...)
	}
	payload = appendFloats(payload, x.centroids)
	for _, v := range x.listOff {
		payload = binary.LittleEndian.AppendUint32(payload, uint32(v))
	}
	for _, v := range x.order {
		payload = binary.LittleEndian.AppendUint32(payload, uint32(v))
	}
	payload = appendFloats(payload, x.vectors)

	var hdr artifact.Header
	le := binary.LittleEndian
	le.PutUint32(hdr[12:], uint32(x.dims))
	le.PutUint32(hdr[16:], uint32(n))
	le.PutUint32(hdr[20:], uint32(lists))
	le.PutUint32(hdr[24:], uint32(x.nprobe))
	le.PutUint64(hdr[32:], math.Float64bits(x.reg))
	le.PutUint64(hdr[40:], math.Float64bits(x.alpha))
	return indexFormat.Write(w, &hdr, payload)
}

// WriteFile saves the index to path atomically: it writes a temporary file
// in the same directory, syncs it and renames it over path.
func (x *Index) WriteFile(path string) error {
	return indexFormat.WriteFile(path, x.Save)
}

// ReadIndexFile loads the index artifact at path.
func ReadIndexFile(path string) (*Index, error) {
	return artifact.ReadFile(&indexFormat, path, Load)
}

// Load reads an index artifact written by Save, and reads r to its end: a
// wrong magic or version, a checksum mismatch, a truncated or overlong
// file, or contents that break the index's invariants are refused with an
// error wrapping ErrCorruptIndex.
func Load(r io.Reader) (*Index, error) {
	hdr, err := indexFormat.ReadHeader(r)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	dims, n, lists, nprobe := le.Uint32(hdr[12:]), le.Uint32(hdr[16:]), le.Uint32(hdr[20:]), le.Uint32(hdr[24:])
	reg, alpha := math.Float64frombits(le.Uint64(hdr[32:])), math.Float64frombits(le.Uint64(hdr[40:]))
	switch {
	case le.Uint32(hdr[28:]) != 0 || le.Uint32(hdr[56:]) != 0:
		return nil, corrupt("reserved header fields are not zero")
	case dims < 1 || dims > MaxDims:
		return nil, corrupt("dims %d, want 1..%d", dims, MaxDims)
	case n < 1 || n > maxIndexItems:
		return nil, corrupt("%d items", n)
	case lists < 1 || lists > n || lists > maxLists:
		return nil, corrupt("%d lists for %d items", lists, n)
	case nprobe < 1:
		return nil, corrupt("nprobe %d", nprobe)
	}
	payload, err := indexFormat.ReadPayload(r, &hdr)
	if err != nil {
		return nil, err
	}

	d, items, nl := int(dims), int(n), int(lists)
	p := payload
	ids := make([]string, items)
	for i := range ids {
		l, k := binary.Uvarint(p)
		if k <= 0 || l > uint64(len(p)-k) {
			return nil, corrupt("id of item %d runs past the payload", i)
		}
		ids[i] = string(p[k : k+int(l)])
		p = p[k+int(l):]
	}
	fixed := 4*nl*d + 4*(nl+1) + 4*items + 4*items*d
	if len(p) != fixed {
		return nil, corrupt("%d bytes after the ids, want %d for %d lists and %d items of %d dims", len(p), fixed, nl, items, d)
	}
	cent, p := readFloats(p, nl*d)
	listOff := make([]int32, nl+1)
	for i := range listOff {
		v := le.Uint32(p[4*i:])
		if v > n {
			return nil, corrupt("list offset %d is %d, past %d items", i, v, n)
		}
		listOff[i] = int32(v)
	}
	p = p[4*(nl+1):]
	order := make([]int32, items)
	for i := range order {
		v := le.Uint32(p[4*i:])
		if v >= n {
			return nil, corrupt("position %d holds item %d of %d", i, v, n)
		}
		order[i] = int32(v)
	}
	p = p[4*items:]
	vecs, _ := readFloats(p, items*d)
	if !(reg >= 0 && alpha >= 0) || math.IsInf(reg, 0) || math.IsInf(alpha, 0) {
		return nil, corrupt("fold-in regularization %v, alpha %v", reg, alpha)
	}
	x, err := newIndex(d, ids, cent, listOff, order, vecs, int(nprobe), reg, alpha)
	if err != nil {
		return nil, corrupt("%v", err)
	}
	return x, nil
}

func appendFloats(b []byte, v []float32) []byte {
	for _, f := range v {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
	}
	return b
}

func readFloats(p []byte, n int) ([]float32, []byte) {
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(p[4*i:]))
	}
	return out, p[4*n:]
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
