package bench

import (
	"strings"
	"testing"
)

func TestNearlineOptionsDefaults(t *testing.T) {
	o := NearlineOptions{}.withDefaults()
	if o.Events != DefaultNearlineEvents || o.Producers != DefaultNearlineProducers || o.Batch != DefaultNearlineBatch ||
		o.SampleEvery != DefaultNearlineSampleEvery || o.Timeout != DefaultNearlineTimeout {
		t.Fatalf("defaults %+v", o)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	// With a rate, a batch is 20 ms worth per producer.
	if b := (NearlineOptions{Rate: 20000}).withDefaults().Batch; b != 200 {
		t.Errorf("batch at 20000/s: %d, want 200", b)
	}
	err := NearlineOptions{Events: -1, Producers: 65, Rate: -1, Batch: -1, SampleEvery: -1}.Validate()
	for _, want := range []string{"events", "producers", "rate", "batch", "sample every"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v, want a complaint about %s", err, want)
		}
	}
}
