package archiver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"golang.org/x/sync/errgroup"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/internal/objstore"
)

// messageReader reads one partition from a given offset; *kafka.Reader
// implements it.
type messageReader interface {
	FetchMessage(ctx context.Context) (kafka.Message, error)
	Close() error
}

// messageWriter writes and waits for acknowledgement; *kafka.Writer and
// *events.Producer implement it.
type messageWriter interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// partitionDeps are what a worker talks to; the archiver passes Kafka and S3,
// tests pass fakes.
type partitionDeps struct {
	store Store
	// open starts reading the partition at offset (or kafka.FirstOffset).
	open func(offset int64) (messageReader, error)
	// commit commits the next offset to read for the partition.
	commit     func(ctx context.Context, next int64) error
	deadLetter messageWriter
	logger     *slog.Logger
	observe    func(FlushInfo)
	counters   *counters
}

// partitionConfig identifies the partition and the batching policy.
type partitionConfig struct {
	topic         string
	partition     int
	group, member string
	generation    int32
	flushEvents   int
	flushInterval time.Duration
	dedupeWindow  int
	// drainTimeout bounds the final flush on shutdown.
	drainTimeout time.Duration
}

// worker archives one partition for one consumer group generation.
type worker struct {
	cfg   partitionConfig
	deps  partitionDeps
	state stateStore
	win   *events.DedupeWindow
	log   *slog.Logger
	lagG  func(float64)
	encs  []*eventlog.Encoder
}

func newWorker(cfg partitionConfig, deps partitionDeps) *worker {
	g := consumerLag.WithLabelValues(cfg.topic, strconv.Itoa(cfg.partition))
	return &worker{
		cfg:   cfg,
		deps:  deps,
		state: stateStore{store: deps.store, key: StateKey(cfg.topic, cfg.partition)},
		win:   events.NewDedupeWindow(cfg.dedupeWindow),
		log:   deps.logger.With("topic", cfg.topic, "partition", cfg.partition),
		lagG:  g.Set,
	}
}

// batch is a contiguous offset range [first, end) of one partition and what
// became of each message in it.
type batch struct {
	first, end int64
	rows       []eventlog.Row
	dead       []deadLetter
	dups       []int64
	// replayed counts messages skipped because they carry
	// events.HeaderReplay: their events are archived already. The header
	// is part of the message, so a rewrite makes the same decision.
	replayed int
	hwm      int64
	// started is when the first message was added; the batch is flushed
	// FlushInterval later at the latest.
	started time.Time
	// redo is set when the batch rewrites the pending batch of the state
	// found at assignment; the batch must then end exactly at redo.End.
	redo *pending
	// firstRead is the offset of the first message read into the batch.
	firstRead int64
}

func (b *batch) messages() int { return len(b.rows) + len(b.dead) + len(b.dups) + b.replayed }

