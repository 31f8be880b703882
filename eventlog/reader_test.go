package eventlog

import (
	"bytes"
	"context"
	"fmt"
	"iter"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/objstore"
)

// memSource is an in-memory Source that records what was asked of it.
type memSource struct {
	mu       sync.Mutex
	objects  map[string][]byte
	listed   []string
	gets     int
	getRange int
}

func newMemSource() *memSource { return &memSource{objects: map[string][]byte{}} }

func (m *memSource) put(key string, b []byte) { m.objects[key] = bytes.Clone(b) }

func (m *memSource) List(_ context.Context, prefix string, _ objstore.ListOptions) iter.Seq2[objstore.ObjectInfo, error] {
	m.mu.Lock()
	m.listed = append(m.listed, prefix)
	var keys []string
	for k := range m.objects {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	m.mu.Unlock()
	sort.Strings(keys)
	return func(yield func(objstore.ObjectInfo, error) bool) {
		for _, k := range keys {
			if !yield(objstore.ObjectInfo{Key: k, Size: int64(len(m.objects[k]))}, nil) {
				return
			}
		}
	}
}

func (m *memSource) Get(_ context.Context, key string) ([]byte, objstore.ObjectInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gets++
	b, ok := m.objects[key]
	if !ok {
		return nil, objstore.ObjectInfo{}, fmt.Errorf("get %s: %w", key, objstore.ErrNotFound)
	}
	return b, objstore.ObjectInfo{Key: key, Size: int64(len(b))}, nil
}

func (m *memSource) GetRange(_ context.Context, key string, off, n int64) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.getRange++
	b, ok := m.objects[key]
	if !ok {
		return nil, fmt.Errorf("get %s: %w", key, objstore.ErrNotFound)
	}
	end := min(off+n, int64(len(b)))
	return b[off:end], nil
}

var base = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// sample returns one event of every type, at base+i seconds.
func sample(i int) *adaptrecv1.Event {
	at := base.Add(time.Duration(i) * time.Second)
	id := fmt.Sprintf("ev-%06d", i)
	switch i % 6 {
	case 0:
		return events.NewInteraction(id, at, "test", &adaptrecv1.UserInteractionEvent{
			UserId: fmt.Sprintf("u%d", i%7), ItemId: fmt.Sprintf("i%d", i%11), Action: adaptrecv1.Action_ACTION_CLICK,
			Value: 0, SessionId: "s1", Surface: "home", Device: adaptrecv1.Device_DEVICE_MOBILE, Position: 0,
			RequestId: "r1", ModelVersion: "m3", ExperimentArm: "b", TimeZone: "Europe/Paris",
		})
	case 1:
		return events.NewPrediction(id, at, "test", &adaptrecv1.PredictionEvent{
			RequestId: "r2", UserId: "u1", ModelVersion: "m3", ExperimentArm: "a", Surface: "search",
			SessionId: "s2", Device: adaptrecv1.Device_DEVICE_TV,
			Items: []*adaptrecv1.ServedItem{{ItemId: "i1", Score: 0.5, Position: 0, Features: []float32{1, 2}}},
		})
	case 2:
		return events.NewFeedback(id, at, "test", &adaptrecv1.FeedbackEvent{
			UserId: "u2", ItemId: "i9", Kind: adaptrecv1.FeedbackKind_FEEDBACK_KIND_HIDE, RequestId: "r3",
			ModelVersion: "m2", ExperimentArm: "c", Comment: "meh",
		})
	case 3:
		return events.NewModelAccuracy(id, at, "test", &adaptrecv1.ModelAccuracyEvent{ModelVersion: "m4", ExperimentArm: "d", Clicks: 9})
	case 4:
		return events.NewModelLifecycle(id, at, "test", &adaptrecv1.ModelLifecycleEvent{ModelName: "ranker", ModelVersion: "m5", Stage: adaptrecv1.LifecycleStage_LIFECYCLE_STAGE_CANARY})
	default:
		return events.NewFeatureSnapshot(id, at, "test", &adaptrecv1.FeatureSnapshotEvent{FeatureView: "user", SnapshotVersion: "v7"})
	}
}

