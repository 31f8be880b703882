package cli

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestBenchServing runs the self-contained benchmark on a tiny world and
// checks the JSON line, the progress on stderr, the CPU profile and that
// its servers and directory are gone afterwards.
func TestBenchServing(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts real servers; run without -short (make test)")
	}
	t.Parallel()
	profile := t.TempDir() + "/cpu.pprof"
	stdout, stderr, err := runBench(t, benchTestLookup(t), "serving", "--json", "--file", "../../features/features.yaml",
		"--items", "2000", "--users", "200", "--train-rows", "5000", "--hidden", "", "--rate", "50", "--duration", "2s", "--warmup", "500ms",
		"--cache-dir", t.TempDir(), "--cpuprofile", profile)
	if err != nil {
		t.Fatalf("bench serving: %v\nstderr:\n%s", err, stderr)
	}
	m := lastJSONLine(t, stdout)
	for _, k := range []string{"bench", "rate", "duration_s", "requests", "p50_ms", "p95_ms", "p99_ms", "max_ms", "throughput_per_s",
		"errors", "degraded", "levels", "items", "candidates", "features_per_candidate", "values_per_candidate", "model_version",
		"stages", "target_p99_ms", "meets_target", "mode"} {
		if _, ok := m[k]; !ok {
			t.Errorf("result lacks %q: %s", k, stdout)
		}
	}
	if m["bench"] != "serving" || m["mode"] != "self-contained" || m["rate"] != float64(50) || m["requests"] != float64(100) ||
		m["items"] != float64(2000) || m["ranker"] != "lr" {
		t.Errorf("result %s", stdout)
	}
	if m["errors"] != float64(0) || m["features_per_candidate"].(float64) < 40 || m["target_p99_ms"] != float64(10) {
		t.Errorf("errors %v, features_per_candidate %v, target %v", m["errors"], m["features_per_candidate"], m["target_p99_ms"])
	}
	if p99 := m["p99_ms"].(float64); m["meets_target"].(bool) != (p99 <= 10) {
		t.Errorf("meets_target %v with p99 %v ms and no error", m["meets_target"], p99)
	}
	if fi, err := os.Stat(profile); err != nil || fi.Size() == 0 {
		t.Errorf("CPU profile %s: %v", profile, err)
	}
	if !strings.Contains(stderr, "bench serving: serving instance ready") || !strings.Contains(stderr, "ranker logistic regression trained") {
		t.Errorf("stderr lacks progress:\n%s", stderr)
	}
	dir := regexp.MustCompile(`free ports in (\S+)`).FindStringSubmatch(stderr)
	if dir == nil {
		t.Fatalf("stderr does not name the state directory:\n%s", stderr)
	}
	if _, err := os.Stat(dir[1]); !os.IsNotExist(err) {
		t.Errorf("state directory %s still exists (%v)", dir[1], err)
	}
}

func TestBenchServingFlagErrors(t *testing.T) {
	t.Parallel()
	noTools := func(name string) (string, error) { return "", os.ErrNotExist }
	_, _, err := runBench(t, noTools, "serving", "--items", "5", "--rate", "-1", "--hidden", "64,x", "--candidates", "9000")
	for _, want := range []string{"items must be in 100..", "rate must be", `--hidden "64,x"`, "candidates must be"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("bad flags: %v, want it to mention %q", err, want)
		}
	}
}