// run archives the partition until ctx (shutdown: flush what is buffered,
// then return nil) or gen (revoked: return at once) ends, or a step fails.
// committed is the group's committed offset for the partition, or
// kafka.FirstOffset when it has none.
func (w *worker) run(ctx, gen context.Context, committed int64) error {
	var st *partitionState
	err := w.retry(gen, "load_state", func() error {
		var err error
		st, err = w.state.load(gen)
		return err
	})
	if err != nil {
		if gen.Err() != nil {
			return nil
		}
		return err
	}
	var redo *pending
	resume := committed
	if st != nil && st.Pending != nil {
		p := st.Pending
		switch {
		case committed < p.End:
			// The pending batch may be partly written: rewrite exactly it.
			// This also covers a group without offsets (committed < 0) and
			// a committed offset behind the state, which would otherwise
			// archive rows twice.
			redo, resume = p, p.End
		default:
			resume = committed
		}
	}
	readFrom := resume
	if redo != nil {
		readFrom = redo.First
	}
	warmFrom := readFrom
	if readFrom >= 0 && w.cfg.dedupeWindow > 0 {
		warmFrom = max(0, readFrom-int64(w.cfg.dedupeWindow))
	}
	// One line per partition is noise at start-up; a redo after a crash is
	// worth seeing.
	level := slog.LevelDebug
	if redo != nil {
		level = slog.LevelInfo
	}
	w.log.Log(ctx, level, "partition assigned", "committed", committed, "resume", resume, "redo", redo != nil, "warm_from", warmFrom)

	reader, err := w.deps.open(warmFrom)
	if err != nil {
		return err
	}
	defer reader.Close()

	// Fetching runs ahead of decoding, decoding runs ahead of writing: a
	// fetcher goroutine feeds msgs, this goroutine batches, a flusher
	// goroutine makes batches durable one at a time, in order.
	fetchCtx, stopFetch := context.WithCancel(gen)
	defer stopFetch()
	msgs := make(chan kafka.Message, 1024)
	fetchErr := make(chan error, 1)
	go func() {
		for {
			m, err := reader.FetchMessage(fetchCtx)
			if err != nil {
				fetchErr <- err
				return
			}
			select {
			case msgs <- m:
			case <-fetchCtx.Done():
				fetchErr <- fetchCtx.Err()
				return
			}
		}
	}()

	// Flushes outlive a shutdown request by up to drainTimeout, but stop
	// at once when the generation ends: commits would fail anyway.
	flushCtx, cancelFlush := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelFlush()
	stopAfter := context.AfterFunc(gen, cancelFlush)
	defer stopAfter()

	queue := make(chan *batch, 1)
	flushExit := make(chan struct{})
	var flushErr error
	go func() {
		defer close(flushExit)
		flushErr = w.flusher(flushCtx, queue)
	}()
	// finish stops the flusher after it has drained the queue and returns
	// the first real error.
	finish := func(err error) error {
		close(queue)
		<-flushExit
		if err == nil && flushErr != nil && !errors.Is(flushErr, context.Canceled) && gen.Err() == nil {
			err = flushErr
		}
		return err
	}
	hand := func(b *batch) error {
		select {
		case queue <- b:
			return nil
		case <-flushExit:
			return nil // finish reports the flusher's error
		case <-gen.Done():
			return nil
		}
	}

	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var cur *batch
	if redo != nil {
		cur = &batch{first: redo.First, redo: redo}
	}
	for {
		select {
		case m := <-msgs:
			if m.Offset < readFrom {
				w.warm(m)
				continue
			}
			if cur != nil && cur.redo != nil && m.Offset >= cur.redo.End {
				// The rewrite's last offsets are gone from the log
				// (compaction, retention): it still ends at the recorded end.
				cur.end = cur.redo.End
				if err := hand(cur); err != nil {
					return finish(err)
				}
				cur = nil
			}
			if cur == nil {
				cur = &batch{first: m.Offset}
			}
			if cur.started.IsZero() {
				cur.started = time.Now()
				timer.Reset(w.cfg.flushInterval)
			}
			w.add(cur, m)
			full := cur.messages() >= w.cfg.flushEvents
			if cur.redo != nil {
				full = m.Offset == cur.redo.End-1
			}
			if full {
				timer.Stop()
				if err := hand(cur); err != nil {
					return finish(err)
				}
				cur = nil
			}
		case <-timer.C:
			if cur != nil && cur.redo == nil && cur.messages() > 0 {
				if err := hand(cur); err != nil {
					return finish(err)
				}
				cur = nil
			}
		case err := <-fetchErr:
			if gen.Err() != nil || ctx.Err() != nil {
				return finish(nil)
			}
			return finish(fmt.Errorf("read %s/%d: %w", w.cfg.topic, w.cfg.partition, err))
		case <-ctx.Done():
			// Shutdown: make what is buffered durable, unless it is an
			// unfinished rewrite, which must keep its exact range.
			stopFetch()
			if cur != nil && cur.redo == nil && cur.messages() > 0 {
				if err := hand(cur); err != nil {
					return finish(err)
				}
			}
			drain := time.AfterFunc(w.cfg.drainTimeout, cancelFlush)
			defer drain.Stop()
			return finish(nil)
		case <-gen.Done():
			return finish(nil)
		case <-flushExit:
			return finish(nil)
		}
	}
}

// warm feeds a message before the resume point into the dedupe window.
func (w *worker) warm(m kafka.Message) {
	e, err := events.Decode(m.Value, decodeTime(m))
	if err != nil {
		return
	}
	w.win.Seen(e.GetEnvelope().GetEventId(), m.Offset)
}

// isReplay reports whether m was re-published from the event log.
func isReplay(m kafka.Message) bool {
	for _, h := range m.Headers {
		if h.Key == events.HeaderReplay {
			return true
		}
	}
	return false
}

// decodeTime is the clock events.Decode checks future event times against:
// the message timestamp, so that the decision is the same on every re-read.
func decodeTime(m kafka.Message) time.Time {
	if m.Time.IsZero() {
		return time.Now()
	}
	return m.Time
}

