package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/workflows"
)

func init() { register(newPipelineCmd) }

// Temporal Schedules of the retraining pipeline, per model.
const (
	// RetrainScheduleIDPrefix + model is the daily retrain's Schedule.
	RetrainScheduleIDPrefix = "retrain-daily-"
	// DriftScheduleIDPrefix + model is the drift check's Schedule.
	DriftScheduleIDPrefix = "drift-check-"
)

// recentRuns is how many closed runs pipeline status lists.
const recentRuns = 10

func newPipelineCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "pipeline",
		Short: "The retraining pipeline: runs, their live progress, approval and stop signals, the daily and drift schedules",
		Long: `pipeline follows and steers RetrainWorkflow runs (started by 'adaptrec retrain', the
daily Schedule, or the drift check) for the model of config key pipeline.model:

  status        aliases, schedules, running runs with their live progress, recent runs
  approve       let a run waiting for approval go on to the canary
  abort         stop a run at any stage (it withdraws its version; production stays)
  rollback      stop a run in its canary, or roll production back while it watches
  schedule      create, update, pause or delete the daily retrain and drift-check Schedules
  drift-check   run one drift check now

Every command prints the workflow id and its Temporal UI link (config key
temporal.ui_url).`,
	}
	cmd.AddCommand(newPipelineStatusCmd(), newPipelineSignalCmd(workflows.SignalApprove), newPipelineSignalCmd(workflows.SignalAbort),
		newPipelineSignalCmd(workflows.SignalRollback), newPipelineScheduleCmd(), newPipelineDriftCheckCmd())
	return cmd
}

// dialWorkflows connects to Temporal for a command, naming the key and
// the fix when nothing answers.
func dialWorkflows(ctx context.Context, cfg config.Config) (client.Client, error) {
	tc, err := client.DialContext(ctx, client.Options{HostPort: cfg.Temporal.HostPort, Namespace: cfg.Temporal.Namespace, Logger: quietTemporalLogger{}})
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s (config key temporal.host_port): %w: start the local stack with `adaptrec dev up` (or `make demo`), or set temporal.host_port to your cluster's frontend",
			cfg.Temporal.HostPort, err)
	}
	return tc, nil
}

// workflowLink is a workflow's page in the Temporal UI (its latest run).
func workflowLink(t config.Temporal, id string) string {
	return fmt.Sprintf("%s/namespaces/%s/workflows/%s", strings.TrimRight(t.UIURL, "/"), url.PathEscape(t.Namespace), url.PathEscape(id))
}

// runLink is one run's history page in the Temporal UI.
func runLink(t config.Temporal, id, runID string) string {
	return workflowLink(t, id) + "/" + url.PathEscape(runID) + "/history"
}

// scheduleLink is a Schedule's page in the Temporal UI.
func scheduleLink(t config.Temporal, id string) string {
	return fmt.Sprintf("%s/namespaces/%s/schedules/%s", strings.TrimRight(t.UIURL, "/"), url.PathEscape(t.Namespace), url.PathEscape(id))
}

// pipelineRun is a RetrainWorkflow run as pipeline status prints it.
type pipelineRun struct {
	WorkflowID string                     `json:"workflow_id"`
	RunID      string                     `json:"run_id"`
	URL        string                     `json:"url"`
	Status     string                     `json:"status"`
	Stage      string                     `json:"stage,omitempty"`
	Version    string                     `json:"version,omitempty"`
	Outcome    string                     `json:"outcome,omitempty"`
	Reason     string                     `json:"reason,omitempty"`
	Start      time.Time                  `json:"start,omitzero"`
	Close      time.Time                  `json:"close,omitzero"`
	Progress   *workflows.RetrainProgress `json:"progress,omitempty"`
	// Live is the progress in one line.
	Live string `json:"live,omitempty"`
}

