package ann

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/adaptrec/adaptrec/internal/artifact"
)

// The index artifact, little-endian throughout, framed by
// internal/artifact (magic, version, payload length and checksum):
//
//	offset size  field
//	0      8     magic "ADRECANN"
//	8      4     format version (1)
//	12     4     dims
//	16     4     items
//	20     4     M
//	24     4     efConstruction
//	28     4     default efSearch
//	32     4     bands
//	36     8     norm ratio (float64)
//	44     8     seed
//	52     8     payload length in bytes
//	60     4     CRC-32C (Castagnoli) of bytes 0..59 and the payload
//	64           payload, nodes in descending norm:
//	               items int32 ids
//	               items × dims float32 vectors
//	               items uint8 top layers
//	               bands × 4 uint32: start, end, entry node, top layer
//	               per node, per layer 0..its top: uint32 count, count uint32 neighbours
//
// Nothing follows the payload.
const ArtifactVersion = 1

// ErrCorrupt is wrapped by every error Load returns for bytes that are not
// a valid index artifact (as opposed to a failing reader).
var ErrCorrupt = errors.New("ann: corrupt index artifact")

// format frames the artifact (internal/artifact): magic, version, the
// payload length at offset 52 and the checksum.
var format = artifact.Format{
	Magic: "ADRECANN", Version: ArtifactVersion, LengthAt: 52,
	Pkg: "ann", Noun: "index", What: "ANN index", ErrCorrupt: ErrCorrupt,
}

// Save writes the index artifact to w.
func (x *Index) Save(w io.Writer) error {
	g := &x.g
	size := 4*g.n + 4*g.n*g.dims + g.n + 16*len(g.bands)
	for node := range g.n {
		for l := 0; l <= int(g.levels[node]); l++ {
			size += 4 + 4*len(g.neighbours(int32(node), l))
		}
	}
	le := binary.LittleEndian
	payload := make([]byte, 0, size)
	for _, id := range x.ids {
		payload = le.AppendUint32(payload, uint32(id))
	}
	for _, f := range g.vecs {
		payload = le.AppendUint32(payload, math.Float32bits(f))
	}
	payload = append(payload, g.levels...)
	for _, b := range g.bands {
		payload = le.AppendUint32(payload, uint32(b.start))
		payload = le.AppendUint32(payload, uint32(b.end))
		payload = le.AppendUint32(payload, uint32(b.entry))
		payload = le.AppendUint32(payload, uint32(b.maxLevel))
	}
	for node := range g.n {
		for l := 0; l <= int(g.levels[node]); l++ {
			nbs := g.neighbours(int32(node), l)
			payload = le.AppendUint32(payload, uint32(len(nbs)))
			for _, nb := range nbs {
				payload = le.AppendUint32(payload, uint32(nb))
			}
		}
	}

	var hdr artifact.Header
	le.PutUint32(hdr[12:], uint32(g.dims))
	le.PutUint32(hdr[16:], uint32(g.n))
	le.PutUint32(hdr[20:], uint32(g.m))
	le.PutUint32(hdr[24:], uint32(x.efc))
	le.PutUint32(hdr[28:], uint32(x.efSearch))
	le.PutUint32(hdr[32:], uint32(len(g.bands)))
	le.PutUint64(hdr[36:], math.Float64bits(x.ratio))
	le.PutUint64(hdr[44:], x.seed)
	return format.Write(w, &hdr, payload)
}

// WriteFile saves the index to path atomically: it writes a temporary file
// in the same directory, syncs it and renames it over path.
func (x *Index) WriteFile(path string) error {
	return format.WriteFile(path, x.Save)
}

// ReadFile loads the index artifact at path.
func ReadFile(path string) (*Index, error) {
	return artifact.ReadFile(&format, path, Load)
}

// Load reads an index artifact written by Save, and reads r to its end: a
// wrong magic or version, a checksum mismatch, a truncated or overlong
// file, or contents that break the index's invariants (so that a search
// could index out of range or return another band's nodes) are refused
// with an error wrapping ErrCorrupt. Sizes claimed by the header are
// checked against the bytes present before anything is allocated for them.
func Load(r io.Reader) (*Index, error) {
	hdr, err := format.ReadHeader(r)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	dims, n, m := le.Uint32(hdr[12:]), le.Uint32(hdr[16:]), le.Uint32(hdr[20:])
	efc, efs, nb := le.Uint32(hdr[24:]), le.Uint32(hdr[28:]), le.Uint32(hdr[32:])
	ratio, seed := math.Float64frombits(le.Uint64(hdr[36:])), le.Uint64(hdr[44:])
	switch {
	case dims < 1 || dims > MaxDims:
		return nil, format.Corrupt("dims %d, want 1..%d", dims, MaxDims)
	case n > MaxItems:
		return nil, format.Corrupt("%d items", n)
	case m < 2 || m > MaxM || efc < 1 || efc > MaxEf || efs < 1 || efs > MaxEf:
		return nil, format.Corrupt("M %d, efConstruction %d, efSearch %d", m, efc, efs)
	case nb > maxBands || (n == 0) != (nb == 0):
		return nil, format.Corrupt("%d bands for %d items", nb, n)
	case !(ratio > 1) || math.IsInf(ratio, 0):
		return nil, format.Corrupt("norm ratio %v", ratio)
	}
	payload, err := format.ReadPayload(r, &hdr)
	if err != nil {
		return nil, err
	}
	x, err := decode(payload, int(dims), int(n), int(m), int(nb))
	if err != nil {
		return nil, format.Corrupt("%v", err)
	}
	x.efc, x.efSearch, x.ratio, x.seed = int(efc), int(efs), ratio, seed
	return x, nil
}

