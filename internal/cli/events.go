package cli

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
)

func init() { register(newEventsCmd) }

func newEventsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Inspect and replay the event log (Kafka topics and the Parquet archive on S3)",
	}
	cmd.AddCommand(newEventsReplayCmd(), newEventsLsCmd(), newEventsTailCmd())
	return cmd
}

// eventsParseTime accepts RFC 3339, a UTC date, "now", or a duration before
// now such as -2h, -90m or -7d.
func eventsParseTime(flag, v string, now time.Time) (time.Time, error) {
	bad := fmt.Errorf("--%s %q is not an RFC 3339 time (2026-11-22T10:00:00Z), a date (2026-11-22), now, or a time before now like -2h, -30m or -7d", flag, v)
	switch {
	case v == "":
		return time.Time{}, fmt.Errorf("--%s is required", flag)
	case v == "now":
		return now.UTC(), nil
	case strings.HasPrefix(v, "-"):
		if days, ok := strings.CutSuffix(v[1:], "d"); ok {
			n, err := strconv.ParseFloat(days, 64)
			if err != nil || n < 0 {
				return time.Time{}, bad
			}
			return now.Add(-time.Duration(n * 24 * float64(time.Hour))).UTC(), nil
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return time.Time{}, bad
		}
		return now.Add(d).UTC(), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, bad
}

// eventsRange parses --from and --to and checks from < to.
func eventsRange(from, to string, now time.Time) (time.Time, time.Time, error) {
	f, ferr := eventsParseTime("from", from, now)
	t, terr := eventsParseTime("to", to, now)
	if err := errors.Join(ferr, terr); err != nil {
		return time.Time{}, time.Time{}, err
	}
	if !f.Before(t) {
		return time.Time{}, time.Time{}, fmt.Errorf("--from %s is not before --to %s: the range [from, to) is empty",
			f.Format(time.RFC3339), t.Format(time.RFC3339))
	}
	return f, t, nil
}

// eventsTopics checks --topic values against the event topics; none means
// all of them.
func eventsTopics(topics []string) ([]string, error) {
	if len(topics) == 0 {
		return events.EventTopics(), nil
	}
	known := events.EventTopics()
	for _, t := range topics {
		found := false
		for _, k := range known {
			found = found || k == t
		}
		if !found {
			return nil, fmt.Errorf("--topic %q is not an archived event topic (one of %s)", t, strings.Join(known, ", "))
		}
	}
	return topics, nil
}

type eventsReplayOptions struct {
	from, to string
	topics   []string
	toTopic  string
	dryRun   bool
	batch    int
	now      time.Time
}

func newEventsReplayCmd() *cobra.Command {
	var o eventsReplayOptions
	cmd := &cobra.Command{
		Use:   "replay --from TIME --to TIME",
		Short: "Re-publish archived events with event time in [from, to), in event-time order per topic",
		Long: `replay reads the Parquet archive written by the archiver and publishes every
event whose event time is in [from, to) again, with its original key and exact
bytes, to its original topic or to --to-topic. Each topic is replayed in event-time
order. Times are RFC 3339, a UTC date, now, or relative to now (-2h, -7d).

Every replayed message carries the header adaptrec-replay=<run id>: consumers that
rebuild state process it (deduping on event id as always), and the archiver skips
it, so a replay never adds rows to the archive it came from.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			o.now = time.Now()
			return eventsReplay(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), cfg, o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.from, "from", "", "start of the event-time range, inclusive (required)")
	fs.StringVar(&o.to, "to", "now", "end of the event-time range, exclusive")
	fs.StringSliceVar(&o.topics, "topic", nil, "topic to replay (repeatable); default: every event topic")
	fs.StringVar(&o.toTopic, "to-topic", "", "publish everything to this topic instead of the original ones")
	fs.BoolVar(&o.dryRun, "dry-run", false, "read and count, publish nothing")
	fs.IntVar(&o.batch, "batch", 2000, "events per acknowledged publish")
	return cmd
}

// eventsPublisher is what replay writes to; *events.Producer implements it.
type eventsPublisher interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

func eventsReplay(ctx context.Context, stdout, stderr io.Writer, cfg config.Config, o eventsReplayOptions) error {
	from, to, err := eventsRange(o.from, o.to, o.now)
	if err != nil {
		return err
	}
	topics, err := eventsTopics(o.topics)
	if err != nil {
		return err
	}
	if o.batch < 1 {
		return fmt.Errorf("--batch must be >= 1, got %d", o.batch)
	}
	store, err := objstore.New(ctx, cfg.S3)
	if err != nil {
		return err
	}
	var pub eventsPublisher
	if !o.dryRun {
		if o.toTopic != "" {
			if err := events.CreateTopics(ctx, cfg.Kafka, cfg.Kafka.Partitions, o.toTopic); err != nil {
				return err
			}
		}
		p, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{BatchSize: o.batch})
		if err != nil {
			return err
		}
		defer p.Close()
		pub = p
	}
	start := time.Now()
	replayID := events.NewID()
	fmt.Fprintf(stderr, "replay run %s (header %s)\n", replayID, events.HeaderReplay)
	var total int64
	for _, topic := range topics {
		n, err := eventsReplayTopic(ctx, stderr, store, pub, topic, from, to, o, replayID)
		total += n
		if err != nil {
			return fmt.Errorf("replay %s after %d events: %w", topic, n, err)
		}
		dest := topic
		if o.toTopic != "" {
			dest = o.toTopic
		}
		verb := "replayed"
		if o.dryRun {
			verb = "would replay (dry run)"
		}
		fmt.Fprintf(stdout, "%s %d events of %s to %s\n", verb, n, topic, dest)
	}
	el := time.Since(start)
	fmt.Fprintf(stdout, "total %d events with event time in [%s, %s) in %s (%.0f events/s)\n",
		total, from.Format(time.RFC3339), to.Format(time.RFC3339), el.Round(time.Millisecond), float64(total)/max(el.Seconds(), 1e-9))
	return nil
}

func eventsReplayTopic(ctx context.Context, stderr io.Writer, store *objstore.Store, pub eventsPublisher,
	topic string, from, to time.Time, o eventsReplayOptions, replayID string) (int64, error) {
	var n int64
	replayHeader := []kafka.Header{{Key: events.HeaderReplay, Value: []byte(replayID)}}
	batch := make([]kafka.Message, 0, o.batch)
	flush := func() error {
		if len(batch) == 0 || pub == nil {
			batch = batch[:0]
			return nil
		}
		if err := pub.WriteMessages(ctx, batch...); err != nil {
			return err
		}
		batch = batch[:0]
		return nil
	}
	start, last := time.Now(), time.Now()
	span := to.Sub(from).Seconds()
	err := eventlog.ScanOrdered(ctx, store, topic, from, to, func(r *eventlog.Row) error {
		dest := topic
		if o.toTopic != "" {
			dest = o.toTopic
		}
		// The row's slices are reused after the callback: copy them.
		batch = append(batch, kafka.Message{
			Topic:   dest,
			Key:     append([]byte(nil), r.KafkaKey...),
			Value:   append([]byte(nil), r.Payload...),
			Headers: replayHeader,
		})
		n++
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return err
			}
		}
		if now := time.Now(); now.Sub(last) >= time.Second {
			last = now
			fmt.Fprintf(stderr, "replay %s: %d events, %.0f events/s, at event time %s (%.1f%% of the range)\n",
				topic, n, float64(n)/now.Sub(start).Seconds(), r.EventTime.Format(time.RFC3339),
				100*r.EventTime.Sub(from).Seconds()/span)
		}
		return nil
	})
	if err != nil {
		return n, err
	}
	return n, flush()
}

func newEventsLsCmd() *cobra.Command {
	var from, to string
	var topics []string
	cmd := &cobra.Command{
		Use:   "ls --from TIME --to TIME",
		Short: "List archived Parquet objects whose hour overlaps [from, to), with row counts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			return eventsLs(cmd.Context(), cmd.OutOrStdout(), cfg, from, to, topics, time.Now())
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&from, "from", "-24h", "start of the event-time range, inclusive")
	fs.StringVar(&to, "to", "now", "end of the event-time range, exclusive")
	fs.StringSliceVar(&topics, "topic", nil, "topic to list (repeatable); default: every event topic")
	return cmd
}

func eventsLs(ctx context.Context, stdout io.Writer, cfg config.Config, fromS, toS string, topicFlags []string, now time.Time) error {
	from, to, err := eventsRange(fromS, toS, now)
	if err != nil {
		return err
	}
	topics, err := eventsTopics(topicFlags)
	if err != nil {
		return err
	}
	store, err := objstore.New(ctx, cfg.S3)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "OBJECT\tROWS\tBYTES\tFIRST EVENT\tLAST EVENT")
	var objects, rows, bytes int64
	for _, topic := range topics {
		objs, err := eventlog.ListObjects(ctx, store, topic, from, to)
		if err != nil {
			return err
		}
		stats, err := eventlog.StatAll(ctx, store, objs, 8)
		if err != nil {
			return err
		}
		for i, o := range objs {
			s := stats[i]
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", store.URI(o.Key), s.Rows, o.Size,
				s.MinTime.Format(time.RFC3339Nano), s.MaxTime.Format(time.RFC3339Nano))
			objects++
			rows += s.Rows
			bytes += o.Size
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d objects, %d rows, %d bytes in hours overlapping [%s, %s)\n",
		objects, rows, bytes, from.Format(time.RFC3339), to.Format(time.RFC3339))
	return nil
}

type eventsTailOptions struct {
	topic         string
	fromBeginning bool
	limit         int
}

func newEventsTailCmd() *cobra.Command {
	var o eventsTailOptions
	cmd := &cobra.Command{
		Use:   "tail --topic TOPIC",
		Short: "Print a topic's messages as JSON lines (protojson events) as they arrive",
		Long: `tail reads every partition of a topic, outside any consumer group, and prints one
JSON object per message: topic, partition, offset, key and the event as protojson,
or the decode error and the raw value (base64) for messages that are not valid
events, such as those on the dead-letter topic, with their headers.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			return eventsTail(cmd.Context(), cmd.OutOrStdout(), cfg, o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.topic, "topic", "", "topic to read (required)")
	fs.BoolVar(&o.fromBeginning, "from-beginning", false, "start at the oldest message instead of the end")
	fs.IntVarP(&o.limit, "max", "n", 0, "stop after this many messages (0: until interrupted)")
	return cmd
}

// eventsTailLine is one line of tail output.
type eventsTailLine struct {
	Topic     string            `json:"topic"`
	Partition int               `json:"partition"`
	Offset    int64             `json:"offset"`
	Time      time.Time         `json:"time"`
	Key       string            `json:"key"`
	Headers   map[string]string `json:"headers,omitempty"`
	Event     json.RawMessage   `json:"event,omitempty"`
	Error     string            `json:"error,omitempty"`
	Value     string            `json:"value_base64,omitempty"`
}

func eventsTail(ctx context.Context, stdout io.Writer, cfg config.Config, o eventsTailOptions) error {
	if o.topic == "" {
		return errors.New("--topic is required")
	}
	if o.limit < 0 {
		return fmt.Errorf("--max must be >= 0, got %d", o.limit)
	}
	dialer := events.Dialer(cfg.Kafka)
	parts, err := dialer.LookupPartitions(ctx, "tcp", cfg.Kafka.Brokers[0], o.topic)
	if err != nil {
		return fmt.Errorf("look up partitions of %s: %w", o.topic, err)
	}
	if len(parts) == 0 {
		return fmt.Errorf("topic %s does not exist", o.topic)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := kafka.LastOffset
	if o.fromBeginning {
		start = kafka.FirstOffset
	}
	msgs := make(chan kafka.Message)
	errc := make(chan error, len(parts))
	for _, p := range parts {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: cfg.Kafka.Brokers, Topic: o.topic, Partition: p.ID, Dialer: dialer,
			MaxWait: 250 * time.Millisecond, MaxBytes: 8 << 20,
		})
		if err := r.SetOffset(start); err != nil {
			r.Close()
			return err
		}
		go func() {
			defer r.Close()
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					errc <- err
					return
				}
				select {
				case msgs <- m:
				case <-ctx.Done():
					errc <- ctx.Err()
					return
				}
			}
		}()
	}
	enc := json.NewEncoder(stdout)
	for n := 0; o.limit == 0 || n < o.limit; n++ {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read %s: %w", o.topic, err)
		case m := <-msgs:
			if err := enc.Encode(eventsTailRecord(m)); err != nil {
				return err
			}
		}
	}
	return nil
}

func eventsTailRecord(m kafka.Message) eventsTailLine {
	line := eventsTailLine{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset, Time: m.Time.UTC(), Key: string(m.Key)}
	if len(m.Headers) > 0 {
		line.Headers = make(map[string]string, len(m.Headers))
		for _, h := range m.Headers {
			line.Headers[h.Key] = string(h.Value)
		}
	}
	e, err := events.Decode(m.Value, time.Now())
	if err != nil {
		line.Error = err.Error()
		line.Value = base64.StdEncoding.EncodeToString(m.Value)
		return line
	}
	b, err := protojson.Marshal(e)
	if err != nil {
		line.Error = fmt.Sprintf("encode as JSON: %v", err)
		return line
	}
	line.Event = b
	return line
}