func rowOf(t *testing.T, e *adaptrecv1.Event, partition int, offset int64) Row {
	t.Helper()
	b, err := proto.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return NewRow(e, b, Provenance{
		Topic: "t", Partition: partition, Offset: offset, Key: events.Key(e),
		Time: e.GetEnvelope().GetEventTime().AsTime().Add(time.Millisecond),
	})
}

func ptr[T any](v T) *T { return &v }

func TestNewRowFlattens(t *testing.T) {
	tests := []struct {
		i    int
		want Row
	}{
		{0, Row{EventType: "EVENT_TYPE_INTERACTION", UserID: "u0", ItemID: "i0", Action: "ACTION_CLICK", Value: ptr(0.0),
			SessionID: "s1", Surface: "home", Device: "DEVICE_MOBILE", Position: ptr(int32(0)), RequestID: "r1", ModelVersion: "m3", ExperimentArm: "b", TimeZone: "Europe/Paris"}},
		{1, Row{EventType: "EVENT_TYPE_PREDICTION", UserID: "u1", RequestID: "r2", ModelVersion: "m3", ExperimentArm: "a",
			Surface: "search", SessionID: "s2", Device: "DEVICE_TV"}},
		{2, Row{EventType: "EVENT_TYPE_FEEDBACK", UserID: "u2", ItemID: "i9", RequestID: "r3", ModelVersion: "m2", ExperimentArm: "c"}},
		{3, Row{EventType: "EVENT_TYPE_MODEL_ACCURACY", ModelVersion: "m4", ExperimentArm: "d"}},
		{4, Row{EventType: "EVENT_TYPE_MODEL_LIFECYCLE", ModelVersion: "m5"}},
		{5, Row{EventType: "EVENT_TYPE_FEATURE_SNAPSHOT"}},
	}
	for _, tt := range tests {
		t.Run(tt.want.EventType, func(t *testing.T) {
			got := rowOf(t, sample(tt.i), 2, 40)
			// Envelope and provenance are checked by the round trip test.
			got.EventID, got.SchemaVersion, got.EventTime, got.Producer = "", 0, time.Time{}, ""
			got.KafkaTopic, got.KafkaPartition, got.KafkaOffset, got.KafkaKey, got.KafkaTime, got.Payload = "", 0, 0, nil, time.Time{}, nil
			if diff := diffRows(&got, &tt.want); diff != "" {
				t.Fatal(diff)
			}
		})
	}
}

