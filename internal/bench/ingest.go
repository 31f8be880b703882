package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"github.com/adaptrec/adaptrec/consumers/archiver"
	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/sim"
)

// IngestTopic is the topic the ingest benchmark publishes to: simulated
// interactions, as the simulator and the server's Ingest write them.
const IngestTopic = events.TopicInteractions

// Defaults of IngestOptions.
const (
	DefaultIngestProducers = 2
	DefaultIngestBatch     = 5000
	DefaultDurableTimeout  = 2 * time.Minute
	DefaultJoinTimeout     = time.Minute
)

// IngestTargetPerS is the project's ingest goal: events/s from publish to
// durable Parquet on S3, on a 2-core machine running every component.
const IngestTargetPerS = 50_000

// IngestEventTime says what the event time of a benchmark event is, and so
// what the durable latencies measure. Reports carry it.
const IngestEventTime = "wall clock at publish"

// IngestOptions configure RunIngest. Zero values mean the documented
// defaults.
type IngestOptions struct {
	// Events is the number of events to publish; required.
	Events int
	// Producers publish concurrently, each with its own Kafka producer;
	// default DefaultIngestProducers.
	Producers int
	// Rate is the total publish rate in events/s, spread evenly over time;
	// 0 publishes as fast as the brokers acknowledge.
	Rate float64
	// Batch is the number of events per acknowledged publish call; default
	// DefaultIngestBatch, and with a Rate what each producer sends in 20 ms
	// (at most DefaultIngestBatch), so batching does not dominate latency.
	Batch int
	// RunID names the run; default the start time and random hex. The
	// archiver runs in consumer group adaptrec-bench-ingest-<RunID> and
	// writes below <s3.prefix>bench/ingest/<RunID>/, so it never touches the
	// state or the event log of a running archiver, and every event carries
	// producer bench/ingest/<RunID> so that only this run's rows are counted.
	RunID string
	// Cleanup deletes the run's objects and consumer group afterwards, on
	// success and failure; set it when the components outlive the run.
	Cleanup bool
	// JoinTimeout bounds the wait for the archiver to join its group;
	// default DefaultJoinTimeout.
	JoinTimeout time.Duration
	// DurableTimeout bounds the wait, after the last publish, for every
	// event to be durable; default DefaultDurableTimeout.
	DurableTimeout time.Duration
	// World supplies the events' users, items and sessions; nil means a
	// world of sim's default size over the last day.
	World *sim.World
	// Logger receives the archiver's logs; nil discards them.
	Logger *slog.Logger
	// Logf, when set, receives one line per step ("archiver joined …").
	Logf func(format string, args ...any)
	// Progress, when set, is called every ProgressInterval while events are
	// published and made durable, from one goroutine.
	Progress func(IngestProgress)
	// ProgressInterval defaults to one second.
	ProgressInterval time.Duration
}

// IngestProgress is a snapshot of a running ingest benchmark.
type IngestProgress struct {
	// Elapsed is the time since the first publish.
	Elapsed time.Duration
	// Published events were acknowledged by the brokers; Durable events are
	// in committed Parquet objects.
	Published, Durable, Events int64
	// PublishRate and DurableRate are events/s since the previous snapshot.
	PublishRate, DurableRate float64
}

