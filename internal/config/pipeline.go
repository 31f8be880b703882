package config

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

// Pipeline configures the retraining workflow (workflows.RetrainWorkflow)
// and its activities: the data contract, GPU dispatch, the offline, shadow
// and canary gates, and the manual approval. The starter of a run copies
// it into the run's parameters, so a run keeps the settings it started
// with whatever the configuration says later.
type Pipeline struct {
	// Model is the registry model the pipeline trains and promotes.
	Model string `yaml:"model"`
	// TrainingWindow is the event-time range of impressions a run trains
	// on, ending at the run's cutoff (the start of the current hour).
	TrainingWindow time.Duration `yaml:"training_window"`
	// SplitGap is the gap between the training part of a run's training
	// set and its holdout (the newest examples, which the offline gate
	// scores both models on): examples within it are dropped, so that no
	// training label can still change after the holdout starts. 0 takes
	// the training set's attribution window, the safe choice when clicks
	// may come until its end; a shorter gap suits clicks that come within
	// seconds, and keeps the newest behaviour (a shift of taste minutes
	// ago) in the training part; negative means none.
	SplitGap time.Duration `yaml:"split_gap"`

	// MinRows is the fewest impressions the window must hold (data
	// contract): fewer mean a broken archive, not a quiet week.
	MinRows int64 `yaml:"min_rows"`
	// MaxRowChange is the largest relative change of impressions per hour
	// against the training set of the production version (0..1; 1
	// disables the check).
	MaxRowChange float64 `yaml:"max_row_change"`
	// MaxNullRate is the largest share of impressions missing a user,
	// item or session id (0..1).
	MaxNullRate float64 `yaml:"max_null_rate"`
	// MaxPosition bounds an impression's list position: positions outside
	// [0, max_position] violate the contract.
	MaxPosition int `yaml:"max_position"`
	// MaxStaleness is how long before the window's end the newest
	// archived interaction may be: an older one means the archiver is
	// behind and the latest hours are missing.
	MaxStaleness time.Duration `yaml:"max_staleness"`

	// GPUScheduleToStart is how long a training task waits on the
	// gpu-training task queue for a GPU worker to pick it up; past it the
	// run trains on the CPU queue with the built-in Go trainer.
	GPUScheduleToStart time.Duration `yaml:"gpu_schedule_to_start"`
	// GPUCommand, when set, is the external trainer a gpu-training worker
	// runs (trainer/job.Command, split on spaces), e.g. the PyTorch
	// reference trainer; empty runs the Go trainer there too.
	GPUCommand string `yaml:"gpu_command"`
	// TrainingTimeout bounds one training attempt; TrainingHeartbeat is
	// how long an attempt may go without a heartbeat before it is
	// considered lost (a killed worker) and retried; TrainingAttempts is
	// how many attempts a training task gets.
	TrainingTimeout   time.Duration `yaml:"training_timeout"`
	TrainingHeartbeat time.Duration `yaml:"training_heartbeat"`
	TrainingAttempts  int           `yaml:"training_attempts"`

	// MaxAUCDrop and MaxNDCGDrop are the offline promotion gates: the
	// candidate's AUC and NDCG@10 on the holdout may be at most this much
	// (absolute) below the production version's on the same holdout.
	MaxAUCDrop  float64 `yaml:"max_auc_drop"`
	MaxNDCGDrop float64 `yaml:"max_ndcg_drop"`

	// ShadowMinRequests is how many mirrored requests the candidate must
	// score in shadow; ShadowMaxDuration how long the shadow phase may
	// last waiting for them (fewer by then fails the gate);
	// ShadowCheckInterval how often the shadow report is read.
	ShadowMinRequests   int64         `yaml:"shadow_min_requests"`
	ShadowMaxDuration   time.Duration `yaml:"shadow_max_duration"`
	ShadowCheckInterval time.Duration `yaml:"shadow_check_interval"`
	// ShadowMinCorrelation is the least Pearson correlation of the
	// candidate's scores with production's on the same requests;
	// ShadowMaxLatencyP99 the highest p99 scoring latency and
	// ShadowMaxErrorRate the highest share of failed shadow scorings.
	ShadowMinCorrelation float64       `yaml:"shadow_min_correlation"`
	ShadowMaxLatencyP99  time.Duration `yaml:"shadow_max_latency_p99"`
	ShadowMaxErrorRate   float64       `yaml:"shadow_max_error_rate"`

	// RequireApproval holds every run before the canary until it gets the
	// approve signal (a run's parameters can still ask for it);
	// ApprovalTimeout is how long it waits before it gives up.
	RequireApproval bool          `yaml:"require_approval"`
	ApprovalTimeout time.Duration `yaml:"approval_timeout"`

	// CanarySteps are the canary's traffic shares in order, each in
	// (0, 1] and increasing; the last is normally 1. Each is held for
	// CanaryHold, its guardrails read every CanaryCheckInterval.
	CanarySteps         []float64     `yaml:"canary_steps"`
	CanaryHold          time.Duration `yaml:"canary_hold"`
	CanaryCheckInterval time.Duration `yaml:"canary_check_interval"`
	// CanaryMinRequests is how many requests the canary must serve in a
	// step before its guardrails are judged; fewer by the end of the hold
	// fail the run as inconclusive.
	CanaryMinRequests int64 `yaml:"canary_min_requests"`
	// CanaryMaxCTRDrop is the largest relative fall of the canary's online
	// CTR below production's (0..1); CanaryMaxErrorRate the highest share
	// of failed canary requests; CanaryMaxLatencyP99 its highest p99.
	CanaryMaxCTRDrop    float64       `yaml:"canary_max_ctr_drop"`
	CanaryMaxErrorRate  float64       `yaml:"canary_max_error_rate"`
	CanaryMaxLatencyP99 time.Duration `yaml:"canary_max_latency_p99"`
	// PostCutoverWatch is how long a run keeps watching the new production
	// version after the cutover: a rollback signal or a guardrail breach
	// within it rolls production back to the previous version. 0 ends the
	// run at the cutover.
	PostCutoverWatch time.Duration `yaml:"post_cutover_watch"`

	// Schedule is the cron spec (UTC: minute hour day-of-month month
	// day-of-week) of the Temporal Schedule that starts the daily retrain
	// (`adaptrec pipeline schedule`, which copies these settings into it).
	// Empty: no daily retrain unless --cron is given.
	Schedule string `yaml:"schedule"`
	// DriftSchedule is the cron spec of the Schedule that runs the
	// DriftCheck workflow, which starts a retrain when the features served
	// drifted from the production model's training set. Empty: no drift
	// schedule.
	DriftSchedule string `yaml:"drift_schedule"`
	// DriftWindow is how much archived serving traffic (PredictionEvents,
	// ending at the check's hour) a drift check compares with the
	// production model's training set. 0 disables the drift trigger.
	DriftWindow time.Duration `yaml:"drift_window"`
	// DriftMaxFlagged is how many value columns the skew report may flag
	// before a drift check starts a retrain: more start one.
	DriftMaxFlagged int `yaml:"drift_max_flagged"`
	// DriftMeanShift, DriftPSI and DriftDefaultRate are the skew report's
	// thresholds (features/skew.Thresholds: mean shift in training standard
	// deviations, PSI over the training deciles, change of the default
	// rate); 0 takes the report's default, a negative value disables the
	// check.
	DriftMeanShift   float64 `yaml:"drift_mean_shift"`
	DriftPSI         float64 `yaml:"drift_psi"`
	DriftDefaultRate float64 `yaml:"drift_default_rate"`
}

