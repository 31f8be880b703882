package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/adaptrec/adaptrec/internal/bench"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/devstack"
	"github.com/adaptrec/adaptrec/sim"
)

func init() { register(newBenchCmd) }

func newBenchCmd() *cobra.Command { return benchCommand(devstack.FindTool) }

// benchCommand builds the bench group. lookupTool finds the servers that a
// self-contained benchmark starts; tests pass one that builds the broker
// from this checkout.
func benchCommand(lookupTool func(string) (string, error)) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "End-to-end benchmarks, each checking one timing goal of the platform",
		Long: `Each benchmark runs real components, drives them with simulated load and
reports what it measured. By default a benchmark starts what it needs on free
ports in a temporary directory and removes it afterwards; --external points it
at the components of the configuration instead.

Progress goes to stderr. With --json the result is one JSON object on the last
line of stdout, with at least "bench" and the benchmark's measurements.`,
	}
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print the result as one JSON object on the last line of stdout")
	cmd.AddCommand(newBenchIngestCmd(&asJSON, lookupTool))
	cmd.AddCommand(newBenchFeaturesCmd(&asJSON, lookupTool))
	cmd.AddCommand(newBenchNearlineCmd(&asJSON, lookupTool))
	cmd.AddCommand(newBenchANNCmd(&asJSON))
	cmd.AddCommand(newBenchTrainCmd(&asJSON, lookupTool))
	cmd.AddCommand(newBenchServingCmd(&asJSON, lookupTool))
	cmd.AddCommand(newBenchPipelineCmd(&asJSON, lookupTool))
	return cmd
}

