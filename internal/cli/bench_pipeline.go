package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/bench"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/devstack"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/sim"
	"github.com/adaptrec/adaptrec/workflows"
)

type benchPipelineOptions struct {
	events, users, items, days int
	instances                  int
	liveUsers                  int
	thinkTime                  time.Duration
	seed                       uint64
	keepLogs                   bool
	asJSON                     bool
	lookupTool                 func(string) (string, error)
}

func newBenchPipelineCmd(asJSON *bool, lookupTool func(string) (string, error)) *cobra.Command {
	o := benchPipelineOptions{lookupTool: lookupTool}
	cmd := &cobra.Command{
		Use:   "pipeline",
		Short: "Seconds of RetrainWorkflow end to end on 1,000,000 simulated events, and the cutover and rollback times of serving",
		Long: fmt.Sprintf(`pipeline runs the retraining workflow end to end against a local stack of
its own (Temporal, the Kafka-protocol broker, Redis, S3 on free ports in a
temporary directory) and the platform's binaries (bin/consumers with the
feedback loop, bin/worker, and --instances bin/server processes), found next
to this adaptrec.

Setup, untimed (setup_seconds): the HistoryBackfill workflow publishes
--events simulated interactions to Kafka and waits until the archiver has
written them to Parquet on S3; the BatchFeatures workflow loads the batch
features; a first model is trained on the last two days and promoted (the
first version of a model has nothing to be compared with, so it skips shadow
and canary); the serving instances load it. Simulated live users then call
every instance continuously (--users-per-instance each) and ingest what they
did, which feeds the feedback loop.

Timed: RetrainWorkflow, started through Temporal with its shadow, canary and
watch shortened to seconds by configuration (the settings are in the output):
total_seconds is from its start to its result, stages the seconds of each of
its stages. cutover_ms is from the promotion's ModelLifecycleEvent to the
moment every instance answers with the new version, as the load generator's
responses per instance show. Then production is rolled back as 'adaptrec
models rollback' does, by a ModelChange workflow that bin/worker runs:
rollback_ms is from the moment the workflow is started to the moment every
instance answers with the previous version, rollback_workflow_ms the
workflow's own duration (its start to its close, as Temporal records them).
failed_requests_cutover and failed_requests_rollback count the calls that
failed meanwhile.

Goals on a 2-core machine: total ≤ %d s, cutover ≤ %d ms, rollback ≤ %d ms,
no failed request; meets_target says whether the run reached all of them.`,
			bench.PipelineTargetTotalSeconds, bench.PipelineTargetCutoverMs, bench.PipelineTargetRollbackMs),
		Example: `  adaptrec bench pipeline --json
  adaptrec bench pipeline --events 200000 --instances 3`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.asJSON = *asJSON
			if err := o.validate(); err != nil {
				return err
			}
			return benchPipeline(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.events, "events", bench.DefaultPipelineEvents, "simulated historical events published through Kafka and the archiver")
	f.IntVar(&o.users, "users", 20_000, "simulated users")
	f.IntVar(&o.items, "items", 50_000, "catalogue items")
	f.IntVar(&o.days, "days", 14, "days of history, ending now")
	f.IntVar(&o.instances, "instances", 2, "serving instances (bin/server processes) under load")
	f.IntVar(&o.liveUsers, "users-per-instance", 4, "concurrent simulated live users per serving instance")
	f.DurationVar(&o.thinkTime, "think-time", 50*time.Millisecond, "mean pause of a live user between requests")
	f.Uint64Var(&o.seed, "seed", 1, "world seed")
	f.BoolVar(&o.keepLogs, "keep-logs", false, "keep the services' logs after a successful run (a failed run always keeps them)")
	return cmd
}

func (o benchPipelineOptions) validate() error {
	var errs []error
	if o.events < 1 || int64(o.events) > sim.MaxHistoryEvents {
		errs = append(errs, fmt.Errorf("--events must be in 1..%d, got %d", int64(sim.MaxHistoryEvents), o.events))
	}
	if o.users < 1 || o.items < 1 || o.items > sim.MaxItems {
		errs = append(errs, fmt.Errorf("--users %d and --items %d must be at least 1 (items at most %d)", o.users, o.items, sim.MaxItems))
	}
	if o.days < 3 || o.days > 365 {
		errs = append(errs, fmt.Errorf("--days must be in 3..365 (two days of training window and history before it), got %d", o.days))
	}
	if o.instances < 1 || o.instances > 8 {
		errs = append(errs, fmt.Errorf("--instances must be in 1..8, got %d", o.instances))
	}
	if o.liveUsers < 1 {
		errs = append(errs, fmt.Errorf("--users-per-instance must be >= 1, got %d", o.liveUsers))
	}
	if o.thinkTime < 0 {
		errs = append(errs, fmt.Errorf("--think-time must be >= 0, got %s", o.thinkTime))
	}
	return errors.Join(errs...)
}

// stackEnv is the environment that points the platform's binaries at the
// components of cfg (a devstack's configuration) rather than the default
// dev ports.
func stackEnv(cfg config.Config) []string {
	p := config.EnvPrefix
	return []string{
		p + "KAFKA_BROKERS=" + strings.Join(cfg.Kafka.Brokers, ","),
		p + "KAFKA_PARTITIONS=" + strconv.Itoa(cfg.Kafka.Partitions),
		p + "REDIS_ADDR=" + cfg.Redis.Addr,
		p + "S3_ENDPOINT=" + cfg.S3.Endpoint,
		p + "S3_BUCKET=" + cfg.S3.Bucket,
		p + "S3_ACCESS_KEY_ID=" + cfg.S3.AccessKeyID,
		p + "S3_SECRET_ACCESS_KEY=" + cfg.S3.SecretAccessKey,
		p + "S3_USE_PATH_STYLE=" + strconv.FormatBool(cfg.S3.UsePathStyle),
		p + "TEMPORAL_HOST_PORT=" + cfg.Temporal.HostPort,
		p + "WORKER_HTTP_ADDR=" + cfg.Worker.HTTPAddr,
		p + "CONSUMERS_HTTP_ADDR=" + cfg.Consumers.HTTPAddr,
	}
}

// benchPipelineMaxMetricDrop bounds the candidate's AUC and NDCG below
// production's in the benchmark's offline gate (pipeline.max_auc_drop and
// max_ndcg_drop, 0.01 by default).
const benchPipelineMaxMetricDrop = 0.05

// benchPipelineCanaryMaxCTRDrop is the benchmark's canary CTR guardrail
// (pipeline.canary_max_ctr_drop, 0.1 by default).
const benchPipelineCanaryMaxCTRDrop = 0.3

// benchPipelineSettings are the demo's shortened settings (loopPipeline)
// with a wider offline gate and canary guardrail: the benchmark times the
// path, on a world whose tastes do not move, where the candidate and
// production are two models of the same data a day apart. Their AUC (near
// 0.5 on the simulated holdout) differ by noise of about a hundredth, and
// their CTRs over canary steps of seconds by sampling noise of several
// percent. A candidate that is really worse still fails.
func benchPipelineSettings(p config.Pipeline) config.Pipeline {
	p = loopPipeline(p)
	p.MaxAUCDrop, p.MaxNDCGDrop = benchPipelineMaxMetricDrop, benchPipelineMaxMetricDrop
	p.CanaryMaxCTRDrop = benchPipelineCanaryMaxCTRDrop
	return p
}

// freeAddrs returns n loopback addresses free at the time of the call.
func freeAddrs(n int) ([]string, error) {
	out := make([]string, 0, n)
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	return out, nil
}

// lifecycleLog keeps the ModelLifecycleEvents read while the benchmark
// runs.
type lifecycleLog struct {
	mu     sync.Mutex
	events []*adaptrecv1.Event
}

func (l *lifecycleLog) add(e *adaptrecv1.Event) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

// find returns the event time of the latest event of stage for version.
func (l *lifecycleLog) find(stage adaptrecv1.LifecycleStage, version string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.events) - 1; i >= 0; i-- {
		e := l.events[i]
		if m := e.GetModelLifecycle(); m != nil && m.GetStage() == stage && m.GetModelVersion() == version {
			return e.GetEnvelope().GetEventTime().AsTime(), true
		}
	}
	return time.Time{}, false
}