// add classifies one message into the batch.
func (w *worker) add(b *batch, m kafka.Message) {
	if b.messages() == 0 {
		b.firstRead = m.Offset
	}
	b.end = m.Offset + 1
	b.hwm = max(b.hwm, m.HighWaterMark)
	if isReplay(m) {
		b.replayed++
		return
	}
	at := decodeTime(m)
	e, err := events.Decode(m.Value, at)
	if err != nil {
		b.dead = append(b.dead, deadLetter{msg: m, reason: err.Error(), code: reasonCode(m.Value, at)})
		return
	}
	dup := w.win.Seen(e.GetEnvelope().GetEventId(), m.Offset)
	if b.redo != nil {
		// Repeat the first attempt's decisions, whatever the window says.
		dup = b.redo.isDuplicate(m.Offset)
	}
	if dup {
		b.dups = append(b.dups, m.Offset)
		return
	}
	b.rows = append(b.rows, eventlog.NewRow(e, m.Value, eventlog.Provenance{
		Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Key: m.Key, Time: m.Time,
	}))
}

// flusher makes queued batches durable in order until the queue closes or
// a batch cannot be made durable.
func (w *worker) flusher(ctx context.Context, queue <-chan *batch) error {
	for b := range queue {
		if err := w.flush(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

const parquetContentType = "application/vnd.apache.parquet"

type object struct {
	key  string
	body []byte
	rows int
}

// encode groups a batch's rows by event hour and encodes one object per
// hour. Keys depend only on the batch, so a rewrite hits the same keys.
func (w *worker) encode(b *batch) ([]object, error) {
	if len(b.rows) == 0 {
		return nil, nil
	}
	byHour := map[time.Time][]eventlog.Row{}
	var hours []time.Time
	first := eventlog.HourOf(b.rows[0].EventTime)
	single := true
	for i := range b.rows {
		if !eventlog.HourOf(b.rows[i].EventTime).Equal(first) {
			single = false
			break
		}
	}
	if single {
		byHour[first], hours = b.rows, []time.Time{first}
	} else {
		for _, r := range b.rows {
			h := eventlog.HourOf(r.EventTime)
			if _, ok := byHour[h]; !ok {
				hours = append(hours, h)
			}
			byHour[h] = append(byHour[h], r)
		}
		slices.SortFunc(hours, time.Time.Compare)
	}
	for len(w.encs) < len(hours) {
		w.encs = append(w.encs, &eventlog.Encoder{})
	}
	out := make([]object, len(hours))
	for i, h := range hours {
		rows := byHour[h]
		body, err := w.encs[i].Encode(rows)
		if err != nil {
			return nil, fmt.Errorf("encode %s/%d@%d hour %s: %w", w.cfg.topic, w.cfg.partition, b.first, h.Format(time.RFC3339), err)
		}
		ref := eventlog.Ref{Topic: w.cfg.topic, Partition: w.cfg.partition, FirstOffset: b.first, Hour: h}
		out[i] = object{key: ref.Key(), body: body, rows: len(rows)}
	}
	return out, nil
}

// flush makes one batch durable:
//
//  1. encode the objects (keys are a function of the batch);
//  2. compare-and-swap the partition state to record the batch as pending
//     (range, keys, dropped duplicates) — this also fences older writers;
//  3. write the objects and the dead letters, and delete keys a rewrite
//     no longer produces;
//  4. commit the end offset.
//
// A crash anywhere leaves the state naming the only batch that can have
// partial output, and the next owner rewrites exactly that batch.
func (w *worker) flush(ctx context.Context, b *batch) error {
	start := time.Now()
	objs, err := w.encode(b)
	if err != nil {
		return err
	}
	p := &pending{First: b.first, End: b.end, Duplicates: offsetRuns(b.dups)}
	for _, o := range objs {
		p.Keys = append(p.Keys, o.key)
	}
	// A rewrite that could not re-read its whole range (retention removed
	// its start) must not replace the first attempt's objects, which hold
	// rows that exist nowhere else any more: it only fills in missing keys,
	// and keeps the old keys in the state.
	partial := b.redo != nil && (b.messages() == 0 || b.firstRead != b.redo.First)
	putOpts := objstore.PutOptions{ContentType: parquetContentType}
	if partial {
		putOpts.IfNoneMatch = "*"
		for _, k := range b.redo.Keys {
			if !slices.Contains(p.Keys, k) {
				p.Keys = append(p.Keys, k)
			}
		}
		w.log.Error("rewrite of a pending batch could not re-read its whole range; keeping the first attempt's objects",
			"first", b.redo.First, "end", b.redo.End, "first_read", b.firstRead, "messages", b.messages())
	}
	st := &partitionState{
		Version: stateVersion, Topic: w.cfg.topic, Partition: w.cfg.partition,
		Group: w.cfg.group, Member: w.cfg.member, Generation: w.cfg.generation,
		UpdatedAt: start.UTC(), Pending: p,
	}
	if err := w.retry(ctx, "state", func() error { return w.state.save(ctx, st) }); err != nil {
		return err
	}

	var bytes int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, o := range objs {
		bytes += int64(len(o.body))
		g.Go(func() error {
			return w.retry(gctx, "object", func() error {
				_, err := w.deps.store.Put(gctx, o.key, o.body, putOpts)
				if partial && errors.Is(err, objstore.ErrPreconditionFailed) {
					return nil
				}
				return err
			})
		})
	}
	if b.redo != nil && !partial {
		for _, k := range b.redo.Keys {
			if !slices.Contains(p.Keys, k) {
				w.log.Warn("rewrite no longer produces an object of the first attempt; deleting it", "key", k)
				g.Go(func() error {
					return w.retry(gctx, "delete", func() error { return w.deps.store.Delete(gctx, k) })
				})
			}
		}
	}
	if len(b.dead) > 0 {
		now := time.Now()
		dl := make([]kafka.Message, len(b.dead))
		for i, d := range b.dead {
			dl[i] = d.message(w.cfg.group, now)
		}
		g.Go(func() error {
			return w.retry(gctx, "dead_letter", func() error { return w.deps.deadLetter.WriteMessages(gctx, dl...) })
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if err := w.retry(ctx, "commit", func() error { return w.deps.commit(ctx, b.end) }); err != nil {
		return err
	}
	durable := time.Now()
	w.record(b, objs, bytes, start, durable)
	return nil
}

// record updates metrics and counters and tells the observer.
func (w *worker) record(b *batch, objs []object, bytes int64, start, durable time.Time) {
	topic := w.cfg.topic
	elapsed := durable.Sub(start)
	archivedTotal.WithLabelValues(topic).Add(float64(len(b.rows)))
	if len(b.dups) > 0 {
		duplicatesTotal.WithLabelValues(topic).Add(float64(len(b.dups)))
	}
	if b.replayed > 0 {
		replayedTotal.WithLabelValues(topic).Add(float64(b.replayed))
	}
	for _, d := range b.dead {
		deadLetteredTotal.WithLabelValues(topic, d.code).Inc()
	}
	objectsTotal.WithLabelValues(topic).Add(float64(len(objs)))
	objectBytesTotal.WithLabelValues(topic).Add(float64(bytes))
	flushSeconds.WithLabelValues(topic).Observe(elapsed.Seconds())
	if b.redo != nil {
		batchesRedoneTotal.WithLabelValues(topic).Inc()
	}
	if b.hwm > 0 {
		w.lagG(float64(max(b.hwm-b.end, 0)))
	}
	lat := durableLatency.WithLabelValues(topic)
	var lats []time.Duration
	var producers []string
	if w.deps.observe != nil {
		lats = make([]time.Duration, len(b.rows))
		producers = make([]string, len(b.rows))
	}
	for i := range b.rows {
		d := durable.Sub(b.rows[i].EventTime)
		lat.Observe(d.Seconds())
		if lats != nil {
			lats[i] = d
			producers[i] = b.rows[i].Producer
		}
	}
	if c := w.deps.counters; c != nil {
		c.archived.Add(int64(len(b.rows)))
		c.duplicates.Add(int64(len(b.dups)))
		c.replayed.Add(int64(b.replayed))
		c.deadLettered.Add(int64(len(b.dead)))
		c.objects.Add(int64(len(objs)))
		c.flushes.Add(1)
		if b.redo != nil {
			c.redone.Add(1)
		}
	}
	if w.deps.observe != nil {
		w.deps.observe(FlushInfo{
			Topic: topic, Partition: w.cfg.partition, FirstOffset: b.first, EndOffset: b.end,
			Rows: len(b.rows), Duplicates: len(b.dups), Replayed: b.replayed, DeadLettered: len(b.dead),
			Objects: len(objs), Bytes: bytes, Redo: b.redo != nil,
			Duration: elapsed, Durable: durable, Latencies: lats, Producers: producers,
		})
	}
}

// retry runs op until it succeeds, ctx ends or it is fenced, backing off
// from 100ms to 5s. Transient S3 and Kafka errors must not lose the batch,
// and nothing later may be committed before it.
func (w *worker) retry(ctx context.Context, step string, op func() error) error {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := op()
		if err == nil {
			return nil
		}
		if errors.Is(err, errFenced) || errors.Is(err, errGenerationEnded) || errors.Is(err, errCorruptState) || ctx.Err() != nil {
			return err
		}
		flushErrorsTotal.WithLabelValues(w.cfg.topic, step).Inc()
		w.log.Warn("archiver step failed; retrying", "step", step, "attempt", attempt, "backoff", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w (last error: %w)", step, ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// errGenerationEnded marks a commit refused because the group rebalanced:
// retrying cannot help, the next owner takes over.
var errGenerationEnded = errors.New("consumer group generation ended")

// counters back Archiver.Stats.
type counters struct {
	archived, duplicates, replayed, deadLettered, objects, flushes, redone atomic.Int64
}
