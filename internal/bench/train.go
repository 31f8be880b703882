package bench

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/batch"
	"github.com/adaptrec/adaptrec/features/offline"
	"github.com/adaptrec/adaptrec/features/snapshot"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/registry/onnxcheck"
	"github.com/adaptrec/adaptrec/sim"
	"github.com/adaptrec/adaptrec/trainer/job"
)

// TrainTargetSeconds is the training goal (model registry issue): training
// on 1,000,000 simulated events end to end — embeddings, ranker, export —
// within two minutes on a 2-core machine.
const TrainTargetSeconds = 120

// Defaults of TrainOptions: the demo's world (make demo).
const (
	DefaultTrainEvents = 1_000_000
	DefaultTrainItems  = 50_000
	DefaultTrainUsers  = 20_000
	DefaultTrainDays   = 14
	// DefaultSnapshotEvery is the interval of the batch snapshots the
	// training rows join with (the first after one interval).
	DefaultSnapshotEvery = 4 * 24 * time.Hour
)

// trainStart is the simulated world's first day: fixed, so every run
// trains on the same log.
var trainStart = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// TrainOptions configure RunTrain. Zero values mean the documented
// defaults.
type TrainOptions struct {
	// Events is the size of the simulated log; DefaultTrainEvents.
	Events int
	// Items, Users and Days shape the world; the Default* constants.
	Items, Users, Days int
	// SnapshotEvery spaces the batch snapshots; DefaultSnapshotEvery.
	SnapshotEvery time.Duration
	// Seed seeds the world and the training.
	Seed uint64
	// Params are the training job's; zero values are job's defaults.
	Params job.Params
	// Logf receives one line per step.
	Logf func(format string, args ...any)
	// Progress receives the training job's progress.
	Progress func(job.Progress)
}

