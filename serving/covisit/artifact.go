package covisit

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/adaptrec/adaptrec/internal/artifact"
	"github.com/adaptrec/adaptrec/internal/topk"
)

// The table artifact, little-endian throughout, framed by
// internal/artifact (magic, version, payload length and checksum):
//
//	offset size  field
//	0      8     magic "ADRECCOV"
//	8      4     format version (1)
//	12     4     items
//	16     4     neighbours kept per item (Config.Neighbours)
//	20     4     max distance
//	24     4     distance decay (float32)
//	28     4     recency decay (float32)
//	32     8     window (int64 nanoseconds)
//	40     8     edges: neighbour entries over all items
//	48     8     payload length in bytes
//	56     4     reserved, 0
//	60     4     CRC-32C (Castagnoli) of bytes 0..59 and the payload
//	64           payload:
//	               items × (uvarint length, id bytes), ids ascending
//	               (items+1) uint32 list offsets
//	               edges int32 neighbours, each list heaviest first
//	               edges float32 weights
//
// Nothing follows the payload.
const ArtifactVersion = 1

// ErrCorrupt is wrapped by every error Load returns for bytes that are not
// a valid table artifact (as opposed to a failing reader).
var ErrCorrupt = errors.New("covisit: corrupt table artifact")

var format = artifact.Format{
	Magic: "ADRECCOV", Version: ArtifactVersion, LengthAt: 48,
	Pkg: "covisit", Noun: "table", What: "co-visitation table", ErrCorrupt: ErrCorrupt,
}

// Save writes the table artifact to w.
func (t *Table) Save(w io.Writer) error {
	n, edges := len(t.ids), len(t.nbr)
	size := 4*(n+1) + 8*edges
	for _, id := range t.ids {
		size += binary.MaxVarintLen32 + len(id)
	}
	le := binary.LittleEndian
	payload := make([]byte, 0, size)
	for _, id := range t.ids {
		payload = binary.AppendUvarint(payload, uint64(len(id)))
		payload = append(payload, id...)
	}
	for _, o := range t.off {
		payload = le.AppendUint32(payload, uint32(o))
	}
	for _, j := range t.nbr {
		payload = le.AppendUint32(payload, uint32(j))
	}
	for _, v := range t.wt {
		payload = le.AppendUint32(payload, math.Float32bits(v))
	}

	var hdr artifact.Header
	le.PutUint32(hdr[12:], uint32(n))
	le.PutUint32(hdr[16:], uint32(t.neighbours))
	le.PutUint32(hdr[20:], uint32(t.maxDistance))
	le.PutUint32(hdr[24:], math.Float32bits(t.distanceDecay))
	le.PutUint32(hdr[28:], math.Float32bits(t.recencyDecay))
	le.PutUint64(hdr[32:], uint64(t.window))
	le.PutUint64(hdr[40:], uint64(edges))
	return format.Write(w, &hdr, payload)
}

// WriteFile saves the table to path atomically: it writes a temporary file
// in the same directory, syncs it and renames it over path.
func (t *Table) WriteFile(path string) error {
	return format.WriteFile(path, t.Save)
}

// ReadFile loads the table artifact at path.
func ReadFile(path string) (*Table, error) {
	return artifact.ReadFile(&format, path, Load)
}

