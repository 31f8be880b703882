// Package breaker is a circuit breaker for one dependency of the serving
// path (Redis, the ONNX ranker, the ANN index, ...): once the dependency
// has kept failing for a while, callers stop waiting on it and take their
// fallback at once, and one call per cooldown probes whether it is back.
//
// A Breaker is closed (calls go through), open (calls are refused) or
// half-open (one probe call went through; the others are refused until it
// reports or another cooldown passes). It opens after Failures consecutive
// failures that span at least MinFailureSpan: a stall of a few milliseconds
// fails a burst of calls but is over before a breaker would help, and
// opening on it would only turn a short stall into a cooldown-long outage.
//
// The breaker is lock-free. Allow on a closed breaker is one atomic load,
// and Success on a closed breaker with no failure streak two, so it costs
// nothing a request would notice; nothing allocates after New.
//
// The caller passes the time to Allow and Failure: serving paths already
// read the clock once per request, and tests drive the breaker with a fake
// clock instead of sleeping.
package breaker

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Defaults of Config.
const (
	// DefaultFailures consecutive failures may open a breaker.
	DefaultFailures = 5
	// DefaultCooldown is how long a breaker stays open before a probe.
	DefaultCooldown = 100 * time.Millisecond
)

// One vec per metric for the whole process, labelled by breaker name:
// promauto panics when the same metric is registered twice, which a
// per-Breaker registration would do as soon as a second breaker exists.
var (
	stateGauge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "adaptrec_breaker_state",
		Help: "Circuit breaker state by breaker: 0 closed, 1 half-open, 2 open.",
	}, []string{"breaker"})
	transitionsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_breaker_transitions_total",
		Help: "Circuit breaker state changes, by breaker and the state entered (closed, half_open, open).",
	}, []string{"breaker", "to"})
)

// State is where a breaker stands. Its numeric value is what the
// adaptrec_breaker_state gauge reports, ordered from healthy to refusing.
type State int32

// States of a breaker.
const (
	// Closed lets every call through; failures are being counted.
	Closed State = 0
	// HalfOpen has let one probe through after a cooldown; other calls are
	// refused until the probe reports or another cooldown passes.
	HalfOpen State = 1
	// Open refuses every call until its cooldown ends.
	Open State = 2
)

// String returns the state as the metrics label it uses: closed,
// half_open or open.
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case HalfOpen:
		return "half_open"
	case Open:
		return "open"
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// Config configures a Breaker. Zero values mean the documented defaults;
// Validate reports every bad field at once.
type Config struct {
	// Name identifies the dependency in metrics (the breaker label), e.g.
	// "online_features_redis". It is required. Breakers that share a name
	// share their metric series, so give each dependency its own.
	Name string
	// Failures is how many consecutive failures may open the breaker
	// (DefaultFailures when 0).
	Failures int
	// MinFailureSpan is how long the failure streak must last, from its
	// first failure to the one that would open the breaker, before it
	// opens (Cooldown when 0). Set it to time.Nanosecond to open on the
	// count alone.
	MinFailureSpan time.Duration
	// Cooldown is how long the breaker stays open before it lets a probe
	// through, and how long a probe that never reports (its caller gave up)
	// holds the breaker half-open before the next probe
	// (DefaultCooldown when 0).
	Cooldown time.Duration
}

// Validate reports every invalid field of c, naming it and the fix.
func (c Config) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("breaker: Name is required: it labels the breaker's metrics; name the dependency, e.g. \"online_features_redis\""))
	}
	if c.Failures < 0 {
		errs = append(errs, fmt.Errorf("breaker %q: Failures must be >= 0 (0: default %d), got %d", c.Name, DefaultFailures, c.Failures))
	}
	if c.MinFailureSpan < 0 {
		errs = append(errs, fmt.Errorf("breaker %q: MinFailureSpan must be >= 0 (0: Cooldown), got %s", c.Name, c.MinFailureSpan))
	}
	if c.Cooldown < 0 {
		errs = append(errs, fmt.Errorf("breaker %q: Cooldown must be >= 0 (0: default %s), got %s", c.Name, DefaultCooldown, c.Cooldown))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.Failures == 0 {
		c.Failures = DefaultFailures
	}
	if c.Cooldown == 0 {
		c.Cooldown = DefaultCooldown
	}
	if c.MinFailureSpan == 0 {
		c.MinFailureSpan = c.Cooldown
	}
	return c
}

