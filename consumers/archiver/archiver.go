// Package archiver is the consumer that writes adaptrec's event log to the
// offline store: every event topic, as Parquet objects on S3 in the layout of
// package eventlog, exactly once.
//
// # Exactly-once output from at-least-once input
//
// Kafka delivers at least once and a process can die at any instant, so the
// archiver makes its output idempotent rather than its input exact. Each
// assigned partition is worked by one goroutine of the current consumer
// group generation (kafka-go's ConsumerGroup/Generation API), which cuts the
// partition into batches — contiguous offset ranges [first, end) flushed
// when they hold FlushEvents messages or their oldest message has waited
// FlushInterval. A batch's objects have keys that depend only on the batch:
// one object per UTC event hour, named by topic, partition and first offset.
//
// Before writing a batch's objects the worker replaces a small per-partition
// state object (StateKey) with a compare-and-swap on its ETag, recording the
// batch as pending: its range, its object keys and the offsets it dropped as
// duplicates. Then it writes the objects and the dead letters, and only then
// commits end to the group. On assignment a worker reads the state first: if
// the committed offset is below the pending batch's end, that batch may be
// partly written, and the worker re-reads exactly [first, end), applies the
// recorded duplicate decisions and rewrites the same keys with the same rows
// before it archives anything new. Every object in the store is therefore
// either part of a committed batch or of the one pending batch, and the
// pending batch is always completed by whoever owns the partition next:
// no row is lost, and no row is written under two keys. The ETag
// compare-and-swap fences a zombie: a worker from an older generation that
// still runs finds the state changed under it, stops, and can at most
// rewrite identical bytes under keys of the pending batch.
//
// Producers that retry can put one event twice into a partition. A window of
// the event ids of the last DedupeWindow offsets drops repeats; it is a
// function of the log, rebuilt after a restart by re-reading those offsets.
// Malformed messages go to events.TopicDeadLetter with the original key and
// value and the reason in headers (events.DeadLetterHeaderReason and the others); the write is
// acknowledged before the offset covering it is committed, and a rewritten
// batch writes its dead letters again, so the dead-letter topic is
// at-least-once (dedupe on origin topic, partition and offset).
//
// See docs/adr/004-archiver-exactly-once-output.md for the alternatives.
package archiver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
)

// Store is the object storage the archiver writes to; *objstore.Store
// implements it.
type Store interface {
	Put(ctx context.Context, key string, body []byte, opts objstore.PutOptions) (string, error)
	Get(ctx context.Context, key string) ([]byte, objstore.ObjectInfo, error)
	Delete(ctx context.Context, key string) error
}

var _ Store = (*objstore.Store)(nil)

// FlushInfo describes one batch made durable.
type FlushInfo struct {
	Topic                  string
	Partition              int
	FirstOffset, EndOffset int64
	// Rows were archived; Duplicates were dropped; DeadLettered went to the
	// dead-letter topic.
	Rows, Duplicates, DeadLettered int
	// Replayed messages were skipped: re-published by events replay, their
	// events are archived already.
	Replayed int
	Objects  int
	Bytes    int64
	// Redo is set for the rewrite of a batch left pending by a crash or a
	// rebalance.
	Redo bool
	// Duration is the time from the start of the flush to the commit.
	Duration time.Duration
	// Durable is when the objects were written and the offset committed.
	Durable time.Time
	// Latencies are Durable minus each archived row's event time. The slice
	// belongs to the callee.
	Latencies []time.Duration
	// Producers are the envelope producers of the same rows, index for index
	// with Latencies, so that an observer sharing the topics with other
	// producers (a benchmark against a running system) can count its own
	// rows. The slice belongs to the callee.
	Producers []string
}

// Stats are totals since the archiver was created.
type Stats struct {
	Archived, Duplicates, Replayed, DeadLettered, Objects, Flushes, Redone int64
}

// Archiver consumes the event topics in a consumer group and archives them.
// Create it with New; set OnFlush before Run.
type Archiver struct {
	// OnFlush, when set, is called after every durable batch, from the
	// partition's goroutine: it must be safe for concurrent use and quick.
	OnFlush func(FlushInfo)

	cfg      config.Config
	topics   []string
	store    Store
	logger   *slog.Logger
	counters counters

	member events.GroupMembership
}

