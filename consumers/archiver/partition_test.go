package archiver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

const testTopic = "adaptrec.interactions.v1"

var t0 = time.Date(2026, 11, 22, 9, 40, 0, 0, time.UTC)

func interaction(t testing.TB, id string, at time.Time) []byte {
	t.Helper()
	b, err := proto.Marshal(events.NewInteraction(id, at, "test", &adaptrecv1.UserInteractionEvent{
		UserId: "u-" + id, ItemId: "i1", Action: adaptrecv1.Action_ACTION_VIEW, Position: -1,
	}))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// malformed returns the three kinds of bad input and their reason codes.
func malformed(t testing.TB, at time.Time) []struct {
	value []byte
	code  string
} {
	t.Helper()
	noID, err := proto.Marshal(events.NewInteraction("", at, "test", &adaptrecv1.UserInteractionEvent{UserId: "u", ItemId: "i", Action: adaptrecv1.Action_ACTION_CLICK}))
	if err != nil {
		t.Fatal(err)
	}
	wrongType := events.NewInteraction("wrong-type", at, "test", &adaptrecv1.UserInteractionEvent{UserId: "u", ItemId: "i", Action: adaptrecv1.Action_ACTION_CLICK})
	wrongType.Envelope.Type = adaptrecv1.EventType_EVENT_TYPE_FEEDBACK
	wt, err := proto.Marshal(wrongType)
	if err != nil {
		t.Fatal(err)
	}
	return []struct {
		value []byte
		code  string
	}{
		{[]byte("\xff\xfe definitely not protobuf"), "not_protobuf"},
		{noID, "invalid_envelope_event_id"},
		{wt, "invalid_envelope_type"},
	}
}

// fixture fills a log with valid events spanning three event hours, producer
// duplicates (some inside the dedupe window, one beyond it) and malformed
// messages, and computes what the archive must hold.
type fixture struct {
	log      *memLog
	window   int
	wantIDs  map[string]int64 // archived event id -> offset of the kept copy
	wantDead map[int64]string // offset -> reason code
}

func newFixture(t testing.TB, n, window int) *fixture {
	f := &fixture{log: newMemLog(), window: window, wantIDs: map[string]int64{}, wantDead: map[int64]string{}}
	seen := map[string][]int64{} // id -> offsets of valid copies
	add := func(id string, value []byte) {
		off := f.log.end()
		f.log.append(testTopic, 0, []byte("k-"+id), value, t0.Add(time.Duration(off)*time.Millisecond))
		prev := seen[id]
		seen[id] = append(prev, off)
		for _, p := range prev {
			if p >= off-int64(window) {
				return // a duplicate inside the window
			}
		}
		f.wantIDs[id] = off
	}
	bad := malformed(t, t0)
	for i := range n {
		id := fmt.Sprintf("ev-%04d", i)
		at := t0.Add(time.Duration(i) * 100 * time.Second) // crosses hours
		v := interaction(t, id, at)
		add(id, v)
		switch {
		case i%9 == 4: // retried right away
			add(id, v)
		case i%13 == 6 && i >= 13: // retried much later: an old id again
			old := fmt.Sprintf("ev-%04d", i-13)
			add(old, interaction(t, old, t0.Add(time.Duration(i-13)*100*time.Second)))
		}
		if i%11 == 3 {
			b := bad[(i/11)%len(bad)]
			f.wantDead[f.log.end()] = b.code
			f.log.append(testTopic, 0, []byte("bad"), b.value, t0)
		}
	}
	return f
}

// harness runs workers over a fixture with crash injection.
type harness struct {
	t     *testing.T
	f     *fixture
	store *memStore
	group *memGroup
	dlq   *memTopic

	mu      sync.Mutex
	ops     int // mutating operations so far in this run
	crashAt int
	after   bool // crash after the operation took effect
	dead    bool
	kill    context.CancelFunc
}

func newHarness(t *testing.T, f *fixture) *harness {
	h := &harness{t: t, f: f, store: newMemStore(), group: &memGroup{committed: kafka.FirstOffset}, dlq: &memTopic{}}
	h.store.before = func(op, key string) error { return h.step(false) }
	h.store.after = func(op, key string) error { return h.step(true) }
	h.dlq.before = func() error {
		if err := h.step(false); err != nil {
			return err
		}
		return h.step(true)
	}
	return h
}

// step counts a mutating operation and crashes the process at crashAt.
func (h *harness) step(afterOp bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.dead {
		return errCrash
	}
	if afterOp != h.after {
		return nil
	}
	h.ops++
	if h.crashAt > 0 && h.ops == h.crashAt {
		h.dead = true
		h.kill()
		return errCrash
	}
	return nil
}

// run starts a worker (a new process in a new generation) and returns when
// it crashed, or when everything is committed (then it shuts down cleanly).
// It reports whether the run crashed.
func (h *harness) run(flushEvents, crashAt int, after bool) bool {
	h.t.Helper()
	h.group.mu.Lock()
	h.group.generation++
	gen := h.group.generation
	committed := h.group.committed
	h.group.mu.Unlock()

	ctx, shutdown := context.WithCancel(h.t.Context())
	defer shutdown()
	genCtx, kill := context.WithCancel(h.t.Context())
	defer kill()
	h.mu.Lock()
	h.ops, h.crashAt, h.after, h.dead, h.kill = 0, crashAt, after, false, kill
	h.mu.Unlock()

	commit := h.group.commitFor(gen)
	w := newWorker(partitionConfig{
		topic: testTopic, partition: 0, group: "g", member: "m", generation: gen,
		flushEvents: flushEvents, flushInterval: 5 * time.Millisecond, dedupeWindow: h.f.window, drainTimeout: time.Second,
	}, partitionDeps{
		store: h.store,
		open: func(off int64) (messageReader, error) {
			return &memReader{log: h.f.log, off: max(off, 0)}, nil
		},
		commit: func(ctx context.Context, next int64) error {
			if err := h.step(false); err != nil {
				return err
			}
			if err := commit(ctx, next); err != nil {
				return err
			}
			return h.step(true)
		},
		deadLetter: h.dlq,
		logger:     slog.New(slog.DiscardHandler),
		counters:   &counters{},
	})
	done := make(chan error, 1)
	go func() { done <- w.run(ctx, genCtx, committed) }()

	end := h.f.log.end()
	deadline := time.After(20 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-genCtx.Done():
			<-done // the process died; wait for its goroutines
			return true
		case err := <-done:
			if genCtx.Err() != nil {
				return true // crashed; the worker saw it first
			}
			h.t.Fatalf("worker returned before the log was archived: %v", err)
		case <-tick.C:
			if h.group.offset() == end {
				shutdown()
				if err := <-done; err != nil {
					h.t.Fatalf("clean shutdown returned %v", err)
				}
				return false
			}
		case <-deadline:
			h.t.Fatalf("log not archived in time: committed %d of %d", h.group.offset(), end)
		}
	}
}

