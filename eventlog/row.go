package eventlog

import (
	"bytes"
	"cmp"
	"fmt"
	"sort"
	"time"

	"github.com/parquet-go/parquet-go"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

// Row is one archived event. The envelope columns and the commonly queried
// payload fields are flattened for SQL engines; Payload keeps the exact
// protobuf bytes of the Kafka message so replay and reprocessing are
// lossless. Payload fields an event type lacks are empty (null for Value and
// Position). Enum columns hold the protobuf enum names ("ACTION_CLICK"), empty
// for the zero value.
type Row struct {
	EventID       string    `parquet:"event_id"`
	EventType     string    `parquet:"event_type,dict"`
	SchemaVersion int32     `parquet:"schema_version"`
	EventTime     time.Time `parquet:"event_time,timestamp(millisecond)"`
	Producer      string    `parquet:"producer,dict"`

	UserID        string   `parquet:"user_id"`
	ItemID        string   `parquet:"item_id"`
	Action        string   `parquet:"action,dict"`
	Value         *float64 `parquet:"value,optional"`
	SessionID     string   `parquet:"session_id"`
	Surface       string   `parquet:"surface,dict"`
	Device        string   `parquet:"device,dict"`
	Position      *int32   `parquet:"position,optional"`
	RequestID     string   `parquet:"request_id"`
	ModelVersion  string   `parquet:"model_version,dict"`
	ExperimentArm string   `parquet:"experiment_arm,dict"`
	// TimeZone is the client's IANA zone of an interaction, when known.
	TimeZone string `parquet:"time_zone,dict"`

	// Provenance: where the archiver read the event.
	KafkaTopic     string    `parquet:"kafka_topic,dict"`
	KafkaPartition int32     `parquet:"kafka_partition"`
	KafkaOffset    int64     `parquet:"kafka_offset"`
	KafkaKey       []byte    `parquet:"kafka_key"`
	KafkaTime      time.Time `parquet:"kafka_time,timestamp(millisecond)"`

	// Payload is the Kafka message value, byte for byte.
	Payload []byte `parquet:"payload"`
}

// Column names used by readers.
const (
	ColumnEventTime = "event_time"
	ColumnPayload   = "payload"
	ColumnProducer  = "producer"
)

// Provenance locates a Kafka message.
type Provenance struct {
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	// Time is the message timestamp (producer create time or broker append
	// time).
	Time time.Time
}

func enumName[E interface {
	~int32
	String() string
}](e E) string {
	if e == 0 {
		return ""
	}
	return e.String()
}

// NewRow flattens a decoded event. payload must be the bytes e was decoded
// from; the row keeps references to e's fields, payload and p.Key without
// copying.
func NewRow(e *adaptrecv1.Event, payload []byte, p Provenance) Row {
	env := e.GetEnvelope()
	r := Row{
		EventID:        env.GetEventId(),
		EventType:      enumName(env.GetType()),
		SchemaVersion:  int32(env.GetSchemaVersion()),
		EventTime:      env.GetEventTime().AsTime(),
		Producer:       env.GetProducer(),
		KafkaTopic:     p.Topic,
		KafkaPartition: int32(p.Partition),
		KafkaOffset:    p.Offset,
		KafkaKey:       p.Key,
		KafkaTime:      p.Time,
		Payload:        payload,
	}
	switch pl := e.GetPayload().(type) {
	case *adaptrecv1.Event_Interaction:
		in := pl.Interaction
		r.UserID, r.ItemID = in.GetUserId(), in.GetItemId()
		r.Action = enumName(in.GetAction())
		r.Value = &in.Value
		r.SessionID, r.Surface = in.GetSessionId(), in.GetSurface()
		r.Device = enumName(in.GetDevice())
		r.Position = &in.Position
		r.RequestID, r.ModelVersion, r.ExperimentArm = in.GetRequestId(), in.GetModelVersion(), in.GetExperimentArm()
		r.TimeZone = in.GetTimeZone()
	case *adaptrecv1.Event_Prediction:
		pr := pl.Prediction
		r.UserID, r.RequestID = pr.GetUserId(), pr.GetRequestId()
		r.ModelVersion, r.ExperimentArm = pr.GetModelVersion(), pr.GetExperimentArm()
		r.SessionID, r.Surface = pr.GetSessionId(), pr.GetSurface()
		r.Device = enumName(pr.GetDevice())
	case *adaptrecv1.Event_Feedback:
		f := pl.Feedback
		r.UserID, r.ItemID, r.RequestID = f.GetUserId(), f.GetItemId(), f.GetRequestId()
		r.ModelVersion, r.ExperimentArm = f.GetModelVersion(), f.GetExperimentArm()
	case *adaptrecv1.Event_ModelAccuracy:
		r.ModelVersion, r.ExperimentArm = pl.ModelAccuracy.GetModelVersion(), pl.ModelAccuracy.GetExperimentArm()
	case *adaptrecv1.Event_ModelLifecycle:
		r.ModelVersion = pl.ModelLifecycle.GetModelVersion()
	}
	return r
}

// Compare orders rows by event time, then partition and offset, the order
// rows have inside an object; ties are impossible within one topic.
func Compare(a, b *Row) int {
	if c := a.EventTime.Compare(b.EventTime); c != 0 {
		return c
	}
	if c := cmp.Compare(a.KafkaPartition, b.KafkaPartition); c != 0 {
		return c
	}
	return cmp.Compare(a.KafkaOffset, b.KafkaOffset)
}

// DefaultRowGroupRows is the row group size Encoder uses. Rows are sorted by
// event time, so each row group covers a narrow time slice and a reader
// filtering on event_time skips the others by their min/max statistics.
const DefaultRowGroupRows = 8192

// Encoder writes rows as Parquet objects, reusing its buffers between
// objects. It is not safe for concurrent use.
type Encoder struct {
	// RowGroupRows caps rows per row group; DefaultRowGroupRows when zero.
	RowGroupRows int
	buf          bytes.Buffer
	w            *parquet.GenericWriter[Row]
}

// Encode sorts rows with Compare (in place) and returns them encoded as one
// Parquet object. The bytes are valid until the next call.
func (e *Encoder) Encode(rows []Row) ([]byte, error) {
	sort.Sort(byTime(rows))
	e.buf.Reset()
	if e.w == nil {
		n := e.RowGroupRows
		if n <= 0 {
			n = DefaultRowGroupRows
		}
		e.w = parquet.NewGenericWriter[Row](&e.buf,
			parquet.Compression(&parquet.Snappy),
			parquet.MaxRowsPerRowGroup(int64(n)),
			parquet.SortingWriterConfig(parquet.SortingColumns(parquet.Ascending(ColumnEventTime))),
			// Bounds of opaque bytes help no query and bloat the footer.
			parquet.SkipPageBounds(ColumnPayload),
			parquet.SkipPageBounds("kafka_key"),
			parquet.CreatedBy("adaptrec", "eventlog", "v1"),
		)
	} else {
		e.w.Reset(&e.buf)
	}
	if _, err := e.w.Write(rows); err != nil {
		return nil, fmt.Errorf("encode %d rows: %w", len(rows), err)
	}
	if err := e.w.Close(); err != nil {
		return nil, fmt.Errorf("finish parquet object: %w", err)
	}
	return e.buf.Bytes(), nil
}

// byTime sorts rows in place without copying them for every comparison.
type byTime []Row

func (r byTime) Len() int           { return len(r) }
func (r byTime) Less(i, j int) bool { return Compare(&r[i], &r[j]) < 0 }
func (r byTime) Swap(i, j int)      { r[i], r[j] = r[j], r[i] }
