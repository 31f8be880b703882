package events

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

// TestEncodeArena checks that a Publish's arena encodes every event as
// Message does (same topic, key and bytes, nil key where Message has
// none) and that reusing it for the next batch leaves those right too.
func TestEncodeArena(t *testing.T) {
	t.Parallel()
	batches := [][]*adaptrecv1.Event{
		{
			click(),
			NewPrediction("p", now, "t", &adaptrecv1.PredictionEvent{UserId: "u2", RequestId: "r", UserFeatures: []float32{1, 2, 3}}),
			NewPrediction("p-anon", now, "t", &adaptrecv1.PredictionEvent{RequestId: "r2"}), // empty key, not nil
			NewModelLifecycle("l", now, "t", &adaptrecv1.ModelLifecycleEvent{ModelName: "ranker"}),
		},
		{
			NewFeedback("f", now, "t", &adaptrecv1.FeedbackEvent{UserId: "a-much-longer-user-id-than-before"}),
			{Envelope: &adaptrecv1.EventEnvelope{EventId: "no-payload", Type: adaptrecv1.EventType_EVENT_TYPE_INTERACTION}}, // no key at all
		},
	}
	a := &encodeArena{}
	for b, evs := range batches {
		msgs, err := a.encode(evs)
		if err != nil {
			t.Fatalf("batch %d: %v", b, err)
		}
		if len(msgs) != len(evs) {
			t.Fatalf("batch %d: %d messages for %d events", b, len(msgs), len(evs))
		}
		for i, e := range evs {
			want, err := Message(e)
			if err != nil {
				t.Fatalf("batch %d event %d: %v", b, i, err)
			}
			got := msgs[i]
			if got.Topic != want.Topic || !bytes.Equal(got.Key, want.Key) || (got.Key == nil) != (want.Key == nil) {
				t.Errorf("batch %d event %d: topic %q key %q (nil %v), want %q %q (nil %v)",
					b, i, got.Topic, got.Key, got.Key == nil, want.Topic, want.Key, want.Key == nil)
			}
			var back adaptrecv1.Event
			if err := proto.Unmarshal(got.Value, &back); err != nil || !proto.Equal(&back, e) {
				t.Errorf("batch %d event %d: value decodes to %v (%v), want %v", b, i, &back, err, e)
			}
		}
		a.release()
	}

	// An event without a topic fails the batch by name.
	if _, err := a.encode([]*adaptrecv1.Event{{Envelope: &adaptrecv1.EventEnvelope{EventId: "x"}}}); err == nil {
		t.Fatal("encoding an event of no type succeeded")
	}
}