// archived reads every row in the store.
func archived(t *testing.T, s *memStore) []eventlog.Row {
	t.Helper()
	var rows []eventlog.Row
	for _, k := range s.keys(eventlog.Root) {
		b, _, err := s.Get(t.Context(), k)
		if err != nil {
			t.Fatal(err)
		}
		ref, err := eventlog.ParseKey(k)
		if err != nil {
			t.Fatal(err)
		}
		err = eventlog.ReadObject(t.Context(), s, eventlog.Object{Ref: ref, Key: k, Size: int64(len(b))},
			time.Time{}, time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), func(r *eventlog.Row) error {
				if !eventlog.HourOf(r.EventTime).Equal(ref.Hour) {
					t.Errorf("%s holds an event of hour %s", k, eventlog.HourOf(r.EventTime))
				}
				c := *r
				c.Payload = bytes.Clone(r.Payload)
				rows = append(rows, c)
				return nil
			})
		if err != nil {
			t.Fatal(err)
		}
	}
	return rows
}

// checkExactlyOnce verifies that the store holds every expected event once,
// with the bytes of the copy that was kept, and nothing else; and that every
// malformed message was dead-lettered with its reason.
func (h *harness) checkExactlyOnce() {
	t := h.t
	t.Helper()
	rows := archived(t, h.store)
	got := map[string]int{}
	for _, r := range rows {
		got[r.EventID]++
		off, ok := h.f.wantIDs[r.EventID]
		if !ok {
			t.Errorf("archived unexpected event %s", r.EventID)
			continue
		}
		if r.KafkaOffset != off {
			t.Errorf("event %s archived from offset %d, want the first copy at %d", r.EventID, r.KafkaOffset, off)
		}
		h.f.log.mu.Lock()
		want := h.f.log.msgs[off].Value
		h.f.log.mu.Unlock()
		if !bytes.Equal(r.Payload, want) {
			t.Errorf("event %s payload differs from the Kafka message", r.EventID)
		}
	}
	for id, n := range got {
		if n != 1 {
			t.Errorf("event %s archived %d times", id, n)
		}
	}
	for id := range h.f.wantIDs {
		if got[id] == 0 {
			t.Errorf("event %s missing from the archive", id)
		}
	}
	dead := map[int64]bool{}
	for _, m := range h.dlq.all() {
		hdr := map[string]string{}
		for _, x := range m.Headers {
			hdr[x.Key] = string(x.Value)
		}
		off, _ := strconv.ParseInt(hdr[events.DeadLetterHeaderOriginOffset], 10, 64)
		code, ok := h.f.wantDead[off]
		if !ok {
			t.Errorf("dead letter for offset %d, which is valid", off)
			continue
		}
		if hdr[events.DeadLetterHeaderReasonCode] != code || hdr[events.DeadLetterHeaderReason] == "" || hdr[events.DeadLetterHeaderOriginTopic] != testTopic ||
			hdr[events.DeadLetterHeaderOriginPartition] != "0" || hdr[events.DeadLetterHeaderConsumerGroup] != "g" || hdr[events.DeadLetterHeaderTime] == "" {
			t.Errorf("dead letter for offset %d has headers %v, want reason code %s", off, hdr, code)
		}
		h.f.log.mu.Lock()
		orig := h.f.log.msgs[off]
		h.f.log.mu.Unlock()
		if !bytes.Equal(m.Value, orig.Value) || !bytes.Equal(m.Key, orig.Key) {
			t.Errorf("dead letter for offset %d does not carry the original key and bytes", off)
		}
		dead[off] = true
	}
	for off := range h.f.wantDead {
		if !dead[off] {
			t.Errorf("malformed message at offset %d was not dead-lettered", off)
		}
	}
}

