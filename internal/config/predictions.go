package config

// Predictions configures batch predictions: the workflow that precomputes top-K per active user, and serving's fallback level that reads them.
type Predictions struct{}

func defaultPredictions() Predictions { return Predictions{} }

// validate reports invalid keys through bad(key, format, args...).
func (c Predictions) validate(bad func(key, format string, args ...any)) {}
