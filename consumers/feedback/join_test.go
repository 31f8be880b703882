package feedback

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

var (
	t0   = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	unit = params{window: time.Minute.Milliseconds(), attribution: (30 * time.Minute).Milliseconds(),
		delay: (30 * time.Second).Milliseconds(), retain: time.Hour.Milliseconds()}
)

func ms(d time.Duration) int64 { return t0.Add(d).UnixMilli() }

func served(req, version, arm string, latency float64, level adaptrecv1.DegradationLevel, items ...string) *adaptrecv1.PredictionEvent {
	p := &adaptrecv1.PredictionEvent{RequestId: req, UserId: "u-" + req, ModelVersion: version, ExperimentArm: arm,
		LatencyMs: latency, DegradationLevel: level}
	for i, it := range items {
		p.Items = append(p.Items, &adaptrecv1.ServedItem{ItemId: it, Score: float32(len(items) - i), Position: int32(i)})
	}
	return p
}

func act(req, item string, a adaptrecv1.Action, value float64) *adaptrecv1.UserInteractionEvent {
	return &adaptrecv1.UserInteractionEvent{UserId: "u-" + req, ItemId: item, Action: a, Value: value, RequestId: req}
}

func accuracy(version, arm string, start time.Duration, requests, impressions, clicks, conversions, errs int64, engagement, p99 float64) *adaptrecv1.ModelAccuracyEvent {
	ctr := 0.0
	if impressions > 0 {
		ctr = float64(clicks) / float64(impressions)
	}
	return &adaptrecv1.ModelAccuracyEvent{ModelVersion: version, ExperimentArm: arm,
		WindowStart: timestamppb.New(t0.Add(start)), WindowEnd: timestamppb.New(t0.Add(start + time.Minute)),
		Requests: requests, Impressions: impressions, Clicks: clicks, Conversions: conversions, Ctr: ctr,
		EngagementSeconds: engagement, LatencyP99Ms: p99, Errors: errs}
}

func sameEvents(t *testing.T, got, want []*adaptrecv1.ModelAccuracyEvent) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d:\ngot  %v\nwant %v", len(got), len(want), got, want)
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("event %d:\ngot  %v\nwant %v", i, got[i], want[i])
		}
	}
}

const (
	full   = adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_FULL
	simple = adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_SIMPLE_RANKING
	stale  = adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_STALE_FEATURES
	click  = adaptrecv1.Action_ACTION_CLICK
	buy    = adaptrecv1.Action_ACTION_PURCHASE
	watch  = adaptrecv1.Action_ACTION_WATCH
)

