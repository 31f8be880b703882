package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"iter"

	"github.com/parquet-go/parquet-go"

	"github.com/adaptrec/adaptrec/internal/objstore"
)

// Snapshot is an opened snapshot: its checked manifest and the means to
// stream its rows.
type Snapshot struct {
	st Store
	m  Manifest
}

// Open reads and checks a snapshot's manifest. A missing manifest is
// ErrNotFound, one that cannot be trusted ErrCorrupt.
func Open(ctx context.Context, st Store, group, version string) (*Snapshot, error) {
	m, err := ReadManifest(ctx, st, group, version)
	if err != nil {
		return nil, err
	}
	return &Snapshot{st: st, m: m}, nil
}

// OpenCurrent opens the snapshot the group's pointer names.
func OpenCurrent(ctx context.Context, st Store, group string) (*Snapshot, error) {
	p, err := Current(ctx, st, group)
	if err != nil {
		return nil, err
	}
	return Open(ctx, st, group, p.Version)
}

// Manifest returns the snapshot's manifest.
func (s *Snapshot) Manifest() Manifest { return s.m }

// Rows streams the snapshot's rows in entity id order, one data file in
// memory at a time. Each file is checked against the manifest (size,
// SHA-256, row count, width) before its rows are yielded; a mismatch is
// yielded as ErrCorrupt and ends the sequence. Yielded rows belong to the
// caller.
func (s *Snapshot) Rows(ctx context.Context) iter.Seq2[Row, error] {
	return func(yield func(Row, error) bool) {
		for _, f := range s.m.Files {
			stop := false
			err := s.readFile(ctx, f, func(r Row) bool {
				if !yield(r, nil) {
					stop = true
				}
				return !stop
			})
			if err != nil {
				yield(Row{}, err)
				return
			}
			if stop {
				return
			}
		}
	}
}

// ReadAll returns every row of the snapshot.
func (s *Snapshot) ReadAll(ctx context.Context) ([]Row, error) {
	rows := make([]Row, 0, s.m.Rows)
	for r, err := range s.Rows(ctx) {
		if err != nil {
			return nil, err
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// Read opens a snapshot and returns its manifest and rows.
func Read(ctx context.Context, st Store, group, version string) (Manifest, []Row, error) {
	s, err := Open(ctx, st, group, version)
	if err != nil {
		return Manifest{}, nil, err
	}
	rows, err := s.ReadAll(ctx)
	return s.m, rows, err
}

func (s *Snapshot) readFile(ctx context.Context, f File, fn func(Row) bool) error {
	m := &s.m
	key := VersionPrefix(m.Group, m.Version) + f.Name
	b, _, err := s.st.Get(ctx, key)
	if err != nil {
		if errors.Is(err, objstore.ErrNotFound) {
			return fmt.Errorf("%w: %s is listed in the manifest but missing", ErrCorrupt, key)
		}
		return fmt.Errorf("read %s: %w", key, err)
	}
	sum := sha256.Sum256(b)
	if int64(len(b)) != f.Bytes || hex.EncodeToString(sum[:]) != f.SHA256 {
		return fmt.Errorf("%w: %s has %d bytes with SHA-256 %x, the manifest says %d bytes with %s",
			ErrCorrupt, key, len(b), sum, f.Bytes, f.SHA256)
	}
	r := parquet.NewGenericReader[fileRow](bytes.NewReader(b))
	defer r.Close()
	if r.NumRows() != f.Rows {
		return fmt.Errorf("%w: %s holds %d rows, the manifest says %d", ErrCorrupt, key, r.NumRows(), f.Rows)
	}
	buf := make([]fileRow, 512)
	for {
		// Fresh slices for every row: rows belong to the caller.
		clear(buf)
		n, err := r.Read(buf)
		for i := range n {
			row, cerr := fromFileRow(&buf[i], m)
			if cerr != nil {
				return fmt.Errorf("%w: %s: %v", ErrCorrupt, key, cerr)
			}
			if !fn(row) {
				return nil
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: decode %s: %v", ErrCorrupt, key, err)
		}
	}
}

func fromFileRow(fr *fileRow, m *Manifest) (Row, error) {
	if len(fr.Values) != m.Width {
		return Row{}, fmt.Errorf("entity %q has %d values, the manifest's width is %d", fr.EntityID, len(fr.Values), m.Width)
	}
	r := Row{EntityID: fr.EntityID, Values: fr.Values}
	if len(fr.Maps) > 0 {
		r.Maps = make([]map[string]float64, len(m.MapFeatures))
		for _, e := range fr.Maps {
			if e.Feature < 0 || int(e.Feature) >= len(m.MapFeatures) {
				return Row{}, fmt.Errorf("entity %q has an entry of map feature %d of %d", fr.EntityID, e.Feature, len(m.MapFeatures))
			}
			if r.Maps[e.Feature] == nil {
				r.Maps[e.Feature] = make(map[string]float64)
			}
			r.Maps[e.Feature][e.Key] = e.Value
		}
	}
	return r, nil
}
