package retrieve

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/adaptrec/adaptrec/serving/catalog"
)

var (
	sourceSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name: "adaptrec_retrieval_source_seconds",
		Help: "Time a retrieval source took, late answers included (observed when the source returns, not when Retrieve gives up on it).",
		// 50 µs to about 100 ms: in-memory sources take tens of
		// microseconds, ANN about a millisecond, a stuck one anything.
		Buckets: prometheus.ExponentialBuckets(50e-6, 2, 12),
	}, []string{"source"})
	sourceDropped = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_retrieval_source_dropped_total",
		Help: "Source answers left out of a merge: timeout (not in by the source's deadline), error (the source failed), canceled (the request was).",
	}, []string{"source", "reason"})
)

// ErrNoCatalog is the error of every source of a Retrieve whose query has
// no catalogue: nothing can be retrieved without one.
var ErrNoCatalog = errors.New("retrieve: query has no catalogue; set Query.Catalog")

// Stats describes one Retrieve. Sources are identified by their position in
// Config.Sources, as in Candidate.Sources.
type Stats struct {
	// Answered are the sources whose hits were merged. TimedOut missed
	// their deadline, Failed returned an error (Err), Canceled were cut off
	// by the caller's context being canceled; none of those three
	// contributed.
	Answered, TimedOut, Failed, Canceled uint16
	// Hits is the number of hits each answered source contributed, before
	// de-duplication.
	Hits [MaxSources]int32
	// Elapsed is how long each source that returned in time took (answered
	// or failed); a late source's time is only in the metrics.
	Elapsed [MaxSources]time.Duration
	// Err is the error of each failed source.
	Err [MaxSources]error
	// Distinct is the number of distinct items merged, before the cap at
	// Config.Total.
	Distinct int
}

// Dropped returns the sources that did not contribute.
func (s *Stats) Dropped() uint16 { return s.TimedOut | s.Failed | s.Canceled }

// Retriever fans a query out to its sources and merges their answers. It is
// safe for concurrent use; build one per configuration with New.
type Retriever struct {
	srcs       []source
	total      int
	bonus      float32
	goroutines int32 // sources that are not Inline
	pool       sync.Pool
}

// source is one configured source with its metric children resolved once,
// since looking a label value up per request costs a hash and a lock.
type source struct {
	SourceConfig
	seconds                    prometheus.Observer
	timeouts, errors, canceled prometheus.Counter
}

// New returns a Retriever for cfg, or the configuration errors Validate
// reports.
func New(cfg Config) (*Retriever, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	r := &Retriever{total: cfg.Total, bonus: cfg.MultiSourceBonus}
	for _, s := range cfg.Sources {
		r.srcs = append(r.srcs, source{
			SourceConfig: s,
			seconds:      sourceSeconds.WithLabelValues(s.Name),
			timeouts:     sourceDropped.WithLabelValues(s.Name, "timeout"),
			errors:       sourceDropped.WithLabelValues(s.Name, "error"),
			canceled:     sourceDropped.WithLabelValues(s.Name, "canceled"),
		})
		if !s.Inline {
			r.goroutines++
		}
	}
	r.pool.New = func() any { return r.newCall() }
	return r, nil
}

// Sources returns the number of sources.
func (r *Retriever) Sources() int { return len(r.srcs) }

// SourceName returns the name of source i.
func (r *Retriever) SourceName(i int) string { return r.srcs[i].Name }

// SourceNames appends to dst the names of the sources in mask (a
// Candidate.Sources), in configuration order: the sources of a served item
// in its PredictionEvent.
func (r *Retriever) SourceNames(mask uint16, dst []string) []string {
	for i := range r.srcs {
		if mask&(1<<i) != 0 {
			dst = append(dst, r.srcs[i].Name)
		}
	}
	return dst
}

// Prepare lets every source that precomputes per catalogue (Preparer) do
// so for c now, off the request path: serving calls it before swapping c in.
func (r *Retriever) Prepare(c *catalog.Catalog) {
	for _, s := range r.srcs {
		if p, ok := s.Source.(Preparer); ok {
			p.Prepare(c)
		}
	}
}

