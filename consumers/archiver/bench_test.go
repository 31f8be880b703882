package archiver_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/proto"

	"github.com/adaptrec/adaptrec/consumers/archiver"
	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

// BenchmarkPipeline measures producer -> Kafka -> archiver -> Parquet on S3
// with the default archiver settings (8 partitions, all event topics, 1 s
// flush interval): b.N events are published by 4 concurrent producers while
// the archiver runs in-process, either as fast as the broker takes them
// (burst) or at a steady 50,000 events/s; it reports end-to-end events/s and
// the event-time to durable latency.
//
//	go test -run '^$' -bench Pipeline -benchtime 1000000x ./consumers/archiver/
func BenchmarkPipeline(b *testing.B) {
	b.Run("burst", func(b *testing.B) { benchPipeline(b, 0) })
	b.Run("rate=50000", func(b *testing.B) { benchPipeline(b, 50000) })
}

func benchPipeline(b *testing.B, rate int) {
	env := testenv.New(b, testenv.Kafka, testenv.S3)
	cfg := env.Config()
	cfg.Consumers.Archiver = config.Default().Consumers.Archiver
	ctx := b.Context()
	if err := events.EnsureTopics(ctx, cfg.Kafka); err != nil {
		b.Fatal(err)
	}
	store, err := objstore.New(ctx, cfg.S3)
	if err != nil {
		b.Fatal(err)
	}
	if err := store.EnsureBucket(ctx); err != nil {
		b.Fatal(err)
	}
	a, err := archiver.New(cfg, store, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	var lats []time.Duration
	a.OnFlush = func(fi archiver.FlushInfo) {
		mu.Lock()
		lats = append(lats, fi.Latencies...)
		mu.Unlock()
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			b.Error(err)
		}
	}()
	testenv.Eventually(b, 30*time.Second, func() error { return a.Ready(ctx) })

	n := b.N
	b.ResetTimer()
	start := time.Now()
	const producers = 4
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for w := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{BatchSize: 5000})
			if err != nil {
				errs <- err
				return
			}
			defer p.Close()
			size := 5000
			const step = 20 * time.Millisecond
			next := time.Now()
			if rate > 0 {
				// Each producer sends rate/producers events/s in 20 ms steps
				// on a fixed schedule.
				size = max(1, rate/producers/int(time.Second/step))
			}
			batch := make([]kafka.Message, 0, size)
			for i := w; i < n; i += producers {
				id := fmt.Sprintf("bench-%d-%09d", w, i)
				e := events.NewInteraction(id, time.Now(), "bench", &adaptrecv1.UserInteractionEvent{
					UserId: fmt.Sprintf("u%d", i%50000), ItemId: fmt.Sprintf("i%d", i%20000),
					Action: adaptrecv1.Action_ACTION_CLICK, Position: int32(i % 50), Surface: "home",
					Device: adaptrecv1.Device_DEVICE_MOBILE, SessionId: fmt.Sprintf("s%d", i%9000),
				})
				v, err := proto.Marshal(e)
				if err != nil {
					errs <- err
					return
				}
				batch = append(batch, kafka.Message{Topic: events.TopicInteractions, Key: events.Key(e), Value: v})
				if len(batch) == cap(batch) || i+producers >= n {
					if err := p.WriteMessages(ctx, batch...); err != nil {
						errs <- err
						return
					}
					batch = batch[:0]
					if rate > 0 {
						next = next.Add(step)
						time.Sleep(time.Until(next))
					}
				}
			}
		}()
	}
	wg.Wait()
	produced := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	testenv.Eventually(b, 10*time.Minute, func() error {
		if got := a.Stats().Archived; got < int64(n) {
			return fmt.Errorf("archived %d of %d", got, n)
		}
		return nil
	})
	elapsed := time.Since(start)
	b.StopTimer()

	mu.Lock()
	defer mu.Unlock()
	slices.Sort(lats)
	q := func(p float64) float64 {
		if len(lats) == 0 {
			return 0
		}
		return lats[min(len(lats)-1, int(p*float64(len(lats))))].Seconds() * 1000
	}
	st := a.Stats()
	b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(n)/produced.Seconds(), "produced/s")
	b.ReportMetric(q(0.5), "p50-durable-ms")
	b.ReportMetric(q(0.99), "p99-durable-ms")
	b.ReportMetric(q(1), "max-durable-ms")
	b.Logf("%d events in %s (produced in %s), %d objects, %d flushes", n, elapsed.Round(time.Millisecond), produced.Round(time.Millisecond), st.Objects, st.Flushes)
}
