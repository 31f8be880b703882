package feedback_test

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/adaptrec/adaptrec/consumers/feedback"
	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/metricstest"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

// clock is a settable clock for Config.Now: the stream time of caught-up
// partitions follows it, so tests decide when windows close.
type clock struct{ ns atomic.Int64 }

func (c *clock) set(t time.Time) { c.ns.Store(t.UnixNano()) }
func (c *clock) now() time.Time  { return time.Unix(0, c.ns.Load()) }

const (
	full   = adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_FULL
	simple = adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_SIMPLE_RANKING
)

// fixture publishes events and runs consumers against one broker.
type fixture struct {
	t   *testing.T
	cfg config.Config
	p   *events.Producer
}

func newFixture(t *testing.T) *fixture {
	env := testenv.New(t, testenv.Kafka)
	cfg := env.Config()
	if err := events.CreateTopics(t.Context(), cfg.Kafka, 2, events.TopicPredictions, events.TopicInteractions, events.TopicModelAccuracy); err != nil {
		t.Fatal(err)
	}
	if err := events.CreateTopics(t.Context(), cfg.Kafka, 1, events.TopicDeadLetter); err != nil {
		t.Fatal(err)
	}
	p, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &fixture{t: t, cfg: cfg, p: p}
}

func (f *fixture) publish(evs ...*adaptrecv1.Event) {
	f.t.Helper()
	if err := f.p.Publish(f.t.Context(), evs...); err != nil {
		f.t.Fatal(err)
	}
}

// start runs a consumer of group until the returned stop is called.
func (f *fixture) start(group string, clk *clock) (c *feedback.Consumer, stop func()) {
	f.t.Helper()
	c, err := feedback.New(feedback.Config{Kafka: f.cfg.Kafka, GroupID: group, Window: time.Minute, AttributionWindow: 30 * time.Minute,
		EmitDelay: 5 * time.Second, FlushInterval: 50 * time.Millisecond, Idle: 50 * time.Millisecond, Producer: "feedback-test", Now: clk.now}, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(f.t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	testenv.Eventually(f.t, 60*time.Second, func() error { return c.Ready(ctx) })
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			f.t.Errorf("Run: %v", err)
		}
	}
	f.t.Cleanup(stop)
	return c, stop
}

func prediction(id string, at time.Time, req, version, arm string, latency float64, level adaptrecv1.DegradationLevel, items ...string) *adaptrecv1.Event {
	p := &adaptrecv1.PredictionEvent{RequestId: req, UserId: "user-" + req, ModelVersion: version, ExperimentArm: arm,
		LatencyMs: latency, DegradationLevel: level}
	for i, it := range items {
		p.Items = append(p.Items, &adaptrecv1.ServedItem{ItemId: it, Score: float32(10 - i), Position: int32(i)})
	}
	return events.NewPrediction(id, at, "test", p)
}

func interaction(id string, at time.Time, req, item string, a adaptrecv1.Action, value float64) *adaptrecv1.Event {
	return events.NewInteraction(id, at, "test", &adaptrecv1.UserInteractionEvent{UserId: "user-" + req, ItemId: item, Action: a,
		Value: value, RequestId: req, Position: -1})
}

func accuracy(version, arm string, start time.Time, requests, impressions, clicks, conversions, errs int64, engagement, p99 float64) *adaptrecv1.ModelAccuracyEvent {
	ctr := 0.0
	if impressions > 0 {
		ctr = float64(clicks) / float64(impressions)
	}
	return &adaptrecv1.ModelAccuracyEvent{ModelVersion: version, ExperimentArm: arm,
		WindowStart: timestamppb.New(start), WindowEnd: timestamppb.New(start.Add(time.Minute)),
		Requests: requests, Impressions: impressions, Clicks: clicks, Conversions: conversions, Ctr: ctr,
		EngagementSeconds: engagement, LatencyP99Ms: p99, Errors: errs}
}

