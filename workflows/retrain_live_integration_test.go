package workflows

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/adaptrec/adaptrec/internal/servingtest"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/consumers/feedback"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/online"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/internal/testenv"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/registry/onnxcheck"
	"github.com/adaptrec/adaptrec/serving"
	"github.com/adaptrec/adaptrec/sim"
	"github.com/adaptrec/adaptrec/trainer/job"
)

// liveLoad runs simulated live users against a RecommendService in
// chunks of a few seconds until stop is called, so that every chunk ends
// with its events ingested, and collects what they met.
type liveLoad struct {
	mu      sync.Mutex
	reports []*sim.LiveReport
	errs    []error
	stop    chan struct{}
	done    chan struct{}
}

func startLiveLoad(ctx context.Context, world *sim.World, rc adaptrecv1.RecommendServiceClient) *liveLoad {
	l := &liveLoad{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for {
			select {
			case <-l.stop:
				return
			case <-ctx.Done():
				return
			default:
			}
			// Generous timeouts: a loaded two-core machine must not turn a
			// slow answer into a failed request.
			rep, err := sim.RunLive(ctx, world, rc, sim.LiveConfig{Users: 4, Duration: 3 * time.Second,
				ThinkTime: 20 * time.Millisecond, RequestTimeout: 15 * time.Second})
			l.mu.Lock()
			if rep != nil {
				l.reports = append(l.reports, rep)
			}
			if err != nil {
				l.errs = append(l.errs, err)
			}
			l.mu.Unlock()
		}
	}()
	return l
}

// finish stops the load and returns its totals: requests, the failed
// Recommend and Ingest calls by gRPC code, and the ingest drops.
func (l *liveLoad) finish() (requests int64, failed map[string]int64, dropped int64, errs []error) {
	close(l.stop)
	<-l.done
	failed = map[string]int64{}
	for _, r := range l.reports {
		requests += r.Requests
		for code, n := range r.Errors {
			failed["Recommend "+code] += n
		}
		for code, n := range r.Ingest.Errors {
			failed["Ingest "+code] += n
		}
		dropped += r.Ingest.Dropped
	}
	return requests, failed, dropped, l.errs
}

// liveRig is everything TestRetrainLive runs in process against the real
// servers: a Temporal worker with the retraining and batch-feature
// workflows and activities, the feedback consumer, and a serving instance
// on gRPC.
type liveRig struct {
	t      *testing.T
	cfg    config.Config
	tc     client.Client
	reg    *registry.Client
	client adaptrecv1.RecommendServiceClient
}