// await waits up to timeout for the event of stage for version.
func (l *lifecycleLog) await(ctx context.Context, stage adaptrecv1.LifecycleStage, version string, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		if at, ok := l.find(stage, version); ok {
			return at, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("no %s ModelLifecycleEvent of %s on %s within %s", stage, version, events.TopicModelLifecycle, timeout)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// awaitSwitch waits until every instance answered with version for a
// while after a change at since (or timeout passes) and returns the
// switches.
func awaitSwitch(ctx context.Context, watch *bench.VersionWatch, version string, since time.Time, timeout time.Duration) []bench.Switch {
	deadline := time.Now().Add(timeout)
	for !watch.Settled(version, since, 2*time.Second, 20) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	return watch.Switched(version, since)
}

// switchEnd is the end of a change's window: the last instance's switch,
// or since plus timeout when one never switched.
func switchEnd(ss []bench.Switch, since time.Time, timeout time.Duration) time.Time {
	end := since
	for _, s := range ss {
		if s.At.IsZero() {
			return since.Add(timeout)
		}
		if s.At.After(end) {
			end = s.At
		}
	}
	return end
}

func benchPipeline(ctx context.Context, stdout, stderr io.Writer, o benchPipelineOptions) (err error) {
	stderr = &lockedWriter{w: stderr}
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "bench pipeline: "+format+"\n", args...) }
	begin := time.Now()
	// The services read the feature definitions from the working
	// directory: fail early when they are not there.
	if _, err := features.Load(config.Default().Features.File); err != nil {
		return fmt.Errorf("%w (run from the repository root, where features/features.yaml is)", err)
	}
	for _, name := range []string{"server", "worker", "consumers"} {
		if _, err := siblingBinary(name); err != nil {
			return err
		}
	}

	// 1. The stack and the platform's services, on free ports.
	stack, stopStack, err := startBenchStack(ctx, "pipeline", devstack.All(), o.lookupTool, logf)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stopStack()) }()
	cfg := stack.Config()
	if cfg.Kafka.Partitions == 0 {
		cfg.Kafka.Partitions = config.Default().Kafka.Partitions
	}
	addrs, err := freeAddrs(2 + 2*o.instances)
	if err != nil {
		return err
	}
	cfg.Worker.HTTPAddr, cfg.Consumers.HTTPAddr = addrs[0], addrs[1]
	env := stackEnv(cfg)
	logDir, err := os.MkdirTemp("", "adaptrec-bench-pipeline-logs-")
	if err != nil {
		return fmt.Errorf("log directory: %w", err)
	}
	defer func() {
		if err == nil && !o.keepLogs {
			os.RemoveAll(logDir)
			return
		}
		logf("services' logs kept in %s", logDir)
	}()
	if _, err := prepareStack(ctx, cfg); err != nil {
		return err
	}
	var services []*service
	defer func() {
		for i := len(services) - 1; i >= 0; i-- {
			if serr := services[i].stop(20 * time.Second); serr != nil {
				err = errors.Join(err, serr)
			}
		}
	}()
	for _, s := range []struct {
		name, http string
		env        []string
	}{
		{"consumers", cfg.Consumers.HTTPAddr, loopConsumersEnv()},
		{"worker", cfg.Worker.HTTPAddr, nil},
	} {
		logf("starting %s (log: %s/%s.log)", s.name, logDir, s.name)
		svc, err := startService(s.name, s.http, logDir, append(append([]string(nil), env...), s.env...))
		if err != nil {
			return err
		}
		services = append(services, svc)
		if err := svc.waitReady(ctx, time.Minute); err != nil {
			return err
		}
	}
	tc, err := dialWorkflows(ctx, cfg)
	if err != nil {
		return err
	}
	defer tc.Close()

	// 2. The history through Kafka and the archiver, batch features, a
	// first production model.
	now := time.Now().UTC()
	worldID := "bench-pipeline-" + now.Format("20060102-150405")
	req := activities.HistoryRequest{
		WorldID: worldID, Seed: o.seed, Events: o.events, Users: o.users, Items: o.items,
		Start: now.Add(-time.Duration(o.days) * 24 * time.Hour).Truncate(time.Hour), End: now.Add(-time.Hour),
	}
	logf("HistoryBackfill: %d events, %d users, %d items over %d days through Kafka and the archiver", o.events, o.users, o.items, o.days)
	lap := time.Now()
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "history-backfill-" + worldID, TaskQueue: activities.TaskQueueDefault},
		workflows.HistoryBackfill, workflows.BackfillParams{History: req})
	if err != nil {
		return fmt.Errorf("start HistoryBackfill: %w", err)
	}
	var backfill workflows.BackfillResult
	if err := demoWait(ctx, stderr, tc, run, o.events, &backfill); err != nil {
		return err
	}
	logf("%d events published and %d archived in %.1fs", backfill.History.Published, backfill.Archive.Rows, time.Since(lap).Seconds())
	if _, _, err := demoBatchFeatures(ctx, stderr, tc, cfg, worldID, req.End); err != nil {
		return err
	}
	first, err := demoTrain(ctx, stderr, cfg, req, demoFirstModelAge)
	if err != nil {
		return err
	}

	// 3. The serving instances, under continuous load.
	watch := bench.NewVersionWatch(o.instances)
	for i := range o.instances {
		grpcAddr, httpAddr := addrs[2+2*i], addrs[3+2*i]
		dir := filepath.Join(logDir, fmt.Sprintf("instance-%d", i+1))
		logf("starting serving instance %d on %s (log: %s/server.log)", i+1, grpcAddr, dir)
		ienv := append(append([]string(nil), env...),
			config.EnvPrefix+"SERVER_GRPC_ADDR="+grpcAddr, config.EnvPrefix+"SERVER_HTTP_ADDR="+httpAddr)
		svc, err := startService("server", httpAddr, dir, ienv)
		if err != nil {
			return err
		}
		services = append(services, svc)
	}
	for _, svc := range services[2:] {
		if err := svc.waitReady(ctx, 3*time.Minute); err != nil {
			return err
		}
	}
	var lifecycle lifecycleLog
	followCtx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	go events.Follow(followCtx, cfg.Kafka, events.TopicModelLifecycle, nil, func(_ context.Context, e *adaptrecv1.Event) error {
		lifecycle.add(e)
		return nil
	})
	world, err := sim.NewWorld(activities.WorldConfig(req))
	if err != nil {
		return err
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	type loadOut struct {
		rep *sim.LiveReport
		err error
	}
	loads := make(chan loadOut, o.instances)
	for i := range o.instances {
		conn, err := grpc.NewClient(addrs[2+2*i], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fmt.Errorf("connect to instance %d: %w", i+1, err)
		}
		defer conn.Close()
		rc := watch.Client(i, adaptrecv1.NewRecommendServiceClient(conn))
		go func() {
			rep, err := sim.RunLive(loadCtx, world, rc, sim.LiveConfig{Users: o.liveUsers, ThinkTime: o.thinkTime, Seed: o.seed*1000 + uint64(i) + 1})
			loads <- loadOut{rep, err}
		}()
	}
	logf("load: %d simulated live users per instance on %d instances, think time %s", o.liveUsers, o.instances, o.thinkTime)
	if ss := awaitSwitch(ctx, watch, first.Version, time.Now(), 30*time.Second); slices.ContainsFunc(ss, func(s bench.Switch) bool { return s.At.IsZero() }) {
		return fmt.Errorf("not every serving instance answers with %s under load within 30 s; see %s", first.Version, logDir)
	}
	res := bench.PipelineResult{Bench: "pipeline", Events: o.events, Instances: o.instances, PreviousVersion: first.Version,
		Mode: "self-contained", Settings: map[string]string{}}
	settings := benchPipelineSettings(cfg.Pipeline)
	for _, kv := range loopSettings(settings) {
		res.Settings[kv[0]] = kv[1]
	}
	res.SetupSeconds = time.Since(begin).Seconds()
	logf("setup done in %.1fs; every instance answers with %s", res.SetupSeconds, first.Version)

	// 4. The timed part: RetrainWorkflow end to end.
	id := workflows.RetrainID(settings.Model, workflows.TriggerManual, time.Now())
	rrun, link, err := startRetrain(ctx, tc, cfg, settings, id, "adaptrec bench pipeline",
		fmt.Sprintf("bench pipeline: retrain on the last %s of %d simulated events", settings.TrainingWindow, o.events))
	if err != nil {
		return err
	}
	logf("RetrainWorkflow %s started (Temporal UI: %s); shortened settings:", id, link)
	for _, kv := range loopSettings(settings) {
		fmt.Fprintf(stderr, "    %s = %s\n", kv[0], kv[1])
	}
	runStart := time.Now()
	out, runErr := retrainFollow(ctx, stderr, "    ", tc, rrun, 2*time.Second)
	res.TotalSeconds = time.Since(runStart).Seconds()
	res.Stages, res.Outcome, res.Notes, res.NewVersion = stageSeconds(out), out.Outcome, out.Notes, out.Version
	if runErr != nil {
		logf("the run failed: %v", runErr)
	} else {
		logf("RetrainWorkflow done in %.1fs: %s promoted", res.TotalSeconds, out.Version)
		// 5. The cutover, as the instances' answers show it.
		t0, err := lifecycle.await(ctx, adaptrecv1.LifecycleStage_LIFECYCLE_STAGE_PROMOTED, out.Version, 30*time.Second)
		if err != nil {
			return err
		}
		ss := awaitSwitch(ctx, watch, out.Version, t0, 30*time.Second)
		res.CutoverMs, res.CutoverMsByInstance = bench.SlowestSwitch(ss)
		var codes map[string]int64
		res.FailedRequestsCutover, codes = watch.Failures(t0, switchEnd(ss, t0, 30*time.Second))
		logf("cutover: every instance answers with %s %.0f ms after the promotion event (per instance %v ms); %d failed requests %v",
			out.Version, res.CutoverMs, res.CutoverMsByInstance, res.FailedRequestsCutover, codes)

		// 6. A rollback, as `adaptrec models rollback` makes it: the
		// ModelChange workflow, run by bin/worker.
		logf("rolling %s back through the ModelChange workflow", settings.Model)
		rb, err := benchRollback(ctx, tc, cfg, settings.Model, out.Version)
		if err != nil {
			return err
		}
		res.RolledBackTo, res.RollbackWorkflowMs = rb.result.After.Production, rb.workflowMs
		if rb.workflowMs < 0 {
			logf("ModelChange %s: its start and close times were not read: %v", rb.id, rb.describeErr)
		}
		t1 := rb.started
		event, err := lifecycle.await(ctx, adaptrecv1.LifecycleStage_LIFECYCLE_STAGE_ROLLED_BACK, res.RolledBackTo, 30*time.Second)
		if err != nil {
			return err
		}
		ss = awaitSwitch(ctx, watch, res.RolledBackTo, t1, 30*time.Second)
		res.RollbackMs, res.RollbackMsByInstance = bench.SlowestSwitch(ss)
		res.FailedRequestsRollback, codes = watch.Failures(t1, switchEnd(ss, t1, 30*time.Second))
		logf("rollback: ModelChange %s took %.0f ms (the rollback event %.0f ms after its start); every instance answers with %s %.0f ms after its start (per instance %v ms); %d failed requests %v",
			rb.id, res.RollbackWorkflowMs, float64(event.Sub(t1))/float64(time.Millisecond), res.RolledBackTo, res.RollbackMs, res.RollbackMsByInstance,
			res.FailedRequestsRollback, codes)
	}
	stopLoad()
	for range o.instances {
		l := <-loads
		if l.err != nil && !errors.Is(l.err, context.Canceled) {
			err = errors.Join(err, fmt.Errorf("load: %w", l.err))
		}
	}
	res.Requests, res.FailedRequests = watch.Totals()
	if runErr != nil {
		res.CutoverMs, res.RollbackMs, res.RollbackWorkflowMs = -1, -1, -1
	}
	res.Evaluate()
	logf("total %.1fs (goal %d s), cutover %.0f ms and rollback %.0f ms (goals %d ms), %d of %d requests failed; meets target: %v",
		res.TotalSeconds, bench.PipelineTargetTotalSeconds, res.CutoverMs, res.RollbackMs, bench.PipelineTargetCutoverMs,
		res.FailedRequests, res.Requests, res.MeetsTarget)
	if rerr := benchReport(stdout, o.asJSON, res); rerr != nil {
		return errors.Join(err, rerr)
	}
	if runErr != nil {
		return errors.Join(err, fmt.Errorf("bench pipeline: %w", runErr))
	}
	return err
}

