package offline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"runtime"

	"github.com/parquet-go/parquet-go"
	"golang.org/x/sync/errgroup"

	"github.com/adaptrec/adaptrec/features/snapshot"
)

// Columns is a training set read column by column: what a trainer needs,
// in flat slices instead of one Row (and its allocations) per example.
// Index i is the i-th row of the parts in manifest order, as ReadRows
// returns them.
type Columns struct {
	// EventTimes holds each example's event time in Unix milliseconds.
	EventTimes []int64
	// Labels holds each example's label (see LabelRule).
	Labels []int32
	// Values holds Len()×Width feature values, row after row, in the order
	// of Manifest.Model.Features.
	Values []float32
	Width  int
}

// Len returns the number of examples.
func (c *Columns) Len() int { return len(c.Labels) }

// Row returns example i's values (a view, not a copy).
func (c *Columns) Row(i int) []float32 { return c.Values[i*c.Width : (i+1)*c.Width] }

// ReadColumns reads the event times, labels and feature values of every
// row of a training set, decoding the parts concurrently (one per core),
// and checks each part against the manifest: its checksum, its row count,
// and that every row holds exactly Manifest.Width values.
func ReadColumns(ctx context.Context, st snapshot.Store, m Manifest) (*Columns, error) {
	if m.Width <= 0 {
		return nil, fmt.Errorf("training set %s: width %d", m.ID, m.Width)
	}
	offsets := make([]int64, len(m.Files)+1)
	for i, f := range m.Files {
		if f.Rows < 0 {
			return nil, fmt.Errorf("training set %s: part %s has %d rows", m.ID, f.Name, f.Rows)
		}
		offsets[i+1] = offsets[i] + f.Rows
	}
	n := offsets[len(m.Files)]
	c := &Columns{EventTimes: make([]int64, n), Labels: make([]int32, n), Values: make([]float32, n*int64(m.Width)), Width: m.Width}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i, f := range m.Files {
		g.Go(func() error {
			lo, hi := offsets[i], offsets[i+1]
			return readPartColumns(ctx, st, m, f, c.EventTimes[lo:hi], c.Labels[lo:hi], c.Values[lo*int64(m.Width):hi*int64(m.Width)])
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return c, nil
}

// readPartColumns decodes one part into slices sized by the manifest.
func readPartColumns(ctx context.Context, st snapshot.Store, m Manifest, f snapshot.File, times []int64, labels []int32, values []float32) error {
	key := Root + m.ID + "/" + f.Name
	b, _, err := st.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != f.SHA256 {
		return fmt.Errorf("%s does not match its manifest checksum", key)
	}
	pf, err := parquet.OpenFile(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return fmt.Errorf("decode %s: %w", key, err)
	}
	if pf.NumRows() != f.Rows {
		return fmt.Errorf("%s holds %d rows, the manifest says %d", key, pf.NumRows(), f.Rows)
	}
	timeCol, ok1 := pf.Schema().Lookup("event_time")
	labelCol, ok2 := pf.Schema().Lookup("label")
	valueCol, ok3 := pf.Schema().Lookup("features", "list", "element")
	if !ok1 || !ok2 || !ok3 {
		return fmt.Errorf("%s lacks the event_time, label or features column", key)
	}
	var nt, nl, nv int
	var rowValues int // level entries of the current row
	rows := 0
	for _, rg := range pf.RowGroups() {
		chunks := rg.ColumnChunks()
		err := eachPage(chunks[timeCol.ColumnIndex], func(p parquet.Page) error {
			d := p.Data()
			nt += copy(times[min(nt, len(times)):], d.Int64())
			return nil
		})
		if err == nil {
			err = eachPage(chunks[labelCol.ColumnIndex], func(p parquet.Page) error {
				d := p.Data()
				nl += copy(labels[min(nl, len(labels)):], d.Int32())
				return nil
			})
		}
		if err == nil {
			err = eachPage(chunks[valueCol.ColumnIndex], func(p parquet.Page) error {
				for _, rep := range p.RepetitionLevels() {
					if rep == 0 {
						if rows > 0 && rowValues != m.Width {
							return fmt.Errorf("row %d has %d values, the manifest says %d", rows-1, rowValues, m.Width)
						}
						rows++
						rowValues = 0
					}
					rowValues++
				}
				d := p.Data()
				v := d.Float()
				if nv+len(v) > len(values) {
					return fmt.Errorf("more than the %d values of %d rows of width %d", len(values), f.Rows, m.Width)
				}
				nv += copy(values[nv:], v)
				return nil
			})
		}
		if err != nil {
			return fmt.Errorf("decode %s: %w", key, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if rows > 0 && rowValues != m.Width {
		return fmt.Errorf("%s: row %d has %d values, the manifest says %d", key, rows-1, rowValues, m.Width)
	}
	if nt != len(times) || nl != len(labels) || nv != len(values) || rows != len(labels) {
		return fmt.Errorf("%s: %d event times, %d labels, %d rows and %d values for %d rows of width %d", key, nt, nl, rows, nv, f.Rows, m.Width)
	}
	return nil
}

// eachPage calls fn for every page of a column chunk.
func eachPage(cc parquet.ColumnChunk, fn func(parquet.Page) error) error {
	pages := cc.Pages()
	defer pages.Close()
	for {
		p, err := pages.ReadPage()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		err = fn(p)
		parquet.Release(p)
		if err != nil {
			return err
		}
	}
}