// Breaker guards one dependency. Call Allow before each call to it; when it
// reports true, make the call and report its outcome with Success or
// Failure. A call whose outcome says nothing about the dependency (the
// caller's own context ended) reports neither. A Breaker is safe for
// concurrent use.
type Breaker struct {
	name     string
	failures int32
	span     int64 // ns
	cooldown int64 // ns

	// word packs the state (top two bits) with the Unix ns time from which
	// the next probe may go (the other 62, enough until 2116), so that a
	// transition and its deadline change together in one compare-and-swap:
	// no caller can see a new state with an old deadline.
	word atomic.Uint64
	// streak counts consecutive failures; since is the Unix ns time of the
	// streak's first failure, 0 while it is not yet known.
	streak atomic.Int32
	since  atomic.Int64

	gauge prometheus.Gauge
	to    [3]prometheus.Counter // by State
}

const (
	stateShift = 62
	atMask     = 1<<stateShift - 1
)

func pack(s State, at int64) uint64 {
	return uint64(s)<<stateShift | uint64(min(max(at, 0), atMask))
}

func stateOf(w uint64) State { return State(w >> stateShift) }

func probeAt(w uint64) int64 { return int64(w & atMask) }

// New returns a closed breaker configured by cfg, or the errors of
// cfg.Validate.
func New(cfg Config) (*Breaker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	b := &Breaker{
		name:     cfg.Name,
		failures: int32(min(cfg.Failures, 1<<30)),
		span:     int64(cfg.MinFailureSpan),
		cooldown: int64(cfg.Cooldown),
		gauge:    stateGauge.WithLabelValues(cfg.Name),
	}
	for s := Closed; s <= Open; s++ {
		b.to[s] = transitionsTotal.WithLabelValues(cfg.Name, s.String())
	}
	b.gauge.Set(float64(Closed))
	return b, nil
}

// Name returns the name the breaker reports its metrics under.
func (b *Breaker) Name() string { return b.name }

// State returns the breaker's current state.
func (b *Breaker) State() State { return stateOf(b.word.Load()) }

// Allow reports whether a call may go to the dependency at now. A closed
// breaker allows every call. An open or half-open one refuses calls until
// its cooldown ends; then exactly one caller, whoever claims the probe
// first, is allowed and the breaker is half-open until that probe reports
// or another cooldown passes (so a probe whose caller gave up does not
// hold the breaker half-open for ever).
func (b *Breaker) Allow(now time.Time) bool {
	w := b.word.Load()
	if stateOf(w) == Closed {
		return true
	}
	n := now.UnixNano()
	if n < probeAt(w) {
		return false
	}
	// One probe per cooldown: whoever moves the deadline goes.
	if !b.word.CompareAndSwap(w, pack(HalfOpen, n+b.cooldown)) {
		return false
	}
	if stateOf(w) != HalfOpen {
		b.record(HalfOpen)
	}
	return true
}

// Success reports that an allowed call succeeded: the failure streak ends
// and a breaker that is not closed closes, since the dependency just
// answered (normally the probe, but a call let through before the breaker
// opened that succeeds late is as good a sign).
func (b *Breaker) Success() {
	if b.streak.Load() != 0 {
		// since first, so that a concurrent Failure that reads the streak
		// still running sees no start time and does not open on it.
		b.since.Store(0)
		b.streak.Store(0)
	}
	for {
		w := b.word.Load()
		if stateOf(w) == Closed {
			return
		}
		if b.word.CompareAndSwap(w, pack(Closed, 0)) {
			b.record(Closed)
			return
		}
	}
}

// Failure reports that an allowed call failed at now. On a closed breaker
// it extends the failure streak and opens the breaker once the streak is
// long enough in count and in time. On a half-open breaker it is taken as
// the probe's failure and re-opens the breaker for another cooldown. On an
// open breaker it comes from a call let through before the breaker opened,
// says nothing new, and is ignored.
func (b *Breaker) Failure(now time.Time) {
	n := now.UnixNano()
	w := b.word.Load()
	switch stateOf(w) {
	case Closed:
		if b.streak.Add(1) == 1 {
			b.since.Store(n)
		}
		since := b.since.Load()
		if b.streak.Load() < b.failures || since == 0 || n-since < b.span {
			return
		}
		if b.word.CompareAndSwap(w, pack(Open, n+b.cooldown)) {
			b.since.Store(0)
			b.streak.Store(0)
			b.record(Open)
		}
	case HalfOpen:
		if b.word.CompareAndSwap(w, pack(Open, n+b.cooldown)) {
			b.record(Open)
		}
	}
}

// record counts a transition into to, made by this caller's
// compare-and-swap. The gauge is set from the current state rather than
// to: transitions racing each other may record out of order, and the
// gauge should still end on the state the breaker is in.
func (b *Breaker) record(to State) {
	b.to[to].Inc()
	b.gauge.Set(float64(b.State()))
}
