package archiver_test

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/adaptrec/adaptrec/consumers/archiver"
	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

// startArchiver runs an archiver in-process until the test ends.
func startArchiver(t testing.TB, cfg config.Config, store *objstore.Store) *archiver.Archiver {
	t.Helper()
	a, err := archiver.New(cfg, store, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("archiver Run: %v", err)
		}
	})
	return a
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// TestArchiveEndToEnd publishes events to two topics and requires the
// archive to hold exactly those events, byte for byte.
func TestArchiveEndToEnd(t *testing.T) {
	cfg, store := stack(t)
	a := startArchiver(t, cfg, store)
	evs := genEvents(20000, "e2e")
	msgs, want := messages(t, evs)
	publish(t, cfg, msgs)

	testenv.Eventually(t, 60*time.Second, func() error {
		return groupCaughtUp(t.Context(), cfg, cfg.Consumers.Archiver.GroupID, cfg.Consumers.Archiver.Topics)
	})
	if st := a.Stats(); st.Archived != int64(len(evs)) || st.Duplicates != 0 || st.DeadLettered != 0 {
		t.Fatalf("Stats = %+v, want %d archived and nothing dropped", st, len(evs))
	}
	got, dups := archivedRows(t, store, cfg.Consumers.Archiver.Topics)
	requireExactly(t, got, dups, want)
}

// TestArchiveDeadLetters interleaves malformed messages with valid events:
// each malformed one must reach the dead-letter topic with its bytes, key,
// reason and origin, and every valid one must be archived.
func TestArchiveDeadLetters(t *testing.T) {
	cfg, store := stack(t)
	a := startArchiver(t, cfg, store)

	evs := genEvents(3000, "dlq")
	valid, want := messages(t, evs)
	now := time.Now()
	noID := events.NewInteraction("", now, "test", &adaptrecv1.UserInteractionEvent{UserId: "u", ItemId: "i", Action: adaptrecv1.Action_ACTION_CLICK})
	wrongType := events.NewInteraction("wrong-type-1", now, "test", &adaptrecv1.UserInteractionEvent{UserId: "u", ItemId: "i", Action: adaptrecv1.Action_ACTION_CLICK})
	wrongType.Envelope.Type = adaptrecv1.EventType_EVENT_TYPE_PREDICTION
	future := events.NewInteraction("future-1", now.Add(72*time.Hour), "test", &adaptrecv1.UserInteractionEvent{UserId: "u", ItemId: "i", Action: adaptrecv1.Action_ACTION_CLICK})
	bad := []struct {
		value []byte
		code  string
	}{
		{[]byte("\x00\x01garbage that is not protobuf\xff"), "not_protobuf"},
		{mustMarshal(t, noID), "invalid_envelope_event_id"},
		{mustMarshal(t, wrongType), "invalid_envelope_type"},
		{mustMarshal(t, future), "invalid_envelope_event_time"},
	}
	var msgs []kafka.Message
	wantDead := map[string]string{} // key -> reason code
	for i, m := range valid {
		msgs = append(msgs, m)
		if i%100 == 50 {
			b := bad[(i/100)%len(bad)]
			key := fmt.Sprintf("bad-%d", i)
			wantDead[key] = b.code
			msgs = append(msgs, kafka.Message{Topic: events.TopicInteractions, Key: []byte(key), Value: b.value})
		}
	}
	publish(t, cfg, msgs)

	testenv.Eventually(t, 60*time.Second, func() error {
		return groupCaughtUp(t.Context(), cfg, cfg.Consumers.Archiver.GroupID, cfg.Consumers.Archiver.Topics)
	})
	dead := readTopic(t, cfg, events.TopicDeadLetter)
	byKey := map[string]kafka.Message{}
	for _, m := range dead {
		byKey[string(m.Key)] = m
	}
	if len(dead) != len(wantDead) {
		t.Errorf("dead-letter topic has %d messages, want %d", len(dead), len(wantDead))
	}
	sent := map[string][]byte{}
	for _, m := range msgs {
		sent[string(m.Key)] = m.Value
	}
	for key, code := range wantDead {
		m, ok := byKey[key]
		if !ok {
			t.Errorf("malformed message %s was not dead-lettered", key)
			continue
		}
		h := map[string]string{}
		for _, x := range m.Headers {
			h[x.Key] = string(x.Value)
		}
		if h[events.DeadLetterHeaderReasonCode] != code || h[events.DeadLetterHeaderReason] == "" {
			t.Errorf("%s: reason %q (%s), want code %s", key, h[events.DeadLetterHeaderReason], h[events.DeadLetterHeaderReasonCode], code)
		}
		if h[events.DeadLetterHeaderOriginTopic] != events.TopicInteractions || h[events.DeadLetterHeaderConsumerGroup] != cfg.Consumers.Archiver.GroupID {
			t.Errorf("%s: origin headers %v", key, h)
		}
		if _, err := strconv.Atoi(h[events.DeadLetterHeaderOriginPartition]); err != nil {
			t.Errorf("%s: origin partition %q", key, h[events.DeadLetterHeaderOriginPartition])
		}
		if _, err := strconv.ParseInt(h[events.DeadLetterHeaderOriginOffset], 10, 64); err != nil {
			t.Errorf("%s: origin offset %q", key, h[events.DeadLetterHeaderOriginOffset])
		}
		if _, err := time.Parse(time.RFC3339Nano, h[events.DeadLetterHeaderTime]); err != nil {
			t.Errorf("%s: time %q", key, h[events.DeadLetterHeaderTime])
		}
		if string(m.Value) != string(sent[key]) {
			t.Errorf("%s: dead letter does not carry the original bytes", key)
		}
	}
	if st := a.Stats(); st.DeadLettered != int64(len(wantDead)) {
		t.Errorf("Stats.DeadLettered = %d, want %d", st.DeadLettered, len(wantDead))
	}
	got, dups := archivedRows(t, store, cfg.Consumers.Archiver.Topics)
	requireExactly(t, got, dups, want)
}