// accuracyEvents waits until the topic holds n ModelAccuracyEvents and
// returns them in window, version, arm order, checking ids and envelopes.
func (f *fixture) accuracyEvents(n int) []*adaptrecv1.ModelAccuracyEvent {
	f.t.Helper()
	var got []*adaptrecv1.Event
	testenv.Eventually(f.t, 60*time.Second, func() error {
		got = testenv.TopicEvents(f.t, f.cfg.Kafka, events.TopicModelAccuracy)
		if len(got) < n {
			return fmt.Errorf("%d accuracy events, waiting for %d", len(got), n)
		}
		return nil
	})
	var out []*adaptrecv1.ModelAccuracyEvent
	for _, e := range got {
		m := e.GetModelAccuracy()
		if want := feedback.EventID(m.GetModelVersion(), m.GetExperimentArm(), m.GetWindowStart().AsTime(), m.GetWindowEnd().AsTime()); e.GetEnvelope().GetEventId() != want {
			f.t.Errorf("event id %s, want %s", e.GetEnvelope().GetEventId(), want)
		}
		if !e.GetEnvelope().GetEventTime().AsTime().Equal(m.GetWindowEnd().AsTime()) {
			f.t.Errorf("event time %s, want the window end %s", e.GetEnvelope().GetEventTime().AsTime(), m.GetWindowEnd().AsTime())
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b *adaptrecv1.ModelAccuracyEvent) int {
		return cmp.Or(a.GetWindowStart().AsTime().Compare(b.GetWindowStart().AsTime()),
			cmp.Compare(a.GetModelVersion(), b.GetModelVersion()), cmp.Compare(a.GetExperimentArm(), b.GetExperimentArm()))
	})
	return out
}

func sameAccuracy(t *testing.T, got, want []*adaptrecv1.ModelAccuracyEvent) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d accuracy events, want %d:\ngot  %v\nwant %v", len(got), len(want), got, want)
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("accuracy event %d:\ngot  %v\nwant %v", i, got[i], want[i])
		}
	}
}

func sameArms(t *testing.T, got, want []feedback.ArmAccuracy) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ReadAccuracy:\ngot  %+v\nwant %+v", got, want)
	}
}