// TestRetrainLive runs the whole retraining pipeline on a real Temporal
// dev server, broker, Redis and S3 server with live traffic: a simulated
// world's history in the event log, batch features made current and
// loaded into Redis (BatchFeatures), a first model trained and promoted
// by RetrainWorkflow, a serving instance (serving.NewInstance) answering
// simulated live users who click and whose interactions are ingested with
// their request ids, and the feedback consumer joining them with the
// served predictions. Then, with the users still coming:
//
//  1. a retrain goes through the shadow (mirrored requests scored by the
//     candidate, the shadow report read from the predictions topic) and
//     both canary steps (guardrails read from the feedback loop's accuracy
//     windows) to the cutover: the registry and the serving instance move
//     to the new version, and no request fails meanwhile;
//  2. a retrain whose canary guardrail cannot be met (a latency p99 bound
//     of 1µs) is stopped at its first canary step and withdrawn: the
//     outcome and reason name the metric, its value and the threshold, and
//     production stays on the version of case 1, in the registry and in
//     the answers.
func TestRetrainLive(t *testing.T) {
	env := testenv.New(t, testenv.Temporal, testenv.Kafka, testenv.Redis, testenv.S3)
	cfg := env.Config()
	cfg.Features.File = "../features/features.yaml"
	cfg.Server.ModelPoll = time.Second
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	store := testenv.Bucket(t, cfg)
	fs, err := features.Load(cfg.Features.File)
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	// The world's history ends an hour ago; the live users go on from now.
	now := time.Now().UTC()
	worldID := "it-live"
	world, err := sim.NewWorld(sim.WorldConfig{Seed: 23, Start: now.Truncate(time.Hour).Add(-72 * time.Hour), Window: 71 * time.Hour,
		Catalogue: sim.CatalogueConfig{Items: 300}, Population: sim.PopulationConfig{Users: 250}})
	if err != nil {
		t.Fatal(err)
	}
	var cat bytes.Buffer
	if _, err := world.Catalogue.WriteTo(&cat); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Put(ctx, activities.CatalogueKey(worldID), cat.Bytes(), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	writeSimHistory(t, ctx, store, world, 30_000)
	if err := events.EnsureTopics(ctx, cfg.Kafka); err != nil {
		t.Fatal(err)
	}

	// The worker, in process.
	producer, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	reg := &registry.Client{Store: store, Events: producer, Features: fs, Validator: &onnxcheck.Validator{},
		RequiredMetrics: []string{job.MetricAUC, job.MetricLogLoss}, Logf: t.Logf}
	tc, err := client.Dial(client.Options{HostPort: cfg.Temporal.HostPort, Namespace: cfg.Temporal.Namespace, Logger: quietTemporal{}})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	rdb := online.NewClient(cfg.Redis)
	defer rdb.Close()
	w := worker.New(tc, activities.TaskQueueDefault, worker.Options{MaxHeartbeatThrottleInterval: time.Second})
	w.RegisterWorkflow(RetrainWorkflow)
	w.RegisterWorkflow(BatchFeatures)
	w.RegisterActivity(&activities.Retrain{Store: store, Registry: reg, Features: fs, Online: activities.FeedbackReader{Kafka: cfg.Kafka}})
	w.RegisterActivity(&activities.Training{Store: store, S3: cfg.S3, Signal: tc.SignalWorkflow, ProgressEvery: time.Second})
	w.RegisterActivity(&activities.BatchFeatures{Kafka: cfg.Kafka, Store: store, FeaturesFile: cfg.Features.File,
		Preload: online.Preloader(rdb, fs, online.ObjectSnapshots{Store: store}, online.LoadOptions{KeyPrefix: cfg.Features.KeyPrefix})})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	// Batch features of the history, current and in Redis.
	bf, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "it-live-features", TaskQueue: activities.TaskQueueDefault,
		WorkflowExecutionTimeout: 3 * time.Minute}, BatchFeatures, BatchFeaturesParams{AsOf: time.Now().UTC().Truncate(time.Second), WorldID: worldID})
	if err != nil {
		t.Fatal(err)
	}
	var feats BatchFeaturesResult
	if err := bf.Get(ctx, &feats); err != nil || len(feats.Current) == 0 {
		t.Fatalf("batch features: %+v, %v", feats, err)
	}

	// A first production model.
	s := cfg.Pipeline
	s.TrainingWindow = 48 * time.Hour
	s.MinRows, s.MaxStaleness, s.MaxRowChange = 500, 6*time.Hour, 0.5
	s.GPUScheduleToStart = 2 * time.Second
	s.TrainingTimeout, s.TrainingHeartbeat = 5*time.Minute, 30*time.Second
	s.MaxAUCDrop, s.MaxNDCGDrop = 1, 1 // two seeds of a small simulation; the gate's arithmetic is unit tested
	params := RetrainParams{
		Settings: s, Cutoff: world.End(), Actor: "it",
		Params: job.Params{Seed: 3, Ranker: job.RankerParams{Hidden: []int{8}, Epochs: 3, BatchSize: 256},
			Embeddings: job.EmbeddingParams{Factors: 8, Iterations: 2}},
	}
	r := &liveRig{t: t, cfg: cfg, tc: tc, reg: reg}
	first := r.retrain(ctx, "it-live-first", params)
	if first.Outcome != OutcomeSucceeded || first.Production != first.Version {
		t.Fatalf("first run: %+v", first)
	}
	v1 := first.Version

	// Serving, the feedback loop and the live users.
	r.serve(ctx, quiet)
	r.waitAnswers(ctx, world, v1, 2*time.Minute)
	fb, err := feedback.New(feedback.Config{Kafka: cfg.Kafka, GroupID: "it-live-feedback", Window: 2 * time.Second, EmitDelay: 2 * time.Second}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	fbCtx, stopFeedback := context.WithCancel(ctx)
	fbDone := make(chan error, 1)
	go func() { fbDone <- fb.Run(fbCtx) }()
	defer func() { stopFeedback(); <-fbDone }()
	testenv.Eventually(t, time.Minute, func() error { return fb.Ready(ctx) })

	// Shadow and canary shortened to seconds; guardrails loose enough for a
	// healthy candidate on a loaded machine with small samples.
	s.ShadowMinRequests, s.ShadowCheckInterval, s.ShadowMaxDuration = 50, 2*time.Second, 2*time.Minute
	s.ShadowMinCorrelation, s.ShadowMaxLatencyP99, s.ShadowMaxErrorRate = -1, 2*time.Second, 0.2
	s.CanarySteps, s.CanaryHold, s.CanaryCheckInterval, s.CanaryMinRequests = []float64{0.25, 1}, 10*time.Second, 2*time.Second, 10
	s.CanaryMaxCTRDrop, s.CanaryMaxErrorRate, s.CanaryMaxLatencyP99 = 1, 0.2, 5*time.Second
	s.PostCutoverWatch = 4 * time.Second
	s.RequireApproval = false

	t.Run("promoted", func(t *testing.T) {
		load := startLiveLoad(ctx, world, r.client)
		p := params
		p.Settings, p.Params.Seed = s, 4
		res := r.retrain(ctx, "it-live-promote", p)
		r.waitAnswers(ctx, world, res.Version, time.Minute)
		requests, failed, dropped, errs := load.finish()
		t.Logf("promoted %s over %s: shadow %+v; canary %+v; notes %q; timings %+v; %d live requests",
			res.Version, v1, res.Shadow, res.Canary, res.Notes, res.Timings, requests)
		if res.Outcome != OutcomeSucceeded || res.Previous != v1 || res.Production != res.Version || res.Version == v1 {
			t.Fatalf("run: outcome %s (%s), previous %s, production %s, version %s", res.Outcome, res.Reason, res.Previous, res.Production, res.Version)
		}
		if al, err := reg.Aliases(ctx, s.Model); err != nil || al.Production != res.Version || al.Canary != "" || al.Shadow != "" {
			t.Errorf("registry aliases %+v (%v), want production %s alone", al, err, res.Version)
		}
		if sh := res.Shadow; sh == nil || sh.Requests < s.ShadowMinRequests || sh.Matched == 0 || sh.ShadowVersion != res.Version ||
			len(sh.ProductionVersions) != 1 || sh.ProductionVersions[0] != v1 {
			t.Errorf("shadow report %+v: want at least %d mirrored requests of %s matched with %s", sh, s.ShadowMinRequests, res.Version, v1)
		}
		if len(res.Canary) != 2 {
			t.Fatalf("canary steps %+v, want 2", res.Canary)
		}
		for i, c := range res.Canary {
			if c.Weight != s.CanarySteps[i] || c.Report.Canary.Requests < s.CanaryMinRequests || c.Report.Canary.Impressions == 0 {
				t.Errorf("canary step %d: %+v, want weight %v with at least %d requests of the canary", i+1, c, s.CanarySteps[i], s.CanaryMinRequests)
			}
		}
		if c := res.Canary[0].Report; c.Production.Requests == 0 || !strings.Contains(c.Canary.Arm, serving.ArmCanary) {
			t.Errorf("canary step 1 at 25%%: %+v, want requests on both arms", c)
		}
		if requests == 0 || len(failed) > 0 || dropped > 0 || len(errs) > 0 {
			t.Errorf("live users: %d requests, failed calls %v, %d events not ingested, errors %v: want none failed", requests, failed, dropped, errs)
		}
	})
	if t.Failed() {
		return
	}
	al, err := reg.Aliases(ctx, s.Model)
	if err != nil {
		t.Fatal(err)
	}
	v2 := al.Production

	t.Run("guardrail breached", func(t *testing.T) {
		load := startLiveLoad(ctx, world, r.client)
		p := params
		p.Settings, p.Params.Seed = s, 5
		p.Settings.CanaryMaxLatencyP99 = time.Microsecond
		res := r.retrain(ctx, "it-live-breach", p)
		r.waitAnswers(ctx, world, v2, time.Minute)
		requests, failed, dropped, errs := load.finish()
		t.Logf("breach: outcome %s: %s; canary %+v; notes %q", res.Outcome, res.Reason, res.Canary, res.Notes)
		if res.Outcome != ErrTypeCanaryGuardrailBreached || res.Production != v2 || res.Previous != v2 || res.Version == v2 {
			t.Fatalf("run: outcome %s (%s), production %s, previous %s; want %s with production %s", res.Outcome, res.Reason, res.Production, res.Previous, ErrTypeCanaryGuardrailBreached, v2)
		}
		if !strings.Contains(res.Reason, "latency p99 ") || !strings.Contains(res.Reason, "above canary_max_latency_p99 1µs") ||
			!strings.Contains(res.Reason, "rolled back") || !strings.Contains(res.Reason, res.Version) {
			t.Errorf("reason %q does not name the metric, its value, the threshold and the rollback", res.Reason)
		}
		if len(res.Canary) != 1 || res.Canary[0].Report.Canary.Requests < s.CanaryMinRequests || res.Canary[0].Report.Canary.LatencyP99Ms <= 0 {
			t.Errorf("canary steps %+v: want the first step, measured", res.Canary)
		}
		al, err := reg.Aliases(ctx, s.Model)
		if err != nil || al.Production != v2 || al.Canary != "" || al.Shadow != "" {
			t.Errorf("registry aliases %+v (%v), want production %s alone", al, err, v2)
		}
		if al.Change == nil || al.Change.Action != registry.ActionClearCanary || !strings.Contains(al.Change.Reason, ErrTypeCanaryGuardrailBreached) {
			t.Errorf("last alias change %+v does not say why", al.Change)
		}
		if requests == 0 || len(failed) > 0 || dropped > 0 || len(errs) > 0 {
			t.Errorf("live users: %d requests, failed calls %v, %d events not ingested, errors %v: want none failed", requests, failed, dropped, errs)
		}
	})
}

