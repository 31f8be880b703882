package eventlog

import (
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

func TestCountProducer(t *testing.T) {
	t.Parallel()
	mk := func(producers ...string) []Row {
		var rows []Row
		for i, p := range producers {
			e := events.NewInteraction("e"+p+string(rune('a'+i)), base.Add(time.Duration(i)*time.Minute), p,
				&adaptrecv1.UserInteractionEvent{UserId: "u", ItemId: "i", Action: adaptrecv1.Action_ACTION_CLICK})
			rows = append(rows, rowOf(t, e, 0, int64(i)))
		}
		return rows
	}
	single := mk("sim/history/w1", "sim/history/w1", "sim/history/w1")
	mixed := mk("sim/history/w1", "server/ingest", "sim/history/w1", "sim/history/w2")
	tests := []struct {
		name     string
		rows     []Row
		from, to time.Time
		want     int64
		wantGets int // whole-object reads: 0 means the footer sufficed
	}{
		{"single producer from footer", single, base, base.Add(time.Hour), 3, 0},
		{"mixed producers read", mixed, base, base.Add(time.Hour), 2, 1},
		{"range cuts the object", single, base.Add(time.Minute), base.Add(2 * time.Minute), 1, 1},
		{"range misses the object", single, base.Add(time.Hour), base.Add(2 * time.Hour), 0, 0},
		{"another producer's object", mk("sim/history/w0", "sim/history/w0"), base, base.Add(time.Hour), 0, 0},
		{"producers around it", mk("sim/history/w0", "sim/history/w2"), base, base.Add(time.Hour), 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := newMemSource()
			var enc Encoder
			b, err := enc.Encode(tt.rows)
			if err != nil {
				t.Fatal(err)
			}
			key := Ref{Topic: "t", Partition: 0, FirstOffset: 0, Hour: HourOf(base)}.Key()
			src.put(key, b)
			n, err := CountProducer(t.Context(), src, Object{Key: key, Size: int64(len(b))}, "sim/history/w1", tt.from, tt.to)
			if err != nil {
				t.Fatal(err)
			}
			if n != tt.want || src.gets != tt.wantGets {
				t.Fatalf("count = %d with %d whole reads, want %d with %d", n, src.gets, tt.want, tt.wantGets)
			}
		})
	}
}
