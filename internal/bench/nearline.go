package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"

	"github.com/adaptrec/adaptrec/consumers/nearline"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/online"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/sim"
)

// Goals of the nearline benchmark (feature store issue): events/s from
// publish to nearline values written, and the p99 of event time to a value
// readable online.
const (
	NearlineTargetPerS        = 20_000
	NearlineTargetFreshnessMs = 1000
)

// NearlineProbeFeature is the user feature whose stored time the freshness
// poller reads: the consumer writes it at the user's latest event time.
const NearlineProbeFeature = features.FeatureSessionKey

// Defaults of NearlineOptions.
const (
	// The default run publishes at DefaultNearlineRate for a minute.
	DefaultNearlineEvents      = 1_500_000
	DefaultNearlineRate        = 25_000.0
	DefaultNearlineProducers   = 2
	DefaultNearlineBatch       = 1000
	DefaultNearlineSampleEvery = 100
	DefaultNearlineTimeout     = 2 * time.Minute
)

// NearlineOptions configure RunNearline. Zero values mean the documented
// defaults.
type NearlineOptions struct {
	// Events to publish; default DefaultNearlineEvents.
	Events int
	// Producers publish concurrently; default DefaultNearlineProducers.
	Producers int
	// Rate is the total publish rate in events/s; 0 is as fast as the
	// brokers acknowledge.
	Rate float64
	// Batch is events per acknowledged publish; default DefaultNearlineBatch
	// (with a Rate, 20 ms worth per producer, at most the default).
	Batch int
	// SampleEvery: every SampleEvery-th event's user is polled for
	// freshness; default DefaultNearlineSampleEvery.
	SampleEvery int
	// Consumer settings; zero fields take nearline's defaults.
	BatchEvents   int
	FlushInterval time.Duration
	// Timeout bounds the wait, after the last publish, for every event to
	// be applied and every sample to be readable; default
	// DefaultNearlineTimeout.
	Timeout time.Duration
	// JoinTimeout bounds the wait for the consumer to join its group.
	JoinTimeout time.Duration
	// World supplies users, items and sessions; nil is sim's default world.
	World *sim.World
	// Logger receives the consumer's logs; nil discards them.
	Logger *slog.Logger
	// Logf receives one line per step.
	Logf func(format string, args ...any)
	// Progress is called every ProgressInterval (default 1s).
	Progress         func(NearlineProgress)
	ProgressInterval time.Duration
}

// NearlineProgress is a snapshot of a running nearline benchmark.
type NearlineProgress struct {
	Elapsed                    time.Duration
	Published, Applied, Events int64
	Samples, Seen              int64
	PublishRate, AppliedRate   float64
}

// NearlineResult is what RunNearline measured; its JSON names are those of
// `adaptrec bench nearline --json`.
type NearlineResult struct {
	Events int `json:"events"`
	// ThroughputPerS is Events over the time from the first publish to the
	// consumer having applied (written and committed) the last event.
	ThroughputPerS float64 `json:"throughput_per_s"`
	// ProducePerS is Events over first publish to last acknowledgement.
	ProducePerS float64 `json:"produce_per_s"`
	// Freshness quantiles over the samples: event time until a poller
	// reading Redis sees a value of the user at or after the event time.
	FreshnessP50Ms float64 `json:"freshness_p50_ms"`
	FreshnessP95Ms float64 `json:"freshness_p95_ms"`
	FreshnessP99Ms float64 `json:"freshness_p99_ms"`
	FreshnessMaxMs float64 `json:"freshness_max_ms"`
	Samples        int     `json:"samples"`
	SampleEvery    int     `json:"sample_every"`
	DurationS      float64 `json:"duration_s"`
	Partitions     int     `json:"partitions"`
	Producers      int     `json:"producers"`
	RatePerS       float64 `json:"rate_per_s"`
	Batch          int     `json:"batch"`
	// Consumer settings and totals.
	ConsumerBatchEvents     int     `json:"consumer_batch_events"`
	ConsumerFlushIntervalMs float64 `json:"consumer_flush_interval_ms"`
	Applied                 int64   `json:"applied"`
	Duplicates              int64   `json:"duplicates"`
	DeadLettered            int64   `json:"dead_lettered"`
	LateDropped             int64   `json:"late_dropped"`
	Commits                 int64   `json:"commits"`
	// Users and Items are the numbers of distinct users and items of the
	// events: what the consumer holds and rewrites at every bucket boundary.
	Users int `json:"users"`
	Items int `json:"items"`
	// MaxApplyStallMs is the longest time the consumer's applied count did
	// not rise while published events were waiting.
	MaxApplyStallMs float64 `json:"max_apply_stall_ms"`
	Probe           string  `json:"probe"`
	EventTime       string  `json:"event_time"`
}

