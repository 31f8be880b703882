package workflows

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/testenv"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/registry/onnxcheck"
	"github.com/adaptrec/adaptrec/sim"
	"github.com/adaptrec/adaptrec/trainer/job"
)

// envRecordHistory, when set to a folder, makes TestRetrainOnDevServer
// write the histories of its runs there (retrain_first.json,
// retrain_abort.json): `ADAPTREC_RECORD_RETRAIN_HISTORY=$PWD/testdata`
// refreshes the ones TestRetrainReplay replays.
const envRecordHistory = "ADAPTREC_RECORD_RETRAIN_HISTORY"

// TestRetrainOnDevServer runs RetrainWorkflow with its real activities on
// a real Temporal dev server, broker and S3 server, over three days of a
// simulated world's interactions:
//
//  1. the first run of a model: no GPU worker polls gpu-training, so it
//     trains on the CPU queue and says so; the data contract, the
//     point-in-time training set, the Go trainer, the holdout evaluation,
//     the registry (ONNX Runtime validation) and the promotion are real;
//     the search attributes find the run;
//  2. a second run, evaluated against the first on the same holdout, goes
//     into shadow and is aborted there: the compensation takes it off the
//     shadow alias, production stays on the first version, and the
//     registry's history and the run's history say why.
//
// Each run's history is then replayed (determinism on real histories).
func TestRetrainOnDevServer(t *testing.T) {
	env := testenv.New(t, testenv.Temporal, testenv.Kafka, testenv.S3)
	cfg := env.Config()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	store := testenv.Bucket(t, cfg)
	fs, err := features.Load("../features/features.yaml")
	if err != nil {
		t.Fatal(err)
	}

	start := time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC)
	world, err := sim.NewWorld(sim.WorldConfig{Seed: 11, Start: start, Window: 3 * 24 * time.Hour,
		Catalogue: sim.CatalogueConfig{Items: 300}, Population: sim.PopulationConfig{Users: 250}})
	if err != nil {
		t.Fatal(err)
	}
	log := &eventlog.Writer{Store: store, Topic: events.TopicInteractions}
	if _, err := sim.GenerateHistory(ctx, world, sim.HistoryConfig{Events: 30_000}, func(ctx context.Context, evs []*adaptrecv1.Event) error {
		return log.Add(ctx, evs...)
	}); err != nil {
		t.Fatal(err)
	}
	if err := log.Flush(ctx); err != nil {
		t.Fatal(err)
	}

	if err := events.EnsureTopics(ctx, cfg.Kafka); err != nil {
		t.Fatal(err)
	}
	producer, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	reg := &registry.Client{Store: store, Events: producer, Features: fs, Validator: &onnxcheck.Validator{},
		RequiredMetrics: []string{job.MetricAUC, job.MetricLogLoss}, Logf: t.Logf}

	tc, err := client.Dial(client.Options{HostPort: cfg.Temporal.HostPort, Namespace: cfg.Temporal.Namespace})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	w := worker.New(tc, activities.TaskQueueDefault, worker.Options{MaxHeartbeatThrottleInterval: time.Second})
	w.RegisterWorkflow(RetrainWorkflow)
	w.RegisterActivity(&activities.Retrain{Store: store, Registry: reg, Features: fs})
	w.RegisterActivity(&activities.Training{Store: store, S3: cfg.S3, Signal: tc.SignalWorkflow, ProgressEvery: time.Second})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	s := cfg.Pipeline
	s.TrainingWindow = 48 * time.Hour
	s.MinRows, s.MaxStaleness, s.MaxRowChange = 500, 6*time.Hour, 0.5
	s.GPUScheduleToStart = 3 * time.Second
	s.TrainingTimeout, s.TrainingHeartbeat = 5*time.Minute, 30*time.Second
	// The second run must get past the offline gates whatever two seeds
	// of a small simulation measure; the gates' arithmetic is unit tested.
	s.MaxAUCDrop, s.MaxNDCGDrop = 1, 1
	s.ShadowCheckInterval, s.ShadowMaxDuration = 10*time.Minute, time.Hour
	params := RetrainParams{
		Settings: s, Cutoff: world.End(), Actor: "it",
		Params: job.Params{Seed: 3, Ranker: job.RankerParams{Hidden: []int{8}, Epochs: 3, BatchSize: 256},
			Embeddings: job.EmbeddingParams{Factors: 8, Iterations: 2}},
	}

	// 1. The first version.
	first, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: "it-retrain-first", TaskQueue: activities.TaskQueueDefault, WorkflowExecutionTimeout: 5 * time.Minute,
	}, RetrainWorkflow, params)
	if err != nil {
		t.Fatal(err)
	}
	var res RetrainResult
	if err := first.Get(ctx, &res); err != nil {
		t.Fatalf("first run: %v", err)
	}
	t.Logf("first run: version %s, data %+v, training set %+v, training %+v, notes %q, timings %+v",
		res.Version, res.Data, res.TrainingSet, res.Training, res.Notes, res.Timings)
	wantNote := "no GPU worker polled gpu-training within 3s; trained on CPU"
	if res.Outcome != OutcomeSucceeded || res.Production != res.Version || len(res.Notes) == 0 || res.Notes[0] != wantNote ||
		res.Training.TaskQueue != activities.TaskQueueDefault || !strings.HasSuffix(res.Training.JobID, "-cpu") {
		t.Fatalf("first run: %+v", res)
	}
	if res.TrainingSet.Rows == 0 || res.Data.Impressions != res.TrainingSet.Rows {
		t.Errorf("data contract counted %d impressions, the training set has %d rows", res.Data.Impressions, res.TrainingSet.Rows)
	}
	al, err := reg.Aliases(ctx, s.Model)
	if err != nil || al.Production != res.Version {
		t.Fatalf("registry production %q (%v), want %s", al.Production, err, res.Version)
	}
	v1 := res.Version
	testenv.Eventually(t, 30*time.Second, func() error {
		q := fmt.Sprintf("AdaptrecModelVersion = %q AND AdaptrecOutcome = %q AND AdaptrecStage = %q", v1, OutcomeSucceeded, StageDone)
		resp, err := tc.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Namespace: cfg.Temporal.Namespace, Query: q})
		if err != nil {
			return err
		}
		if len(resp.Executions) != 1 || resp.Executions[0].Execution.WorkflowId != "it-retrain-first" {
			return fmt.Errorf("%s finds %d runs", q, len(resp.Executions))
		}
		return nil
	})

	// 2. A second version, aborted in shadow.
	params.Params.Seed = 4
	second, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: "it-retrain-abort", TaskQueue: activities.TaskQueueDefault, WorkflowExecutionTimeout: 5 * time.Minute,
	}, RetrainWorkflow, params)
	if err != nil {
		t.Fatal(err)
	}
	var prog RetrainProgress
	var sawTraining bool
	testenv.Eventually(t, 3*time.Minute, func() error {
		v, err := tc.QueryWorkflow(ctx, second.GetID(), "", QueryProgress)
		if err != nil {
			return err
		}
		if err := v.Get(&prog); err != nil {
			return err
		}
		sawTraining = sawTraining || prog.Training != nil
		if prog.Stage != StageShadow {
			return fmt.Errorf("stage %s", prog.Stage)
		}
		return nil
	})
	// The stage is entered before its alias change is applied: wait for it.
	testenv.Eventually(t, 30*time.Second, func() error {
		al, err = reg.Aliases(ctx, s.Model)
		if err != nil || al.Shadow != prog.Version || al.Production != v1 {
			return fmt.Errorf("in shadow: aliases shadow %q production %q (%v), want shadow %s, production %s", al.Shadow, al.Production, err, prog.Version, v1)
		}
		return nil
	})
	if !sawTraining {
		t.Logf("no training progress was seen by the queries (training may have finished between two polls)")
	}
	if err := tc.SignalWorkflow(ctx, second.GetID(), "", SignalAbort, RetrainStop{By: "it", Reason: "abort in shadow"}); err != nil {
		t.Fatal(err)
	}
	err = second.Get(ctx, &res)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != ErrTypeAborted || !strings.Contains(appErr.Error(), "aborted by it during shadow: abort in shadow") {
		t.Fatalf("second run: %v, want %s", err, ErrTypeAborted)
	}
	if err := appErr.Details(&res); err != nil {
		t.Fatal(err)
	}
	if res.Evaluation.Production == nil || res.Evaluation.ProductionVersion != v1 || res.Evaluation.Rows == 0 {
		t.Errorf("second run evaluation %+v: not compared with %s on a holdout", res.Evaluation, v1)
	}
	al, err = reg.Aliases(ctx, s.Model)
	if err != nil || al.Shadow != "" || al.Canary != "" || al.Production != v1 {
		t.Fatalf("after the abort: aliases %+v (%v), want production %s alone", al, err, v1)
	}
	if al.Change == nil || al.Change.Action != registry.ActionClearShadow || !strings.Contains(al.Change.Reason, "Aborted: aborted by it during shadow") {
		t.Errorf("last alias change %+v does not say why", al.Change)
	}

	// Every alias change was announced to serving: the promotion, the
	// shadow and its withdrawal.
	var lifecycle []string
	for _, e := range testenv.TopicEvents(t, cfg.Kafka, events.TopicModelLifecycle) {
		if ml := e.GetModelLifecycle(); ml != nil {
			lifecycle = append(lifecycle, ml.GetStage().String()+" "+ml.GetModelVersion())
		}
	}
	t.Logf("lifecycle events: %v", lifecycle)
	if len(lifecycle) < 5 {
		t.Errorf("lifecycle events %v: want the two registrations, the promotion, the shadow and its withdrawal", lifecycle)
	}

	// The histories replay.
	dir := os.Getenv(envRecordHistory)
	if dir == "" {
		dir = t.TempDir()
	}
	for _, run := range []struct{ id, file string }{{"it-retrain-first", "retrain_first.json"}, {"it-retrain-abort", "retrain_abort.json"}} {
		path := filepath.Join(dir, run.file)
		writeHistory(t, tc, run.id, path)
		replayer := worker.NewWorkflowReplayer()
		replayer.RegisterWorkflow(RetrainWorkflow)
		if err := replayer.ReplayWorkflowHistoryFromJSONFile(nil, path); err != nil {
			t.Errorf("replay %s: %v", run.id, err)
		}
	}
}

// writeHistory writes a closed run's history as JSON.
func writeHistory(t *testing.T, tc client.Client, id, path string) {
	t.Helper()
	hist := &historypb.History{}
	it := tc.GetWorkflowHistory(t.Context(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		hist.Events = append(hist.Events, e)
	}
	b, err := protojson.MarshalOptions{Indent: "  "}.Marshal(hist)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
