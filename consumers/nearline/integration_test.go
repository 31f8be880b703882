package nearline_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/adaptrec/adaptrec/consumers/nearline"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/online"
	"github.com/adaptrec/adaptrec/features/snapshot"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

// noSnapshots has no batch snapshots: batch features read their defaults.
type noSnapshots struct{}

func (noSnapshots) Current(context.Context, string) (snapshot.Pointer, error) {
	return snapshot.Pointer{}, snapshot.ErrNotFound
}

func (noSnapshots) Open(context.Context, string, string) (online.SnapshotReader, error) {
	return nil, snapshot.ErrNotFound
}

func interaction(id string, at time.Time, user, item, session string, a adaptrecv1.Action) *adaptrecv1.Event {
	return events.NewInteraction(id, at, "nearline-test", &adaptrecv1.UserInteractionEvent{
		UserId: user, ItemId: item, Action: a, SessionId: session, Surface: "home", Device: adaptrecv1.Device_DEVICE_MOBILE,
	})
}

// TestConsumerWritesNearlineFeatures publishes interactions of several
// users (over two partitions) to a real broker, a duplicate and a
// malformed message, and reads the values back through the online store.
func TestConsumerWritesNearlineFeatures(t *testing.T) {
	env := testenv.New(t, testenv.Kafka, testenv.Redis)
	cfg := env.Config()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if err := events.CreateTopics(ctx, cfg.Kafka, 2, events.TopicInteractions, events.TopicDeadLetter); err != nil {
		t.Fatal(err)
	}
	fs, err := features.Load("../../features/features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rdb := online.NewClient(cfg.Redis)
	t.Cleanup(func() { rdb.Close() })
	c, err := nearline.New(nearline.Config{
		Kafka: cfg.Kafka, GroupID: "nearline-test", FlushInterval: 50 * time.Millisecond, Refresh: 2 * time.Second,
		ClicksPer30m: func(item string) (float64, bool) { return 1, item == "i1" },
	}, fs, rdb, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()

	now := time.Now().UTC().Truncate(time.Millisecond)
	t0 := now.Add(-10 * time.Minute)
	click := interaction("u1-click", t0.Add(time.Minute), "u1", "i1", "s1", adaptrecv1.Action_ACTION_CLICK)
	evs := []*adaptrecv1.Event{
		interaction("u1-old", t0.Add(-50*time.Minute), "u1", "i3", "s0", adaptrecv1.Action_ACTION_CLICK),
		interaction("u1-imp", t0, "u1", "i1", "s1", adaptrecv1.Action_ACTION_IMPRESSION),
		click,
		interaction("u1-view", t0.Add(2*time.Minute), "u1", "i2", "s1", adaptrecv1.Action_ACTION_VIEW),
		interaction("u1-buy", t0.Add(3*time.Minute), "u1", "i2", "s1", adaptrecv1.Action_ACTION_PURCHASE),
	}
	for i := 2; i <= 7; i++ {
		u := fmt.Sprintf("u%d", i)
		evs = append(evs,
			interaction(u+"-imp", t0.Add(time.Duration(i)*time.Second), u, "i1", "s"+u, adaptrecv1.Action_ACTION_IMPRESSION),
			interaction(u+"-click", t0.Add(time.Duration(i)*time.Second+time.Millisecond), u, "i1", "s"+u, adaptrecv1.Action_ACTION_CLICK))
	}
	evs = append(evs, click) // a producer retry: same event id
	p, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Publish(ctx, evs...); err != nil {
		t.Fatal(err)
	}
	if err := p.WriteMessages(ctx, kafka.Message{Topic: events.TopicInteractions, Key: []byte("u1"), Value: []byte("not an event")}); err != nil {
		t.Fatal(err)
	}

	st, err := online.New(fs, rdb, noSnapshots{}, online.Options{UserReadTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"u1/" + features.FeatureSessionKey:          features.SessionKey("s1"),
		"u1/" + features.FeatureSessionStartMs:      t0.UnixMilli(),
		"u1/" + features.FeatureSessionInteractions: int64(3), // click, view, purchase
		"u1/user_session_clicks":                    int64(1),
		"u1/user_session_recent_items":              []string{"i2", "i1"},
		"u1/" + features.FeatureLastInteractionMs:   t0.Add(3 * time.Minute).UnixMilli(),
		"u1/user_clicks_1h":                         int64(1), // the click 60 minutes ago is out
		"u1/user_purchases_1h":                      int64(1),
		"i1/item_clicks_1h":                         int64(7), // u1 once (its retry dropped), u2..u7
		"i1/item_impressions_1h":                    int64(7),
		"i1/item_ctr_1h":                            float32((7 + 100*0.03) / (7 + 100.0)),
		"i1/item_trending_velocity_30m":             float32((7 + 1) / (1 + 1.0)),
		// user×item: u1 was shown i1 once (Explain lists pair values
		// under the item's id).
		"i1/ui_impressions_1h": int64(1),
	}
	expectValues(ctx, t, st, want)
	// With no further events, the windowed values are rewritten once per
	// Refresh with the time they are correct at, so readers keep finding
	// them within their freshness SLA.
	after := time.Now()
	testenv.Eventually(t, 30*time.Second, func() error {
		if err := st.RefreshNearline(ctx); err != nil {
			return err
		}
		ex, err := st.Explain(ctx, "u1", []string{"i1"}, online.Request{Now: time.Now()})
		if err != nil {
			return err
		}
		var errs []error
		for _, v := range ex.Values {
			if (v.EntityID == "u1" && v.Feature.Name == "user_clicks_1h") || (v.EntityID == "i1" && v.Feature.Name == "item_clicks_1h") ||
				(v.EntityID == "i1" && v.Feature.Name == "ui_impressions_1h") {
				if !v.UpdatedAt.After(after) {
					errs = append(errs, fmt.Errorf("%s %s written at %s, not rewritten since %s", v.EntityID, v.Feature.Name, v.UpdatedAt, after))
				}
			}
		}
		return errors.Join(errs...)
	})
	expectValues(ctx, t, st, want)
	// A later impression reaches u1's user×item set (at most
	// Config.PairInterval after the set's last write), which keeps i1's.
	if err := p.Publish(ctx, interaction("u1-imp-i2", time.Now(), "u1", "i2", "s1", adaptrecv1.Action_ACTION_IMPRESSION)); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		ex, err := st.Explain(ctx, "u1", []string{"i1", "i2"}, online.Request{Now: time.Now()})
		if err != nil {
			return err
		}
		got := map[string]int64{}
		for _, v := range ex.Values {
			if v.Feature.Name == "ui_impressions_1h" {
				got[v.EntityID] = v.Value.Int
			}
		}
		if got["i1"] != 1 || got["i2"] != 1 {
			return fmt.Errorf("u1's ui_impressions_1h %v, want i1 and i2 once each", got)
		}
		return nil
	})
	if s := c.Stats(); s.Duplicates != 1 || s.DeadLettered != 1 {
		t.Errorf("stats %+v: want 1 duplicate and 1 dead letter", s)
	}

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Kafka.Brokers, GroupID: "dlq-reader", Topic: events.TopicDeadLetter, StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
	defer rcancel()
	m, err := r.ReadMessage(rctx)
	if err != nil {
		t.Fatalf("read dead letter: %v", err)
	}
	headers := map[string]string{}
	for _, h := range m.Headers {
		headers[h.Key] = string(h.Value)
	}
	if string(m.Value) != "not an event" || headers[events.DeadLetterHeaderReasonCode] != "not_protobuf" ||
		headers[events.DeadLetterHeaderOriginTopic] != events.TopicInteractions || headers[events.DeadLetterHeaderReason] == "" {
		t.Errorf("dead letter %q with headers %v", m.Value, headers)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// expectValues waits until the store serves want ("<id>/<feature>" to an
// int64, float32 or []string) for user u1 and item i1.
func expectValues(ctx context.Context, t *testing.T, st *online.Store, want map[string]any) {
	t.Helper()
	testenv.Eventually(t, 60*time.Second, func() error {
		if err := st.RefreshNearline(ctx); err != nil {
			return err
		}
		ex, err := st.Explain(ctx, "u1", []string{"i1"}, online.Request{Now: time.Now()})
		if err != nil {
			return err
		}
		var errs []error
		seen := 0
		for _, v := range ex.Values {
			w, ok := want[v.EntityID+"/"+v.Feature.Name]
			if !ok {
				continue
			}
			seen++
			if v.Feature.Entity == features.EntityUserItem && v.Entity != features.EntityUserItem {
				errs = append(errs, fmt.Errorf("%s %s explained as a %s value", v.EntityID, v.Feature.Name, v.Entity))
			}
			var got any
			switch w.(type) {
			case int64:
				got = v.Value.Int
			case float32:
				got = v.Value.Float
			case []string:
				got = v.Value.List
			}
			eq := fmt.Sprint(got) == fmt.Sprint(w)
			if l, ok := w.([]string); ok {
				eq = slices.Equal(l, v.Value.List)
			}
			if !eq {
				errs = append(errs, fmt.Errorf("%s %s = %v (source %v), want %v", v.EntityID, v.Feature.Name, got, v.Source, w))
			}
		}
		if seen != len(want) {
			errs = append(errs, fmt.Errorf("explained %d of the %d expected values", seen, len(want)))
		}
		return errors.Join(errs...)
	})
}

// TestConsumerRebuildsStateAfterRestart stops a consumer after its batches
// are committed and starts another in the same group: the new owner
// re-reads the last hour to rebuild its windows and sessions, so counts
// continue instead of restarting from zero, and the replay neither counts
// duplicates nor dead-letters again.
func TestConsumerRebuildsStateAfterRestart(t *testing.T) {
	env := testenv.New(t, testenv.Kafka, testenv.Redis)
	cfg := env.Config()
	if err := events.CreateTopics(t.Context(), cfg.Kafka, 2, events.TopicInteractions, events.TopicDeadLetter); err != nil {
		t.Fatal(err)
	}
	fs, err := features.Load("../../features/features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rdb := online.NewClient(cfg.Redis)
	t.Cleanup(func() { rdb.Close() })
	start := func() (*nearline.Consumer, func()) {
		c, err := nearline.New(nearline.Config{Kafka: cfg.Kafka, GroupID: "nearline-restart", FlushInterval: 50 * time.Millisecond}, fs, rdb, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		return c, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	p, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	st, err := online.New(fs, rdb, noSnapshots{}, online.Options{UserReadTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().UTC().Truncate(time.Millisecond).Add(-5 * time.Minute)
	first := []*adaptrecv1.Event{
		interaction("a1", t0, "u1", "i1", "s1", adaptrecv1.Action_ACTION_CLICK),
		interaction("a2", t0.Add(time.Second), "u2", "i1", "s2", adaptrecv1.Action_ACTION_CLICK),
		interaction("a3", t0.Add(2*time.Second), "u3", "i1", "s3", adaptrecv1.Action_ACTION_CLICK),
	}
	c1, stop1 := start()
	if err := p.Publish(t.Context(), append(first, first[0])...); err != nil {
		t.Fatal(err)
	}
	if err := p.WriteMessages(t.Context(), kafka.Message{Topic: events.TopicInteractions, Key: []byte("u1"), Value: []byte{0xff}}); err != nil {
		t.Fatal(err)
	}
	expectValues(t.Context(), t, st, map[string]any{"u1/user_session_clicks": int64(1), "i1/item_clicks_1h": int64(3)})
	testenv.Eventually(t, 30*time.Second, func() error {
		if s := c1.Stats(); s.Applied != 3 || s.DeadLettered != 1 || s.Duplicates != 1 {
			return fmt.Errorf("first consumer stats %+v", s)
		}
		return nil
	})
	stop1()

	c2, stop2 := start()
	defer stop2()
	if err := p.Publish(t.Context(),
		interaction("b1", t0.Add(time.Minute), "u1", "i1", "s1", adaptrecv1.Action_ACTION_CLICK),
		interaction("b2", t0.Add(time.Minute), "u2", "i1", "s2", adaptrecv1.Action_ACTION_IMPRESSION)); err != nil {
		t.Fatal(err)
	}
	expectValues(t.Context(), t, st, map[string]any{
		"u1/user_session_clicks": int64(2), "u1/user_clicks_1h": int64(2),
		"i1/item_clicks_1h": int64(4), "i1/item_impressions_1h": int64(1),
	})
	if s := c2.Stats(); s.DeadLettered != 0 || s.Duplicates != 0 {
		t.Errorf("second consumer stats %+v: the replay must not dead-letter or count duplicates again", s)
	}
}

// TestTwoConsumersShareItemCounts runs two consumers in one group over two
// partitions (joining one after the other, so the group rebalances while
// events flow): the item's count is the sum of both partitions' shards.
func TestTwoConsumersShareItemCounts(t *testing.T) {
	env := testenv.New(t, testenv.Kafka, testenv.Redis)
	cfg := env.Config()
	if err := events.CreateTopics(t.Context(), cfg.Kafka, 2, events.TopicInteractions, events.TopicDeadLetter); err != nil {
		t.Fatal(err)
	}
	fs, err := features.Load("../../features/features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rdb := online.NewClient(cfg.Redis)
	t.Cleanup(func() { rdb.Close() })
	p, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	t0 := time.Now().UTC().Truncate(time.Millisecond).Add(-5 * time.Minute)
	var consumers []*nearline.Consumer
	for k := range 2 {
		c, err := nearline.New(nearline.Config{Kafka: cfg.Kafka, GroupID: "nearline-two", FlushInterval: 50 * time.Millisecond}, fs, rdb, nil)
		if err != nil {
			t.Fatal(err)
		}
		consumers = append(consumers, c)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
		var evs []*adaptrecv1.Event
		for i := range 4 {
			u := fmt.Sprintf("u%d-%d", k, i)
			evs = append(evs,
				interaction(u+"-imp", t0.Add(time.Duration(i)*time.Second), u, "i1", "s", adaptrecv1.Action_ACTION_IMPRESSION),
				interaction(u+"-click", t0.Add(time.Duration(i)*time.Second+1), u, "i1", "s", adaptrecv1.Action_ACTION_CLICK))
		}
		if err := p.Publish(t.Context(), evs...); err != nil {
			t.Fatal(err)
		}
	}
	st, err := online.New(fs, rdb, noSnapshots{}, online.Options{UserReadTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	expectValues(t.Context(), t, st, map[string]any{"i1/item_clicks_1h": int64(8), "i1/item_impressions_1h": int64(8)})
	if n, err := rdb.HLen(t.Context(), online.DefaultKeyPrefix+"{i1}:nls").Result(); err != nil || n != 2 {
		t.Errorf("item i1 has %d shards (%v), want one per partition", n, err)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		for i, c := range consumers {
			if err := c.Ready(t.Context()); err != nil {
				return fmt.Errorf("consumer %d: %w", i, err)
			}
		}
		return nil
	})
}
