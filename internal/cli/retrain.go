package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/trainer/job"
	"github.com/adaptrec/adaptrec/workflows"
)

func init() { register(newRetrainCmd) }

// retrainOptions are the flags of retrain.
type retrainOptions struct {
	wait, approveManually, asJSON bool
	reason, actor                 string
	// poll is how often --wait asks for the run's progress.
	poll time.Duration
	now  time.Time
}

func newRetrainCmd() *cobra.Command {
	o := retrainOptions{poll: time.Second}
	cmd := &cobra.Command{
		Use:   "retrain [--wait] [--approve-manually] [--reason TEXT] [--json]",
		Short: "Start the retraining pipeline (RetrainWorkflow) for the configured model and print its id and Temporal UI link",
		Long: `retrain starts RetrainWorkflow on the task queue ` + activities.TaskQueueDefault + ` for the model of config key
pipeline.model, with the pipeline settings of the configuration (config key
pipeline): data contract over the training window, point-in-time training set,
training (GPU queue, CPU fallback), offline evaluation against production,
registration, shadow, optional approval, canary steps with guardrails, the
cutover and the post-cutover watch. Every gate that fails stops the run and
leaves production on the version it had.

The workflow id is retrain-<model>-<UTC time>; the command prints it with its
Temporal UI link (config key temporal.ui_url) and returns. --reason is recorded
in the run's parameters and memo (its history and the UI show it).

With --wait it follows the run, printing each change of its progress (stage,
training progress, shadow requests, canary step) to stderr, then the result:
version, outcome, reason and stage timings. The exit status is 1 when the run
did not promote its version, and the message names the gate and why.
'adaptrec pipeline status' follows runs too; 'adaptrec pipeline approve|abort|rollback'
steers them.`,
		Example: `  adaptrec retrain --reason "new items in the catalogue"
  adaptrec retrain --wait --approve-manually`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.check(); err != nil {
				return err
			}
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			tc, err := dialWorkflows(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer tc.Close()
			o.now = time.Now()
			return retrainRun(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), tc, cfg, o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.wait, "wait", false, "follow the run to its end, printing its progress, and exit 1 unless it promoted its version")
	f.BoolVar(&o.approveManually, "approve-manually", false, "hold the run before the canary until 'adaptrec pipeline approve' (whatever pipeline.require_approval says)")
	f.StringVar(&o.reason, "reason", "", "why the model is retrained: recorded with the run")
	f.BoolVar(&o.asJSON, "json", false, "print one JSON object on one line (with --wait: with the result)")
	f.StringVar(&o.actor, "actor", defaultActor(), "who starts the run, for the registry's change records")
	return cmd
}

func (o retrainOptions) check() error {
	var errs []error
	if strings.TrimSpace(o.actor) == "" {
		errs = append(errs, errors.New("--actor is empty: say who starts the run"))
	}
	if strings.ContainsAny(o.reason, "\n\r") {
		errs = append(errs, fmt.Errorf("--reason %q spans lines: give one line", o.reason))
	}
	return errors.Join(errs...)
}

// retrainParams builds the run's parameters from the configuration.
func retrainParams(cfg config.Config, o retrainOptions) workflows.RetrainParams {
	reason := strings.TrimSpace(o.reason)
	if reason == "" {
		reason = "manual: adaptrec retrain by " + o.actor
	}
	return workflows.RetrainParams{Settings: cfg.Pipeline, RequireApproval: o.approveManually,
		CodeVersion: job.CodeVersion(), Actor: o.actor, Reason: reason}
}

// retrainStarted is what retrain --json prints.
type retrainStarted struct {
	WorkflowID string `json:"workflow_id"`
	RunID      string `json:"run_id"`
	URL        string `json:"url"`
	Model      string `json:"model"`
	Reason     string `json:"reason"`
	// Result is the run's result, with --wait.
	Result *workflows.RetrainResult `json:"result,omitempty"`
	// Error is why the run failed, with --wait.
	Error string `json:"error,omitempty"`
}

func retrainRun(ctx context.Context, stdout, stderr io.Writer, tc client.Client, cfg config.Config, o retrainOptions) error {
	params := retrainParams(cfg, o)
	model := cfg.Pipeline.Model
	id := workflows.RetrainID(model, workflows.TriggerManual, o.now)
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: activities.TaskQueueDefault,
		Memo: workflows.RetrainMemo(model, params.Reason)}, workflows.RetrainWorkflow, params)
	if err != nil {
		return fmt.Errorf("start RetrainWorkflow %s: %w", id, err)
	}
	started := retrainStarted{WorkflowID: id, RunID: run.GetRunID(), URL: workflowLink(cfg.Temporal, id), Model: model, Reason: params.Reason}
	if !o.asJSON {
		fmt.Fprintf(stdout, "started RetrainWorkflow %s (run %s) for model %s\n  reason: %s\n  %s\n", id, run.GetRunID(), model, params.Reason, started.URL)
	}
	if !o.wait {
		if o.asJSON {
			return writeJSON(stdout, started)
		}
		return nil
	}
	res, runErr := retrainFollow(ctx, stderr, "", tc, run, o.poll)
	if ctx.Err() != nil {
		return fmt.Errorf("stopped waiting; run %s goes on: %s", id, started.URL)
	}
	failure := retrainFailure(id, res, runErr)
	if o.asJSON {
		started.Result = &res
		if failure != nil {
			started.Error = failure.Error()
		}
		if err := writeJSON(stdout, started); err != nil {
			return err
		}
		return failure
	}
	printRetrainResult(stdout, res)
	return failure
}

