package eventlog

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/objstore"
)

// Putter writes objects; *objstore.Store implements it.
type Putter interface {
	Put(ctx context.Context, key string, body []byte, opts objstore.PutOptions) (string, error)
}

// Writer writes events straight into the event log's layout, without Kafka:
// for imports, backfills of other systems' logs, and tests that need an
// archive. Events must arrive in event-time order across calls; offsets are
// synthetic (consecutive from 0, partition 0), so a Writer must not share a
// topic's prefix with a running archiver.
type Writer struct {
	Store Putter
	Topic string
	// MaxRows bounds the rows of one object; 100,000 when 0.
	MaxRows int

	enc    Encoder
	offset int64
	rows   []Row
	hour   time.Time
}

// Add buffers events, writing an object whenever the hour bucket changes or
// MaxRows is reached.
func (w *Writer) Add(ctx context.Context, evs ...*adaptrecv1.Event) error {
	maxRows := w.MaxRows
	if maxRows == 0 {
		maxRows = 100_000
	}
	for _, e := range evs {
		payload, err := proto.Marshal(e)
		if err != nil {
			return fmt.Errorf("encode event %s: %w", e.GetEnvelope().GetEventId(), err)
		}
		at := e.GetEnvelope().GetEventTime().AsTime()
		h := HourOf(at)
		if len(w.rows) > 0 && (!h.Equal(w.hour) || len(w.rows) >= maxRows) {
			if err := w.Flush(ctx); err != nil {
				return err
			}
		}
		w.hour = h
		w.rows = append(w.rows, NewRow(e, payload, Provenance{
			Topic: w.Topic, Offset: w.offset + int64(len(w.rows)), Time: at,
		}))
	}
	return nil
}

// Flush writes the buffered rows as one object.
func (w *Writer) Flush(ctx context.Context) error {
	if len(w.rows) == 0 {
		return nil
	}
	b, err := w.enc.Encode(w.rows)
	if err != nil {
		return err
	}
	ref := Ref{Topic: w.Topic, FirstOffset: w.offset, Hour: w.hour}
	if _, err := w.Store.Put(ctx, ref.Key(), b, objstore.PutOptions{}); err != nil {
		return fmt.Errorf("write %s: %w", ref.Key(), err)
	}
	w.offset += int64(len(w.rows))
	w.rows = w.rows[:0]
	return nil
}
