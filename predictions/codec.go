package predictions

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Entry is one predicted item with the score serving would have given it.
type Entry struct {
	ItemID string
	Score  float32
}

// formatV1 starts every encoded list; a reader refuses any other byte, so
// the encoding can change without a reader misreading it.
const formatV1 = 1

// maxItemIDLen bounds an item id in a list: the serving API's id limit.
const maxItemIDLen = 256

// ErrCorrupt wraps every error about stored bytes that cannot be decoded.
var ErrCorrupt = errors.New("predictions: corrupt data")

// Encode appends the compact encoding of list to dst: the format byte, the
// item count (uvarint), then per item its id's length (uvarint), the id's
// bytes and the score (float32, little endian). A list of 100 items of 8-byte
// ids takes about 1.3 KB.
func Encode(dst []byte, list []Entry) []byte {
	dst = append(dst, formatV1)
	dst = binary.AppendUvarint(dst, uint64(len(list)))
	for _, e := range list {
		dst = binary.AppendUvarint(dst, uint64(len(e.ItemID)))
		dst = append(dst, e.ItemID...)
		dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(e.Score))
	}
	return dst
}

// Decode reads a list written by Encode. Any malformed input (another format,
// a truncated or over-long value, trailing bytes) is an error wrapping
// ErrCorrupt; it never panics.
func Decode(b []byte) ([]Entry, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty value", ErrCorrupt)
	}
	if b[0] != formatV1 {
		return nil, fmt.Errorf("%w: format byte %d, want %d", ErrCorrupt, b[0], formatV1)
	}
	p := 1
	n, k := binary.Uvarint(b[p:])
	if k <= 0 {
		return nil, fmt.Errorf("%w: bad item count", ErrCorrupt)
	}
	p += k
	// Each item takes at least 5 bytes: a bound on n before allocating.
	if n > uint64(len(b)-p)/5 {
		return nil, fmt.Errorf("%w: %d items cannot fit in %d bytes", ErrCorrupt, n, len(b)-p)
	}
	out := make([]Entry, n)
	for i := range out {
		l, k := binary.Uvarint(b[p:])
		if k <= 0 || l > maxItemIDLen || uint64(len(b)-p-k) < l+4 {
			return nil, fmt.Errorf("%w: item %d of %d is truncated or its id too long", ErrCorrupt, i, n)
		}
		p += k
		out[i].ItemID = string(b[p : p+int(l)])
		p += int(l)
		out[i].Score = math.Float32frombits(binary.LittleEndian.Uint32(b[p:]))
		p += 4
	}
	if p != len(b) {
		return nil, fmt.Errorf("%w: %d bytes after %d items", ErrCorrupt, len(b)-p, n)
	}
	return out, nil
}
