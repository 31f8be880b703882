package workflows

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/devstack"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/internal/testenv"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/sim"
	"github.com/adaptrec/adaptrec/trainer/job"
)

// writeSimHistory writes n events of a simulated world's history to the
// event log in store, as the archiver would.
func writeSimHistory(t *testing.T, ctx context.Context, store *objstore.Store, world *sim.World, n int64) {
	t.Helper()
	log := &eventlog.Writer{Store: store, Topic: events.TopicInteractions}
	if _, err := sim.GenerateHistory(ctx, world, sim.HistoryConfig{Events: n}, func(ctx context.Context, evs []*adaptrecv1.Event) error {
		return log.Add(ctx, evs...)
	}); err != nil {
		t.Fatal(err)
	}
	if err := log.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// workerProc is one run of the cmd/worker binary.
type workerProc struct {
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
}

// startWorker runs cmd/worker from the module root (where the default
// features.file and the ONNX Runtime library of `make tools` are found),
// configured through ADAPTREC_* variables for this test's servers.
func startWorker(t *testing.T, bin string, cfg config.Config, run int) *workerProc {
	t.Helper()
	root, err := devstack.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"ADAPTREC_TEMPORAL_HOST_PORT=" + cfg.Temporal.HostPort,
		"ADAPTREC_TEMPORAL_NAMESPACE=" + cfg.Temporal.Namespace,
		"ADAPTREC_KAFKA_BROKERS=" + strings.Join(cfg.Kafka.Brokers, ","),
		"ADAPTREC_KAFKA_PARTITIONS=" + strconv.Itoa(cfg.Kafka.Partitions),
		"ADAPTREC_REDIS_ADDR=" + cfg.Redis.Addr,
		"ADAPTREC_S3_ENDPOINT=" + cfg.S3.Endpoint,
		"ADAPTREC_S3_BUCKET=" + cfg.S3.Bucket,
		"ADAPTREC_S3_REGION=" + cfg.S3.Region,
		"ADAPTREC_S3_ACCESS_KEY_ID=" + cfg.S3.AccessKeyID,
		"ADAPTREC_S3_SECRET_ACCESS_KEY=" + cfg.S3.SecretAccessKey,
		"ADAPTREC_S3_USE_PATH_STYLE=" + strconv.FormatBool(cfg.S3.UsePathStyle),
		"ADAPTREC_WORKER_HTTP_ADDR=127.0.0.1:0",
		"ADAPTREC_WORKER_TASK_QUEUES=" + activities.TaskQueueDefault,
		"ADAPTREC_LOG_LEVEL=info",
	}
	for _, k := range []string{"ADAPTREC_TOOLS_DIR", "ADAPTREC_ONNXRUNTIME_LIB", "LD_LIBRARY_PATH"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	logPath := filepath.Join(t.TempDir(), fmt.Sprintf("worker-%d.log", run))
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env, cmd.Dir = env, root
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &workerProc{cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.exited:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-p.exited
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("worker run %d log:\n%s", run, b)
		}
	})
	return p
}

