package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
)

// Follow reads topic from its end on every partition, without a consumer
// group, and calls handle with each event, in order per partition, until
// ctx ends; then it returns nil. It is how every instance of a service
// sees every broadcast event (FeatureSnapshotEvents, ModelLifecycleEvents):
// a consumer group would hand each event to one instance only.
//
// Events published while a follower is not running are not read: followers
// pair it with polling the state the events announce (a snapshot pointer,
// the registry's aliases), so that an event only makes a change visible
// sooner. Undecodable messages are logged and skipped; a failing handle is
// logged and the next event is read. A broker that is down is retried
// with backoff (the metadata lookup until the topic exists, then each
// partition's reads) without giving up.
func Follow(ctx context.Context, cfg config.Kafka, topic string, logger *slog.Logger, handle func(context.Context, *adaptrecv1.Event) error) error {
	if len(cfg.Brokers) == 0 {
		return errors.New("follow: kafka.brokers is empty")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("topic", topic)
	dialer := Dialer(cfg)
	var parts []kafka.Partition
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		var err error
		parts, err = lookupPartitions(ctx, dialer, cfg.Brokers, topic)
		if err == nil && len(parts) > 0 {
			break
		}
		if err == nil {
			err = fmt.Errorf("topic %s has no partitions yet", topic)
		}
		logger.Warn("following topic: cannot list its partitions yet; retrying", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
	}
	done := make(chan struct{}, len(parts))
	for _, p := range parts {
		go func() {
			defer func() { done <- struct{}{} }()
			followPartition(ctx, cfg, dialer, topic, p.ID, logger, handle)
		}()
	}
	for range parts {
		<-done
	}
	return nil
}

func lookupPartitions(ctx context.Context, dialer *kafka.Dialer, brokers []string, topic string) ([]kafka.Partition, error) {
	var errs []error
	for _, b := range brokers {
		parts, err := dialer.LookupPartitions(ctx, "tcp", b, topic)
		if err == nil {
			return parts, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", b, err))
	}
	return nil, errors.Join(errs...)
}

func followPartition(ctx context.Context, cfg config.Kafka, dialer *kafka.Dialer, topic string, partition int, logger *slog.Logger, handle func(context.Context, *adaptrecv1.Event) error) {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: cfg.Brokers, Topic: topic, Partition: partition, Dialer: dialer,
		MinBytes: 1, MaxBytes: 4 << 20, MaxWait: 250 * time.Millisecond, ReadLagInterval: -1, MaxAttempts: 1 << 20,
	})
	defer r.Close()
	// The end as of now: events published from here on are read.
	if err := r.SetOffset(kafka.LastOffset); err != nil {
		logger.Error("following topic: cannot position the reader", "partition", partition, "err", err)
		return
	}
	backoff := 100 * time.Millisecond
	for {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			logger.Warn("following topic: read failed; retrying", "partition", partition, "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		e, err := Decode(m.Value, time.Now())
		if err != nil {
			logger.Warn("following topic: skipping a message that is not a valid event", "partition", partition, "offset", m.Offset, "err", err)
			continue
		}
		if err := handle(ctx, e); err != nil && ctx.Err() == nil {
			logger.Warn("following topic: handling an event failed", "partition", partition, "offset", m.Offset,
				"event_id", e.GetEnvelope().GetEventId(), "err", err)
		}
	}
}