// New returns an archiver for cfg.Consumers.Archiver over cfg.Kafka, writing
// to store. It validates the archiver settings and connects to nothing.
func New(cfg config.Config, store Store, logger *slog.Logger) (*Archiver, error) {
	a := cfg.Consumers.Archiver
	var errs []error
	if len(cfg.Kafka.Brokers) == 0 {
		errs = append(errs, errors.New("config key kafka.brokers: at least one broker address is required"))
	}
	if a.GroupID == "" {
		errs = append(errs, errors.New("config key consumers.archiver.group_id: a consumer group id is required"))
	}
	if a.FlushEvents < 1 {
		errs = append(errs, fmt.Errorf("config key consumers.archiver.flush_events: must be >= 1, got %d", a.FlushEvents))
	}
	if a.FlushInterval <= 0 {
		errs = append(errs, fmt.Errorf("config key consumers.archiver.flush_interval: must be > 0, got %s", a.FlushInterval))
	}
	if a.DedupeWindow < 0 {
		errs = append(errs, fmt.Errorf("config key consumers.archiver.dedupe_window: must be >= 0, got %d", a.DedupeWindow))
	}
	topics := a.Topics
	if len(topics) == 0 {
		topics = events.EventTopics()
	}
	for _, t := range topics {
		if t == events.TopicDeadLetter {
			errs = append(errs, fmt.Errorf("config key consumers.archiver.topics: %s cannot be archived: its messages are not events", t))
		}
	}
	if store == nil {
		errs = append(errs, errors.New("archiver: store is nil"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Archiver{cfg: cfg, topics: topics, store: store, logger: logger.With("component", "archiver"),
		member: events.GroupMembership{Group: cfg.Consumers.Archiver.GroupID}}, nil
}

// Topics are the topics this archiver consumes.
func (a *Archiver) Topics() []string { return append([]string(nil), a.topics...) }

// Stats returns totals since New.
func (a *Archiver) Stats() Stats {
	c := &a.counters
	return Stats{
		Archived: c.archived.Load(), Duplicates: c.duplicates.Load(), Replayed: c.replayed.Load(), DeadLettered: c.deadLettered.Load(),
		Objects: c.objects.Load(), Flushes: c.flushes.Load(), Redone: c.redone.Load(),
	}
}

// Ready reports nil once the consumer has joined its group, and the
// last group or partition error otherwise; /readyz serves it.
func (a *Archiver) Ready(ctx context.Context) error { return a.member.Ready(ctx) }

// Consumer group timing. The session timeout bounds how long the partitions
// of a crashed instance stay unassigned; the fetch wait stays well below it.
const (
	sessionTimeout    = 10 * time.Second
	heartbeatInterval = time.Second
	rebalanceTimeout  = 10 * time.Second
	fetchMaxWait      = 250 * time.Millisecond
	drainTimeout      = 15 * time.Second
)

// Run archives until ctx is cancelled, then makes what it buffered durable,
// leaves the group and returns nil. It returns an error only when it cannot
// run at all.
func (a *Archiver) Run(ctx context.Context) error {
	ac := a.cfg.Consumers.Archiver
	dialer := events.Dialer(a.cfg.Kafka)
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                    ac.GroupID,
		Brokers:               a.cfg.Kafka.Brokers,
		Dialer:                dialer,
		Topics:                a.topics,
		GroupBalancers:        []kafka.GroupBalancer{kafka.RoundRobinGroupBalancer{}},
		HeartbeatInterval:     heartbeatInterval,
		SessionTimeout:        sessionTimeout,
		RebalanceTimeout:      rebalanceTimeout,
		JoinGroupBackoff:      time.Second,
		WatchPartitionChanges: true,
		StartOffset:           kafka.FirstOffset,
		ErrorLogger:           kafka.LoggerFunc(func(msg string, args ...any) { a.logger.Debug(fmt.Sprintf(msg, args...)) }),
	})
	if err != nil {
		return fmt.Errorf("archiver consumer group %s: %w", ac.GroupID, err)
	}
	defer cg.Close()
	dlq := &kafka.Writer{
		Addr:                   kafka.TCP(a.cfg.Kafka.Brokers...),
		Balancer:               &kafka.Murmur2Balancer{},
		RequiredAcks:           kafka.RequireAll,
		BatchSize:              1000,
		BatchTimeout:           2 * time.Millisecond,
		WriteTimeout:           10 * time.Second,
		Transport:              events.Transport(a.cfg.Kafka),
		AllowAutoTopicCreation: false,
	}
	defer dlq.Close()

	a.logger.Info("archiver starting", "group", ac.GroupID, "topics", a.topics,
		"flush_events", ac.FlushEvents, "flush_interval", ac.FlushInterval, "dedupe_window", ac.DedupeWindow)
	for {
		gen, err := cg.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
				return nil
			}
			a.member.Set(false, err)
			a.logger.Warn("joining consumer group failed; retrying", "group", ac.GroupID, "err", err)
			continue
		}
		a.runGeneration(ctx, gen, dialer, dlq)
		if ctx.Err() != nil {
			return nil
		}
	}
}