// decode rebuilds an index from a checksummed payload, checking every
// invariant a search relies on.
func decode(p []byte, dims, n, m, nbands int) (*Index, error) {
	le := binary.LittleEndian
	// Every node has at least a layer-0 count: checking the length first
	// bounds what the claimed sizes can make this allocate.
	fixed := 4*n + 4*n*dims + n + 16*nbands + 4*n
	if len(p) < fixed {
		return nil, fmt.Errorf("%d payload bytes, fewer than the %d that %d items of %d dims need", len(p), fixed, n, dims)
	}
	x := &Index{
		g: graph{
			n: n, dims: dims, m: m, m0: 2 * m,
			vecs:   make([]float32, n*dims),
			levels: make([]uint8, n),
			links0: make([]int32, n*(2*m+1)),
			upper:  make([][]int32, n),
			bands:  make([]band, nbands),
		},
		ids: make([]int32, n),
	}
	g := &x.g
	for i := range x.ids {
		x.ids[i] = int32(le.Uint32(p[4*i:]))
	}
	p = p[4*n:]
	for i := range g.vecs {
		g.vecs[i] = math.Float32frombits(le.Uint32(p[4*i:]))
	}
	p = p[4*n*dims:]
	if i := firstNonFinite(g.vecs); i >= 0 {
		return nil, fmt.Errorf("node %d vector value %d is %v", i/dims, i%dims, g.vecs[i])
	}
	copy(g.levels, p[:n])
	p = p[n:]
	for node, l := range g.levels {
		if l >= maxLevels {
			return nil, fmt.Errorf("node %d on layer %d, past %d", node, l, maxLevels-1)
		}
		if l > 0 {
			g.upper[node] = make([]int32, int(l)*(m+1))
		}
	}
	bandOf := make([]int32, n)
	next := 0
	for i := range g.bands {
		start, end := le.Uint32(p[16*i:]), le.Uint32(p[16*i+4:])
		entry, top := le.Uint32(p[16*i+8:]), le.Uint32(p[16*i+12:])
		if int(start) != next || end <= start || int(end) > n || entry < start || entry >= end {
			return nil, fmt.Errorf("band %d spans %d..%d with entry %d; want a partition of 0..%d", i, start, end, entry, n)
		}
		b := band{start: int32(start), end: int32(end), entry: int32(entry), maxLevel: int(top)}
		var max2 float64
		for node := start; node < end; node++ {
			bandOf[node] = int32(i)
			max2 = math.Max(max2, norm2(g.vec(int32(node))))
			if int(g.levels[node]) > b.maxLevel {
				return nil, fmt.Errorf("band %d tops at layer %d but node %d reaches %d", i, top, node, g.levels[node])
			}
		}
		if int(g.levels[entry]) != b.maxLevel {
			return nil, fmt.Errorf("band %d entry %d is on layer %d, not the top %d", i, entry, g.levels[entry], top)
		}
		// Recomputed, not stored: the search's Cauchy–Schwarz bound must
		// hold for these very vectors.
		b.maxNorm = float32(math.Sqrt(max2))
		g.bands[i] = b
		next = int(end)
	}
	if next != n {
		return nil, fmt.Errorf("bands cover %d of %d nodes", next, n)
	}
	p = p[16*nbands:]
	for node := range n {
		for l := 0; l <= int(g.levels[node]); l++ {
			if len(p) < 4 {
				return nil, fmt.Errorf("links of node %d end early", node)
			}
			count := le.Uint32(p)
			if count > uint32(g.capacity(l)) || uint64(len(p)) < 4+4*uint64(count) {
				return nil, fmt.Errorf("node %d has %d links on layer %d, capacity %d", node, count, l, g.capacity(l))
			}
			blk := g.block(int32(node), l)
			blk[0] = int32(count)
			for j := range int(count) {
				nb := le.Uint32(p[4+4*j:])
				if nb >= uint32(n) || nb == uint32(node) || bandOf[nb] != bandOf[node] || int(g.levels[nb]) < l {
					return nil, fmt.Errorf("node %d links to %d on layer %d", node, nb, l)
				}
				blk[1+j] = int32(nb)
			}
			p = p[4+4*count:]
		}
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("%d bytes after the links", len(p))
	}
	if err := x.index(); err != nil {
		return nil, err
	}
	return x, nil
}
