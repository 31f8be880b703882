package cli

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/adaptrec/adaptrec/internal/bench"
)

// TestBenchFeatures runs the self-contained benchmark on a small catalogue
// and checks the JSON line, the progress on stderr and that its Redis and
// directory are gone afterwards.
func TestBenchFeatures(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts real servers; run without -short (make test)")
	}
	t.Parallel()
	stdout, stderr, err := runBench(t, benchTestLookup(t), "features", "--json", "--file", "../../features/features.yaml",
		"--items", "5000", "--users", "200", "--candidates", "100", "--duration", "1s", "--warmup", "200ms")
	if err != nil {
		t.Fatalf("bench features: %v\nstderr:\n%s", err, stderr)
	}
	m := lastJSONLine(t, stdout)
	for _, k := range []string{"bench", "items_per_request", "features_per_item", "p50_ms", "p99_ms", "throughput_per_s",
		"target_p99_ms", "meets_target", "catalogue_items", "requests", "degraded"} {
		if _, ok := m[k]; !ok {
			t.Errorf("result lacks %q: %s", k, stdout)
		}
	}
	if m["bench"] != "features" || m["items_per_request"] != float64(100) || m["catalogue_items"] != float64(5000) || m["mode"] != "self-contained" {
		t.Errorf("result %s", stdout)
	}
	if m["features_per_item"].(float64) < 40 || m["target_p99_ms"] != float64(bench.FeaturesTargetP99.Milliseconds()) {
		t.Errorf("features_per_item %v, target %v", m["features_per_item"], m["target_p99_ms"])
	}
	p50, p99, tput := m["p50_ms"].(float64), m["p99_ms"].(float64), m["throughput_per_s"].(float64)
	if !(0 < p50 && p50 <= p99) || tput <= 0 || m["requests"].(float64) < 1 {
		t.Errorf("implausible measurements: %s", stdout)
	}
	if meets := m["meets_target"].(bool); meets && p99 > 1 {
		t.Errorf("meets_target with p99 %v ms", p99)
	}
	if !strings.Contains(stderr, "requests (") || !strings.Contains(stderr, "item caches hold 5000 items") {
		t.Errorf("stderr lacks progress:\n%s", stderr)
	}
	dir := regexp.MustCompile(`free port in (\S+)`).FindStringSubmatch(stderr)
	if dir == nil {
		t.Fatalf("stderr does not name the state directory:\n%s", stderr)
	}
	if _, err := os.Stat(dir[1]); !os.IsNotExist(err) {
		t.Errorf("state directory %s still exists (%v)", dir[1], err)
	}
}

func TestBenchFeaturesFlagErrors(t *testing.T) {
	t.Parallel()
	noTools := func(name string) (string, error) { return "", os.ErrNotExist }
	_, _, err := runBench(t, noTools, "features", "--items", "-1", "--candidates", "20000")
	if err == nil || !strings.Contains(err.Error(), "items must be") || !strings.Contains(err.Error(), "candidates must be") {
		t.Fatalf("bad flags: %v", err)
	}
}