// TestJoinWindows drives the engine through every way an interaction is
// credited or not and checks the windows it emits, the counts and the
// commit points.
func TestJoinWindows(t *testing.T) {
	t.Parallel()
	e := newEngine(unit, nil)
	pq, iq := newHoldQueue(), newHoldQueue()
	poff, ioff := int64(100), int64(500)
	pred := func(d time.Duration, p *adaptrecv1.PredictionEvent) {
		e.prediction(pq, poff, ms(d), p, false)
		poff++
	}
	inter := func(d time.Duration, in *adaptrecv1.UserInteractionEvent) {
		e.interaction(iq, ioff, ms(d), ms(d), in, false)
		ioff++
	}
	pred(time.Second, served("r1", "v1", "production", 10, full, "a", "b", "c")) // 100
	pred(20*time.Second, served("r2", "v1", "production", 30, simple, "a", "b")) // 101: an error
	pred(30*time.Second, served("r3", "v2", "canary", 5, full, "x", "y"))        // 102
	pred(61*time.Second, served("r4", "v1", "production", 7, stale, "a"))        // 103: next window, not an error
	shadow := served("r1", "v3", "shadow", 99, full, "c", "b", "a")              // never shown
	shadow.Shadow = true
	pred(time.Second, shadow)                                                    // 104
	pred(time.Second, served("r1", "v1", "production", 10, full, "a", "b", "c")) // 105: a retry
	inter(2*time.Second, act("r1", "a", click, 0))                               // 500
	inter(3*time.Second, act("r1", "a", click, 0))                               // 501: same item again
	inter(4*time.Second, act("r1", "b", buy, 20))                                // 502
	inter(5*time.Second, act("r1", "b", watch, 12.5))                            // 503
	inter(5*time.Second, act("r1", "z", click, 0))                               // 504: not served
	inter(5*time.Second, act("", "z", click, 0))                                 // 505: organic
	inter(30*time.Second+31*time.Minute, act("r3", "x", click, 0))               // 506: too late to credit
	inter(40*time.Second, act("r5", "q", click, 0))                              // 507: before its prediction
	inter(45*time.Second, act("r9", "q", click, 0))                              // 508: never predicted
	inter(80*time.Second, act("r8", "q", click, 0))                              // 509: waits past the flush
	pred(39*time.Second, served("r5", "v2", "canary", 8, full, "q"))             // 106

	wm := ms(90 * time.Second) // window [0, 1m) + 30s
	due := e.due(wm)
	sameEvents(t, due, []*adaptrecv1.ModelAccuracyEvent{
		accuracy("v1", "production", 0, 2, 5, 1, 1, 1, 12.5, 30),
		accuracy("v2", "canary", 0, 2, 3, 1, 0, 0, 0, 8),
	})
	points := e.emittedAt(wm, due, map[tp]*holdQueue{{"p", 0}: pq, {"i", 0}: iq})
	// Predictions: r4 (next window) holds from 103. Interactions: r8's
	// click still waits for its prediction.
	if want := map[tp]int64{{"p", 0}: 103, {"i", 0}: 509}; !maps.Equal(points, want) {
		t.Errorf("commit points %v, want %v", points, want)
	}
	// After the emission: a click for an emitted window, and a prediction
	// into it, are late.
	inter(50*time.Second, act("r2", "a", click, 0))                      // 510
	pred(50*time.Second, served("r6", "v1", "production", 1, full, "a")) // 107
	inter(55*time.Second, act("r6", "a", click, 0))                      // 511

	wm = ms(150 * time.Second)
	due = e.due(wm)
	sameEvents(t, due, []*adaptrecv1.ModelAccuracyEvent{accuracy("v1", "production", time.Minute, 1, 1, 0, 0, 0, 0, 7)})
	points = e.emittedAt(wm, due, map[tp]*holdQueue{{"p", 0}: pq, {"i", 0}: iq})
	if want := map[tp]int64{{"p", 0}: 108, {"i", 0}: 512}; !maps.Equal(points, want) {
		t.Errorf("commit points %v, want %v", points, want)
	}
	want := counts{predictions: 6, shadow: 1, interactions: 12, joined: 5, late: 2, latePredictions: 1, duplicates: 1,
		unmatched: map[string]int64{ReasonItemNotServed: 1, ReasonNoRequestID: 1, ReasonOutsideAttribution: 1, ReasonNoPrediction: 2}}
	if fmt.Sprint(e.counts) != fmt.Sprint(want) {
		t.Errorf("counts %+v, want %+v", e.counts, want)
	}
}

// message is one message of a test stream.
type message struct {
	topic string
	t     time.Duration
	pred  *adaptrecv1.PredictionEvent
	in    *adaptrecv1.UserInteractionEvent
}

