package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/adaptrec/adaptrec/internal/bench"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/servingworld"
	"github.com/adaptrec/adaptrec/trainer/job"
)

type benchServingOptions struct {
	file       string
	hidden     string
	cacheDir   string
	cpuProfile string
	trace      string
	memProfile string
	external   bool
	asJSON     bool
	lookupTool func(string) (string, error)
	bench.ServingOptions
}

func newBenchServingCmd(asJSON *bool, lookupTool func(string) (string, error)) *cobra.Command {
	o := benchServingOptions{lookupTool: lookupTool}
	cmd := &cobra.Command{
		Use:   "serving",
		Short: "Recommend latency over gRPC at a fixed request rate, p99 against 10 ms at 500 requests/s",
		Long: fmt.Sprintf(`serving measures what a product backend waits for: Recommend calls over gRPC
to one serving instance, each retrieving --candidates candidates from a
catalogue of --items items, assembling their features, ranking them with the
production model and re-ranking the top 20.

By default it starts Redis, an S3 server and a Kafka-protocol broker on free
ports in a temporary directory and builds a synthetic world through the real
write paths (internal/servingworld): feature snapshots of every batch group
made current by the batch lane's publish step (user groups preloaded into
Redis), nearline values of active items and of --users users in a session,
and a model version trained on the world (ranker --hidden, 64-dimensional
item embeddings with their IVF and HNSW indexes, a co-visitation table),
registered and promoted to production. The model artifacts are cached under
--cache-dir, so later runs skip their build (tens of seconds at 200,000 items).

It then starts one serving instance in this process, as cmd/server assembles
it, waits until it is ready, and sends an open-loop load over a real gRPC
connection: --rate requests per second on a fixed schedule whatever the
responses do, each with a --deadline from its scheduled send time, at most
--concurrency in flight (a request due beyond that is not sent and counts as
an error). Latency runs from the scheduled send time, so a stalled server
delays the requests due meanwhile instead of hiding them. The first --warmup
is not measured. Throughout, the nearline values are kept fresh as the
nearline lane would, and the instance publishes its PredictionEvents.

The result has the latency quantiles, the errors by gRPC code, the responses
by degradation level, the server's time per pipeline stage (from its
adaptrec_serving_stage_seconds histograms) and the ranking level used.
--cpuprofile writes a CPU profile of the measured part for go tool pprof,
--memprofile a heap profile taken after it (what the GC marks each cycle),
--trace a runtime execution trace (where the stalls come from).

With --external it uses the Kafka, Redis and S3 of the configuration instead,
below an S3 prefix and a Redis key prefix of its own and with its own model
(%q), which it leaves behind; its snapshot and model events go to the shared
topics, where running servers only re-read their own pointers.

The goal is p99 <= 10 ms at up to 500 requests/s (50 ms above) on a 2-core
machine running every component, with no error; meets_target says whether the
run met it.`, bench.ExternalModel),
		Example: `  adaptrec bench serving --json
  adaptrec bench serving --rate 1000 --duration 1m
  adaptrec bench serving --items 20000 --users 2000 --hidden '' --cpuprofile serving.pprof`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.asJSON = *asJSON
			return benchServing(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), loadConfig, o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.file, "file", defaultFeaturesFile, "feature definitions (YAML)")
	fs.Float64Var(&o.Rate, "rate", bench.DefaultServingRate, "Recommend requests per second, sent on a fixed schedule")
	fs.DurationVar(&o.Duration, "duration", bench.DefaultServingDuration, "how long requests are measured")
	fs.DurationVar(&o.Warmup, "warmup", bench.DefaultServingWarmup, "unmeasured requests at the same rate before the measurement")
	fs.DurationVar(&o.Deadline, "deadline", bench.DefaultServingDeadline, "deadline of each request from its scheduled send time")
	fs.IntVar(&o.Concurrency, "concurrency", bench.DefaultServingConcurrency, "most requests in flight; a request due beyond it is not sent and counts as an error")
	fs.IntVar(&o.Candidates, "candidates", bench.DefaultServingCandidates, "candidates retrieved and ranked per request (server.candidates)")
	fs.IntVar(&o.World.Items, "items", servingworld.DefaultItems, "items in the catalogue")
	fs.IntVar(&o.World.Users, "users", servingworld.DefaultUsers, "users with features")
	fs.StringVar(&o.hidden, "hidden", joinInts(job.DefaultHidden), "ranker hidden layer sizes, comma-separated; --hidden '' serves logistic regression")
	fs.IntVar(&o.World.TrainRows, "train-rows", servingworld.DefaultTrainRows, "synthetic examples the ranker is trained on")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the world and the requests")
	fs.StringVar(&o.cacheDir, "cache-dir", "", "where built model artifacts are kept between runs (default: adaptrec/servingworld in the user cache directory; '-': no cache)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the measured part to this file")
	fs.StringVar(&o.memProfile, "memprofile", "", "write a heap profile taken after the measured part to this file, and one taken as it starts to FILE.start (go tool pprof -diff_base)")
	fs.StringVar(&o.trace, "trace", "", "write a runtime execution trace of the measured part to this file (go tool trace; -pprof=sched shows scheduler waits)")
	fs.BoolVar(&o.external, "external", false, "use the Kafka, Redis and S3 of the configuration instead of starting them")
	return cmd
}