func (o NearlineOptions) withDefaults() NearlineOptions {
	if o.Events == 0 {
		o.Events = DefaultNearlineEvents
	}
	if o.Producers == 0 {
		o.Producers = DefaultNearlineProducers
	}
	if o.Batch == 0 {
		o.Batch = DefaultNearlineBatch
		if o.Rate > 0 && o.Producers > 0 {
			o.Batch = min(DefaultNearlineBatch, max(1, int(o.Rate/float64(o.Producers)/50)))
		}
	}
	if o.SampleEvery == 0 {
		o.SampleEvery = DefaultNearlineSampleEvery
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultNearlineTimeout
	}
	if o.JoinTimeout == 0 {
		o.JoinTimeout = DefaultJoinTimeout
	}
	if o.ProgressInterval == 0 {
		o.ProgressInterval = time.Second
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return o
}

// Validate reports every invalid option (after defaults).
func (o NearlineOptions) Validate() error {
	var errs []error
	if o.Events < 1 || int64(o.Events) > sim.MaxHistoryEvents {
		errs = append(errs, fmt.Errorf("events: %d is not in 1..%d", o.Events, int64(sim.MaxHistoryEvents)))
	}
	if o.Producers < 1 || o.Producers > 64 {
		errs = append(errs, fmt.Errorf("producers: %d is not in 1..64", o.Producers))
	}
	if o.Rate < 0 {
		errs = append(errs, fmt.Errorf("rate: must be >= 0 events/s, got %g", o.Rate))
	}
	if o.Batch < 1 || o.Batch > 100_000 {
		errs = append(errs, fmt.Errorf("batch: %d is not in 1..100000", o.Batch))
	}
	if o.SampleEvery < 1 {
		errs = append(errs, fmt.Errorf("sample every: must be >= 1, got %d", o.SampleEvery))
	}
	if o.BatchEvents < 0 || o.FlushInterval < 0 || o.Timeout < 0 || o.JoinTimeout < 0 || o.ProgressInterval < 0 {
		errs = append(errs, errors.New("consumer batch, timeouts and intervals must not be negative"))
	}
	return errors.Join(errs...)
}

// nearlineSample is one event whose freshness the poller measures.
type nearlineSample struct {
	user string
	at   time.Time
	ms   int64
}

type nearlineRun struct {
	opts    NearlineOptions
	cfg     config.Config
	rdb     redis.UniversalClient
	key     func(user string) string
	field   string
	start   atomic.Int64
	lastAck atomic.Int64
	pub     atomic.Int64
	// watched is the applied count as watch last saw it.
	watched atomic.Int64

	mu      sync.Mutex
	pending []nearlineSample
	lats    []time.Duration
	samples int64
	users   map[string]struct{}
	items   map[string]struct{}
	// maxStall is the longest wait without the applied count rising while
	// events were waiting (nanoseconds).
	maxStall atomic.Int64
}

// RunNearline measures producer → Kafka → nearline consumer → Redis on the
// brokers and Redis of cfg, which it assumes are its own: it creates the
// topics, runs a nearline.Consumer in-process (group
// adaptrec-bench-nearline), publishes opts.Events simulated interactions
// whose event times are the wall clock at publish, and polls Redis, as
// serving reads it, for the user of every SampleEvery-th event until the
// user's NearlineProbeFeature value is at or past that event's time.
func RunNearline(ctx context.Context, cfg config.Config, fs *features.FeatureSet, rdb redis.UniversalClient, opts NearlineOptions) (res NearlineResult, err error) {
	o := opts.withDefaults()
	if err := o.Validate(); err != nil {
		return res, fmt.Errorf("nearline benchmark: %w", err)
	}
	// The session key is written at the user's latest event, whatever its
	// action (the last interaction time skips impressions).
	f, ok := fs.Lookup(NearlineProbeFeature)
	if !ok || f.Entity != features.EntityUser || f.Lane != features.LaneNearline {
		return res, fmt.Errorf("%s does not define %s as a user nearline feature: nothing to probe", fs.Source(), NearlineProbeFeature)
	}
	group := f.Group
	r := &nearlineRun{opts: o, cfg: cfg, rdb: rdb, field: f.Name, users: map[string]struct{}{}, items: map[string]struct{}{},
		// online's key layout (features/online/keys.go): the user's nearline hash.
		key: func(user string) string { return online.DefaultKeyPrefix + "{" + user + "}:n:" + group }}

	if err := events.EnsureTopics(ctx, cfg.Kafka); err != nil {
		return res, fmt.Errorf("create topics: %w", err)
	}
	partitions, err := topicPartitions(ctx, cfg.Kafka, events.TopicInteractions)
	if err != nil {
		return res, err
	}
	c, err := nearline.New(nearline.Config{
		Kafka: cfg.Kafka, GroupID: "adaptrec-bench-nearline", BatchEvents: o.BatchEvents, FlushInterval: o.FlushInterval,
	}, fs, rdb, o.Logger)
	if err != nil {
		return res, err
	}
	world, err := worldOrDefault(o.World)
	if err != nil {
		return res, err
	}

	cctx, stopConsumer := context.WithCancel(ctx)
	cons := &runResult{done: make(chan struct{})}
	go func() {
		cons.err = c.Run(cctx)
		close(cons.done)
	}()
	defer func() {
		stopConsumer()
		<-cons.done
		if cons.err != nil {
			err = errors.Join(err, fmt.Errorf("nearline consumer: %w", cons.err))
		}
	}()
	if err := waitReady(ctx, c.Ready, cons, o.JoinTimeout); err != nil {
		return res, err
	}
	o.Logf("nearline consumer joined; publishing %d events to %s (%d partitions) with %d producers, batches of %d, %s; probing every %dth event's user",
		o.Events, events.TopicInteractions, partitions, o.Producers, o.Batch, rateText(o.Rate), o.SampleEvery)

	pctx, stopPoll := context.WithCancel(ctx)
	var bg sync.WaitGroup
	bg.Go(func() { r.poll(pctx) })
	var lastApplied atomic.Int64
	bg.Go(func() { r.watch(pctx, c, &lastApplied) })
	defer func() {
		stopPoll()
		bg.Wait()
	}()

	err = r.publish(ctx, world)
	if err == nil {
		err = r.waitDone(ctx, c, cons, &lastApplied)
	}
	if err != nil {
		return res, err
	}
	st := c.Stats()
	r.mu.Lock()
	lats, users, items := r.lats, len(r.users), len(r.items)
	r.mu.Unlock()
	start := time.Unix(0, r.start.Load())
	window := time.Unix(0, lastApplied.Load()).Sub(start)
	produce := time.Unix(0, r.lastAck.Load()).Sub(start)
	l := Summarize(lats)
	ncfg := nearlineDefaults(o)
	return NearlineResult{
		Events:                  o.Events,
		ThroughputPerS:          Round(float64(o.Events)/max(window.Seconds(), 1e-9), 1),
		ProducePerS:             Round(float64(o.Events)/max(produce.Seconds(), 1e-9), 1),
		FreshnessP50Ms:          Millis(l.P50),
		FreshnessP95Ms:          Millis(l.P95),
		FreshnessP99Ms:          Millis(l.P99),
		FreshnessMaxMs:          Millis(l.Max),
		Samples:                 len(lats),
		SampleEvery:             o.SampleEvery,
		DurationS:               Round(window.Seconds(), 3),
		Partitions:              partitions,
		Producers:               o.Producers,
		RatePerS:                o.Rate,
		Batch:                   o.Batch,
		ConsumerBatchEvents:     ncfg.BatchEvents,
		ConsumerFlushIntervalMs: float64(ncfg.FlushInterval) / float64(time.Millisecond),
		Applied:                 st.Applied,
		Duplicates:              st.Duplicates,
		DeadLettered:            st.DeadLettered,
		LateDropped:             st.LateDropped,
		Commits:                 st.Commits,
		Users:                   users,
		Items:                   items,
		MaxApplyStallMs:         Millis(time.Duration(r.maxStall.Load())),
		Probe:                   "HGET of " + f.Name + " in the user's nearline hash of group " + group,
		EventTime:               IngestEventTime,
	}, nil
}

// nearlineDefaults restates the consumer's defaults for the report.
func nearlineDefaults(o NearlineOptions) nearline.Config {
	c := nearline.Config{BatchEvents: o.BatchEvents, FlushInterval: o.FlushInterval}
	if c.BatchEvents == 0 {
		c.BatchEvents = 500
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = 200 * time.Millisecond
	}
	return c
}

func topicPartitions(ctx context.Context, cfg config.Kafka, topic string) (int, error) {
	client := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: events.Transport(cfg), Timeout: 10 * time.Second}
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, fmt.Errorf("read metadata of %s from %v: %w", topic, cfg.Brokers, err)
	}
	for _, t := range meta.Topics {
		if t.Error != nil {
			return 0, fmt.Errorf("metadata of topic %s: %w", t.Name, t.Error)
		}
		if t.Name == topic && len(t.Partitions) > 0 {
			return len(t.Partitions), nil
		}
	}
	return 0, fmt.Errorf("topic %s has no partitions on %v", topic, cfg.Brokers)
}