// TestRetrainSurvivesWorkerKill runs RetrainWorkflow on the real cmd/worker
// binary against a real Temporal dev server, broker and S3 server, kills
// the worker with SIGKILL while the model trains, starts a new worker, and
// checks that the run resumes where it was: the training activity runs
// again (attempt 2 in the history, after the heartbeat timeout noticed the
// lost worker), the job output it leaves passes the layout checks, and the
// run goes on to register and promote the version.
func TestRetrainSurvivesWorkerKill(t *testing.T) {
	env := testenv.New(t, testenv.Temporal, testenv.Kafka, testenv.S3, testenv.Redis)
	cfg := env.Config()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	store := testenv.Bucket(t, cfg)
	bin := testenv.Binary(t, "./cmd/worker")

	start := time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC)
	world, err := sim.NewWorld(sim.WorldConfig{Seed: 17, Start: start, Window: 3 * 24 * time.Hour,
		Catalogue: sim.CatalogueConfig{Items: 300}, Population: sim.PopulationConfig{Users: 250}})
	if err != nil {
		t.Fatal(err)
	}
	writeSimHistory(t, ctx, store, world, 30_000)
	if err := events.EnsureTopics(ctx, cfg.Kafka); err != nil {
		t.Fatal(err)
	}

	tc, err := client.Dial(client.Options{HostPort: cfg.Temporal.HostPort, Namespace: cfg.Temporal.Namespace})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	first := startWorker(t, bin, cfg, 1)

	s := cfg.Pipeline
	s.TrainingWindow = 48 * time.Hour
	s.MinRows, s.MaxStaleness, s.MaxRowChange = 500, 6*time.Hour, 0.5
	s.GPUScheduleToStart = 2 * time.Second
	// A lost worker is noticed within the heartbeat timeout (the activity
	// heartbeats at least every 10 s while alive); the retry starts after
	// the retry policy's first interval (10 s).
	s.TrainingTimeout, s.TrainingHeartbeat = 5*time.Minute, 15*time.Second
	params := RetrainParams{
		Settings: s, Cutoff: world.End(), Actor: "it",
		// Enough epochs that training lasts long enough to be killed in
		// the middle, on a loaded two-core machine as on a fast one.
		Params: job.Params{Seed: 5, Ranker: job.RankerParams{Hidden: []int{32, 16}, Epochs: 150, BatchSize: 64},
			Embeddings: job.EmbeddingParams{Factors: 8, Iterations: 2}},
	}
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: "it-retrain-kill", TaskQueue: activities.TaskQueueDefault, WorkflowExecutionTimeout: 6 * time.Minute,
	}, RetrainWorkflow, params)
	if err != nil {
		t.Fatal(err)
	}

	// Training on the CPU queue, past its first stage (a progress signal
	// after the start: they come every 5 s), not finished: kill.
	var prog RetrainProgress
	testenv.Eventually(t, 3*time.Minute, func() error {
		v, err := tc.QueryWorkflow(ctx, run.GetID(), "", QueryProgress)
		if err != nil {
			return err
		}
		if err := v.Get(&prog); err != nil {
			return err
		}
		if tp := prog.Training; prog.Stage != StageTrain || tp == nil || tp.TaskQueue != activities.TaskQueueDefault || tp.Fraction <= 0 || tp.Done {
			return fmt.Errorf("stage %s, training progress %+v", prog.Stage, tp)
		}
		return nil
	})
	t.Logf("killing the worker (pid %d) while it trains: %+v", first.cmd.Process.Pid, *prog.Training)
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.exited
	if prog.Training.Attempt != 1 {
		t.Errorf("the killed training attempt was attempt %d, want 1", prog.Training.Attempt)
	}
	killed := time.Now()

	startWorker(t, bin, cfg, 2)
	var sawAttempt2 bool
	done := make(chan error, 1)
	var res RetrainResult
	go func() { done <- run.Get(ctx, &res) }()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(4 * time.Minute)
	for err = nil; ; {
		select {
		case err = <-done:
		case <-timeout:
			t.Fatalf("the run did not finish within 4 minutes of the restart; last progress %+v", prog)
		case <-tick.C:
			if v, qerr := tc.QueryWorkflow(ctx, run.GetID(), "", QueryProgress); qerr == nil && v.Get(&prog) == nil {
				sawAttempt2 = sawAttempt2 || (prog.Training != nil && prog.Training.Attempt >= 2)
			}
			continue
		}
		break
	}
	if err != nil {
		t.Fatalf("run after the restart: %v", err)
	}
	t.Logf("finished %s after the kill: version %s, training %+v, notes %q, timings %+v",
		time.Since(killed).Round(time.Second), res.Version, res.Training, res.Notes, res.Timings)
	if res.Outcome != OutcomeSucceeded || res.Version == "" || res.Production != res.Version {
		t.Fatalf("result %+v: want a promoted version", res)
	}
	if res.Training.TaskQueue != activities.TaskQueueDefault || res.Training.Reused {
		t.Errorf("training ran on %s (reused %v): want a fresh job on %s", res.Training.TaskQueue, res.Training.Reused, activities.TaskQueueDefault)
	}
	if !sawAttempt2 {
		t.Logf("no progress of attempt 2 was seen by the queries (it may have finished between two polls)")
	}

	// The history: the training activity on the CPU queue completed on
	// attempt 2 or later.
	var trainAttempt int32
	scheduled := map[int64]string{} // event id → activity type, task queue
	it := tc.GetWorkflowHistory(ctx, run.GetID(), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := e.GetActivityTaskScheduledEventAttributes(); a != nil {
			scheduled[e.GetEventId()] = a.GetActivityType().GetName() + "@" + a.GetTaskQueue().GetName()
		}
		if a := e.GetActivityTaskStartedEventAttributes(); a != nil && scheduled[a.GetScheduledEventId()] == "TrainModel@"+activities.TaskQueueDefault {
			trainAttempt = a.GetAttempt()
		}
	}
	if trainAttempt < 2 {
		t.Errorf("TrainModel on %s started with attempt %d in the history, want >= 2 (activities scheduled: %v)", activities.TaskQueueDefault, trainAttempt, scheduled)
	}

	// The job output is whole and is what was registered and promoted.
	l, err := job.CheckLayout(ctx, job.NewStoreDir(store, res.Training.Prefix))
	if err != nil {
		t.Fatalf("job output %s: %v", res.Training.Prefix, err)
	}
	if l.Metadata.Params.Seed != 5 || l.Metadata.Params.Ranker.Epochs != 150 {
		t.Errorf("job metadata params %+v, want the run's", l.Metadata.Params)
	}
	reg := &registry.Client{Store: store}
	al, err := reg.Aliases(ctx, s.Model)
	if err != nil || al.Production != res.Version {
		t.Fatalf("registry production %q (%v), want %s", al.Production, err, res.Version)
	}
}
