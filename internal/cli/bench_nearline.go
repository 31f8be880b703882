package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/online"
	"github.com/adaptrec/adaptrec/internal/bench"
	"github.com/adaptrec/adaptrec/internal/devstack"
	"github.com/adaptrec/adaptrec/sim"
)

type benchNearlineOptions struct {
	file       string
	asJSON     bool
	lookupTool func(string) (string, error)
	bench.NearlineOptions
}

func newBenchNearlineCmd(asJSON *bool, lookupTool func(string) (string, error)) *cobra.Command {
	o := benchNearlineOptions{lookupTool: lookupTool}
	cmd := &cobra.Command{
		Use:   "nearline",
		Short: "Events/s and freshness from producer through Kafka and the nearline consumer to Redis",
		Long: fmt.Sprintf(`nearline pushes simulated interaction events through producer → Kafka →
nearline consumer → Redis (the online store's nearline values) and measures
throughput and freshness.

It starts a Kafka-protocol broker and Redis on free ports in a temporary
directory, creates the topics, runs the nearline consumer in-process with its
default settings, and publishes --events simulated interactions (users, items
and sessions from the simulator; event time rewritten to the wall clock when
the event is handed to the producer; fresh event ids) at --rate. The default
rate, %d events/s, is above the goal, and the default run lasts a minute, so
it always crosses a bucket boundary of the consumer's windows. --rate 0
publishes as fast as the brokers acknowledge: throughput_per_s is then the
consumer's capacity, and freshness mostly the backlog's queueing time.

throughput_per_s is events over the time from the first publish until the
consumer has written and committed the last one. freshness is measured on
every --sample-every-th event: a poller reading Redis directly, as serving
does, reads the event's user's %s value until its time (the
user's latest event time) is at or past the
event time; the freshness is that moment minus the event time.

The goals are %d events/s and freshness p99 <= %d ms on a 2-core machine
running every component; meets_target says whether the run reached both.`,
			int(bench.DefaultNearlineRate), bench.NearlineProbeFeature, bench.NearlineTargetPerS, bench.NearlineTargetFreshnessMs),
		Example: `  adaptrec bench nearline --json
  adaptrec bench nearline --events 100000 --rate 20000
  adaptrec bench nearline --rate 0    # capacity: publish as fast as acknowledged`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.asJSON = *asJSON
			return benchNearline(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.file, "file", defaultFeaturesFile, "feature definitions (YAML)")
	fs.IntVar(&o.Events, "events", bench.DefaultNearlineEvents, "number of events to publish")
	fs.IntVar(&o.Producers, "producers", bench.DefaultNearlineProducers, "concurrent producers (1..64)")
	fs.Float64Var(&o.Rate, "rate", bench.DefaultNearlineRate, "total publish rate in events/s; 0 publishes as fast as the brokers acknowledge")
	fs.IntVar(&o.Batch, "batch", 0, fmt.Sprintf("events per acknowledged publish; 0 means %d, or 20 ms worth per producer with --rate", bench.DefaultNearlineBatch))
	fs.IntVar(&o.SampleEvery, "sample-every", bench.DefaultNearlineSampleEvery, "probe the freshness of every n-th event")
	fs.IntVar(&o.BatchEvents, "consumer-batch", 0, "consumer: messages that make a partition's batch full (0: its default)")
	fs.DurationVar(&o.FlushInterval, "consumer-flush-interval", 0, "consumer: longest a message waits before its batch is written (0: its default)")
	fs.DurationVar(&o.Timeout, "timeout", bench.DefaultNearlineTimeout, "how long to wait after the last publish for every event to be applied")
	return cmd
}

func (o benchNearlineOptions) validate() error {
	var errs []error
	if o.Events < 1 || int64(o.Events) > sim.MaxHistoryEvents {
		errs = append(errs, fmt.Errorf("--events must be in 1..%d, got %d", int64(sim.MaxHistoryEvents), o.Events))
	}
	if o.Producers < 1 || o.Producers > 64 {
		errs = append(errs, fmt.Errorf("--producers must be in 1..64, got %d", o.Producers))
	}
	if o.Rate < 0 {
		errs = append(errs, fmt.Errorf("--rate must be >= 0 events/s (0: as fast as possible), got %g", o.Rate))
	}
	if o.Batch < 0 || o.Batch > 100_000 {
		errs = append(errs, fmt.Errorf("--batch must be in 0..100000 (0: automatic), got %d", o.Batch))
	}
	if o.SampleEvery < 1 {
		errs = append(errs, fmt.Errorf("--sample-every must be >= 1, got %d", o.SampleEvery))
	}
	if o.BatchEvents < 0 || o.FlushInterval < 0 {
		errs = append(errs, errors.New("--consumer-batch and --consumer-flush-interval must not be negative"))
	}
	if o.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout must be > 0, got %s", o.Timeout))
	}
	return errors.Join(errs...)
}

// benchNearlineReport is the result `bench nearline` prints.
type benchNearlineReport struct {
	Bench string `json:"bench"`
	bench.NearlineResult
	TargetThroughputPerS float64 `json:"target_throughput_per_s"`
	TargetFreshnessP99Ms float64 `json:"target_freshness_p99_ms"`
	MeetsTarget          bool    `json:"meets_target"`
	Mode                 string  `json:"mode"`
}

func benchNearline(ctx context.Context, stdout, stderr io.Writer, o benchNearlineOptions) (err error) {
	if err := o.validate(); err != nil {
		return err
	}
	fs, err := features.Load(o.file)
	if err != nil {
		return err
	}
	stderr = &lockedWriter{w: stderr}
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "bench nearline: "+format+"\n", args...) }

	stack, stop, err := startBenchStack(ctx, "nearline", []devstack.Component{devstack.Kafka, devstack.Redis}, o.lookupTool, logf)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stop()) }()
	cfg := stack.Config()
	rdb := online.NewClient(cfg.Redis)
	defer rdb.Close()

	opts := o.NearlineOptions
	opts.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts.Logf = logf
	opts.Progress = func(p bench.NearlineProgress) {
		logf("%5.1fs  published %d/%d (%.0f/s)  applied %d (%.0f/s)  freshness samples %d/%d",
			p.Elapsed.Seconds(), p.Published, p.Events, p.PublishRate, p.Applied, p.AppliedRate, p.Seen, p.Samples)
	}
	res, err := bench.RunNearline(ctx, cfg, fs, rdb, opts)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("bench nearline interrupted: %w", err)
		}
		return fmt.Errorf("bench nearline: %w", err)
	}
	logf("%d events applied in %.2fs: %.0f events/s, freshness p50 %.1f ms, p99 %.1f ms (goals %d events/s, p99 <= %d ms)",
		res.Events, res.DurationS, res.ThroughputPerS, res.FreshnessP50Ms, res.FreshnessP99Ms, bench.NearlineTargetPerS, bench.NearlineTargetFreshnessMs)
	return benchReport(stdout, o.asJSON, benchNearlineReport{
		Bench:                "nearline",
		NearlineResult:       res,
		TargetThroughputPerS: bench.NearlineTargetPerS,
		TargetFreshnessP99Ms: bench.NearlineTargetFreshnessMs,
		MeetsTarget: res.Samples > 0 && res.ThroughputPerS >= bench.NearlineTargetPerS &&
			res.FreshnessP99Ms <= bench.NearlineTargetFreshnessMs,
		Mode: "self-contained",
	})
}
