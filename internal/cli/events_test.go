package cli

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"gopkg.in/yaml.v3"

	"github.com/adaptrec/adaptrec/consumers/archiver"
	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

func TestEventsParseTime(t *testing.T) {
	now := time.Date(2026, 11, 22, 15, 30, 0, 0, time.UTC)
	tests := []struct {
		in      string
		want    time.Time
		wantErr string
	}{
		{"2026-11-20T10:00:00Z", time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC), ""},
		{"2026-11-20T12:00:00+02:00", time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC), ""},
		{"2026-11-20", time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC), ""},
		{"now", now, ""},
		{"-2h", now.Add(-2 * time.Hour), ""},
		{"-90m", now.Add(-90 * time.Minute), ""},
		{"-7d", now.Add(-7 * 24 * time.Hour), ""},
		{"-1.5d", now.Add(-36 * time.Hour), ""},
		{"", time.Time{}, "--from is required"},
		{"2h", time.Time{}, `--from "2h" is not`},
		{"-2x", time.Time{}, `--from "-2x" is not`},
		{"yesterday", time.Time{}, `--from "yesterday" is not an RFC 3339 time`},
		{"2026-13-01", time.Time{}, `--from "2026-13-01"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := eventsParseTime("from", tt.in, now)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("eventsParseTime(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !got.Equal(tt.want) {
				t.Fatalf("eventsParseTime(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestEventsRangeAndTopicErrors(t *testing.T) {
	now := time.Now()
	tests := []struct {
		from, to string
		topics   []string
		want     string
	}{
		{"-1h", "-2h", nil, "is not before --to"},
		{"bogus", "also-bogus", nil, `--from "bogus"`},
		{"-1h", "also-bogus", nil, `--to "also-bogus"`},
		{"-1h", "now", []string{"adaptrec.nope.v1"}, `--topic "adaptrec.nope.v1" is not an archived event topic`},
		{"-1h", "now", []string{events.TopicDeadLetter}, "is not an archived event topic"},
	}
	for _, tt := range tests {
		_, _, err := eventsRange(tt.from, tt.to, now)
		if err == nil {
			_, err = eventsTopics(tt.topics)
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("from %q to %q topics %v: error %v, want one containing %q", tt.from, tt.to, tt.topics, err, tt.want)
		}
	}
}

// runCLI runs the adaptrec command line with a config file.
func runCLI(t *testing.T, ctx context.Context, cfgPath string, args ...string) (string, error) {
	t.Helper()
	root := NewRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"--config", cfgPath}, args...))
	err := root.ExecuteContext(ctx)
	if err != nil {
		t.Logf("adaptrec %v stderr:\n%s", args, errOut.String())
	}
	return out.String(), err
}

// TestEventsReplayRoundTrip archives events with the real archiver, replays
// a time range into another topic and requires exactly the archived events
// of that range there, with their keys and bytes, in event-time order in
// every partition; ls and tail are checked on the same data.
func TestEventsReplayRoundTrip(t *testing.T) {
	env := testenv.New(t, testenv.Kafka, testenv.S3)
	cfg := env.Config()
	cfg.Kafka.Partitions = 3
	cfg.Consumers.Archiver.GroupID = "archiver-replay-test"
	cfg.Consumers.Archiver.FlushInterval = 100 * time.Millisecond
	cfg.Consumers.Archiver.FlushEvents = 700
	ctx := t.Context()
	store := testenv.EventLog(t, cfg)
	cfgYAML, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "adaptrec.yaml")
	if err := os.WriteFile(cfgPath, cfgYAML, 0o600); err != nil {
		t.Fatal(err)
	}

	// 6,000 interactions and 300 feedback events over the last five hours,
	// published out of event-time order.
	now := time.Now().UTC()
	var evs []*adaptrecv1.Event
	for i := range 6000 {
		at := now.Add(-5 * time.Hour).Add(time.Duration((i*7919)%6000) * 3 * time.Second)
		evs = append(evs, events.NewInteraction(fmt.Sprintf("rp-%05d", i), at, "test", &adaptrecv1.UserInteractionEvent{
			UserId: fmt.Sprintf("u%d", i%53), ItemId: fmt.Sprintf("i%d", i%101), Action: adaptrecv1.Action_ACTION_VIEW,
		}))
	}
	for i := range 300 {
		evs = append(evs, events.NewFeedback(fmt.Sprintf("fb-%05d", i), now.Add(-4*time.Hour).Add(time.Duration(i)*time.Minute/2), "test",
			&adaptrecv1.FeedbackEvent{UserId: fmt.Sprintf("u%d", i%7), ItemId: "i1", Kind: adaptrecv1.FeedbackKind_FEEDBACK_KIND_THUMBS_UP}))
	}
	p, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Publish(ctx, evs...); err != nil {
		t.Fatal(err)
	}
	p.Close()

	a, err := archiver.New(cfg, store, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	testenv.Eventually(t, time.Minute, func() error {
		if n := a.Stats().Archived; n < int64(len(evs)) {
			return fmt.Errorf("archived %d of %d", n, len(evs))
		}
		return nil
	})
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// ls: every archived row is counted once.
	out, err := runCLI(t, ctx, cfgPath, "events", "ls", "--from", "-6h", "--to", "now")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, fmt.Sprintf(", %d rows,", len(evs))) {
		t.Fatalf("events ls does not count %d rows:\n%s", len(evs), lastLines(out, 5))
	}

	from := now.Add(-4*time.Hour - 17*time.Minute).Truncate(time.Second)
	to := now.Add(-90 * time.Minute).Truncate(time.Second)
	want := map[string][]byte{} // event id -> bytes, archived interactions in range
	keys := map[string][]byte{}
	for _, e := range evs {
		at := e.GetEnvelope().GetEventTime().AsTime()
		if e.GetInteraction() == nil || at.Before(from) || !at.Before(to) {
			continue
		}
		m, err := events.Message(e)
		if err != nil {
			t.Fatal(err)
		}
		want[e.GetEnvelope().GetEventId()] = m.Value
		keys[e.GetEnvelope().GetEventId()] = m.Key
	}

	out, err = runCLI(t, ctx, cfgPath, "events", "replay", "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339),
		"--topic", events.TopicInteractions, "--dry-run")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, fmt.Sprintf("would replay (dry run) %d events", len(want))) {
		t.Fatalf("dry run output does not announce %d events:\n%s", len(want), out)
	}

	const target = "adaptrec.replay-test.v1"
	out, err = runCLI(t, ctx, cfgPath, "events", "replay", "--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339),
		"--topic", events.TopicInteractions, "--to-topic", target, "--batch", "500")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, fmt.Sprintf("replayed %d events of %s to %s", len(want), events.TopicInteractions, target)) {
		t.Fatalf("replay output:\n%s", out)
	}

	got := readAll(t, cfg.Kafka.Brokers, target, cfg.Kafka.Partitions)
	if len(got) != len(want) {
		t.Fatalf("target topic has %d messages, want %d", len(got), len(want))
	}
	seen := map[string]bool{}
	lastTime := map[int]time.Time{}
	for _, m := range got {
		e, err := events.Decode(m.Value, time.Now())
		if err != nil {
			t.Fatalf("replayed message at %d/%d does not decode: %v", m.Partition, m.Offset, err)
		}
		id := e.GetEnvelope().GetEventId()
		if seen[id] {
			t.Fatalf("event %s replayed twice", id)
		}
		seen[id] = true
		if !bytes.Equal(m.Value, want[id]) || !bytes.Equal(m.Key, keys[id]) {
			t.Fatalf("event %s replayed with other bytes or key (key %q, want %q)", id, m.Key, keys[id])
		}
		if len(m.Headers) != 1 || m.Headers[0].Key != events.HeaderReplay || len(m.Headers[0].Value) == 0 {
			t.Fatalf("event %s replayed with headers %v, want one %s header naming the run", id, m.Headers, events.HeaderReplay)
		}
		at := e.GetEnvelope().GetEventTime().AsTime()
		if at.Before(lastTime[m.Partition]) {
			t.Fatalf("partition %d: event %s at %s follows one at %s", m.Partition, id, at, lastTime[m.Partition])
		}
		lastTime[m.Partition] = at
	}

	// Replay from the archive agrees with the archive itself.
	var archived []string
	if err := eventlog.ScanOrdered(ctx, store, events.TopicInteractions, from, to, func(r *eventlog.Row) error {
		archived = append(archived, r.EventID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(archived) != len(want) {
		t.Fatalf("archive holds %d events in range, want %d", len(archived), len(want))
	}

	// tail prints events of the replayed topic as protojson.
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err = runCLI(t, tctx, cfgPath, "events", "tail", "--topic", target, "--from-beginning", "-n", "5")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 {
		t.Fatalf("tail -n 5 printed %d lines:\n%s", len(lines), out)
	}
	for _, l := range lines {
		var rec struct {
			Topic string `json:"topic"`
			Event struct {
				Envelope struct {
					EventID string `json:"eventId"`
				} `json:"envelope"`
			} `json:"event"`
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil || rec.Topic != target || !seen[rec.Event.Envelope.EventID] {
			t.Fatalf("tail line %s: %v", l, err)
		}
	}
}

func readAll(t *testing.T, brokers []string, topic string, partitions int) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out []kafka.Message
	for p := range partitions {
		conn, err := kafka.DialLeader(ctx, "tcp", brokers[0], topic, p)
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
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: p, MaxWait: 100 * time.Millisecond})
		if err := r.SetOffset(first); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
			if m.Offset >= last-1 {
				break
			}
		}
		r.Close()
	}
	slices.SortFunc(out, func(a, b kafka.Message) int {
		return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
	})
	return out
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
