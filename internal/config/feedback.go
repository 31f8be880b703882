package config

import "time"

// Feedback configures the feedback-loop consumer (consumers/feedback), which
// joins predictions with interactions into online accuracy per model version
// and arm: one ModelAccuracyEvent per version, arm and window on
// adaptrec.model-accuracy.v1, read by the canary guardrails.
type Feedback struct {
	// Enabled runs it in cmd/consumers next to the archiver.
	Enabled bool `yaml:"enabled"`
	// GroupID is its Kafka consumer group. One member of the group does the
	// work and the others stand by (see consumers/feedback); it must differ
	// from the archiver's and the nearline consumer's groups.
	GroupID string `yaml:"group_id"`
	// Window is the width of the tumbling windows accuracy is aggregated
	// over, keyed by prediction time and aligned to the Unix epoch.
	Window time.Duration `yaml:"window"`
	// AttributionWindow is how far apart in event time an interaction and
	// the prediction of the request it names may be for the interaction to
	// be credited to that prediction.
	AttributionWindow time.Duration `yaml:"attribution_window"`
	// EmitDelay is how long after a window ends (in stream time) its
	// ModelAccuracyEvent is emitted: the lateness allowed to predictions
	// and interactions. An interaction read after its prediction's window
	// was emitted is counted as late, not added.
	EmitDelay time.Duration `yaml:"emit_delay"`
}

func defaultFeedback() Feedback {
	return Feedback{
		Enabled:           true,
		GroupID:           "adaptrec-feedback",
		Window:            time.Minute,
		AttributionWindow: 30 * time.Minute,
		EmitDelay:         30 * time.Second,
	}
}

// validate reports invalid keys through bad(key, format, args...).
func (c Feedback) validate(bad func(key, format string, args ...any)) {
	if !c.Enabled {
		return
	}
	if c.GroupID == "" {
		bad("consumers.feedback.group_id", "a consumer group id is required")
	}
	if c.Window < time.Second {
		bad("consumers.feedback.window", "must be >= 1s, got %s", c.Window)
	} else if c.Window%time.Millisecond != 0 {
		bad("consumers.feedback.window", "must be a whole number of milliseconds, got %s", c.Window)
	}
	if c.AttributionWindow <= 0 {
		bad("consumers.feedback.attribution_window", "must be > 0, got %s", c.AttributionWindow)
	}
	if c.EmitDelay < 0 {
		bad("consumers.feedback.emit_delay", "must be >= 0, got %s", c.EmitDelay)
	}
}