// TestRestartDoesNotDoubleCount runs a stream through one engine, and
// again through a second one that starts from the first one's commit
// points midway, as a restarted consumer does: the windows each emits,
// counted once per window, equal those of the uninterrupted run.
func TestRestartDoesNotDoubleCount(t *testing.T) {
	t.Parallel()
	var stream []message
	for i := range 40 {
		d := time.Duration(i) * 7 * time.Second
		req := fmt.Sprintf("r%d", i)
		version, arm := "v1", "production"
		if i%3 == 0 {
			version, arm = "v2", "canary"
		}
		stream = append(stream, message{topic: "p", t: d, pred: served(req, version, arm, float64(i), full, "a", "b", "c")})
		if i%2 == 0 {
			stream = append(stream, message{topic: "i", t: d + 10*time.Second, in: act(req, "a", click, 0)})
		}
		if i%5 == 0 {
			stream = append(stream, message{topic: "i", t: d + 50*time.Second, in: act(req, "b", watch, 3)})
		}
	}
	// In time order, as the stream time trails the messages below.
	slices.SortStableFunc(stream, func(a, b message) int { return cmp.Compare(a.t, b.t) })
	type run struct {
		e      *engine
		queues map[tp]*holdQueue
		out    map[winKey]*adaptrecv1.ModelAccuracyEvent
		dups   int
	}
	newRun := func(emitted map[winKey]int64) *run {
		return &run{e: newEngine(unit, emitted), queues: map[tp]*holdQueue{{"p", 0}: newHoldQueue(), {"i", 0}: newHoldQueue()},
			out: map[winKey]*adaptrecv1.ModelAccuracyEvent{}}
	}
	// feed gives the run the messages of each topic from its offset
	// (offsets count per topic), with the stream time trailing the
	// messages, and flushes after each; it stops after stop messages.
	feed := func(r *run, from map[string]int64, stop int) map[tp]int64 {
		off := map[string]int64{}
		var points map[tp]int64
		n := 0
		for _, m := range stream {
			o := off[m.topic]
			off[m.topic]++
			if o < from[m.topic] {
				continue
			}
			if n == stop {
				break
			}
			n++
			q := r.queues[tp{m.topic, 0}]
			if m.pred != nil {
				r.e.prediction(q, o, ms(m.t), m.pred, false)
			} else {
				r.e.interaction(q, o, ms(m.t), ms(m.t), m.in, false)
			}
			wm := ms(m.t - 5*time.Second)
			due := r.e.due(wm)
			for _, ev := range due {
				k := winKey{ev.GetModelVersion(), ev.GetExperimentArm(), ev.GetWindowStart().AsTime().UnixMilli()}
				if r.out[k] != nil {
					r.dups++
				}
				r.out[k] = ev
			}
			points = r.e.emittedAt(wm, due, r.queues)
		}
		// The end of the stream: every window is due.
		if n < stop {
			due := r.e.due(ms(time.Hour))
			for _, ev := range due {
				r.out[winKey{ev.GetModelVersion(), ev.GetExperimentArm(), ev.GetWindowStart().AsTime().UnixMilli()}] = ev
			}
			points = r.e.emittedAt(ms(time.Hour), due, r.queues)
		}
		return points
	}
	whole := newRun(nil)
	feed(whole, nil, math.MaxInt)
	if whole.dups != 0 || len(whole.out) < 4 {
		t.Fatalf("uninterrupted run emitted %d windows, %d twice", len(whole.out), whole.dups)
	}
	for _, stop := range []int{10, 25, 40} {
		first := newRun(nil)
		points := feed(first, nil, stop)
		from := map[string]int64{}
		for k, off := range points {
			from[k.topic] = off
		}
		// The restarted consumer reads back what was emitted.
		second := newRun(maps.Clone(first.e.emitted))
		feed(second, from, math.MaxInt)
		merged := maps.Clone(first.out)
		for k, ev := range second.out {
			if merged[k] != nil {
				t.Errorf("stop %d: window %v emitted by both runs", stop, k)
			}
			merged[k] = ev
		}
		if len(merged) != len(whole.out) {
			t.Errorf("stop %d: %d windows, want %d", stop, len(merged), len(whole.out))
		}
		for k, ev := range whole.out {
			if !proto.Equal(merged[k], ev) {
				t.Errorf("stop %d: window %v:\ngot  %v\nwant %v", stop, k, merged[k], ev)
			}
		}
		// Without the read-back, windows emitted again are whole, so
		// readers that keep one of each lose nothing.
		again := newRun(nil)
		feed(again, from, math.MaxInt)
		for k, ev := range again.out {
			if first.out[k] != nil && !proto.Equal(first.out[k], ev) && ev.GetRequests() > first.out[k].GetRequests() {
				t.Errorf("stop %d: window %v re-emitted with more requests (%d) than first (%d)", stop, k, ev.GetRequests(), first.out[k].GetRequests())
			}
			if first.out[k] == nil && !proto.Equal(whole.out[k], ev) {
				t.Errorf("stop %d: window %v:\ngot  %v\nwant %v", stop, k, ev, whole.out[k])
			}
		}
	}
}

func TestEventIDAndErrors(t *testing.T) {
	t.Parallel()
	a := EventID("v1", "canary", t0, t0.Add(time.Minute))
	if a != EventID("v1", "canary", t0.In(time.FixedZone("x", 3600)), t0.Add(time.Minute)) {
		t.Error("EventID depends on the time zone")
	}
	for _, b := range []string{EventID("v1", "production", t0, t0.Add(time.Minute)), EventID("v1c", "anary", t0, t0.Add(time.Minute)),
		EventID("v1", "canary", t0.Add(time.Minute), t0.Add(2*time.Minute))} {
		if a == b {
			t.Errorf("EventID collision: %s", a)
		}
	}
	if len(a) > events.MaxEventIDLen {
		t.Errorf("EventID %q longer than %d", a, events.MaxEventIDLen)
	}
	for l, want := range map[adaptrecv1.DegradationLevel]bool{
		adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_UNSPECIFIED: false, full: false, stale: false, simple: true,
		adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_BATCH_PREDICTIONS: true, adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_POPULARITY: true,
		adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_CACHED_RESPONSE: true,
	} {
		if IsError(l) != want {
			t.Errorf("IsError(%s) = %v, want %v", l, !want, want)
		}
	}
	tests := []struct {
		xs   []float64
		q    float64
		want float64
	}{
		{nil, 0.99, 0},
		{[]float64{5}, 0.5, 5},
		{[]float64{3, 1, 2, 4}, 0.5, 2},
		{[]float64{3, 1, 2, 4}, 0.99, 4},
		{[]float64{10, 30}, 0.99, 30},
	}
	for _, tt := range tests {
		if got := quantile(slices.Clone(tt.xs), tt.q); got != tt.want {
			t.Errorf("quantile(%v, %v) = %v, want %v", tt.xs, tt.q, got, tt.want)
		}
	}
}

