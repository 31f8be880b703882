package nearline

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

// reasonCode classifies a rejected message with a stable, low-cardinality
// code, as the archiver does. decoded is the event when it decoded (a
// valid event of the wrong type).
func reasonCode(value []byte, decoded *adaptrecv1.Event, at time.Time) string {
	if decoded != nil {
		return "not_interaction"
	}
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
func deadLetter(m kafka.Message, reason, code, group string, now time.Time) kafka.Message {
	return kafka.Message{
		Topic: events.TopicDeadLetter,
		Key:   m.Key,
		Value: m.Value,
		Headers: []kafka.Header{
			{Key: events.DeadLetterHeaderReason, Value: []byte(reason)},
			{Key: events.DeadLetterHeaderReasonCode, Value: []byte(code)},
			{Key: events.DeadLetterHeaderOriginTopic, Value: []byte(m.Topic)},
			{Key: events.DeadLetterHeaderOriginPartition, Value: []byte(strconv.Itoa(m.Partition))},
			{Key: events.DeadLetterHeaderOriginOffset, Value: []byte(strconv.FormatInt(m.Offset, 10))},
			{Key: events.DeadLetterHeaderConsumerGroup, Value: []byte(group)},
			{Key: events.DeadLetterHeaderTime, Value: []byte(now.UTC().Format(time.RFC3339Nano))},
		},
	}
}

// headerValue returns the value of m's header key, "" when absent.
func headerValue(m kafka.Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