// diffRows compares every column; times to the millisecond, as stored.
func diffRows(got, want *Row) string {
	var d []string
	check := func(name string, ok bool, g, w any) {
		if !ok {
			d = append(d, fmt.Sprintf("%s = %v, want %v", name, g, w))
		}
	}
	deref := func(p any) any {
		switch v := p.(type) {
		case *float64:
			if v != nil {
				return *v
			}
		case *int32:
			if v != nil {
				return *v
			}
		}
		return nil
	}
	check("event_id", got.EventID == want.EventID, got.EventID, want.EventID)
	check("event_type", got.EventType == want.EventType, got.EventType, want.EventType)
	check("schema_version", got.SchemaVersion == want.SchemaVersion, got.SchemaVersion, want.SchemaVersion)
	check("event_time", got.EventTime.Truncate(time.Millisecond).Equal(want.EventTime.Truncate(time.Millisecond)), got.EventTime, want.EventTime)
	check("producer", got.Producer == want.Producer, got.Producer, want.Producer)
	check("user_id", got.UserID == want.UserID, got.UserID, want.UserID)
	check("item_id", got.ItemID == want.ItemID, got.ItemID, want.ItemID)
	check("action", got.Action == want.Action, got.Action, want.Action)
	check("value", deref(got.Value) == deref(want.Value), deref(got.Value), deref(want.Value))
	check("session_id", got.SessionID == want.SessionID, got.SessionID, want.SessionID)
	check("surface", got.Surface == want.Surface, got.Surface, want.Surface)
	check("device", got.Device == want.Device, got.Device, want.Device)
	check("position", deref(got.Position) == deref(want.Position), deref(got.Position), deref(want.Position))
	check("request_id", got.RequestID == want.RequestID, got.RequestID, want.RequestID)
	check("model_version", got.ModelVersion == want.ModelVersion, got.ModelVersion, want.ModelVersion)
	check("experiment_arm", got.ExperimentArm == want.ExperimentArm, got.ExperimentArm, want.ExperimentArm)
	check("time_zone", got.TimeZone == want.TimeZone, got.TimeZone, want.TimeZone)
	check("kafka_topic", got.KafkaTopic == want.KafkaTopic, got.KafkaTopic, want.KafkaTopic)
	check("kafka_partition", got.KafkaPartition == want.KafkaPartition, got.KafkaPartition, want.KafkaPartition)
	check("kafka_offset", got.KafkaOffset == want.KafkaOffset, got.KafkaOffset, want.KafkaOffset)
	check("kafka_key", bytes.Equal(got.KafkaKey, want.KafkaKey), got.KafkaKey, want.KafkaKey)
	check("kafka_time", got.KafkaTime.Truncate(time.Millisecond).Equal(want.KafkaTime.Truncate(time.Millisecond)), got.KafkaTime, want.KafkaTime)
	check("payload", bytes.Equal(got.Payload, want.Payload), len(got.Payload), len(want.Payload))
	return strings.Join(d, "\n")
}

// clone deep-copies a row read from an object, which is only valid during
// the callback.
func clone(r *Row) Row {
	c := *r
	c.KafkaKey, c.Payload = bytes.Clone(r.KafkaKey), bytes.Clone(r.Payload)
	if r.Value != nil {
		c.Value = ptr(*r.Value)
	}
	if r.Position != nil {
		c.Position = ptr(*r.Position)
	}
	return c
}