// retrain runs RetrainWorkflow to its end and returns its result, from
// its error's details when it failed.
func (r *liveRig) retrain(ctx context.Context, id string, p RetrainParams) RetrainResult {
	r.t.Helper()
	run, err := r.tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: activities.TaskQueueDefault,
		WorkflowExecutionTimeout: 8 * time.Minute}, RetrainWorkflow, p)
	if err != nil {
		r.t.Fatal(err)
	}
	var res RetrainResult
	if err := run.Get(ctx, &res); err != nil {
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) || appErr.Details(&res) != nil {
			r.t.Fatalf("run %s: %v", id, err)
		}
		if res.Outcome != appErr.Type() {
			r.t.Errorf("run %s: outcome %s, error type %s", id, res.Outcome, appErr.Type())
		}
	}
	return res
}

// serve starts a serving instance on the test's servers, on gRPC.
func (r *liveRig) serve(ctx context.Context, log *slog.Logger) {
	t := r.t
	t.Helper()
	// The ONNX ranker's budget is raised from 25 ms: on a loaded two-core
	// machine a slow call would fall back to the simple ranker, which the
	// feedback loop counts as an error of the version.
	pc := serving.PipelineConfig{Candidates: r.cfg.Server.Candidates, RankTimeout: 500 * time.Millisecond, Rerank: r.cfg.Server.Rerank}
	inst, err := serving.NewInstance(ctx, r.cfg, log, serving.InstanceOptions{Name: "it-live", Pipeline: &pc})
	if err != nil {
		t.Fatal(err)
	}
	r.client = adaptrecv1.NewRecommendServiceClient(servingtest.Serve(t, ctx, inst, 2*time.Minute))
}

// waitAnswers waits until the serving instance answers every one of a
// few dozen users with version from the production arm's full pipeline.
func (r *liveRig) waitAnswers(ctx context.Context, world *sim.World, version string, within time.Duration) {
	r.t.Helper()
	testenv.Eventually(r.t, within, func() error {
		for i := range 40 {
			u := world.Users.Users[i].ID
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			resp, err := r.client.Recommend(cctx, &adaptrecv1.RecommendRequest{UserId: u, NumItems: 10})
			cancel()
			if err != nil {
				return err
			}
			if resp.GetModelVersion() != version || resp.GetExperimentArm() != serving.ArmProduction || len(resp.GetItems()) == 0 {
				return fmt.Errorf("user %s answered by %s (arm %q, %s, %d items), want %s in production",
					u, resp.GetModelVersion(), resp.GetExperimentArm(), resp.GetDegradationLevel(), len(resp.GetItems()), version)
			}
		}
		return nil
	})
}

// quietTemporal drops the Temporal client's and worker's logs.
type quietTemporal struct{}

func (quietTemporal) Debug(string, ...any) {}
func (quietTemporal) Info(string, ...any)  {}
func (quietTemporal) Warn(string, ...any)  {}
func (quietTemporal) Error(string, ...any) {}
