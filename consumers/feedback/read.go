package feedback

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
)

// stallTimeout bounds the wait for one message a partition is known to
// hold: a broker that stops answering mid-scan fails the read instead of
// hanging it.
const stallTimeout = 30 * time.Second

// errNoTopic marks a scan of a topic the brokers do not have.
var errNoTopic = errors.New("the topic does not exist")

// ignoreMissing is err, or nil when it says the topic does not exist.
func ignoreMissing(err error) error {
	if errors.Is(err, errNoTopic) {
		return nil
	}
	return err
}

// scanParallelism is how many partitions a scan reads at once.
const scanParallelism = 4

// scan reads topic without a consumer group: every partition from the first
// message produced at or after from (by the messages' timestamps) up to the
// partition's end as of the call, or up to the first message produced at or
// after until when until is set. It calls visit with each valid event; calls
// for one partition come from one goroutine in offset order, those of
// different partitions may run concurrently. Messages that are not valid
// events are skipped (the consumers dead-letter them).
func scan(ctx context.Context, k config.Kafka, topic string, from, until time.Time, visit func(partition int, m kafka.Message, e *adaptrecv1.Event)) error {
	if len(k.Brokers) == 0 {
		return fmt.Errorf("read %s: config key kafka.brokers is empty", topic)
	}
	dialer := events.Dialer(k)
	var parts []kafka.Partition
	var errs []error
	for _, b := range k.Brokers {
		ps, err := dialer.LookupPartitions(ctx, "tcp", b, topic)
		if err == nil {
			parts, errs = ps, nil
			break
		}
		errs = append(errs, fmt.Errorf("%s: %w", b, err))
	}
	if err := errors.Join(errs...); err != nil {
		if errors.Is(err, kafka.UnknownTopicOrPartition) {
			return fmt.Errorf("read %s: %w on brokers %v (cmd/consumers creates it): %w", topic, errNoTopic, k.Brokers, err)
		}
		return fmt.Errorf("read %s: brokers %v (config key kafka.brokers) unreachable: %w", topic, k.Brokers, err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(scanParallelism)
	for _, p := range parts {
		g.Go(func() error { return scanPartition(gctx, k, dialer, topic, p.ID, from, until, visit) })
	}
	return g.Wait()
}

func scanPartition(ctx context.Context, k config.Kafka, dialer *kafka.Dialer, topic string, partition int, from, until time.Time,
	visit func(int, kafka.Message, *adaptrecv1.Event)) error {
	start, last, err := offsetRange(ctx, k, dialer, topic, partition, from)
	if err != nil {
		return err
	}
	if start >= last {
		return nil
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: k.Brokers, Topic: topic, Partition: partition, Dialer: dialer,
		MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 100 * time.Millisecond, ReadLagInterval: -1,
	})
	defer r.Close()
	if err := r.SetOffset(start); err != nil {
		return fmt.Errorf("read %s/%d at offset %d: %w", topic, partition, start, err)
	}
	now := time.Now()
	for {
		rctx, cancel := context.WithTimeout(ctx, stallTimeout)
		m, err := r.ReadMessage(rctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("read %s/%d: no message at offset %d (of %d) within %s: %w", topic, partition, r.Offset(), last, stallTimeout, err)
		}
		if !until.IsZero() && !m.Time.Before(until) {
			return nil
		}
		if e, err := events.Decode(m.Value, now); err == nil {
			visit(partition, m, e)
		}
		if m.Offset >= last-1 {
			return nil
		}
	}
}

// offsetRange returns the first offset of partition produced at or after
// from and the partition's end offset.
func offsetRange(ctx context.Context, k config.Kafka, dialer *kafka.Dialer, topic string, partition int, from time.Time) (start, last int64, err error) {
	var errs []error
	for _, b := range k.Brokers {
		conn, err := dialer.DialLeader(ctx, "tcp", b, topic, partition)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", b, err))
			continue
		}
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		first, last, err := conn.ReadOffsets()
		if err == nil {
			start, err = conn.ReadOffset(from)
		}
		conn.Close()
		if err != nil {
			return 0, 0, fmt.Errorf("read %s/%d: offsets at %s: %w", topic, partition, from.UTC().Format(time.RFC3339), err)
		}
		if start < 0 || start > last {
			start = last // nothing produced at or after from
		}
		return max(start, first), last, nil
	}
	return 0, 0, fmt.Errorf("read %s/%d: leader unreachable at brokers %v (config key kafka.brokers): %w", topic, partition, k.Brokers, errors.Join(errs...))
}

