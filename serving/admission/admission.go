// Package admission decides which Recommend requests a serving instance
// works on when it cannot work on all of them within the latency SLO.
//
// A Controller bounds how many requests run at once (MaxInFlight). A request
// that finds every slot taken waits in a queue ordered by priority (High
// first, first come first served within a priority) until a slot frees or
// its context ends. Running more requests at once than the CPUs can serve
// does not serve more: it slows every request down, so that under overload
// all of them miss the SLO instead of some of them being refused.
//
// Under overload the Controller refuses requests at once rather than letting
// them wait out their deadline, cheapest first:
//
//   - queue depth: a request that would wait behind MaxQueuedLow (Low),
//     MaxQueuedNormal (Normal) or MaxQueuedHigh (High) queued requests is
//     refused. High requests only count the High requests ahead of them,
//     so lower priorities never fill the queue for High;
//   - latency: while the p99 of recent request latency is above
//     LatencySLO, Low requests are shed; above NormalLatencyLimit, Normal
//     requests too. High requests are never shed for latency.
//
// Both rules apply only to a request that finds every slot taken: with a
// slot free the server has room for it, and refusing it would turn a slow
// answer (latency that comes from a dependency or a noisy neighbour, not
// from queueing here) into an error.
//
// Refusals are errors that carry a gRPC status (status.Code and
// status.Convert read it): ResourceExhausted for shedding, with a message
// saying why and that the caller should retry with backoff, and
// DeadlineExceeded or Canceled when the request's context ended while it
// waited.
package admission

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

// Priority orders requests: High is admitted first and shed last.
type Priority uint8

// Priorities, in the order the queue serves them.
const (
	High Priority = iota
	Normal
	Low
	numPriorities
)

// String returns the priority as its metrics label: high, normal or low.
func (p Priority) String() string {
	switch p {
	case High:
		return "high"
	case Normal:
		return "normal"
	case Low:
		return "low"
	}
	return fmt.Sprintf("Priority(%d)", uint8(p))
}

// FromProto converts a request's priority. PRIORITY_UNSPECIFIED is Normal:
// a client that says nothing gets the default treatment, neither shed
// first nor protected. Values the enum does not define are Normal too;
// serving rejects them as InvalidArgument before admission anyway.
func FromProto(p adaptrecv1.Priority) Priority {
	switch p {
	case adaptrecv1.Priority_PRIORITY_HIGH:
		return High
	case adaptrecv1.Priority_PRIORITY_LOW:
		return Low
	}
	return Normal
}

// Reason says why a request was refused, as the reason label of
// adaptrec_admission_shed_total.
type Reason string

// Reasons for refusing a request.
const (
	// ReasonQueueFull: too many requests were already queued ahead of it.
	ReasonQueueFull Reason = "queue_full"
	// ReasonLatency: the recent p99 latency is above the priority's limit.
	ReasonLatency Reason = "latency"
	// ReasonDeadline: its context's deadline passed while it waited.
	ReasonDeadline Reason = "deadline"
	// ReasonCanceled: its context was canceled while it waited.
	ReasonCanceled Reason = "canceled"
)

// ErrOverloaded is what shed requests' errors wrap (errors.Is), for
// callers that want to tell shedding from other failures without gRPC.
var ErrOverloaded = errors.New("server overloaded")

// Error is a refused request. It carries its gRPC status (GRPCStatus), so
// a handler can return it as is. It wraps ErrOverloaded when the request
// was shed, or its context's error when the context ended.
type Error struct {
	// Code is the gRPC code: ResourceExhausted, DeadlineExceeded or
	// Canceled.
	Code     codes.Code
	Priority Priority
	Reason   Reason
	msg      string
	cause    error
}

// Error returns the message the gRPC status carries.
func (e *Error) Error() string { return e.msg }

// GRPCStatus returns the status a gRPC handler returning e sends.
func (e *Error) GRPCStatus() *status.Status { return status.New(e.Code, e.msg) }

// Unwrap returns ErrOverloaded or the context's error.
func (e *Error) Unwrap() error { return e.cause }

