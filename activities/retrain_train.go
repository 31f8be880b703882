package activities

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/trainer/job"
)

// TaskQueueGPUTraining runs training on GPU hosts: workers there poll only
// this queue (worker.task_queues: [gpu-training]) and register Training.
const TaskQueueGPUTraining = "gpu-training"

// JobsRoot is the key prefix of training jobs' output folders, as
// `adaptrec train` writes them.
const JobsRoot = "training-jobs/"

// SignalTrainingProgress is the signal a training attempt sends its
// workflow with a TrainingProgress, so the workflow's progress query shows
// how far training is (heartbeats carry the same details, but a workflow
// cannot read them).
const SignalTrainingProgress = "training-progress"

// SignalFunc sends a signal to a workflow run; client.Client.SignalWorkflow
// is one.
type SignalFunc func(ctx context.Context, workflowID, runID, signalName string, arg any) error

// Training holds the training activity. A worker of the CPU queue fills
// it without Command (the Go trainer in process); a worker of
// TaskQueueGPUTraining may set Command to the GPU host's trainer program.
type Training struct {
	// Store holds the training sets, the event log and the job output
	// folders (JobsRoot).
	Store *objstore.Store
	// S3 is passed to an external trainer to open the s3:// URIs with.
	S3 config.S3
	// Command, when set, is the external trainer program and its leading
	// arguments (trainer/job.Command); empty trains with job.GoTrainer.
	Command []string
	// Signal, when set, sends progress to the workflow
	// (SignalTrainingProgress) at most every ProgressEvery.
	Signal SignalFunc
	// ProgressEvery throttles progress signals; 5 s when 0.
	ProgressEvery time.Duration
	// Log receives an external trainer's log lines; discarded when nil.
	Log io.Writer
}

// TrainRequest is one training job of a run.
type TrainRequest struct {
	// JobID names the job and its folder JobsRoot+JobID+"/"; the run
	// derives it, so a retried attempt finds the folder of the previous one.
	JobID       string
	TrainingSet string
	Params      job.Params
	CodeVersion string
}

// TrainResult is a finished training job.
type TrainResult struct {
	JobID string
	// Prefix is the output folder's key in the offline store, URI its URI.
	Prefix, URI string
	// Trainer is what trained ("go", or the external program's name);
	// TaskQueue where the activity ran.
	Trainer, TaskQueue string
	SchemaHash         string
	Metrics            map[string]float64
	// Split is how the job split the training set: the training part,
	// the gap dropped before the holdout and the holdout.
	Split job.Split
	// Reused is true when an earlier attempt had finished the job.
	Reused  bool
	Seconds float64
}

// TrainingProgress is how far a training job is: its heartbeat details
// and the payload of SignalTrainingProgress.
type TrainingProgress struct {
	JobID     string
	TaskQueue string
	Attempt   int32
	Stage     string
	Step      int
	Steps     int
	// Fraction estimates the share of the job done, in [0, 1], counting
	// the Go trainer's stages as equal parts.
	Fraction float64
	Message  string
	Elapsed  float64
	Done     bool
}

// trainingStages are the stages in the order the Go trainer runs them.
var trainingStages = []job.Stage{
	job.StageRead, job.StageSplit, job.StageRanker, job.StageEvaluate, job.StageEmbeddings,
	job.StageIndex, job.StageANN, job.StageCovisit, job.StageExport, job.StageWrite,
}

// fraction estimates the share of a job done at p.
func fraction(p job.Progress) float64 {
	for i, s := range trainingStages {
		if s == p.Stage {
			f := float64(i)
			if p.Steps > 0 {
				f += min(float64(p.Step)/float64(p.Steps), 1)
			}
			return f / float64(len(trainingStages))
		}
	}
	return 0
}

