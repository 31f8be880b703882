package batch_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

// archiver writes events to the event log the way the archiver lays them
// out (one object per hour bucket and batch), without Kafka.
type archiver struct {
	st     *objstore.Store
	enc    eventlog.Encoder
	offset int64
	rows   []eventlog.Row
	hour   time.Time
}

// add archives events, which must come in event-time order across calls.
func (a *archiver) add(ctx context.Context, evs []*adaptrecv1.Event) error {
	for _, e := range evs {
		payload, err := proto.Marshal(e)
		if err != nil {
			return err
		}
		h := eventlog.HourOf(e.GetEnvelope().GetEventTime().AsTime())
		if len(a.rows) > 0 && (!h.Equal(a.hour) || len(a.rows) >= 100_000) {
			if err := a.flush(ctx); err != nil {
				return err
			}
		}
		a.hour = h
		a.rows = append(a.rows, eventlog.NewRow(e, payload, eventlog.Provenance{
			Topic: events.TopicInteractions, Offset: a.offset + int64(len(a.rows)), Time: e.GetEnvelope().GetEventTime().AsTime(),
		}))
	}
	return nil
}

func (a *archiver) flush(ctx context.Context) error {
	if len(a.rows) == 0 {
		return nil
	}
	b, err := a.enc.Encode(a.rows)
	if err != nil {
		return err
	}
	ref := eventlog.Ref{Topic: events.TopicInteractions, FirstOffset: a.offset, Hour: a.hour}
	if _, err := a.st.Put(ctx, ref.Key(), b, objstore.PutOptions{}); err != nil {
		return err
	}
	a.offset += int64(len(a.rows))
	a.rows = a.rows[:0]
	return nil
}

// archive writes events (in event-time order) to st's event log.
func archive(t testing.TB, st *objstore.Store, evs ...*adaptrecv1.Event) {
	t.Helper()
	a := &archiver{st: st}
	if err := a.add(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	if err := a.flush(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// s3 starts a real S3 server for one test and returns a client for its
// bucket.
func s3(t testing.TB) *objstore.Store {
	t.Helper()
	env := testenv.New(t, testenv.S3)
	st, err := objstore.New(t.Context(), env.Config().S3)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.EnsureBucket(t.Context()); err != nil {
		t.Fatal(err)
	}
	return st
}

// interaction builds an archived interaction.
func interaction(id string, at time.Time, user, item string, a adaptrecv1.Action, pos int32, value float64, session, surface string, d adaptrecv1.Device) *adaptrecv1.Event {
	return events.NewInteraction(id, at, "test", &adaptrecv1.UserInteractionEvent{
		UserId: user, ItemId: item, Action: a, Position: pos, Value: value,
		SessionId: session, Surface: surface, Device: d,
	})
}
