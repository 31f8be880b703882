package config

// Feedback configures the feedback-loop consumer (consumers/feedback), which joins predictions with interactions into online accuracy per model version and arm.
type Feedback struct{}

func defaultFeedback() Feedback { return Feedback{} }

// validate reports invalid keys through bad(key, format, args...).
func (c Feedback) validate(bad func(key, format string, args ...any)) {}
