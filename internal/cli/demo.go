package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/devstack"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/sim"
	"github.com/adaptrec/adaptrec/workflows"
)

func init() { register(newDemoCmd) }

type demoOptions struct {
	stateDir string
	events   int
	users    int
	items    int
	days     int
	seed     uint64
	live     time.Duration
	liveUsrs int
	exit     bool
	// retrain runs the adaptive loop after the live users (demo_adapt.go);
	// drift is how long the live users call after their tastes shift,
	// before the retrain starts.
	retrain bool
	drift   time.Duration
}

func newDemoCmd() *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the platform end to end on the local stack (what `make demo` runs)",
		Long: `demo brings up the local stack (or uses the one 'adaptrec dev up' runs), starts
bin/consumers, bin/worker and bin/server, and then:

  1. runs the HistoryBackfill workflow on Temporal: it simulates a world and
     publishes its interaction history (--events) to Kafka,
  2. waits until the archiver has written every event exactly once to Parquet
     on S3, partitioned by event date and hour,
  3. runs the BatchFeatures workflow: batch features from the event log into
     versioned snapshots, loaded into Redis and made current,
  4. trains a first model on two days of the history (ending a day before
     its end with --retrain, so that the retrain's offline gate compares
     both models on rows neither trained on; point-in-time training set, Go
     trainer: ranker, embeddings, ANN index, co-visitation), registers it
     (ONNX Runtime validation) and promotes it to production; the server
     loads it and becomes ready,
  5. sends simulated live users against the gRPC RecommendService for --live
     and prints their click-through rate per model version, latency
     percentiles and degradation counts,
  6. the adaptive loop (--retrain): the users' tastes shift (80% of them
     move to categories they did not favour) while the live users keep
     calling for --drift; a retrain is started for the drift with the
     first model's CTR before and after it as its reason (RetrainWorkflow
     on Temporal, followed stage by stage: data contract, training set,
     training, offline gate, registration, shadow on mirrored traffic,
     canary steps judged by the feedback loop's online CTR, cutover,
     watch), with the live users still calling; then the live users meet
     the new production model for --live. It prints the CTR per model
     version and arm before the drift, after it, during the retrain and
     after it, the feedback loop's CTR per version and arm, and the stage
     timings. The pipeline's shadow, canary and watch are shortened to
     seconds for the demo (the settings are printed); the loop takes about 6
     minutes on two cores,

then prints where to look and stays up until Ctrl-C.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			return runDemo(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.stateDir, "state-dir", os.Getenv(config.EnvPrefix+"STATE_DIR"), "local stack state folder (default .adaptrec/dev at the repository root)")
	f.IntVar(&o.events, "events", 1_000_000, "historical events to simulate and archive")
	f.IntVar(&o.users, "users", 20_000, "simulated users")
	f.IntVar(&o.items, "items", 50_000, "catalogue items (up to 200,000)")
	f.IntVar(&o.days, "days", 14, "days of history, ending now")
	f.Uint64Var(&o.seed, "seed", 1, "world seed")
	f.DurationVar(&o.live, "live", 20*time.Second, "how long simulated live users call the server (0 to skip)")
	f.IntVar(&o.liveUsrs, "live-users", 16, "concurrent simulated live users")
	f.BoolVar(&o.exit, "exit", false, "stop everything after the demo instead of staying up")
	f.BoolVar(&o.retrain, "retrain", true, "run the adaptive loop after the live users: tastes shift, retrain, shadow, canary, promotion")
	f.DurationVar(&o.drift, "drift", 90*time.Second, "how long the live users call after their tastes shift before the retrain starts (their interactions after the shift are what the retrain learns the new tastes from: the newest part of its training set, by event time, is held out for the offline gate, so a short drift leaves it little to learn from)")
	return cmd
}

func (o demoOptions) validate() error {
	var errs []error
	if o.events < 1 || o.events > 50_000_000 {
		errs = append(errs, fmt.Errorf("--events %d: must be 1..50000000", o.events))
	}
	if o.users < 1 {
		errs = append(errs, fmt.Errorf("--users %d: must be >= 1", o.users))
	}
	if o.items < 1 || o.items > sim.MaxItems {
		errs = append(errs, fmt.Errorf("--items %d: must be 1..%d", o.items, sim.MaxItems))
	}
	if o.days < 1 || o.days > 365 {
		errs = append(errs, fmt.Errorf("--days %d: must be 1..365", o.days))
	}
	if o.live < 0 {
		errs = append(errs, fmt.Errorf("--live %s: must be >= 0", o.live))
	}
	if o.liveUsrs < 1 {
		errs = append(errs, fmt.Errorf("--live-users %d: must be >= 1", o.liveUsrs))
	}
	if o.retrain && o.days < 2 {
		errs = append(errs, fmt.Errorf("--days %d: the adaptive loop needs at least 2 (its first model is trained on history a day older than the retrain's; or --retrain=false)", o.days))
	}
	if o.retrain && o.drift < time.Second {
		errs = append(errs, fmt.Errorf("--drift %s: must be >= 1s (the drift the retrain is started for is measured over it)", o.drift))
	}
	return errors.Join(errs...)
}

func runDemo(ctx context.Context, stdout, stderr io.Writer, o demoOptions) (err error) {
	say := func(format string, args ...any) { fmt.Fprintf(stderr, "==> "+format+"\n", args...) }
	stateDir, err := resolveStateDir(o.stateDir)
	if err != nil {
		return err
	}
	cfg := config.Default()

	// 1. The local stack: reuse a running one, else start it.
	stack, err := demoStack(ctx, stderr, cfg, stateDir)
	if err != nil {
		return err
	}
	if stack != nil {
		defer func() {
			say("stopping the local stack")
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			err = errors.Join(err, stack.Stop(stopCtx))
		}()
	}
	store, err := prepareStack(ctx, cfg)
	if err != nil {
		return err
	}

	// 2. The platform's own services.
	logDir := stateDir + "/logs"
	var services []*service
	var server *service
	defer func() {
		for i := len(services) - 1; i >= 0; i-- {
			if serr := services[i].stop(20 * time.Second); serr != nil {
				err = errors.Join(err, serr)
			}
		}
	}()
	for _, s := range []struct{ name, http string }{
		{"consumers", cfg.Consumers.HTTPAddr},
		{"worker", cfg.Worker.HTTPAddr},
		{"server", cfg.Server.HTTPAddr},
	} {
		say("starting %s (log: %s/%s.log)", s.name, logDir, s.name)
		var env []string
		if s.name == "consumers" {
			// Accuracy windows of seconds, for the canary's guardrails.
			env = loopConsumersEnv()
		}
		svc, err := startService(s.name, s.http, logDir, env)
		if err != nil {
			return err
		}
		services = append(services, svc)
		if s.name == "server" {
			// The server is ready once a model and the item features are
			// loaded: it is waited for after training.
			server = svc
			continue
		}
		if err := svc.waitReady(ctx, time.Minute); err != nil {
			return err
		}
	}

	// 3. History through Temporal, Kafka and the archiver.
	tc, err := dialWorkflows(ctx, cfg)
	if err != nil {
		return err
	}
	defer tc.Close()
	now := time.Now().UTC()
	worldID := "demo-" + now.Format("20060102-150405")
	req := activities.HistoryRequest{
		WorldID: worldID, Seed: o.seed, Events: o.events, Users: o.users, Items: o.items,
		// Sessions started near the end of the window run on past it; ending
		// the window an hour ago keeps every historical event in the past.
		Start: now.Add(-time.Duration(o.days) * 24 * time.Hour).Truncate(time.Hour), End: now.Add(-time.Hour),
	}
	workflowID := "history-backfill-" + worldID
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: workflowID, TaskQueue: activities.TaskQueueDefault},
		workflows.HistoryBackfill, workflows.BackfillParams{History: req})
	if err != nil {
		return fmt.Errorf("start HistoryBackfill: %w", err)
	}
	runURL := runLink(cfg.Temporal, workflowID, run.GetRunID())
	say("HistoryBackfill started: %d events, %d users, %d items over %d days\n    follow it in the Temporal UI: %s",
		o.events, o.users, o.items, o.days, runURL)
	started := time.Now()
	var res workflows.BackfillResult
	if err := demoWait(ctx, stderr, tc, run, o.events, &res); err != nil {
		return err
	}
	total := time.Since(started)

	// 3b. Batch features from the event log, through Temporal: snapshots
	// computed, validated, loaded into Redis and made current.
	feats, featsURL, err := demoBatchFeatures(ctx, stderr, tc, cfg, worldID, req.End)
	if err != nil {
		return err
	}

	// 3c. A first model: a training set from the history, the Go
	// trainer, registration (ONNX Runtime validation), promotion; the server
	// loads it on the lifecycle event and becomes ready.
	// With the adaptive loop, the first model is a day old: the retrain's
	// offline gate compares both on the newest rows, which it must not
	// have trained on.
	stale := time.Duration(0)
	if o.retrain {
		stale = demoFirstModelAge
	}
	trained, err := demoTrain(ctx, stderr, cfg, req, stale)
	if err != nil {
		return err
	}
	say("waiting for the server to load model %s and the item features", trained.Version)
	if err := server.waitReady(ctx, 3*time.Minute); err != nil {
		return err
	}

	// 4. Live users against the gRPC endpoint, in the same world.
	world, err := sim.NewWorld(activities.WorldConfig(req))
	if err != nil {
		return err
	}
	var live *sim.LiveReport
	if o.live > 0 {
		say("simulated live users call RecommendService on %s for %s", cfg.Server.GRPCAddr, o.live)
		live, err = demoLive(ctx, cfg, world, o)
		if err != nil {
			return err
		}
	}

	// 4b. The adaptive loop: drift, retrain, shadow, canary, promotion.
	var adapt *adaptReport
	if o.retrain {
		adapt, err = demoAdapt(ctx, stderr, tc, cfg, world, live, trained.Version, o)
		if err != nil {
			return err
		}
	}

	// 5. What happened and where to look.
	fmt.Fprintln(stdout)
	fmt.Fprintln(stdout, "adaptrec demo: the history is in the offline store")
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  events published\t%d (%.0f events/s into Kafka)\n", res.History.Published, res.History.EventsPerSec)
	check := "one row per published event"
	if res.Archive.Rows != int64(res.History.Published) {
		check = fmt.Sprintf("WARNING: %d rows for %d published events", res.Archive.Rows, res.History.Published)
	}
	fmt.Fprintf(tw, "  rows archived\t%d in %d Parquet objects (%s)\n", res.Archive.Rows, res.Archive.Objects, check)
	fmt.Fprintf(tw, "  end to end\t%s (%.0f events/s from first publish to last durable row)\n",
		total.Round(100*time.Millisecond), float64(res.Archive.Rows)/total.Seconds())
	fmt.Fprintf(tw, "  event times\t%s .. %s\n", res.History.FirstEvent.Format(time.RFC3339), res.History.LastEvent.Format(time.RFC3339))
	fmt.Fprintf(tw, "  event log\t%s (on disk: %s/s3/%s/%s)\n", res.Archive.Location, stateDir, cfg.S3.Bucket, strings.TrimPrefix(res.Archive.Location, "s3://"+cfg.S3.Bucket+"/"))
	fmt.Fprintf(tw, "  catalogue\t%s\n", store.URI(res.History.CatalogueKey))
	tw.Flush()
	fmt.Fprintln(stdout)
	fmt.Fprintln(stdout, "feature store: batch snapshots made current by the BatchFeatures workflow")
	tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  group\tversion\trows\tstatus\n")
	current := map[string]bool{}
	for _, p := range feats.Current {
		current[p.Group+"/"+p.Version] = true
	}
	for _, c := range feats.Prepared.Candidates {
		status := "kept as history"
		if current[c.Group+"/"+c.Version] {
			status = "current"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\n", c.Group, c.Version, c.Rows, status)
	}
	for _, r := range feats.Rejected {
		fmt.Fprintf(tw, "  REJECTED\t%s\t\t\n", r)
	}
	tw.Flush()
	fmt.Fprintf(stdout, "  computed from %d archived events in %.1f s (scan %.1f s, build %.1f s, write and validate %.1f s)\n",
		feats.Prepared.Events, feats.Prepared.ScanSeconds+feats.Prepared.BuildSeconds+feats.Prepared.WriteSeconds,
		feats.Prepared.ScanSeconds, feats.Prepared.BuildSeconds, feats.Prepared.WriteSeconds)
	if n, err := demoMetric(ctx, cfg.Consumers.HTTPAddr, "adaptrec_nearline_events_applied_total"); err == nil {
		fmt.Fprintf(stdout, "  nearline consumer: %.0f interaction events applied to the online store (Redis)\n", n)
	}
	fmt.Fprintln(stdout)
	fmt.Fprintf(stdout, "model registry: %s@%s in production (AUC %.3f, log loss %.4f on the validation part; trained in %.1f s)\n",
		trained.Model, trained.Version, trained.Metrics["auc"], trained.Metrics["logloss"], trained.DurationS)
	if live != nil {
		fmt.Fprintln(stdout)
		fmt.Fprintln(stdout, "live users against the gRPC endpoint:")
		if err := simWriteLiveReport(stdout, live); err != nil {
			return err
		}
	}
	if adapt != nil {
		fmt.Fprintln(stdout)
		writeAdapt(stdout, live, trained.Version, adapt)
	}
	fmt.Fprintln(stdout)
	fmt.Fprintln(stdout, "where to look:")
	tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  Temporal UI\t%s\n", cfg.Temporal.UIURL)
	fmt.Fprintf(tw, "  this run\t%s\n", runURL)
	fmt.Fprintf(tw, "  batch features run\t%s\n", featsURL)
	if adapt != nil {
		fmt.Fprintf(tw, "  retrain run\t%s\n", adapt.RunURL)
		fmt.Fprintf(tw, "  model history\tadaptrec models history --model %s\n", cfg.Pipeline.Model)
	}
	fmt.Fprintf(tw, "  a user's features\tadaptrec features get --user %s --items %s,%s\n", sim.UserID(0), sim.ItemID(0), sim.ItemID(1))
	fmt.Fprintf(tw, "  gRPC\tgrpcurl -plaintext %s list\n", cfg.Server.GRPCAddr)
	fmt.Fprintf(tw, "  metrics\thttp://%s/metrics (server), http://%s/metrics (consumers), http://%s/metrics (worker)\n",
		cfg.Server.HTTPAddr, cfg.Consumers.HTTPAddr, cfg.Worker.HTTPAddr)
	fmt.Fprintf(tw, "  archived objects\tadaptrec events ls --from %s --to now\n", res.History.FirstEvent.Format(time.RFC3339))
	fmt.Fprintf(tw, "  logs\t%s\n", logDir)
	tw.Flush()
	if adapt != nil && adapt.RunErr != nil {
		// A gate that keeps production on its version is the pipeline
		// doing its job; anything else is a failure of the demo.
		if workflows.IsGate(adapt.Result.Outcome) {
			fmt.Fprintf(stdout, "\nThe pipeline kept production on %s: the candidate failed its %s gate (see the outcome above).\n",
				orNoneStr(adapt.Result.Production), adapt.Result.Outcome)
		} else {
			return fmt.Errorf("demo: the retrain did not promote its version: %w", adapt.RunErr)
		}
	}
	if o.exit {
		return nil
	}
	fmt.Fprintln(stdout, "\nThe stack stays up; press Ctrl-C to stop it.")
	for {
		select {
		case <-ctx.Done():
			say("stopping")
			return nil
		case <-time.After(time.Second):
		}
		for _, s := range services {
			select {
			case <-s.done:
				return fmt.Errorf("%s exited unexpectedly (%v); see %s", s.name, s.err, s.log)
			default:
			}
		}
	}
}

// demoTrain trains a first model on the two days of the demo's history
// that end stale before its end, registers it and promotes it to
// production.
func demoTrain(ctx context.Context, stderr io.Writer, cfg config.Config, h activities.HistoryRequest, stale time.Duration) (trainSummary, error) {
	var sum trainSummary
	fmt.Fprintf(stderr, "==> training a first model on the history (training set, ranker, embeddings, indexes)\n")
	var out bytes.Buffer
	// Two days of the history: enough impressions for the ranker, and a
	// training set built in seconds rather than minutes.
	to := h.End.Add(-stale)
	from := to.Add(-48 * time.Hour)
	if from.Before(h.Start) {
		from = h.Start
	}
	o := trainOptions{
		from: from.Format(time.RFC3339), to: to.Format(time.RFC3339), model: cfg.Server.Model,
		actor: "adaptrec demo", reason: "demo: first model", asJSON: true, now: time.Now(),
	}
	// The trainer's defaults: flags registered, none set.
	o.params.register(pflag.NewFlagSet("demo-train", pflag.ContinueOnError))
	if err := train(ctx, &out, prefixWriter{w: stderr, prefix: "    "}, cfg, o); err != nil {
		return sum, fmt.Errorf("demo: train: %w", err)
	}
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil {
		return sum, fmt.Errorf("demo: train printed no summary: %w", err)
	}
	fs, err := features.Load(cfg.Features.File)
	if err != nil {
		return sum, err
	}
	reg, closeReg, err := modelsWriter(ctx, cfg, fs, stderr)
	if err != nil {
		return sum, err
	}
	defer closeReg()
	if _, err := reg.Apply(ctx, sum.Model, registry.Change{Action: registry.ActionPromote, Version: sum.Version, Actor: "adaptrec demo", Reason: "demo: first model"}); err != nil {
		return sum, fmt.Errorf("demo: promote %s: %w", sum.Version, err)
	}
	fmt.Fprintf(stderr, "==> %s@%s promoted to production\n", sum.Model, sum.Version)
	return sum, nil
}

// demoBatchFeatures runs the BatchFeatures workflow on the demo's history
// and waits for it, printing its stage. A run whose snapshots failed
// validation is reported, not fatal: the demo shows what became current.
func demoBatchFeatures(ctx context.Context, stderr io.Writer, tc client.Client, cfg config.Config, worldID string, historyEnd time.Time) (workflows.BatchFeaturesResult, string, error) {
	// The snapshots a daily schedule would have made over the last days of
	// the history, oldest first: without them a point-in-time training set
	// of those days finds no batch features (every row takes the
	// defaults) and the ranker learns next to nothing.
	for _, asOf := range historySnapshotTimes(historyEnd) {
		if _, _, err := demoBatchFeaturesAsOf(ctx, stderr, tc, cfg, worldID, asOf); err != nil {
			return workflows.BatchFeaturesResult{}, "", err
		}
	}
	return demoBatchFeaturesAsOf(ctx, stderr, tc, cfg, worldID, time.Now().UTC().Truncate(time.Second))
}

// historySnapshotDays is how many daily snapshots before the history's end
// demoBatchFeatures backfills: enough for the first model's window (two
// days ending a day before the end) and the retrain's (two days ending now).
const historySnapshotDays = 3

// historySnapshotTimes returns the UTC midnights of the historySnapshotDays
// days before end's, oldest first.
func historySnapshotTimes(end time.Time) []time.Time {
	day := end.UTC().Truncate(24 * time.Hour)
	out := make([]time.Time, 0, historySnapshotDays)
	for d := historySnapshotDays; d >= 1; d-- {
		out = append(out, day.Add(-time.Duration(d)*24*time.Hour))
	}
	return out
}

// demoBatchFeaturesAsOf runs the BatchFeatures workflow as of asOf and
// follows it.
func demoBatchFeaturesAsOf(ctx context.Context, stderr io.Writer, tc client.Client, cfg config.Config, worldID string, asOf time.Time) (workflows.BatchFeaturesResult, string, error) {
	var res workflows.BatchFeaturesResult
	id := "batch-features-" + worldID + "-" + asOf.Format("20060102T150405Z")
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: activities.TaskQueueDefault},
		workflows.BatchFeatures, workflows.BatchFeaturesParams{AsOf: asOf, WorldID: worldID})
	if err != nil {
		return res, "", fmt.Errorf("start BatchFeatures: %w", err)
	}
	runURL := runLink(cfg.Temporal, id, run.GetRunID())
	fmt.Fprintf(stderr, "==> BatchFeatures started as of %s: batch features from the event log into versioned snapshots\n    follow it in the Temporal UI: %s\n", asOf.Format(time.RFC3339), runURL)
	done := make(chan error, 1)
	go func() { done <- run.Get(ctx, &res) }()
	started := time.Now()
	tick := time.NewTicker(3 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			var appErr *temporal.ApplicationError
			if errors.As(err, &appErr) && appErr.Type() == workflows.ErrTypeSnapshotRejected {
				_ = appErr.Details(&res)
				fmt.Fprintf(stderr, "==> WARNING: BatchFeatures rejected snapshots: %v\n", res.Rejected)
				return res, runURL, nil
			}
			if err != nil {
				return res, runURL, fmt.Errorf("BatchFeatures (%s): %w", runURL, err)
			}
			fmt.Fprintf(stderr, "==> BatchFeatures done in %s: %d snapshots current\n", time.Since(started).Round(100*time.Millisecond), len(res.Current))
			return res, runURL, nil
		case <-tick.C:
			stage := "running"
			if v, err := tc.QueryWorkflow(ctx, id, run.GetRunID(), workflows.QueryStage); err == nil {
				_ = v.Get(&stage)
			}
			fmt.Fprintf(stderr, "    %5.0fs  %s\n", time.Since(started).Seconds(), stage)
		}
	}
}

// prepareStack creates the event topics and the bucket on the stack cfg
// names (both idempotent) and returns the object store.
func prepareStack(ctx context.Context, cfg config.Config) (*objstore.Store, error) {
	setupCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := events.EnsureTopics(setupCtx, cfg.Kafka); err != nil {
		return nil, err
	}
	store, err := objstore.New(ctx, cfg.S3)
	if err != nil {
		return nil, err
	}
	if err := store.EnsureBucket(setupCtx); err != nil {
		return nil, err
	}
	return store, nil
}

// demoMetric reads one counter's total from a service's /metrics.
func demoMetric(ctx context.Context, addr, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	total, found := 0.0, false
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != ' ' && line[len(name)] != '{') {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			total, found = total+v, true
		}
	}
	if !found {
		return 0, fmt.Errorf("%s has no %s", addr, name)
	}
	return total, nil
}

// demoStack returns nil when a complete local stack already answers on the
// dev ports, and otherwise starts one.
func demoStack(ctx context.Context, stderr io.Writer, cfg config.Config, stateDir string) (*devstack.Stack, error) {
	var up, down []string
	for _, c := range devstack.All() {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if devstack.Probe(pctx, c, cfg) == nil {
			up = append(up, c.String())
		} else {
			down = append(down, c.String())
		}
		cancel()
	}
	switch {
	case len(down) == 0:
		fmt.Fprintf(stderr, "==> using the local stack that is already running (%s)\n", strings.Join(up, ", "))
		return nil, nil
	case len(up) > 0:
		return nil, fmt.Errorf("part of a local stack is running (%s up, %s down): stop it or start the rest with `adaptrec dev up`",
			strings.Join(up, ", "), strings.Join(down, ", "))
	}
	fmt.Fprintf(stderr, "==> starting the local stack (Temporal, Kafka-protocol broker, Redis, S3) with state in %s\n", stateDir)
	return devstack.Start(ctx, devstack.Options{
		StateDir:   stateDir,
		Components: devstack.All(),
		Ports:      devstack.DevPorts(),
		Persist:    true,
		Logf:       func(format string, args ...any) { fmt.Fprintf(stderr, "    "+format+"\n", args...) },
	})
}

// demoWait follows the workflow's progress through its activities'
// heartbeats until it completes.
func demoWait(ctx context.Context, stderr io.Writer, tc client.Client, run client.WorkflowRun, want int, res *workflows.BackfillResult) error {
	done := make(chan error, 1)
	go func() { done <- run.Get(ctx, res) }()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	last := map[string]int64{}
	for {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("HistoryBackfill %s: %w", run.GetID(), err)
			}
			return nil
		case <-tick.C:
			desc, err := tc.DescribeWorkflowExecution(ctx, run.GetID(), run.GetRunID())
			if err != nil {
				continue
			}
			for _, pa := range desc.GetPendingActivities() {
				var n int64
				if d := pa.GetHeartbeatDetails(); d != nil {
					_ = converter.GetDefaultDataConverter().FromPayloads(d, &n)
				}
				name := pa.GetActivityType().GetName()
				if prev, ok := last[name]; ok && prev == n {
					continue
				}
				last[name] = n
				what := "published to Kafka"
				if name == "AwaitArchived" {
					what = "durable in Parquet on S3"
				}
				fmt.Fprintf(stderr, "    %s: %d / %d events %s\n", name, n, want, what)
			}
		}
	}
}

// demoLive runs simulated live users of the backfilled world against the
// server.
func demoLive(ctx context.Context, cfg config.Config, world *sim.World, o demoOptions) (*sim.LiveReport, error) {
	conn, err := grpc.NewClient(cfg.Server.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", cfg.Server.GRPCAddr, err)
	}
	defer conn.Close()
	return sim.RunLive(ctx, world, adaptrecv1.NewRecommendServiceClient(conn), sim.LiveConfig{
		Users:     o.liveUsrs,
		Duration:  o.live,
		ThinkTime: 50 * time.Millisecond,
	})
}

// quietTemporalLogger drops the SDK client's logs, which would interleave
// with the demo's progress lines.
type quietTemporalLogger struct{}

func (quietTemporalLogger) Debug(string, ...any) {}
func (quietTemporalLogger) Info(string, ...any)  {}
func (quietTemporalLogger) Warn(string, ...any)  {}
func (quietTemporalLogger) Error(string, ...any) {}
