package eventlog

import (
	"context"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/internal/objstore"
)

func (m *memSource) Put(_ context.Context, key string, body []byte, _ objstore.PutOptions) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.put(key, body)
	return "etag", nil
}

func TestWriterLaysOutLikeTheArchiver(t *testing.T) {
	t.Parallel()
	src := newMemSource()
	w := &Writer{Store: src, Topic: "t", MaxRows: 2}
	// Interactions only (sample(i) for i%6 == 0) every 15 minutes: four in
	// the first hour, one in the next.
	var want []string
	for k := range 5 {
		e := sample(k * 900)
		want = append(want, e.GetEnvelope().GetEventId())
		if err := w.Add(t.Context(), e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	objs, err := ListObjects(t.Context(), src, "t", base, base.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// 5 events: 4 in the first hour (2 objects of MaxRows 2), 1 in the next.
	if len(objs) != 3 {
		t.Fatalf("%d objects, want 3: %+v", len(objs), objs)
	}
	var got []string
	if err := ScanOrdered(t.Context(), src, "t", base, base.Add(3*time.Hour), func(r *Row) error {
		got = append(got, r.EventID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("read %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("read %v, want %v", got, want)
		}
	}
}