// scheduleStatus is a Schedule as pipeline status prints it.
type scheduleStatus struct {
	ID     string `json:"id"`
	URL    string `json:"url"`
	Exists bool   `json:"exists"`
	Paused bool   `json:"paused,omitempty"`
	Note   string `json:"note,omitempty"`
	// NextRun is the next time the Schedule starts its workflow.
	NextRun time.Time `json:"next_run,omitzero"`
	// Running are the workflows it started that still run.
	Running []string `json:"running,omitempty"`
}

// pipelineStatusReport is what pipeline status prints.
type pipelineStatusReport struct {
	Model string `json:"model"`
	// Aliases are the model's aliases; AliasesError says why they could
	// not be read.
	Aliases      *registry.Aliases `json:"aliases,omitempty"`
	AliasesError string            `json:"aliases_error,omitempty"`
	Schedules    []scheduleStatus  `json:"schedules"`
	Running      []pipelineRun     `json:"running"`
	Recent       []pipelineRun     `json:"recent"`
}

func newPipelineStatusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--json]",
		Short: "Show the model's aliases, the pipeline's Schedules, and running and recent retraining runs with their progress",
		Long: `status prints, for the model of config key pipeline.model: its aliases (production,
previous, canary with its weight, shadow) from the registry; the daily retrain
and drift-check Schedules with their next run; every running RetrainWorkflow run
with its stage, version and live progress (query "progress"); and the last ` + fmt.Sprint(recentRuns) + `
runs with their outcome, start and close times. Runs are found through Temporal's
visibility API (workflow type RetrainWorkflow); each comes with its workflow id
and Temporal UI link.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			tc, err := dialWorkflows(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer tc.Close()
			rep, err := pipelineStatus(cmd.Context(), tc, cfg)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), rep)
			}
			return printPipelineStatus(cmd.OutOrStdout(), rep, time.Now())
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object on one line")
	return cmd
}

func pipelineStatus(ctx context.Context, tc client.Client, cfg config.Config) (pipelineStatusReport, error) {
	model := cfg.Pipeline.Model
	rep := pipelineStatusReport{Model: model, Running: []pipelineRun{}, Recent: []pipelineRun{}}
	if store, err := objstore.New(ctx, cfg.S3); err != nil {
		rep.AliasesError = err.Error()
	} else if al, err := (&registry.Client{Store: store}).Aliases(ctx, model); err != nil {
		rep.AliasesError = err.Error()
	} else {
		rep.Aliases = &al
	}
	for _, id := range []string{RetrainScheduleIDPrefix + model, DriftScheduleIDPrefix + model} {
		s := scheduleStatus{ID: id, URL: scheduleLink(cfg.Temporal, id)}
		desc, err := tc.ScheduleClient().GetHandle(ctx, id).Describe(ctx)
		var notFound *serviceerror.NotFound
		switch {
		case errors.As(err, &notFound):
		case err != nil:
			return rep, fmt.Errorf("describe schedule %s: %w", id, err)
		default:
			s.Exists = true
			if st := desc.Schedule.State; st != nil {
				s.Paused, s.Note = st.Paused, st.Note
			}
			if len(desc.Info.NextActionTimes) > 0 {
				s.NextRun = desc.Info.NextActionTimes[0].UTC()
			}
			for _, r := range desc.Info.RunningWorkflows {
				s.Running = append(s.Running, r.WorkflowID)
			}
		}
		rep.Schedules = append(rep.Schedules, s)
	}
	runs, err := activities.ListRetrainRuns(ctx, tc, model, false, recentRuns+20)
	if err != nil {
		return rep, err
	}
	for _, r := range runs {
		pr := pipelineRun{WorkflowID: r.WorkflowID, RunID: r.RunID, URL: workflowLink(cfg.Temporal, r.WorkflowID), Status: r.Status,
			Stage: r.Stage, Version: r.Version, Outcome: r.Outcome, Reason: r.Reason, Start: r.Start, Close: r.Close}
		if r.Running() {
			if v, err := tc.QueryWorkflow(ctx, r.WorkflowID, r.RunID, workflows.QueryProgress); err == nil {
				var p workflows.RetrainProgress
				if v.Get(&p) == nil {
					pr.Progress, pr.Live = &p, retrainProgressLine(p)
					pr.Stage, pr.Version = p.Stage, p.Version
				}
			}
			rep.Running = append(rep.Running, pr)
		} else if len(rep.Recent) < recentRuns {
			rep.Recent = append(rep.Recent, pr)
		}
	}
	return rep, nil
}

func printPipelineStatus(out io.Writer, rep pipelineStatusReport, now time.Time) error {
	switch {
	case rep.Aliases != nil:
		fmt.Fprintf(out, "model %s: %s\n", rep.Model, aliasesSummary(*rep.Aliases))
	default:
		fmt.Fprintf(out, "model %s: aliases cannot be read: %s\n", rep.Model, rep.AliasesError)
	}
	fmt.Fprintln(out)
	for _, s := range rep.Schedules {
		what := "daily retrain"
		if strings.HasPrefix(s.ID, DriftScheduleIDPrefix) {
			what = "drift check"
		}
		switch {
		case !s.Exists:
			fmt.Fprintf(out, "%s: no schedule %s ('adaptrec pipeline schedule' creates it)\n", what, s.ID)
			continue
		case s.Paused:
			fmt.Fprintf(out, "%s: schedule %s PAUSED (%s)\n", what, s.ID, orDash(s.Note))
		case s.NextRun.IsZero():
			fmt.Fprintf(out, "%s: schedule %s, no run ahead\n", what, s.ID)
		default:
			fmt.Fprintf(out, "%s: schedule %s, next run %s (in %s)\n", what, s.ID, s.NextRun.Format(time.RFC3339), s.NextRun.Sub(now).Round(time.Minute))
		}
		if len(s.Running) > 0 {
			fmt.Fprintf(out, "  running: %s\n", strings.Join(s.Running, ", "))
		}
		fmt.Fprintf(out, "  %s\n", s.URL)
	}
	fmt.Fprintln(out)
	if len(rep.Running) == 0 {
		fmt.Fprintln(out, "no retraining run is running ('adaptrec retrain' starts one)")
	}
	for _, r := range rep.Running {
		fmt.Fprintf(out, "RUNNING %s since %s (%s)\n", r.WorkflowID, r.Start.UTC().Format(time.RFC3339), now.Sub(r.Start).Round(time.Second))
		if r.Live != "" {
			fmt.Fprintf(out, "  %s\n", r.Live)
		} else {
			fmt.Fprintf(out, "  stage %s, version %s (progress not answered)\n", orDash(r.Stage), orDash(r.Version))
		}
		if r.Reason != "" {
			fmt.Fprintf(out, "  reason: %s\n", r.Reason)
		}
		fmt.Fprintf(out, "  %s\n", r.URL)
	}
	if len(rep.Recent) == 0 {
		return nil
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKFLOW\tSTATUS\tSTAGE\tVERSION\tOUTCOME\tSTARTED\tCLOSED\tREASON")
	for _, r := range rep.Recent {
		closed := "-"
		if !r.Close.IsZero() {
			closed = r.Close.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.WorkflowID, r.Status, orDash(r.Stage), orDash(r.Version), orDash(r.Outcome),
			r.Start.UTC().Format(time.RFC3339), closed, orDash(truncate(r.Reason, 60)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out)
	for _, r := range rep.Recent {
		fmt.Fprintf(out, "%s  %s\n", r.WorkflowID, r.URL)
	}
	return nil
}

// truncate shortens s to n runes with an ellipsis.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// pipelineSignalOptions are the flags of approve, abort and rollback.
type pipelineSignalOptions struct {
	run    string
	reason string
	actor  string
}

func newPipelineSignalCmd(signal string) *cobra.Command {
	var o pipelineSignalOptions
	short := map[string]string{
		workflows.SignalApprove:  "Approve the running retraining run waiting for approval: it goes on to the canary",
		workflows.SignalAbort:    "Abort the running retraining run: it withdraws its version; production stays as it was",
		workflows.SignalRollback: "Roll the running retraining run back: it ends its canary, or rolls production back while it watches",
	}[signal]
	cmd := &cobra.Command{
		Use:   signal + " [--run ID] [--reason TEXT]",
		Short: short,
		Long: short + `.

