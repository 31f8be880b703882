package events

// Dead-letter headers. A consumer that rejects a message writes its key and
// value unchanged to TopicDeadLetter with these headers, and commits past the
// message only after that write is acknowledged.
const (
	// DeadLetterHeaderReason is the human-readable reason, e.g. from Decode.
	DeadLetterHeaderReason = "reason"
	// DeadLetterHeaderReasonCode is a stable, low-cardinality code for
	// metrics and alerts: not_protobuf, or invalid_ followed by the first
	// invalid field (invalid_envelope_event_id).
	DeadLetterHeaderReasonCode      = "reason_code"
	DeadLetterHeaderOriginTopic     = "origin_topic"
	DeadLetterHeaderOriginPartition = "origin_partition"
	DeadLetterHeaderOriginOffset    = "origin_offset"
	// DeadLetterHeaderConsumerGroup names the consumer that rejected it.
	DeadLetterHeaderConsumerGroup = "consumer_group"
	// DeadLetterHeaderTime is when the message was dead-lettered (RFC 3339, UTC).
	DeadLetterHeaderTime = "time"
)

// HeaderReplay marks a message re-published from the offline event log by
// `adaptrec events replay`; its value names the replay run. Consumers that
// rebuild state process it like any other event (deduping on event id); the
// archiver skips it, because the event is already archived.
const HeaderReplay = "adaptrec-replay"