// TestArchiveDropsProducerDuplicates publishes some events twice, as a
// retrying producer would, and requires each to be archived once.
func TestArchiveDropsProducerDuplicates(t *testing.T) {
	cfg, store := stack(t)
	a := startArchiver(t, cfg, store)
	evs := genEvents(4000, "dup")
	msgs, want := messages(t, evs)
	var all []kafka.Message
	resent := 0
	for i, m := range msgs {
		all = append(all, m)
		if i%10 == 0 { // the retry lands right after the original
			all = append(all, m)
			resent++
		}
	}
	// Retries of early events after everything else, still inside the
	// window of their partition.
	for i := 0; i < 500; i += 5 {
		all = append(all, msgs[i])
		resent++
	}
	publish(t, cfg, all)
	testenv.Eventually(t, 60*time.Second, func() error {
		return groupCaughtUp(t.Context(), cfg, cfg.Consumers.Archiver.GroupID, cfg.Consumers.Archiver.Topics)
	})
	if st := a.Stats(); st.Duplicates != int64(resent) || st.Archived != int64(len(evs)) {
		t.Errorf("Stats = %+v, want %d archived and %d duplicates dropped", st, len(evs), resent)
	}
	got, dups := archivedRows(t, store, cfg.Consumers.Archiver.Topics)
	requireExactly(t, got, dups, want)
}

// TestArchiveSkipsReplayedEvents re-publishes archived events the way
// `adaptrec events replay` does, after the dedupe window has moved past
// them: the archive must not grow.
func TestArchiveSkipsReplayedEvents(t *testing.T) {
	cfg, store := stack(t)
	cfg.Consumers.Archiver.DedupeWindow = 100
	a := startArchiver(t, cfg, store)
	msgs, want := messages(t, genEvents(3000, "orig"))
	fresh, wantFresh := messages(t, genEvents(1000, "fresh"))
	var replayed []kafka.Message
	for _, m := range msgs {
		m.Headers = []kafka.Header{{Key: events.HeaderReplay, Value: []byte("run-1")}}
		replayed = append(replayed, m)
	}
	publish(t, cfg, msgs)
	publish(t, cfg, fresh)
	publish(t, cfg, replayed)
	testenv.Eventually(t, 60*time.Second, func() error {
		return groupCaughtUp(t.Context(), cfg, cfg.Consumers.Archiver.GroupID, cfg.Consumers.Archiver.Topics)
	})
	if st := a.Stats(); st.Replayed != int64(len(replayed)) || st.Archived != int64(len(msgs)+len(fresh)) || st.Duplicates != 0 {
		t.Errorf("Stats = %+v, want %d archived, %d replayed skipped, no duplicates", st, len(msgs)+len(fresh), len(replayed))
	}
	for k, v := range wantFresh {
		want[k] = v
	}
	got, dups := archivedRows(t, store, cfg.Consumers.Archiver.Topics)
	requireExactly(t, got, dups, want)
}

// TestArchiveShutdownDrains stops the archiver while it holds events in
// memory that no flush trigger would write for a minute: Run must make them
// durable and commit them before it returns.
func TestArchiveShutdownDrains(t *testing.T) {
	cfg, store := stack(t)
	cfg.Consumers.Archiver.Topics = []string{events.TopicInteractions}
	cfg.Consumers.Archiver.FlushInterval = time.Minute
	cfg.Consumers.Archiver.FlushEvents = 200
	var evs []*adaptrecv1.Event
	for _, e := range genEvents(1400, "drain") {
		if e.GetInteraction() != nil {
			evs = append(evs, e)
		}
	}
	msgs, want := messages(t, evs)
	publish(t, cfg, msgs)

	a, err := archiver.New(cfg, store, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	// Every partition has written its first full batch; the rest of each
	// partition (fewer than 200 events) came in the same fetches and waits
	// for the one-minute timer.
	testenv.Eventually(t, 30*time.Second, func() error {
		if st := a.Stats(); st.Archived < int64(cfg.Kafka.Partitions*200) {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	if st := a.Stats(); st.Archived >= int64(len(evs)) {
		t.Fatalf("everything was archived before shutdown (%+v): the test proves nothing", st)
	}
	start := time.Now()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 20*time.Second {
		t.Fatalf("shutdown took %s", el)
	}
	if err := groupCaughtUp(t.Context(), cfg, cfg.Consumers.Archiver.GroupID, cfg.Consumers.Archiver.Topics); err != nil {
		t.Fatalf("after shutdown: %v", err)
	}
	got, dups := archivedRows(t, store, cfg.Consumers.Archiver.Topics)
	requireExactly(t, got, dups, want)
}