// runGeneration starts one worker per assigned partition and waits until
// they all return, which they do when the generation ends or ctx is
// cancelled.
func (a *Archiver) runGeneration(ctx context.Context, gen *kafka.Generation, dialer *kafka.Dialer, dlq *kafka.Writer) {
	ac := a.cfg.Consumers.Archiver
	n := 0
	for _, parts := range gen.Assignments {
		n += len(parts)
	}
	a.member.Set(true, nil)
	assignedPartitions.Set(float64(n))
	a.logger.Info("consumer group generation", "generation", gen.ID, "member", gen.MemberID, "partitions", n)

	var commitMu sync.Mutex
	var wg sync.WaitGroup
	// kafka-go ends the generation as soon as one function started on it
	// returns. On shutdown every worker drains its buffer first, so a worker
	// that is done waits here for the others instead of cutting their final
	// flushes short.
	var draining sync.WaitGroup
	draining.Add(n)
	for topic, parts := range gen.Assignments {
		for _, p := range parts {
			wg.Add(1)
			gen.Start(func(gctx context.Context) {
				defer wg.Done()
				w := newWorker(partitionConfig{
					topic: topic, partition: p.ID, group: ac.GroupID, member: gen.MemberID, generation: gen.ID,
					flushEvents: ac.FlushEvents, flushInterval: ac.FlushInterval, dedupeWindow: ac.DedupeWindow,
					drainTimeout: drainTimeout,
				}, partitionDeps{
					store: a.store,
					open: func(offset int64) (messageReader, error) {
						r := kafka.NewReader(kafka.ReaderConfig{
							Brokers:         a.cfg.Kafka.Brokers,
							Topic:           topic,
							Partition:       p.ID,
							Dialer:          dialer,
							MinBytes:        1,
							MaxBytes:        32 << 20,
							MaxWait:         fetchMaxWait,
							QueueCapacity:   8192,
							ReadLagInterval: -1,
							MaxAttempts:     1 << 20,
							ErrorLogger:     kafka.LoggerFunc(func(msg string, args ...any) { a.logger.Debug(fmt.Sprintf(msg, args...)) }),
						})
						if err := r.SetOffset(offset); err != nil {
							r.Close()
							return nil, fmt.Errorf("position reader of %s/%d at %d: %w", topic, p.ID, offset, err)
						}
						return r, nil
					},
					commit: func(ctx context.Context, next int64) error {
						commitMu.Lock()
						defer commitMu.Unlock()
						err := gen.CommitOffsets(map[string]map[int]int64{topic: {p.ID: next}})
						if errors.Is(err, kafka.IllegalGeneration) || errors.Is(err, kafka.RebalanceInProgress) ||
							errors.Is(err, kafka.UnknownMemberId) || errors.Is(err, kafka.FencedInstanceID) {
							return fmt.Errorf("%w: %w", errGenerationEnded, err)
						}
						if err != nil {
							return fmt.Errorf("commit %s/%d at %d: %w", topic, p.ID, next, err)
						}
						return nil
					},
					deadLetter: dlq,
					logger:     a.logger,
					observe:    a.OnFlush,
					counters:   &a.counters,
				})
				err := w.run(ctx, gctx, p.Offset)
				if err != nil {
					a.member.SetErr(err)
					a.logger.Error("partition stopped", "topic", topic, "partition", p.ID, "err", err)
				}
				draining.Done()
				if ctx.Err() != nil {
					draining.Wait()
				}
			})
		}
	}
	wg.Wait()
	assignedPartitions.Set(0)
}
