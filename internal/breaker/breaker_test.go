package breaker

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/internal/metricstest"
)

var t0 = time.Unix(1_000_000, 0)

func newBreaker(t *testing.T, cfg Config) *Breaker {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "test_" + t.Name()
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// open drives b from closed to open at at with a streak of failures (at
// least 2) spread evenly over span, the breaker's Failures and
// MinFailureSpan.
func open(t *testing.T, b *Breaker, failures int, span time.Duration, at time.Time) {
	t.Helper()
	if failures < 2 {
		t.Fatalf("open needs a streak of at least 2 failures, got %d", failures)
	}
	for i := range failures {
		if got := b.State(); got != Closed {
			t.Fatalf("failure %d of %d: state %s, want closed", i+1, failures, got)
		}
		b.Failure(at.Add(-span + time.Duration(i)*span/time.Duration(failures-1)))
	}
	if got := b.State(); got != Open {
		t.Fatalf("after %d failures over %s: state %s, want open", failures, span, got)
	}
}

func TestOpensOnlyOnALongEnoughStreak(t *testing.T) {
	t.Parallel()
	const span = time.Second
	for _, tc := range []struct {
		name string
		// failures at these offsets from t0, in order
		at   []time.Duration
		want State
	}{
		{"too few failures, long enough", []time.Duration{0, 2 * span}, Closed},
		{"enough failures, too short (a stall)", []time.Duration{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, Closed},
		{"enough failures, just short of the span", []time.Duration{0, 1, span - 1}, Closed},
		{"enough failures spanning exactly the span", []time.Duration{0, 1, span}, Open},
		{"a short burst, then one late failure", []time.Duration{0, 1, 2, 3, span}, Open},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBreaker(t, Config{Failures: 3, MinFailureSpan: span, Cooldown: 10 * time.Second})
			for _, d := range tc.at {
				b.Failure(t0.Add(d))
			}
			if got := b.State(); got != tc.want {
				t.Fatalf("state %s, want %s", got, tc.want)
			}
			if allowed := b.Allow(t0.Add(tc.at[len(tc.at)-1])); allowed != (tc.want == Closed) {
				t.Fatalf("Allow = %v in state %s", allowed, tc.want)
			}
		})
	}
}

func TestSuccessResetsTheStreak(t *testing.T) {
	t.Parallel()
	b := newBreaker(t, Config{Failures: 3, MinFailureSpan: time.Second})
	b.Failure(t0)
	b.Failure(t0.Add(time.Second))
	b.Success()
	// Without the reset this third failure would complete a streak of three
	// spanning two seconds.
	b.Failure(t0.Add(2 * time.Second))
	if got := b.State(); got != Closed {
		t.Fatalf("state %s after a success broke the streak, want closed", got)
	}
	// The new streak starts at its own first failure, not the old one.
	b.Failure(t0.Add(2*time.Second + time.Millisecond))
	b.Failure(t0.Add(2*time.Second + 2*time.Millisecond))
	if got := b.State(); got != Closed {
		t.Fatalf("state %s after a new streak of 3 lasting 2ms, want closed", got)
	}
	b.Failure(t0.Add(3 * time.Second))
	if got := b.State(); got != Open {
		t.Fatalf("state %s after the new streak lasted a second, want open", got)
	}
}

func TestOpenRefusesUntilCooldownThenProbes(t *testing.T) {
	t.Parallel()
	const cooldown = 100 * time.Millisecond
	b := newBreaker(t, Config{Failures: 2, Cooldown: cooldown})
	open(t, b, 2, cooldown, t0)
	for _, d := range []time.Duration{0, time.Millisecond, cooldown - 1} {
		if b.Allow(t0.Add(d)) {
			t.Fatalf("open breaker allowed a call %s after opening, before its %s cooldown", d, cooldown)
		}
	}
	if b.State() != Open {
		t.Fatalf("state %s after refused calls, want open", b.State())
	}
	if !b.Allow(t0.Add(cooldown)) {
		t.Fatal("no probe once the cooldown ended")
	}
	if got := b.State(); got != HalfOpen {
		t.Fatalf("state %s after the probe went, want half_open", got)
	}
	if b.Allow(t0.Add(cooldown)) || b.Allow(t0.Add(2*cooldown-1)) {
		t.Fatal("a second call allowed while the probe is out")
	}
}

