package archiver_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

// stack starts a real broker and S3 server, creates the topics and the
// bucket, and returns a configuration tuned for tests.
func stack(t testing.TB) (config.Config, *objstore.Store) {
	t.Helper()
	env := testenv.New(t, testenv.Kafka, testenv.S3)
	cfg := env.Config()
	cfg.Kafka.Partitions = 4
	cfg.Consumers.Archiver.GroupID = "archiver-" + strings.ReplaceAll(t.Name(), "/", "-")
	cfg.Consumers.Archiver.Topics = []string{events.TopicInteractions, events.TopicPredictions}
	cfg.Consumers.Archiver.FlushInterval = 200 * time.Millisecond
	cfg.Consumers.Archiver.FlushEvents = 5000
	cfg.Consumers.Archiver.DedupeWindow = 10000
	return cfg, testenv.EventLog(t, cfg)
}

// genEvents returns n valid events, three interactions to one prediction,
// with event times rising evenly over the two hours before now.
func genEvents(n int, prefix string) []*adaptrecv1.Event {
	return genEventsOver(n, prefix, 2*time.Hour)
}

// genEventsOver is genEvents with event times rising evenly over span.
func genEventsOver(n int, prefix string, span time.Duration) []*adaptrecv1.Event {
	now := time.Now()
	out := make([]*adaptrecv1.Event, n)
	for i := range n {
		id := fmt.Sprintf("%s-%07d", prefix, i)
		at := now.Add(-span).Add(time.Duration(i) * span / time.Duration(n))
		user := fmt.Sprintf("u%d", i%997)
		if i%4 == 3 {
			out[i] = events.NewPrediction(id, at, "test", &adaptrecv1.PredictionEvent{
				RequestId: "r" + id, UserId: user, ModelVersion: "m1",
				Items: []*adaptrecv1.ServedItem{{ItemId: "i1", Score: 0.3}, {ItemId: "i2", Score: 0.2, Position: 1}},
			})
			continue
		}
		out[i] = events.NewInteraction(id, at, "test", &adaptrecv1.UserInteractionEvent{
			UserId: user, ItemId: fmt.Sprintf("i%d", i%1543), Action: adaptrecv1.Action_ACTION_CLICK,
			Position: int32(i % 20), Device: adaptrecv1.Device_DEVICE_MOBILE,
		})
	}
	return out
}

// messages encodes events as Kafka messages and indexes their bytes by id.
func messages(t testing.TB, evs []*adaptrecv1.Event) ([]kafka.Message, map[string][]byte) {
	t.Helper()
	msgs := make([]kafka.Message, len(evs))
	byID := make(map[string][]byte, len(evs))
	for i, e := range evs {
		m, err := events.Message(e)
		if err != nil {
			t.Fatal(err)
		}
		msgs[i] = m
		byID[e.GetEnvelope().GetEventId()] = m.Value
	}
	return msgs, byID
}

func publish(t testing.TB, cfg config.Config, msgs []kafka.Message) {
	t.Helper()
	p, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for len(msgs) > 0 {
		n := min(len(msgs), 5000)
		if err := p.WriteMessages(t.Context(), msgs[:n]...); err != nil {
			t.Fatal(err)
		}
		msgs = msgs[n:]
	}
}

// archivedRows reads back every row of the topics in a wide time window,
// keyed by event id; a repeated id is reported in dups.
func archivedRows(t testing.TB, store *objstore.Store, topics []string) (rows map[string][]byte, dups []string) {
	t.Helper()
	rows = map[string][]byte{}
	from, to := time.Now().Add(-30*24*time.Hour), time.Now().Add(48*time.Hour)
	for _, topic := range topics {
		err := eventlog.Scan(t.Context(), store, topic, from, to, func(r *eventlog.Row) error {
			if _, ok := rows[r.EventID]; ok {
				dups = append(dups, r.EventID)
			}
			if r.KafkaTopic != topic {
				return fmt.Errorf("row %s from topic %s stored under %s", r.EventID, r.KafkaTopic, topic)
			}
			rows[r.EventID] = bytes.Clone(r.Payload)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return rows, dups
}

// requireExactly checks that the archive holds exactly the events of want,
// once each, with their bytes.
func requireExactly(t testing.TB, got map[string][]byte, dups []string, want map[string][]byte) {
	t.Helper()
	if len(dups) > 0 {
		sort.Strings(dups)
		t.Fatalf("%d duplicate rows in the archive, e.g. %v", len(dups), dups[:min(5, len(dups))])
	}
	var missing, extra, differ []string
	for id, b := range want {
		g, ok := got[id]
		switch {
		case !ok:
			missing = append(missing, id)
		case !bytes.Equal(g, b):
			differ = append(differ, id)
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			extra = append(extra, id)
		}
	}
	if len(missing)+len(extra)+len(differ) > 0 {
		sort.Strings(missing)
		t.Fatalf("archive has %d rows for %d events: %d missing (e.g. %v), %d unexpected (e.g. %v), %d with other bytes (e.g. %v)",
			len(got), len(want), len(missing), missing[:min(5, len(missing))], len(extra), extra[:min(5, len(extra))], len(differ), differ[:min(5, len(differ))])
	}
}

// groupCaughtUp returns nil once the group has committed the end of every
// partition of topics.
func groupCaughtUp(ctx context.Context, cfg config.Config, group string, topics []string) error {
	client := &kafka.Client{Addr: kafka.TCP(cfg.Kafka.Brokers...), Timeout: 5 * time.Second}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	fetch := &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{}}
	for _, tp := range topics {
		for p := range cfg.Kafka.Partitions {
			req.Topics[tp] = append(req.Topics[tp], kafka.LastOffsetOf(p))
			fetch.Topics[tp] = append(fetch.Topics[tp], p)
		}
	}
	ends, err := client.ListOffsets(ctx, req)
	if err != nil {
		return err
	}
	committed, err := client.OffsetFetch(ctx, fetch)
	if err != nil {
		return err
	}
	if committed.Error != nil {
		return committed.Error
	}
	var behind []string
	for tp, parts := range ends.Topics {
		for _, p := range parts {
			if p.Error != nil {
				return p.Error
			}
			var c int64 = -1
			for _, cp := range committed.Topics[tp] {
				if cp.Partition == p.Partition {
					c = cp.CommittedOffset
				}
			}
			if c < p.LastOffset {
				behind = append(behind, fmt.Sprintf("%s/%d at %d of %d", tp, p.Partition, c, p.LastOffset))
			}
		}
	}
	if len(behind) > 0 {
		return errors.New("group behind: " + strings.Join(behind, ", "))
	}
	return nil
}

// readTopic reads every message of a topic (all partitions, up to their
// current end).
func readTopic(t testing.TB, cfg config.Config, topic string) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out []kafka.Message
	for p := range cfg.Kafka.Partitions {
		conn, err := kafka.DialLeader(ctx, "tcp", cfg.Kafka.Brokers[0], topic, p)
		if err != nil {
			t.Fatal(err)
		}
		first, last, err := conn.ReadOffsets()
		conn.Close()
		if err != nil {
			t.Fatal(err)
		}
		if last <= first {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Kafka.Brokers, Topic: topic, Partition: p, MaxWait: 100 * time.Millisecond})
		if err := r.SetOffset(first); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				t.Fatalf("read %s/%d: %v", topic, p, err)
			}
			out = append(out, m)
			if m.Offset >= last-1 {
				break
			}
		}
		r.Close()
	}
	return out
}

// mustMarshal encodes an event.
func mustMarshal(t testing.TB, e *adaptrecv1.Event) []byte {
	t.Helper()
	b, err := proto.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