// Defaults of Config.
const (
	// DefaultLatencySLO is the Recommend endpoint's p99 objective.
	DefaultLatencySLO = 10 * time.Millisecond
	// DefaultLatencyWindow is how much recent latency the p99 covers: at
	// 500 requests/s, 2500 requests, so one slow request in a hundred
	// moves it, and a recovered server stops shedding within seconds.
	DefaultLatencyWindow = 5 * time.Second
	// DefaultMinSamples is how many latencies the window must hold before
	// its p99 may shed anything: the p99 of a few requests is their
	// maximum, and one slow request must not shed traffic for a window.
	DefaultMinSamples = 100
)

// DefaultMaxInFlight returns the MaxInFlight used when Config leaves it 0:
// twice GOMAXPROCS. A Recommend request is mostly CPU (feature assembly,
// ranking) with short waits on Redis and the ANN index in between: one
// request per CPU would leave CPUs idle during those waits, while many more
// than the CPUs only share them, making every running request slower. At
// 500 requests/s and a few milliseconds each, Little's law puts the
// typical concurrency at 2-5, so the bound only binds under overload.
func DefaultMaxInFlight() int { return 2 * runtime.GOMAXPROCS(0) }

// Config configures a Controller. Zero values mean the documented defaults;
// Validate reports every bad field at once.
type Config struct {
	// MaxInFlight is how many requests may run at once
	// (DefaultMaxInFlight when 0).
	MaxInFlight int
	// MaxQueuedHigh is how many High requests may be waiting when a High
	// request arrives to find no free slot; one more is refused
	// (4×MaxInFlight when 0). Each queued request ahead costs about
	// 1/MaxInFlight of a request's service time in waiting, so the
	// defaults bound the wait to a few service times for High and about
	// one for Low, beyond which a request would likely miss the SLO anyway.
	MaxQueuedHigh int
	// MaxQueuedNormal is how many High and Normal requests may be waiting
	// when a Normal request arrives to find no free slot
	// (2×MaxInFlight when 0).
	MaxQueuedNormal int
	// MaxQueuedLow is how many requests of any priority may be waiting
	// when a Low request arrives to find no free slot
	// (MaxInFlight when 0).
	MaxQueuedLow int
	// LatencySLO is the p99 latency objective: while the recent p99 is
	// above it, Low requests are shed (DefaultLatencySLO when 0).
	LatencySLO time.Duration
	// NormalLatencyLimit is the recent p99 above which Normal requests are
	// shed too (1.5×LatencySLO when 0). It must not be below LatencySLO:
	// Normal is shed only once shedding Low has not been enough.
	NormalLatencyLimit time.Duration
	// LatencyWindow is how far back the p99 looks (DefaultLatencyWindow
	// when 0). It moves in steps of a tenth of the window.
	LatencyWindow time.Duration
	// MinSamples is how many latencies the window must hold before the
	// latency rule applies (DefaultMinSamples when 0).
	MinSamples int
	// ManualObserve stops release from recording each request's latency
	// (from Acquire to release, waiting included). Set it when the caller
	// measures the whole request itself, e.g. in a gRPC interceptor, and
	// passes it to Observe; otherwise each request would count twice.
	ManualObserve bool
	// Now is the clock (time.Now when nil); tests replace it.
	Now func() time.Time
}

// Validate reports every invalid field of c, naming it and the fix.
func (c Config) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		v    int
	}{
		{"MaxInFlight", c.MaxInFlight},
		{"MaxQueuedHigh", c.MaxQueuedHigh},
		{"MaxQueuedNormal", c.MaxQueuedNormal},
		{"MaxQueuedLow", c.MaxQueuedLow},
		{"MinSamples", c.MinSamples},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("admission: %s must be >= 0 (0: default), got %d", f.name, f.v))
		}
	}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{
		{"LatencySLO", c.LatencySLO},
		{"NormalLatencyLimit", c.NormalLatencyLimit},
		{"LatencyWindow", c.LatencyWindow},
	} {
		if f.v < 0 {
			errs = append(errs, fmt.Errorf("admission: %s must be >= 0 (0: default), got %s", f.name, f.v))
		}
	}
	if d := c.withDefaults(); c.NormalLatencyLimit > 0 && d.NormalLatencyLimit < d.LatencySLO {
		errs = append(errs, fmt.Errorf("admission: NormalLatencyLimit %s is below LatencySLO %s: Normal requests would be shed before Low ones; raise it to at least %s or leave it 0 (1.5×LatencySLO)", d.NormalLatencyLimit, d.LatencySLO, d.LatencySLO))
	}
	return errors.Join(errs...)
}

