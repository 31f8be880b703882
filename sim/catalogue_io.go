package sim

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"math"
	"time"
)

// The catalogue file format (version 1), all integers unsigned varints
// unless noted, strings as a length then UTF-8 bytes, floats as little-endian
// IEEE-754 float32:
//
//	magic "ADAPTREC-CATALOGUE\n", version
//	dim, creators, category count, then per category: name, peak hour,
//	  centroid present (0/1), centroid (dim floats)
//	item count, then per item: id, title, category count, categories,
//	  creator+1, flags (1 flagged, 2 promoted, 4 published known, 8 latent
//	  present), published unix seconds (zig-zag varint, when known),
//	  quality, duration, price, latent (dim floats, when present)
//	CRC-32 (IEEE) of everything before it, 4 bytes little-endian
//
// Encoding is deterministic: the same catalogue gives the same bytes.
const (
	catalogueMagic   = "ADAPTREC-CATALOGUE\n"
	catalogueVersion = 1
	maxFileItems     = 10_000_000
	maxFileString    = 1 << 16
)

const (
	flagFlagged = 1 << iota
	flagPromoted
	flagPublished
	flagLatent
)

// ErrCorruptCatalogue marks catalogue input that cannot be decoded.
var ErrCorruptCatalogue = errors.New("corrupt catalogue")

type catWriter struct {
	w   *bufio.Writer
	n   int64
	err error
	buf [binary.MaxVarintLen64]byte
	crc hash.Hash32
}

func (cw *catWriter) bytes(b []byte) {
	if cw.err != nil {
		return
	}
	cw.crc.Write(b)
	n, err := cw.w.Write(b)
	cw.n += int64(n)
	cw.err = err
}

func (cw *catWriter) uvarint(v uint64) { cw.bytes(binary.AppendUvarint(cw.buf[:0], v)) }
func (cw *catWriter) varint(v int64)   { cw.bytes(binary.AppendVarint(cw.buf[:0], v)) }
func (cw *catWriter) str(s string) {
	cw.uvarint(uint64(len(s)))
	cw.bytes([]byte(s))
}
func (cw *catWriter) f32(f float32) {
	cw.bytes(binary.LittleEndian.AppendUint32(cw.buf[:0], math.Float32bits(f)))
}

// WriteTo writes the catalogue in adaptrec's compact binary format (see
// ReadCatalogue). It implements io.WriterTo.
func (c *Catalogue) WriteTo(w io.Writer) (int64, error) {
	cw := &catWriter{w: bufio.NewWriterSize(w, 64<<10), crc: crc32.NewIEEE()}
	cw.bytes([]byte(catalogueMagic))
	cw.uvarint(catalogueVersion)
	cw.uvarint(uint64(c.Dim))
	cw.uvarint(uint64(c.Creators))
	cw.uvarint(uint64(len(c.Categories)))
	for _, cat := range c.Categories {
		cw.str(cat.Name)
		cw.f32(cat.PeakHour)
		if cat.Centroid == nil {
			cw.uvarint(0)
			continue
		}
		cw.uvarint(1)
		for _, x := range cat.Centroid {
			cw.f32(x)
		}
	}
	cw.uvarint(uint64(len(c.Items)))
	for i := range c.Items {
		it := &c.Items[i]
		cw.str(it.ID)
		cw.str(it.Title)
		cw.uvarint(uint64(len(it.Categories)))
		for _, cat := range it.Categories {
			cw.uvarint(uint64(cat))
		}
		cw.uvarint(uint64(it.Creator + 1))
		var flags uint64
		if it.Flagged {
			flags |= flagFlagged
		}
		if it.Promoted {
			flags |= flagPromoted
		}
		if !it.Published.IsZero() {
			flags |= flagPublished
		}
		if it.Latent != nil {
			flags |= flagLatent
		}
		cw.uvarint(flags)
		if !it.Published.IsZero() {
			cw.varint(it.Published.Unix())
		}
		cw.f32(it.Quality)
		cw.f32(it.Duration)
		cw.f32(it.Price)
		for _, x := range it.Latent {
			cw.f32(x)
		}
	}
	if cw.err == nil {
		sum := cw.crc.Sum32()
		var tail [4]byte
		binary.LittleEndian.PutUint32(tail[:], sum)
		var n int
		n, cw.err = cw.w.Write(tail[:])
		cw.n += int64(n)
	}
	if cw.err == nil {
		cw.err = cw.w.Flush()
	}
	if cw.err != nil {
		return cw.n, fmt.Errorf("write catalogue: %w", cw.err)
	}
	return cw.n, nil
}

type catReader struct {
	r    *bufio.Reader
	sum  uint32 // running CRC-32 of what was read
	one  [1]byte
	err  error
	what string // the field being read, for error messages
	tmp  []byte
}

func (cr *catReader) fail(format string, args ...any) {
	if cr.err == nil {
		cr.err = fmt.Errorf("%w: %s: %s", ErrCorruptCatalogue, cr.what, fmt.Sprintf(format, args...))
	}
}

