package offline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/adaptrec/adaptrec/features/snapshot"
	"github.com/adaptrec/adaptrec/internal/objstore"
)

// Row is one example as stored in a training set's Parquet parts.
type Row struct {
	EventID   string    `parquet:"event_id"`
	EventTime time.Time `parquet:"event_time,timestamp(millisecond)"`
	UserID    string    `parquet:"user_id"`
	ItemID    string    `parquet:"item_id"`
	RequestID string    `parquet:"request_id"`
	Position  int32     `parquet:"position"`
	// Label is 1 when the impression was clicked (see LabelRule); Watched
	// and Purchased mark a watch or purchase in the same window.
	Label     int32 `parquet:"label"`
	Watched   int32 `parquet:"watched"`
	Purchased int32 `parquet:"purchased"`
	// Features holds Manifest.Width values in the order of
	// Manifest.Model.Features.
	Features []float32 `parquet:"features,list"`
}

// writer encodes examples into Parquet parts and uploads each when full.
type writer struct {
	st      Store
	id      string
	width   int
	perFile int
	buf     bytes.Buffer
	w       *parquet.GenericWriter[Row]
	batch   []Row
	inPart  int64
	files   []snapshot.File

	rows, positives, watched, purchased int64
}

func newWriter(st Store, id string, width, perFile int) *writer {
	w := &writer{st: st, id: id, width: width, perFile: perFile, batch: make([]Row, 0, 512)}
	w.w = parquet.NewGenericWriter[Row](&w.buf,
		parquet.Compression(&parquet.Zstd),
		parquet.MaxRowsPerRowGroup(32768),
		parquet.CreatedBy("adaptrec", "features/offline", "v1"),
	)
	return w
}

func b2i(b bool) int32 {
	if b {
		return 1
	}
	return 0
}

// add appends an example; its values are copied.
func (w *writer) add(ctx context.Context, e *example) error {
	r := Row{
		EventID: e.eventID, EventTime: e.eventTime, UserID: e.user, ItemID: e.item, RequestID: e.req,
		Position: e.position, Label: b2i(e.label), Watched: b2i(e.watched), Purchased: b2i(e.purchased),
	}
	// The batch owns copies: e.values is recycled for the next example.
	if n := len(w.batch); n < cap(w.batch) && cap(w.batch[:n+1][n].Features) >= w.width {
		r.Features = append(w.batch[:n+1][n].Features[:0], e.values...)
	} else {
		r.Features = append(make([]float32, 0, w.width), e.values...)
	}
	w.batch = append(w.batch, r)
	w.rows++
	w.positives += int64(r.Label)
	w.watched += int64(r.Watched)
	w.purchased += int64(r.Purchased)
	w.inPart++
	if len(w.batch) == cap(w.batch) {
		if err := w.writeBatch(); err != nil {
			return err
		}
	}
	if w.inPart >= int64(w.perFile) {
		return w.closePart(ctx)
	}
	return nil
}

func (w *writer) writeBatch() error {
	if len(w.batch) == 0 {
		return nil
	}
	if _, err := w.w.Write(w.batch); err != nil {
		return fmt.Errorf("encode training rows: %w", err)
	}
	w.batch = w.batch[:0]
	return nil
}

func (w *writer) closePart(ctx context.Context) error {
	if err := w.writeBatch(); err != nil {
		return err
	}
	if err := w.w.Close(); err != nil {
		return fmt.Errorf("encode training rows: %w", err)
	}
	name := fmt.Sprintf("part-%05d.parquet", len(w.files))
	sum := sha256.Sum256(w.buf.Bytes())
	if _, err := w.st.Put(ctx, Root+w.id+"/"+name, w.buf.Bytes(), objstore.PutOptions{ContentType: "application/vnd.apache.parquet"}); err != nil {
		return fmt.Errorf("write training set %s: %w", w.id, err)
	}
	w.files = append(w.files, snapshot.File{Name: name, Rows: w.inPart, Bytes: int64(w.buf.Len()), SHA256: hex.EncodeToString(sum[:])})
	w.buf.Reset()
	w.w.Reset(&w.buf)
	w.inPart = 0
	return nil
}

// finish uploads the last part (an empty one when there were no rows).
func (w *writer) finish(ctx context.Context) error {
	if w.inPart > 0 || len(w.files) == 0 {
		return w.closePart(ctx)
	}
	return nil
}

func writeManifest(ctx context.Context, st Store, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode training set manifest: %w", err)
	}
	if _, err := st.Put(ctx, ManifestKey(m.ID), b, objstore.PutOptions{IfNoneMatch: "*", ContentType: "application/json"}); err != nil {
		return fmt.Errorf("write manifest of training set %s (ids must be new): %w", m.ID, err)
	}
	return nil
}

func decodeManifest(b []byte, id string) (Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Manifest{}, fmt.Errorf("training set %s: unreadable manifest: %w", id, err)
	}
	if m.ID != id || m.Format != 1 || m.Width <= 0 {
		return Manifest{}, fmt.Errorf("training set %s: manifest describes %q (format %d)", id, m.ID, m.Format)
	}
	return m, nil
}

// ReadRows reads every row of a training set, checking each part against
// the manifest.
func ReadRows(ctx context.Context, st snapshot.Store, m Manifest) ([]Row, error) {
	var out []Row
	for _, f := range m.Files {
		key := Root + m.ID + "/" + f.Name
		b, _, err := st.Get(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", key, err)
		}
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != f.SHA256 {
			return nil, fmt.Errorf("%s does not match its manifest checksum", key)
		}
		rows, err := parquet.Read[Row](bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", key, err)
		}
		for i := range rows {
			if len(rows[i].Features) != m.Width {
				return nil, fmt.Errorf("%s: row %d has %d values, the manifest says %d", key, i, len(rows[i].Features), m.Width)
			}
		}
		out = append(out, rows...)
	}
	return out, nil
}