func (c Config) withDefaults() Config {
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight()
	}
	if c.MaxQueuedHigh == 0 {
		c.MaxQueuedHigh = 4 * c.MaxInFlight
	}
	if c.MaxQueuedNormal == 0 {
		c.MaxQueuedNormal = 2 * c.MaxInFlight
	}
	if c.MaxQueuedLow == 0 {
		c.MaxQueuedLow = c.MaxInFlight
	}
	if c.LatencySLO == 0 {
		c.LatencySLO = DefaultLatencySLO
	}
	if c.NormalLatencyLimit == 0 {
		c.NormalLatencyLimit = c.LatencySLO * 3 / 2
	}
	if c.LatencyWindow == 0 {
		c.LatencyWindow = DefaultLatencyWindow
	}
	if c.MinSamples == 0 {
		c.MinSamples = DefaultMinSamples
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

var (
	inFlightGauge = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "adaptrec_admission_in_flight",
		Help: "Requests admitted and not yet released.",
	})
	queuedGauge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "adaptrec_admission_queued",
		Help: "Requests waiting for admission, by priority.",
	}, []string{"priority"})
	shedTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_admission_shed_total",
		Help: "Requests refused by admission control, by priority and reason (queue_full, latency, deadline, canceled).",
	}, []string{"priority", "reason"})
	waitSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "adaptrec_admission_wait_seconds",
		Help:    "Time admitted requests waited for a slot, by priority (0 when one was free).",
		Buckets: []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1},
	}, []string{"priority"})
	p99Gauge = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "adaptrec_admission_latency_p99_seconds",
		Help: "Recent p99 request latency the latency shedding rule compares with the SLO (0 until the window holds enough requests).",
	})
)

var reasons = [...]Reason{ReasonQueueFull, ReasonLatency, ReasonDeadline, ReasonCanceled}

// Controller admits requests; see the package documentation. It is safe for
// concurrent use. A serving process has one: the in-flight and queue gauges
// of several would add up, and the p99 gauge show whichever computed last.
type Controller struct {
	cfg       Config
	maxQueued [numPriorities]int

	mu       sync.Mutex
	inFlight int
	queues   [numPriorities]waitQueue
	lat      latencyWindow

	queued [numPriorities]prometheus.Gauge
	wait   [numPriorities]prometheus.Observer
	shed   [numPriorities][len(reasons)]prometheus.Counter
}

// New returns a Controller configured by cfg, or the errors of cfg.Validate.
func New(cfg Config) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	c := &Controller{
		cfg:       cfg,
		maxQueued: [numPriorities]int{High: cfg.MaxQueuedHigh, Normal: cfg.MaxQueuedNormal, Low: cfg.MaxQueuedLow},
		lat:       newLatencyWindow(cfg.LatencyWindow, cfg.MinSamples),
	}
	for p := range numPriorities {
		c.queued[p] = queuedGauge.WithLabelValues(p.String())
		c.wait[p] = waitSeconds.WithLabelValues(p.String())
		for i, r := range reasons {
			c.shed[p][i] = shedTotal.WithLabelValues(p.String(), string(r))
		}
	}
	return c, nil
}