func TestWorkerArchivesExactlyOnce(t *testing.T) {
	f := newFixture(t, 120, 50)
	if len(f.wantDead) == 0 || int64(len(f.wantIDs)+len(f.wantDead)) >= f.log.end() {
		t.Fatal("fixture has no malformed messages or no duplicates")
	}
	h := newHarness(t, f)
	if h.run(16, 0, false) {
		t.Fatal("crashed without a crash point")
	}
	h.checkExactlyOnce()
}

// TestWorkerCrashAnywhere kills the worker at every mutating operation of a
// run (before and after the operation takes effect), restarts it with other
// batch sizes, sometimes crashing again, and requires the archive to hold
// every event exactly once.
func TestWorkerCrashAnywhere(t *testing.T) {
	f := newFixture(t, 60, 25)
	// Count the operations of a clean run to know the crash points.
	probe := newHarness(t, f)
	probe.run(7, 0, false)
	total := probe.ops
	if total < 20 {
		t.Fatalf("a clean run made only %d mutating operations", total)
	}
	crashes := 0
	for _, after := range []bool{false, true} {
		for k := 1; k <= total; k++ {
			t.Run(fmt.Sprintf("after=%v/op=%d", after, k), func(t *testing.T) {
				h := newHarness(t, f)
				h.t = t
				// Time-based flushes make the operation count vary a little
				// between runs, so the last points may not be reached.
				if h.run(7, k, after) {
					crashes++
					// A second crash in the restarted process, with other
					// batch boundaries.
					h.run(11, 1+(k*7)%13, !after)
					if h.run(5, 0, false) {
						t.Fatal("crashed without a crash point")
					}
				}
				h.checkExactlyOnce()
			})
		}
	}
	if crashes < 2*total*9/10 {
		t.Fatalf("only %d of %d runs crashed", crashes, 2*total)
	}
}