// Retrieve asks every source for its quota in parallel, each under its own
// deadline derived from ctx, and appends to dst[:0] the merged candidates,
// best first (ties by lower item), at most Config.Total. It returns as soon
// as every source has answered or is past its deadline, without waiting for
// a late one (Inline sources excepted); sources that fail, run late or are
// canceled with ctx are dropped and counted in Stats and the metrics, never
// failing the call.
//
// Merge: a source's hit at rank r (from 0) scores Weight / (1 + r/K), so its
// best hit scores Weight and its K-th about Weight/2 whatever the scale of
// its own scores (inner products, click counts, velocities): ranks compare
// across sources where raw scores do not, and unlike min-max scaling one
// outlier score does not squash the rest. A candidate's score is the sum
// over the sources that returned it plus Config.MultiSourceBonus for each
// source beyond the first.
func (r *Retriever) Retrieve(ctx context.Context, q *Query, dst []Candidate) ([]Candidate, Stats) {
	var st Stats
	dst = dst[:0]
	if q == nil || q.Catalog == nil {
		for i := range r.srcs {
			st.Failed |= 1 << i
			st.Err[i] = ErrNoCatalog
			r.srcs[i].errors.Inc()
		}
		return dst, st
	}
	c := r.pool.Get().(*call)
	c.load(q)
	start := time.Now()
	parent, hasParent := ctx.Deadline()
	c.refs.Store(1 + r.goroutines)
	var pending uint16 // launched on goroutines, not yet received
	for i := range r.srcs {
		s := &c.slots[i]
		s.deadline, s.ctx, s.cancel = time.Time{}, ctx, nil
		if hasParent {
			s.deadline = parent
		}
		if to := r.srcs[i].Timeout; to > 0 {
			if d := start.Add(to); !hasParent || d.Before(parent) {
				s.deadline = d
				s.ctx = nil
				// Sources with the same timeout share one context:
				// each costs a timer and a few allocations.
				for j := range i {
					if o := &c.slots[j]; o.cancel != nil && o.deadline.Equal(d) {
						s.ctx = o.ctx
						break
					}
				}
				if s.ctx == nil {
					s.ctx, s.cancel = context.WithDeadline(ctx, d)
				}
			}
		}
	}
	for i := range r.srcs {
		if !r.srcs[i].Inline {
			pending |= 1 << i
			go c.slots[i].run()
		}
	}
	var got uint16
	for i := range r.srcs {
		if r.srcs[i].Inline {
			c.slots[i].invoke(&r.srcs[i])
			got |= 1 << i
		}
	}
	pending, got = c.wait(ctx, pending, got)
	if pending != 0 && c.exclude != nil {
		c.fence(pending)
	}
	r.classify(ctx, c, &st, got)
	dst = r.merge(c, q.Catalog.Len(), &st, dst)
	for i := range c.slots {
		if cancel := c.slots[i].cancel; cancel != nil {
			cancel()
		}
	}
	c.release()
	return dst, st
}

// call is the state of one Retrieve. The caller and every source goroutine
// hold a reference; the last to drop its reference returns the call to the
// pool, so a source still running after Retrieve returned keeps writing
// into buffers nobody else uses.
type call struct {
	r    *Retriever
	refs atomic.Int32
	// done receives the position of each source goroutine as it finishes;
	// it has room for all of them, so a late one never blocks, and it is
	// drained before the call is reused.
	done  chan int
	timer *time.Timer

	// The query the sources read: copies of the caller's slices, and the
	// caller's Exclude, which the slots' gates guard.
	q        Query
	vec, aff []float32
	recent   []int32
	exclude  func(int32) bool
	closed   atomic.Bool
	slots    []slot
	seen     []uint64 // merge: generation<<32 | position in cands, by item
	gen      uint32
	cands    []Candidate
	keys     []uint64 // merge: sortKey of each candidate
}

// slot is one source's part of a call. Only the source's goroutine writes
// hits, err, elapsed and late until it sends on done.
type slot struct {
	c        *call
	pos      int
	q        Query // c.q with Exclude routed through gate
	gate     func(int32) bool
	run      func() // runAsync
	ctx      context.Context
	cancel   context.CancelFunc
	deadline time.Time // zero: none
	hits     []Hit
	err      error
	elapsed  time.Duration
	late     bool
	// active counts the calls of the caller's Exclude in progress (see
	// fence). It changes twice per call, so it gets a cache line of its
	// own, away from the fields the neighbouring sources read.
	_      [64]byte
	active atomic.Int32
	_      [60]byte
}

func (r *Retriever) newCall() *call {
	c := &call{r: r, done: make(chan int, len(r.srcs)), slots: make([]slot, len(r.srcs))}
	c.timer = time.NewTimer(time.Hour)
	c.timer.Stop()
	for i := range c.slots {
		s := &c.slots[i]
		s.c, s.pos = c, i
		s.hits = make([]Hit, 0, r.srcs[i].K)
		s.gate = s.excluded
		s.run = s.runAsync
	}
	return c
}

// load copies q into the call's own memory.
func (c *call) load(q *Query) {
	c.q = Query{Catalog: q.Catalog}
	if len(q.UserVector) > 0 {
		c.vec = append(c.vec[:0], q.UserVector...)
		c.q.UserVector = c.vec
	}
	if len(q.Recent) > 0 {
		c.recent = append(c.recent[:0], q.Recent...)
		c.q.Recent = c.recent
	}
	if len(q.CategoryAffinity) > 0 {
		c.aff = append(c.aff[:0], q.CategoryAffinity...)
		c.q.CategoryAffinity = c.aff
	}
	c.exclude = q.Exclude
	for i := range c.slots {
		s := &c.slots[i]
		s.q = c.q
		if c.exclude != nil {
			s.q.Exclude = s.gate
		}
	}
}