// Acquire admits a request of priority p: at once while fewer than
// MaxInFlight requests run, otherwise when a slot frees and no request of
// higher priority, or of the same priority that came earlier, waits. It
// refuses the request instead, with an *Error, when the rules of the
// package documentation shed it or ctx ends first.
//
// The caller must call release once the request is done; the slot then
// goes to the first waiting request. Calling release again is a no-op, so
// a deferred release may follow an early one. A Priority other than High,
// Normal and Low is a programming error, refused with codes.Internal.
func (c *Controller) Acquire(ctx context.Context, p Priority) (release func(), err error) {
	if p >= numPriorities {
		return nil, status.Errorf(codes.Internal, "admission: unknown priority %d; use High, Normal or Low (FromProto converts a request's)", uint8(p))
	}
	start := c.cfg.Now()
	if ctx.Err() != nil {
		return nil, c.ctxErr(ctx, p, 0)
	}
	c.mu.Lock()
	// A free slot is taken whatever the latency: with capacity to spare,
	// refusing work cannot bring latency down (it comes from elsewhere: a
	// slow dependency, a noisy neighbour), it only turns slow answers into
	// errors. The rules shed only requests that would have to wait.
	if c.inFlight < c.cfg.MaxInFlight {
		c.inFlight++
		c.mu.Unlock()
		inFlightGauge.Inc()
		c.wait[p].Observe(0)
		return c.releaser(start), nil
	}
	if err := c.shedForLatency(p, start); err != nil {
		c.mu.Unlock()
		return nil, err
	}
	if ahead := c.ahead(p); ahead >= c.maxQueued[p] {
		err := c.queueFull(p, ahead)
		c.mu.Unlock()
		return nil, err
	}
	w := &waiter{ready: make(chan struct{})}
	c.queues[p].push(w)
	c.queued[p].Inc()
	c.mu.Unlock()

	select {
	case <-w.ready:
		c.wait[p].Observe(c.cfg.Now().Sub(start).Seconds())
		return c.releaser(start), nil
	case <-ctx.Done():
	}
	c.mu.Lock()
	if w.granted {
		// A release handed this request its slot as the context ended:
		// pass the slot on rather than run a request nobody waits for.
		c.mu.Unlock()
		c.release(time.Time{}, 0)
	} else {
		c.queues[p].remove(w)
		c.queued[p].Dec()
		c.mu.Unlock()
	}
	return nil, c.ctxErr(ctx, p, c.cfg.Now().Sub(start))
}

// Observe records the latency of one request for the latency rule. Only
// callers that set ManualObserve need it.
func (c *Controller) Observe(d time.Duration) {
	now := c.cfg.Now()
	c.mu.Lock()
	c.lat.add(now, d)
	c.mu.Unlock()
}

// InFlight returns how many admitted requests have not been released.
func (c *Controller) InFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inFlight
}

// Queued returns how many requests of priority p wait for a slot.
func (c *Controller) Queued(p Priority) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p >= numPriorities {
		return 0
	}
	return c.queues[p].n
}

// P99 returns the recent p99 latency the latency rule uses, and false
// while the window holds fewer than MinSamples latencies (the rule is off).
// It is refreshed every hundredth of LatencyWindow (50 ms by default), not
// on every request.
func (c *Controller) P99() (time.Duration, bool) {
	now := c.cfg.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lat.p99(now)
}

// releaser returns the release func of a request admitted at start.
func (c *Controller) releaser(start time.Time) func() {
	var done atomic.Bool
	return func() {
		if !done.CompareAndSwap(false, true) {
			return
		}
		if c.cfg.ManualObserve {
			c.release(time.Time{}, 0)
			return
		}
		now := c.cfg.Now()
		c.release(now, now.Sub(start))
	}
}

// release frees a slot, or hands it to the first waiter, and unless at is
// zero records the latency d of the request that held it, ended at at.
func (c *Controller) release(at time.Time, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !at.IsZero() {
		c.lat.add(at, d)
	}
	for p := range numPriorities {
		if w := c.queues[p].pop(); w != nil {
			c.queued[p].Dec()
			w.granted = true
			close(w.ready)
			return
		}
	}
	c.inFlight--
	inFlightGauge.Dec()
}

