package activities

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/sim"
)

// Backfill holds the activities of the HistoryBackfill workflow.
type Backfill struct {
	Kafka config.Kafka
	Store *objstore.Store

	mu     sync.Mutex
	counts map[string]objectCount // event-log object key → rows of a producer
}

type objectCount struct {
	size     int64
	producer string
	rows     int64
}

// WorldConfig is the simulated world of a history request. The world is a
// pure function of it, so live users simulated later (the demo) act in the
// same world the history came from.
func WorldConfig(req HistoryRequest) sim.WorldConfig {
	return sim.WorldConfig{
		Seed:       req.Seed,
		Start:      req.Start,
		Window:     req.End.Sub(req.Start),
		Catalogue:  sim.CatalogueConfig{Items: req.Items},
		Population: sim.PopulationConfig{Users: req.Users},
	}
}

// CatalogueKey is where a simulated world's catalogue is stored.
func CatalogueKey(worldID string) string { return "worlds/" + worldID + "/catalogue.bin" }

// HistoryProducer is the envelope producer of a world's history events; it
// lets the offline store tell one backfill's rows from any other's.
func HistoryProducer(worldID string) string { return sim.DefaultHistoryProducer + "/" + worldID }

func nonRetryable(err error, kind string) error {
	return temporal.NewNonRetryableApplicationError(err.Error(), kind, err)
}

// PublishHistory builds the simulated world, stores its catalogue and
// publishes its interaction history to the event log. The history is a pure
// function of the request, so a retried attempt regenerates it and resumes
// publishing after the last heartbeated count; the events it may publish
// twice carry the same event ids, which consumers dedupe.
func (b *Backfill) PublishHistory(ctx context.Context, req HistoryRequest) (HistoryResult, error) {
	var res HistoryResult
	if req.WorldID == "" || !req.End.After(req.Start) {
		return res, nonRetryable(fmt.Errorf("history request needs a world id and start < end, got %q %s..%s",
			req.WorldID, req.Start.Format(time.RFC3339), req.End.Format(time.RFC3339)), "InvalidParams")
	}
	world, err := sim.NewWorld(WorldConfig(req))
	if err != nil {
		return res, nonRetryable(fmt.Errorf("build world: %w", err), "InvalidParams")
	}
	var buf bytes.Buffer
	if _, err := world.Catalogue.WriteTo(&buf); err != nil {
		return res, fmt.Errorf("encode catalogue: %w", err)
	}
	res.CatalogueKey = CatalogueKey(req.WorldID)
	if _, err := b.Store.Put(ctx, res.CatalogueKey, buf.Bytes(), objstore.PutOptions{}); err != nil {
		return res, fmt.Errorf("store catalogue: %w", err)
	}

	var resumeFrom int64
	if activity.HasHeartbeatDetails(ctx) {
		if err := activity.GetHeartbeatDetails(ctx, &resumeFrom); err != nil {
			resumeFrom = 0
		}
	}
	producer, err := events.NewProducer(b.Kafka, events.ProducerOptions{BatchSize: 5000, BatchTimeout: 5 * time.Millisecond})
	if err != nil {
		return res, nonRetryable(err, "InvalidConfig")
	}
	defer producer.Close()

	log := activity.GetLogger(ctx)
	var seen int64
	start := time.Now()
	lastBeat := start
	stats, err := sim.GenerateHistory(ctx, world, sim.HistoryConfig{
		Events:   int64(req.Events),
		Producer: HistoryProducer(req.WorldID),
	}, func(ctx context.Context, batch []*adaptrecv1.Event) error {
		from := seen
		seen += int64(len(batch))
		if seen <= resumeFrom {
			return nil
		}
		if from < resumeFrom {
			batch = batch[resumeFrom-from:]
		}
		if err := producer.Publish(ctx, batch...); err != nil {
			return err
		}
		if time.Since(lastBeat) >= time.Second {
			lastBeat = time.Now()
			activity.RecordHeartbeat(ctx, seen)
			log.Info("publishing history", "published", seen, "of", req.Events)
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("publish history after %d events: %w", seen, err)
	}
	activity.RecordHeartbeat(ctx, seen)
	elapsed := time.Since(start)
	res.Published = int(stats.Events)
	res.FirstEvent, res.LastEvent = stats.First, stats.Last
	res.PublishSecond = elapsed.Seconds()
	res.EventsPerSec = float64(stats.Events-resumeFrom) / elapsed.Seconds()
	return res, nil
}

// AwaitArchived polls the offline store until it holds w.Want rows written
// by w.Producer, heartbeating the count. Counting one producer's rows keeps
// other traffic in the same hours from ending the wait early.
func (b *Backfill) AwaitArchived(ctx context.Context, w ArchiveWait) (ArchiveStatus, error) {
	st := ArchiveStatus{Location: b.Store.URI(eventlog.TopicPrefix(w.Topic))}
	for {
		rows, objects, err := b.countRows(ctx, w)
		if err != nil {
			return st, err
		}
		st.Rows, st.Objects = rows, objects
		activity.RecordHeartbeat(ctx, rows)
		if rows >= w.Want {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("archived %d of %d events: %w", rows, w.Want, ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
}

// countRows counts the producer's rows in the objects overlapping the wait's
// range. Objects are immutable once written (a recovery rewrite has the same
// content), so a count is cached by key and size; most objects are counted
// from their footers alone (eventlog.CountProducer).
func (b *Backfill) countRows(ctx context.Context, w ArchiveWait) (int64, int, error) {
	producer := w.Producer
	objs, err := eventlog.ListObjects(ctx, b.Store, w.Topic, w.From, w.To)
	if err != nil {
		return 0, 0, fmt.Errorf("list event log: %w", err)
	}
	b.mu.Lock()
	if b.counts == nil {
		b.counts = make(map[string]objectCount)
	}
	b.mu.Unlock()
	var total int64
	matched := 0
	for _, o := range objs {
		if !w.WrittenAfter.IsZero() && o.LastModified.Before(w.WrittenAfter.Add(-time.Minute)) {
			continue
		}
		b.mu.Lock()
		c, ok := b.counts[o.Key]
		b.mu.Unlock()
		if !ok || c.size != o.Size || c.producer != producer {
			n, err := eventlog.CountProducer(ctx, b.Store, o, producer, w.From, w.To)
			if errors.Is(err, objstore.ErrNotFound) {
				continue
			}
			if err != nil {
				return 0, 0, fmt.Errorf("count rows of %s: %w", o.Key, err)
			}
			c = objectCount{size: o.Size, producer: producer, rows: n}
			b.mu.Lock()
			b.counts[o.Key] = c
			b.mu.Unlock()
		}
		if c.rows > 0 {
			matched++
		}
		total += c.rows
	}
	return total, matched, nil
}
