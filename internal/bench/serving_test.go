package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/internal/servingworld"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

// TestRunServing runs the benchmark briefly on a tiny world against
// servers of its own (the --external path: its own prefixes and model) and
// checks what it reports.
func TestRunServing(t *testing.T) {
	env := testenv.New(t, testenv.Kafka, testenv.Redis, testenv.S3)
	cfg := env.Config()
	var lines []string
	res, err := RunServing(t.Context(), ServingOptions{
		World:        servingworld.Options{Items: 2000, Users: 200, TrainRows: 5000, CacheDir: t.TempDir()},
		Rate:         50,
		Duration:     2 * time.Second,
		Warmup:       500 * time.Millisecond,
		FeaturesFile: "../../features/features.yaml",
		Config:       &cfg,
	}, func(s string) { lines = append(lines, s) })
	if err != nil {
		t.Fatalf("RunServing: %v\n%s", err, strings.Join(lines, "\n"))
	}
	t.Logf("%+v", res)
	if res.Requests != 100 || res.OK != 100 || res.Errors != 0 || res.ErrorCodes != nil || res.WrongModel != 0 {
		t.Errorf("%d requests, %d answered, %d errors %v, %d from another model; want 100 answered by the world's model",
			res.Requests, res.OK, res.Errors, res.ErrorCodes, res.WrongModel)
	}
	if !(0 < res.P50Ms && res.P50Ms <= res.P95Ms && res.P95Ms <= res.P99Ms && res.P99Ms <= res.MaxMs) || res.ThroughputPerS < 45 {
		t.Errorf("implausible latencies or throughput: %+v", res)
	}
	var levels int64
	for _, n := range res.Levels {
		levels += n
	}
	if levels != res.OK || res.Levels["FULL"]+res.Degraded != res.OK {
		t.Errorf("levels %v do not add up to %d answered with %d degraded", res.Levels, res.OK, res.Degraded)
	}
	if res.Items != 2000 || res.Users != 200 || res.Candidates != DefaultServingCandidates || res.FeaturesPerCandidate < 40 ||
		res.ValuesPerCandidate <= res.FeaturesPerCandidate || res.ModelVersion == "" || res.Ranker != "mlp[64,32]" {
		t.Errorf("world or request shape: %+v", res)
	}
	for _, stage := range []string{"user_features", "retrieval", "item_features", "rank", "rerank", stageHandler} {
		if st, ok := res.Stages[stage]; !ok || st.Count < 100 || st.MeanMs <= 0 {
			t.Errorf("stage %s: %+v (present %v), want at least the 100 measured requests", stage, st, ok)
		}
	}
	if res.TargetP99Ms != 10 || res.MeetsTarget != (res.P99Ms <= 10) {
		t.Errorf("target %v ms, meets %v with p99 %v ms", res.TargetP99Ms, res.MeetsTarget, res.P99Ms)
	}
	joined := strings.Join(lines, "\n")
	for _, want := range []string{"external servers: writing below s3 prefix", "serving instance ready", "measured", "registered " + ExternalModel + "@"} {
		if !strings.Contains(joined, want) {
			t.Errorf("progress lacks %q:\n%s", want, joined)
		}
	}
}

func TestServingTargetP99(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		rate float64
		want time.Duration
	}{{50, 10 * time.Millisecond}, {500, 10 * time.Millisecond}, {501, 50 * time.Millisecond}, {2000, 50 * time.Millisecond}} {
		if got := ServingTargetP99(tt.rate); got != tt.want {
			t.Errorf("ServingTargetP99(%v) = %s, want %s", tt.rate, got, tt.want)
		}
	}
}

func TestServingOptionsValidate(t *testing.T) {
	t.Parallel()
	err := ServingOptions{Rate: -1, Deadline: 2 * time.Minute, Concurrency: -3, Candidates: 6000,
		World: servingworld.Options{Items: 10}}.Validate()
	for _, want := range []string{"rate must be", "deadline must be", "concurrency must be", "candidates must be", "items must be"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
}

func TestBucketQuantile(t *testing.T) {
	t.Parallel()
	// 100 observations: 50 in (0, 1], 40 in (1, 2], 10 in (2, 5].
	bs := []histBucket{{1, 50}, {2, 90}, {5, 100}, {10, 100}}
	for _, tt := range []struct{ q, want float64 }{{0.25, 0.5}, {0.5, 1}, {0.7, 1.5}, {0.95, 3.5}, {1, 5}} {
		if got := bucketQuantile(bs, 100, tt.q); got < tt.want-1e-9 || got > tt.want+1e-9 {
			t.Errorf("bucketQuantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	// Past the last finite bound: that bound.
	if got := bucketQuantile([]histBucket{{1, 10}}, 20, 0.99); got != 1 {
		t.Errorf("quantile past the last bucket = %v, want 1", got)
	}
}
