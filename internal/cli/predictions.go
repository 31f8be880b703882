package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/features/online"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/predictions"
	"github.com/adaptrec/adaptrec/workflows"
)

func init() { register(newPredictionsCmd) }

func newPredictionsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "predictions",
		Short: "Batch predictions: precompute every active user's top K, inspect, roll back",
		Long: `Batch predictions are every active user's top K items, precomputed by the
BatchPredictions workflow with the production model through the serving pipeline
and stored in Redis as numbered versions (predictions_vN). Serving answers from
them when it cannot rank (level BATCH_PREDICTIONS), before popularity.

A run writes a new version, validates it (coverage of the active users, no NaN,
infinite or negative score, no empty, over-long or duplicated list, user count
against the current version) and only then flips the pointer, keeping the
replaced version for 'adaptrec predictions rollback'. Settings: config key
predictions (adaptrec config keys).`,
	}
	cmd.AddCommand(newPredictionsRunCmd(), newPredictionsStatusCmd(), newPredictionsRollbackCmd())
	return cmd
}

type predictionsRunOptions struct {
	asOf        string
	k           int
	window      time.Duration
	minCoverage float64
	id          string
	wait        bool
	now         time.Time
}

func newPredictionsRunCmd() *cobra.Command {
	var o predictionsRunOptions
	cmd := &cobra.Command{
		Use:   "run [--wait] [--k K] [--as-of TIME]",
		Short: "Start the BatchPredictions workflow (a worker runs it) and print its id and Temporal UI link",
		Long: `run starts the BatchPredictions workflow on the task queue ` + activities.TaskQueueDefault + `: the users
with an interaction in the archived event log during the active window before
--as-of are ranked with the production model, written to a new version, validated,
and made current. It prints the workflow id and its Temporal UI link (config key
temporal.ui_url) and returns; with --wait it follows the run and prints the
outcome, exiting 1 when the version was rejected (the pointer then did not move).
Flags left unset take the worker's configuration (config key predictions).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			o.now = time.Now()
			return predictionsRun(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), cfg, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.asOf, "as-of", "", "end of the active window: RFC 3339, a UTC date, now, or relative (-1h); default the run's start")
	f.IntVar(&o.k, "k", 0, "items per user, 1..500 (default config predictions.k)")
	f.DurationVar(&o.window, "active-window", 0, "how far back an interaction makes a user active (default config predictions.active_window)")
	f.Float64Var(&o.minCoverage, "min-coverage", 0, "least share of active users that must get a list, (0, 1] (default config predictions.min_coverage)")
	f.StringVar(&o.id, "id", "", "workflow id (default batch-predictions-<UTC time>)")
	f.BoolVar(&o.wait, "wait", false, "wait for the run to finish, printing its progress")
	return cmd
}

// predictionsParams checks the flags and builds the workflow's parameters.
func predictionsParams(o predictionsRunOptions) (workflows.BatchPredictionsParams, error) {
	var p workflows.BatchPredictionsParams
	if o.asOf != "" {
		t, err := eventsParseTime("as-of", o.asOf, o.now)
		if err != nil {
			return p, err
		}
		if t.After(o.now) {
			return p, fmt.Errorf("--as-of %s is in the future", t.Format(time.RFC3339))
		}
		p.AsOf = t
	}
	switch {
	case o.k < 0 || o.k > 500:
		return p, fmt.Errorf("--k %d: want 1..500 (0: config predictions.k)", o.k)
	case o.window < 0 || (o.window > 0 && o.window < time.Hour):
		return p, fmt.Errorf("--active-window %s: want at least 1h (0: config predictions.active_window)", o.window)
	case o.minCoverage < 0 || o.minCoverage > 1:
		return p, fmt.Errorf("--min-coverage %v: want a share in (0, 1] (0: config predictions.min_coverage)", o.minCoverage)
	}
	p.K, p.ActiveWindow, p.MinCoverage = o.k, o.window, o.minCoverage
	return p, nil
}

func predictionsRun(ctx context.Context, stdout, stderr io.Writer, cfg config.Config, o predictionsRunOptions) error {
	params, err := predictionsParams(o)
	if err != nil {
		return err
	}
	id := o.id
	if id == "" {
		id = "batch-predictions-" + o.now.UTC().Format("20060102T150405Z")
	}
	tc, err := client.DialContext(ctx, client.Options{HostPort: cfg.Temporal.HostPort, Namespace: cfg.Temporal.Namespace, Logger: quietTemporalLogger{}})
	if err != nil {
		return fmt.Errorf("connect to Temporal at %s (config key temporal.host_port): %w", cfg.Temporal.HostPort, err)
	}
	defer tc.Close()
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: activities.TaskQueueDefault}, workflows.BatchPredictions, params)
	if err != nil {
		return fmt.Errorf("start BatchPredictions: %w", err)
	}
	runURL := runLink(cfg.Temporal, id, run.GetRunID())
	fmt.Fprintf(stdout, "started BatchPredictions %s (run %s)\n  %s\n", id, run.GetRunID(), runURL)
	if !o.wait {
		return nil
	}
	var res workflows.BatchPredictionsResult
	done := make(chan error, 1)
	go func() { done <- run.Get(ctx, &res) }()
	started := time.Now()
	tick := time.NewTicker(3 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			var appErr *temporal.ApplicationError
			if errors.As(err, &appErr) && appErr.Type() == workflows.ErrTypePredictionsRejected {
				_ = appErr.Details(&res)
				printPredictionsRun(stdout, res)
				return fmt.Errorf("%s was rejected; the current version still serves: %s", res.Computed.Meta.Name(), predictions.Describe(res.Computed.Meta.Failures))
			}
			if err != nil {
				return fmt.Errorf("BatchPredictions %s: %w", id, err)
			}
			printPredictionsRun(stdout, res)
			return nil
		case <-tick.C:
			fmt.Fprintf(stderr, "%5.0fs  %s\n", time.Since(started).Seconds(), predictionsProgress(ctx, tc, id, run.GetRunID()))
		}
	}
}

// predictionsProgress describes a running workflow: its stage and the last
// heartbeat of ComputePredictions.
func predictionsProgress(ctx context.Context, tc client.Client, id, runID string) string {
	stage := "running"
	if v, err := tc.QueryWorkflow(ctx, id, runID, workflows.QueryStage); err == nil {
		_ = v.Get(&stage)
	}
	desc, err := tc.DescribeWorkflowExecution(ctx, id, runID)
	if err != nil {
		return stage
	}
	for _, pa := range desc.GetPendingActivities() {
		var p activities.PredictionsProgress
		if pa.GetHeartbeatDetails() == nil || converter.GetDefaultDataConverter().FromPayloads(pa.GetHeartbeatDetails(), &p) != nil {
			continue
		}
		if p.Stage == "scanning" {
			return fmt.Sprintf("%s: %d events read, %d active users so far", stage, p.Events, p.Users)
		}
		return fmt.Sprintf("%s: %d of %d users ranked, %d lists written", stage, p.Ranked, p.Users, p.Written)
	}
	return stage
}

func printPredictionsRun(w io.Writer, res workflows.BatchPredictionsResult) {
	c := res.Computed
	m := c.Meta
	fmt.Fprintf(w, "%s by %s@%s: %d lists of up to %d items for %d active users (%d events read in %.1fs; ranked and written in %.1fs)\n",
		m.Name(), m.Model, m.ModelVersion, m.Users, m.K, m.ActiveUsers, c.Events, c.ScanSeconds, c.RankSeconds)
	if c.NoList > 0 || c.Errors > 0 {
		fmt.Fprintf(w, "  %d users had nothing to rank, %d failed to rank", c.NoList, c.Errors)
		if c.FirstError != "" {
			fmt.Fprintf(w, " (first: %s)", c.FirstError)
		}
		fmt.Fprintln(w)
	}
	for _, f := range m.Failures {
		fmt.Fprintf(w, "  REJECTED %s\n", f)
	}
	if p := res.Published.Pointer; p.Current.Version > 0 {
		prev := "-"
		if p.Previous != nil {
			prev = p.Previous.Name()
		}
		fmt.Fprintf(w, "current: %s (previous %s, the rollback target)\n", p.Current.Name(), prev)
		if len(res.Published.Pruned) > 0 {
			fmt.Fprintf(w, "  deleted old versions %v (%d keys)\n", res.Published.Pruned, res.Published.PrunedKeys)
		}
		if res.Published.PruneError != "" {
			fmt.Fprintf(w, "  WARNING: pruning old versions failed (the next run retries): %s\n", res.Published.PruneError)
		}
	}
}

func newPredictionsStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the current and previous batch-predictions versions and every version kept",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			return predictionsStatus(cmd.Context(), cmd.OutOrStdout(), cfg)
		},
	}
}

func predictionsStore(cfg config.Config) (*predictions.Store, func(), error) {
	rdb := online.NewClient(cfg.Redis)
	s, err := predictions.NewStore(rdb, predictions.Options{KeyPrefix: cfg.Features.KeyPrefix, Pipeline: cfg.Predictions.WritePipeline})
	if err != nil {
		rdb.Close()
		return nil, nil, err
	}
	return s, func() { rdb.Close() }, nil
}

func predictionsStatus(ctx context.Context, out io.Writer, cfg config.Config) error {
	s, done, err := predictionsStore(cfg)
	if err != nil {
		return err
	}
	defer done()
	ptr, err := s.Current(ctx)
	switch {
	case errors.Is(err, predictions.ErrNotFound):
		fmt.Fprintln(out, "no batch predictions are current yet (adaptrec predictions run)")
	case err != nil:
		return fmt.Errorf("redis %s (config key redis.addr): %w", cfg.Redis.Addr, err)
	default:
		how := "flipped"
		if ptr.RolledBack {
			how = "rolled back"
		}
		fmt.Fprintf(out, "current: %s by %s@%s, %d users, K %d, created %s (%s %s)\n", ptr.Current.Name(), ptr.Current.Model, ptr.Current.ModelVersion,
			ptr.Current.Users, ptr.Current.K, ptr.Current.CreatedAt.Format(time.RFC3339), how, ptr.UpdatedAt.Format(time.RFC3339))
		if ptr.Previous != nil {
			fmt.Fprintf(out, "previous: %s by %s@%s, %d users (adaptrec predictions rollback makes it current)\n",
				ptr.Previous.Name(), ptr.Previous.Model, ptr.Previous.ModelVersion, ptr.Previous.Users)
		}
	}
	versions, err := s.Versions(ctx)
	if err != nil {
		return err
	}
	if len(versions) == 0 {
		return nil
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tSTATE\tMODEL VERSION\tUSERS\tACTIVE\tK\tCREATED")
	for _, v := range versions {
		m, err := s.Meta(ctx, v)
		if errors.Is(err, predictions.ErrNotFound) {
			fmt.Fprintf(tw, "%s\tincomplete (being written or abandoned)\t-\t-\t-\t-\t-\n", predictions.VersionName(v))
			continue
		}
		if err != nil {
			return err
		}
		state := "complete"
		switch {
		case v == ptr.Current.Version:
			state = "current"
		case ptr.Previous != nil && v == ptr.Previous.Version:
			state = "previous"
		case m.Rejected():
			state = "rejected: " + predictions.Describe(m.Failures)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\n", m.Name(), state, m.ModelVersion, m.Users, m.ActiveUsers, m.K, m.CreatedAt.Format(time.RFC3339))
	}
	return tw.Flush()
}

func newPredictionsRollbackCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rollback",
		Short: "Make the previous batch-predictions version current again",
		Long: `rollback swaps the current and the previous version in one atomic
compare-and-swap of the pointer (it fails, changing nothing, if the pointer moves
meanwhile). The replaced version becomes the previous one: a second rollback
rolls forward again. Serving switches within config predictions.pointer_refresh.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			return predictionsRollback(cmd.Context(), cmd.OutOrStdout(), cfg)
		},
	}
}

func predictionsRollback(ctx context.Context, out io.Writer, cfg config.Config) error {
	s, done, err := predictionsStore(cfg)
	if err != nil {
		return err
	}
	defer done()
	p, err := s.Rollback(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "rolled back: %s (by %s@%s, %d users) is current; %s is the previous version\n",
		p.Current.Name(), p.Current.Model, p.Current.ModelVersion, p.Current.Users, p.Previous.Name())
	return nil
}
