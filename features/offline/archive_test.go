package offline_test

import (
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

// archive writes events (in event-time order) to st's event log.
func archive(t testing.TB, st *objstore.Store, evs ...*adaptrecv1.Event) {
	t.Helper()
	w := &eventlog.Writer{Store: st, Topic: events.TopicInteractions}
	if err := w.Add(t.Context(), evs...); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// s3 starts a real S3 server for one test and returns a client for its
// bucket.
func s3(t testing.TB) *objstore.Store {
	t.Helper()
	env := testenv.New(t, testenv.S3)
	return testenv.Bucket(t, env.Config())
}

// interaction builds an archived interaction.
func interaction(id string, at time.Time, user, item string, a adaptrecv1.Action, pos int32, value float64, session, surface string, d adaptrecv1.Device) *adaptrecv1.Event {
	return events.NewInteraction(id, at, "test", &adaptrecv1.UserInteractionEvent{
		UserId: user, ItemId: item, Action: a, Position: pos, Value: value,
		SessionId: session, Surface: surface, Device: d,
	})
}
