package config

import (
	"strings"
	"testing"
	"time"
)

func TestFeedbackKeys(t *testing.T) {
	t.Parallel()
	cfg, err := Load("", []string{"ADAPTREC_CONSUMERS_FEEDBACK_EMIT_DELAY=2s", "ADAPTREC_CONSUMERS_FEEDBACK_GROUP_ID=fb"})
	if err != nil {
		t.Fatal(err)
	}
	if f := cfg.Consumers.Feedback; !f.Enabled || f.GroupID != "fb" || f.Window != time.Minute || f.AttributionWindow != 30*time.Minute || f.EmitDelay != 2*time.Second {
		t.Errorf("consumers.feedback = %+v", f)
	}
	tests := []struct {
		name   string
		mutate func(*Feedback)
		want   []string
	}{
		{"no group", func(f *Feedback) { f.GroupID = "" }, []string{"consumers.feedback.group_id"}},
		{"bad durations", func(f *Feedback) { f.Window, f.AttributionWindow, f.EmitDelay = 10*time.Millisecond, 0, -time.Second },
			[]string{"consumers.feedback.window: must be >= 1s, got 10ms", "consumers.feedback.attribution_window", "consumers.feedback.emit_delay: must be >= 0, got -1s"}},
		{"fractional window", func(f *Feedback) { f.Window = time.Second + time.Microsecond }, []string{"consumers.feedback.window: must be a whole number"}},
		{"disabled is not checked", func(f *Feedback) { f.Enabled, f.GroupID = false, "" }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Default()
			tt.mutate(&c.Consumers.Feedback)
			err := c.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %v, want it to mention %q", err, w)
				}
			}
		})
	}
}