// benchReport prints a benchmark's result to stdout: with asJSON as one JSON
// object on a single line, the last line of the command's output, which is
// what scripts and goal checks read; otherwise as one "key  value" line per
// field, in the same order.
func benchReport(w io.Writer, asJSON bool, result any) error {
	b, err := json.Marshal(result)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	if asJSON {
		_, err := fmt.Fprintf(w, "%s\n", b)
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil { // {
		return fmt.Errorf("result is not a JSON object: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return fmt.Errorf("result is not a JSON object: %w", err)
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("result is not a JSON object: %w", err)
		}
		fmt.Fprintf(tw, "%v\t%v\n", key, v)
	}
	return tw.Flush()
}

// lockedWriter serialises writes from the progress reporter and the
// archiver's logger.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

type benchIngestOptions struct {
	events         int
	producers      int
	rate           float64
	batch          int
	flushInterval  time.Duration
	flushEvents    int
	durableTimeout time.Duration
	external       bool
	keep           bool
	asJSON         bool
	// flushIntervalSet and flushEventsSet say the flags were given, so
	// they override the configuration in --external mode too.
	flushIntervalSet, flushEventsSet bool
	lookupTool                       func(string) (string, error)
}

func newBenchIngestCmd(asJSON *bool, lookupTool func(string) (string, error)) *cobra.Command {
	o := benchIngestOptions{lookupTool: lookupTool}
	defaults := config.Default().Consumers.Archiver
	cmd := &cobra.Command{
		Use:   "ingest",
		Short: "Events/s and latency from producer through Kafka and the archiver to Parquet on S3",
		Long: fmt.Sprintf(`ingest pushes simulated interaction events through producer → Kafka → archiver
→ Parquet on S3 and measures end-to-end throughput and the latency from event
time to durable (objects written and the offset committed).

By default it starts a Kafka-protocol broker and an S3 server on free ports in
a temporary directory, creates the topics and the bucket, runs the archiver
in-process with the default settings (flush every %s or %d events),
publishes --events events with --producers concurrent producers, waits until
every one is durable, counts the run's rows in the Parquet footers, and stops
and removes everything.

Each event is a simulated interaction whose event time is the wall clock when
it is handed to the producer (so the latency covers the whole path) and whose
id is fresh (so runs never deduplicate each other).

With --external it uses the brokers, the bucket and the archiver settings of the
configuration instead. It publishes to the real interactions topic, so every
other consumer of that topic (a running archiver included) also receives the
benchmark's events; its own archiver runs in a consumer group of its own,
positioned at the end of the topics, and writes below
<s3.prefix>bench/ingest/<run id>/, which is deleted afterwards unless --keep.
Only events carrying the run's producer name are counted.

The goal is %d events/s on a 2-core machine running every component;
meets_target in the result says whether the run reached it. With --rate the
throughput cannot exceed the rate: check the goal at full speed.`, defaults.FlushInterval, defaults.FlushEvents, bench.IngestTargetPerS),
		Example: `  adaptrec bench ingest --json
  adaptrec bench ingest --events 200000 --rate 50000
  adaptrec bench ingest --external --events 100000 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.asJSON = *asJSON
			o.flushIntervalSet = cmd.Flags().Changed("flush-interval")
			o.flushEventsSet = cmd.Flags().Changed("flush-events")
			return benchIngest(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), loadConfig, o)
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&o.events, "events", 1_000_000, "number of events to publish")
	fs.IntVar(&o.producers, "producers", bench.DefaultIngestProducers, "concurrent producers, each with its own Kafka connection (1..64)")
	fs.Float64Var(&o.rate, "rate", 0, "total publish rate in events/s; 0 publishes as fast as the brokers acknowledge")
	fs.IntVar(&o.batch, "batch", 0, fmt.Sprintf("events per acknowledged publish; 0 means %d, or 20 ms worth of events per producer with --rate", bench.DefaultIngestBatch))
	fs.DurationVar(&o.flushInterval, "flush-interval", defaults.FlushInterval, "archiver: longest an event waits in memory before its batch is written")
	fs.IntVar(&o.flushEvents, "flush-events", defaults.FlushEvents, "archiver: events per partition that make a batch full")
	fs.DurationVar(&o.durableTimeout, "durable-timeout", bench.DefaultDurableTimeout, "how long to wait after the last publish for every event to be durable")
	fs.BoolVar(&o.external, "external", false, "use the brokers, bucket and archiver settings of the configuration instead of starting a stack")
	fs.BoolVar(&o.keep, "keep", false, "with --external: keep the run's Parquet objects and consumer group")
	return cmd
}

func (o benchIngestOptions) validate() error {
	var errs []error
	if o.events < 1 || int64(o.events) > sim.MaxHistoryEvents {
		errs = append(errs, fmt.Errorf("--events must be in 1..%d, got %d", int64(sim.MaxHistoryEvents), o.events))
	}
	if o.producers < 1 || o.producers > 64 {
		errs = append(errs, fmt.Errorf("--producers must be in 1..64, got %d", o.producers))
	}
	if o.rate < 0 {
		errs = append(errs, fmt.Errorf("--rate must be >= 0 events/s (0: as fast as possible), got %g", o.rate))
	}
	if o.batch < 0 || o.batch > 100_000 {
		errs = append(errs, fmt.Errorf("--batch must be in 0..100000 (0: automatic), got %d", o.batch))
	}
	if o.flushInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("--flush-interval must be >= 10ms, got %s", o.flushInterval))
	}
	if o.flushEvents < 1 {
		errs = append(errs, fmt.Errorf("--flush-events must be >= 1, got %d", o.flushEvents))
	}
	if o.durableTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--durable-timeout must be > 0, got %s", o.durableTimeout))
	}
	if o.keep && !o.external {
		errs = append(errs, errors.New("--keep only applies with --external: a self-contained run removes its whole stack"))
	}
	return errors.Join(errs...)
}

// benchIngestReport is the result `bench ingest` prints.
type benchIngestReport struct {
	Bench string `json:"bench"`
	bench.IngestResult
	TargetThroughputPerS float64 `json:"target_throughput_per_s"`
	MeetsTarget          bool    `json:"meets_target"`
	// Mode is "self-contained" (a stack of its own) or "external".
	Mode string `json:"mode"`
	Note string `json:"note,omitempty"`
}

func benchIngest(ctx context.Context, stdout, stderr io.Writer, load func() (config.Config, error), o benchIngestOptions) (err error) {
	if err := o.validate(); err != nil {
		return err
	}
	stderr = &lockedWriter{w: stderr}
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "bench ingest: "+format+"\n", args...) }

	var cfg config.Config
	mode, note := "self-contained", ""
	if o.external {
		if cfg, err = load(); err != nil {
			return err
		}
		mode = "external"
		note = "events were published to the shared topic " + bench.IngestTopic +
			": every other consumer of it (a running archiver included) received them too"
		if o.flushIntervalSet {
			cfg.Consumers.Archiver.FlushInterval = o.flushInterval
		}
		if o.flushEventsSet {
			cfg.Consumers.Archiver.FlushEvents = o.flushEvents
		}
	} else {
		// Assign, not declare: the deferred stop reports into the named err.
		var stack *devstack.Stack
		var stop func() error
		stack, stop, err = startBenchStack(ctx, "ingest", []devstack.Component{devstack.Kafka, devstack.S3}, o.lookupTool, logf)
		if err != nil {
			return err
		}
		defer func() { err = errors.Join(err, stop()) }()
		cfg = stack.Config()
		cfg.Consumers.Archiver.FlushInterval = o.flushInterval
		cfg.Consumers.Archiver.FlushEvents = o.flushEvents
	}

	res, err := bench.RunIngest(ctx, cfg, bench.IngestOptions{
		Events:         o.events,
		Producers:      o.producers,
		Rate:           o.rate,
		Batch:          o.batch,
		Cleanup:        o.external && !o.keep,
		DurableTimeout: o.durableTimeout,
		Logger:         slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Logf:           logf,
		Progress: func(p bench.IngestProgress) {
			logf("%5.1fs  published %d/%d (%.0f/s)  durable %d (%.0f/s)",
				p.Elapsed.Seconds(), p.Published, p.Events, p.PublishRate, p.Durable, p.DurableRate)
		},
	})
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("bench ingest interrupted: %w", err)
		}
		return fmt.Errorf("bench ingest: %w", err)
	}
	logf("%d events durable in %.2fs: %.0f events/s end to end, p99 %.1f ms (goal %d events/s)",
		res.Events, res.DurationS, res.ThroughputPerS, res.P99Ms, bench.IngestTargetPerS)
	return benchReport(stdout, o.asJSON, benchIngestReport{
		Bench:                "ingest",
		IngestResult:         res,
		TargetThroughputPerS: bench.IngestTargetPerS,
		MeetsTarget:          res.ThroughputPerS >= bench.IngestTargetPerS,
		Mode:                 mode,
		Note:                 note,
	})
}

// startBenchStack starts comps on free ports in a fresh temporary folder for
// one benchmark run. stop stops them, with time of its own (after Ctrl-C ctx
// is done), and removes the folder; call it however the run ends.
func startBenchStack(ctx context.Context, name string, comps []devstack.Component,
	lookupTool func(string) (string, error), logf func(string, ...any)) (*devstack.Stack, func() error, error) {
	dir, err := os.MkdirTemp("", "adaptrec-bench-"+name+"-")
	if err != nil {
		return nil, nil, fmt.Errorf("state directory: %w", err)
	}
	ports := "free ports"
	if len(comps) == 1 {
		ports = "a free port"
	}
	logf("starting %v on %s in %s", comps, ports, dir)
	begin := time.Now()
	stack, err := devstack.Start(ctx, devstack.Options{StateDir: dir, Components: comps, LookupTool: lookupTool, Logf: logf})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("start the benchmark's %v: %w", comps, err)
	}
	logf("%v ready in %s", comps, time.Since(begin).Round(time.Millisecond))
	stop := func() error {
		defer os.RemoveAll(dir)
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := stack.Stop(stopCtx); err != nil {
			return fmt.Errorf("stop the benchmark's %v: %w", comps, err)
		}
		return nil
	}
	return stack, stop, nil
}
