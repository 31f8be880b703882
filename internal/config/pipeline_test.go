package config

import (
	"strings"
	"testing"
	"time"
)

func TestPipelineSplitGap(t *testing.T) {
	t.Parallel()
	c, err := Load("", []string{"ADAPTREC_PIPELINE_SPLIT_GAP=5s"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Pipeline.SplitGap != 5*time.Second {
		t.Errorf("split_gap %s, want 5s", c.Pipeline.SplitGap)
	}
	if d := Default().Pipeline.SplitGap; d != 0 {
		t.Errorf("default split_gap %s, want 0 (the attribution window)", d)
	}
	_, err = Load("", []string{"ADAPTREC_PIPELINE_TRAINING_WINDOW=2h", "ADAPTREC_PIPELINE_SPLIT_GAP=3h"})
	if want := "pipeline.split_gap: must be below training_window 2h0m0s, got 3h0m0s"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v does not say %q", err, want)
	}
}
