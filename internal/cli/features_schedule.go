package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/workflows"
)

// BatchFeaturesScheduleID names the Temporal Schedule of the daily batch lane.
const BatchFeaturesScheduleID = "batch-features-daily"

type featuresScheduleOptions struct {
	at     string
	delete bool
}

func newFeaturesScheduleCmd() *cobra.Command {
	var o featuresScheduleOptions
	cmd := &cobra.Command{
		Use:   "schedule [--at HH:MM] [--delete]",
		Short: "Create or update the Temporal Schedule that runs the batch lane daily",
		Long: `schedule creates (or updates) the Temporal Schedule ` + BatchFeaturesScheduleID + `, which starts the
BatchFeatures workflow every day at --at (UTC) with the data cutoff at the start of
that day: batch features are computed from the event log, validated, and made
current, and serving is told through FeatureSnapshotEvents. A run still going
when the next one is due makes the next one skip. --delete removes the schedule.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			return featuresSchedule(cmd.Context(), cmd.OutOrStdout(), cfg, o)
		},
	}
	cmd.Flags().StringVar(&o.at, "at", "02:00", "time of day (UTC, HH:MM) the batch lane runs")
	cmd.Flags().BoolVar(&o.delete, "delete", false, "delete the schedule")
	return cmd
}

func featuresSchedule(ctx context.Context, out io.Writer, cfg config.Config, o featuresScheduleOptions) error {
	at, err := time.Parse("15:04", o.at)
	if err != nil {
		return fmt.Errorf("--at %q: want a UTC time of day like 02:00", o.at)
	}
	tc, err := client.DialContext(ctx, client.Options{HostPort: cfg.Temporal.HostPort, Namespace: cfg.Temporal.Namespace,
		Logger: quietTemporalLogger{}})
	if err != nil {
		return fmt.Errorf("connect to Temporal at %s (config key temporal.host_port): %w", cfg.Temporal.HostPort, err)
	}
	defer tc.Close()
	schedules := tc.ScheduleClient()
	handle := schedules.GetHandle(ctx, BatchFeaturesScheduleID)
	if o.delete {
		if err := handle.Delete(ctx); err != nil {
			return fmt.Errorf("delete schedule %s: %w", BatchFeaturesScheduleID, err)
		}
		fmt.Fprintf(out, "deleted schedule %s\n", BatchFeaturesScheduleID)
		return nil
	}
	spec := client.ScheduleSpec{Calendars: []client.ScheduleCalendarSpec{{
		Hour:       []client.ScheduleRange{{Start: at.Hour()}},
		Minute:     []client.ScheduleRange{{Start: at.Minute()}},
		DayOfMonth: []client.ScheduleRange{{Start: 1, End: 31}},
		Month:      []client.ScheduleRange{{Start: 1, End: 12}},
		DayOfWeek:  []client.ScheduleRange{{Start: 0, End: 6}},
	}}}
	action := &client.ScheduleWorkflowAction{
		ID:        "batch-features",
		Workflow:  workflows.BatchFeatures,
		Args:      []any{workflows.BatchFeaturesParams{}},
		TaskQueue: activities.TaskQueueDefault,
	}
	verb := "created"
	_, err = schedules.Create(ctx, client.ScheduleOptions{
		ID: BatchFeaturesScheduleID, Spec: spec, Action: action,
		Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_SKIP, CatchupWindow: time.Hour,
	})
	if errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		verb = "updated"
		err = handle.Update(ctx, client.ScheduleUpdateOptions{DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			s := in.Description.Schedule
			s.Spec, s.Action = &spec, action
			if s.Policy == nil {
				s.Policy = &client.SchedulePolicies{}
			}
			s.Policy.Overlap = enumspb.SCHEDULE_OVERLAP_POLICY_SKIP
			return &client.ScheduleUpdate{Schedule: &s}, nil
		}})
	}
	if err != nil {
		return fmt.Errorf("schedule %s: %w", BatchFeaturesScheduleID, err)
	}
	fmt.Fprintf(out, "%s schedule %s: BatchFeatures every day at %s UTC on task queue %s\n  %s\n",
		verb, BatchFeaturesScheduleID, at.Format("15:04"), activities.TaskQueueDefault, scheduleLink(cfg.Temporal, BatchFeaturesScheduleID))
	return nil
}