// ahead returns how many waiting requests a request of priority p would
// wait behind, were it queued now. Requires c.mu.
func (c *Controller) ahead(p Priority) int {
	n := 0
	for q := High; q <= p; q++ {
		n += c.queues[q].n
	}
	return n
}

// shedForLatency returns the error shedding a request of priority p while
// the recent p99 is above its limit, or nil. Requires c.mu.
func (c *Controller) shedForLatency(p Priority, now time.Time) error {
	if p == High {
		return nil
	}
	p99, ok := c.lat.p99(now)
	if !ok {
		return nil
	}
	var why string
	switch {
	case p == Low && p99 > c.cfg.LatencySLO:
		why = fmt.Sprintf("p99 %s > SLO %s", ms(p99), ms(c.cfg.LatencySLO))
	case p == Normal && p99 > c.cfg.NormalLatencyLimit:
		why = fmt.Sprintf("p99 %s > normal-priority limit %s, SLO %s", ms(p99), ms(c.cfg.NormalLatencyLimit), ms(c.cfg.LatencySLO))
	default:
		return nil
	}
	return c.refuse(p, ReasonLatency, codes.ResourceExhausted, ErrOverloaded,
		fmt.Sprintf("server overloaded: %s-priority request shed (%s over the last %s, %d in flight); retry with backoff",
			p, why, c.cfg.LatencyWindow, c.inFlight))
}

// queueFull returns the error refusing a request of priority p that would
// wait behind ahead requests. Requires c.mu.
func (c *Controller) queueFull(p Priority, ahead int) error {
	var msg string
	if p == High {
		msg = fmt.Sprintf("server overloaded: high-priority request refused (high-priority queue full: %d waiting, limit %d; %d in flight); retry with backoff",
			ahead, c.maxQueued[p], c.inFlight)
	} else {
		msg = fmt.Sprintf("server overloaded: %s-priority request shed (queue depth %d >= %s-priority limit %d; %d in flight); retry with backoff",
			p, ahead, p, c.maxQueued[p], c.inFlight)
	}
	return c.refuse(p, ReasonQueueFull, codes.ResourceExhausted, ErrOverloaded, msg)
}

// ctxErr returns the error refusing a request of priority p whose context
// ended after waiting waited.
func (c *Controller) ctxErr(ctx context.Context, p Priority, waited time.Duration) error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return c.refuse(p, ReasonDeadline, codes.DeadlineExceeded, err,
			fmt.Sprintf("deadline exceeded after waiting %s for admission (%s priority); the server is overloaded: retry with backoff, or with a longer deadline", ms(waited), p))
	}
	return c.refuse(p, ReasonCanceled, codes.Canceled, err,
		fmt.Sprintf("request canceled after waiting %s for admission (%s priority)", ms(waited), p))
}

func (c *Controller) refuse(p Priority, r Reason, code codes.Code, cause error, msg string) *Error {
	for i, x := range reasons {
		if x == r {
			c.shed[p][i].Inc()
		}
	}
	return &Error{Code: code, Priority: p, Reason: r, msg: msg, cause: cause}
}

// ms formats d in milliseconds with one decimal, as latencies near a 10 ms
// SLO read best.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
}

// waiter is one queued request. granted and the list links are guarded by
// the Controller's mutex; ready is closed when it is granted a slot.
type waiter struct {
	prev, next *waiter
	ready      chan struct{}
	granted    bool
}

// waitQueue is a FIFO of waiters that can also drop one from the middle
// (a request whose context ended) in constant time.
type waitQueue struct {
	head, tail *waiter
	n          int
}

func (q *waitQueue) push(w *waiter) {
	w.prev, w.next = q.tail, nil
	if q.tail == nil {
		q.head = w
	} else {
		q.tail.next = w
	}
	q.tail = w
	q.n++
}

func (q *waitQueue) pop() *waiter {
	w := q.head
	if w != nil {
		q.remove(w)
	}
	return w
}

func (q *waitQueue) remove(w *waiter) {
	if w.prev == nil {
		q.head = w.next
	} else {
		w.prev.next = w.next
	}
	if w.next == nil {
		q.tail = w.prev
	} else {
		w.next.prev = w.prev
	}
	w.prev, w.next = nil, nil
	q.n--
}

