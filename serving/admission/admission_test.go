package admission

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/metricstest"
)

// clock is a fake Config.Now that tests move by hand.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Unix(1_000_000, 0).UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func newController(t *testing.T, cfg Config) *Controller {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// waitFor polls cond until it holds, failing the test after a few seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// acquired is the outcome of an Acquire run in its own goroutine.
type acquired struct {
	name    string
	release func()
	err     error
}

// acquireAsync starts Acquire in a goroutine and waits until it is queued
// (or has returned), so that the order of calls is the order of arrival.
func acquireAsync(t *testing.T, ctx context.Context, l *Controller, p Priority, name string, out chan<- acquired) {
	t.Helper()
	before := l.Queued(p)
	done := make(chan struct{})
	go func() {
		release, err := l.Acquire(ctx, p)
		close(done)
		out <- acquired{name, release, err}
	}()
	waitFor(t, name+" to queue", func() bool {
		select {
		case <-done:
			return true
		default:
			return l.Queued(p) > before
		}
	})
}

// wantRefused checks err is a refusal with the gRPC code, reason and
// message parts given.
func wantRefused(t *testing.T, err error, code codes.Code, reason Reason, msg ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("admitted, want refused with %s (%s)", code, reason)
	}
	if got := status.Code(err); got != code {
		t.Fatalf("gRPC code %s (%v), want %s", got, err, code)
	}
	var ae *Error
	if !errors.As(err, &ae) || ae.Reason != reason {
		t.Fatalf("error %#v, want an *Error with reason %s", err, reason)
	}
	for _, m := range msg {
		if !strings.Contains(status.Convert(err).Message(), m) {
			t.Errorf("message %q does not say %q", status.Convert(err).Message(), m)
		}
	}
}

func TestConcurrencyBoundHolds(t *testing.T) {
	t.Parallel()
	const max = 3
	// No latency shedding: the race detector on a busy machine may well
	// make requests slower than 10 ms, and only the slot logic is tested.
	l := newController(t, Config{MaxInFlight: max, MaxQueuedHigh: 1000, MaxQueuedNormal: 1000, MaxQueuedLow: 1000, LatencySLO: time.Hour})
	var running, peak atomic.Int32
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			for i := range 30 {
				release, err := l.Acquire(t.Context(), Priority((g+i)%3))
				if err != nil {
					t.Errorf("Acquire: %v", err)
					return
				}
				n := running.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				runtime.Gosched()
				running.Add(-1)
				release()
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > max {
		t.Fatalf("%d requests ran at once, MaxInFlight %d", p, max)
	} else if p < max {
		t.Logf("peak concurrency only %d of %d", p, max)
	}
	if n := l.InFlight(); n != 0 {
		t.Fatalf("InFlight %d after every request released, want 0", n)
	}
}

func TestQueueServesByPriorityThenArrival(t *testing.T) {
	t.Parallel()
	l := newController(t, Config{MaxInFlight: 1, MaxQueuedHigh: 10, MaxQueuedNormal: 10, MaxQueuedLow: 10})
	hold, err := l.Acquire(t.Context(), Low)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan acquired, 5)
	for _, a := range []struct {
		p    Priority
		name string
	}{
		{Low, "low1"}, {Normal, "normal1"}, {Low, "low2"}, {High, "high1"}, {Normal, "normal2"},
	} {
		acquireAsync(t, t.Context(), l, a.p, a.name, out)
	}
	hold()
	var order []string
	for range 5 {
		a := <-out
		if a.err != nil {
			t.Fatalf("%s: %v", a.name, a.err)
		}
		order = append(order, a.name)
		if n := l.InFlight(); n != 1 {
			t.Fatalf("InFlight %d with %s admitted, want 1", n, a.name)
		}
		a.release()
	}
	if got, want := strings.Join(order, " "), "high1 normal1 normal2 low1 low2"; got != want {
		t.Fatalf("admitted %s, want %s", got, want)
	}
	if n := l.InFlight(); n != 0 {
		t.Fatalf("InFlight %d at the end, want 0", n)
	}
}

