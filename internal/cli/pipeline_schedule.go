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
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/trainer/job"
	"github.com/adaptrec/adaptrec/workflows"
)

// pipelineScheduleOptions are the flags of pipeline schedule.
type pipelineScheduleOptions struct {
	cron, driftCron         string
	pause, unpause, delete_ bool
	actor                   string
}

func newPipelineScheduleCmd() *cobra.Command {
	var o pipelineScheduleOptions
	cmd := &cobra.Command{
		Use:   "schedule [--cron SPEC] [--drift-cron SPEC] [--pause|--unpause|--delete]",
		Short: "Create or update the Temporal Schedules of the daily retrain and the drift check; pause, unpause or delete them",
		Long: `schedule creates (or updates) two Temporal Schedules for the model of config key
pipeline.model:

  ` + RetrainScheduleIDPrefix + `<model>  starts RetrainWorkflow at --cron (default config key
                        pipeline.schedule, "0 3 * * *": 03:00 UTC daily), workflow
                        ids retrain-<model>-daily-<time>
  ` + DriftScheduleIDPrefix + `<model>    starts DriftCheck at --drift-cron (default config key
                        pipeline.drift_schedule, hourly); a check whose skew report
                        flags more than pipeline.drift_max_flagged feature columns
                        starts a retrain with the drift as its reason. Not created
                        while pipeline.drift_window is 0 (the trigger is off).

Both skip a start while their previous run still runs (overlap policy skip). The
pipeline settings (config key pipeline) are copied into the Schedules: run the
command again after changing them. --pause and --unpause stop and resume both,
--delete removes both.`,
		Example: `  adaptrec pipeline schedule
  adaptrec pipeline schedule --cron "30 2 * * 1-5"
  adaptrec pipeline schedule --pause`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			if err := o.resolve(cmd, cfg.Pipeline); err != nil {
				return err
			}
			tc, err := dialWorkflows(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer tc.Close()
			return pipelineSchedule(cmd.Context(), cmd.OutOrStdout(), tc, cfg, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.cron, "cron", "", `cron spec of the daily retrain (UTC), e.g. "0 3 * * *" (default config pipeline.schedule)`)
	f.StringVar(&o.driftCron, "drift-cron", "", `cron spec of the drift check (UTC) (default config pipeline.drift_schedule)`)
	f.BoolVar(&o.pause, "pause", false, "pause both schedules")
	f.BoolVar(&o.unpause, "unpause", false, "resume both schedules")
	f.BoolVar(&o.delete_, "delete", false, "delete both schedules")
	f.StringVar(&o.actor, "actor", defaultActor(), "who changes the schedules, for their notes")
	return cmd
}

// resolve checks the flags and fills the cron specs from the settings.
func (o *pipelineScheduleOptions) resolve(cmd *cobra.Command, p config.Pipeline) error {
	var errs []error
	var modes []string
	for _, m := range []struct {
		name string
		on   bool
	}{{"--pause", o.pause}, {"--unpause", o.unpause}, {"--delete", o.delete_}} {
		if m.on {
			modes = append(modes, m.name)
		}
	}
	if len(modes) > 1 {
		errs = append(errs, fmt.Errorf("%s: give at most one", strings.Join(modes, " and ")))
	}
	for _, fl := range []string{"cron", "drift-cron"} {
		if cmd.Flags().Changed(fl) && len(modes) > 0 {
			errs = append(errs, fmt.Errorf("--%s sets a spec when creating or updating, not with %s", fl, modes[0]))
		}
	}
	if !cmd.Flags().Changed("cron") {
		o.cron = p.Schedule
	} else if strings.TrimSpace(o.cron) == "" {
		errs = append(errs, errors.New(`--cron is empty: give a cron spec such as "0 3 * * *"`))
	}
	if !cmd.Flags().Changed("drift-cron") {
		o.driftCron = p.DriftSchedule
	} else if strings.TrimSpace(o.driftCron) == "" {
		errs = append(errs, errors.New(`--drift-cron is empty: give a cron spec such as "15 * * * *"`))
	}
	if err := config.CheckCron(o.cron); err != nil {
		errs = append(errs, fmt.Errorf("--cron: %w", err))
	}
	if err := config.CheckCron(o.driftCron); err != nil {
		errs = append(errs, fmt.Errorf("--drift-cron: %w", err))
	}
	if len(modes) == 0 && strings.TrimSpace(o.cron) == "" {
		errs = append(errs, errors.New("config key pipeline.schedule is empty: give --cron"))
	}
	if strings.TrimSpace(o.actor) == "" {
		errs = append(errs, errors.New("--actor is empty: say who changes the schedules"))
	}
	return errors.Join(errs...)
}

func pipelineSchedule(ctx context.Context, out io.Writer, tc client.Client, cfg config.Config, o pipelineScheduleOptions) error {
	p := cfg.Pipeline
	sc := tc.ScheduleClient()
	ids := []string{RetrainScheduleIDPrefix + p.Model, DriftScheduleIDPrefix + p.Model}
	if o.pause || o.unpause || o.delete_ {
		for _, id := range ids {
			h := sc.GetHandle(ctx, id)
			var err error
			verb := "paused"
			note := fmt.Sprintf("by %s at %s", o.actor, time.Now().UTC().Format(time.RFC3339))
			switch {
			case o.pause:
				err = h.Pause(ctx, client.SchedulePauseOptions{Note: "paused " + note})
			case o.unpause:
				verb = "unpaused"
				err = h.Unpause(ctx, client.ScheduleUnpauseOptions{Note: "unpaused " + note})
			default:
				verb = "deleted"
				err = h.Delete(ctx)
			}
			var notFound *serviceerror.NotFound
			if errors.As(err, &notFound) {
				fmt.Fprintf(out, "no schedule %s: nothing %s\n", id, verb)
				continue
			}
			if err != nil {
				return fmt.Errorf("schedule %s: %w", id, err)
			}
			fmt.Fprintf(out, "%s schedule %s\n  %s\n", verb, id, scheduleLink(cfg.Temporal, id))
		}
		return nil
	}

	retrainID := ids[0]
	reason := fmt.Sprintf("daily retrain: schedule %s (%s UTC)", retrainID, o.cron)
	retrain := &client.ScheduleWorkflowAction{
		ID:        workflows.RetrainID(p.Model, workflows.TriggerDaily, time.Time{}),
		Workflow:  workflows.RetrainWorkflow,
		Args:      []any{workflows.RetrainParams{Settings: p, CodeVersion: job.CodeVersion(), Actor: "adaptrec/schedule " + retrainID, Reason: reason}},
		TaskQueue: activities.TaskQueueDefault,
		Memo:      workflows.RetrainMemo(p.Model, reason),
	}
	verb, err := upsertSchedule(ctx, sc, retrainID, o.cron, retrain)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s schedule %s: RetrainWorkflow of %s at %q (UTC), overlap skip, on task queue %s\n  %s\n",
		verb, retrainID, p.Model, o.cron, activities.TaskQueueDefault, scheduleLink(cfg.Temporal, retrainID))

	driftID := ids[1]
	if p.DriftWindow <= 0 || strings.TrimSpace(o.driftCron) == "" {
		err := sc.GetHandle(ctx, driftID).Delete(ctx)
		var notFound *serviceerror.NotFound
		if err != nil && !errors.As(err, &notFound) {
			return fmt.Errorf("delete schedule %s: %w", driftID, err)
		}
		fmt.Fprintf(out, "drift trigger off (pipeline.drift_window %s, drift schedule %q): no schedule %s\n", p.DriftWindow, o.driftCron, driftID)
		return nil
	}
	drift := &client.ScheduleWorkflowAction{
		ID:        DriftScheduleIDPrefix + p.Model,
		Workflow:  workflows.DriftCheck,
		Args:      []any{workflows.DriftCheckParams{Settings: p, CodeVersion: job.CodeVersion(), Actor: "adaptrec/schedule " + driftID}},
		TaskQueue: activities.TaskQueueDefault,
	}
	verb, err = upsertSchedule(ctx, sc, driftID, o.driftCron, drift)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s schedule %s: DriftCheck of %s at %q (UTC) over the last %s of predictions; retrains when more than %d columns are flagged\n  %s\n",
		verb, driftID, p.Model, o.driftCron, p.DriftWindow, p.DriftMaxFlagged, scheduleLink(cfg.Temporal, driftID))
	return nil
}

