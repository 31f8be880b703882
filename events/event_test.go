package events

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func click() *adaptrecv1.Event {
	return NewInteraction("e1", now.Add(-time.Minute), "test", &adaptrecv1.UserInteractionEvent{
		UserId: "u1", ItemId: "i1", Action: adaptrecv1.Action_ACTION_CLICK,
	})
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(e *adaptrecv1.Event)
		fields []string // invalid fields expected, in order; nil means valid
	}{
		{"valid", func(*adaptrecv1.Event) {}, nil},
		{"missing envelope", func(e *adaptrecv1.Event) { e.Envelope = nil }, []string{"envelope"}},
		{"empty id", func(e *adaptrecv1.Event) { e.Envelope.EventId = "" }, []string{"envelope.event_id"}},
		{"long id", func(e *adaptrecv1.Event) { e.Envelope.EventId = strings.Repeat("x", MaxEventIDLen+1) }, []string{"envelope.event_id"}},
		{"type mismatch", func(e *adaptrecv1.Event) { e.Envelope.Type = adaptrecv1.EventType_EVENT_TYPE_FEEDBACK }, []string{"envelope.type"}},
		{"future schema", func(e *adaptrecv1.Event) { e.Envelope.SchemaVersion = SchemaVersion + 1 }, []string{"envelope.schema_version"}},
		{"no time", func(e *adaptrecv1.Event) { e.Envelope.EventTime = nil }, []string{"envelope.event_time"}},
		{"seconds as ms", func(e *adaptrecv1.Event) { e.Envelope.EventTime = timestamppb.New(time.UnixMilli(now.Unix())) }, []string{"envelope.event_time"}},
		{"far future", func(e *adaptrecv1.Event) { e.Envelope.EventTime = timestamppb.New(now.Add(48 * time.Hour)) }, []string{"envelope.event_time"}},
		{"no payload", func(e *adaptrecv1.Event) { e.Payload = nil; e.Envelope.Type = 0 }, []string{"payload"}},
		{"no user and item", func(e *adaptrecv1.Event) { e.GetInteraction().UserId, e.GetInteraction().ItemId = "", "" },
			[]string{"interaction.user_id", "interaction.item_id"}},
		{"unknown action", func(e *adaptrecv1.Event) { e.GetInteraction().Action = 999 }, []string{"interaction.action"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := click()
			tt.mutate(e)
			err := Validate(e, now)
			if tt.fields == nil {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			var verr *ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("Validate = %v, want *ValidationError", err)
			}
			var got []string
			for _, f := range verr.Fields {
				got = append(got, f.Field)
			}
			if strings.Join(got, ",") != strings.Join(tt.fields, ",") {
				t.Fatalf("invalid fields = %v, want %v (%v)", got, tt.fields, err)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	good, err := proto.Marshal(click())
	if err != nil {
		t.Fatal(err)
	}
	noID := click()
	noID.Envelope.EventId = ""
	noIDBytes, _ := proto.Marshal(noID)
	tests := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{"valid", good, ""},
		{"garbage", []byte{0xff, 0xff, 0xff, 0x01}, "not a protobuf"},
		{"empty id", noIDBytes, "envelope.event_id"},
		{"empty message", nil, "envelope: missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, err := Decode(tt.in, now)
			if tt.wantErr == "" {
				if err != nil || e.GetEnvelope().GetEventId() != "e1" {
					t.Fatalf("Decode = %v, %v", e, err)
				}
				return
			}
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Decode error = %v, want ErrMalformed mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestTopicsAndKeys(t *testing.T) {
	t.Parallel()
	evs := []*adaptrecv1.Event{
		click(),
		NewPrediction("p", now, "t", &adaptrecv1.PredictionEvent{UserId: "u2", RequestId: "r"}),
		NewFeedback("f", now, "t", &adaptrecv1.FeedbackEvent{UserId: "u3"}),
		NewModelAccuracy("a", now, "t", &adaptrecv1.ModelAccuracyEvent{ModelVersion: "v1"}),
		NewModelLifecycle("l", now, "t", &adaptrecv1.ModelLifecycleEvent{ModelName: "ranker"}),
		NewFeatureSnapshot("s", now, "t", &adaptrecv1.FeatureSnapshotEvent{FeatureView: "items"}),
	}
	wantKeys := []string{"u1", "u2", "u3", "v1", "ranker", "items"}
	seen := map[string]bool{}
	for i, e := range evs {
		m, err := Message(e)
		if err != nil {
			t.Fatalf("Message(%d): %v", i, err)
		}
		if string(m.Key) != wantKeys[i] {
			t.Errorf("event %d key = %q, want %q", i, m.Key, wantKeys[i])
		}
		if seen[m.Topic] {
			t.Errorf("topic %s used twice", m.Topic)
		}
		seen[m.Topic] = true
		if PayloadType(e) != e.GetEnvelope().GetType() {
			t.Errorf("event %d: envelope type %s != payload type %s", i, e.GetEnvelope().GetType(), PayloadType(e))
		}
	}
	if len(EventTopics()) != len(evs) {
		t.Errorf("EventTopics() = %v, want %d topics", EventTopics(), len(evs))
	}
	if _, err := TopicFor(adaptrecv1.EventType_EVENT_TYPE_UNSPECIFIED); err == nil {
		t.Error("TopicFor(UNSPECIFIED) succeeded")
	}
}

func TestNewIDUnique(t *testing.T) {
	t.Parallel()
	seen := make(map[string]bool, 100000)
	for range 100000 {
		id := NewID()
		if len(id) != 32 || seen[id] {
			t.Fatalf("NewID() = %q: duplicate or wrong length", id)
		}
		seen[id] = true
	}
}