func TestShedsOnQueueDepth(t *testing.T) {
	t.Parallel()
	l := newController(t, Config{MaxInFlight: 1, MaxQueuedHigh: 1, MaxQueuedNormal: 3, MaxQueuedLow: 2})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	hold, err := l.Acquire(ctx, Normal)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan acquired, 10)
	acquireAsync(t, ctx, l, Normal, "normal1", out)
	acquireAsync(t, ctx, l, Normal, "normal2", out)

	// Two queued ahead of a Low request: its limit.
	_, err = l.Acquire(ctx, Low)
	wantRefused(t, err, codes.ResourceExhausted, ReasonQueueFull, "low-priority request shed", "queue depth 2 >= low-priority limit 2", "retry with backoff")
	if !errors.Is(err, ErrOverloaded) {
		t.Errorf("shed error %v does not wrap ErrOverloaded", err)
	}
	// Normal still has room for one more, then not.
	acquireAsync(t, ctx, l, Normal, "normal3", out)
	_, err = l.Acquire(ctx, Normal)
	wantRefused(t, err, codes.ResourceExhausted, ReasonQueueFull, "queue depth 3 >= normal-priority limit 3")
	// High counts only High requests ahead: three Normal ones do not
	// refuse it, a High one does.
	acquireAsync(t, ctx, l, High, "high1", out)
	_, err = l.Acquire(ctx, High)
	wantRefused(t, err, codes.ResourceExhausted, ReasonQueueFull, "high-priority queue full: 1 waiting, limit 1")

	hold()
	if a := <-out; a.name != "high1" || a.err != nil {
		t.Fatalf("first admitted after the holder: %s (%v), want high1", a.name, a.err)
	} else {
		a.release()
	}
	for range 3 {
		a := <-out
		if a.err != nil {
			t.Fatalf("%s: %v", a.name, a.err)
		}
		a.release()
	}
	if n := l.InFlight(); n != 0 {
		t.Fatalf("InFlight %d at the end, want 0", n)
	}
}

func TestShedsOnLatency(t *testing.T) {
	t.Parallel()
	clk := newClock()
	l := newController(t, Config{
		MaxInFlight: 10, LatencySLO: 10 * time.Millisecond, NormalLatencyLimit: 20 * time.Millisecond,
		LatencyWindow: time.Second, MinSamples: 100, Now: clk.Now,
	})
	refresh := 10 * time.Millisecond // LatencyWindow/100
	admit := func(p Priority) {
		t.Helper()
		release, err := l.Acquire(t.Context(), p)
		if err != nil {
			t.Fatalf("%s refused: %v", p, err)
		}
		release()
	}
	observe := func(n int, d time.Duration) {
		for range n {
			l.Observe(d)
		}
		clk.Advance(refresh)
	}

	// The rules shed only requests that would wait: hold every slot.
	var held []func()
	fill := func() {
		t.Helper()
		for l.InFlight() < 10 {
			release, err := l.Acquire(t.Context(), High)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, release)
		}
	}
	// waitsThenRuns checks that a request of p is queued, not shed, and
	// runs once a held slot frees.
	waitsThenRuns := func(p Priority) {
		t.Helper()
		got := make(chan error, 1)
		go func() {
			release, err := l.Acquire(t.Context(), p)
			if err == nil {
				release()
			}
			got <- err
		}()
		for l.Queued(p) == 0 {
			runtime.Gosched()
		}
		held[0]()
		held = held[1:]
		if err := <-got; err != nil {
			t.Fatalf("%s refused: %v", p, err)
		}
		fill()
	}

	// Slow, but too few requests to trust their p99.
	observe(99, 50*time.Millisecond)
	if _, ok := l.P99(); ok {
		t.Fatal("p99 known from 99 latencies, MinSamples 100")
	}
	fill()
	waitsThenRuns(Low)
	clk.Advance(time.Second + 100*time.Millisecond) // past the window and its last slot

	// p99 of 15 ms: above the SLO, below Normal's limit.
	observe(490, 2*time.Millisecond)
	observe(10, 15*time.Millisecond)
	if p99, ok := l.P99(); !ok || p99 < 14*time.Millisecond || p99 > 16*time.Millisecond {
		t.Fatalf("P99 = %s, %v; want about 15 ms", p99, ok)
	}
	_, err := l.Acquire(t.Context(), Low)
	wantRefused(t, err, codes.ResourceExhausted, ReasonLatency, "low-priority request shed", "> SLO 10.0 ms", "retry with backoff")
	waitsThenRuns(Normal)
	waitsThenRuns(High)

	// p99 of 40 ms: Normal is shed too, High never.
	observe(500, 40*time.Millisecond)
	_, err = l.Acquire(t.Context(), Normal)
	wantRefused(t, err, codes.ResourceExhausted, ReasonLatency, "normal-priority request shed", "> normal-priority limit 20.0 ms")
	_, err = l.Acquire(t.Context(), Low)
	wantRefused(t, err, codes.ResourceExhausted, ReasonLatency)
	waitsThenRuns(High)

	// With a slot free, even Low runs: refusing work the server has room
	// for cannot bring latency down.
	held[0]()
	held = held[1:]
	admit(Low)
	fill()

	// Once the slow latencies leave the window, shedding stops.
	clk.Advance(time.Second + 100*time.Millisecond)
	if _, ok := l.P99(); ok {
		t.Fatal("p99 still known a window after the last latencies")
	}
	waitsThenRuns(Low)
	waitsThenRuns(Normal)
	for _, release := range held {
		release()
	}
	if n := l.InFlight(); n != 0 {
		t.Fatalf("InFlight %d at the end, want 0", n)
	}
}

