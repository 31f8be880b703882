package bench

import (
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	t.Parallel()
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // descending: Summarize must sort
	}
	tests := []struct {
		name string
		in   []time.Duration
		want Latencies
	}{
		{"empty", nil, Latencies{}},
		{"one", ms(7), Latencies{N: 1, P50: 7 * time.Millisecond, P95: 7 * time.Millisecond, P99: 7 * time.Millisecond, Max: 7 * time.Millisecond}},
		{"nearest rank of 1..100", ms(hundred...), Latencies{N: 100, P50: 50 * time.Millisecond, P95: 95 * time.Millisecond, P99: 99 * time.Millisecond, Max: 100 * time.Millisecond}},
		{"p99 of 10 is the max", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 1000), Latencies{N: 10, P50: 5 * time.Millisecond, P95: 1000 * time.Millisecond, P99: 1000 * time.Millisecond, Max: 1000 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Summarize(tt.in); got != tt.want {
				t.Fatalf("Summarize = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestMillisAndRound(t *testing.T) {
	t.Parallel()
	if got := Millis(1234567 * time.Microsecond); got != 1234.6 {
		t.Errorf("Millis(1.234567s) = %v, want 1234.6", got)
	}
	if got := Round(68776.94, 1); got != 68776.9 {
		t.Errorf("Round(68776.94, 1) = %v", got)
	}
}

func TestIngestOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		in        IngestOptions
		wantBatch int
		wantErr   string
	}{
		{"defaults", IngestOptions{Events: 10}, DefaultIngestBatch, ""},
		{"rate sets 20 ms batches", IngestOptions{Events: 10, Rate: 50000}, 500, ""},
		{"slow rate sends single events", IngestOptions{Events: 10, Rate: 20, Producers: 4}, 1, ""},
		{"explicit batch wins", IngestOptions{Events: 10, Rate: 50000, Batch: 64}, 64, ""},
		{"bad values", IngestOptions{Events: 0, Producers: -1, Rate: -1, Batch: 200_000},
			200_000, "events: 0 is not in 1..4294967295\nproducers: must be >= 1, got -1\nrate: must be >= 0 events/s, got -1\nbatch: 200000 is not in 1..100000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o, err := tt.in.withDefaults()
			if err != nil {
				t.Fatal(err)
			}
			if o.Batch != tt.wantBatch {
				t.Errorf("batch = %d, want %d", o.Batch, tt.wantBatch)
			}
			if o.RunID == "" || o.DurableTimeout != DefaultDurableTimeout {
				t.Errorf("defaults not applied: %+v", o)
			}
			err = o.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate: %v", err)
			case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
				t.Errorf("Validate = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