// benchRolledBack is a rollback made by benchRollback.
type benchRolledBack struct {
	// id is the ModelChange run's workflow id, result its result.
	id     string
	result workflows.ModelChangeResult
	// started is the moment the run was started: just before its start
	// request was sent.
	started time.Time
	// workflowMs is the run's own duration, from its start to its close
	// as Temporal recorded them; -1 when they could not be read
	// (describeErr says why).
	workflowMs  float64
	describeErr error
}

// benchRollback rolls model's production back from version as `adaptrec
// models rollback --expect-production version` does: a ModelChange run on
// the default task queue, waited for.
func benchRollback(ctx context.Context, tc client.Client, cfg config.Config, model, version string) (benchRolledBack, error) {
	rb := benchRolledBack{id: modelChangeID(registry.ActionRollback, model, time.Now()), workflowMs: -1}
	p := workflows.ModelChangeParams{Model: model, Change: registry.Change{Action: registry.ActionRollback, ExpectProduction: version,
		Actor: "adaptrec bench pipeline", Reason: "bench pipeline: rollback timing"}}
	rb.started = time.Now()
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: rb.id, TaskQueue: activities.TaskQueueDefault,
		WorkflowExecutionTimeout: 2 * time.Minute}, workflows.ModelChange, p)
	if err != nil {
		return rb, fmt.Errorf("start ModelChange %s: %w", rb.id, err)
	}
	if err := run.Get(ctx, &rb.result); err != nil {
		return rb, fmt.Errorf("roll %s back from %s: %w", model, version, modelChangeFailure(rb.id, workflowLink(cfg.Temporal, rb.id), err))
	}
	if !rb.result.Changed || rb.result.After.Production == "" || rb.result.After.Production == version {
		return rb, fmt.Errorf("ModelChange %s rolled nothing back: production %s (revision %d), was %s",
			rb.id, orDash(rb.result.After.Production), rb.result.After.Revision, version)
	}
	desc, err := tc.DescribeWorkflowExecution(ctx, rb.id, run.GetRunID())
	info := desc.GetWorkflowExecutionInfo()
	switch {
	case err != nil:
		rb.describeErr = err
	case info.GetStartTime() == nil || info.GetCloseTime() == nil:
		rb.describeErr = fmt.Errorf("Temporal records no start or close time (status %s)", info.GetStatus())
	default:
		rb.workflowMs = float64(info.GetCloseTime().AsTime().Sub(info.GetStartTime().AsTime())) / float64(time.Millisecond)
	}
	return rb, nil
}
