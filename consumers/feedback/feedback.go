// Package feedback is the feedback loop: a consumer that joins the served
// predictions (events.TopicPredictions) with the interactions that name
// their request (events.TopicInteractions) into online accuracy per model
// version and experiment arm, published as ModelAccuracyEvents on
// events.TopicModelAccuracy, and the readers the release gates use:
// ReadAccuracy sums those events, ReadShadowReport compares a shadow
// version's predictions with the served ones.
//
// # What is counted
//
// Predictions are aggregated over tumbling windows of Config.Window keyed by
// the prediction's event time (aligned to the Unix epoch), per the
// prediction's model_version and experiment_arm. Shadow predictions are not:
// they were never shown. For one version, arm and window:
//
//   - requests: served predictions (a request id read again is a duplicate
//     and dropped);
//   - impressions: the items those predictions served (ServedItem count);
//     ACTION_IMPRESSION interactions are not used, because clients need not
//     send them;
//   - clicks: served items of a request credited with at least one
//     ACTION_CLICK (a second click on the same item of the same request does
//     not count again), so ctr = clicks / impressions is at most 1 (0 when
//     nothing was served);
//   - conversions: served items of a request credited with at least one
//     ACTION_PURCHASE;
//   - engagement_seconds: the sum of the value (seconds watched) of the
//     credited ACTION_WATCH interactions; ACTION_COMPLETE repeats that value
//     and is not added;
//   - latency_p99_ms: the nearest-rank 99th percentile of the served
//     predictions' latency_ms;
//   - errors: served predictions for which IsError holds (a fallback
//     answered instead of the model version).
//
// A request serving routed to a model version and arm (production or
// canary) that a fallback answered because the pipeline failed is written
// with the routed version and arm at the fallback's level, so it counts as
// that version's error. Answers no model was routed for (no model loaded,
// an overload brownout) are written with model_version "popularity" or the
// cached version and an empty arm, so those rows appear under their own
// version and arm.
//
// An interaction is credited to the served prediction whose request_id it
// names when its item is among the prediction's items and the two event
// times are at most Config.AttributionWindow apart. Anything else is counted
// in adaptrec_feedback_interactions_unmatched_total by reason (see the
// Reason constants), never guessed. Other actions are joined but change no
// total.
//
// # Time
//
// Each assigned partition's progress is the latest event time read from it,
// or the wall clock while it is caught up; the stream time is the smallest
// progress over the partitions. A window is emitted once the stream time
// passes its end plus Config.EmitDelay; predictions and interactions read
// after that are late: counted in adaptrec_feedback_late_total, not added.
// An interaction whose prediction has not been read yet waits for it until
// the stream time passes the interaction's time (at most the partition's
// progress when it was read) plus EmitDelay. A partition
// does not read further ahead of the stream time than Window + EmitDelay,
// so a slow partition does not make the others' state pile up. Served
// predictions are held in memory (request id and 8-byte item hashes) until
// the stream passes their time plus the attribution window and EmitDelay.
//
// # Delivery
//
// At least once, with idempotent emission. The group has one active member:
// its balancer gives every partition to one member (the join needs a
// prediction and the interactions of its request in one process, and a
// window sums all partitions) and the others stand by. The committed offset
// of a partition is the first message still contributing to a window not
// emitted (or waiting for its prediction), so a consumer that restarts or
// takes over re-reads exactly what the open windows need; commits lag the
// stream by about Window + EmitDelay. A window can therefore be emitted
// twice: each ModelAccuracyEvent's event id is EventID of its version, arm
// and window, so readers keep one (ReadAccuracy keeps the first), and a
// consumer reads back the recent ModelAccuracyEvents when it starts a
// generation and does not emit those windows again. Malformed messages go to
// events.TopicDeadLetter with the reason, as the other consumers send them;
// one dead-lettered since the last commit is dead-lettered again after a
// restart. After a restart, interactions of windows emitted before it may
// be counted as unmatched (no_prediction) rather than late: only the
// counters differ.
package feedback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
)