// TrainModel runs one training job into JobsRoot+JobID+"/" and checks
// the layout. It heartbeats a TrainingProgress on every progress report
// and at least every 10 seconds (so a killed worker is noticed within the
// heartbeat timeout while a live one is not, even in a long step), and
// signals it to the workflow.
//
// Retries: a folder whose metadata.json exists holds a finished job, which
// a retried attempt checks (job.CheckLayout) and reuses instead of
// training again; any other folder is an interrupted attempt, and the job
// restarts from the beginning, overwriting it (training is deterministic
// for the same data, parameters and seed).
func (t *Training) TrainModel(ctx context.Context, req TrainRequest) (TrainResult, error) {
	info := activity.GetInfo(ctx)
	res := TrainResult{JobID: req.JobID, Prefix: JobsRoot + req.JobID + "/", TaskQueue: info.TaskQueue}
	if t.Store == nil {
		return res, nonRetryable(errors.New("the training worker has no store"), ErrTypeInvalidParams)
	}
	in := job.Input{
		Format: job.InputFormat, JobID: req.JobID, Store: t.Store.URI(""), TrainingSet: req.TrainingSet,
		Events: job.EventRange{Topic: events.TopicInteractions}, Params: req.Params, CodeVersion: req.CodeVersion,
	}
	if in.CodeVersion == "" {
		in.CodeVersion = job.CodeVersion()
	}
	if err := in.Validate(); err != nil {
		return res, nonRetryable(err, ErrTypeInvalidParams)
	}
	dir := job.NewStoreDir(t.Store, res.Prefix)
	res.URI = dir.URI("")
	start := time.Now()
	log := activity.GetLogger(ctx)

	var mu sync.Mutex
	last := TrainingProgress{JobID: req.JobID, TaskQueue: info.TaskQueue, Attempt: info.Attempt, Stage: "start"}
	var lastSignal time.Time
	every := t.ProgressEvery
	if every <= 0 {
		every = 5 * time.Second
	}
	send := func(p TrainingProgress, force bool) {
		activity.RecordHeartbeat(ctx, p)
		if t.Signal == nil || (!force && time.Since(lastSignal) < every) {
			return
		}
		lastSignal = time.Now()
		if err := t.Signal(ctx, info.WorkflowExecution.ID, info.WorkflowExecution.RunID, SignalTrainingProgress, p); err != nil {
			log.Warn("training progress not signalled to the workflow", "err", err)
		}
	}
	report := func(p job.Progress) {
		mu.Lock()
		defer mu.Unlock()
		last.Stage, last.Step, last.Steps, last.Message = string(p.Stage), p.Step, p.Steps, p.Message
		last.Fraction, last.Elapsed = fraction(p), time.Since(start).Seconds()
		send(last, false)
	}

	if _, err := dir.Get(ctx, job.MetadataFile); err == nil {
		l, err := job.CheckLayout(ctx, dir)
		if err != nil {
			return res, nonRetryable(fmt.Errorf("training job %s finished earlier but its output fails its checks: %w", res.URI, err), ErrTypeInvalidLayout)
		}
		log.Info("reusing the finished training job of an earlier attempt", "job", req.JobID, "output", res.URI)
		res.Reused = true
		return t.result(res, l, start), nil
	} else if !errors.Is(err, job.ErrNotFound) {
		return res, err
	}

	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(10 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				mu.Lock()
				last.Elapsed = time.Since(start).Seconds()
				activity.RecordHeartbeat(ctx, last)
				mu.Unlock()
			}
		}
	}()
	report(job.Progress{Stage: job.StageRead, Message: fmt.Sprintf("attempt %d on %s: training set %s", info.Attempt, info.TaskQueue, req.TrainingSet)})

	var trainer job.Trainer = &job.GoTrainer{Store: t.Store, Progress: report, CodeVersion: req.CodeVersion}
	if len(t.Command) > 0 {
		s3 := t.S3
		trainer = &job.Command{Path: t.Command[0], Args: t.Command[1:], S3: &s3, Store: t.Store, Progress: report, Log: t.Log}
	}
	l, err := trainer.Train(ctx, in, dir)
	if err != nil {
		if errors.Is(err, job.ErrInvalidLayout) {
			return res, nonRetryable(err, ErrTypeInvalidLayout)
		}
		return res, fmt.Errorf("training job %s: %w", req.JobID, err)
	}
	mu.Lock()
	last.Stage, last.Step, last.Steps, last.Fraction, last.Done = string(job.StageWrite), 0, 0, 1, true
	last.Message, last.Elapsed = "done: "+l.URI, time.Since(start).Seconds()
	send(last, true)
	mu.Unlock()
	return t.result(res, l, start), nil
}

func (t *Training) result(res TrainResult, l *job.Layout, start time.Time) TrainResult {
	res.Trainer, res.SchemaHash, res.Metrics = l.Metadata.Trainer, l.Metadata.SchemaHash, l.Metadata.Metrics
	res.Split = l.Metadata.Split
	res.Seconds = time.Since(start).Seconds()
	return res
}

// SplitCommand splits a configured trainer command line on spaces (wrap
// anything fancier in a script), as `adaptrec train --external-command`
// does.
func SplitCommand(s string) []string { return strings.Fields(s) }
