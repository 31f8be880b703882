package predictions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/redis/go-redis/v9"

	"github.com/adaptrec/adaptrec/internal/breaker"
	"github.com/adaptrec/adaptrec/internal/fnv1a"
)

// Defaults of ReaderOptions.
const (
	// DefaultReadTimeout bounds one lookup's Redis GET.
	DefaultReadTimeout = 3 * time.Millisecond
	// DefaultRefresh is how often the pointer is read again.
	DefaultRefresh = 10 * time.Second
	// DefaultCacheSlots bounds the lists kept in process.
	DefaultCacheSlots = 4096
)

var readsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "adaptrec_predictions_reads_total",
	Help: "Batch-prediction lookups on the serving fallback path by outcome (hit, cached, miss, no_version, error, breaker_open).",
}, []string{"outcome"})

// Read outcomes, the outcome label of adaptrec_predictions_reads_total.
var (
	readHit       = readsTotal.WithLabelValues("hit")
	readCached    = readsTotal.WithLabelValues("cached")
	readMiss      = readsTotal.WithLabelValues("miss")
	readNoVersion = readsTotal.WithLabelValues("no_version")
	readError     = readsTotal.WithLabelValues("error")
	readOpen      = readsTotal.WithLabelValues("breaker_open")
)

// ReaderOptions configure a Reader. Zero values mean the documented
// defaults.
type ReaderOptions struct {
	// KeyPrefix is the store's (config features.key_prefix).
	KeyPrefix string
	// ReadTimeout bounds a lookup's one Redis GET (DefaultReadTimeout when
	// 0); the caller's deadline bounds it too.
	ReadTimeout time.Duration
	// Refresh is how often Run reads the pointer (DefaultRefresh when 0).
	Refresh time.Duration
	// CacheSlots bounds the lists kept in process, a user per slot
	// (DefaultCacheSlots when 0; negative: no cache).
	CacheSlots int
	// Logger receives pointer refresh problems; slog.Default when nil.
	Logger *slog.Logger
}

// List is a user's batch predictions and the version they come from.
type List struct {
	Entries []Entry
	// Version is N of predictions_vN; ModelVersion the registry version
	// that produced the list.
	Version      int64
	ModelVersion string
}

// Reader answers lookups of users' lists in the current version for the
// serving fallback path: the pointer is read in the background (Run), a
// lookup costs one GET with a short deadline behind a circuit breaker, and
// recent lists (and misses) of the current version are kept in a
// direct-mapped in-process cache. A Redis failure is a miss, never an
// error: the caller falls through to the next level.
type Reader struct {
	s       *Store
	timeout time.Duration
	refresh time.Duration
	log     *slog.Logger
	br      *breaker.Breaker
	cur     atomic.Pointer[Meta] // nil: no version current (or not read yet)
	slots   []atomic.Pointer[cached]
}

type cached struct {
	user    string
	version int64
	list    []Entry // nil: the version has no list for the user
}

// NewReader returns a reader over rdb. It knows no version until Refresh or
// Run reads the pointer.
func NewReader(rdb redis.UniversalClient, o ReaderOptions) (*Reader, error) {
	s, err := NewStore(rdb, Options{KeyPrefix: o.KeyPrefix})
	if err != nil {
		return nil, err
	}
	if o.ReadTimeout < 0 || o.Refresh < 0 {
		return nil, fmt.Errorf("%w: read timeout %s and refresh %s must be >= 0 (0: default)", ErrInvalid, o.ReadTimeout, o.Refresh)
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = DefaultReadTimeout
	}
	if o.Refresh == 0 {
		o.Refresh = DefaultRefresh
	}
	if o.CacheSlots == 0 {
		o.CacheSlots = DefaultCacheSlots
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	br, err := breaker.New(breaker.Config{Name: "batch_predictions_redis", Failures: 5, Cooldown: 500 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	r := &Reader{s: s, timeout: o.ReadTimeout, refresh: o.Refresh, log: o.Logger, br: br}
	if o.CacheSlots > 0 {
		r.slots = make([]atomic.Pointer[cached], o.CacheSlots)
	}
	return r, nil
}

// Refresh reads the pointer now. With no version current the reader
// answers no lookup; on a read error it keeps the version it knew.
func (r *Reader) Refresh(ctx context.Context) error {
	p, err := r.s.Current(ctx)
	switch {
	case errors.Is(err, ErrNotFound):
		r.cur.Store(nil)
		return nil
	case err != nil:
		return err
	}
	if old := r.cur.Load(); old == nil || old.Version != p.Current.Version {
		m := p.Current
		r.cur.Store(&m)
		r.log.Info("predictions: serving batch predictions", "version", m.Name(), "model_version", m.ModelVersion, "users", m.Users, "rolled_back", p.RolledBack)
	}
	return nil
}

// Current returns the version lookups read; ok is false when none.
func (r *Reader) Current() (Meta, bool) {
	if m := r.cur.Load(); m != nil {
		return *m, true
	}
	return Meta{}, false
}

// Run refreshes the pointer every refresh interval until ctx ends.
func (r *Reader) Run(ctx context.Context) {
	t := time.NewTicker(r.refresh)
	defer t.Stop()
	for {
		if err := r.Refresh(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("predictions: reading the pointer failed; keeping the version known", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Lookup returns the user's list in the current version. ok is false when
// no version is current, the user has no list, or Redis did not answer
// within the read timeout (counted; the breaker then skips Redis for a
// while).
func (r *Reader) Lookup(ctx context.Context, user string, now time.Time) (List, bool) {
	m := r.cur.Load()
	if m == nil {
		readNoVersion.Inc()
		return List{}, false
	}
	var slot *atomic.Pointer[cached]
	if len(r.slots) > 0 {
		slot = &r.slots[fnv1a.String(user)%uint64(len(r.slots))]
		if c := slot.Load(); c != nil && c.user == user && c.version == m.Version {
			readCached.Inc()
			return List{Entries: c.list, Version: m.Version, ModelVersion: m.ModelVersion}, c.list != nil
		}
	}
	if !r.br.Allow(now) {
		readOpen.Inc()
		return List{}, false
	}
	rctx, cancel := context.WithTimeout(ctx, r.timeout)
	list, ok, err := r.s.Get(rctx, m.Version, user)
	cancel()
	if err != nil {
		readError.Inc()
		if ctx.Err() == nil {
			r.br.Failure(time.Now())
		}
		return List{}, false
	}
	r.br.Success()
	if slot != nil {
		slot.Store(&cached{user: user, version: m.Version, list: list})
	}
	if !ok {
		readMiss.Inc()
		return List{}, false
	}
	readHit.Inc()
	return List{Entries: list, Version: m.Version, ModelVersion: m.ModelVersion}, true
}