func TestEncodeReadRoundTrip(t *testing.T) {
	// Offsets increase while event times go back and forth, so the encoder
	// has to sort.
	var rows []Row
	for i := range 600 {
		j := (i * 7919) % 600
		rows = append(rows, rowOf(t, sample(j), 1, int64(1000+i)))
	}
	want := make([]Row, len(rows))
	copy(want, rows)
	sort.Slice(want, func(i, j int) bool { return Compare(&want[i], &want[j]) < 0 })

	enc := &Encoder{RowGroupRows: 64}
	b, err := enc.Encode(rows)
	if err != nil {
		t.Fatal(err)
	}
	src := newMemSource()
	obj := Object{Key: "events/t/x.parquet", Size: int64(len(b))}
	src.put(obj.Key, b)

	var got []Row
	err = ReadObject(t.Context(), src, obj, base.Add(-time.Hour), base.Add(time.Hour), func(r *Row) error {
		got = append(got, clone(r))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d rows, wrote %d", len(got), len(want))
	}
	for i := range got {
		if diff := diffRows(&got[i], &want[i]); diff != "" {
			t.Fatalf("row %d (%s):\n%s", i, want[i].EventID, diff)
		}
		var e adaptrecv1.Event
		if err := proto.Unmarshal(got[i].Payload, &e); err != nil || e.GetEnvelope().GetEventId() != want[i].EventID {
			t.Fatalf("row %d payload does not decode to event %s: %v", i, want[i].EventID, err)
		}
	}
	st, err := Stat(t.Context(), src, obj)
	if err != nil {
		t.Fatal(err)
	}
	if st.Rows != 600 || st.RowGroups != 10 || !st.MinTime.Equal(base) || !st.MaxTime.Equal(base.Add(599*time.Second)) {
		t.Fatalf("Stat = %+v, want 600 rows in 10 row groups over [%s, %s]", st, base, base.Add(599*time.Second))
	}

	// The encoder reuses its buffers: a second object must not be corrupted
	// by the first.
	b2, err := enc.Encode(rows[:3])
	if err != nil {
		t.Fatal(err)
	}
	src.put("second", b2)
	n := 0
	if err := ReadObject(t.Context(), src, Object{Key: "second", Size: int64(len(b2))}, base, base.Add(time.Hour), func(*Row) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("second object has %d rows, want 3", n)
	}
}

func TestCursorSkipsRowGroupsByTime(t *testing.T) {
	var rows []Row
	for i := range 1000 {
		rows = append(rows, rowOf(t, sample(i), 0, int64(i)))
	}
	b, err := (&Encoder{RowGroupRows: 100}).Encode(rows)
	if err != nil {
		t.Fatal(err)
	}
	src := newMemSource()
	src.put("o", b)
	tests := []struct {
		name       string
		from, to   time.Duration
		rows       int
		maxOpened  int
		firstEvent string
	}{
		{"middle slice", 250 * time.Second, 260 * time.Second, 10, 1, "ev-000250"},
		{"straddles groups", 195 * time.Second, 305 * time.Second, 110, 3, "ev-000195"},
		{"before all", -time.Hour, -time.Minute, 0, 0, ""},
		{"after all", 2000 * time.Second, 3000 * time.Second, 0, 0, ""},
		{"everything", -time.Hour, time.Hour, 1000, 10, "ev-000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := openObject(t.Context(), src, Object{Key: "o", Size: int64(len(b))})
			if err != nil {
				t.Fatal(err)
			}
			c, err := newCursor(f, "o", base.Add(tt.from), base.Add(tt.to))
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for {
				r, err := c.next()
				if err != nil {
					t.Fatal(err)
				}
				if r == nil {
					break
				}
				ids = append(ids, r.EventID)
			}
			if len(ids) != tt.rows {
				t.Fatalf("read %d rows, want %d", len(ids), tt.rows)
			}
			if tt.rows > 0 && ids[0] != tt.firstEvent {
				t.Fatalf("first row %s, want %s", ids[0], tt.firstEvent)
			}
			if c.opened > tt.maxOpened {
				t.Fatalf("opened %d row groups, want at most %d", c.opened, tt.maxOpened)
			}
		})
	}
}

func putObject(t *testing.T, src *memSource, enc *Encoder, topic string, partition int, first int64, hour time.Time, rows []Row) {
	t.Helper()
	b, err := enc.Encode(rows)
	if err != nil {
		t.Fatal(err)
	}
	src.put(Ref{Topic: topic, Partition: partition, FirstOffset: first, Hour: hour}.Key(), b)
}

func TestListObjectsWalksOnlyTheRange(t *testing.T) {
	src := newMemSource()
	enc := &Encoder{}
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	for h := range 72 {
		hour := day.Add(time.Duration(h) * time.Hour)
		putObject(t, src, enc, "t", h%3, int64(h*10), hour, []Row{{EventID: "x", EventTime: hour}})
		putObject(t, src, enc, "other", 0, int64(h), hour, []Row{{EventID: "y", EventTime: hour}})
	}
	from := day.Add(22*time.Hour + 30*time.Minute) // 20th 22:30
	to := day.Add(48*time.Hour + 90*time.Minute)   // 22nd 01:30
	objs, err := ListObjects(t.Context(), src, "t", from, to)
	if err != nil {
		t.Fatal(err)
	}
	var hours []int
	for _, o := range objs {
		if o.Topic != "t" {
			t.Fatalf("listed an object of topic %s", o.Topic)
		}
		hours = append(hours, int(o.Hour.Sub(day)/time.Hour))
	}
	want := []int{22, 23}
	for h := 24; h <= 49; h++ {
		want = append(want, h)
	}
	if !slices.Equal(hours, want) {
		t.Fatalf("object hours %v, want %v", hours, want)
	}
	if !slices.Equal(src.listed, Prefixes("t", from, to)) || len(src.listed) != 5 {
		t.Fatalf("listed prefixes %v, want the 5 of Prefixes", src.listed)
	}
}