func TestCheckRejects(t *testing.T) {
	t.Parallel()
	now := t0.Add(time.Hour)
	enc := func(e *adaptrecv1.Event) []byte {
		b, err := proto.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	nan := served("r", "v1", "production", math.NaN(), full, "a")
	tests := []struct {
		name, topic string
		value       []byte
		code, says  string
	}{
		{"garbage", events.TopicPredictions, []byte("not an event"), "not_protobuf", "not a protobuf"},
		{"no request id", events.TopicPredictions, enc(events.NewPrediction("e", t0, "t", served("", "v1", "a", 1, full))),
			"invalid_prediction_request_id", "prediction.request_id"},
		{"no model version", events.TopicPredictions, enc(events.NewPrediction("e", t0, "t", served("r", "", "a", 1, full))),
			"invalid_prediction_model_version", "prediction.model_version"},
		{"latency NaN", events.TopicPredictions, enc(events.NewPrediction("e", t0, "t", nan)), "invalid_prediction_latency_ms", "NaN"},
		{"unknown level", events.TopicPredictions, enc(events.NewPrediction("e", t0, "t", served("r", "v1", "a", 1, 42))),
			"invalid_prediction_degradation_level", "unknown value 42"},
		{"interaction on predictions", events.TopicPredictions, enc(events.NewInteraction("e", t0, "t", act("r", "a", click, 0))),
			"unexpected_payload", "not a prediction"},
		{"negative watch", events.TopicInteractions, enc(events.NewInteraction("e", t0, "t", act("r", "a", watch, -3))),
			"invalid_interaction_value", "-3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, rej := check(tt.topic, tt.value, now)
			if e != nil || rej == nil {
				t.Fatalf("check accepted it: %v", e)
			}
			if rej.code != tt.code || !strings.Contains(rej.reason, tt.says) {
				t.Errorf("rejected with %q (%s), want code %s mentioning %q", rej.reason, rej.code, tt.code, tt.says)
			}
			m := deadLetter(kafka.Message{Topic: tt.topic, Partition: 3, Offset: 17, Key: []byte("k"), Value: tt.value}, rej, "g", now)
			h := map[string]string{}
			for _, x := range m.Headers {
				h[x.Key] = string(x.Value)
			}
			if m.Topic != events.TopicDeadLetter || h[events.DeadLetterHeaderReasonCode] != tt.code || h[events.DeadLetterHeaderOriginOffset] != "17" ||
				h[events.DeadLetterHeaderOriginTopic] != tt.topic || string(m.Value) != string(tt.value) {
				t.Errorf("dead letter %v", m)
			}
		})
	}
	if e, rej := check(events.TopicInteractions, enc(events.NewInteraction("e", t0, "t", act("r", "a", watch, 3))), now); e == nil || rej != nil {
		t.Errorf("a valid watch was rejected: %v", rej)
	}
}

func TestSoleOwner(t *testing.T) {
	t.Parallel()
	members := []kafka.GroupMember{{ID: "m-b"}, {ID: "m-a"}, {ID: "m-c"}}
	var parts []kafka.Partition
	for _, topic := range []string{events.TopicPredictions, events.TopicInteractions} {
		for _, id := range []int{2, 0, 1} {
			parts = append(parts, kafka.Partition{Topic: topic, ID: id})
		}
	}
	got := soleOwner{}.AssignGroups(members, parts)
	want := kafka.GroupMemberAssignments{
		"m-a": {events.TopicPredictions: {0, 1, 2}, events.TopicInteractions: {0, 1, 2}},
		"m-b": {}, "m-c": {},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("assignments %v, want %v", got, want)
	}
}

// TestFutureInteractionWaitsBoundedly: an interaction stamped an hour
// ahead (a client's clock) waits for its prediction only until the stream
// passes the time it was read plus the emit delay, so it does not hold
// the partition's commit point for an hour.
func TestFutureInteractionWaitsBoundedly(t *testing.T) {
	t.Parallel()
	e := newEngine(unit, nil)
	iq := newHoldQueue()
	e.interaction(iq, 7, ms(time.Hour), ms(0), act("r1", "a", click, 0), false)
	queues := map[tp]*holdQueue{{"i", 0}: iq}
	if due := e.due(ms(29 * time.Second)); len(due) != 0 {
		t.Fatalf("emitted %v", due)
	}
	if got := e.emittedAt(ms(29*time.Second), nil, queues); got[tp{"i", 0}] != 7 {
		t.Errorf("commit point %v before the emit delay, want 7", got)
	}
	e.due(ms(30 * time.Second))
	if got := e.emittedAt(ms(30*time.Second), nil, queues); got[tp{"i", 0}] != 8 || e.counts.unmatched[ReasonNoPrediction] != 1 {
		t.Errorf("commit point %v, unmatched %v: want 8 and one no_prediction", got, e.counts.unmatched)
	}
}