// checkRange rejects an empty or inverted time range, naming the values.
func checkRange(from, to time.Time) error {
	if from.IsZero() || to.IsZero() {
		return fmt.Errorf("time range [%s, %s): both ends are required", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
	}
	if !from.Before(to) {
		return fmt.Errorf("time range [%s, %s) is empty: from must be before to", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
	}
	return nil
}

// ArmAccuracy is online accuracy of one model version and arm, summed over windows.
type ArmAccuracy struct {
	ModelVersion, Arm                                  string
	Requests, Impressions, Clicks, Conversions, Errors int64
	// CTR is Clicks / Impressions over all the windows (0 without
	// impressions); LatencyP99Ms is the max of the windows' p99s.
	CTR, EngagementSeconds, LatencyP99Ms float64
	// Windows is how many windows were summed.
	Windows int
	// From is the start of the earliest window summed, To the end of the
	// latest.
	From, To time.Time
}

// ReadAccuracy sums the ModelAccuracyEvents on TopicModelAccuracy whose windows lie in [from, to), per (version, arm), de-duplicating re-emitted windows.
//
// A window is re-emitted with the same event id (see EventID); any two events
// of the same version, arm and window count once, the first read in the
// topic's order, whatever their ids. The topic is read from the events
// produced at from (a window is emitted after it ends, so every event of a
// window starting at or after from was produced after from) to its end as
// of the call. The result is sorted by version, then arm; windows the
// consumer has not emitted yet (Window plus EmitDelay after their end) are
// not in it.
func ReadAccuracy(ctx context.Context, k config.Kafka, from, to time.Time) ([]ArmAccuracy, error) {
	if err := checkRange(from, to); err != nil {
		return nil, fmt.Errorf("read accuracy: %w", err)
	}
	type windowID struct {
		version, arm string
		start, end   int64
	}
	type first struct {
		partition int
		offset    int64
		m         *adaptrecv1.ModelAccuracyEvent
	}
	var mu sync.Mutex
	seen := map[windowID]first{}
	err := scan(ctx, k, events.TopicModelAccuracy, from, time.Time{}, func(partition int, msg kafka.Message, e *adaptrecv1.Event) {
		m := e.GetModelAccuracy()
		if m == nil || m.GetWindowStart() == nil || m.GetWindowEnd() == nil {
			return
		}
		start, end := m.GetWindowStart().AsTime(), m.GetWindowEnd().AsTime()
		if start.Before(from) || end.After(to) {
			return
		}
		id := windowID{m.GetModelVersion(), m.GetExperimentArm(), start.UnixNano(), end.UnixNano()}
		mu.Lock()
		defer mu.Unlock()
		// Keyed by model version, so one window's events share a
		// partition: the first is the one at the lowest offset.
		if f, ok := seen[id]; !ok || (f.partition == partition && msg.Offset < f.offset) {
			seen[id] = first{partition, msg.Offset, m}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("read accuracy: %w", err)
	}
	type armID struct{ version, arm string }
	sums := map[armID]*ArmAccuracy{}
	for _, f := range seen {
		m := f.m
		a := sums[armID{m.GetModelVersion(), m.GetExperimentArm()}]
		start, end := m.GetWindowStart().AsTime(), m.GetWindowEnd().AsTime()
		if a == nil {
			a = &ArmAccuracy{ModelVersion: m.GetModelVersion(), Arm: m.GetExperimentArm(), From: start, To: end}
			sums[armID{m.GetModelVersion(), m.GetExperimentArm()}] = a
		}
		a.Requests += m.GetRequests()
		a.Impressions += m.GetImpressions()
		a.Clicks += m.GetClicks()
		a.Conversions += m.GetConversions()
		a.Errors += m.GetErrors()
		a.EngagementSeconds += m.GetEngagementSeconds()
		a.LatencyP99Ms = max(a.LatencyP99Ms, m.GetLatencyP99Ms())
		a.Windows++
		if start.Before(a.From) {
			a.From = start
		}
		if end.After(a.To) {
			a.To = end
		}
	}
	out := make([]ArmAccuracy, 0, len(sums))
	for _, a := range sums {
		if a.Impressions > 0 {
			a.CTR = float64(a.Clicks) / float64(a.Impressions)
		}
		a.From, a.To = a.From.UTC(), a.To.UTC()
		out = append(out, *a)
	}
	slices.SortFunc(out, func(a, b ArmAccuracy) int {
		return cmp.Or(cmp.Compare(a.ModelVersion, b.ModelVersion), cmp.Compare(a.Arm, b.Arm))
	})
	return out, nil
}
