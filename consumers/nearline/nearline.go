// Package nearline is the consumer that keeps the nearline features of
// features.yaml (lane: nearline) fresh in the online store: it reads
// events.TopicInteractions in a Kafka consumer group and writes through
// online.Writer, whose write contract (values carry the event time they
// are correct at; older writes are ignored) it relies on.
//
// # State
//
// State is held in memory per assigned partition. Interactions are keyed
// by user id, so a user's events all arrive in one partition, in order,
// and the user features (session state, clicks and purchases in the last
// hour, last interaction time, recently clicked or viewed items) and the
// user×item ui_impressions_1h are computed from partition-local state
// alone. Every value is computed by features/windowed, the package the
// point-in-time join of features/offline calls too, so training rows hold
// what this consumer writes (the remaining differences, such as the
// periodic rewrite lag, are listed there). ui_impressions_1h is written as
// the user's complete item → count set (online.Writer.WritePairsNearline)
// for at most windowed.MaxPairItems items, the ones shown last, for the
// dirty users (at most once per Config.PairInterval each) and on the
// periodic refresh while the user was shown anything in the hour (and once
// more, empty, after).
//
// Items are not partition-local: an item's events are spread over every
// partition. Each partition counts its items' clicks and impressions in
// time buckets (Config.Bucket, 1 minute by default) and publishes, per
// item, its window totals as one field of a small Redis hash per item
// (shard key "<prefix>{<item>}:nls", field "<topic>/<partition>"). A Lua
// script sets the field (ignoring a shard older than the stored one) and
// returns all fields atomically; the consumer sums the shards and writes
// the item's features through the Writer with At = the newest shard's
// time. Adding consumers to the group spreads the partitions and nothing
// else changes: an item has at most one shard per partition, whoever owns
// it. A hot item costs one shard write per partition per flush, not one
// per event, because a flush writes each dirty item once.
//
// Two consumers can sum an item concurrently; the later read (in Redis's
// order) sees every earlier shard write, so its At is the larger or equal
// one, and the Writer keeps the larger At. Only on equal milliseconds can
// an earlier sum land last; the next write or tick of that item repairs it.
//
// # Time
//
// The watermark of a partition is its latest event time minus
// Config.Lateness. An item event behind it is still counted while its
// bucket is held (buckets are held while they can be in an hour window
// ending at the watermark) and dropped otherwise; both outcomes are
// counted in adaptrec_nearline_late_events_total. Windowed values change
// as time passes, and readers treat a value older than its freshness SLA as
// stale, so every held user and item is rewritten with the time it is
// correct at (the wall clock when caught up, else the stream time) once per
// Config.Refresh, the rewrites spread over the period (see phases) so that
// no flush carries them all.
//
// # Delivery
//
// At least once: a batch's dead letters and values are written and
// acknowledged before its offsets are committed, and failed writes are
// retried. Redelivery after a crash is harmless to values (older or equal
// At) but would count events twice, so a window of the event ids of the
// last Config.DedupeWindow offsets per partition drops repeats; after an
// assignment the consumer re-reads the partition from Config.Warmup ago
// (but never commits below the committed offset), which rebuilds the
// windows, the session state and the dedupe window. Malformed messages go
// to events.TopicDeadLetter with the reason in events.DeadLetterHeader*
// headers, as the archiver sends them.
//
// See docs/adr/008-nearline-features.md.
package nearline

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

	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/online"
	"github.com/adaptrec/adaptrec/features/windowed"
	"github.com/adaptrec/adaptrec/internal/config"
)

const hour = windowed.Hour