// Config configures a Consumer. Zero fields take the defaults documented on
// each; cmd/consumers fills it from config.Feedback.
type Config struct {
	// Kafka is the cluster to read from and publish to.
	Kafka config.Kafka
	// GroupID is the consumer group. Required.
	GroupID string
	// Window is the width of the accuracy windows (default 1m); a whole
	// number of milliseconds.
	Window time.Duration
	// AttributionWindow is how far apart in event time an interaction and
	// its request's prediction may be (default 30m).
	AttributionWindow time.Duration
	// EmitDelay is how long after the stream time passes a window's end the
	// window is emitted (default 30s; negative means 0).
	EmitDelay time.Duration
	// FlushInterval is how often due windows are emitted, dead letters
	// written and offsets committed (default 1s).
	FlushInterval time.Duration
	// Idle is how long a partition read returns nothing before the
	// partition counts as caught up, its progress the wall clock
	// (default 250ms).
	Idle time.Duration
	// DedupeWindow is how many recent offsets' event ids are remembered per
	// interactions partition to drop producer retries (default 100000;
	// negative disables). Predictions are deduplicated by request id.
	DedupeWindow int
	// Producer names this consumer in the envelopes it writes (default
	// "feedback/" and the host name).
	Producer string
	// Now is the clock a caught-up partition's progress follows (default
	// time.Now); tests set it to move the stream time.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Window == 0 {
		c.Window = time.Minute
	}
	if c.AttributionWindow == 0 {
		c.AttributionWindow = 30 * time.Minute
	}
	if c.EmitDelay == 0 {
		c.EmitDelay = 30 * time.Second
	}
	c.EmitDelay = max(c.EmitDelay, 0)
	if c.FlushInterval == 0 {
		c.FlushInterval = time.Second
	}
	if c.Idle == 0 {
		c.Idle = 250 * time.Millisecond
	}
	if c.DedupeWindow == 0 {
		c.DedupeWindow = 100000
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Producer == "" {
		host, _ := os.Hostname()
		c.Producer = "feedback/" + host
	}
	return c
}

// Stats are totals since the consumer was created, of events whose effects
// were made durable. Events read again after a rebalance in the same process
// are not counted again.
type Stats struct {
	// Predictions are served predictions read; Shadow, shadow ones skipped.
	Predictions, Shadow int64
	// Interactions are interactions read (duplicates excluded).
	Interactions int64
	// Joined interactions were credited to a window not emitted yet.
	Joined int64
	// Unmatched interactions were not credited, by reason.
	Unmatched map[string]int64
	// Late interactions and LatePredictions were read after their window
	// was emitted.
	Late, LatePredictions int64
	// Duplicates are interactions (same event id) and predictions (same
	// request id) dropped.
	Duplicates int64
	// DeadLettered went to the dead-letter topic.
	DeadLettered int64
	// Emitted are ModelAccuracyEvents acknowledged by the brokers.
	Emitted int64
	// Commits are offset commits.
	Commits int64
}

// Consumer runs the feedback join. Create it with New and call Run.
type Consumer struct {
	cfg    Config
	p      params
	logger *slog.Logger

	// emitted carries the windows emitted, and seen the offset below which
	// each partition's effects were made durable by this process, from one
	// generation of the group to the next. Generations run one at a time.
	emitted map[winKey]int64
	seen    map[tp]int64

	statsMu sync.Mutex
	stats   Stats

	member events.GroupMembership
}