func (o TrainOptions) withDefaults() TrainOptions {
	if o.Events == 0 {
		o.Events = DefaultTrainEvents
	}
	if o.Items == 0 {
		o.Items = DefaultTrainItems
	}
	if o.Users == 0 {
		o.Users = DefaultTrainUsers
	}
	if o.Days == 0 {
		o.Days = DefaultTrainDays
	}
	if o.SnapshotEvery == 0 {
		o.SnapshotEvery = DefaultSnapshotEvery
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return o
}

// Validate reports every invalid option (after defaults).
func (o TrainOptions) Validate() error {
	o = o.withDefaults()
	var errs []error
	if o.Events < 1 || int64(o.Events) > sim.MaxHistoryEvents {
		errs = append(errs, fmt.Errorf("events: %d is not in 1..%d", o.Events, int64(sim.MaxHistoryEvents)))
	}
	if o.Items < 1 || o.Users < 1 || o.Days < 2 {
		errs = append(errs, fmt.Errorf("world: %d items, %d users, %d days: want at least 1, 1 and 2", o.Items, o.Users, o.Days))
	}
	if o.SnapshotEvery <= 0 {
		errs = append(errs, fmt.Errorf("snapshot interval %s must be positive", o.SnapshotEvery))
	}
	if err := o.Params.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// TrainResult is what RunTrain measured; its JSON names are those of
// `adaptrec bench train --json`.
type TrainResult struct {
	Events int `json:"events"`
	// TrainSeconds is the training job end to end: read the training set,
	// split, train and measure the ranker, read the positives, train the
	// embeddings, build the index, export and write the artifacts.
	TrainSeconds float64 `json:"train_seconds"`
	// The job's stages, in seconds.
	ReadSeconds       float64 `json:"read_seconds"`
	RankerSeconds     float64 `json:"ranker_seconds"`
	EvaluateSeconds   float64 `json:"evaluate_seconds"`
	EmbeddingsSeconds float64 `json:"embeddings_seconds"`
	IndexSeconds      float64 `json:"index_seconds"`
	ExportSeconds     float64 `json:"export_seconds"`
	WriteSeconds      float64 `json:"write_seconds"`
	// PrepareSeconds is the data preparation, not part of TrainSeconds:
	// simulating and archiving the log, the batch snapshots and the
	// point-in-time training set.
	PrepareSeconds     float64 `json:"prepare_seconds"`
	SimulateSeconds    float64 `json:"simulate_archive_seconds"`
	SnapshotSeconds    float64 `json:"snapshots_seconds"`
	TrainingSetSeconds float64 `json:"training_set_seconds"`
	// ValidateSeconds is the layout check and the ONNX Runtime validator
	// the registry runs on the result (not part of TrainSeconds).
	ValidateSeconds float64 `json:"validate_seconds"`
	// The training set and its split.
	Rows           int64 `json:"rows"`
	Positives      int64 `json:"positives"`
	Width          int   `json:"width"`
	TrainRows      int64 `json:"train_rows"`
	ValidationRows int64 `json:"validation_rows"`
	Snapshots      int   `json:"snapshots"`
	// The ranker on the validation part (the latest examples).
	AUC             float64 `json:"auc"`
	LogLoss         float64 `json:"logloss"`
	BaselineLogLoss float64 `json:"baseline_logloss"`
	// The model.
	Hidden        string `json:"hidden"`
	Epochs        int    `json:"epochs"`
	Factors       int    `json:"factors"`
	ALSIterations int    `json:"als_iterations"`
	Pairs         int64  `json:"embedding_pairs"`
	Users         int    `json:"embedding_users"`
	Items         int    `json:"embedding_items"`
	RankerBytes   int64  `json:"ranker_bytes"`
	IndexBytes    int64  `json:"index_bytes"`
	Workers       int    `json:"workers"`
	JobID         string `json:"job_id"`
}

// RunTrain prepares a training set from a simulated log on st — the log
// archived as the archiver writes it, batch snapshots every
// SnapshotEvery computed by the batch job's code, and the point-in-time
// join over the whole log — then times one Go training job on it and
// checks its output with the registry's ONNX Runtime validator.
func RunTrain(ctx context.Context, st *objstore.Store, fs *features.FeatureSet, o TrainOptions) (TrainResult, error) {
	o = o.withDefaults()
	if err := o.Validate(); err != nil {
		return TrainResult{}, err
	}
	res := TrainResult{Events: o.Events, Workers: runtime.GOMAXPROCS(0)}
	begin := time.Now()

	window := time.Duration(o.Days) * 24 * time.Hour
	w, err := sim.NewWorld(sim.WorldConfig{Seed: o.Seed, Start: trainStart, Window: window,
		Catalogue: sim.CatalogueConfig{Items: o.Items}, Population: sim.PopulationConfig{Users: o.Users}})
	if err != nil {
		return res, err
	}
	o.Logf("simulating %d events (%d items, %d users, %d days) into the event log on %s", o.Events, o.Items, o.Users, o.Days, st.URI("events/"))
	arch := &eventlog.Writer{Store: st, Topic: events.TopicInteractions}
	stats, err := sim.GenerateHistory(ctx, w, sim.HistoryConfig{Events: int64(o.Events)}, func(ctx context.Context, evs []*adaptrecv1.Event) error {
		return arch.Add(ctx, evs...)
	})
	if err != nil {
		return res, fmt.Errorf("simulate: %w", err)
	}
	if err := arch.Flush(ctx); err != nil {
		return res, err
	}
	res.SimulateSeconds = time.Since(begin).Seconds()
	o.Logf("%d events archived in %.1fs (%d impressions)", stats.Events, res.SimulateSeconds, stats.ByAction[adaptrecv1.Action_ACTION_IMPRESSION])

	lap := time.Now()
	zones := func(id string) string {
		if i, ok := w.Users.Lookup(id); ok {
			return w.Users.Users[i].TimeZone.Name
		}
		return ""
	}
	bc := batch.Config{Catalogue: batch.CatalogueFromSim(w.Catalogue), Zones: zones}
	for asOf := trainStart.Add(o.SnapshotEvery); asOf.Before(w.End()); asOf = asOf.Add(o.SnapshotEvery) {
		computed, err := batch.Compute(ctx, st, fs, asOf, batch.BatchGroups(fs), bc)
		if err != nil {
			return res, fmt.Errorf("batch snapshots as of %s: %w", asOf.Format(time.RFC3339), err)
		}
		for i := range computed.Groups {
			g := &computed.Groups[i]
			if _, err := snapshot.Write(ctx, st, fs, g.Group, asOf, g.Rows, snapshot.WriteOptions{NotComputed: g.NotComputed}); err != nil {
				return res, err
			}
		}
		res.Snapshots++
		o.Logf("batch snapshots as of %s written (%d groups)", asOf.Format(time.RFC3339), len(computed.Groups))
	}
	res.SnapshotSeconds = time.Since(lap).Seconds()

	lap = time.Now()
	var lastLog time.Time
	set, err := offline.Build(ctx, st, fs, offline.Config{From: trainStart, To: stats.Last.Add(time.Millisecond), Zones: zones,
		Progress: func(p offline.Progress) {
			if time.Since(lastLog) >= 5*time.Second {
				lastLog = time.Now()
				o.Logf("training set: %d events read, %d examples", p.Events, p.Examples)
			}
		}})
	if err != nil {
		return res, err
	}
	res.TrainingSetSeconds = time.Since(lap).Seconds()
	res.PrepareSeconds = time.Since(begin).Seconds()
	res.Rows, res.Positives, res.Width = set.Rows, set.Positives, set.Width
	o.Logf("training set %s: %d rows (%d positives) of %d values in %.1fs; data prepared in %.1fs",
		set.ID, set.Rows, set.Positives, set.Width, res.TrainingSetSeconds, res.PrepareSeconds)

	// The measured part: one training job, as `adaptrec train` runs it.
	in := job.Input{
		Format: job.InputFormat, JobID: job.NewJobID(time.Now()), Store: st.URI(""),
		TrainingSet: set.ID, Params: o.Params,
	}
	in.Params.Seed = o.Seed
	out := job.NewStoreDir(st, "training-jobs/"+in.JobID+"/")
	o.Logf("training job %s → %s", in.JobID, out.URI(""))
	g := &job.GoTrainer{Store: st, Progress: o.Progress}
	lap = time.Now()
	l, err := g.Train(ctx, in, out)
	if err != nil {
		return res, fmt.Errorf("train: %w", err)
	}
	res.TrainSeconds = time.Since(lap).Seconds()
	md := l.Metadata
	t := md.Timings
	res.ReadSeconds, res.RankerSeconds, res.EvaluateSeconds = t["read"]+t["split"], t["ranker"], t["evaluate"]
	res.EmbeddingsSeconds, res.IndexSeconds, res.ExportSeconds, res.WriteSeconds = t["embeddings"], t["index"], t["export"], t["write"]
	res.JobID = md.JobID
	res.TrainRows, res.ValidationRows = md.Split.TrainRows, md.Split.ValidationRows
	res.AUC, res.LogLoss, res.BaselineLogLoss = md.Metrics[job.MetricAUC], md.Metrics[job.MetricLogLoss], md.Metrics["baseline_logloss"]
	hidden := make([]string, len(md.Params.Ranker.Hidden))
	for i, h := range md.Params.Ranker.Hidden {
		hidden[i] = strconv.Itoa(h)
	}
	res.Hidden, res.Epochs = strings.Join(hidden, ","), md.Split.EpochsRun
	res.Factors, res.ALSIterations = md.Params.Embeddings.Factors, md.Params.Embeddings.Iterations
	res.Pairs, res.Users, res.Items = md.Embeddings.Pairs, md.Embeddings.Users, md.Embeddings.Items
	for _, a := range md.Artifacts {
		switch a.Name {
		case job.RankerFile:
			res.RankerBytes = a.Bytes
		case job.IndexFile:
			res.IndexBytes = a.Bytes
		}
	}
	o.Logf("trained in %.1fs: AUC %.4f, log loss %.4f (constant %.4f)", res.TrainSeconds, res.AUC, res.LogLoss, res.BaselineLogLoss)

	// What registration would check, untimed.
	lap = time.Now()
	if _, err := job.CheckLayout(ctx, out); err != nil {
		return res, err
	}
	req := job.RegisterRequest(l, "ranker", "bench", "bench train")
	c := &registry.Client{Store: st, Features: fs, Validator: &onnxcheck.Validator{},
		Events: registry.PublisherFunc(func(context.Context, ...*adaptrecv1.Event) error { return nil })}
	if _, err := c.Register(ctx, req); err != nil {
		return res, fmt.Errorf("register the trained version: %w", err)
	}
	res.ValidateSeconds = time.Since(lap).Seconds()
	o.Logf("layout checked and registered through the ONNX Runtime validator in %.1fs", res.ValidateSeconds)
	return res, nil
}