// Config configures a Consumer. Zero fields take the defaults documented
// on each.
type Config struct {
	// Kafka is the cluster to read from.
	Kafka config.Kafka
	// GroupID is the consumer group; instances sharing it split the
	// partitions. Required.
	GroupID string
	// Topic is read; events.TopicInteractions when empty.
	Topic string
	// KeyPrefix must be the serving stores' online Options.KeyPrefix
	// (online.DefaultKeyPrefix when empty).
	KeyPrefix string
	// BatchEvents flushes a partition's batch once it holds this many
	// messages (default 500).
	BatchEvents int
	// FlushInterval is the longest a message waits before its batch is
	// written (default 200ms).
	FlushInterval time.Duration
	// Bucket is the width of the item count buckets (default
	// windowed.DefaultBucket, 1m); it divides an hour. Training rows
	// (features/offline) count with the default: another width makes
	// the item windows of serving and training differ.
	Bucket time.Duration
	// Lateness is how far behind a partition's latest event time an event
	// is on time (default 5m).
	Lateness time.Duration
	// DedupeWindow is how many recent offsets' event ids are remembered per
	// partition (default 100000; negative disables).
	DedupeWindow int
	// Refresh is how often every held windowed value is rewritten with the
	// time it is correct at, so that readers never find it older than its
	// freshness SLA while nothing happens to its user or item. The
	// rewrites are spread over the period (see phases). Default: half the
	// smallest freshness_sla of the windowed features written, or 30s.
	Refresh time.Duration
	// PairInterval is the shortest time between two writes of one user's
	// ui_impressions_1h set (default 5s; negative: every flush that finds
	// the user dirty). A set lists up to windowed.MaxPairItems items, and
	// an active user is dirty in nearly every flush: rewriting it each
	// time took `adaptrec bench nearline`'s freshness p99 from 0.2 s to
	// 6 s on a 2-core machine. An impression is in the served set at most
	// this long after its flush.
	PairInterval time.Duration
	// Warmup is how far back in time a newly assigned partition is re-read
	// to rebuild its state (default 1h plus Lateness; negative disables).
	Warmup time.Duration
	// ClicksPer30m, when set, returns an item's mean clicks per 30 minutes
	// over the last 7 days (item_clicks_7d / 336): the baseline of
	// item_trending_velocity_30m. Without it, or when it has no value for
	// an item, the velocity is not written and serving reads its default.
	// It is called from every partition's goroutine: it must be safe for
	// concurrent use and quick.
	ClicksPer30m func(itemID string) (float64, bool)
}

func (c Config) withDefaults() Config {
	if c.Topic == "" {
		c.Topic = events.TopicInteractions
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = online.DefaultKeyPrefix
	}
	if c.BatchEvents == 0 {
		c.BatchEvents = 500
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = 200 * time.Millisecond
	}
	if c.Bucket == 0 {
		c.Bucket = windowed.DefaultBucket
	}
	if c.Lateness == 0 {
		c.Lateness = 5 * time.Minute
	}
	if c.DedupeWindow == 0 {
		c.DedupeWindow = 100000
	}
	if c.PairInterval == 0 {
		c.PairInterval = 5 * time.Second
	}
	if c.Warmup == 0 {
		c.Warmup = hour + c.Lateness
	}
	return c
}

// Stats are totals since the consumer was created.
type Stats struct {
	// Applied events were applied and their batch committed.
	Applied int64
	// Duplicates were dropped by the dedupe window.
	Duplicates int64
	// DeadLettered went to the dead-letter topic.
	DeadLettered int64
	// LateCounted and LateDropped are item events behind the watermark.
	LateCounted, LateDropped int64
	// Commits are committed batches.
	Commits int64
}

// Consumer maintains the nearline features. Create it with New and call
// Run.
type Consumer struct {
	cfg    Config
	fs     *features.FeatureSet
	rdb    redis.UniversalClient
	w      *online.Writer
	logger *slog.Logger
	// writes marks the features of fs this consumer writes: those fs
	// defines as windowed computes them (Feature.Defines).
	writes [windowed.NumFeatures]bool
	// writesItems and writesPairs say whether any item feature, and
	// ui_impressions_1h, is written.
	writesItems, writesPairs bool
	rules                    windowed.Rules

	applied, duplicates, deadLettered, lateCounted, lateDropped, commits atomic.Int64

	member events.GroupMembership
}