func TestExactlyOneConcurrentProbe(t *testing.T) {
	t.Parallel()
	const cooldown = 50 * time.Millisecond
	b := newBreaker(t, Config{Failures: 2, MinFailureSpan: time.Nanosecond, Cooldown: cooldown})
	b.Failure(t0.Add(-time.Millisecond))
	b.Failure(t0)
	if b.State() != Open {
		t.Fatalf("state %s, want open", b.State())
	}
	for round := range 20 {
		// Each round is one cooldown later than the last probe, so exactly
		// one of the callers racing in it may go.
		at := t0.Add(time.Duration(round+1) * cooldown)
		var allowed atomic.Int32
		var start, wg sync.WaitGroup
		start.Add(1)
		for range 64 {
			wg.Go(func() {
				start.Wait()
				for range 10 {
					if b.Allow(at) {
						allowed.Add(1)
					}
				}
			})
		}
		start.Done()
		wg.Wait()
		if n := allowed.Load(); n != 1 {
			t.Fatalf("round %d: %d of 640 concurrent calls allowed after the cooldown, want exactly 1", round, n)
		}
		if b.State() != HalfOpen {
			t.Fatalf("round %d: state %s, want half_open", round, b.State())
		}
		// The probe never reports (its caller gave up): the next round's
		// cooldown lets another one through.
	}
}

func TestProbeOutcome(t *testing.T) {
	t.Parallel()
	const cooldown = 100 * time.Millisecond
	t.Run("success closes", func(t *testing.T) {
		t.Parallel()
		b := newBreaker(t, Config{Failures: 2, Cooldown: cooldown})
		open(t, b, 2, cooldown, t0)
		probe := t0.Add(cooldown)
		if !b.Allow(probe) {
			t.Fatal("no probe after the cooldown")
		}
		b.Success()
		if got := b.State(); got != Closed {
			t.Fatalf("state %s after the probe succeeded, want closed", got)
		}
		for range 5 {
			if !b.Allow(probe) {
				t.Fatal("closed breaker refused a call")
			}
		}
		// The streak that opened it is gone: one more failure is no streak.
		b.Failure(probe.Add(time.Hour))
		if got := b.State(); got != Closed {
			t.Fatalf("state %s after one failure following a close, want closed", got)
		}
	})
	t.Run("failure reopens for another cooldown", func(t *testing.T) {
		t.Parallel()
		b := newBreaker(t, Config{Failures: 2, Cooldown: cooldown})
		open(t, b, 2, cooldown, t0)
		probe := t0.Add(cooldown)
		if !b.Allow(probe) {
			t.Fatal("no probe after the cooldown")
		}
		failed := probe.Add(30 * time.Millisecond)
		b.Failure(failed)
		if got := b.State(); got != Open {
			t.Fatalf("state %s after the probe failed, want open", got)
		}
		// The new cooldown runs from the probe's failure, not its start.
		if b.Allow(failed.Add(cooldown - 1)) {
			t.Fatal("reopened breaker allowed a call before its new cooldown")
		}
		if !b.Allow(failed.Add(cooldown)) {
			t.Fatal("no second probe after the new cooldown")
		}
	})
	t.Run("late failure while open is ignored", func(t *testing.T) {
		t.Parallel()
		b := newBreaker(t, Config{Failures: 2, Cooldown: cooldown})
		open(t, b, 2, cooldown, t0)
		// A call let through before the breaker opened fails late; the
		// cooldown must not be pushed back by it.
		b.Failure(t0.Add(cooldown / 2))
		if !b.Allow(t0.Add(cooldown)) {
			t.Fatal("a late failure while open delayed the probe")
		}
	})
}