// IngestResult is what RunIngest measured. Its JSON names are those of
// `adaptrec bench ingest --json`.
type IngestResult struct {
	// Events were published, made durable and found in the store.
	Events int `json:"events"`
	// ThroughputPerS is Events over the time from the first publish to the
	// last event durable.
	ThroughputPerS float64 `json:"throughput_per_s"`
	// ProducePerS is Events over the time from the first publish to the
	// last acknowledgement.
	ProducePerS float64 `json:"produce_per_s"`
	// The quantiles of event time to durable (objects written and offset
	// committed) over all events, in milliseconds.
	P50Ms float64 `json:"p50_ms"`
	P95Ms float64 `json:"p95_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	// Objects and Bytes are the Parquet objects of IngestTopic the run left
	// in the store.
	Objects int   `json:"objects"`
	Bytes   int64 `json:"bytes"`
	// RowsVerified is the number of this run's rows counted in the store
	// after the run: from the Parquet footers, or by reading the rows when
	// other producers' events were archived too.
	RowsVerified int64 `json:"rows_verified"`
	// DurationS is the time from the first publish to the last event
	// durable.
	DurationS float64 `json:"duration_s"`
	// Partitions of IngestTopic.
	Partitions int `json:"partitions"`
	// Producers, RatePerS (0: as fast as possible) and Batch are the load.
	Producers int     `json:"producers"`
	RatePerS  float64 `json:"rate_per_s"`
	Batch     int     `json:"batch"`
	// The archiver settings the run used.
	FlushIntervalS float64 `json:"flush_interval_s"`
	FlushEvents    int     `json:"flush_events"`
	// Flushes counts the archiver's batches (all topics).
	Flushes int64 `json:"flushes"`
	// OtherRows counts rows of other producers the run's archiver wrote:
	// events published to the same topics during the run.
	OtherRows int64  `json:"other_rows"`
	Topic     string `json:"topic"`
	EventTime string `json:"event_time"`
	// Producer is the envelope producer of the run's events.
	Producer string `json:"producer"`
	RunID    string `json:"run_id"`
	// Group and Prefix are the run's consumer group and S3 key prefix.
	Group  string `json:"group"`
	Prefix string `json:"s3_prefix"`
}

func (o IngestOptions) withDefaults() (IngestOptions, error) {
	if o.Producers == 0 {
		o.Producers = DefaultIngestProducers
	}
	if o.Batch == 0 {
		o.Batch = DefaultIngestBatch
		if o.Rate > 0 && o.Producers > 0 {
			o.Batch = min(DefaultIngestBatch, max(1, int(o.Rate/float64(o.Producers)/50)))
		}
	}
	if o.RunID == "" {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return o, fmt.Errorf("run id: %w", err)
		}
		o.RunID = time.Now().UTC().Format("20060102t150405") + "-" + hex.EncodeToString(b[:])
	}
	if o.JoinTimeout == 0 {
		o.JoinTimeout = DefaultJoinTimeout
	}
	if o.DurableTimeout == 0 {
		o.DurableTimeout = DefaultDurableTimeout
	}
	if o.ProgressInterval == 0 {
		o.ProgressInterval = time.Second
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return o, nil
}

// Validate reports every invalid option (after defaults).
func (o IngestOptions) Validate() error {
	var errs []error
	if o.Events < 1 || o.Events > sim.MaxHistoryEvents {
		errs = append(errs, fmt.Errorf("events: %d is not in 1..%d", o.Events, int64(sim.MaxHistoryEvents)))
	}
	if o.Producers < 1 {
		errs = append(errs, fmt.Errorf("producers: must be >= 1, got %d", o.Producers))
	}
	if o.Rate < 0 {
		errs = append(errs, fmt.Errorf("rate: must be >= 0 events/s, got %g", o.Rate))
	}
	if o.Batch < 1 || o.Batch > 100_000 {
		errs = append(errs, fmt.Errorf("batch: %d is not in 1..100000", o.Batch))
	}
	if o.JoinTimeout < 0 || o.DurableTimeout < 0 || o.ProgressInterval < 0 {
		errs = append(errs, errors.New("timeouts and intervals must not be negative"))
	}
	return errors.Join(errs...)
}

// RunIngest measures producer → Kafka → archiver → Parquet on S3 against the
// brokers and the bucket of cfg: it runs an archiver in-process with
// cfg.Consumers.Archiver (in a consumer group and under an S3 prefix of its
// own, see IngestOptions.RunID) positioned at the current end of its
// topics, publishes opts.Events simulated interactions to IngestTopic, waits
// until every one is durable, and then counts the run's rows in the store.
//
// Each event's id is fresh (events.NewID) and its event time is the wall
// clock when it is handed to the producer, so that the durable latency is
// the whole path and repeated runs are never deduplicated; users, items,
// actions and sessions come from the simulator.
func RunIngest(ctx context.Context, cfg config.Config, opts IngestOptions) (IngestResult, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return IngestResult{}, err
	}
	if err := opts.Validate(); err != nil {
		return IngestResult{}, fmt.Errorf("ingest benchmark: %w", err)
	}
	r := &ingestRun{
		opts:     opts,
		producer: "bench/ingest/" + opts.RunID,
		group:    "adaptrec-bench-ingest-" + opts.RunID,
		prefix:   cfg.S3.Prefix + "bench/ingest/" + opts.RunID + "/",
		durable:  make(chan struct{}),
	}
	cfg.Consumers.Archiver.GroupID = r.group
	cfg.S3.Prefix = r.prefix
	r.cfg = cfg
	return r.run(ctx)
}

// ingestRun is the state of one RunIngest.
type ingestRun struct {
	opts                    IngestOptions
	cfg                     config.Config
	producer, group, prefix string
	store                   *objstore.Store

	// Publishing.
	start     atomic.Int64 // unix nanoseconds of the first publish
	published atomic.Int64
	lastAck   atomic.Int64 // unix nanoseconds

	// Durability, fed by the archiver's OnFlush.
	mu          sync.Mutex
	lats        []time.Duration
	mine        int64
	other       int64
	lastDurable time.Time
	durable     chan struct{} // closed once mine reaches Events
}

func (r *ingestRun) run(ctx context.Context) (res IngestResult, err error) {
	o := r.opts
	cfg := r.cfg
	if err := events.EnsureTopics(ctx, cfg.Kafka); err != nil {
		return res, fmt.Errorf("create topics: %w", err)
	}
	r.store, err = objstore.New(ctx, cfg.S3)
	if err != nil {
		return res, fmt.Errorf("object store: %w", err)
	}
	if err := r.store.EnsureBucket(ctx); err != nil {
		return res, fmt.Errorf("bucket %s: %w", cfg.S3.Bucket, err)
	}
	if o.Cleanup {
		defer func() {
			if cerr := r.cleanup(ctx); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}()
	}

	a, err := archiver.New(cfg, r.store, o.Logger)
	if err != nil {
		return res, fmt.Errorf("archiver: %w", err)
	}
	topics := a.Topics()
	found := false
	for _, t := range topics {
		found = found || t == IngestTopic
	}
	if !found {
		return res, fmt.Errorf("config key consumers.archiver.topics %v lacks %s: the benchmark's events would never be archived", topics, IngestTopic)
	}
	partitions, err := positionGroup(ctx, cfg.Kafka, r.group, topics)
	if err != nil {
		return res, err
	}
	a.OnFlush = r.onFlush

	world, err := worldOrDefault(o.World)
	if err != nil {
		return res, err
	}

	// The archiver stops when the run ends, however it ends, and drains
	// what it buffered.
	archCtx, stopArchiver := context.WithCancel(ctx)
	arch := &runResult{done: make(chan struct{})}
	go func() {
		arch.err = a.Run(archCtx)
		close(arch.done)
	}()
	archStopped := false
	stop := func() error {
		if archStopped {
			return nil
		}
		archStopped = true
		stopArchiver()
		<-arch.done
		return arch.err
	}
	defer func() {
		if serr := stop(); serr != nil {
			err = errors.Join(err, fmt.Errorf("archiver: %w", serr))
		}
	}()
	o.Logf("archiver: group %s, topics %v, flush every %s or %d events, writing to %s",
		r.group, topics, cfg.Consumers.Archiver.FlushInterval, cfg.Consumers.Archiver.FlushEvents, r.store.URI(""))
	if err := r.waitJoined(ctx, a, arch); err != nil {
		return res, err
	}

	o.Logf("publishing %d events to %s (%d partitions) with %d producers, batches of %d, %s",
		o.Events, IngestTopic, partitions[IngestTopic], o.Producers, o.Batch, rateText(o.Rate))
	progressDone := make(chan struct{})
	var progressWG sync.WaitGroup
	if o.Progress != nil {
		progressWG.Go(func() { r.reportProgress(progressDone) })
	}
	err = r.publish(ctx, world)
	if err == nil {
		err = r.waitDurable(ctx, a, arch)
	}
	close(progressDone)
	progressWG.Wait()
	if err != nil {
		return res, err
	}
	if err := stop(); err != nil {
		return res, fmt.Errorf("archiver: %w", err)
	}
	st := a.Stats()

	r.mu.Lock()
	lats, other, last := r.lats, r.other, r.lastDurable
	r.mu.Unlock()
	o.Logf("all %d events durable; verifying the Parquet objects", o.Events)
	objects, bytes, rows, err := r.verify(ctx, other > 0)
	if err != nil {
		return res, err
	}

	start := time.Unix(0, r.start.Load())
	window := last.Sub(start)
	produce := time.Unix(0, r.lastAck.Load()).Sub(start)
	l := Summarize(lats)
	return IngestResult{
		Events:         o.Events,
		ThroughputPerS: Round(float64(o.Events)/max(window.Seconds(), 1e-9), 1),
		ProducePerS:    Round(float64(o.Events)/max(produce.Seconds(), 1e-9), 1),
		P50Ms:          Millis(l.P50),
		P95Ms:          Millis(l.P95),
		P99Ms:          Millis(l.P99),
		MaxMs:          Millis(l.Max),
		Objects:        objects,
		Bytes:          bytes,
		RowsVerified:   rows,
		DurationS:      Round(window.Seconds(), 3),
		Partitions:     partitions[IngestTopic],
		Producers:      o.Producers,
		RatePerS:       o.Rate,
		Batch:          o.Batch,
		FlushIntervalS: cfg.Consumers.Archiver.FlushInterval.Seconds(),
		FlushEvents:    cfg.Consumers.Archiver.FlushEvents,
		Flushes:        st.Flushes,
		OtherRows:      other,
		Topic:          IngestTopic,
		EventTime:      IngestEventTime,
		Producer:       r.producer,
		RunID:          o.RunID,
		Group:          r.group,
		Prefix:         r.prefix,
	}, nil
}

func rateText(rate float64) string {
	if rate <= 0 {
		return "as fast as the brokers acknowledge"
	}
	return fmt.Sprintf("at %.0f events/s", rate)
}

// onFlush counts the run's rows of each durable batch.
func (r *ingestRun) onFlush(fi archiver.FlushInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	mine := 0
	for i, p := range fi.Producers {
		if p == r.producer {
			r.lats = append(r.lats, fi.Latencies[i])
			mine++
		}
	}
	if fi.Topic == IngestTopic {
		r.other += int64(fi.Rows - mine)
	}
	if mine == 0 {
		return
	}
	before := r.mine
	r.mine += int64(mine)
	if fi.Durable.After(r.lastDurable) {
		r.lastDurable = fi.Durable
	}
	if before < int64(r.opts.Events) && r.mine >= int64(r.opts.Events) {
		close(r.durable)
	}
}

func (r *ingestRun) durableCount() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mine
}

// runResult is the outcome of a goroutine: err is set before done closes.
type runResult struct {
	done chan struct{}
	err  error
}

// waitJoined waits until the archiver is in its consumer group.
func (r *ingestRun) waitJoined(ctx context.Context, a *archiver.Archiver, arch *runResult) error {
	deadline := time.NewTimer(r.opts.JoinTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := a.Ready(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the archiver to join group %s: %w", r.group, ctx.Err())
		case <-arch.done:
			return fmt.Errorf("archiver stopped before joining group %s: %w", r.group, errors.Join(arch.err, err))
		case <-deadline.C:
			return fmt.Errorf("archiver did not join consumer group %s within %s: %w", r.group, r.opts.JoinTimeout, err)
		case <-tick.C:
		}
	}
}

// publish generates the events and publishes them from opts.Producers
// goroutines, returning once the brokers acknowledged every one.
func (r *ingestRun) publish(ctx context.Context, world *sim.World) error {
	o := r.opts
	live := &liveTraffic{
		kafka: r.cfg.Kafka, events: o.Events, batch: o.Batch, producers: o.Producers, rate: o.Rate,
		producer: r.producer, start: &r.start, lastAck: &r.lastAck, sent: &r.published,
	}
	return live.publish(ctx, world)
}

// storeMax raises v to x.
func storeMax(v *atomic.Int64, x int64) {
	for {
		cur := v.Load()
		if x <= cur || v.CompareAndSwap(cur, x) {
			return
		}
	}
}

// sleepUntil sleeps until t or until ctx ends.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// waitDurable waits until the archiver has made every event durable.
func (r *ingestRun) waitDurable(ctx context.Context, a *archiver.Archiver, arch *runResult) error {
	o := r.opts
	deadline := time.NewTimer(o.DurableTimeout)
	defer deadline.Stop()
	select {
	case <-r.durable:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for events to be durable: %w", ctx.Err())
	case <-arch.done:
		why := errors.Join(arch.err, a.Ready(ctx))
		if why == nil {
			why = errors.New("it returned without an error")
		}
		return fmt.Errorf("archiver stopped with %d of %d events durable: %w", r.durableCount(), o.Events, why)
	case <-deadline.C:
		st := a.Stats()
		return fmt.Errorf("only %d of %d events durable %s after the last publish (archiver totals: %d archived, %d duplicates dropped, %d dead-lettered, %d flushes); raise --durable-timeout if the archiver is just slow",
			r.durableCount(), o.Events, o.DurableTimeout, st.Archived, st.Duplicates, st.DeadLettered, st.Flushes)
	}
}

// reportProgress calls opts.Progress every interval until done is closed.
func (r *ingestRun) reportProgress(done <-chan struct{}) {
	t := time.NewTicker(r.opts.ProgressInterval)
	defer t.Stop()
	var prevPub, prevDur int64
	prev := time.Now()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			pub, dur := r.published.Load(), r.durableCount()
			dt := now.Sub(prev).Seconds()
			var elapsed time.Duration
			if s := r.start.Load(); s != 0 {
				elapsed = now.Sub(time.Unix(0, s))
			}
			r.opts.Progress(IngestProgress{
				Elapsed: elapsed, Published: pub, Durable: dur, Events: int64(r.opts.Events),
				PublishRate: float64(pub-prevPub) / dt, DurableRate: float64(dur-prevDur) / dt,
			})
			prevPub, prevDur, prev = pub, dur, now
		}
	}
}

// positionGroup commits, for a group without members, the current end of
// every partition of topics, so that the run's archiver archives what is
// published from now on instead of the topics' whole history. It returns
// the partition count of each topic.
func positionGroup(ctx context.Context, cfg config.Kafka, group string, topics []string) (map[string]int, error) {
	client := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: events.Transport(cfg), Timeout: 10 * time.Second}
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
	if err != nil {
		return nil, fmt.Errorf("read metadata of %v from %v: %w", topics, cfg.Brokers, err)
	}
	counts := make(map[string]int, len(topics))
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, t := range meta.Topics {
		if t.Error != nil {
			return nil, fmt.Errorf("metadata of topic %s: %w", t.Name, t.Error)
		}
		counts[t.Name] = len(t.Partitions)
		for _, p := range t.Partitions {
			req.Topics[t.Name] = append(req.Topics[t.Name], kafka.LastOffsetOf(p.ID))
		}
	}
	for _, t := range topics {
		if counts[t] == 0 {
			return nil, fmt.Errorf("topic %s has no partitions on %v", t, cfg.Brokers)
		}
	}
	ends, err := client.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %v: %w", topics, err)
	}
	commit := &kafka.OffsetCommitRequest{GroupID: group, GenerationID: -1, Topics: map[string][]kafka.OffsetCommit{}}
	for t, parts := range ends.Topics {
		for _, p := range parts {
			if p.Error != nil {
				return nil, fmt.Errorf("end offset of %s/%d: %w", t, p.Partition, p.Error)
			}
			commit.Topics[t] = append(commit.Topics[t], kafka.OffsetCommit{Partition: p.Partition, Offset: p.LastOffset})
		}
	}
	resp, err := client.OffsetCommit(ctx, commit)
	if err != nil {
		return nil, fmt.Errorf("position consumer group %s at the end of %v: %w", group, topics, err)
	}
	for t, parts := range resp.Topics {
		for _, p := range parts {
			if p.Error != nil {
				return nil, fmt.Errorf("position consumer group %s on %s/%d: %w", group, t, p.Partition, p.Error)
			}
		}
	}
	return counts, nil
}

// verify lists the run's Parquet objects of IngestTopic, sums their rows
// from the footers and checks that the store holds exactly the run's
// events. When other producers' rows were archived too, it reads the rows
// and counts those of the run.
func (r *ingestRun) verify(ctx context.Context, others bool) (objects int, bytes, rows int64, err error) {
	from := time.Unix(0, r.start.Load()).Add(-time.Hour)
	to := time.Unix(0, r.lastAck.Load()).Add(time.Hour)
	objs, err := eventlog.ListObjects(ctx, r.store, IngestTopic, from, to)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("verify: list objects: %w", err)
	}
	stats, err := eventlog.StatAll(ctx, r.store, objs, 8)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("verify: read Parquet footers: %w", err)
	}
	var footer int64
	for i, o := range objs {
		bytes += o.Size
		footer += stats[i].Rows
	}
	rows = footer
	if others {
		rows = 0
		err := eventlog.Scan(ctx, r.store, IngestTopic, from, to, func(row *eventlog.Row) error {
			if row.Producer == r.producer {
				rows++
			}
			return nil
		})
		if err != nil {
			return 0, 0, 0, fmt.Errorf("verify: read rows: %w", err)
		}
	}
	if rows != int64(r.opts.Events) {
		return 0, 0, 0, fmt.Errorf("verify: %s holds %d rows of this run in %d objects (%d rows in all), want exactly %d",
			r.store.URI(eventlog.TopicPrefix(IngestTopic)), rows, len(objs), footer, r.opts.Events)
	}
	return len(objs), bytes, rows, nil
}

// cleanup deletes everything under the run's S3 prefix and the run's
// consumer group. It runs after the archiver stopped, with time of its own
// so that it also runs after an interrupt.
func (r *ingestRun) cleanup(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	var errs []error
	var keys []string
	for info, err := range r.store.List(ctx, "", objstore.ListOptions{}) {
		if err != nil {
			errs = append(errs, fmt.Errorf("clean up: %w", err))
			break
		}
		keys = append(keys, info.Key)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, k := range keys {
		g.Go(func() error { return r.store.Delete(gctx, k) })
	}
	if err := g.Wait(); err != nil {
		errs = append(errs, fmt.Errorf("clean up %s: %w", r.store.URI(""), err))
	}
	client := &kafka.Client{Addr: kafka.TCP(r.cfg.Kafka.Brokers...), Transport: events.Transport(r.cfg.Kafka), Timeout: 10 * time.Second}
	resp, err := client.DeleteGroups(ctx, &kafka.DeleteGroupsRequest{GroupIDs: []string{r.group}})
	if err == nil {
		err = resp.Errors[r.group]
	}
	if err != nil && !errors.Is(err, kafka.GroupIdNotFound) {
		errs = append(errs, fmt.Errorf("clean up: delete consumer group %s: %w", r.group, err))
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	r.opts.Logf("cleaned up: %d objects under %s, consumer group %s", len(keys), r.store.URI(""), r.group)
	return nil
}

// worldOrDefault returns w, or the benchmarks' default simulated world: seed
// 1 and the day before now.
func worldOrDefault(w *sim.World) (*sim.World, error) {
	if w != nil {
		return w, nil
	}
	now := time.Now().UTC()
	w, err := sim.NewWorld(sim.WorldConfig{Seed: 1, Start: now.Add(-24 * time.Hour).Truncate(time.Hour), Window: 24 * time.Hour})
	if err != nil {
		return nil, fmt.Errorf("simulated world: %w", err)
	}
	return w, nil
}