func waitReady(ctx context.Context, ready func(context.Context) error, cons *runResult, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the nearline consumer to join: %w", ctx.Err())
		case <-cons.done:
			return fmt.Errorf("nearline consumer stopped before joining: %w", errors.Join(cons.err, err))
		case <-deadline.C:
			return fmt.Errorf("nearline consumer did not join within %s: %w", timeout, err)
		case <-tick.C:
		}
	}
}

// publish generates and publishes the events, registering every
// SampleEvery-th one with the poller before it is sent.
func (r *nearlineRun) publish(ctx context.Context, world *sim.World) error {
	o := r.opts
	var seq atomic.Int64
	live := &liveTraffic{
		kafka: r.cfg.Kafka, events: o.Events, batch: o.Batch, producers: o.Producers, rate: o.Rate,
		producer: "bench/nearline", start: &r.start, lastAck: &r.lastAck, sent: &r.pub,
		beforeSend: func(batch []*adaptrecv1.Event, at []time.Time) {
			var samples []nearlineSample
			users, items := map[string]struct{}{}, map[string]struct{}{}
			for j, e := range batch {
				u := e.GetInteraction().GetUserId()
				users[u] = struct{}{}
				items[e.GetInteraction().GetItemId()] = struct{}{}
				if seq.Add(1)%int64(o.SampleEvery) == 0 && u != "" {
					samples = append(samples, nearlineSample{user: u, at: at[j], ms: at[j].UnixMilli()})
				}
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			r.pending = append(r.pending, samples...)
			r.samples += int64(len(samples))
			for u := range users {
				r.users[u] = struct{}{}
			}
			for it := range items {
				r.items[it] = struct{}{}
			}
		},
	}
	return live.publish(ctx, world)
}

// poll reads, as serving would, the probed value of every pending sample's
// user straight from Redis until it is at or past the sample's event time.
func (r *nearlineRun) poll(ctx context.Context) {
	var batch []nearlineSample
	for ctx.Err() == nil {
		r.mu.Lock()
		batch = append(batch[:0], r.pending...)
		r.mu.Unlock()
		if len(batch) == 0 {
			if sleepUntil(ctx, time.Now().Add(2*time.Millisecond)) != nil {
				return
			}
			continue
		}
		pipe := r.rdb.Pipeline()
		cmds := make(map[string]*redis.StringCmd, len(batch))
		for _, s := range batch {
			if cmds[s.user] == nil {
				cmds[s.user] = pipe.HGet(ctx, r.key(s.user), r.field)
			}
		}
		_, _ = pipe.Exec(ctx) // redis.Nil for users not written yet
		seen := time.Now()
		done := map[nearlineSample]bool{}
		var lats []time.Duration
		for _, s := range batch {
			v, err := cmds[s.user].Result()
			if err != nil || len(v) < 8 {
				continue
			}
			var at int64
			for i := range 8 {
				at = at<<8 | int64(v[i])
			}
			if at >= s.ms {
				done[s] = true
				lats = append(lats, seen.Sub(s.at))
			}
		}
		if len(done) > 0 {
			r.mu.Lock()
			keep := r.pending[:0]
			for _, s := range r.pending {
				if !done[s] {
					keep = append(keep, s)
				}
			}
			r.pending = keep
			r.lats = append(r.lats, lats...)
			r.mu.Unlock()
		}
		if sleepUntil(ctx, time.Now().Add(2*time.Millisecond)) != nil {
			return
		}
	}
}

// watch records when the consumer's applied count last rose and reports
// progress.
func (r *nearlineRun) watch(ctx context.Context, c *nearline.Consumer, last *atomic.Int64) {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	var prevApplied, prevPub int64
	prevReport := time.Now()
	var applied int64
	rose := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if a := c.Stats().Applied; a > applied {
				applied = a
				last.Store(now.UnixNano())
				r.watched.Store(a)
				rose = now
			} else if r.pub.Load() > applied {
				storeMax(&r.maxStall, int64(now.Sub(rose)))
			} else {
				rose = now
			}
			if r.opts.Progress == nil || now.Sub(prevReport) < r.opts.ProgressInterval {
				continue
			}
			pub := r.pub.Load()
			r.mu.Lock()
			samples, seen := r.samples, int64(len(r.lats))
			r.mu.Unlock()
			var elapsed time.Duration
			if s := r.start.Load(); s != 0 {
				elapsed = now.Sub(time.Unix(0, s))
			}
			dt := now.Sub(prevReport).Seconds()
			r.opts.Progress(NearlineProgress{Elapsed: elapsed, Published: pub, Applied: applied, Events: int64(r.opts.Events),
				Samples: samples, Seen: seen, PublishRate: float64(pub-prevPub) / dt, AppliedRate: float64(applied-prevApplied) / dt})
			prevApplied, prevPub, prevReport = applied, pub, now
		}
	}
}

// waitDone waits until every event is applied and every sample seen.
func (r *nearlineRun) waitDone(ctx context.Context, c *nearline.Consumer, cons *runResult, last *atomic.Int64) error {
	deadline := time.NewTimer(r.opts.Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		st := c.Stats()
		r.mu.Lock()
		pending := len(r.pending)
		r.mu.Unlock()
		if st.Applied >= int64(r.opts.Events) && pending == 0 && r.watched.Load() >= int64(r.opts.Events) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the nearline consumer: %w", ctx.Err())
		case <-cons.done:
			return fmt.Errorf("nearline consumer stopped with %d of %d events applied: %w", st.Applied, r.opts.Events, errors.Join(cons.err, c.Ready(ctx)))
		case <-deadline.C:
			return fmt.Errorf("%d of %d events applied and %d samples still unreadable %s after the last publish (%d duplicates, %d dead-lettered, %d late dropped; consumer: %v)",
				st.Applied, r.opts.Events, pending, r.opts.Timeout, st.Duplicates, st.DeadLettered, st.LateDropped, c.Ready(ctx))
		case <-tick.C:
		}
	}
}
