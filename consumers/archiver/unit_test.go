package archiver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/objstore"
)

func TestOffsetRuns(t *testing.T) {
	tests := []struct {
		offs []int64
		want [][2]int64
	}{
		{nil, nil},
		{[]int64{5}, [][2]int64{{5, 6}}},
		{[]int64{1, 2, 3, 7, 9, 10}, [][2]int64{{1, 4}, {7, 8}, {9, 11}}},
	}
	for _, tt := range tests {
		got := offsetRuns(tt.offs)
		if !slices.Equal(got, tt.want) {
			t.Fatalf("offsetRuns(%v) = %v, want %v", tt.offs, got, tt.want)
		}
		p := &pending{Duplicates: got}
		for o := int64(0); o < 12; o++ {
			if p.isDuplicate(o) != slices.Contains(tt.offs, o) {
				t.Fatalf("isDuplicate(%d) = %v with runs %v", o, p.isDuplicate(o), got)
			}
		}
	}
}

func TestReasonCode(t *testing.T) {
	for _, m := range malformed(t, t0) {
		if got := reasonCode(m.value, t0); got != m.code {
			t.Errorf("reasonCode = %s, want %s", got, m.code)
		}
	}
	future := interaction(t, "future", t0.Add(48*time.Hour))
	if got := reasonCode(future, t0); got != "invalid_envelope_event_time" {
		t.Errorf("reasonCode(event two days ahead) = %s", got)
	}
}

func TestStateSaveFencesAndAdoptsOwnRetry(t *testing.T) {
	ctx := t.Context()
	store := newMemStore()
	key := StateKey(testTopic, 3)
	a := stateStore{store: store, key: key}
	if st, err := a.load(ctx); err != nil || st != nil {
		t.Fatalf("load of a missing state = %v, %v", st, err)
	}
	st := &partitionState{Version: stateVersion, Topic: testTopic, Partition: 3, Pending: &pending{First: 0, End: 10}}
	if err := a.save(ctx, st); err != nil {
		t.Fatal(err)
	}
	// Byte-identical content is indistinguishable from a retry of one's
	// own write, and adopted.
	b := stateStore{store: store, key: key}
	if err := b.save(ctx, st); err != nil || b.etag != a.etag {
		t.Fatalf("save of identical bytes = %v (etag %q, want %q)", err, b.etag, a.etag)
	}
	other := *st
	other.Pending = &pending{First: 10, End: 20}
	c := stateStore{store: store, key: key}
	if err := c.save(ctx, &other); !errors.Is(err, errFenced) {
		t.Fatalf("create-only save over another writer's state = %v, want errFenced", err)
	}
	// b loads, then a writes: b is now stale.
	if _, err := b.load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.save(ctx, &other); err != nil {
		t.Fatal(err)
	}
	third := other
	third.Pending = &pending{First: 20, End: 30}
	if err := b.save(ctx, &third); !errors.Is(err, errFenced) {
		t.Fatalf("save with a stale ETag = %v, want errFenced", err)
	}
	// A PUT that reached the server but whose answer was lost: the retry
	// finds its own bytes and carries on.
	lost := true
	store.after = func(op, k string) error {
		if lost {
			lost = false
			return errors.New("connection reset")
		}
		return nil
	}
	if err := a.save(ctx, &third); err == nil {
		t.Fatal("injected failure not reported")
	}
	if err := a.save(ctx, &third); err != nil {
		t.Fatalf("retry of an applied write = %v, want nil", err)
	}
	store.mu.Lock()
	store.objects[key] = []byte("{not json")
	store.mu.Unlock()
	if _, err := a.load(ctx); !errors.Is(err, errCorruptState) {
		t.Fatalf("load of a corrupt state = %v, want errCorruptState", err)
	}
}