It sends the "` + signal + `" signal to the running RetrainWorkflow run of the model of config key
pipeline.model, or to --run (a workflow id). Without --run exactly one run must be
running; with several the command names them. It prints the run's workflow id and
its Temporal UI link; 'adaptrec pipeline status' follows it.`,
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
			return pipelineSignal(cmd.Context(), cmd.OutOrStdout(), tc, cfg, signal, o)
		},
	}
	cmd.Flags().StringVar(&o.run, "run", "", "workflow id of the run (default: the only running one)")
	cmd.Flags().StringVar(&o.reason, "reason", "", "why: recorded in the run's history and result")
	cmd.Flags().StringVar(&o.actor, "actor", defaultActor(), "who sends it, for the run's history")
	return cmd
}

func (o pipelineSignalOptions) check() error {
	var errs []error
	if o.run != "" && (strings.TrimSpace(o.run) != o.run || strings.ContainsAny(o.run, " \t\n")) {
		errs = append(errs, fmt.Errorf("--run %q is not a workflow id (no spaces)", o.run))
	}
	if strings.TrimSpace(o.actor) == "" {
		errs = append(errs, errors.New("--actor is empty: say who sends the signal"))
	}
	return errors.Join(errs...)
}

// pickRun chooses the run a signal goes to: --run, else the only running
// one.
func pickRun(running []activities.RetrainRun, flag, model string) (activities.RetrainRun, error) {
	if flag != "" {
		for _, r := range running {
			if r.WorkflowID == flag {
				return r, nil
			}
		}
		return activities.RetrainRun{}, fmt.Errorf("--run %s is not a running retraining run of %s (running: %s)", flag, model, runIDs(running))
	}
	switch len(running) {
	case 0:
		return activities.RetrainRun{}, fmt.Errorf("no retraining run of %s is running ('adaptrec pipeline status' lists the recent ones)", model)
	case 1:
		return running[0], nil
	}
	return activities.RetrainRun{}, fmt.Errorf("%d retraining runs of %s are running: choose one with --run (%s)", len(running), model, runIDs(running))
}

func runIDs(runs []activities.RetrainRun) string {
	if len(runs) == 0 {
		return "none"
	}
	ids := make([]string, len(runs))
	for i, r := range runs {
		ids[i] = r.WorkflowID
		if r.Stage != "" {
			ids[i] += " (stage " + r.Stage + ")"
		}
	}
	return strings.Join(ids, ", ")
}

func pipelineSignal(ctx context.Context, out io.Writer, tc client.Client, cfg config.Config, signal string, o pipelineSignalOptions) error {
	model := cfg.Pipeline.Model
	running, err := activities.ListRetrainRuns(ctx, tc, model, true, 100)
	if err != nil {
		return err
	}
	run, err := pickRun(running, o.run, model)
	if err != nil {
		return err
	}
	var arg any = workflows.RetrainStop{By: o.actor, Reason: o.reason}
	if signal == workflows.SignalApprove {
		arg = workflows.RetrainApproval{By: o.actor, Comment: o.reason}
	}
	if err := tc.SignalWorkflow(ctx, run.WorkflowID, run.RunID, signal, arg); err != nil {
		return fmt.Errorf("signal %s to %s: %w", signal, run.WorkflowID, err)
	}
	fmt.Fprintf(out, "sent %s to %s (stage %s, version %s)\n", signal, run.WorkflowID, orDash(run.Stage), orDash(run.Version))
	if signal == workflows.SignalApprove && run.Stage != workflows.StageApproval {
		fmt.Fprintf(out, "  note: the run is not waiting for approval yet: the approval is kept and lets it through when it gets there\n")
	}
	fmt.Fprintf(out, "  %s\n", workflowLink(cfg.Temporal, run.WorkflowID))
	return nil
}
