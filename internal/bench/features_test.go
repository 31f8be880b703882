package bench

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/online"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

func projectFeatures(t testing.TB) *features.FeatureSet {
	t.Helper()
	fs, err := features.Load("../../features/features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func TestRunFeatures(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Redis)
	rdb := online.NewClient(env.Config().Redis)
	t.Cleanup(func() { rdb.Close() })
	var progress int
	res, err := RunFeatures(t.Context(), rdb, projectFeatures(t), FeaturesOptions{
		Items: 2000, Users: 100, Candidates: 50, Concurrency: 2,
		Duration: 1500 * time.Millisecond, Warmup: 100 * time.Millisecond, NearlineWritesPerS: 200,
		Progress: func(FeaturesProgress) { progress++ },
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || res.P50Ms <= 0 || res.P50Ms > res.P99Ms || res.P99Ms > res.MaxMs || res.ThroughputPerS <= 0 {
		t.Errorf("implausible latencies: %+v", res)
	}
	if res.ItemsPerRequest != 50 || res.FeaturesPerItem < 40 || res.ValuesPerItem <= res.FeaturesPerItem || res.ItemFeatures == 0 {
		t.Errorf("request shape: %+v", res)
	}
	if progress == 0 {
		t.Error("no progress reported")
	}
}

func TestFeaturesOptionsValidate(t *testing.T) {
	t.Parallel()
	err := FeaturesOptions{Items: -1, Candidates: 20000, Concurrency: 1000, Duration: -time.Second}.Validate()
	for _, want := range []string{"items must be", "candidates must be", "concurrency must be", "duration and warmup"} {
		if err == nil || !contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to mention %q", err, want)
		}
	}
}

func contains(s, sub string) bool {
	return len(s) >= len(sub) && (s == sub || len(sub) == 0 || indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// BenchmarkAssemble measures one Assemble of 1 user and 500 items out of
// 200,000 with every ranker input of features.yaml, against a real Redis.
func BenchmarkAssemble(b *testing.B) {
	env := testenv.New(b, testenv.Redis)
	rdb := online.NewClient(env.Config().Redis)
	b.Cleanup(func() { rdb.Close() })
	o := FeaturesOptions{Seed: 1, PairsPerUser: benchPairs}.withDefaults()
	fx, err := setupFeatures(b.Context(), rdb, projectFeatures(b), o)
	if err != nil {
		b.Fatal(err)
	}
	// Random users and candidates, as requests come: a fixed set would sit
	// in the CPU caches and measure a fraction of the real cost.
	rng := rand.New(rand.NewPCG(1, 2))
	const sets = 256
	users := make([]string, sets)
	cands := make([][]string, sets)
	for s := range sets {
		u := rng.IntN(o.Users)
		users[s] = userID(u)
		cands[s] = make([]string, o.Candidates)
		for i := range cands[s] {
			if i < o.PairHits {
				cands[s][i] = itemID(pairItem(o, u, i))
				continue
			}
			cands[s][i] = itemID(rng.IntN(o.Items))
		}
	}
	dst := make([]float32, o.Candidates*fx.layout.Width())
	var res online.Result
	req := online.Request{Context: features.RequestContext{Time: time.Now(), TimeZone: "Europe/Paris", SessionID: "s"}}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if err := fx.asm.Assemble(b.Context(), users[i%sets], cands[i%sets], req, dst, &res); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.StopTimer()
	if res.Degraded {
		b.Fatalf("degraded: %s", res.DegradedReason)
	}
}

// benchPairs is BenchmarkAssemble's PairsPerUser (0: the default).
var benchPairs = 0
