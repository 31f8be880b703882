package config

// Pipeline configures the retraining workflow (workflows.RetrainWorkflow) and its activities.
type Pipeline struct{}

func defaultPipeline() Pipeline { return Pipeline{} }

// validate reports invalid keys through bad(key, format, args...).
func (c Pipeline) validate(bad func(key, format string, args ...any)) {}