// retrainFailure turns a run's error into the command's: nil when the run
// promoted its version, else a message naming the gate and why.
func retrainFailure(id string, res workflows.RetrainResult, err error) error {
	if err == nil {
		return nil
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return fmt.Errorf("retrain %s did not promote %s: %s: %s; production is %s", id, orDash(res.Version), appErr.Type(), appErr.Message(), orDash(res.Production))
	}
	return fmt.Errorf("retrain %s: %w", id, err)
}

// retrainFollow waits for a run, writing each change of its progress to
// w (each line after indent), and returns its result (from the error's
// details for a failed run).
func retrainFollow(ctx context.Context, w io.Writer, indent string, tc client.Client, run client.WorkflowRun, poll time.Duration) (workflows.RetrainResult, error) {
	var res workflows.RetrainResult
	done := make(chan error, 1)
	go func() { done <- run.Get(ctx, &res) }()
	start := time.Now()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	last, notes := "", 0
	for {
		select {
		case err := <-done:
			var appErr *temporal.ApplicationError
			if errors.As(err, &appErr) {
				_ = appErr.Details(&res)
			}
			return res, err
		case <-tick.C:
			v, err := tc.QueryWorkflow(ctx, run.GetID(), run.GetRunID(), workflows.QueryProgress)
			if err != nil {
				continue // not picked up by a worker yet, or closing
			}
			var p workflows.RetrainProgress
			if v.Get(&p) != nil {
				continue
			}
			elapsed := time.Since(start).Seconds()
			if line := retrainProgressLine(p); line != last {
				last = line
				fmt.Fprintf(w, "%s%5.0fs  %s\n", indent, elapsed, line)
			}
			for ; notes < len(p.Notes); notes++ {
				fmt.Fprintf(w, "%s%5.0fs  note: %s\n", indent, elapsed, p.Notes[notes])
			}
		}
	}
}