// TestWorkerFencesZombie runs two workers on one partition: an old one
// stalled between recording its batch and writing the objects, and a new
// owner that takes over. The zombie resumes after the new owner committed,
// and the archive must still hold every event once.
func TestWorkerFencesZombie(t *testing.T) {
	f := newFixture(t, 60, 25)
	store := newMemStore()
	group := &memGroup{committed: kafka.FirstOffset, generation: 1}
	dlq := &memTopic{}

	stall := make(chan struct{})
	stalled := make(chan struct{})
	var once sync.Once
	zombieStore := &hookStore{memStore: store, beforePut: func(key string) {
		// Stall on the first data object after two committed batches.
		if group.offset() > 0 && key != StateKey(testTopic, 0) {
			once.Do(func() { close(stalled) })
			<-stall
		}
	}}
	newW := func(s Store, gen int32, flush int) *worker {
		return newWorker(partitionConfig{
			topic: testTopic, group: "g", member: fmt.Sprint("m", gen), generation: gen,
			flushEvents: flush, flushInterval: 5 * time.Millisecond, dedupeWindow: f.window, drainTimeout: time.Second,
		}, partitionDeps{
			store:      s,
			open:       func(off int64) (messageReader, error) { return &memReader{log: f.log, off: max(off, 0)}, nil },
			commit:     group.commitFor(gen),
			deadLetter: dlq,
			logger:     slog.New(slog.DiscardHandler),
			counters:   &counters{},
		})
	}
	ctx := t.Context()
	zombieGen, zombieStop := context.WithCancel(ctx)
	defer zombieStop()
	zombieDone := make(chan error, 1)
	go func() { zombieDone <- newW(zombieStore, 1, 9).run(ctx, zombieGen, kafka.FirstOffset) }()
	select {
	case <-stalled:
	case <-time.After(10 * time.Second):
		t.Fatal("zombie never reached its object write")
	}

	// The group moves on without the zombie noticing.
	group.mu.Lock()
	group.generation = 2
	committed := group.committed
	group.mu.Unlock()
	ownerCtx, ownerStop := context.WithCancel(ctx)
	ownerDone := make(chan error, 1)
	go func() { ownerDone <- newW(store, 2, 4).run(ownerCtx, ctx, committed) }()
	deadline := time.Now().Add(10 * time.Second)
	for group.offset() != f.log.end() {
		if time.Now().After(deadline) {
			t.Fatalf("new owner committed %d of %d", group.offset(), f.log.end())
		}
		time.Sleep(time.Millisecond)
	}

	// The zombie wakes up: its commit is refused and its next state write is
	// fenced, so it stops.
	close(stall)
	select {
	case err := <-zombieDone:
		if !errors.Is(err, errGenerationEnded) && !errors.Is(err, errFenced) {
			t.Fatalf("zombie stopped with %v, want fenced or generation ended", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("zombie kept running")
	}
	ownerStop()
	if err := <-ownerDone; err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, f: f, store: store, group: group, dlq: dlq}
	h.checkExactlyOnce()
}

type hookStore struct {
	*memStore
	beforePut func(key string)
}

func (s *hookStore) Put(ctx context.Context, key string, body []byte, opts objstoreOpts) (string, error) {
	s.beforePut(key)
	return s.memStore.Put(ctx, key, body, opts)
}
