package cli

import (
	"os"
	"strings"
	"testing"
)

// TestBenchNearline runs the self-contained benchmark with few events and
// checks the JSON line.
func TestBenchNearline(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: starts real servers; run without -short (make test)")
	}
	t.Parallel()
	stdout, stderr, err := runBench(t, benchTestLookup(t), "nearline", "--json", "--file", "../../features/features.yaml",
		"--events", "3000", "--sample-every", "20")
	if err != nil {
		t.Fatalf("bench nearline: %v\nstderr:\n%s", err, stderr)
	}
	m := lastJSONLine(t, stdout)
	for _, k := range []string{"bench", "events", "throughput_per_s", "freshness_p50_ms", "freshness_p99_ms",
		"target_throughput_per_s", "target_freshness_p99_ms", "meets_target", "samples", "applied"} {
		if _, ok := m[k]; !ok {
			t.Errorf("result lacks %q: %s", k, stdout)
		}
	}
	if m["bench"] != "nearline" || m["events"] != float64(3000) || m["target_throughput_per_s"] != float64(20000) ||
		m["target_freshness_p99_ms"] != float64(1000) || m["samples"] != float64(150) {
		t.Errorf("result %s", stdout)
	}
	p50, p99 := m["freshness_p50_ms"].(float64), m["freshness_p99_ms"].(float64)
	if !(0 < p50 && p50 <= p99) || m["throughput_per_s"].(float64) <= 0 || m["applied"].(float64) < 3000 {
		t.Errorf("implausible measurements: %s", stdout)
	}
	if !strings.Contains(stderr, "nearline consumer joined") {
		t.Errorf("stderr lacks progress:\n%s", stderr)
	}
}

func TestBenchNearlineFlagErrors(t *testing.T) {
	t.Parallel()
	noTools := func(name string) (string, error) { return "", os.ErrNotExist }
	_, _, err := runBench(t, noTools, "nearline", "--events", "0", "--sample-every", "0")
	if err == nil || !strings.Contains(err.Error(), "--events must be") || !strings.Contains(err.Error(), "--sample-every must be") {
		t.Fatalf("bad flags: %v", err)
	}
}