// Load reads a table artifact written by Save, and reads r to its end: a
// wrong magic or version, a checksum mismatch, a truncated or overlong
// file, or contents that break the table's invariants (ids unsorted or
// repeated, a neighbour out of range or the item itself, a weight not
// finite and positive, a list out of order or longer than the table's
// neighbours) are refused with an error wrapping ErrCorrupt.
func Load(r io.Reader) (*Table, error) {
	hdr, err := format.ReadHeader(r)
	if err != nil {
		return nil, err
	}
	le := binary.LittleEndian
	n, keep, maxDist := le.Uint32(hdr[12:]), le.Uint32(hdr[16:]), le.Uint32(hdr[20:])
	distDecay, recDecay := math.Float32frombits(le.Uint32(hdr[24:])), math.Float32frombits(le.Uint32(hdr[28:]))
	window, edges := int64(le.Uint64(hdr[32:])), le.Uint64(hdr[40:])
	switch {
	case le.Uint32(hdr[56:]) != 0:
		return nil, format.Corrupt("reserved header field is not zero")
	case n > MaxItems || edges > MaxEdges:
		return nil, format.Corrupt("%d items with %d neighbours", n, edges)
	case keep < 1 || keep > MaxNeighbours || maxDist < 1 || maxDist > MaxDistance || window <= 0:
		return nil, format.Corrupt("neighbours %d, max distance %d, window %d ns", keep, maxDist, window)
	case !(distDecay > 0 && distDecay <= 1) || !(recDecay > 0 && recDecay <= 1):
		return nil, format.Corrupt("distance decay %v, recency decay %v", distDecay, recDecay)
	case edges > uint64(n)*uint64(keep):
		return nil, format.Corrupt("%d neighbours for %d items of at most %d", edges, n, keep)
	}
	payload, err := format.ReadPayload(r, &hdr)
	if err != nil {
		return nil, err
	}
	t := &Table{
		window: time.Duration(window), maxDistance: int(maxDist), distanceDecay: distDecay,
		neighbours: int(keep), recencyDecay: recDecay,
	}
	if err := t.decode(payload, int(n), int(edges)); err != nil {
		return nil, format.Corrupt("%v", err)
	}
	t.init()
	return t, nil
}

// decode fills the id table and lists from a checksummed payload, checking
// every invariant Recommend and the id lookup rely on.
func (t *Table) decode(p []byte, n, edges int) error {
	// Every id takes at least two bytes: checking first bounds what the
	// claimed count can make this allocate.
	if len(p) < 2*n+4*(n+1)+8*edges {
		return fmt.Errorf("%d payload bytes, too few for %d items and %d neighbours", len(p), n, edges)
	}
	t.ids = make([]string, n)
	for i := range t.ids {
		l, k := binary.Uvarint(p)
		if k <= 0 || l < 1 || l > MaxIDLen || l > uint64(len(p)-k) {
			return fmt.Errorf("id of item %d runs past the payload or is not 1..%d bytes", i, MaxIDLen)
		}
		t.ids[i] = string(p[k : k+int(l)])
		p = p[k+int(l):]
		if i > 0 && t.ids[i] <= t.ids[i-1] {
			return fmt.Errorf("item %d id %q does not follow %q: ids must ascend", i, t.ids[i], t.ids[i-1])
		}
	}
	if want := 4*(n+1) + 8*edges; len(p) != want {
		return fmt.Errorf("%d bytes after the ids, want %d for %d items and %d neighbours", len(p), want, n, edges)
	}
	le := binary.LittleEndian
	t.off = make([]int32, n+1)
	for i := range t.off {
		o := le.Uint32(p[4*i:])
		switch {
		case i == 0 && o != 0, i == n && o != uint32(edges):
			return fmt.Errorf("list offsets run %d..%d, want 0..%d", le.Uint32(p), le.Uint32(p[4*n:]), edges)
		case i > 0 && (o < uint32(t.off[i-1]) || o-uint32(t.off[i-1]) > uint32(t.neighbours)):
			return fmt.Errorf("item %d has %d neighbours, want 0..%d", i-1, int64(o)-int64(t.off[i-1]), t.neighbours)
		}
		t.off[i] = int32(o)
	}
	p = p[4*(n+1):]
	t.nbr = make([]int32, edges)
	t.wt = make([]float32, edges)
	for e := range t.nbr {
		t.nbr[e] = int32(le.Uint32(p[4*e:]))
		t.wt[e] = math.Float32frombits(le.Uint32(p[4*(edges+e):]))
	}
	for i := range int32(n) {
		for e := t.off[i]; e < t.off[i+1]; e++ {
			j, v := t.nbr[e], t.wt[e]
			switch {
			case j < 0 || j >= int32(n) || j == i:
				return fmt.Errorf("item %d has neighbour %d of %d items", i, j, n)
			case !(v > 0) || math.IsInf(float64(v), 0):
				return fmt.Errorf("item %d neighbour %d has weight %v", i, j, v)
			case e > t.off[i] && !(topk.Hit{ID: t.nbr[e-1], Score: t.wt[e-1]}).Above(topk.Hit{ID: j, Score: v}):
				// In order, a list cannot repeat a neighbour.
				return fmt.Errorf("item %d neighbours %d and %d are out of order", i, t.nbr[e-1], j)
			}
		}
	}
	return nil
}