// TestConsumerEmitsAccuracy publishes predictions of two versions and
// arms over two windows, interactions (credited, repeated, organic, a
// producer retry), two malformed messages and, after the windows were
// emitted, a late interaction; it checks the exact ModelAccuracyEvents, the
// dead letters, the counts and ReadAccuracy.
func TestConsumerEmitsAccuracy(t *testing.T) {
	f := newFixture(t)
	base := time.Now().UTC().Truncate(time.Minute).Add(-10 * time.Minute)
	w0, w1 := base, base.Add(time.Minute)
	shadow := prediction("p-shadow", w0.Add(time.Second), "r1", "v3", "shadow", 99, full, "c", "b", "a")
	shadow.GetPrediction().Shadow = true
	retry := interaction("i-r5-x", w0.Add(42*time.Second), "r5", "x", adaptrecv1.Action_ACTION_CLICK, 0)
	f.publish(
		prediction("p1", w0.Add(time.Second), "r1", "v1", "production", 10, full, "a", "b", "c"),
		prediction("p2", w0.Add(20*time.Second), "r2", "v1", "production", 20, simple, "a", "b"),
		prediction("p3", w1.Add(5*time.Second), "r3", "v1", "production", 15, full, "a", "b"),
		prediction("p4", w0.Add(30*time.Second), "r4", "v1", "canary", 12, full, "a", "b"),
		prediction("p5", w0.Add(40*time.Second), "r5", "v2", "canary", 40, full, "x", "y", "z"),
		prediction("p6", w1.Add(10*time.Second), "r6", "v2", "canary", 8, full, "x"),
		shadow,
		interaction("i-r1-a", w0.Add(2*time.Second), "r1", "a", adaptrecv1.Action_ACTION_CLICK, 0),
		interaction("i-r1-a2", w0.Add(3*time.Second), "r1", "a", adaptrecv1.Action_ACTION_CLICK, 0),
		interaction("i-r1-b", w0.Add(4*time.Second), "r1", "b", adaptrecv1.Action_ACTION_PURCHASE, 25),
		interaction("i-r1-w", w0.Add(5*time.Second), "r1", "b", adaptrecv1.Action_ACTION_WATCH, 30),
		retry,
		interaction("i-r5-y", w0.Add(43*time.Second), "r5", "y", adaptrecv1.Action_ACTION_CLICK, 0),
		interaction("i-r3-a", w1.Add(9*time.Second), "r3", "a", adaptrecv1.Action_ACTION_CLICK, 0),
		interaction("i-r6-w", w1.Add(12*time.Second), "r6", "x", adaptrecv1.Action_ACTION_WATCH, 12),
		interaction("i-organic", w0.Add(9*time.Second), "", "a", adaptrecv1.Action_ACTION_CLICK, 0),
		retry, // a producer retry: same event id
	)
	bad := prediction("p-bad", w0.Add(time.Second), "r9", "", "production", 1, full, "a")
	badValue, err := proto.Marshal(bad)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.p.WriteMessages(t.Context(),
		kafka.Message{Topic: events.TopicInteractions, Key: []byte("user-r1"), Value: []byte("not an event")},
		kafka.Message{Topic: events.TopicPredictions, Key: []byte("user-r9"), Value: badValue}); err != nil {
		t.Fatal(err)
	}

	var clk clock
	clk.set(base.Add(3 * time.Minute)) // both windows are over
	c, stop := f.start("feedback-test", &clk)
	want := []*adaptrecv1.ModelAccuracyEvent{
		accuracy("v1", "canary", w0, 1, 2, 0, 0, 0, 0, 12),
		accuracy("v1", "production", w0, 2, 5, 1, 1, 1, 30, 20),
		accuracy("v2", "canary", w0, 1, 3, 2, 0, 0, 0, 40),
		accuracy("v1", "production", w1, 1, 2, 1, 0, 0, 0, 15),
		accuracy("v2", "canary", w1, 1, 1, 0, 0, 0, 12, 8),
	}
	sameAccuracy(t, f.accuracyEvents(len(want)), want)

	// Read after its window was emitted: late, not added.
	f.publish(interaction("i-late", w0.Add(50*time.Second), "r2", "a", adaptrecv1.Action_ACTION_CLICK, 0))
	testenv.Eventually(t, 30*time.Second, func() error {
		if s := c.Stats(); s.Late != 1 {
			return fmt.Errorf("stats %+v: waiting for the late interaction", s)
		}
		return nil
	})
	s := c.Stats()
	wantStats := feedback.Stats{Predictions: 6, Shadow: 1, Interactions: 10, Joined: 8, Late: 1, Duplicates: 1, DeadLettered: 2, Emitted: 5,
		Unmatched: map[string]int64{feedback.ReasonNoRequestID: 1}}
	s.Commits, wantStats.Commits = 0, 0
	if fmt.Sprint(s) != fmt.Sprint(wantStats) {
		t.Errorf("stats %+v, want %+v", s, wantStats)
	}
	for labels, want := range map[[2]string]float64{{"v1", "production"}: 0.5, {"v2", "canary"}: 0, {"v1", "canary"}: 0} {
		if v, ok := metricstest.Value(t, "adaptrec_feedback_online_ctr", map[string]string{"model_version": labels[0], "arm": labels[1]}); !ok || v != want {
			t.Errorf("online CTR of %v = %v (%v), want %v", labels, v, ok, want)
		}
	}
	if v, _ := metricstest.Value(t, "adaptrec_feedback_late_total", map[string]string{"kind": "interaction"}); v < 1 {
		t.Errorf("adaptrec_feedback_late_total{kind=interaction} = %v, want >= 1", v)
	}
	stop()

	// Dead letters: both malformed messages, with their reasons.
	codes := map[string]string{}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: f.cfg.Kafka.Brokers, Topic: events.TopicDeadLetter, Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	for range 2 {
		rctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		m, err := r.ReadMessage(rctx)
		cancel()
		if err != nil {
			t.Fatalf("read dead letter: %v", err)
		}
		h := map[string]string{}
		for _, x := range m.Headers {
			h[x.Key] = string(x.Value)
		}
		codes[h[events.DeadLetterHeaderOriginTopic]] = h[events.DeadLetterHeaderReasonCode]
		if h[events.DeadLetterHeaderConsumerGroup] != "feedback-test" || h[events.DeadLetterHeaderReason] == "" {
			t.Errorf("dead letter headers %v", h)
		}
	}
	if want := map[string]string{events.TopicInteractions: "not_protobuf", events.TopicPredictions: "invalid_prediction_model_version"}; fmt.Sprint(codes) != fmt.Sprint(want) {
		t.Errorf("dead letter reason codes %v, want %v", codes, want)
	}

	ctx := t.Context()
	got, err := feedback.ReadAccuracy(ctx, f.cfg.Kafka, base, base.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	sameArms(t, got, []feedback.ArmAccuracy{
		{ModelVersion: "v1", Arm: "canary", Requests: 1, Impressions: 2, LatencyP99Ms: 12, Windows: 1, From: w0, To: w1},
		{ModelVersion: "v1", Arm: "production", Requests: 3, Impressions: 7, Clicks: 2, Conversions: 1, Errors: 1, CTR: 2.0 / 7,
			EngagementSeconds: 30, LatencyP99Ms: 20, Windows: 2, From: w0, To: w1.Add(time.Minute)},
		{ModelVersion: "v2", Arm: "canary", Requests: 2, Impressions: 4, Clicks: 2, CTR: 0.5, EngagementSeconds: 12, LatencyP99Ms: 40,
			Windows: 2, From: w0, To: w1.Add(time.Minute)},
	})
	// A window emitted again (same id, whatever it says) counts once.
	again := events.NewModelAccuracy(feedback.EventID("v2", "canary", w1, w1.Add(time.Minute)), w1.Add(time.Minute), "other",
		accuracy("v2", "canary", w1, 100, 100, 100, 0, 0, 0, 1))
	f.publish(again)
	// Only the first window.
	got, err = feedback.ReadAccuracy(ctx, f.cfg.Kafka, base, base.Add(90*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	sameArms(t, got, []feedback.ArmAccuracy{
		{ModelVersion: "v1", Arm: "canary", Requests: 1, Impressions: 2, LatencyP99Ms: 12, Windows: 1, From: w0, To: w1},
		{ModelVersion: "v1", Arm: "production", Requests: 2, Impressions: 5, Clicks: 1, Conversions: 1, Errors: 1, CTR: 0.2,
			EngagementSeconds: 30, LatencyP99Ms: 20, Windows: 1, From: w0, To: w1},
		{ModelVersion: "v2", Arm: "canary", Requests: 1, Impressions: 3, Clicks: 2, CTR: 2.0 / 3, LatencyP99Ms: 40, Windows: 1, From: w0, To: w1},
	})
	got, err = feedback.ReadAccuracy(ctx, f.cfg.Kafka, w1, w1.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	sameArms(t, got, []feedback.ArmAccuracy{
		{ModelVersion: "v1", Arm: "production", Requests: 1, Impressions: 2, Clicks: 1, CTR: 0.5, LatencyP99Ms: 15, Windows: 1, From: w1, To: w1.Add(time.Minute)},
		{ModelVersion: "v2", Arm: "canary", Requests: 1, Impressions: 1, EngagementSeconds: 12, LatencyP99Ms: 8, Windows: 1, From: w1, To: w1.Add(time.Minute)},
	})
	if _, err := feedback.ReadAccuracy(ctx, f.cfg.Kafka, w1, w0); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("ReadAccuracy with to before from: %v, want an error saying the range is empty", err)
	}
}

// TestRestartDoesNotDoubleCount stops the consumer while a window is open
// (after it emitted an earlier one), publishes more, and starts another
// consumer of the group: every window is emitted once and ReadAccuracy
// counts every request and click once.
func TestRestartDoesNotDoubleCount(t *testing.T) {
	f := newFixture(t)
	base := time.Now().UTC().Truncate(time.Minute).Add(-10 * time.Minute)
	prev, w0 := base.Add(-time.Minute), base
	// Each user's W0 prediction comes before their prediction of the
	// earlier window in their partition, so the committed offset stays
	// below the earlier window's messages: the second consumer reads them
	// again.
	var first []*adaptrecv1.Event
	for i := range 6 {
		req := fmt.Sprintf("a%d", i)
		old := prediction("p-old-"+req, prev.Add(time.Duration(30+i)*time.Second), "old-"+req, "v1", "production", 1, full, "a")
		old.GetPrediction().UserId = "user-" + req
		oldClick := interaction("i-old-"+req, prev.Add(time.Duration(31+i)*time.Second), "old-"+req, "a", adaptrecv1.Action_ACTION_CLICK, 0)
		oldClick.GetInteraction().UserId = "user-" + req
		first = append(first,
			prediction("p-"+req, w0.Add(time.Duration(i)*time.Second), req, "v1", "production", float64(10+i), full, "a", "b"),
			old, oldClick,
			interaction("i-"+req, w0.Add(time.Duration(i+1)*time.Second), req, "a", adaptrecv1.Action_ACTION_CLICK, 0))
	}
	f.publish(first...)
	var clk clock
	clk.set(base.Add(10 * time.Second)) // the earlier window is over, W0 is not
	c, stop := f.start("feedback-restart", &clk)
	sameAccuracy(t, f.accuracyEvents(1), []*adaptrecv1.ModelAccuracyEvent{accuracy("v1", "production", prev, 6, 6, 6, 0, 0, 0, 1)})
	testenv.Eventually(t, 30*time.Second, func() error {
		if s := c.Stats(); s.Predictions != 12 || s.Joined != 12 || s.Commits == 0 {
			return fmt.Errorf("stats %+v: waiting for every event and a commit", s)
		}
		return nil
	})
	stop()

	var second []*adaptrecv1.Event
	for i := range 6 {
		req := fmt.Sprintf("b%d", i)
		second = append(second,
			prediction("p-"+req, w0.Add(time.Duration(20+i)*time.Second), req, "v1", "production", float64(20+i), full, "a", "b"),
			interaction("i-"+req, w0.Add(time.Duration(21+i)*time.Second), req, "b", adaptrecv1.Action_ACTION_CLICK, 0),
			// Clicks on the first consumer's W0 requests.
			interaction("i2-a"+fmt.Sprint(i), w0.Add(time.Duration(30+i)*time.Second), fmt.Sprintf("a%d", i), "b", adaptrecv1.Action_ACTION_CLICK, 0))
	}
	f.publish(second...)
	clk.set(base.Add(2 * time.Minute))
	c2, _ := f.start("feedback-restart", &clk)
	want := []*adaptrecv1.ModelAccuracyEvent{
		accuracy("v1", "production", prev, 6, 6, 6, 0, 0, 0, 1),
		accuracy("v1", "production", w0, 12, 24, 18, 0, 0, 0, 25),
	}
	sameAccuracy(t, f.accuracyEvents(2), want)
	// The earlier window, read again, was recognised as emitted.
	testenv.Eventually(t, 30*time.Second, func() error {
		if s := c2.Stats(); s.LatePredictions != 6 {
			return fmt.Errorf("stats %+v: waiting for the earlier window's predictions to be read again", s)
		}
		return nil
	})
	got, err := feedback.ReadAccuracy(t.Context(), f.cfg.Kafka, prev, w0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	sameArms(t, got, []feedback.ArmAccuracy{{ModelVersion: "v1", Arm: "production", Requests: 18, Impressions: 30, Clicks: 24,
		CTR: 24.0 / 30, LatencyP99Ms: 25, Windows: 2, From: prev, To: w0.Add(time.Minute)}})
	sameAccuracy(t, f.accuracyEvents(2), want) // and nothing emitted twice
}

// TestShadowReport publishes served and shadow predictions with known
// scores and latencies and reads the report.
func TestShadowReport(t *testing.T) {
	f := newFixture(t)
	now := time.Now().UTC()
	pred := func(id, req, version string, shadow bool, latency float64, items ...any) *adaptrecv1.Event {
		p := &adaptrecv1.PredictionEvent{RequestId: req, UserId: "user-" + req, ModelVersion: version, Shadow: shadow,
			LatencyMs: latency, DegradationLevel: full}
		for i := 0; i < len(items); i += 2 {
			p.Items = append(p.Items, &adaptrecv1.ServedItem{ItemId: items[i].(string), Score: float32(items[i+1].(float64)), Position: int32(i / 2)})
		}
		return events.NewPrediction(id, now, "test", p)
	}
	var evs []*adaptrecv1.Event
	var xs, ys, latencies []float64
	// Ten requests, each served by v1 (items i0..i3) and mirrored to v2,
	// whose scores are the served ones plus noise, the last two items
	// swapped on every other request.
	for r := range 10 {
		req := fmt.Sprintf("r%d", r)
		var sv, sh []any
		scores := []float64{0.9 - 0.01*float64(r), 0.7 - 0.01*float64(r), 0.4 + 0.01*float64(r), 0.1}
		shadowScores := []float64{scores[0] + 0.02, scores[1] - 0.03*float64(r%3), scores[2], scores[3]}
		if r%2 == 1 {
			shadowScores[2], shadowScores[3] = 0.05, 0.45
		}
		for i := range 4 {
			sv = append(sv, fmt.Sprintf("i%d", i), scores[i])
			xs = append(xs, float64(float32(scores[i])))
			ys = append(ys, float64(float32(shadowScores[i])))
		}
		// The shadow list in its own ranking order.
		order := []int{0, 1, 2, 3}
		slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(shadowScores[b], shadowScores[a]) })
		for _, i := range order {
			sh = append(sh, fmt.Sprintf("i%d", i), shadowScores[i])
		}
		lat := float64(r + 1)
		latencies = append(latencies, lat)
		evs = append(evs, pred("s-"+req, req, "v1", false, 3, sv...), pred("m-"+req, req, "v2", true, lat, sh...))
	}
	// A mirror whose served prediction is missing, another version's
	// mirror, and a served one with no mirror.
	evs = append(evs, pred("m-lost", "lost", "v2", true, 100, "i0", 0.5), pred("m-v9", "r0", "v9", true, 1, "i0", 0.5),
		pred("s-alone", "alone", "v1", false, 1, "i0", 0.5))
	latencies = append(latencies, 100)
	f.publish(evs...)

	rep, err := feedback.ReadShadowReport(t.Context(), f.cfg.Kafka, "v2", now.Add(-time.Minute), now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	var mx, my, sxy, sxx, syy float64
	for i := range xs {
		mx += xs[i] / float64(len(xs))
		my += ys[i] / float64(len(ys))
	}
	for i := range xs {
		sxy += (xs[i] - mx) * (ys[i] - my)
		sxx += (xs[i] - mx) * (xs[i] - mx)
		syy += (ys[i] - my) * (ys[i] - my)
	}
	wantCorr := sxy / math.Sqrt(sxx*syy)
	// Odd requests swap the last two of four items: Spearman 1 - 6*2/60 = 0.8.
	wantRank := (5*1 + 5*0.8) / 10.0
	if rep.Requests != 11 || rep.Matched != 10 || strings.Join(rep.ProductionVersions, ",") != "v1" {
		t.Errorf("requests %d, matched %d, production versions %v; want 11, 10, [v1]", rep.Requests, rep.Matched, rep.ProductionVersions)
	}
	if math.Abs(rep.ScoreCorrelation-wantCorr) > 1e-9 || math.Abs(rep.RankCorrelation-wantRank) > 1e-12 || rep.TopKOverlap != 1 {
		t.Errorf("score correlation %v, rank correlation %v, top-10 overlap %v; want %v, %v, 1", rep.ScoreCorrelation, rep.RankCorrelation, rep.TopKOverlap, wantCorr, wantRank)
	}
	// Nearest rank over 1..10 and 100: p50 is the 6th, p99 the 11th.
	if rep.LatencyP50Ms != 6 || rep.LatencyP99Ms != 100 || rep.ErrorRate != 0 || len(rep.Notes) != 0 {
		t.Errorf("latency p50 %v, p99 %v, error rate %v, notes %q; want 6, 100, 0, none", rep.LatencyP50Ms, rep.LatencyP99Ms, rep.ErrorRate, rep.Notes)
	}

	// No shadow predictions in the range: zeros, with notes, no NaN.
	rep, err = feedback.ReadShadowReport(t.Context(), f.cfg.Kafka, "v2", now.Add(time.Hour), now.Add(2*time.Hour))
	if err != nil || rep.Requests != 0 || rep.ScoreCorrelation != 0 || len(rep.Notes) == 0 {
		t.Errorf("report of an empty range: %+v, %v", rep, err)
	}
	if _, err := feedback.ReadShadowReport(t.Context(), f.cfg.Kafka, "", now, now.Add(time.Minute)); err == nil {
		t.Error("ReadShadowReport without a version succeeded")
	}
	down := f.cfg.Kafka
	down.Brokers = []string{"127.0.0.1:1"}
	if _, err := feedback.ReadShadowReport(t.Context(), down, "v2", now.Add(-time.Minute), now); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("ReadShadowReport with no broker: %v, want an error saying the brokers are unreachable", err)
	}
	if _, err := feedback.ReadAccuracy(t.Context(), down, now.Add(-time.Minute), now); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("ReadAccuracy with no broker: %v, want an error naming the broker", err)
	}
}
