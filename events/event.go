package events

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

// MaxEventIDLen bounds event ids so a bad producer cannot bloat every index
// that dedupes on them.
const MaxEventIDLen = 128

var (
	idPrefix [6]byte
	idSeq    atomic.Uint64
)

func init() {
	if _, err := rand.Read(idPrefix[:]); err != nil {
		panic(fmt.Sprintf("events: read random id prefix: %v", err))
	}
}

// NewID returns a unique event id: 48 bits of milliseconds (so ids sort
// roughly by creation time), 48 random bits fixed per process and a 32-bit
// per-process sequence, hex encoded (32 characters).
func NewID() string {
	var b [16]byte
	ms := uint64(time.Now().UnixMilli())
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	copy(b[6:12], idPrefix[:])
	binary.BigEndian.PutUint32(b[12:], uint32(idSeq.Add(1)))
	return hex.EncodeToString(b[:])
}

func envelope(id string, t adaptrecv1.EventType, at time.Time, producer string) *adaptrecv1.EventEnvelope {
	return &adaptrecv1.EventEnvelope{
		EventId:       id,
		Type:          t,
		SchemaVersion: SchemaVersion,
		EventTime:     timestamppb.New(at),
		Producer:      producer,
	}
}

// NewInteraction wraps an interaction in an event.
func NewInteraction(id string, at time.Time, producer string, in *adaptrecv1.UserInteractionEvent) *adaptrecv1.Event {
	return &adaptrecv1.Event{
		Envelope: envelope(id, adaptrecv1.EventType_EVENT_TYPE_INTERACTION, at, producer),
		Payload:  &adaptrecv1.Event_Interaction{Interaction: in},
	}
}

// NewPrediction wraps a prediction record in an event.
func NewPrediction(id string, at time.Time, producer string, p *adaptrecv1.PredictionEvent) *adaptrecv1.Event {
	return &adaptrecv1.Event{
		Envelope: envelope(id, adaptrecv1.EventType_EVENT_TYPE_PREDICTION, at, producer),
		Payload:  &adaptrecv1.Event_Prediction{Prediction: p},
	}
}

// NewFeedback wraps explicit feedback in an event.
func NewFeedback(id string, at time.Time, producer string, f *adaptrecv1.FeedbackEvent) *adaptrecv1.Event {
	return &adaptrecv1.Event{
		Envelope: envelope(id, adaptrecv1.EventType_EVENT_TYPE_FEEDBACK, at, producer),
		Payload:  &adaptrecv1.Event_Feedback{Feedback: f},
	}
}

// NewModelAccuracy wraps an online accuracy record in an event.
func NewModelAccuracy(id string, at time.Time, producer string, m *adaptrecv1.ModelAccuracyEvent) *adaptrecv1.Event {
	return &adaptrecv1.Event{
		Envelope: envelope(id, adaptrecv1.EventType_EVENT_TYPE_MODEL_ACCURACY, at, producer),
		Payload:  &adaptrecv1.Event_ModelAccuracy{ModelAccuracy: m},
	}
}

// NewModelLifecycle wraps a registry change in an event.
func NewModelLifecycle(id string, at time.Time, producer string, m *adaptrecv1.ModelLifecycleEvent) *adaptrecv1.Event {
	return &adaptrecv1.Event{
		Envelope: envelope(id, adaptrecv1.EventType_EVENT_TYPE_MODEL_LIFECYCLE, at, producer),
		Payload:  &adaptrecv1.Event_ModelLifecycle{ModelLifecycle: m},
	}
}

// NewFeatureSnapshot wraps a feature snapshot announcement in an event.
func NewFeatureSnapshot(id string, at time.Time, producer string, f *adaptrecv1.FeatureSnapshotEvent) *adaptrecv1.Event {
	return &adaptrecv1.Event{
		Envelope: envelope(id, adaptrecv1.EventType_EVENT_TYPE_FEATURE_SNAPSHOT, at, producer),
		Payload:  &adaptrecv1.Event_FeatureSnapshot{FeatureSnapshot: f},
	}
}

// PayloadType returns the event type implied by the payload case.
func PayloadType(e *adaptrecv1.Event) adaptrecv1.EventType {
	switch e.GetPayload().(type) {
	case *adaptrecv1.Event_Interaction:
		return adaptrecv1.EventType_EVENT_TYPE_INTERACTION
	case *adaptrecv1.Event_Prediction:
		return adaptrecv1.EventType_EVENT_TYPE_PREDICTION
	case *adaptrecv1.Event_Feedback:
		return adaptrecv1.EventType_EVENT_TYPE_FEEDBACK
	case *adaptrecv1.Event_ModelAccuracy:
		return adaptrecv1.EventType_EVENT_TYPE_MODEL_ACCURACY
	case *adaptrecv1.Event_ModelLifecycle:
		return adaptrecv1.EventType_EVENT_TYPE_MODEL_LIFECYCLE
	case *adaptrecv1.Event_FeatureSnapshot:
		return adaptrecv1.EventType_EVENT_TYPE_FEATURE_SNAPSHOT
	}
	return adaptrecv1.EventType_EVENT_TYPE_UNSPECIFIED
}