func TestScanOrderedMergesPartitionsAndHours(t *testing.T) {
	src := newMemSource()
	enc := &Encoder{RowGroupRows: 16}
	// Three partitions, two batches each per hour, spanning three hours;
	// event i belongs to partition i%3 and happens at base + 37s*i.
	type batch struct {
		partition int
		first     int64
		rows      []Row
	}
	batches := map[string]*batch{}
	var all []Row
	offsets := map[int]int64{}
	for i := range 300 {
		e := sample(i)
		at := base.Add(time.Duration(i) * 37 * time.Second)
		e.Envelope.EventTime = nil
		e = cloneWithTime(e, at)
		p := i % 3
		r := rowOf(t, e, p, offsets[p])
		offsets[p]++
		all = append(all, r)
		half := 0
		if at.Minute() >= 30 {
			half = 1
		}
		k := fmt.Sprintf("%d/%s/%d", p, HourOf(at), half)
		b, ok := batches[k]
		if !ok {
			b = &batch{partition: p, first: r.KafkaOffset}
			batches[k] = b
		}
		b.rows = append(b.rows, r)
	}
	for _, b := range batches {
		putObject(t, src, enc, "t", b.partition, b.first, HourOf(b.rows[0].EventTime), b.rows)
	}
	sort.Slice(all, func(i, j int) bool { return Compare(&all[i], &all[j]) < 0 })

	tests := []struct {
		name     string
		from, to time.Time
	}{
		{"all", base, base.Add(4 * time.Hour)},
		{"partial hours", base.Add(17 * time.Minute), base.Add(2*time.Hour + 5*time.Minute)},
		{"nothing", base.Add(-2 * time.Hour), base.Add(-time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var want []string
			for _, r := range all {
				if !r.EventTime.Before(tt.from) && r.EventTime.Before(tt.to) {
					want = append(want, r.EventID)
				}
			}
			var got []string
			err := ScanOrdered(t.Context(), src, "t", tt.from, tt.to, func(r *Row) error {
				got = append(got, r.EventID)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("ScanOrdered returned %d events, want %d in event-time order\ngot  %v\nwant %v", len(got), len(want), head(got), head(want))
			}
		})
	}
}

func TestScanOrderedOpensObjectsLazily(t *testing.T) {
	src := newMemSource()
	enc := &Encoder{}
	// Ten objects covering disjoint ten-second slices of one hour.
	for o := range 10 {
		var rows []Row
		for i := range 10 {
			rows = append(rows, rowOf(t, cloneWithTime(sample(o*10+i), base.Add(time.Duration(o*10+i)*time.Second)), o%2, int64(o*10+i)))
		}
		putObject(t, src, enc, "t", o%2, int64(o*10), base, rows)
	}
	first := true
	var getsAtFirstRow int
	n := 0
	err := ScanOrdered(t.Context(), src, "t", base, base.Add(time.Hour), func(r *Row) error {
		if first {
			getsAtFirstRow = src.gets
			first = false
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 100 {
		t.Fatalf("read %d rows, want 100", n)
	}
	if getsAtFirstRow != 1 {
		t.Fatalf("%d objects were loaded before the first row, want 1 (lazy merge)", getsAtFirstRow)
	}
}

func cloneWithTime(e *adaptrecv1.Event, at time.Time) *adaptrecv1.Event {
	c := proto.Clone(e).(*adaptrecv1.Event)
	c.Envelope.EventTime = events.NewInteraction("", at, "", nil).Envelope.EventTime
	return c
}

func head(s []string) []string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}
