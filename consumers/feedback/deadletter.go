package feedback

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

// rejection is why a message is dead-lettered: the reason for people and a
// stable, low-cardinality code for metrics.
type rejection struct {
	reason, code string
}

// check decodes one message of topic and checks what the join relies on
// beyond events.Decode; it returns the event or why it is rejected.
func check(topic string, value []byte, now time.Time) (*adaptrecv1.Event, *rejection) {
	e, err := events.Decode(value, now)
	if err != nil {
		return nil, &rejection{err.Error(), decodeCode(value, now)}
	}
	bad := func(field, format string, args ...any) *rejection {
		return &rejection{
			reason: fmt.Sprintf("%v: invalid event: %s: %s", events.ErrMalformed, field, fmt.Sprintf(format, args...)),
			code:   "invalid_" + strings.ReplaceAll(field, ".", "_"),
		}
	}
	switch topic {
	case events.TopicPredictions:
		p := e.GetPrediction()
		if p == nil {
			return nil, &rejection{fmt.Sprintf("%v: %s carries a %s event, not a prediction", events.ErrMalformed, topic, e.GetEnvelope().GetType()), "unexpected_payload"}
		}
		if p.GetModelVersion() == "" {
			return nil, bad("prediction.model_version", "required: accuracy is reported per model version")
		}
		if l := p.GetLatencyMs(); math.IsNaN(l) || math.IsInf(l, 0) || l < 0 {
			return nil, bad("prediction.latency_ms", "%v is not a duration in milliseconds >= 0", l)
		}
		if _, ok := adaptrecv1.DegradationLevel_name[int32(p.GetDegradationLevel())]; !ok {
			return nil, bad("prediction.degradation_level", "unknown value %d", p.GetDegradationLevel())
		}
	case events.TopicInteractions:
		in := e.GetInteraction()
		if in == nil {
			return nil, &rejection{fmt.Sprintf("%v: %s carries a %s event, not an interaction", events.ErrMalformed, topic, e.GetEnvelope().GetType()), "unexpected_payload"}
		}
		if v := in.GetValue(); in.GetAction() == adaptrecv1.Action_ACTION_WATCH && (math.IsNaN(v) || math.IsInf(v, 0) || v < 0) {
			return nil, bad("interaction.value", "%v is not a number of seconds watched >= 0", v)
		}
	}
	return e, nil
}

// decodeCode classifies a message events.Decode rejected as the other
// consumers do: not_protobuf, or invalid_ and the first invalid field.
func decodeCode(value []byte, at time.Time) string {
	var e adaptrecv1.Event
	if err := proto.Unmarshal(value, &e); err != nil {
		return "not_protobuf"
	}
	var verr *events.ValidationError
	if err := events.Validate(&e, at); errors.As(err, &verr) && len(verr.Fields) > 0 {
		return "invalid_" + strings.ReplaceAll(verr.Fields[0].Field, ".", "_")
	}
	return "invalid"
}

// deadLetter builds the dead-letter record of m: its key and value, with
// the reason and origin in the events.DeadLetterHeader* headers.
func deadLetter(m kafka.Message, r *rejection, group string, now time.Time) kafka.Message {
	return kafka.Message{
		Topic: events.TopicDeadLetter,
		Key:   m.Key,
		Value: m.Value,
		Headers: []kafka.Header{
			{Key: events.DeadLetterHeaderReason, Value: []byte(r.reason)},
			{Key: events.DeadLetterHeaderReasonCode, Value: []byte(r.code)},
			{Key: events.DeadLetterHeaderOriginTopic, Value: []byte(m.Topic)},
			{Key: events.DeadLetterHeaderOriginPartition, Value: []byte(strconv.Itoa(m.Partition))},
			{Key: events.DeadLetterHeaderOriginOffset, Value: []byte(strconv.FormatInt(m.Offset, 10))},
			{Key: events.DeadLetterHeaderConsumerGroup, Value: []byte(group)},
			{Key: events.DeadLetterHeaderTime, Value: []byte(now.UTC().Format(time.RFC3339Nano))},
		},
	}
}
