package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/internal/bench"
	"github.com/adaptrec/adaptrec/internal/devstack"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/sim"
	"github.com/adaptrec/adaptrec/trainer/job"
)

type benchTrainOptions struct {
	file       string
	asJSON     bool
	lookupTool func(string) (string, error)
	train      trainParamFlags
	bench.TrainOptions
}

func newBenchTrainCmd(asJSON *bool, lookupTool func(string) (string, error)) *cobra.Command {
	o := benchTrainOptions{lookupTool: lookupTool}
	cmd := &cobra.Command{
		Use:   "train",
		Short: "Seconds to train embeddings, ranker and export on 1,000,000 simulated events",
		Long: fmt.Sprintf(`train measures one training job end to end on a simulated log.

It starts an S3 server on a free port in a temporary directory and prepares the
data as production does, untimed: it simulates --events interactions in the
demo's world (%d items, %d users, %d days), writes them to the Parquet event log,
computes batch feature snapshots every %s with the batch job's code, and joins
every impression with the features as of its time into a point-in-time training
set (features/offline). prepare_seconds reports that part.

Then it runs the Go training job as 'adaptrec train' does and times it:
train_seconds covers reading the training set, the time split, training and
measuring the ranker, reading the positives and training the ALS item
embeddings, building the IVF index, exporting to ONNX and writing the artifacts
to S3, with the stages reported separately. Finally, untimed, it checks the
layout and registers it through the registry's ONNX Runtime validator.

The goal is %d s on a 2-core machine; meets_target says whether the run
reached it.`, bench.DefaultTrainItems, bench.DefaultTrainUsers, bench.DefaultTrainDays,
			bench.DefaultSnapshotEvery, bench.TrainTargetSeconds),
		Example: `  adaptrec bench train --json
  adaptrec bench train --events 200000 --epochs 2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.asJSON = *asJSON
			return benchTrain(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.file, "file", defaultFeaturesFile, "feature definitions (YAML)")
	f.IntVar(&o.Events, "events", bench.DefaultTrainEvents, "simulated events")
	f.IntVar(&o.Items, "items", bench.DefaultTrainItems, "items in the simulated catalogue")
	f.IntVar(&o.Users, "users", bench.DefaultTrainUsers, "simulated users")
	f.IntVar(&o.Days, "days", bench.DefaultTrainDays, "days of simulated history")
	o.train.register(f)
	return cmd
}

// benchTrainReport is the result `bench train` prints.
type benchTrainReport struct {
	Bench string `json:"bench"`
	bench.TrainResult
	TargetTrainSeconds float64 `json:"target_train_seconds"`
	MeetsTarget        bool    `json:"meets_target"`
	Mode               string  `json:"mode"`
}

func (o benchTrainOptions) validate() (job.Params, error) {
	params, err := o.train.params()
	errs := []error{err}
	if o.Events < 1 || int64(o.Events) > sim.MaxHistoryEvents {
		errs = append(errs, fmt.Errorf("--events must be in 1..%d, got %d", int64(sim.MaxHistoryEvents), o.Events))
	}
	if o.Items < 1 || o.Users < 1 {
		errs = append(errs, fmt.Errorf("--items %d and --users %d must be at least 1", o.Items, o.Users))
	}
	if o.Days < 2 {
		errs = append(errs, fmt.Errorf("--days must be at least 2 (snapshots every %s, a validation part after training), got %d", bench.DefaultSnapshotEvery, o.Days))
	}
	return params, errors.Join(errs...)
}

func benchTrain(ctx context.Context, stdout, stderr io.Writer, o benchTrainOptions) (err error) {
	params, err := o.validate()
	if err != nil {
		return err
	}
	o.Params, o.Seed = params, params.Seed // --seed seeds the world too
	fs, err := features.Load(o.file)
	if err != nil {
		return err
	}
	stderr = &lockedWriter{w: stderr}
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "bench train: "+format+"\n", args...) }
	opts := o.TrainOptions
	opts.Logf = logf
	opts.Progress = func(p job.Progress) { logf("%s", formatProgress(p)) }

	stack, stop, err := startBenchStack(ctx, "train", []devstack.Component{devstack.S3}, o.lookupTool, logf)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stop()) }()
	st, err := objstore.New(ctx, stack.Config().S3)
	if err != nil {
		return err
	}
	if err := st.EnsureBucket(ctx); err != nil {
		return err
	}
	res, err := bench.RunTrain(ctx, st, fs, opts)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("bench train interrupted: %w", err)
		}
		return fmt.Errorf("bench train: %w", err)
	}
	logf("trained on %d events in %.1fs (goal %d s), data prepared in %.1fs", res.Events, res.TrainSeconds, bench.TrainTargetSeconds, res.PrepareSeconds)
	return benchReport(stdout, o.asJSON, benchTrainReport{
		Bench:              "train",
		TrainResult:        res,
		TargetTrainSeconds: bench.TrainTargetSeconds,
		MeetsTarget:        res.TrainSeconds <= bench.TrainTargetSeconds,
		Mode:               "self-contained",
	})
}

// formatProgress is one progress line of a training job.
func formatProgress(p job.Progress) string {
	return fmt.Sprintf("%6.1fs  %-10s  %s", p.Elapsed.Round(100*time.Millisecond).Seconds(), p.Stage, p.Message)
}
