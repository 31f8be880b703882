package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
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

// TopicEvents reads every event on topic (all partitions, from the start to
// the end as of the call), failing the test on a message that is not a
// valid event or is not keyed as events.Key says.
func TopicEvents(t testing.TB, cfg config.Kafka, topic string) []*adaptrecv1.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	conn, err := kafka.DialContext(ctx, "tcp", cfg.Brokers[0])
	if err != nil {
		t.Fatalf("testenv: dial %s: %v", cfg.Brokers[0], err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		t.Fatalf("testenv: partitions of %s: %v", topic, err)
	}
	var out []*adaptrecv1.Event
	for _, p := range parts {
		lc, err := kafka.DialLeader(ctx, "tcp", cfg.Brokers[0], topic, p.ID)
		if err != nil {
			t.Fatalf("testenv: leader of %s/%d: %v", topic, p.ID, err)
		}
		first, last, err := lc.ReadOffsets()
		lc.Close()
		if err != nil {
			t.Fatalf("testenv: offsets of %s/%d: %v", topic, p.ID, err)
		}
		if last <= first {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Brokers, Topic: topic, Partition: p.ID, MaxWait: 100 * time.Millisecond})
		if err := r.SetOffset(first); err != nil {
			r.Close()
			t.Fatal(err)
		}
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				t.Fatalf("testenv: read %s/%d: %v", topic, p.ID, err)
			}
			e, err := events.Decode(m.Value, time.Now())
			if err != nil {
				r.Close()
				t.Fatalf("testenv: %s/%d offset %d: %v", topic, p.ID, m.Offset, err)
			}
			if string(m.Key) != string(events.Key(e)) {
				t.Errorf("testenv: %s/%d offset %d keyed %q, want %q", topic, p.ID, m.Offset, m.Key, events.Key(e))
			}
			out = append(out, e)
			if m.Offset >= last-1 {
				break
			}
		}
		r.Close()
	}
	return out
}
