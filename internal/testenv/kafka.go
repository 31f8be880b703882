package testenv

import (
	"testing"

	"github.com/segmentio/kafka-go"
)

// TopicMessages returns how many messages the partitions of topic hold (the
// sum of their end offsets), read from the broker at addr.
func TopicMessages(t testing.TB, addr, topic string) int64 {
	t.Helper()
	conn, err := kafka.DialContext(t.Context(), "tcp", addr)
	if err != nil {
		t.Fatalf("testenv: dial %s: %v", addr, err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		t.Fatalf("testenv: partitions of %s: %v", topic, err)
	}
	var total int64
	for _, p := range parts {
		pc, err := kafka.DialLeader(t.Context(), "tcp", addr, topic, p.ID)
		if err != nil {
			t.Fatalf("testenv: dial leader of %s/%d: %v", topic, p.ID, err)
		}
		last, err := pc.ReadLastOffset()
		pc.Close()
		if err != nil {
			t.Fatalf("testenv: end offset of %s/%d: %v", topic, p.ID, err)
		}
		total += last
	}
	return total
}