// parseHidden reads --hidden: comma-separated positive sizes; an empty
// value (logistic regression) gives none.
func parseHidden(s string) ([]int, error) {
	out := []int{}
	for h := range strings.SplitSeq(s, ",") {
		if h = strings.TrimSpace(h); h == "" {
			continue
		}
		n, err := strconv.Atoi(h)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--hidden %q: want positive layer sizes separated by commas, or '' for logistic regression", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// benchServingReport is the result `bench serving` prints.
type benchServingReport struct {
	Bench string `json:"bench"`
	bench.ServingResult
	// Mode is "self-contained" (servers of its own) or "external".
	Mode string `json:"mode"`
}

func benchServing(ctx context.Context, stdout, stderr io.Writer, load func() (config.Config, error), o benchServingOptions) (err error) {
	hidden, herr := parseHidden(o.hidden)
	opts := o.ServingOptions
	opts.World.Hidden, opts.World.Seed, opts.World.CacheDir = hidden, o.Seed, o.cacheDir
	if err := errors.Join(herr, opts.Validate()); err != nil {
		return err
	}
	stderr = &lockedWriter{w: stderr}
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "bench serving: "+format+"\n", args...) }
	opts.FeaturesFile, opts.LookupTool = o.file, o.lookupTool
	opts.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	mode := "self-contained"
	if o.external {
		cfg, err := load()
		if err != nil {
			return err
		}
		opts.Config, mode = &cfg, "external"
	}
	// The diagnostic outputs: each flag's file, closed when the run ends.
	var outputs []*os.File
	defer func() {
		for _, f := range outputs {
			err = errors.Join(err, f.Close())
		}
	}()
	output := func(dst *io.Writer, flag, path string) error {
		if path == "" {
			return nil
		}
		f, err := os.Create(path)
		if err != nil {
			return fmt.Errorf("%s: %w", flag, err)
		}
		outputs = append(outputs, f)
		*dst = f
		return nil
	}
	startProfile := ""
	if o.memProfile != "" {
		startProfile = o.memProfile + ".start"
	}
	if err := errors.Join(
		output(&opts.CPUProfile, "--cpuprofile", o.cpuProfile),
		output(&opts.MemProfile, "--memprofile", o.memProfile),
		output(&opts.MemProfileStart, "--memprofile", startProfile),
		output(&opts.Trace, "--trace", o.trace),
	); err != nil {
		return err
	}

	res, err := bench.RunServing(ctx, opts, func(s string) { logf("%s", s) })
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("bench serving interrupted: %w", err)
		}
		return fmt.Errorf("bench serving: %w", err)
	}
	logf("%d requests at %g/s over %.0fs: p50 %.2f ms, p99 %.2f ms, max %.1f ms, %d errors, %d degraded (goal p99 <= %.0f ms, no error)",
		res.Requests, res.Rate, res.DurationS, res.P50Ms, res.P99Ms, res.MaxMs, res.Errors, res.Degraded, res.TargetP99Ms)
	if o.cpuProfile != "" {
		logf("CPU profile of the measured part in %s (go tool pprof -top %s)", o.cpuProfile, o.cpuProfile)
	}
	if o.memProfile != "" {
		logf("heap profiles in %s and, as the measurement started, %s.start (go tool pprof -sample_index=inuse_space -top %s; what the requests allocated: -sample_index=alloc_space -diff_base %s.start)", o.memProfile, o.memProfile, o.memProfile, o.memProfile)
	}
	return benchReport(stdout, o.asJSON, benchServingReport{Bench: "serving", ServingResult: res, Mode: mode})
}