// retrainProgressLine says where a run is, in one line.
func retrainProgressLine(p workflows.RetrainProgress) string {
	s := fmt.Sprintf("stage %d/%d %s", p.StageIndex+1, p.Stages, p.Stage)
	switch p.Stage {
	case workflows.StageTrain:
		if t := p.Training; t != nil {
			s += fmt.Sprintf(": job %s on %s, attempt %d, %.0f%%", t.JobID, t.TaskQueue, t.Attempt, 100*t.Fraction)
			if t.Stage != "" {
				s += " (" + t.Stage
				if t.Steps > 0 {
					s += fmt.Sprintf(" %d/%d", t.Step, t.Steps)
				}
				if t.Message != "" {
					s += ": " + t.Message
				}
				s += ")"
			}
		} else {
			s += ": waiting for a worker on " + activities.TaskQueueGPUTraining
		}
	case workflows.StageShadow:
		s += fmt.Sprintf(": %s scored %d of %d mirrored requests", p.Version, p.ShadowRequests, p.ShadowTarget)
	case workflows.StageApproval:
		s += fmt.Sprintf(": %s waits for 'adaptrec pipeline approve'", p.Version)
	case workflows.StageCanary:
		s += fmt.Sprintf(": %s on %s of traffic (step %d of %d)", p.Version, percent(p.CanaryWeight), p.CanaryStep, p.CanarySteps)
	case workflows.StageRegister, workflows.StageCutover, workflows.StageWatch, workflows.StageDone:
		if p.Version != "" {
			s += ": " + p.Version
		}
	}
	return s
}

// printRetrainResult writes a run's result: outcome, version, reason,
// what each stage measured, notes and stage timings.
func printRetrainResult(w io.Writer, res workflows.RetrainResult) {
	fmt.Fprintf(w, "outcome: %s\n", orDash(res.Outcome))
	fmt.Fprintf(w, "version: %s of %s; production %s (was %s)\n", orDash(res.Version), res.Model, orDash(res.Production), orDash(res.Previous))
	if res.Reason != "" {
		fmt.Fprintf(w, "reason: %s\n", res.Reason)
	}
	if !res.From.IsZero() {
		fmt.Fprintf(w, "data: [%s, %s): %d impressions, %d clicks\n", res.From.UTC().Format(time.RFC3339), res.To.UTC().Format(time.RFC3339), res.Data.Impressions, res.Data.Clicks)
	}
	if res.TrainingSet.ID != "" {
		fmt.Fprintf(w, "training set: %s (%d rows)\n", res.TrainingSet.ID, res.TrainingSet.Rows)
	}
	if res.Training.JobID != "" {
		fmt.Fprintf(w, "training: job %s on %s\n", res.Training.JobID, res.Training.TaskQueue)
	}
	if e := res.Evaluation; e.Rows > 0 {
		line := fmt.Sprintf("evaluation (position-debiased): AUC %.4f, NDCG@%d %.4f on %d holdout rows", e.Candidate.AUC, e.K, e.Candidate.NDCG, e.Rows)
		if e.Production != nil {
			line += fmt.Sprintf(" (production %s: AUC %.4f, NDCG %.4f)", e.ProductionVersion, e.Production.AUC, e.Production.NDCG)
		}
		fmt.Fprintln(w, line)
	}
	if s := res.Shadow; s != nil {
		fmt.Fprintf(w, "shadow: %d requests, score correlation %.3f, p99 %.1f ms, error rate %.4f\n", s.Requests, s.ScoreCorrelation, s.LatencyP99Ms, s.ErrorRate)
	}
	for _, c := range res.Canary {
		fmt.Fprintf(w, "canary %s: %d requests, CTR %.4f (production %.4f), p99 %.1f ms, held %.0fs\n", percent(c.Weight),
			c.Report.Canary.Requests, c.Report.Canary.CTR, c.Report.Production.CTR, c.Report.Canary.LatencyP99Ms, c.Seconds)
	}
	if res.ApprovedBy != "" {
		fmt.Fprintf(w, "approved by: %s\n", res.ApprovedBy)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if len(res.Timings) == 0 {
		return
	}
	fmt.Fprintln(w, "stage timings:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	total := 0.0
	for _, t := range res.Timings {
		fmt.Fprintf(tw, "  %s\t%7.1f s\n", t.Stage, t.Seconds)
		total += t.Seconds
	}
	fmt.Fprintf(tw, "  total\t%7.1f s\n", total)
	_ = tw.Flush()
}
