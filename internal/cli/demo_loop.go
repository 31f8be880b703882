package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/consumers/feedback"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/version"
	"github.com/adaptrec/adaptrec/sim"
	"github.com/adaptrec/adaptrec/workflows"
)

// The feedback loop's windows in the demo and the pipeline benchmark: the
// canary's guardrails read the accuracy windows the feedback consumer
// emits, so with steps held for seconds rather than minutes the windows
// must be seconds too (consumers.feedback.window and emit_delay).
const (
	loopFeedbackWindow    = 2 * time.Second
	loopFeedbackEmitDelay = 2 * time.Second
)

// loopSplitGap is the gap between the training part and the holdout in
// the demo and the pipeline benchmark. The default, the attribution window
// (30 minutes), would drop every example since the users' tastes shifted
// minutes ago: the retrain would learn nothing of the shift.
const loopSplitGap = 5 * time.Second

// loopConsumersEnv is the environment of cmd/consumers in the demo and the
// pipeline benchmark: the feedback loop's short windows.
func loopConsumersEnv() []string {
	return []string{
		config.EnvPrefix + "CONSUMERS_FEEDBACK_WINDOW=" + loopFeedbackWindow.String(),
		config.EnvPrefix + "CONSUMERS_FEEDBACK_EMIT_DELAY=" + loopFeedbackEmitDelay.String(),
	}
}

// loopPipeline shortens the retraining settings p so that a run on the
// local stack takes minutes: GPU fallback after seconds, a shadow and two
// canary steps held for seconds, a short watch, a split gap of seconds
// (loopSplitGap). The canary's CTR guardrail and the error bounds keep
// their defaults. Three bounds are set for what the loop is: max_row_change
// is off (simulated live users send far more impressions per hour than the
// simulated history holds); the shadow's score correlation with production
// needs only 0.2, since a candidate that learnt the users' new tastes ranks
// differently from the production model it replaces (0.5 would fail the
// very candidate the loop wants: two runs measured 0.53 and 0.33), while a
// broken candidate's scores do not correlate at all; and the latency
// bounds allow for a two-core machine that also runs every component and
// the simulated users.
// The canary stops at half the traffic, so that the promotion really moves
// traffic from one version to the other.
func loopPipeline(p config.Pipeline) config.Pipeline {
	p.TrainingWindow = 48 * time.Hour
	p.SplitGap = loopSplitGap
	p.MaxRowChange = 1
	p.GPUScheduleToStart = 5 * time.Second
	p.TrainingTimeout, p.TrainingHeartbeat = 20*time.Minute, time.Minute
	p.ShadowMinRequests = 300
	p.ShadowMaxDuration = time.Minute
	p.ShadowCheckInterval = 3 * time.Second
	p.ShadowMinCorrelation = 0.2
	p.ShadowMaxLatencyP99 = 100 * time.Millisecond
	p.CanarySteps = []float64{0.25, 0.5}
	p.CanaryHold = 20 * time.Second
	p.CanaryCheckInterval = 5 * time.Second
	p.CanaryMinRequests = 200
	p.CanaryMaxLatencyP99 = 100 * time.Millisecond
	p.PostCutoverWatch = 10 * time.Second
	return p
}

// loopSettings lists, by configuration key, the settings loopPipeline and
// loopConsumersEnv change and the gates' thresholds, for the output.
func loopSettings(p config.Pipeline) [][2]string {
	steps := make([]string, len(p.CanarySteps))
	for i, w := range p.CanarySteps {
		steps[i] = fmt.Sprintf("%g", w)
	}
	return [][2]string{
		{"pipeline.training_window", p.TrainingWindow.String()},
		{"pipeline.split_gap", p.SplitGap.String() + " (simulated users click within the second of the impression: labels settle at once, and the newest minutes train)"},
		{"pipeline.max_auc_drop", fmt.Sprintf("%g", p.MaxAUCDrop)},
		{"pipeline.max_ndcg_drop", fmt.Sprintf("%g", p.MaxNDCGDrop)},
		{"pipeline.max_row_change", fmt.Sprintf("%g (off)", p.MaxRowChange)},
		{"pipeline.gpu_schedule_to_start", p.GPUScheduleToStart.String() + " (no GPU worker here: CPU training after it)"},
		{"pipeline.shadow_min_requests", fmt.Sprint(p.ShadowMinRequests)},
		{"pipeline.shadow_max_duration", p.ShadowMaxDuration.String()},
		{"pipeline.shadow_min_correlation", fmt.Sprintf("%g (a candidate that learnt new tastes ranks differently)", p.ShadowMinCorrelation)},
		{"pipeline.shadow_max_latency_p99", p.ShadowMaxLatencyP99.String() + " (two cores shared with every component and the simulated users)"},
		{"pipeline.shadow_max_error_rate", fmt.Sprintf("%g", p.ShadowMaxErrorRate)},
		{"pipeline.canary_steps", "[" + strings.Join(steps, ", ") + "]"},
		{"pipeline.canary_hold", p.CanaryHold.String()},
		{"pipeline.canary_min_requests", fmt.Sprint(p.CanaryMinRequests)},
		{"pipeline.canary_max_ctr_drop", fmt.Sprintf("%g", p.CanaryMaxCTRDrop)},
		{"pipeline.canary_max_error_rate", fmt.Sprintf("%g", p.CanaryMaxErrorRate)},
		{"pipeline.canary_max_latency_p99", p.CanaryMaxLatencyP99.String() + " (as the shadow's)"},
		{"pipeline.post_cutover_watch", p.PostCutoverWatch.String()},
		{"consumers.feedback.window", loopFeedbackWindow.String()},
		{"consumers.feedback.emit_delay", loopFeedbackEmitDelay.String()},
	}
}