func defaultPipeline() Pipeline {
	return Pipeline{
		Model:                "ranker",
		TrainingWindow:       7 * 24 * time.Hour,
		MinRows:              1000,
		MaxRowChange:         0.5,
		MaxNullRate:          0.01,
		MaxPosition:          500,
		MaxStaleness:         2 * time.Hour,
		GPUScheduleToStart:   10 * time.Minute,
		TrainingTimeout:      4 * time.Hour,
		TrainingHeartbeat:    2 * time.Minute,
		TrainingAttempts:     3,
		MaxAUCDrop:           0.01,
		MaxNDCGDrop:          0.01,
		ShadowMinRequests:    1000,
		ShadowMaxDuration:    time.Hour,
		ShadowCheckInterval:  time.Minute,
		ShadowMinCorrelation: 0.5,
		ShadowMaxLatencyP99:  50 * time.Millisecond,
		ShadowMaxErrorRate:   0.01,
		ApprovalTimeout:      24 * time.Hour,
		CanarySteps:          []float64{0.05, 0.25, 0.5, 1},
		CanaryHold:           15 * time.Minute,
		CanaryCheckInterval:  time.Minute,
		CanaryMinRequests:    200,
		CanaryMaxCTRDrop:     0.1,
		CanaryMaxErrorRate:   0.01,
		CanaryMaxLatencyP99:  50 * time.Millisecond,
		PostCutoverWatch:     15 * time.Minute,
		Schedule:             "0 3 * * *",
		DriftSchedule:        "15 * * * *",
		DriftWindow:          6 * time.Hour,
		DriftMaxFlagged:      3,
	}
}

