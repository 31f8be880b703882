package bench

import (
	"strings"
	"testing"

	"github.com/adaptrec/adaptrec/serving/ann"
)

func TestRunANN(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts ANNOptions
	}{
		// A small world: ALS on a simulated history, users' positives
		// excluded; the narrow beam makes the search walk graphs.
		{"sim", ANNOptions{Items: 8000, Users: 3000, Events: 300_000, Iterations: 2, Dims: 16, K: 50, Queries: 200,
			Index: ann.Config{EfSearch: 60}}},
		{"clustered", ANNOptions{Data: ANNDataClustered, Items: 10_000, Dims: 16, K: 50, Queries: 200, Concurrency: 2,
			Index: ann.Config{EfSearch: 60}, Sweep: []int{20, 200}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var lines []string
			tt.opts.Logf = func(format string, args ...any) { lines = append(lines, format) }
			res, err := RunANN(t.Context(), tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%+v", res)
			if res.Data != tt.name || res.K != 50 || res.Queries != 200 || res.Dims != 16 || res.EfSearch != 60 || res.M != ann.DefaultM {
				t.Errorf("result shape: %+v", res)
			}
			if res.Recall < 0.9 || res.MinRecall > res.Recall || res.MinRecall < 0 {
				t.Errorf("recall %v (min %v), want >= 0.9", res.Recall, res.MinRecall)
			}
			if !(0 < res.P50Ms && res.P50Ms <= res.P95Ms && res.P95Ms <= res.P99Ms && res.P99Ms <= res.MaxMs) ||
				res.ExactP50Ms <= 0 || res.ThroughputPerS <= 0 || res.BuildSeconds <= 0 || res.ArtifactBytes <= 0 || res.Bands < 1 {
				t.Errorf("implausible measurements: %+v", res)
			}
			switch tt.name {
			case "sim":
				if res.Items < 1000 || res.Items > res.CatalogueItems || res.CatalogueItems != 8000 || res.Pairs == 0 ||
					res.Users == 0 || res.ExcludedPerQuery <= 0 || res.Iterations != 2 {
					t.Errorf("simulated data: %+v", res)
				}
			case "clustered":
				if res.Items != 10_000 || res.CatalogueItems != 0 || res.ExcludedPerQuery != 0 || res.Concurrency != 2 {
					t.Errorf("clustered data: %+v", res)
				}
				// A wider beam finds at least as much.
				if len(res.Sweep) != 2 || res.Sweep[0].Ef != 50 || res.Sweep[1].Ef != 200 || res.Sweep[1].Recall < res.Sweep[0].Recall || res.Sweep[1].P50Ms <= 0 {
					t.Errorf("sweep: %+v", res.Sweep)
				}
			}
			if len(lines) < 4 {
				t.Errorf("progress: %q", lines)
			}
		})
	}
}

func TestANNOptionsValidate(t *testing.T) {
	t.Parallel()
	if err := (ANNOptions{}).Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	err := ANNOptions{Data: "random", Users: -1, K: 20_000, Queries: -1, Concurrency: 1000, Index: ann.Config{M: 1}, Sweep: []int{0}}.Validate()
	for _, want := range []string{`data must be "sim" or "clustered"`, "users must be", "k must be", "queries must be", "concurrency must be",
		"ann: M 1", "sweep ef must be"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
	if err := (ANNOptions{Items: 300_000}).Validate(); err == nil || !strings.Contains(err.Error(), "simulated data") {
		t.Errorf("300,000 simulated items: %v", err)
	}
}
