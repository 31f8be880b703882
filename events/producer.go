package events

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/plain"
	"google.golang.org/protobuf/proto"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
)

var (
	producedTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_events_produced_total",
		Help: "Events acknowledged by the brokers, by topic.",
	}, []string{"topic"})
	produceErrors = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_events_produce_errors_total",
		Help: "Publish calls that failed, by topic.",
	}, []string{"topic"})
)

// ProducerOptions tunes a Producer. Zero values mean the documented defaults.
type ProducerOptions struct {
	// BatchSize is the most messages per partition request; default 1000.
	BatchSize int
	// BatchTimeout is how long a partial batch waits for more messages;
	// default 2ms. kafka-go's own default of 1s would make every small
	// synchronous publish take a second.
	BatchTimeout time.Duration
	// Compression is none (default), gzip, snappy, lz4 or zstd.
	Compression string
}

// Transport returns the kafka-go transport (TLS, SASL) for a configuration.
func Transport(cfg config.Kafka) *kafka.Transport {
	t := &kafka.Transport{ClientID: cfg.ClientID, DialTimeout: 5 * time.Second}
	if cfg.TLS {
		t.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if cfg.SASLUsername != "" {
		t.SASL = plain.Mechanism{Username: cfg.SASLUsername, Password: cfg.SASLPassword}
	}
	return t
}

// Dialer returns the kafka-go dialer (TLS, SASL) used by readers.
func Dialer(cfg config.Kafka) *kafka.Dialer {
	d := &kafka.Dialer{ClientID: cfg.ClientID, Timeout: 5 * time.Second, DualStack: true}
	if cfg.TLS {
		d.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if cfg.SASLUsername != "" {
		d.SASLMechanism = plain.Mechanism{Username: cfg.SASLUsername, Password: cfg.SASLPassword}
	}
	return d
}

// Producer publishes events to their topics, keyed as Topics documents, and
// returns only once every broker in the in-sync set has acknowledged them.
// It is safe for concurrent use.
type Producer struct {
	w      *kafka.Writer
	arenas sync.Pool // *encodeArena, see Publish
}

// NewProducer returns a producer for the brokers in cfg.
func NewProducer(cfg config.Kafka, opts ProducerOptions) (*Producer, error) {
	if opts.BatchSize == 0 {
		opts.BatchSize = 1000
	}
	if opts.BatchTimeout == 0 {
		opts.BatchTimeout = 2 * time.Millisecond
	}
	w := &kafka.Writer{
		Addr: kafka.TCP(cfg.Brokers...),
		// Murmur2 matches the Java client's default partitioner, so other
		// producers of the same keys land on the same partitions.
		Balancer:     &kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll,
		BatchSize:    opts.BatchSize,
		BatchBytes:   16 << 20,
		BatchTimeout: opts.BatchTimeout,
		WriteTimeout: 10 * time.Second,
		Transport:    Transport(cfg),
	}
	switch opts.Compression {
	case "", "none":
	case "gzip":
		w.Compression = kafka.Gzip
	case "snappy":
		w.Compression = kafka.Snappy
	case "lz4":
		w.Compression = kafka.Lz4
	case "zstd":
		w.Compression = kafka.Zstd
	default:
		return nil, fmt.Errorf("compression %q is not one of none, gzip, snappy, lz4, zstd", opts.Compression)
	}
	return &Producer{w: w}, nil
}

// Message encodes an event as a Kafka message for its topic.
func Message(e *adaptrecv1.Event) (kafka.Message, error) {
	topic, err := TopicFor(e.GetEnvelope().GetType())
	if err != nil {
		return kafka.Message{}, err
	}
	value, err := proto.Marshal(e)
	if err != nil {
		return kafka.Message{}, fmt.Errorf("encode event %s: %w", e.GetEnvelope().GetEventId(), err)
	}
	return kafka.Message{Topic: topic, Key: Key(e), Value: value}, nil
}

// Publish writes events and waits for the brokers' acknowledgement. Events are
// not validated here; callers accepting outside input validate first.
//
// The events are encoded into an arena that the next Publish reuses, but
// only after a write every broker acknowledged: a write that failed or was
// cancelled may leave batches queued in the writer that still read it, so
// that arena is left to them and the garbage collector.
func (p *Producer) Publish(ctx context.Context, evs ...*adaptrecv1.Event) error {
	a, _ := p.arenas.Get().(*encodeArena)
	if a == nil {
		a = &encodeArena{}
	}
	msgs, err := a.encode(evs)
	if err != nil {
		p.arenas.Put(a) // nothing was written from it
		return err
	}
	if err := p.WriteMessages(ctx, msgs...); err != nil {
		return err
	}
	a.release()
	p.arenas.Put(a)
	return nil
}

// encodeArena holds the encoded messages of one Publish: their keys and
// values are slices of buf.
type encodeArena struct {
	msgs []kafka.Message
	buf  []byte
}

// encode appends the events' messages to the arena. buf is sized once for
// all of them, so the values appended first stay where they are.
func (a *encodeArena) encode(evs []*adaptrecv1.Event) ([]kafka.Message, error) {
	size := 0
	for _, e := range evs {
		k, _ := keyOf(e)
		size += proto.Size(e) + len(k)
	}
	if cap(a.buf) < size {
		a.buf = make([]byte, 0, size)
	}
	a.buf, a.msgs = a.buf[:0], a.msgs[:0]
	for _, e := range evs {
		topic, err := TopicFor(e.GetEnvelope().GetType())
		if err != nil {
			return nil, err
		}
		var key []byte
		if k, ok := keyOf(e); ok {
			start := len(a.buf)
			a.buf = append(a.buf, k...)
			key = a.buf[start:len(a.buf):len(a.buf)]
		}
		start := len(a.buf)
		// The sizing loop above cached every message's size.
		if a.buf, err = (proto.MarshalOptions{UseCachedSize: true}).MarshalAppend(a.buf, e); err != nil {
			return nil, fmt.Errorf("encode event %s: %w", e.GetEnvelope().GetEventId(), err)
		}
		a.msgs = append(a.msgs, kafka.Message{Topic: topic, Key: key, Value: a.buf[start:len(a.buf):len(a.buf)]})
	}
	return a.msgs, nil
}

// release drops the arena's references to the written messages; arenas
// grown by a burst are not kept, so the pool holds ordinary ones.
func (a *encodeArena) release() {
	clear(a.msgs)
	if cap(a.buf) > maxArenaBytes {
		a.buf = nil
	}
	if cap(a.msgs) > maxArenaMessages {
		a.msgs = nil
	}
}

const (
	maxArenaBytes    = 4 << 20
	maxArenaMessages = 4096
)

// WriteMessages writes already encoded messages (each with its Topic set).
func (p *Producer) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if err := p.w.WriteMessages(ctx, msgs...); err != nil {
		var werrs kafka.WriteErrors
		if errors.As(err, &werrs) {
			for i, e := range werrs {
				if e != nil {
					produceErrors.WithLabelValues(msgs[i].Topic).Inc()
				} else {
					producedTotal.WithLabelValues(msgs[i].Topic).Inc()
				}
			}
		} else {
			produceErrors.WithLabelValues(msgs[0].Topic).Inc()
		}
		return fmt.Errorf("publish %d events: %w", len(msgs), err)
	}
	topic, n := msgs[0].Topic, 0
	for _, m := range msgs {
		if m.Topic != topic {
			producedTotal.WithLabelValues(topic).Add(float64(n))
			topic, n = m.Topic, 0
		}
		n++
	}
	producedTotal.WithLabelValues(topic).Add(float64(n))
	return nil
}

// Close flushes pending writes and releases connections.
func (p *Producer) Close() error { return p.w.Close() }

// EnsureTopics creates every topic in Topics that does not exist yet, with the
// configured partition count and replication factor.
func EnsureTopics(ctx context.Context, cfg config.Kafka) error {
	names := make([]string, 0, len(Topics))
	for _, t := range Topics {
		names = append(names, t.Name)
	}
	return CreateTopics(ctx, cfg, cfg.Partitions, names...)
}

// CreateTopics creates the named topics with the given partition count,
// leaving existing ones untouched.
func CreateTopics(ctx context.Context, cfg config.Kafka, partitions int, names ...string) error {
	client := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Transport: Transport(cfg), Timeout: 10 * time.Second}
	req := &kafka.CreateTopicsRequest{}
	for _, n := range names {
		req.Topics = append(req.Topics, kafka.TopicConfig{
			Topic:             n,
			NumPartitions:     partitions,
			ReplicationFactor: cfg.ReplicationFactor,
		})
	}
	resp, err := client.CreateTopics(ctx, req)
	if err != nil {
		return fmt.Errorf("create topics on %v: %w", cfg.Brokers, err)
	}
	var errs []error
	for name, terr := range resp.Errors {
		if terr != nil && !errors.Is(terr, kafka.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("create topic %s: %w", name, terr))
		}
	}
	return errors.Join(errs...)
}