// New returns a consumer. It validates cfg and connects to nothing.
func New(cfg Config, logger *slog.Logger) (*Consumer, error) {
	var errs []error
	if len(cfg.Kafka.Brokers) == 0 {
		errs = append(errs, errors.New("feedback: Kafka.Brokers: at least one broker address is required"))
	}
	if cfg.GroupID == "" {
		errs = append(errs, errors.New("feedback: GroupID: a consumer group id is required"))
	}
	cfg = cfg.withDefaults()
	if cfg.Window < time.Millisecond || cfg.Window%time.Millisecond != 0 {
		errs = append(errs, fmt.Errorf("feedback: Window must be a whole number of milliseconds > 0, got %s", cfg.Window))
	}
	if cfg.AttributionWindow < 0 {
		errs = append(errs, fmt.Errorf("feedback: AttributionWindow must be > 0, got %s", cfg.AttributionWindow))
	}
	if cfg.FlushInterval < 0 || cfg.Idle < 0 {
		errs = append(errs, fmt.Errorf("feedback: FlushInterval and Idle must be > 0, got %s and %s", cfg.FlushInterval, cfg.Idle))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	horizon := cfg.Window + cfg.EmitDelay + cfg.AttributionWindow
	return &Consumer{
		cfg: cfg,
		p: params{window: cfg.Window.Milliseconds(), attribution: cfg.AttributionWindow.Milliseconds(), delay: cfg.EmitDelay.Milliseconds(),
			retain: max(time.Hour, 2*horizon).Milliseconds()},
		logger:  logger.With("component", "feedback"),
		emitted: map[winKey]int64{},
		seen:    map[tp]int64{},
		stats:   Stats{Unmatched: map[string]int64{}},
		member:  events.GroupMembership{Group: cfg.GroupID},
	}, nil
}

// Stats returns totals since New.
func (c *Consumer) Stats() Stats {
	c.statsMu.Lock()
	defer c.statsMu.Unlock()
	s := c.stats
	s.Unmatched = make(map[string]int64, len(c.stats.Unmatched))
	for k, v := range c.stats.Unmatched {
		s.Unmatched[k] = v
	}
	return s
}

// Ready reports nil once the consumer has joined its group, and the
// last group or partition error otherwise; /readyz serves it.
func (c *Consumer) Ready(ctx context.Context) error { return c.member.Ready(ctx) }

// Run consumes until ctx is cancelled, then leaves the group and returns
// nil. It returns an error only when it cannot run at all.
func (c *Consumer) Run(ctx context.Context) error {
	producer, err := events.NewProducer(c.cfg.Kafka, events.ProducerOptions{})
	if err != nil {
		return fmt.Errorf("feedback: %w", err)
	}
	defer producer.Close()
	dialer := events.Dialer(c.cfg.Kafka)
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                    c.cfg.GroupID,
		Brokers:               c.cfg.Kafka.Brokers,
		Dialer:                dialer,
		Topics:                []string{events.TopicPredictions, events.TopicInteractions},
		GroupBalancers:        []kafka.GroupBalancer{soleOwner{}},
		HeartbeatInterval:     time.Second,
		SessionTimeout:        10 * time.Second,
		RebalanceTimeout:      10 * time.Second,
		JoinGroupBackoff:      time.Second,
		WatchPartitionChanges: true,
		StartOffset:           kafka.FirstOffset,
		ErrorLogger:           kafka.LoggerFunc(func(msg string, args ...any) { c.logger.Debug(fmt.Sprintf(msg, args...)) }),
	})
	if err != nil {
		return fmt.Errorf("feedback consumer group %s: %w", c.cfg.GroupID, err)
	}
	defer cg.Close()
	c.logger.Info("feedback consumer starting", "group", c.cfg.GroupID, "window", c.cfg.Window,
		"attribution_window", c.cfg.AttributionWindow, "emit_delay", c.cfg.EmitDelay)
	for {
		gen, err := cg.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
				return nil
			}
			c.member.Set(false, err)
			c.logger.Warn("joining consumer group failed; retrying", "group", c.cfg.GroupID, "err", err)
			continue
		}
		c.member.Set(true, nil)
		c.runGeneration(ctx, gen, dialer, producer)
		if ctx.Err() != nil {
			return nil
		}
	}
}

// assigned is one partition of a generation and where reading starts.
type assigned struct {
	tp     tp
	offset int64
}