func TestReleaseRecordsLatency(t *testing.T) {
	t.Parallel()
	for _, manual := range []bool{false, true} {
		t.Run(fmt.Sprintf("ManualObserve=%v", manual), func(t *testing.T) {
			t.Parallel()
			clk := newClock()
			l := newController(t, Config{MaxInFlight: 1, MinSamples: 10, ManualObserve: manual, Now: clk.Now})
			for range 10 {
				release, err := l.Acquire(t.Context(), High)
				if err != nil {
					t.Fatal(err)
				}
				clk.Advance(30 * time.Millisecond)
				release()
			}
			p99, ok := l.P99()
			switch {
			case manual && ok:
				t.Fatalf("P99 = %s from releases with ManualObserve, want none recorded", p99)
			case !manual && (!ok || p99 < 29*time.Millisecond || p99 > 31*time.Millisecond):
				t.Fatalf("P99 = %s, %v after requests of 30 ms, want about 30 ms", p99, ok)
			}
		})
	}
}

func TestContextEndWhileQueued(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// ctx returns the waiter's context and what ends it (nothing for
		// a deadline, which ends by itself).
		ctx    func(context.Context) (ctx context.Context, end, cleanup func())
		code   codes.Code
		reason Reason
		cause  error
	}{
		{"canceled", func(parent context.Context) (context.Context, func(), func()) {
			ctx, cancel := context.WithCancel(parent)
			return ctx, cancel, cancel
		}, codes.Canceled, ReasonCanceled, context.Canceled},
		{"deadline", func(parent context.Context) (context.Context, func(), func()) {
			ctx, cancel := context.WithTimeout(parent, 20*time.Millisecond)
			return ctx, func() {}, cancel
		}, codes.DeadlineExceeded, ReasonDeadline, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newController(t, Config{MaxInFlight: 1})
			hold, err := l.Acquire(t.Context(), Normal)
			if err != nil {
				t.Fatal(err)
			}
			ctx, end, cleanup := tc.ctx(t.Context())
			defer cleanup()
			out := make(chan acquired, 1)
			acquireAsync(t, ctx, l, Normal, "waiter", out)
			behind := make(chan acquired, 1)
			acquireAsync(t, t.Context(), l, Normal, "behind", behind)
			end()
			a := <-out
			wantRefused(t, a.err, tc.code, tc.reason, "waiting")
			if !errors.Is(a.err, tc.cause) {
				t.Errorf("error %v does not wrap %v", a.err, tc.cause)
			}
			if n := l.Queued(Normal); n != 1 {
				t.Fatalf("Queued %d after the waiter left, want 1 (the one behind)", n)
			}
			// The slot goes to the one behind, not to the waiter that left.
			hold()
			b := <-behind
			if b.err != nil {
				t.Fatal(b.err)
			}
			b.release()
			if n := l.InFlight(); n != 0 {
				t.Fatalf("InFlight %d at the end, want 0", n)
			}
		})
	}
}

func TestContextAlreadyDone(t *testing.T) {
	t.Parallel()
	l := newController(t, Config{MaxInFlight: 1})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := l.Acquire(ctx, High)
	wantRefused(t, err, codes.Canceled, ReasonCanceled)
	if n := l.InFlight(); n != 0 {
		t.Fatalf("InFlight %d after a refused request, want 0", n)
	}
}

