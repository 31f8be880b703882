// Package artifact frames adaptrec's binary model artifacts (the IVF
// index of trainer/retrieval, the HNSW index of serving/ann, the
// co-visitation table of serving/covisit): a fixed 64-byte header, then a
// payload, with one CRC-32C over both.
//
// Every format shares the frame, little-endian throughout:
//
//	offset size  field
//	0      8     magic, naming the format
//	8      4     format version
//	12     48    the format's own fields, among them the payload length
//	             (uint64, at Format.LengthAt)
//	60     4     CRC-32C (Castagnoli) of bytes 0..59 and the payload
//	64           payload; nothing follows it
//
// The frame lives in one place so that every artifact refuses the same
// damage the same way: a short header, a wrong magic or version, a length
// past what any machine here could hold, a truncated payload, trailing
// bytes and a checksum mismatch are all errors wrapping the format's
// corruption sentinel, while a failing reader is not. Reading never
// allocates what the header claims before the bytes are there, so a corrupt
// length on a short file costs no more memory than the file.
package artifact

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// HeaderSize is the length of every artifact header.
const HeaderSize = 64

// crcAt is where the checksum sits: the header's last four bytes.
const crcAt = HeaderSize - 4

// DefaultMaxPayload bounds a payload when Format.MaxPayload is zero: a
// header claiming more than 64 GiB is corrupt on any machine this runs on.
const DefaultMaxPayload = 1 << 36

// Header is an artifact header. The format's own fields are read and
// written with encoding/binary.LittleEndian on its bytes.
type Header [HeaderSize]byte

// Format describes one artifact format's frame.
type Format struct {
	// Magic is the format's 8-byte magic.
	Magic string
	// Version is the only format version this build reads and writes.
	Version uint32
	// LengthAt is the header offset of the uint64 payload length; it lies
	// in 12..52, among the format's own fields.
	LengthAt int
	// MaxPayload bounds the payload length Read accepts;
	// 0 means DefaultMaxPayload.
	MaxPayload uint64
	// Pkg and Noun name the artifact in error messages: "<Pkg>: read
	// <Noun>: ...", and a wrong magic is "not an adaptrec <What>".
	Pkg, Noun, What string
	// ErrCorrupt is wrapped by every error about bytes that are not a
	// valid artifact of the format, as opposed to a failing reader or
	// writer.
	ErrCorrupt error
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Checksum is the CRC-32C of a header's first 60 bytes and a payload: the
// value a sealed header holds in its last four bytes.
func Checksum(header, payload []byte) uint32 {
	return crc32.Update(crc32.Checksum(header[:crcAt], castagnoli), castagnoli, payload)
}

// Corrupt returns an error wrapping f.ErrCorrupt with the message.
func (f *Format) Corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", f.ErrCorrupt, fmt.Sprintf(format, args...))
}

// Seal writes the magic, the version and the payload length into h, then
// the checksum of h and payload. The format's own fields must be in h
// already: the checksum covers them.
func (f *Format) Seal(h *Header, payload []byte) {
	le := binary.LittleEndian
	copy(h[0:8], f.Magic)
	le.PutUint32(h[8:], f.Version)
	le.PutUint64(h[f.LengthAt:], uint64(len(payload)))
	le.PutUint32(h[crcAt:], Checksum(h[:], payload))
}

// Write seals h over payload and writes both to w.
func (f *Format) Write(w io.Writer, h *Header, payload []byte) error {
	f.Seal(h, payload)
	if _, err := w.Write(h[:]); err != nil {
		return fmt.Errorf("%s: write %s: %w", f.Pkg, f.Noun, err)
	}
	if _, err := w.Write(payload); err != nil {
		return fmt.Errorf("%s: write %s: %w", f.Pkg, f.Noun, err)
	}
	return nil
}

// ReadHeader reads a header from r and checks its magic and version. The
// caller checks its own fields next, before ReadPayload, so that a header
// that cannot describe a valid artifact is refused before any payload is
// read.
func (f *Format) ReadHeader(r io.Reader) (Header, error) {
	var h Header
	if n, err := io.ReadFull(r, h[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return h, f.Corrupt("%d bytes, shorter than the %d-byte header", n, HeaderSize)
		}
		return h, fmt.Errorf("%s: read %s: %w", f.Pkg, f.Noun, err)
	}
	if string(h[0:8]) != f.Magic {
		return h, f.Corrupt("magic %q, want %q: not an adaptrec %s", h[0:8], f.Magic, f.What)
	}
	if v := binary.LittleEndian.Uint32(h[8:]); v != f.Version {
		return h, f.Corrupt("format version %d, this build reads version %d", v, f.Version)
	}
	return h, nil
}

// ReadPayload reads the payload h announces from r, then reads r to its
// end: a length past MaxPayload, a truncated payload, bytes after it and a
// checksum that does not match are corrupt.
func (f *Format) ReadPayload(r io.Reader, h *Header) ([]byte, error) {
	n := binary.LittleEndian.Uint64(h[f.LengthAt:])
	limit := f.MaxPayload
	if limit == 0 {
		limit = DefaultMaxPayload
	}
	if n > limit {
		return nil, f.Corrupt("payload of %d bytes", n)
	}
	// Read through a limit instead of allocating the claimed length.
	payload, err := io.ReadAll(io.LimitReader(r, int64(n)))
	if err != nil {
		return nil, fmt.Errorf("%s: read %s: %w", f.Pkg, f.Noun, err)
	}
	if uint64(len(payload)) != n {
		return nil, f.Corrupt("truncated: payload has %d of %d bytes", len(payload), n)
	}
	var one [1]byte
	if k, _ := io.ReadFull(r, one[:]); k != 0 {
		return nil, f.Corrupt("bytes follow the %d-byte payload", n)
	}
	if got, want := Checksum(h[:], payload), binary.LittleEndian.Uint32(h[crcAt:]); got != want {
		return nil, f.Corrupt("checksum %08x, header says %08x", got, want)
	}
	return payload, nil
}

// WriteFile writes an artifact to path atomically: save writes it into a
// temporary file in the same directory, which is synced and renamed over
// path, so a reader never sees half an artifact and a failed write leaves
// the old one in place.
func (f *Format) WriteFile(path string, save func(io.Writer) error) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("%s: write %s: %w", f.Pkg, f.Noun, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bw := bufio.NewWriterSize(tmp, 1<<20)
	if err = save(bw); err != nil {
		return err
	}
	if err = bw.Flush(); err != nil {
		return fmt.Errorf("%s: write %s %s: %w", f.Pkg, f.Noun, path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("%s: write %s %s: %w", f.Pkg, f.Noun, path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("%s: write %s %s: %w", f.Pkg, f.Noun, path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("%s: write %s: %w", f.Pkg, f.Noun, err)
	}
	return nil
}

// ReadFile opens path and loads the artifact in it with load, naming the
// path in load's errors.
func ReadFile[T any](f *Format, path string, load func(io.Reader) (T, error)) (T, error) {
	var zero T
	file, err := os.Open(path)
	if err != nil {
		return zero, fmt.Errorf("%s: read %s: %w", f.Pkg, f.Noun, err)
	}
	defer file.Close()
	x, err := load(bufio.NewReaderSize(file, 1<<20))
	if err != nil {
		return zero, fmt.Errorf("%s: %w", path, err)
	}
	return x, nil
}