// item is what a partition's reader hands the join: a message (decoded, or
// rejected) or, without one, only the partition's progress.
type item struct {
	tp       tp
	msg      kafka.Message
	hasMsg   bool
	ev       *adaptrecv1.Event
	rej      *rejection
	t        int64 // event time, unix ms, of a valid event
	progress int64
}

// runGeneration works one generation's assignment until it ends.
func (c *Consumer) runGeneration(ctx context.Context, gen *kafka.Generation, dialer *kafka.Dialer, producer *events.Producer) {
	var parts []assigned
	for topic, ps := range gen.Assignments {
		for _, p := range ps {
			parts = append(parts, assigned{tp: tp{topic, p.ID}, offset: p.Offset})
		}
	}
	if len(parts) == 0 {
		c.logger.Info("standing by: another member of the group owns the partitions", "group", c.cfg.GroupID, "generation", gen.ID)
		return
	}
	c.logger.Info("owning the partitions", "group", c.cfg.GroupID, "generation", gen.ID, "partitions", len(parts))
	items := make(chan item, 1024)
	var wm atomic.Int64
	var wg sync.WaitGroup
	run := func(f func(context.Context)) {
		wg.Add(1)
		gen.Start(func(gctx context.Context) {
			defer wg.Done()
			gctx, cancel := context.WithCancel(gctx)
			defer cancel()
			stop := context.AfterFunc(ctx, cancel)
			defer stop()
			f(gctx)
		})
	}
	for _, a := range parts {
		run(func(gctx context.Context) { c.read(gctx, dialer, a, items, &wm) })
	}
	run(func(gctx context.Context) { c.join(gctx, gen, parts, items, &wm, producer) })
	wg.Wait()
}