// upsertSchedule creates the Schedule id, or updates its spec and action,
// with overlap policy skip; it returns "created" or "updated".
func upsertSchedule(ctx context.Context, sc client.ScheduleClient, id, cron string, action *client.ScheduleWorkflowAction) (string, error) {
	spec := client.ScheduleSpec{CronExpressions: []string{cron}}
	_, err := sc.Create(ctx, client.ScheduleOptions{
		ID: id, Spec: spec, Action: action,
		Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP, CatchupWindow: time.Hour,
	})
	if err == nil {
		return "created", nil
	}
	if !errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		return "", fmt.Errorf("create schedule %s (cron %q): %w", id, cron, err)
	}
	err = sc.GetHandle(ctx, id).Update(ctx, client.ScheduleUpdateOptions{DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
		s := in.Description.Schedule
		s.Spec, s.Action = &spec, action
		if s.Policy == nil {
			s.Policy = &client.SchedulePolicies{}
		}
		s.Policy.Overlap = enumspb.SCHEDULE_OVERLAP_POLICY_SKIP
		return &client.ScheduleUpdate{Schedule: &s}, nil
	}})
	if err != nil {
		return "", fmt.Errorf("update schedule %s (cron %q): %w", id, cron, err)
	}
	return "updated", nil
}

func newPipelineDriftCheckCmd() *cobra.Command {
	var wait, asJSON bool
	cmd := &cobra.Command{
		Use:   "drift-check [--wait] [--json]",
		Short: "Run one drift check now: the skew report of production, and a retrain when it is beyond the thresholds",
		Long: `drift-check starts the DriftCheck workflow (what the drift-check Schedule runs)
for the model of config key pipeline.model: it compares the production version's
training set with the features served over the last pipeline.drift_window of
archived PredictionEvents (the report 'adaptrec features skew' prints) and, when
more than pipeline.drift_max_flagged value columns are flagged, starts a
RetrainWorkflow run whose reason lists them, unless a retraining run is already
running. The retrain's workflow id is fixed per hour (retrain-<model>-drift-
<yyyymmddThhZ>), so checks repeated within an hour start at most one.

It prints the workflow id and Temporal UI link; with --wait it prints what the
check found and did.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			if cfg.Pipeline.DriftWindow <= 0 {
				return errors.New("config key pipeline.drift_window is 0: the drift trigger is off (set it, e.g. 6h)")
			}
			tc, err := dialWorkflows(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			defer tc.Close()
			return pipelineDriftCheck(cmd.Context(), cmd.OutOrStdout(), tc, cfg, wait, asJSON, time.Now())
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the check and print its report")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object on one line")
	return cmd
}

func pipelineDriftCheck(ctx context.Context, out io.Writer, tc client.Client, cfg config.Config, wait, asJSON bool, now time.Time) error {
	p := cfg.Pipeline
	id := DriftScheduleIDPrefix + p.Model + "-" + now.UTC().Format("20060102T150405Z")
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: activities.TaskQueueDefault, WorkflowExecutionTimeout: time.Hour},
		workflows.DriftCheck, workflows.DriftCheckParams{Settings: p, CodeVersion: job.CodeVersion(), Actor: defaultActor()})
	if err != nil {
		return fmt.Errorf("start DriftCheck: %w", err)
	}
	link := workflowLink(cfg.Temporal, id)
	if !asJSON {
		fmt.Fprintf(out, "started DriftCheck %s (run %s)\n  %s\n", id, run.GetRunID(), link)
	}
	if !wait {
		if asJSON {
			return writeJSON(out, map[string]string{"workflow_id": id, "run_id": run.GetRunID(), "url": link})
		}
		return nil
	}
	var res workflows.DriftCheckResult
	if err := run.Get(ctx, &res); err != nil {
		return fmt.Errorf("DriftCheck %s: %w", id, err)
	}
	if asJSON {
		v := struct {
			WorkflowID string                     `json:"workflow_id"`
			RunID      string                     `json:"run_id"`
			URL        string                     `json:"url"`
			RetrainURL string                     `json:"retrain_url,omitempty"`
			Result     workflows.DriftCheckResult `json:"result"`
		}{WorkflowID: id, RunID: run.GetRunID(), URL: link, Result: res}
		if res.Retrain != "" {
			v.RetrainURL = workflowLink(cfg.Temporal, res.Retrain)
		}
		return writeJSON(out, v)
	}
	return printDriftCheck(out, cfg.Temporal, res)
}

func printDriftCheck(out io.Writer, t config.Temporal, res workflows.DriftCheckResult) error {
	r := res.Report
	if r.Production != "" {
		fmt.Fprintf(out, "production %s (training set %s) vs %d sampled predictions of [%s, %s): %d of %d value columns flagged, %d judged\n",
			r.Production, r.TrainingSet, r.Served.Sampled, r.From.UTC().Format(time.RFC3339), r.To.UTC().Format(time.RFC3339), r.Flagged, r.Columns, r.Judged)
	}
	if len(r.Features) > 0 {
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  COLUMN\tSHIFT (SD)\tPSI\tDEFAULT Δ\tFLAGS")
		for _, f := range r.Features {
			fmt.Fprintf(tw, "  %s\t%.2f\t%.3f\t%+.3f\t%s\n", f.Name, f.MeanShift, f.PSI, f.DefaultRateDiff, strings.Join(f.Reasons, ","))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(out, res.Note)
	if res.Retrain != "" {
		fmt.Fprintf(out, "retrain %s (run %s)\n  reason: %s\n  %s\n", res.Retrain, res.RetrainRunID, res.Reason, workflowLink(t, res.Retrain))
	}
	return nil
}