// Earliest and latest event times accepted; outside them a clock or unit bug
// (seconds given as milliseconds, a zero time) is far more likely than a real
// event.
var (
	minEventTime  = time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)
	maxFutureSkew = 24 * time.Hour
)

// FieldError is one invalid field of an event; Field is a path such as
// "envelope.event_id" or "interaction.user_id".
type FieldError struct {
	Field  string
	Reason string
}

func (e FieldError) Error() string { return e.Field + ": " + e.Reason }

// ValidationError lists every invalid field of an event.
type ValidationError struct{ Fields []FieldError }

func (e *ValidationError) Error() string {
	msg := "invalid event"
	for i, f := range e.Fields {
		if i == 0 {
			msg += ": "
		} else {
			msg += "; "
		}
		msg += f.Error()
	}
	return msg
}

// Validate checks the envelope and the payload's required fields against the
// clock now. It returns a *ValidationError listing every problem.
func Validate(e *adaptrecv1.Event, now time.Time) error {
	var fields []FieldError
	bad := func(field, format string, args ...any) {
		fields = append(fields, FieldError{field, fmt.Sprintf(format, args...)})
	}
	env := e.GetEnvelope()
	if env == nil {
		bad("envelope", "missing")
	} else {
		switch id := env.GetEventId(); {
		case id == "":
			bad("envelope.event_id", "required: set a unique id and reuse it on retries")
		case len(id) > MaxEventIDLen:
			bad("envelope.event_id", "%d bytes, at most %d allowed", len(id), MaxEventIDLen)
		}
		if pt := PayloadType(e); env.GetType() != pt {
			bad("envelope.type", "%s does not match the payload (%s)", env.GetType(), pt)
		}
		if v := env.GetSchemaVersion(); v == 0 || v > SchemaVersion {
			bad("envelope.schema_version", "%d is not supported (1..%d)", v, SchemaVersion)
		}
		switch ts := env.GetEventTime(); {
		case ts == nil:
			bad("envelope.event_time", "required")
		case ts.AsTime().Before(minEventTime):
			bad("envelope.event_time", "%s is before %s: seconds vs milliseconds?", ts.AsTime().Format(time.RFC3339), minEventTime.Format("2006-01-02"))
		case ts.AsTime().After(now.Add(maxFutureSkew)):
			bad("envelope.event_time", "%s is more than %s in the future", ts.AsTime().Format(time.RFC3339), maxFutureSkew)
		}
	}
	switch p := e.GetPayload().(type) {
	case nil:
		bad("payload", "missing: set exactly one of interaction, prediction, feedback, model_accuracy, model_lifecycle, feature_snapshot")
	case *adaptrecv1.Event_Interaction:
		in := p.Interaction
		if in.GetUserId() == "" {
			bad("interaction.user_id", "required")
		}
		if in.GetItemId() == "" {
			bad("interaction.item_id", "required")
		}
		if in.GetAction() == adaptrecv1.Action_ACTION_UNSPECIFIED {
			bad("interaction.action", "required")
		} else if _, ok := adaptrecv1.Action_name[int32(in.GetAction())]; !ok {
			bad("interaction.action", "unknown value %d", in.GetAction())
		}
	case *adaptrecv1.Event_Prediction:
		if p.Prediction.GetUserId() == "" {
			bad("prediction.user_id", "required")
		}
		if p.Prediction.GetRequestId() == "" {
			bad("prediction.request_id", "required")
		}
	case *adaptrecv1.Event_Feedback:
		if p.Feedback.GetUserId() == "" {
			bad("feedback.user_id", "required")
		}
		if p.Feedback.GetItemId() == "" {
			bad("feedback.item_id", "required")
		}
		if p.Feedback.GetKind() == adaptrecv1.FeedbackKind_FEEDBACK_KIND_UNSPECIFIED {
			bad("feedback.kind", "required")
		}
	case *adaptrecv1.Event_ModelAccuracy:
		if p.ModelAccuracy.GetModelVersion() == "" {
			bad("model_accuracy.model_version", "required")
		}
	case *adaptrecv1.Event_ModelLifecycle:
		if p.ModelLifecycle.GetModelName() == "" {
			bad("model_lifecycle.model_name", "required")
		}
		if p.ModelLifecycle.GetModelVersion() == "" {
			bad("model_lifecycle.model_version", "required")
		}
	case *adaptrecv1.Event_FeatureSnapshot:
		if p.FeatureSnapshot.GetFeatureView() == "" {
			bad("feature_snapshot.feature_view", "required")
		}
		if p.FeatureSnapshot.GetSnapshotVersion() == "" {
			bad("feature_snapshot.snapshot_version", "required")
		}
	}
	if len(fields) > 0 {
		return &ValidationError{Fields: fields}
	}
	return nil
}

// ErrMalformed marks bytes that are not a valid adaptrec event.
var ErrMalformed = errors.New("malformed event")

// Decode parses and validates one message value. Errors wrap ErrMalformed and
// say why, so consumers can dead-letter the message with the reason.
func Decode(b []byte, now time.Time) (*adaptrecv1.Event, error) {
	var e adaptrecv1.Event
	if err := proto.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("%w: not a protobuf adaptrec.v1.Event: %v", ErrMalformed, err)
	}
	if err := Validate(&e, now); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return &e, nil
}