// read hands the messages of one partition to the join, in order, and its
// progress while it is idle, until ctx ends.
func (c *Consumer) read(ctx context.Context, dialer *kafka.Dialer, a assigned, out chan<- item, wm *atomic.Int64) {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: c.cfg.Kafka.Brokers, Topic: a.tp.topic, Partition: a.tp.partition, Dialer: dialer,
		MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 250 * time.Millisecond, ReadLagInterval: -1, MaxAttempts: 1 << 20,
	})
	defer r.Close()
	if err := r.SetOffset(a.offset); err != nil {
		c.logger.Error("cannot position a partition reader", "topic", a.tp.topic, "partition", a.tp.partition, "offset", a.offset, "err", err)
		return
	}
	lead := (c.cfg.Window + c.cfg.EmitDelay).Milliseconds()
	var progress int64
	backoff := 100 * time.Millisecond
	for {
		// Do not run ahead of the slowest partition: what is read here
		// would wait in memory for it.
		for progress > wm.Load()+lead {
			select {
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
		fctx, cancel := context.WithTimeout(ctx, c.cfg.Idle)
		m, err := r.FetchMessage(fctx)
		cancel()
		now := c.cfg.Now()
		it := item{tp: a.tp}
		switch {
		case err == nil:
			backoff = 100 * time.Millisecond
			it.msg, it.hasMsg = m, true
			it.ev, it.rej = check(a.tp.topic, m.Value, time.Now())
			if it.ev != nil {
				it.t = it.ev.GetEnvelope().GetEventTime().AsTime().UnixMilli()
				// An event time ahead of the clock (a skewed producer)
				// does not carry the partition's progress past it.
				progress = max(progress, min(it.t, now.UnixMilli()))
			}
			if r.Lag() == 0 {
				progress = max(progress, now.UnixMilli())
			}
		case ctx.Err() != nil:
			return
		case errors.Is(err, context.DeadlineExceeded):
			progress = max(progress, now.UnixMilli())
		default:
			c.logger.Warn("reading a partition failed; retrying", "topic", a.tp.topic, "partition", a.tp.partition, "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		it.progress = progress
		select {
		case out <- it:
		case <-ctx.Done():
			return
		}
	}
}

// join owns the generation's state: it applies the readers' items and,
// every FlushInterval, emits the windows due, writes dead letters and
// commits, until ctx ends.
func (c *Consumer) join(ctx context.Context, gen *kafka.Generation, parts []assigned, items <-chan item, wm *atomic.Int64, producer *events.Producer) {
	e := newEngine(c.p, c.emitted)
	if !c.readBack(ctx, e.emitted) {
		return
	}
	queues := make(map[tp]*holdQueue, len(parts))
	progress := make(map[tp]int64, len(parts))
	dedupe := make(map[tp]*events.DedupeWindow, len(parts))
	committed := make(map[tp]int64, len(parts))
	for _, a := range parts {
		queues[a.tp] = newHoldQueue()
		progress[a.tp] = 0
		committed[a.tp] = a.offset
		if a.tp.topic == events.TopicInteractions {
			dedupe[a.tp] = events.NewDedupeWindow(max(c.cfg.DedupeWindow, 0))
		}
	}
	var dead []kafka.Message
	ticker := time.NewTicker(c.cfg.FlushInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case it := <-items:
			progress[it.tp] = it.progress
			if !it.hasMsg {
				continue
			}
			off := it.msg.Offset
			replay := off < c.seen[it.tp]
			q := queues[it.tp]
			switch {
			case it.rej != nil:
				q.next = off + 1
				if !replay {
					dead = append(dead, deadLetter(it.msg, it.rej, c.cfg.GroupID, time.Now()))
				}
			case it.tp.topic == events.TopicPredictions:
				e.prediction(q, off, it.t, it.ev.GetPrediction(), replay)
			default:
				if dedupe[it.tp].Seen(it.ev.GetEnvelope().GetEventId(), off) {
					q.next = off + 1
					if !replay {
						e.counts.duplicates++
					}
					continue
				}
				e.interaction(q, off, it.t, it.progress, it.ev.GetInteraction(), replay)
			}
		case <-ticker.C:
			stream := int64(-1)
			for _, p := range progress {
				if stream < 0 || p < stream {
					stream = p
				}
			}
			if err := c.flush(ctx, gen, e, stream, queues, committed, dead, producer); err != nil {
				return
			}
			dead = dead[:0]
			wm.Store(stream)
			if stream > 0 {
				watermarkLag.Set(c.cfg.Now().Sub(time.UnixMilli(stream)).Seconds())
			}
		}
	}
}

// flush emits the windows due at stream time wm after the dead letters,
// then commits, retrying until done; it fails only when ctx ends.
func (c *Consumer) flush(ctx context.Context, gen *kafka.Generation, e *engine, wm int64, queues map[tp]*holdQueue,
	committed map[tp]int64, dead []kafka.Message, producer *events.Producer) error {
	due := e.due(wm)
	evs := make([]*adaptrecv1.Event, len(due))
	for i, m := range due {
		start, end := m.GetWindowStart().AsTime(), m.GetWindowEnd().AsTime()
		evs[i] = events.NewModelAccuracy(EventID(m.GetModelVersion(), m.GetExperimentArm(), start, end), end, c.cfg.Producer, m)
	}
	if err := c.retry(ctx, "dead_letters", func() error { return producer.WriteMessages(ctx, dead...) }); err != nil {
		return err
	}
	for _, m := range dead {
		for _, h := range m.Headers {
			if h.Key == events.DeadLetterHeaderReasonCode {
				deadLetteredTotal.WithLabelValues(string(h.Value)).Inc()
			}
		}
	}
	if err := c.retry(ctx, "emit", func() error { return producer.Publish(ctx, evs...) }); err != nil {
		return err
	}
	for _, m := range due {
		onlineCTR.WithLabelValues(m.GetModelVersion(), m.GetExperimentArm()).Set(m.GetCtr())
		c.logger.Debug("emitted accuracy window", "model_version", m.GetModelVersion(), "arm", m.GetExperimentArm(),
			"window_start", m.GetWindowStart().AsTime(), "requests", m.GetRequests(), "ctr", m.GetCtr())
	}
	if len(due) > 0 {
		emittedTotal.Add(float64(len(due)))
		c.logger.Info("emitted accuracy windows", "windows", len(due), "stream_time", time.UnixMilli(wm).UTC())
	}
	points := e.emittedAt(wm, due, queues)
	commit := map[string]map[int]int64{}
	for k, off := range points {
		if off > committed[k] {
			if commit[k.topic] == nil {
				commit[k.topic] = map[int]int64{}
			}
			commit[k.topic][k.partition] = off
		}
	}
	if len(commit) > 0 {
		if err := c.retry(ctx, "commit", func() error { return gen.CommitOffsets(commit) }); err != nil {
			return err
		}
		for t, ps := range commit {
			for p, off := range ps {
				committed[tp{t, p}] = off
			}
		}
	}
	// Everything handled so far is durable (emitted, held by the
	// committed offset, or dead-lettered): it is not counted again.
	for k, q := range queues {
		c.seen[k] = max(c.seen[k], q.next)
	}
	c.drain(e, len(dead), len(due), len(commit) > 0)
	return nil
}

// drain moves the engine's counts to the metrics and Stats.
func (c *Consumer) drain(e *engine, dead, emitted int, committed bool) {
	n := &e.counts
	predictionsTotal.WithLabelValues("served").Add(float64(n.predictions))
	predictionsTotal.WithLabelValues("shadow").Add(float64(n.shadow))
	joinedTotal.Add(float64(n.joined))
	lateTotal.WithLabelValues("interaction").Add(float64(n.late))
	lateTotal.WithLabelValues("prediction").Add(float64(n.latePredictions))
	duplicatesTotal.Add(float64(n.duplicates))
	for r, v := range n.unmatched {
		unmatchedTotal.WithLabelValues(r).Add(float64(v))
	}
	c.statsMu.Lock()
	s := &c.stats
	s.Predictions += n.predictions
	s.Shadow += n.shadow
	s.Interactions += n.interactions
	s.Joined += n.joined
	s.Late += n.late
	s.LatePredictions += n.latePredictions
	s.Duplicates += n.duplicates
	for r, v := range n.unmatched {
		s.Unmatched[r] += v
	}
	s.DeadLettered += int64(dead)
	s.Emitted += int64(emitted)
	if committed {
		s.Commits++
	}
	c.statsMu.Unlock()
	*n = counts{unmatched: map[string]int64{}}
}

// retry calls f until it succeeds or ctx ends, with backoff.
func (c *Consumer) retry(ctx context.Context, step string, f func() error) error {
	backoff := 100 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		flushErrorsTotal.WithLabelValues(step).Inc()
		c.logger.Warn("feedback flush failed; retrying", "step", step, "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// readBack adds to emitted the windows of this consumer's width whose
// ModelAccuracyEvents were published in the last retain, by this process or
// another, retrying until it succeeds; it reports false when ctx ended.
func (c *Consumer) readBack(ctx context.Context, emitted map[winKey]int64) bool {
	from := time.Now().Add(-time.Duration(c.p.retain) * time.Millisecond)
	var mu sync.Mutex
	err := c.retry(ctx, "read_back", func() error {
		// Nothing emitted yet when the topic does not exist.
		return ignoreMissing(scan(ctx, c.cfg.Kafka, events.TopicModelAccuracy, from, time.Time{}, func(_ int, _ kafka.Message, e *adaptrecv1.Event) {
			m := e.GetModelAccuracy()
			if m == nil {
				return
			}
			start, end := m.GetWindowStart().AsTime().UnixMilli(), m.GetWindowEnd().AsTime().UnixMilli()
			if end-start == c.p.window {
				mu.Lock()
				emitted[winKey{version: m.GetModelVersion(), arm: m.GetExperimentArm(), start: start}] = end
				mu.Unlock()
			}
		}))
	})
	return err == nil
}