// startRetrain starts RetrainWorkflow with settings (loopPipeline's),
// training up to now, and returns the run and its Temporal UI page. The
// reason is in the run's memo (workflows.RetrainMemo), which the Temporal
// UI and `adaptrec pipeline status` show.
func startRetrain(ctx context.Context, tc client.Client, cfg config.Config, settings config.Pipeline, id, actor, reason string) (client.WorkflowRun, string, error) {
	params := workflows.RetrainParams{
		Settings: settings,
		// Up to now rather than the start of the hour: the live users'
		// last minutes, after their tastes moved, are what the new model
		// should learn from.
		Cutoff:      time.Now().UTC().Truncate(time.Second),
		CodeVersion: version.Commit,
		Actor:       actor,
	}
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: id, TaskQueue: activities.TaskQueueDefault, WorkflowExecutionTimeout: 30 * time.Minute,
		Memo: workflows.RetrainMemo(params.Settings.Model, reason),
	}, workflows.RetrainWorkflow, params)
	if err != nil {
		return nil, "", fmt.Errorf("start RetrainWorkflow: %w", err)
	}
	return run, runLink(cfg.Temporal, id, run.GetRunID()), nil
}

// writeTimings prints a run's stage timings.
func writeTimings(w io.Writer, res workflows.RetrainResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	total := 0.0
	for _, t := range res.Timings {
		fmt.Fprintf(tw, "  %s\t%6.1f s\n", t.Stage, t.Seconds)
		total += t.Seconds
	}
	fmt.Fprintf(tw, "  total\t%6.1f s\n", total)
	tw.Flush()
}

// stageSeconds returns the run's stage timings by stage (a stage entered
// twice adds up).
func stageSeconds(res workflows.RetrainResult) map[string]float64 {
	m := make(map[string]float64, len(res.Timings))
	for _, t := range res.Timings {
		m[t.Stage] += t.Seconds
	}
	return m
}

// ctrRow is one line of the demo's CTR table.
type ctrRow struct {
	Phase, Version, Arm       string
	Requests, Impressions     int64
	Clicks                    int64
	CTR, ExpectedCTR          float64
	HasExpected, FromFeedback bool
}

// liveRows turns a live run's report into CTR rows of a phase.
func liveRows(phase string, rep *sim.LiveReport) []ctrRow {
	if rep == nil {
		return nil
	}
	rows := make([]ctrRow, 0, len(rep.Arms))
	for _, a := range rep.Arms {
		rows = append(rows, ctrRow{Phase: phase, Version: a.ModelVersion, Arm: a.ExperimentArm, Requests: a.Requests,
			Impressions: a.Impressions, Clicks: a.Clicks, CTR: a.CTR, ExpectedCTR: a.ExpectedCTR, HasExpected: true})
	}
	return rows
}

// feedbackRows turns the feedback loop's accuracy into CTR rows of a phase.
func feedbackRows(phase string, arms []feedback.ArmAccuracy) []ctrRow {
	rows := make([]ctrRow, 0, len(arms))
	for _, a := range arms {
		if a.Arm == "shadow" {
			continue // scored, never shown: no clicks to count
		}
		rows = append(rows, ctrRow{Phase: phase, Version: a.ModelVersion, Arm: a.Arm, Requests: a.Requests,
			Impressions: a.Impressions, Clicks: a.Clicks, CTR: a.CTR, FromFeedback: true})
	}
	return rows
}

// writeCTR prints CTR rows as a table.
func writeCTR(w io.Writer, rows []ctrRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  PHASE\tMODEL VERSION\tARM\tREQUESTS\tIMPRESSIONS\tCLICKS\tCTR\tEXPECTED CTR")
	for _, r := range rows {
		exp := "-"
		if r.HasExpected {
			exp = simPct(r.ExpectedCTR)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", r.Phase, simOrDash(r.Version), simOrDash(r.Arm),
			r.Requests, r.Impressions, r.Clicks, simPct(r.CTR), exp)
	}
	tw.Flush()
}

// versionCTR sums a live report's arms per model version: impressions,
// clicks and CTR.
func versionCTR(rep *sim.LiveReport, version string) (impressions, clicks int64, ctr float64) {
	if rep == nil {
		return 0, 0, 0
	}
	for _, a := range rep.Arms {
		if a.ModelVersion == version {
			impressions += a.Impressions
			clicks += a.Clicks
		}
	}
	if impressions > 0 {
		ctr = float64(clicks) / float64(impressions)
	}
	return impressions, clicks, ctr
}

// driftReason says why the demo retrains: the production version's CTR
// before and after the users' tastes shifted.
func driftReason(version string, before, after *sim.LiveReport, shiftAt time.Time, shifted float64) string {
	_, _, b := versionCTR(before, version)
	n, _, a := versionCTR(after, version)
	r := fmt.Sprintf("drift: %.0f%% of the users' tastes shifted at %s", 100*shifted, shiftAt.UTC().Format(time.TimeOnly))
	switch {
	case n == 0:
		return r + fmt.Sprintf("; %s served no impressions since", version)
	case b > 0:
		return r + fmt.Sprintf("; CTR of %s went from %s to %s (%+.0f%%)", version, simPct(b), simPct(a), 100*(a-b)/b)
	default:
		return r + fmt.Sprintf("; CTR of %s is %s since", version, simPct(a))
	}
}

// sortRows orders CTR rows by phase order given, then version and arm.
func sortRows(rows []ctrRow, phases []string) {
	slices.SortStableFunc(rows, func(a, b ctrRow) int {
		if c := slices.Index(phases, a.Phase) - slices.Index(phases, b.Phase); c != 0 {
			return c
		}
		if c := strings.Compare(a.Version, b.Version); c != 0 {
			return c
		}
		return strings.Compare(a.Arm, b.Arm)
	})
}