// Latency histogram buckets are log-linear over microseconds: exact below
// 16 µs, then 16 buckets per doubling, so a bucket's midpoint is within
// 3% of any latency in it, up to 2^28 µs (4.5 minutes), beyond which
// latencies count as that.
const (
	subBuckets = 16
	maxBits    = 28
	maxMicros  = 1<<maxBits - 1
	// Bucket indexes: subBuckets exact ones, then subBuckets per bit
	// length from 5 (16 µs) to maxBits.
	numBuckets = subBuckets + (maxBits-4)*subBuckets
	numSlots   = 10
)

// latencyWindow is a histogram of recent latencies split into numSlots
// slots of time, so that old latencies leave it a slot at a time. It is
// guarded by the Controller's mutex.
type latencyWindow struct {
	slotNs     int64
	refreshNs  int64
	minSamples int
	slots      [numSlots]latencySlot

	computedAt int64 // Unix ns of the cached p99, 0 before the first
	cached     time.Duration
	cachedOK   bool
}

type latencySlot struct {
	epoch  int64 // Unix ns / slotNs of the time it covers
	n      int
	counts [numBuckets]uint32
}

func newLatencyWindow(window time.Duration, minSamples int) latencyWindow {
	slot := max(int64(window)/numSlots, 1)
	return latencyWindow{slotNs: slot, refreshNs: max(int64(window)/100, 1), minSamples: minSamples}
}

func (w *latencyWindow) add(now time.Time, d time.Duration) {
	e := now.UnixNano() / w.slotNs
	s := &w.slots[e%numSlots]
	if s.epoch != e {
		clear(s.counts[:])
		s.n, s.epoch = 0, e
	}
	s.counts[bucket(d)]++
	s.n++
}

// p99 returns the p99 of the latencies of the last numSlots slots, and
// false when they are fewer than minSamples. It recomputes at most every
// refreshNs: a recomputation reads every bucket of every slot, which is
// cheap every few milliseconds and wasteful on every request.
func (w *latencyWindow) p99(now time.Time) (time.Duration, bool) {
	n := now.UnixNano()
	if w.computedAt != 0 && n >= w.computedAt && n-w.computedAt < w.refreshNs {
		return w.cached, w.cachedOK
	}
	w.computedAt = n
	e := n / w.slotNs
	var live [numSlots]*latencySlot
	total := 0
	for i := range w.slots {
		if s := &w.slots[i]; s.n > 0 && s.epoch > e-numSlots && s.epoch <= e {
			live[i] = s
			total += s.n
		}
	}
	w.cached, w.cachedOK = 0, false
	if total >= w.minSamples && total > 0 {
		// The p99 is the latency of the rank-th fastest request.
		rank := (total*99 + 99) / 100
		seen := 0
		for b := range numBuckets {
			for _, s := range live {
				if s != nil {
					seen += int(s.counts[b])
				}
			}
			if seen >= rank {
				w.cached, w.cachedOK = bucketMid(b), true
				break
			}
		}
	}
	p99Gauge.Set(w.cached.Seconds())
	return w.cached, w.cachedOK
}

// bucket returns the histogram bucket of latency d.
func bucket(d time.Duration) int {
	us := uint64(min(max(d.Microseconds(), 0), maxMicros))
	if us < subBuckets {
		return int(us)
	}
	shift := bits.Len64(us) - 5 // us>>shift is in [16, 32)
	return subBuckets + shift*subBuckets + int(us>>shift) - subBuckets
}

// bucketMid returns the middle of bucket b's latencies.
func bucketMid(b int) time.Duration {
	if b < subBuckets {
		return time.Duration(b) * time.Microsecond
	}
	shift := (b - subBuckets) / subBuckets
	lo := uint64((b-subBuckets)%subBuckets+subBuckets) << shift
	return time.Duration(lo)*time.Microsecond + time.Duration(uint64(1)<<shift)*time.Microsecond/2
}
