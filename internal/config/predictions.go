package config

import "time"

// Predictions configures batch predictions: the workflow that precomputes
// top-K per active user (workflows.BatchPredictions), and serving's fallback
// level that reads them (DEGRADATION_LEVEL_BATCH_PREDICTIONS). Both live in
// Redis (redis.addr) under features.key_prefix.
type Predictions struct {
	// K is how many items are precomputed per user: at most what one
	// Recommend may ask for (500). Requests asking for more than K get K.
	K int `yaml:"k"`
	// ActiveWindow is how far back an interaction in the event log makes a
	// user active: active users are the ones predictions are computed for.
	ActiveWindow time.Duration `yaml:"active_window"`
	// MinCoverage is the least share of the active users that must have a
	// valid list for a version to become current (0..1].
	MinCoverage float64 `yaml:"min_coverage"`
	// MaxUserDrop is the largest relative fall in users against the current
	// version a new version may show (0..1; 1 disables the check): a run
	// over a half-archived event log must not replace a complete version.
	MaxUserDrop float64 `yaml:"max_user_drop"`
	// MinUsers is the fewest active users a run needs; fewer fail the run
	// (an empty event log is a broken archive, not a quiet day).
	MinUsers int `yaml:"min_users"`
	// Keep is how many complete versions are kept in Redis after a flip,
	// the current and the previous one included (>= 2: the previous one is
	// the rollback target). Older versions, and abandoned or rejected
	// ones, are deleted after the flip.
	Keep int `yaml:"keep"`
	// WritePipeline is how many commands one pipelined Redis write carries
	// (16..64 keeps a live Redis responsive to serving meanwhile).
	WritePipeline int `yaml:"write_pipeline"`
	// Parallelism is how many users are ranked at once by the workflow's
	// activity.
	Parallelism int `yaml:"parallelism"`
	// RankTimeout bounds the ONNX ranker per user in the batch run (it has
	// no request waiting on it; past it the Go forward pass of the same
	// model scores, as in serving). FeatureTimeout bounds a user's feature
	// read from Redis in the batch run.
	RankTimeout    time.Duration `yaml:"rank_timeout"`
	FeatureTimeout time.Duration `yaml:"feature_timeout"`
	// ServingEnabled lets serving answer from batch predictions when it
	// cannot rank (else popularity answers at once).
	ServingEnabled bool `yaml:"serving_enabled"`
	// ServingReadTimeout bounds serving's one Redis GET of a user's
	// predictions; past it popularity answers.
	ServingReadTimeout time.Duration `yaml:"serving_read_timeout"`
	// PointerRefresh is how often serving re-reads which version is
	// current, so a flip or a rollback takes effect within it.
	PointerRefresh time.Duration `yaml:"pointer_refresh"`
}

func defaultPredictions() Predictions {
	return Predictions{
		K:                  100,
		ActiveWindow:       7 * 24 * time.Hour,
		MinCoverage:        0.95,
		MaxUserDrop:        0.5,
		MinUsers:           1,
		Keep:               3,
		WritePipeline:      32,
		Parallelism:        4,
		RankTimeout:        time.Second,
		FeatureTimeout:     100 * time.Millisecond,
		ServingEnabled:     true,
		ServingReadTimeout: 3 * time.Millisecond,
		PointerRefresh:     10 * time.Second,
	}
}

// validate reports invalid keys through bad(key, format, args...).
func (c Predictions) validate(bad func(key, format string, args ...any)) {
	if c.K < 1 || c.K > 500 {
		bad("predictions.k", "must be in 1..500 (the most items a Recommend call may ask for), got %d", c.K)
	}
	if c.ActiveWindow < time.Hour {
		bad("predictions.active_window", "must be >= 1h, got %s", c.ActiveWindow)
	}
	if !(c.MinCoverage > 0 && c.MinCoverage <= 1) {
		bad("predictions.min_coverage", "must be in (0, 1], got %v", c.MinCoverage)
	}
	if !(c.MaxUserDrop >= 0 && c.MaxUserDrop <= 1) {
		bad("predictions.max_user_drop", "must be in [0, 1] (1 disables the check), got %v", c.MaxUserDrop)
	}
	if c.MinUsers < 1 {
		bad("predictions.min_users", "must be >= 1, got %d", c.MinUsers)
	}
	if c.Keep < 2 {
		bad("predictions.keep", "must be >= 2 (the current version and the previous one, the rollback target), got %d", c.Keep)
	}
	if c.WritePipeline < 1 || c.WritePipeline > 1000 {
		bad("predictions.write_pipeline", "must be in 1..1000 (16..64 recommended), got %d", c.WritePipeline)
	}
	if c.Parallelism < 1 || c.Parallelism > 256 {
		bad("predictions.parallelism", "must be in 1..256, got %d", c.Parallelism)
	}
	if c.RankTimeout <= 0 {
		bad("predictions.rank_timeout", "must be > 0, got %s", c.RankTimeout)
	}
	if c.FeatureTimeout <= 0 {
		bad("predictions.feature_timeout", "must be > 0, got %s", c.FeatureTimeout)
	}
	if c.ServingReadTimeout <= 0 {
		bad("predictions.serving_read_timeout", "must be > 0, got %s", c.ServingReadTimeout)
	}
	if c.PointerRefresh < 100*time.Millisecond {
		bad("predictions.pointer_refresh", "must be >= 100ms, got %s", c.PointerRefresh)
	}
}