// TestRedoRepeatsRecordedDecisions starts a worker on a partition whose
// state names a pending batch that dropped a duplicate and wrote an object
// the rewrite will not produce. The rewrite must drop the same offset even
// with deduplication now disabled, and delete the stray object.
func TestRedoRepeatsRecordedDecisions(t *testing.T) {
	f := newFixture(t, 20, 0)
	store := newMemStore()
	stray := eventlog.Ref{Topic: testTopic, Partition: 0, FirstOffset: 4, Hour: t0.Add(-5 * time.Hour)}.Key()
	if _, err := store.Put(t.Context(), stray, []byte("left by the first attempt"), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	const dropped = 6
	st := partitionState{Version: stateVersion, Topic: testTopic, Pending: &pending{
		First: 4, End: 12, Keys: []string{stray}, Duplicates: [][2]int64{{dropped, dropped + 1}},
	}}
	b, _ := json.Marshal(st)
	if _, err := store.Put(t.Context(), StateKey(testTopic, 0), b, objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	group := &memGroup{committed: 4, generation: 1}
	var flushes []FlushInfo
	w := newWorker(partitionConfig{
		topic: testTopic, group: "g", generation: 1, flushEvents: 100, flushInterval: 5 * time.Millisecond, drainTimeout: time.Second,
	}, partitionDeps{
		store:      store,
		open:       func(off int64) (messageReader, error) { return &memReader{log: f.log, off: max(off, 0)}, nil },
		commit:     group.commitFor(1),
		deadLetter: &memTopic{},
		logger:     slog.New(slog.DiscardHandler),
		observe:    func(fi FlushInfo) { flushes = append(flushes, fi) },
		counters:   &counters{},
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.run(ctx, t.Context(), 4) }()
	deadline := time.Now().Add(5 * time.Second)
	for group.offset() != f.log.end() {
		if time.Now().After(deadline) {
			t.Fatalf("committed %d of %d", group.offset(), f.log.end())
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(flushes) == 0 || !flushes[0].Redo || flushes[0].FirstOffset != 4 || flushes[0].EndOffset != 12 {
		t.Fatalf("first flush = %+v, want the rewrite of [4, 12)", flushes)
	}
	if _, _, err := store.Get(t.Context(), stray); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("stray object of the first attempt still exists (%v)", err)
	}
	for _, r := range archived(t, store) {
		if r.KafkaOffset < 4 {
			t.Errorf("offset %d below the pending batch was archived again", r.KafkaOffset)
		}
		if r.KafkaOffset == dropped {
			t.Errorf("offset %d, dropped by the first attempt, was archived by the rewrite", dropped)
		}
	}
}

// TestPartialRedoKeepsFirstAttempt restarts on a pending batch whose first
// offsets retention has removed: the rewrite cannot reproduce the first
// attempt's objects, so it must neither overwrite nor delete them.
func TestPartialRedoKeepsFirstAttempt(t *testing.T) {
	f := newFixture(t, 20, 0)
	const logStart = 8
	store := newMemStore()
	f.log.mu.Lock()
	m8 := f.log.msgs[logStart]
	f.log.mu.Unlock()
	e, err := events.Decode(m8.Value, m8.Time)
	if err != nil {
		t.Fatal(err)
	}
	same := eventlog.Ref{Topic: testTopic, FirstOffset: 4, Hour: eventlog.HourOf(e.GetEnvelope().GetEventTime().AsTime())}.Key()
	other := eventlog.Ref{Topic: testTopic, FirstOffset: 4, Hour: t0.Add(-5 * time.Hour)}.Key()
	for _, k := range []string{same, other} {
		if _, err := store.Put(t.Context(), k, []byte("first attempt "+k), objstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	st := partitionState{Version: stateVersion, Topic: testTopic, Pending: &pending{First: 4, End: 12, Keys: []string{same, other}}}
	b, _ := json.Marshal(st)
	if _, err := store.Put(t.Context(), StateKey(testTopic, 0), b, objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	group := &memGroup{committed: 4, generation: 1}
	w := newWorker(partitionConfig{
		topic: testTopic, group: "g", generation: 1, flushEvents: 100, flushInterval: 5 * time.Millisecond, drainTimeout: time.Second,
	}, partitionDeps{
		store:      store,
		open:       func(off int64) (messageReader, error) { return &memReader{log: f.log, off: max(off, logStart)}, nil },
		commit:     group.commitFor(1),
		deadLetter: &memTopic{},
		logger:     slog.New(slog.DiscardHandler),
		counters:   &counters{},
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.run(ctx, t.Context(), 4) }()
	deadline := time.Now().Add(5 * time.Second)
	for group.offset() != f.log.end() {
		if time.Now().After(deadline) {
			t.Fatalf("committed %d of %d", group.offset(), f.log.end())
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{same, other} {
		got, _, err := store.Get(t.Context(), k)
		if err != nil || string(got) != "first attempt "+k {
			t.Errorf("first attempt's object %s was replaced or deleted (%q, %v)", k, got, err)
		}
	}
}

// TestFlushInfoAttributesRows checks that every archived row reaches the
// observer with its latency and its producer, index for index, so a
// benchmark sharing the topics with other producers can count its own rows.
func TestFlushInfoAttributesRows(t *testing.T) {
	log := newMemLog()
	const n = 30
	for i := range n {
		producer := "mine"
		if i%3 == 0 {
			producer = "theirs"
		}
		id := fmt.Sprintf("ev-%02d", i)
		b, err := proto.Marshal(events.NewInteraction(id, t0.Add(time.Duration(i)*time.Minute), producer,
			&adaptrecv1.UserInteractionEvent{UserId: "u", ItemId: "i", Action: adaptrecv1.Action_ACTION_VIEW}))
		if err != nil {
			t.Fatal(err)
		}
		log.append(testTopic, 0, []byte("u"), b, t0)
	}
	group := &memGroup{committed: kafka.FirstOffset, generation: 1}
	var mu sync.Mutex
	var flushes []FlushInfo
	w := newWorker(partitionConfig{
		topic: testTopic, group: "g", generation: 1, flushEvents: 7, flushInterval: 5 * time.Millisecond, drainTimeout: time.Second,
	}, partitionDeps{
		store:      newMemStore(),
		open:       func(off int64) (messageReader, error) { return &memReader{log: log, off: max(off, 0)}, nil },
		commit:     group.commitFor(1),
		deadLetter: &memTopic{},
		logger:     slog.New(slog.DiscardHandler),
		observe: func(fi FlushInfo) {
			mu.Lock()
			flushes = append(flushes, fi)
			mu.Unlock()
		},
		counters: &counters{},
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.run(ctx, t.Context(), kafka.FirstOffset) }()
	deadline := time.Now().Add(5 * time.Second)
	for group.offset() != log.end() {
		if time.Now().After(deadline) {
			t.Fatalf("committed %d of %d", group.offset(), log.end())
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	byProducer := map[string]int{}
	for _, fi := range flushes {
		if len(fi.Latencies) != fi.Rows || len(fi.Producers) != fi.Rows {
			t.Fatalf("flush of %d rows has %d latencies and %d producers", fi.Rows, len(fi.Latencies), len(fi.Producers))
		}
		for i, p := range fi.Producers {
			byProducer[p]++
			// Event k has event time t0 + k minutes; its latency says which
			// event the row is, and so which producer it must name.
			k := int(fi.Durable.Add(-fi.Latencies[i]).Sub(t0) / time.Minute)
			if want := map[bool]string{true: "theirs", false: "mine"}[k%3 == 0]; p != want {
				t.Errorf("row %d of flush %d..%d: latency says event %d, producer %q, want %q", i, fi.FirstOffset, fi.EndOffset, k, p, want)
			}
		}
	}
	if byProducer["mine"] != 20 || byProducer["theirs"] != 10 || len(byProducer) != 2 {
		t.Fatalf("rows by producer = %v, want mine 20, theirs 10", byProducer)
	}
}