// New returns a consumer writing the nearline features of fs to rdb. It
// validates cfg and connects to nothing.
func New(cfg Config, fs *features.FeatureSet, rdb redis.UniversalClient, logger *slog.Logger) (*Consumer, error) {
	var errs []error
	if len(cfg.Kafka.Brokers) == 0 {
		errs = append(errs, errors.New("nearline: Kafka.Brokers: at least one broker address is required"))
	}
	if cfg.GroupID == "" {
		errs = append(errs, errors.New("nearline: GroupID: a consumer group id is required"))
	}
	cfg = cfg.withDefaults()
	if cfg.BatchEvents < 1 {
		errs = append(errs, fmt.Errorf("nearline: BatchEvents must be >= 1, got %d", cfg.BatchEvents))
	}
	if cfg.FlushInterval < 0 || cfg.Lateness < 0 {
		errs = append(errs, fmt.Errorf("nearline: FlushInterval and Lateness must be >= 0, got %s and %s", cfg.FlushInterval, cfg.Lateness))
	}
	if cfg.Refresh < 0 {
		errs = append(errs, fmt.Errorf("nearline: Refresh must be >= 0, got %s", cfg.Refresh))
	}
	if cfg.Bucket < time.Millisecond || hour%cfg.Bucket != 0 {
		errs = append(errs, fmt.Errorf("nearline: Bucket must divide an hour, got %s", cfg.Bucket))
	}
	if cfg.Topic == events.TopicDeadLetter {
		errs = append(errs, fmt.Errorf("nearline: Topic %s holds no events", cfg.Topic))
	}
	if fs == nil || rdb == nil {
		errs = append(errs, errors.New("nearline: feature set and Redis client are required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	w, err := online.NewWriter(rdb, fs, online.WriterOptions{KeyPrefix: cfg.KeyPrefix})
	if err != nil {
		return nil, fmt.Errorf("nearline: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c := &Consumer{cfg: cfg, fs: fs, rdb: rdb, w: w, logger: logger.With("component", "nearline"), rules: windowed.RulesFor(fs),
		member: events.GroupMembership{Group: cfg.GroupID}}
	for f := range windowed.NumFeatures {
		if f.Defines(fs) {
			c.writes[f] = true
			c.writesItems = c.writesItems || f.Entity() == features.EntityItem
		}
	}
	c.writesPairs = c.writes[windowed.PairImpressions1h]
	if c.cfg.Refresh == 0 {
		c.cfg.Refresh = defaultRefresh(fs, &c.writes)
	}
	return c, nil
}

// defaultRefresh is half the smallest freshness SLA of the windowed
// features written (those whose values change with time alone: what the
// periodic refresh is for), at least a second; 30s when none declares one.
func defaultRefresh(fs *features.FeatureSet, writes *[windowed.NumFeatures]bool) time.Duration {
	sla := time.Duration(0)
	for f := range windowed.NumFeatures {
		if d, ok := fs.Lookup(f.Name()); ok && writes[f] && f.Windowed() && d.FreshnessSLA > 0 && (sla == 0 || d.FreshnessSLA < sla) {
			sla = d.FreshnessSLA
		}
	}
	if sla == 0 {
		return 30 * time.Second
	}
	return max(sla/2, time.Second)
}

// Stats returns totals since New.
func (c *Consumer) Stats() Stats {
	return Stats{Applied: c.applied.Load(), Duplicates: c.duplicates.Load(), DeadLettered: c.deadLettered.Load(),
		LateCounted: c.lateCounted.Load(), LateDropped: c.lateDropped.Load(), Commits: c.commits.Load()}
}

// Ready reports nil once the consumer has joined its group, and the
// last group or partition error otherwise; /readyz serves it.
func (c *Consumer) Ready(ctx context.Context) error { return c.member.Ready(ctx) }

// Run consumes until ctx is cancelled, then leaves the group and returns
// nil. It returns an error only when it cannot run at all.
func (c *Consumer) Run(ctx context.Context) error {
	dialer := events.Dialer(c.cfg.Kafka)
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                    c.cfg.GroupID,
		Brokers:               c.cfg.Kafka.Brokers,
		Dialer:                dialer,
		Topics:                []string{c.cfg.Topic},
		GroupBalancers:        []kafka.GroupBalancer{kafka.RoundRobinGroupBalancer{}},
		HeartbeatInterval:     time.Second,
		SessionTimeout:        10 * time.Second,
		RebalanceTimeout:      10 * time.Second,
		JoinGroupBackoff:      time.Second,
		WatchPartitionChanges: true,
		StartOffset:           kafka.FirstOffset,
		ErrorLogger:           kafka.LoggerFunc(func(msg string, args ...any) { c.logger.Debug(fmt.Sprintf(msg, args...)) }),
	})
	if err != nil {
		return fmt.Errorf("nearline consumer group %s: %w", c.cfg.GroupID, err)
	}
	defer cg.Close()
	dlq := &kafka.Writer{
		Addr:         kafka.TCP(c.cfg.Kafka.Brokers...),
		Balancer:     &kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 2 * time.Millisecond,
		WriteTimeout: 10 * time.Second,
		Transport:    events.Transport(c.cfg.Kafka),
	}
	defer dlq.Close()
	c.logger.Info("nearline consumer starting", "group", c.cfg.GroupID, "topic", c.cfg.Topic)
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
		var commitMu sync.Mutex
		var wg sync.WaitGroup
		for topic, parts := range gen.Assignments {
			for _, p := range parts {
				wg.Add(1)
				gen.Start(func(gctx context.Context) {
					defer wg.Done()
					gctx, cancel := context.WithCancel(gctx)
					defer cancel()
					stop := context.AfterFunc(ctx, cancel)
					defer stop()
					pw := newPartition(c, topic, p.ID, dlq, func(next int64) error {
						commitMu.Lock()
						defer commitMu.Unlock()
						if err := gen.CommitOffsets(map[string]map[int]int64{topic: {p.ID: next}}); err != nil {
							return fmt.Errorf("commit %s/%d at %d: %w", topic, p.ID, next, err)
						}
						return nil
					})
					if err := pw.run(gctx, dialer, p.Offset); err != nil && gctx.Err() == nil {
						c.member.Set(true, err)
						c.logger.Error("partition stopped", "topic", topic, "partition", p.ID, "err", err)
					}
				})
			}
		}
		wg.Wait()
		if ctx.Err() != nil {
			return nil
		}
	}
}
