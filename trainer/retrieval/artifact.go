package retrieval

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
)

// The index artifact, little-endian throughout:
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
const (
	indexMagic      = "ADRECIVF"
	IndexVersion    = 1
	indexHeaderSize = 64
	// maxPayload bounds what Load will read: 2^31 items of 1,024 dims
	// would be far more, but a header claiming more than 64 GiB is corrupt
	// on any machine this runs on.
	maxPayload = 1 << 36
)

// ErrCorruptIndex is wrapped by every error Load returns for bytes that are
// not a valid index artifact (as opposed to a failing reader).
var ErrCorruptIndex = errors.New("retrieval: corrupt index artifact")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorruptIndex, fmt.Sprintf(format, args...))
}

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

	var hdr [indexHeaderSize]byte
	copy(hdr[0:8], indexMagic)
	le := binary.LittleEndian
	le.PutUint32(hdr[8:], IndexVersion)
	le.PutUint32(hdr[12:], uint32(x.dims))
	le.PutUint32(hdr[16:], uint32(n))
	le.PutUint32(hdr[20:], uint32(lists))
	le.PutUint32(hdr[24:], uint32(x.nprobe))
	le.PutUint64(hdr[32:], math.Float64bits(x.reg))
	le.PutUint64(hdr[40:], math.Float64bits(x.alpha))
	le.PutUint64(hdr[48:], uint64(len(payload)))
	crc := crcOf(hdr[:60], payload)
	le.PutUint32(hdr[60:], crc)
	if _, err := w.Write(hdr[:]); err != nil {
		return fmt.Errorf("retrieval: write index: %w", err)
	}
	if _, err := w.Write(payload); err != nil {
		return fmt.Errorf("retrieval: write index: %w", err)
	}
	return nil
}

// WriteFile saves the index to path atomically: it writes a temporary file
// in the same directory, syncs it and renames it over path.
func (x *Index) WriteFile(path string) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("retrieval: write index: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err = x.Save(bw); err != nil {
		return err
	}
	if err = bw.Flush(); err != nil {
		return fmt.Errorf("retrieval: write index %s: %w", path, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("retrieval: write index %s: %w", path, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("retrieval: write index %s: %w", path, err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("retrieval: write index: %w", err)
	}
	return nil
}

// ReadIndexFile loads the index artifact at path.
func ReadIndexFile(path string) (*Index, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("retrieval: read index: %w", err)
	}
	defer f.Close()
	x, err := Load(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return x, nil
}

// Load reads an index artifact written by Save, and reads r to its end: a
// wrong magic or version, a checksum mismatch, a truncated or overlong
// file, or contents that break the index's invariants are refused with an
// error wrapping ErrCorruptIndex.
func Load(r io.Reader) (*Index, error) {
	var hdr [indexHeaderSize]byte
	if n, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, corrupt("%d bytes, shorter than the %d-byte header", n, indexHeaderSize)
		}
		return nil, fmt.Errorf("retrieval: read index: %w", err)
	}
	if string(hdr[0:8]) != indexMagic {
		return nil, corrupt("magic %q, want %q: not an adaptrec retrieval index", hdr[0:8], indexMagic)
	}
	le := binary.LittleEndian
	version := le.Uint32(hdr[8:])
	if version != IndexVersion {
		return nil, corrupt("format version %d, this build reads version %d", version, IndexVersion)
	}
	dims, n, lists, nprobe := le.Uint32(hdr[12:]), le.Uint32(hdr[16:]), le.Uint32(hdr[20:]), le.Uint32(hdr[24:])
	reg, alpha := math.Float64frombits(le.Uint64(hdr[32:])), math.Float64frombits(le.Uint64(hdr[40:]))
	payloadLen := le.Uint64(hdr[48:])
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
	case payloadLen > maxPayload:
		return nil, corrupt("payload of %d bytes", payloadLen)
	}
	// Read through a limit instead of allocating the claimed length, so a
	// corrupt length on a short file costs no more memory than the file.
	payload, err := io.ReadAll(io.LimitReader(r, int64(payloadLen)))
	if err != nil {
		return nil, fmt.Errorf("retrieval: read index: %w", err)
	}
	if uint64(len(payload)) != payloadLen {
		return nil, corrupt("truncated: payload has %d of %d bytes", len(payload), payloadLen)
	}
	var one [1]byte
	if k, _ := io.ReadFull(r, one[:]); k != 0 {
		return nil, corrupt("bytes follow the %d-byte payload", payloadLen)
	}
	want := le.Uint32(hdr[60:])
	if got := crcOf(hdr[:60], payload); got != want {
		return nil, corrupt("checksum %08x, header says %08x", got, want)
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

// crcOf is the artifact checksum of a header's first 60 bytes and a payload.
func crcOf(header, payload []byte) uint32 {
	return crc32.Update(crc32.Checksum(header, castagnoli), castagnoli, payload)
}
