package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/online"
	"github.com/adaptrec/adaptrec/internal/bench"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/devstack"
)

type benchFeaturesOptions struct {
	file       string
	external   bool
	asJSON     bool
	lookupTool func(string) (string, error)
	bench.FeaturesOptions
}

func newBenchFeaturesCmd(asJSON *bool, lookupTool func(string) (string, error)) *cobra.Command {
	o := benchFeaturesOptions{lookupTool: lookupTool}
	cmd := &cobra.Command{
		Use:   "features",
		Short: "Online feature assembly: 1 user + 500 candidate items per request, p99 against a 1 ms goal",
		Long: fmt.Sprintf(`features measures what ranking waits for on every request: assembling every
ranker input of the feature definitions for one user and its candidate items
through the online store (features/online, docs/adr/007).

By default it starts Redis on a free port in a temporary directory, generates
a catalogue of --items items and --users users with a value for every stored
feature, loads the item caches (as a serving instance does from the current
snapshots), writes the users' batch records, their user×item tables
(--pairs-per-user items each) and everyone's nearline values to Redis (as
the batch and nearline lanes do), and then, from --concurrency goroutines,
assembles the features of one random user and --candidates items per request
(--pair-hits of them among the user's pairs, the rest random) for --duration
after a --warmup. Throughout, the store's
refresh loop runs and a writer updates --nearline-writes-per-s nearline values
per second, so requests share the machine with the work that keeps the caches
fresh. Each call reads the user's stored features from Redis in one round
trip and the items' from the in-process caches.

With --external it uses the Redis of the configuration instead, under a key
prefix of its own that it leaves behind (its keys expire within hours).

The goal is p99 <= %s with at most 1%% of requests degraded (their user
features read as defaults because Redis missed the read deadline);
meets_target in the result says whether the run met it.`, bench.FeaturesTargetP99),
		Example: `  adaptrec bench features --json
  adaptrec bench features --duration 10s --concurrency 4`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.asJSON = *asJSON
			return benchFeatures(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), loadConfig, o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.file, "file", defaultFeaturesFile, "feature definitions (YAML)")
	fs.IntVar(&o.Items, "items", bench.DefaultFeaturesItems, "items in the catalogue")
	fs.IntVar(&o.Users, "users", bench.DefaultFeaturesUsers, "users with stored features")
	fs.IntVar(&o.Candidates, "candidates", bench.DefaultFeaturesCandidates, "candidate items per request")
	fs.IntVar(&o.PairsPerUser, "pairs-per-user", bench.DefaultPairsPerUser, "items each user has user×item values for; negative: none")
	fs.IntVar(&o.PairHits, "pair-hits", bench.DefaultPairHits, "candidates per request that are items of the user's pairs; negative: none")
	fs.IntVar(&o.Concurrency, "concurrency", 0, "goroutines assembling concurrently; 0 means GOMAXPROCS")
	fs.DurationVar(&o.Duration, "duration", bench.DefaultFeaturesDuration, "how long requests are measured")
	fs.DurationVar(&o.Warmup, "warmup", bench.DefaultFeaturesWarmup, "unmeasured requests before the measurement")
	fs.IntVar(&o.NearlineWritesPerS, "nearline-writes-per-s", bench.DefaultNearlineWritesPerS, "background nearline updates per second while requests run; negative: none")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the generated data and requests")
	fs.BoolVar(&o.external, "external", false, "use the Redis of the configuration instead of starting one")
	return cmd
}

// benchFeaturesReport is the result `bench features` prints.
type benchFeaturesReport struct {
	Bench string `json:"bench"`
	bench.FeaturesResult
	TargetP99Ms float64 `json:"target_p99_ms"`
	MeetsTarget bool    `json:"meets_target"`
	// Mode is "self-contained" (a Redis of its own) or "external".
	Mode string `json:"mode"`
}

func benchFeatures(ctx context.Context, stdout, stderr io.Writer, load func() (config.Config, error), o benchFeaturesOptions) (err error) {
	if err := o.Validate(); err != nil {
		return err
	}
	fs, err := features.Load(o.file)
	if err != nil {
		return err
	}
	stderr = &lockedWriter{w: stderr}
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "bench features: "+format+"\n", args...) }

	var cfg config.Config
	mode := "self-contained"
	if o.external {
		if cfg, err = load(); err != nil {
			return err
		}
		mode = "external"
	} else {
		// Assign, not declare: the deferred stop reports into the named err.
		var stack *devstack.Stack
		var stop func() error
		stack, stop, err = startBenchStack(ctx, "features", []devstack.Component{devstack.Redis}, o.lookupTool, logf)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, stop()) }()
		cfg = stack.Config()
	}
	rdb := online.NewClient(cfg.Redis)
	defer rdb.Close()

	opts := o.FeaturesOptions
	opts.Logf = logf
	opts.Progress = func(p bench.FeaturesProgress) {
		logf("%4.1fs  %d requests (%.0f/s)", p.Elapsed.Seconds(), p.Requests, p.RatePerS)
	}
	res, err := bench.RunFeatures(ctx, rdb, fs, opts)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("bench features interrupted: %w", err)
		}
		return fmt.Errorf("bench features: %w", err)
	}
	logf("%d requests of %d items × %d features in %.1fs: p50 %.3f ms, p99 %.3f ms, %.0f requests/s (goal p99 <= %s)",
		res.Requests, res.ItemsPerRequest, res.FeaturesPerItem, res.DurationS, res.P50Ms, res.P99Ms, res.ThroughputPerS, bench.FeaturesTargetP99)
	target := float64(bench.FeaturesTargetP99) / float64(time.Millisecond)
	return benchReport(stdout, o.asJSON, benchFeaturesReport{
		Bench:          "features",
		FeaturesResult: res,
		TargetP99Ms:    target,
		// A degraded request is fast but serves defaults: the goal also needs
		// (almost) every request to have read the user's features.
		MeetsTarget: res.Requests > 0 && res.P99Ms <= target && res.Degraded*100 <= res.Requests,
		Mode:        mode,
	})
}