func value(t *testing.T, name string, labels map[string]string) float64 {
	return metricstest.Must(t, name, labels)
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	const cooldown = time.Second
	b := newBreaker(t, Config{Name: "test_metrics_dep", Failures: 2, Cooldown: cooldown})
	// A second breaker under another name must register without a panic
	// and keep its own series.
	other := newBreaker(t, Config{Name: "test_metrics_other"})
	state := func(name string) float64 {
		return value(t, "adaptrec_breaker_state", map[string]string{"breaker": name})
	}
	moves := func(to State) float64 {
		return value(t, "adaptrec_breaker_transitions_total", map[string]string{"breaker": b.Name(), "to": to.String()})
	}
	// Counters outlive a test run with -count > 1: compare increases.
	var before [3]float64
	for s := range before {
		before[s] = moves(State(s))
	}
	if state(b.Name()) != 0 {
		t.Fatalf("state gauge %v for a new breaker, want 0", state(b.Name()))
	}
	open(t, b, 2, cooldown, t0)
	if got := state(b.Name()); got != 2 {
		t.Fatalf("state gauge %v when open, want 2", got)
	}
	b.Allow(t0.Add(cooldown))
	if got := state(b.Name()); got != 1 {
		t.Fatalf("state gauge %v when half-open, want 1", got)
	}
	b.Success()
	if got := state(b.Name()); got != 0 {
		t.Fatalf("state gauge %v when closed again, want 0", got)
	}
	for _, s := range []State{Open, HalfOpen, Closed} {
		if got := moves(s) - before[s]; got != 1 {
			t.Errorf("transitions to %s rose by %v, want 1", s, got)
		}
	}
	if got := state(other.Name()); got != 0 {
		t.Errorf("other breaker's gauge %v, want 0", got)
	}
}

func TestNoAllocations(t *testing.T) {
	b := newBreaker(t, Config{Failures: 1, MinFailureSpan: time.Nanosecond})
	if n := testing.AllocsPerRun(100, func() {
		b.Allow(t0)
		b.Success()
	}); n != 0 {
		t.Errorf("closed Allow+Success: %v allocations, want 0", n)
	}
	b.Failure(t0)
	b.Failure(t0.Add(time.Millisecond))
	if n := testing.AllocsPerRun(100, func() { b.Allow(t0) }); n != 0 {
		t.Errorf("open Allow: %v allocations, want 0", n)
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string // substrings of the error, none when valid
	}{
		{"zero value but a name", Config{Name: "x"}, nil},
		{"no name", Config{}, []string{"Name is required"}},
		{"negatives", Config{Name: "x", Failures: -1, MinFailureSpan: -time.Second, Cooldown: -time.Second},
			[]string{"Failures must be >= 0", "got -1", "MinFailureSpan must be >= 0", "Cooldown must be >= 0", "got -1s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: nil, want an error naming %q", tc.want)
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
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	b := newBreaker(t, Config{})
	// DefaultFailures failures over less than DefaultCooldown: a stall.
	for i := range DefaultFailures {
		b.Failure(t0.Add(time.Duration(i) * time.Millisecond))
	}
	if b.State() != Closed {
		t.Fatalf("default breaker opened on %d failures within %s", DefaultFailures, DefaultCooldown)
	}
	b.Failure(t0.Add(DefaultCooldown))
	if b.State() != Open {
		t.Fatalf("default breaker still %s after failures spanning %s", b.State(), DefaultCooldown)
	}
	if b.Allow(t0.Add(2*DefaultCooldown - 1)) {
		t.Fatal("default breaker probed before its cooldown")
	}
	if !b.Allow(t0.Add(2 * DefaultCooldown)) {
		t.Fatal("default breaker did not probe after its cooldown")
	}
}

func TestStateString(t *testing.T) {
	t.Parallel()
	for s, want := range map[State]string{Closed: "closed", HalfOpen: "half_open", Open: "open", State(7): "State(7)"} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", int32(s), got, want)
		}
	}
}

func BenchmarkAllowClosed(b *testing.B) {
	br, err := New(Config{Name: "bench_allow_closed"})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if br.Allow(now) {
				br.Success()
			}
		}
	})
}