// TestNoSlotLeaksWhenContextsRace has requests give up while releases hand
// them slots: whatever the interleaving, every slot must come back.
func TestNoSlotLeaksWhenContextsRace(t *testing.T) {
	t.Parallel()
	const max = 2
	// No latency shedding: the race detector on a busy machine may well
	// make requests slower than 10 ms, and only the slot logic is tested.
	l := newController(t, Config{MaxInFlight: max, MaxQueuedHigh: 1000, MaxQueuedNormal: 1000, MaxQueuedLow: 1000, LatencySLO: time.Hour})
	var running, admitted, refused atomic.Int32
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for range 100 {
				ctx, cancel := context.WithTimeout(t.Context(), time.Duration(r.IntN(2000))*time.Microsecond)
				release, err := l.Acquire(ctx, Priority(r.IntN(3)))
				if err != nil {
					if c := status.Code(err); c != codes.DeadlineExceeded {
						t.Errorf("refused with %s (%v), want DeadlineExceeded", c, err)
					}
					refused.Add(1)
					cancel()
					continue
				}
				if n := running.Add(1); n > max {
					t.Errorf("%d requests running, MaxInFlight %d", n, max)
				}
				admitted.Add(1)
				runtime.Gosched()
				running.Add(-1)
				release()
				cancel()
			}
		})
	}
	wg.Wait()
	t.Logf("%d admitted, %d refused", admitted.Load(), refused.Load())
	if n := l.InFlight(); n != 0 {
		t.Fatalf("InFlight %d after every request ended, want 0", n)
	}
	for p := range numPriorities {
		if n := l.Queued(p); n != 0 {
			t.Fatalf("Queued(%s) %d after every request ended, want 0", p, n)
		}
	}
	// Every slot is usable again.
	var releases []func()
	for range max {
		release, err := l.Acquire(t.Context(), Low)
		if err != nil {
			t.Fatalf("Acquire after the race: %v", err)
		}
		releases = append(releases, release)
	}
	for _, r := range releases {
		r()
	}
}

func TestReleaseTwiceIsANoOp(t *testing.T) {
	t.Parallel()
	l := newController(t, Config{MaxInFlight: 1})
	first, err := l.Acquire(t.Context(), Normal)
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan acquired, 2)
	acquireAsync(t, t.Context(), l, Normal, "second", out)
	acquireAsync(t, t.Context(), l, Normal, "third", out)
	first()
	second := <-out
	if second.name != "second" || second.err != nil {
		t.Fatalf("admitted %s (%v), want second", second.name, second.err)
	}
	// A second release of first must not hand second's slot to third.
	first()
	if n, q := l.InFlight(), l.Queued(Normal); n != 1 || q != 1 {
		t.Fatalf("after releasing first twice: InFlight %d, Queued %d; want 1 and 1", n, q)
	}
	second.release()
	third := <-out
	if third.err != nil {
		t.Fatal(third.err)
	}
	third.release()
	third.release()
	second.release()
	if n := l.InFlight(); n != 0 {
		t.Fatalf("InFlight %d after double releases, want 0 (not negative)", n)
	}
	// The one slot is still one slot.
	a, err := l.Acquire(t.Context(), Normal)
	if err != nil {
		t.Fatal(err)
	}
	defer a()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Millisecond)
	defer cancel()
	if _, err := l.Acquire(ctx, Normal); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("second Acquire of a one-slot controller: %v, want DeadlineExceeded", err)
	}
}

func TestUnknownPriority(t *testing.T) {
	t.Parallel()
	l := newController(t, Config{})
	if _, err := l.Acquire(t.Context(), Priority(7)); status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "unknown priority 7") {
		t.Fatalf("Acquire(Priority(7)) = %v, want Internal naming it", err)
	}
}

func TestFromProto(t *testing.T) {
	t.Parallel()
	for in, want := range map[adaptrecv1.Priority]Priority{
		adaptrecv1.Priority_PRIORITY_UNSPECIFIED: Normal,
		adaptrecv1.Priority_PRIORITY_HIGH:        High,
		adaptrecv1.Priority_PRIORITY_NORMAL:      Normal,
		adaptrecv1.Priority_PRIORITY_LOW:         Low,
		adaptrecv1.Priority(42):                  Normal,
	} {
		if got := FromProto(in); got != want {
			t.Errorf("FromProto(%v) = %s, want %s", in, got, want)
		}
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string
	}{
		{"zero value", Config{}, nil},
		{"negatives", Config{MaxInFlight: -1, MaxQueuedLow: -2, MinSamples: -3, LatencySLO: -time.Millisecond, LatencyWindow: -time.Second},
			[]string{"MaxInFlight must be >= 0", "MaxQueuedLow must be >= 0 (0: default), got -2", "MinSamples", "LatencySLO must be >= 0", "LatencyWindow"}},
		{"normal limit below the SLO", Config{LatencySLO: 20 * time.Millisecond, NormalLatencyLimit: 15 * time.Millisecond},
			[]string{"NormalLatencyLimit 15ms is below LatencySLO 20ms", "at least 20ms"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: nil, want errors naming %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate: %q does not say %q", err, w)
				}
			}
			if _, err := New(tc.cfg); err == nil {
				t.Error("New accepted the invalid config")
			}
		})
	}
	d := Config{}.withDefaults()
	if want := 2 * runtime.GOMAXPROCS(0); d.MaxInFlight != want || d.MaxQueuedLow != want || d.MaxQueuedNormal != 2*want || d.MaxQueuedHigh != 4*want {
		t.Errorf("default MaxInFlight %d, queues %d/%d/%d; want %d and %d/%d/%d",
			d.MaxInFlight, d.MaxQueuedHigh, d.MaxQueuedNormal, d.MaxQueuedLow, want, 4*want, 2*want, want)
	}
	if d.NormalLatencyLimit != 15*time.Millisecond {
		t.Errorf("default NormalLatencyLimit %s, want 15ms", d.NormalLatencyLimit)
	}
}