func (cr *catReader) ReadByte() (byte, error) {
	b, err := cr.r.ReadByte()
	if err == nil {
		cr.one[0] = b
		cr.sum = crc32.Update(cr.sum, crc32.IEEETable, cr.one[:])
	}
	return b, err
}

func (cr *catReader) full(n int) []byte {
	if cr.err != nil {
		return nil
	}
	if cap(cr.tmp) < n {
		cr.tmp = make([]byte, n)
	}
	b := cr.tmp[:n]
	if _, err := io.ReadFull(cr.r, b); err != nil {
		cr.fail("%v", eofUnexpected(err))
		return nil
	}
	cr.sum = crc32.Update(cr.sum, crc32.IEEETable, b)
	return b
}

func eofUnexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (cr *catReader) uvarint(limit uint64) uint64 {
	if cr.err != nil {
		return 0
	}
	v, err := binary.ReadUvarint(cr)
	if err != nil {
		cr.fail("%v", eofUnexpected(err))
		return 0
	}
	if v > limit {
		cr.fail("%d is more than %d", v, limit)
		return 0
	}
	return v
}

func (cr *catReader) varint() int64 {
	if cr.err != nil {
		return 0
	}
	v, err := binary.ReadVarint(cr)
	if err != nil {
		cr.fail("%v", eofUnexpected(err))
	}
	return v
}

func (cr *catReader) str() string {
	n := cr.uvarint(maxFileString)
	return string(cr.full(int(n)))
}

func (cr *catReader) f32() float32 {
	b := cr.full(4)
	if b == nil {
		return 0
	}
	return math.Float32frombits(binary.LittleEndian.Uint32(b))
}

// ReadCatalogue reads a catalogue written by Catalogue.WriteTo, checks its
// checksum and rebuilds its indexes. Errors wrap ErrCorruptCatalogue and name
// the field that could not be read.
func ReadCatalogue(r io.Reader) (*Catalogue, error) {
	cr := &catReader{r: bufio.NewReaderSize(r, 64<<10)}
	cr.what = "magic"
	if m := cr.full(len(catalogueMagic)); cr.err == nil && !bytes.Equal(m, []byte(catalogueMagic)) {
		cr.fail("not an adaptrec catalogue file")
	}
	cr.what = "version"
	if v := cr.uvarint(math.MaxUint32); cr.err == nil && v != catalogueVersion {
		cr.fail("version %d is not supported (want %d)", v, catalogueVersion)
	}
	c := &Catalogue{}
	cr.what = "dim"
	c.Dim = int(cr.uvarint(MaxDim))
	cr.what = "creators"
	c.Creators = int(cr.uvarint(maxFileItems))
	cr.what = "category count"
	c.Categories = make([]Category, cr.uvarint(1<<16))
	for i := range c.Categories {
		if cr.err != nil {
			break
		}
		cr.what = fmt.Sprintf("category %d", i)
		cat := &c.Categories[i]
		cat.Name = cr.str()
		cat.PeakHour = cr.f32()
		if cr.uvarint(1) == 1 {
			cat.Centroid = make([]float32, c.Dim)
			for j := range cat.Centroid {
				cat.Centroid[j] = cr.f32()
			}
		}
	}
	cr.what = "item count"
	n := int(cr.uvarint(maxFileItems))
	if cr.err != nil {
		return nil, cr.err
	}
	c.Items = make([]Item, 0, min(n, 1<<20))
	var latents []float32
	for i := 0; i < n && cr.err == nil; i++ {
		cr.what = fmt.Sprintf("item %d", i)
		var it Item
		it.ID = cr.str()
		it.Title = cr.str()
		it.Categories = make([]int32, cr.uvarint(1<<16))
		for j := range it.Categories {
			it.Categories[j] = int32(cr.uvarint(uint64(len(c.Categories) - 1)))
		}
		it.Creator = int32(cr.uvarint(uint64(c.Creators))) - 1
		flags := cr.uvarint(flagFlagged | flagPromoted | flagPublished | flagLatent)
		it.Flagged = flags&flagFlagged != 0
		it.Promoted = flags&flagPromoted != 0
		if flags&flagPublished != 0 {
			it.Published = time.Unix(cr.varint(), 0).UTC()
		}
		it.Quality = cr.f32()
		it.Duration = cr.f32()
		it.Price = cr.f32()
		if flags&flagLatent != 0 {
			if len(latents) < c.Dim {
				latents = make([]float32, 4096*c.Dim)
			}
			it.Latent, latents = latents[:c.Dim:c.Dim], latents[c.Dim:]
			for j := range it.Latent {
				it.Latent[j] = cr.f32()
			}
		}
		c.Items = append(c.Items, it)
	}
	if cr.err != nil {
		return nil, cr.err
	}
	want := cr.sum
	cr.what = "checksum"
	var tail [4]byte
	if _, err := io.ReadFull(cr.r, tail[:]); err != nil {
		cr.fail("%v", eofUnexpected(err))
		return nil, cr.err
	}
	if got := binary.LittleEndian.Uint32(tail[:]); got != want {
		cr.fail("crc32 %08x, content has %08x", got, want)
		return nil, cr.err
	}
	if err := c.index(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorruptCatalogue, err)
	}
	return c, nil
}
