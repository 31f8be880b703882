package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/sim"
)

// liveTraffic publishes a simulated world's interactions as live traffic:
// each event gets a fresh event id and the wall clock at publish as its event
// time, so event-time latencies measure the pipeline, not the history.
type liveTraffic struct {
	kafka     config.Kafka
	events    int
	batch     int
	producers int
	// rate paces publishing (events/s) from the first publish; 0 is flat out.
	rate     float64
	producer string
	// start is set to the first publish and lastAck raised to each
	// acknowledgement (Unix nanoseconds).
	start, lastAck *atomic.Int64
	// beforeSend, when set, sees each batch of generated events with the
	// event time each was given, before the batch is written.
	beforeSend func(batch []*adaptrecv1.Event, at []time.Time)
	// sent counts events the brokers acknowledged.
	sent *atomic.Int64
}

// publish generates the events and publishes them from l.producers
// goroutines, returning once the brokers acknowledged every one.
func (l *liveTraffic) publish(ctx context.Context, world *sim.World) error {
	g, gctx := errgroup.WithContext(ctx)
	batches := make(chan []*adaptrecv1.Event, 2*l.producers)
	g.Go(func() error {
		defer close(batches)
		_, err := sim.GenerateHistory(gctx, world, sim.HistoryConfig{
			Events: int64(l.events), BatchSize: l.batch, Workers: 1, Producer: l.producer,
		}, func(ctx context.Context, batch []*adaptrecv1.Event) error {
			select {
			case batches <- batch:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		return err
	})
	var reserved atomic.Int64 // events scheduled so far, for the pacing
	for i := range l.producers {
		g.Go(func() error {
			p, err := events.NewProducer(l.kafka, events.ProducerOptions{BatchSize: l.batch})
			if err != nil {
				return err
			}
			defer p.Close()
			msgs := make([]kafka.Message, 0, l.batch)
			at := make([]time.Time, 0, l.batch)
			// Each event is re-enveloped in scratch messages rather than
			// changed in place: the batch belongs to the generator's caller
			// but stays shared with beforeSend.
			var ts timestamppb.Timestamp
			env := &adaptrecv1.EventEnvelope{EventTime: &ts}
			out := &adaptrecv1.Event{Envelope: env}
			for batch := range batches {
				if l.rate > 0 {
					// A batch is due once the events scheduled before it
					// have had their time at the requested rate, counted
					// from the first publish.
					before := reserved.Add(int64(len(batch))) - int64(len(batch))
					l.start.CompareAndSwap(0, time.Now().UnixNano())
					due := time.Unix(0, l.start.Load()).Add(time.Duration(float64(before) / l.rate * float64(time.Second)))
					if err := sleepUntil(gctx, due); err != nil {
						return err
					}
				}
				msgs, at = msgs[:0], at[:0]
				for _, e := range batch {
					now := time.Now()
					l.start.CompareAndSwap(0, now.UnixNano())
					src := e.GetEnvelope()
					env.EventId = events.NewID()
					env.Type, env.SchemaVersion, env.Producer = src.GetType(), src.GetSchemaVersion(), src.GetProducer()
					ts.Seconds, ts.Nanos = now.Unix(), int32(now.Nanosecond())
					out.Payload = e.Payload
					m, err := events.Message(out)
					if err != nil {
						return fmt.Errorf("producer %d: %w", i, err)
					}
					msgs = append(msgs, m)
					at = append(at, now)
				}
				if l.beforeSend != nil {
					l.beforeSend(batch, at)
				}
				if err := p.WriteMessages(gctx, msgs...); err != nil {
					return fmt.Errorf("producer %d: %w", i, err)
				}
				l.sent.Add(int64(len(msgs)))
				storeMax(l.lastAck, time.Now().UnixNano())
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	return nil
}