// TestBuckets checks the latency histogram: buckets are ordered, contiguous,
// and a bucket's midpoint is within 3.2% of every latency in it.
func TestBuckets(t *testing.T) {
	t.Parallel()
	prev := 0
	for us := int64(0); us <= maxMicros; us += max(1, us/97) {
		d := time.Duration(us) * time.Microsecond
		b := bucket(d)
		if b < prev || b > prev+1 || b >= numBuckets {
			t.Fatalf("bucket(%s) = %d after %d (of %d)", d, b, prev, numBuckets)
		}
		prev = b
		if mid := bucketMid(b); us >= subBuckets {
			if rel := float64(mid-d) / float64(d); rel > 0.032 || rel < -0.032 {
				t.Fatalf("bucket %d of %s has midpoint %s: %.1f%% off", b, d, mid, 100*rel)
			}
		}
	}
	if b := bucket(time.Hour); b != numBuckets-1 {
		t.Errorf("bucket(1h) = %d, want the last, %d", b, numBuckets-1)
	}
	if b := bucket(-time.Second); b != 0 {
		t.Errorf("bucket(-1s) = %d, want 0", b)
	}
}

func BenchmarkAcquireRelease(b *testing.B) {
	l, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			release, err := l.Acquire(ctx, Normal)
			if err != nil {
				b.Error(err)
				return
			}
			release()
		}
	})
}

func metric(t *testing.T, name string, labels map[string]string) float64 {
	return metricstest.Must(t, name, labels)
}

// TestMetrics is not parallel: the metrics are process-wide, and parallel
// tests start only after it ends.
func TestMetrics(t *testing.T) {
	l := newController(t, Config{MaxInFlight: 1, MaxQueuedLow: 1})
	normal := map[string]string{"priority": "normal"}
	lowQueueFull := map[string]string{"priority": "low", "reason": "queue_full"}
	shedBefore := metric(t, "adaptrec_admission_shed_total", lowQueueFull)
	waitsBefore := metric(t, "adaptrec_admission_wait_seconds", normal)

	hold, err := l.Acquire(t.Context(), Normal)
	if err != nil {
		t.Fatal(err)
	}
	if got := metric(t, "adaptrec_admission_in_flight", nil); got != 1 {
		t.Errorf("in_flight %v with one request admitted, want 1", got)
	}
	out := make(chan acquired, 1)
	acquireAsync(t, t.Context(), l, Normal, "waiter", out)
	if got := metric(t, "adaptrec_admission_queued", normal); got != 1 {
		t.Errorf("queued{normal} %v with one waiter, want 1", got)
	}
	if _, err := l.Acquire(t.Context(), Low); err == nil {
		t.Fatal("Low admitted past a full queue")
	}
	if got := metric(t, "adaptrec_admission_shed_total", lowQueueFull) - shedBefore; got != 1 {
		t.Errorf("shed_total{low,queue_full} rose by %v, want 1", got)
	}
	hold()
	a := <-out
	if a.err != nil {
		t.Fatal(a.err)
	}
	a.release()
	if got := metric(t, "adaptrec_admission_wait_seconds", normal) - waitsBefore; got != 2 {
		t.Errorf("wait_seconds{normal} count rose by %v, want 2 (one immediate, one queued)", got)
	}
	if got, q := metric(t, "adaptrec_admission_in_flight", nil), metric(t, "adaptrec_admission_queued", normal); got != 0 || q != 0 {
		t.Errorf("in_flight %v, queued{normal} %v at the end, want 0 and 0", got, q)
	}
}
