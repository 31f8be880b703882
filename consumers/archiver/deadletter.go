package archiver

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

// Dead-letter headers the archiver sets on every message it rejects. The
// value and key are the original bytes.
const (
	// HeaderReason is the human-readable reason from events.Decode.
	HeaderReason = "reason"
	// HeaderReasonCode is a stable, low-cardinality code: not_protobuf or
	// invalid_ followed by the first invalid field (invalid_envelope_event_id).
	HeaderReasonCode      = "reason_code"
	HeaderOriginTopic     = "origin_topic"
	HeaderOriginPartition = "origin_partition"
	HeaderOriginOffset    = "origin_offset"
	HeaderConsumerGroup   = "consumer_group"
	// HeaderTime is when the message was dead-lettered (RFC 3339, UTC).
	HeaderTime = "time"
)

// deadLetter is a rejected message and why.
type deadLetter struct {
	msg    kafka.Message
	reason string
	code   string
}

// reasonCode classifies a message events.Decode rejected. It is only called
// for rejected messages, so decoding twice costs nothing on the hot path.
func reasonCode(value []byte, at time.Time) string {
	var e adaptrecv1.Event
	if err := proto.Unmarshal(value, &e); err != nil {
		return "not_protobuf"
	}
	var verr *events.ValidationError
	if err := events.Validate(&e, at); errors.As(err, &verr) && len(verr.Fields) > 0 {
		return "invalid_" + strings.NewReplacer(".", "_").Replace(verr.Fields[0].Field)
	}
	return "invalid"
}

// message builds the dead-letter record for d.
func (d deadLetter) message(group string, now time.Time) kafka.Message {
	return kafka.Message{
		Topic: events.TopicDeadLetter,
		Key:   d.msg.Key,
		Value: d.msg.Value,
		Headers: []kafka.Header{
			{Key: HeaderReason, Value: []byte(d.reason)},
			{Key: HeaderReasonCode, Value: []byte(d.code)},
			{Key: HeaderOriginTopic, Value: []byte(d.msg.Topic)},
			{Key: HeaderOriginPartition, Value: []byte(strconv.Itoa(d.msg.Partition))},
			{Key: HeaderOriginOffset, Value: []byte(strconv.FormatInt(d.msg.Offset, 10))},
			{Key: HeaderConsumerGroup, Value: []byte(group)},
			{Key: HeaderTime, Value: []byte(now.UTC().Format(time.RFC3339Nano))},
		},
	}
}