// validate reports invalid keys through bad(key, format, args...).
func (c Pipeline) validate(bad func(key, format string, args ...any)) {
	if c.Model == "" {
		bad("pipeline.model", "the registry model to retrain is required (default \"ranker\")")
	}
	if c.TrainingWindow < time.Hour {
		bad("pipeline.training_window", "must be >= 1h, got %s", c.TrainingWindow)
	}
	if c.SplitGap >= c.TrainingWindow {
		bad("pipeline.split_gap", "must be below training_window %s, got %s", c.TrainingWindow, c.SplitGap)
	}
	if c.MinRows < 1 {
		bad("pipeline.min_rows", "must be >= 1, got %d", c.MinRows)
	}
	fraction := func(key string, v float64) {
		if !(v >= 0 && v <= 1) {
			bad(key, "must be in [0, 1], got %v", v)
		}
	}
	fraction("pipeline.max_row_change", c.MaxRowChange)
	fraction("pipeline.max_null_rate", c.MaxNullRate)
	if c.MaxPosition < 1 {
		bad("pipeline.max_position", "must be >= 1, got %d", c.MaxPosition)
	}
	positive := func(key string, d time.Duration) {
		if d <= 0 {
			bad(key, "must be > 0, got %s", d)
		}
	}
	positive("pipeline.max_staleness", c.MaxStaleness)
	positive("pipeline.gpu_schedule_to_start", c.GPUScheduleToStart)
	positive("pipeline.training_timeout", c.TrainingTimeout)
	if c.TrainingHeartbeat < time.Second || c.TrainingHeartbeat >= c.TrainingTimeout {
		bad("pipeline.training_heartbeat", "must be >= 1s and below training_timeout %s, got %s", c.TrainingTimeout, c.TrainingHeartbeat)
	}
	if c.TrainingAttempts < 1 {
		bad("pipeline.training_attempts", "must be >= 1, got %d", c.TrainingAttempts)
	}
	fraction("pipeline.max_auc_drop", c.MaxAUCDrop)
	fraction("pipeline.max_ndcg_drop", c.MaxNDCGDrop)
	if c.ShadowMinRequests < 1 {
		bad("pipeline.shadow_min_requests", "must be >= 1, got %d", c.ShadowMinRequests)
	}
	positive("pipeline.shadow_max_duration", c.ShadowMaxDuration)
	positive("pipeline.shadow_check_interval", c.ShadowCheckInterval)
	if !(c.ShadowMinCorrelation >= -1 && c.ShadowMinCorrelation <= 1) {
		bad("pipeline.shadow_min_correlation", "must be in [-1, 1], got %v", c.ShadowMinCorrelation)
	}
	positive("pipeline.shadow_max_latency_p99", c.ShadowMaxLatencyP99)
	fraction("pipeline.shadow_max_error_rate", c.ShadowMaxErrorRate)
	positive("pipeline.approval_timeout", c.ApprovalTimeout)
	if len(c.CanarySteps) == 0 {
		bad("pipeline.canary_steps", "at least one step is required, e.g. [0.05, 0.25, 0.5, 1]")
	}
	for i, w := range c.CanarySteps {
		if !(w > 0 && w <= 1) || (i > 0 && w <= c.CanarySteps[i-1]) {
			bad("pipeline.canary_steps", "%v: every step must be in (0, 1] and above the one before it", c.CanarySteps)
			break
		}
	}
	positive("pipeline.canary_hold", c.CanaryHold)
	positive("pipeline.canary_check_interval", c.CanaryCheckInterval)
	if c.CanaryMinRequests < 1 {
		bad("pipeline.canary_min_requests", "must be >= 1, got %d", c.CanaryMinRequests)
	}
	fraction("pipeline.canary_max_ctr_drop", c.CanaryMaxCTRDrop)
	fraction("pipeline.canary_max_error_rate", c.CanaryMaxErrorRate)
	positive("pipeline.canary_max_latency_p99", c.CanaryMaxLatencyP99)
	if c.PostCutoverWatch < 0 {
		bad("pipeline.post_cutover_watch", "must be >= 0 (0 ends a run at the cutover), got %s", c.PostCutoverWatch)
	}
	// The settings below were added after runs had started with settings
	// that lack them: their zero values stay valid, so Check accepts those
	// runs' parameters.
	for _, k := range []struct{ key, spec string }{{"pipeline.schedule", c.Schedule}, {"pipeline.drift_schedule", c.DriftSchedule}} {
		if err := CheckCron(k.spec); err != nil {
			bad(k.key, "%v", err)
		}
	}
	if c.DriftWindow != 0 && c.DriftWindow < time.Hour {
		bad("pipeline.drift_window", "must be >= 1h (0 disables the drift trigger), got %s", c.DriftWindow)
	}
	if c.DriftMaxFlagged < 0 {
		bad("pipeline.drift_max_flagged", "must be >= 0, got %d", c.DriftMaxFlagged)
	}
	for _, k := range []struct {
		key string
		v   float64
	}{{"pipeline.drift_mean_shift", c.DriftMeanShift}, {"pipeline.drift_psi", c.DriftPSI}, {"pipeline.drift_default_rate", c.DriftDefaultRate}} {
		if math.IsNaN(k.v) || math.IsInf(k.v, 0) {
			bad(k.key, "must be a finite number (0: the skew report's default, negative: off), got %v", k.v)
		}
	}
}

// CheckCron checks a cron spec of a Temporal Schedule loosely: empty, a
// descriptor such as @daily or @every 1h, or five space-separated fields
// (minute hour day-of-month month day-of-week, UTC). Temporal parses the
// fields themselves when the Schedule is created.
func CheckCron(spec string) error {
	spec = strings.TrimSpace(spec)
	if spec == "" || strings.HasPrefix(spec, "@") {
		return nil
	}
	if n := len(strings.Fields(spec)); n != 5 {
		return fmt.Errorf("cron spec %q has %d fields, want 5 (minute hour day-of-month month day-of-week, UTC), e.g. \"0 3 * * *\"", spec, n)
	}
	return nil
}

// Check validates the pipeline settings alone, naming every bad key, e.g.
// those a workflow run received in its parameters.
func (c Pipeline) Check() error {
	var errs []error
	c.validate(func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("config key %s: %s", key, fmt.Sprintf(format, args...)))
	})
	return errors.Join(errs...)
}
