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
			{Key: events.DeadLetterHeaderReason, Value: []byte(d.reason)},
			{Key: events.DeadLetterHeaderReasonCode, Value: []byte(d.code)},
			{Key: events.DeadLetterHeaderOriginTopic, Value: []byte(d.msg.Topic)},
			{Key: events.DeadLetterHeaderOriginPartition, Value: []byte(strconv.Itoa(d.msg.Partition))},
			{Key: events.DeadLetterHeaderOriginOffset, Value: []byte(strconv.FormatInt(d.msg.Offset, 10))},
			{Key: events.DeadLetterHeaderConsumerGroup, Value: []byte(group)},
			{Key: events.DeadLetterHeaderTime, Value: []byte(now.UTC().Format(time.RFC3339Nano))},
		},
	}
}
