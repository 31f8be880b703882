package serving

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

var (
	asyncDropped = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_serving_async_events_dropped_total",
		Help: "Events the serving path gave up on instead of blocking, by reason (buffer_full, publish_failed).",
	}, []string{"reason"})
	asyncQueued = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "adaptrec_serving_async_events_queued",
		Help: "Events waiting in the asynchronous publish buffer.",
	})
)

// Publisher writes events durably to the event log.
type Publisher interface {
	Publish(ctx context.Context, evs ...*adaptrecv1.Event) error
}

// AsyncPublisher publishes events off the request path through a bounded
// buffer: when the broker is slow or down the buffer fills and further events
// are dropped and counted, so serving latency never depends on the broker.
type AsyncPublisher struct {
	pub     Publisher
	log     *slog.Logger
	ch      chan *adaptrecv1.Event
	batch   int
	timeout time.Duration
	// Linger is how long a partial batch waits for more events before it
	// is published; 0 publishes whatever is queued at once. Set it before
	// Run. Each publish costs a produce request per partition it touches,
	// and the writer's batches, so at hundreds of events a second a few
	// tens of milliseconds turn per-event requests into shared ones.
	Linger time.Duration
	wg     sync.WaitGroup
}

// NewAsyncPublisher buffers up to capacity events and publishes them in
// batches of up to batch events, each publish bounded by timeout.
func NewAsyncPublisher(pub Publisher, log *slog.Logger, capacity, batch int, timeout time.Duration) *AsyncPublisher {
	return &AsyncPublisher{pub: pub, log: log, ch: make(chan *adaptrecv1.Event, capacity), batch: batch, timeout: timeout}
}

// Offer queues an event without blocking; it reports false when the buffer
// is full and the event was dropped.
func (a *AsyncPublisher) Offer(e *adaptrecv1.Event) bool {
	select {
	case a.ch <- e:
		asyncQueued.Inc()
		return true
	default:
		asyncDropped.WithLabelValues("buffer_full").Inc()
		return false
	}
}

// Run publishes queued events until ctx is cancelled, then drains what is
// left with a short grace period.
func (a *AsyncPublisher) Run(ctx context.Context) {
	buf := make([]*adaptrecv1.Event, 0, a.batch)
	flush := func(ctx context.Context) {
		if len(buf) == 0 {
			return
		}
		pctx, cancel := context.WithTimeout(ctx, a.timeout)
		err := a.pub.Publish(pctx, buf...)
		cancel()
		asyncQueued.Sub(float64(len(buf)))
		if err != nil {
			asyncDropped.WithLabelValues("publish_failed").Add(float64(len(buf)))
			a.log.Warn("dropped asynchronous events", "count", len(buf), "err", err)
		}
		buf = buf[:0]
	}
	var linger *time.Timer
	if a.Linger > 0 {
		linger = time.NewTimer(a.Linger)
		linger.Stop()
		defer linger.Stop()
	}
	// drain publishes what is left, with a short grace period, once ctx
	// has ended.
	drain := func() {
		drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.timeout)
		defer cancel()
		for {
			select {
			case e := <-a.ch:
				buf = append(buf, e)
				if len(buf) >= a.batch {
					flush(drainCtx)
				}
			default:
				flush(drainCtx)
				return
			}
		}
	}
	for {
		select {
		case e := <-a.ch:
			buf = append(buf, e)
			// Take whatever else is already queued, up to a batch.
			for len(buf) < a.batch {
				select {
				case e := <-a.ch:
					buf = append(buf, e)
					continue
				default:
				}
				break
			}
			if linger != nil && len(buf) < a.batch {
				a.fill(ctx, &buf, linger)
			}
			if ctx.Err() != nil {
				drain()
				return
			}
			flush(ctx)
		case <-ctx.Done():
			drain()
			return
		}
	}
}

// fill adds queued events to buf until it holds a batch, the linger timer
// fires or ctx ends (Run's shutdown then publishes what buf holds).
func (a *AsyncPublisher) fill(ctx context.Context, buf *[]*adaptrecv1.Event, linger *time.Timer) {
	linger.Reset(a.Linger)
	defer linger.Stop()
	for len(*buf) < a.batch {
		select {
		case e := <-a.ch:
			*buf = append(*buf, e)
		case <-linger.C:
			return
		case <-ctx.Done():
			return
		}
	}
}
