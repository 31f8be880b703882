package config

import (
	"strings"
	"testing"
	"time"
)

func TestPredictionsKeys(t *testing.T) {
	t.Parallel()
	c, err := Load("", []string{"ADAPTREC_PREDICTIONS_K=40", "ADAPTREC_PREDICTIONS_ACTIVE_WINDOW=48h", "ADAPTREC_PREDICTIONS_MIN_COVERAGE=0.8", "ADAPTREC_PREDICTIONS_SERVING_ENABLED=false"})
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Predictions; p.K != 40 || p.ActiveWindow != 48*time.Hour || p.MinCoverage != 0.8 || p.ServingEnabled {
		t.Errorf("environment overrides not applied: %+v", p)
	}
	_, err = Load("", []string{
		"ADAPTREC_PREDICTIONS_K=501", "ADAPTREC_PREDICTIONS_MIN_COVERAGE=0", "ADAPTREC_PREDICTIONS_MAX_USER_DROP=1.5",
		"ADAPTREC_PREDICTIONS_KEEP=1", "ADAPTREC_PREDICTIONS_WRITE_PIPELINE=0", "ADAPTREC_PREDICTIONS_POINTER_REFRESH=1ms",
		"ADAPTREC_PREDICTIONS_ACTIVE_WINDOW=10m", "ADAPTREC_PREDICTIONS_SERVING_READ_TIMEOUT=0s",
	})
	for _, want := range []string{
		"predictions.k: must be in 1..500 (the most items a Recommend call may ask for), got 501",
		"predictions.min_coverage: must be in (0, 1], got 0",
		"predictions.max_user_drop: must be in [0, 1] (1 disables the check), got 1.5",
		"predictions.keep: must be >= 2",
		"predictions.write_pipeline: must be in 1..1000 (16..64 recommended), got 0",
		"predictions.pointer_refresh: must be >= 100ms, got 1ms",
		"predictions.active_window: must be >= 1h, got 10m0s",
		"predictions.serving_read_timeout: must be > 0, got 0s",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
}