// excluded is the Exclude a source sees: the caller's, until Retrieve
// returns; after that a late source gets true for everything (its answer
// is dropped anyway) and never touches the caller's memory again.
func (s *slot) excluded(item int32) bool {
	s.active.Add(1)
	defer s.active.Add(-1) // even if Exclude panics, or fence would wait forever
	if s.c.closed.Load() {
		return true
	}
	return s.c.exclude(item)
}

// fence closes the gates of the still-running sources in pending and waits
// for the Exclude calls already in progress. The source raises active
// before it reads closed and Retrieve sets closed before it reads active
// (sequentially consistent atomics), so either the source sees closed or
// Retrieve sees its call and waits it out; an Exclude is a set lookup, so
// the wait is short.
func (c *call) fence(pending uint16) {
	c.closed.Store(true)
	for i := range c.slots {
		if pending&(1<<i) == 0 {
			continue
		}
		for c.slots[i].active.Load() != 0 {
			runtime.Gosched()
		}
	}
}

// runAsync runs the slot's source on its own goroutine. Retrieve starts
// it through the method value run, made once per pooled call: a go
// statement with arguments or a receiver allocates a closure every time.
func (s *slot) runAsync() {
	s.invoke(&s.c.r.srcs[s.pos])
	s.c.done <- s.pos
	s.c.release()
}

// invoke asks the source and records its answer in the slot. A panicking
// source fails, rather than taking the process down with it.
func (s *slot) invoke(src *source) {
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			s.err = fmt.Errorf("retrieve: source %s panicked: %v", src.Name, p)
		}
		end := time.Now()
		s.elapsed = end.Sub(start)
		s.late = !s.deadline.IsZero() && !end.Before(s.deadline)
		src.seconds.Observe(s.elapsed.Seconds())
	}()
	s.hits, s.err = src.Source.Retrieve(s.ctx, &s.q, src.K, s.hits[:0])
}

// wait receives finished sources until none of pending is left, or every
// one left is past its deadline, or ctx is done. It returns the sources
// still running and every source received.
func (c *call) wait(ctx context.Context, pending, got uint16) (uint16, uint16) {
loop:
	for pending != 0 {
		var latest time.Time
		bounded := true
		for i := range c.slots {
			if pending&(1<<i) == 0 {
				continue
			}
			d := c.slots[i].deadline
			if d.IsZero() {
				bounded = false
				break
			}
			if d.After(latest) {
				latest = d
			}
		}
		var expired <-chan time.Time
		if bounded {
			left := time.Until(latest)
			if left <= 0 {
				break
			}
			c.timer.Reset(left)
			expired = c.timer.C
		}
		select {
		case i := <-c.done:
			pending &^= 1 << i
			got |= 1 << i
		case <-expired:
		case <-ctx.Done():
			c.timer.Stop()
			break loop
		}
		c.timer.Stop()
	}
	// A source that finished as the timer fired is in: whether it counts
	// is up to its own clock (slot.late), not to which case select took.
	got |= c.drain()
	return pending &^ got, got
}

// drain receives every finished source without blocking.
func (c *call) drain() uint16 {
	var got uint16
	for {
		select {
		case i := <-c.done:
			got |= 1 << i
		default:
			return got
		}
	}
}

// classify sorts the sources into answered, timed out, failed and canceled,
// and counts the drops.
func (r *Retriever) classify(ctx context.Context, c *call, st *Stats, got uint16) {
	canceled := errors.Is(ctx.Err(), context.Canceled)
	for i := range r.srcs {
		src, s, bit := &r.srcs[i], &c.slots[i], uint16(1)<<i
		switch {
		case got&bit == 0: // still running
			if canceled {
				st.Canceled |= bit
				src.canceled.Inc()
			} else {
				st.TimedOut |= bit
				src.timeouts.Inc()
			}
		case s.late || errors.Is(s.err, context.DeadlineExceeded):
			st.TimedOut |= bit
			src.timeouts.Inc()
		case s.err != nil && canceled && errors.Is(s.err, context.Canceled):
			st.Canceled |= bit
			src.canceled.Inc()
		case s.err != nil:
			st.Failed |= bit
			st.Err[i] = s.err
			st.Elapsed[i] = s.elapsed
			src.errors.Inc()
		default:
			st.Answered |= bit
			st.Elapsed[i] = s.elapsed
		}
	}
}

// release drops one reference; the last one resets the call and pools it.
func (c *call) release() {
	if c.refs.Add(-1) != 0 {
		return
	}
	c.drain()
	c.closed.Store(false)
	c.q, c.exclude = Query{}, nil
	for i := range c.slots {
		s := &c.slots[i]
		s.q, s.ctx, s.cancel, s.err = Query{}, nil, nil, nil
		s.hits = s.hits[:0]
	}
	c.r.pool.Put(c)
}
