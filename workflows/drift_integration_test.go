package workflows

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/worker"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/consumers/archiver"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/offline"
	"github.com/adaptrec/adaptrec/features/skew"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/testenv"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/registry/onnxcheck"
	"github.com/adaptrec/adaptrec/serving"
	"github.com/adaptrec/adaptrec/sim"
	"github.com/adaptrec/adaptrec/trainer/job"
)

// driftShifted are the features the drifting traffic of
// TestDriftCheckOnDevServer serves shifted from the training set: two on
// the user side of a PredictionEvent (request features), two on the item
// side, more than drift_max_flagged 3. They are among the features that
// vary in a training set built without batch features (the batch ones,
// user_ctr_30d and the like, are all defaults there).
var driftShifted = []string{"req_session_length_s", "req_hour_sin", "item_ctr_1h", "item_impressions_1h"}

// TestDriftCheckOnDevServer runs the drift trigger end to end on a real
// Temporal dev server, broker and S3 server. A first production model is
// trained by RetrainWorkflow on a simulated world's history; serving
// traffic is then published as serving publishes it (PredictionEvents on
// the predictions topic carrying the user and item feature names and
// values the model was served with, the values drawn from the model's
// training set) and archived by the archiver. Then DriftCheck, with its
// real activities:
//
//  1. over an hour of traffic served like the training set, flags
//     nothing and starts no retrain;
//  2. over an hour in which four features are served shifted, flags
//     exactly those and starts a RetrainWorkflow child under the hour's
//     id, abandoned by the check on close, whose parameters and memo
//     carry the drift reason naming the four;
//  3. run again in the same hour while that retrain runs, is skipped
//     with a note naming the running run;
//  4. run again in the same hour after that retrain was terminated, is
//     refused the hour's id (never reused) and skipped with a note.
//
// The checks' histories are replayed.
func TestDriftCheckOnDevServer(t *testing.T) {
	env := testenv.New(t, testenv.Temporal, testenv.Kafka, testenv.S3)
	cfg := env.Config()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	store := testenv.EventLog(t, cfg)
	fs, err := features.Load("../features/features.yaml")
	if err != nil {
		t.Fatal(err)
	}

	// A world whose history ends an hour ago, so that the retrain the
	// drift starts has fresh data.
	now := time.Now().UTC()
	world, err := sim.NewWorld(sim.WorldConfig{Seed: 31, Start: now.Truncate(time.Hour).Add(-72 * time.Hour), Window: 71 * time.Hour,
		Catalogue: sim.CatalogueConfig{Items: 300}, Population: sim.PopulationConfig{Users: 250}})
	if err != nil {
		t.Fatal(err)
	}
	writeSimHistory(t, ctx, store, world, 20_000)

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
	// The worker registers what cmd/worker registers on the default queue
	// for these workflows.
	w := worker.New(tc, activities.TaskQueueDefault, worker.Options{MaxHeartbeatThrottleInterval: time.Second})
	w.RegisterWorkflow(RetrainWorkflow)
	w.RegisterWorkflow(DriftCheck)
	w.RegisterActivity(&activities.Retrain{Store: store, Registry: reg, Features: fs})
	w.RegisterActivity(&activities.Training{Store: store, S3: cfg.S3, Signal: tc.SignalWorkflow, ProgressEvery: time.Second})
	w.RegisterActivity(&activities.ModelChange{Registry: reg, Temporal: tc})
	w.RegisterActivity(&activities.Drift{Store: store, Registry: &registry.Client{Store: store}})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	// The archiver lands the served traffic in the event log.
	cfg.Consumers.Archiver.GroupID = "it-drift-archiver"
	cfg.Consumers.Archiver.Topics = []string{events.TopicPredictions}
	cfg.Consumers.Archiver.FlushInterval = 200 * time.Millisecond
	arc, err := archiver.New(cfg, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	arcCtx, stopArchiver := context.WithCancel(ctx)
	arcDone := make(chan error, 1)
	go func() { arcDone <- arc.Run(arcCtx) }()
	defer func() {
		stopArchiver()
		if err := <-arcDone; err != nil {
			t.Errorf("archiver: %v", err)
		}
	}()
	testenv.Eventually(t, time.Minute, func() error { return arc.Ready(ctx) })

	// The first production model.
	s := cfg.Pipeline
	s.TrainingWindow = 48 * time.Hour
	s.MinRows, s.MaxStaleness, s.MaxRowChange = 500, 6*time.Hour, 0.5
	s.GPUScheduleToStart = 2 * time.Second
	s.TrainingTimeout, s.TrainingHeartbeat = 5*time.Minute, 30*time.Second
	s.MaxAUCDrop, s.MaxNDCGDrop = 1, 1
	s.DriftWindow, s.DriftMaxFlagged = time.Hour, 3
	first, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "it-drift-first", TaskQueue: activities.TaskQueueDefault,
		WorkflowExecutionTimeout: 5 * time.Minute}, RetrainWorkflow, RetrainParams{
		Settings: s, Cutoff: world.End(), Actor: "it",
		Params: job.Params{Seed: 3, Ranker: job.RankerParams{Hidden: []int{8}, Epochs: 2, BatchSize: 256},
			Embeddings: job.EmbeddingParams{Factors: 8, Iterations: 2}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var firstRes RetrainResult
	if err := first.Get(ctx, &firstRes); err != nil {
		t.Fatalf("first run: %v", err)
	}
	if firstRes.Outcome != OutcomeSucceeded || firstRes.Production != firstRes.Version {
		t.Fatalf("first run: %+v", firstRes)
	}
	v1 := firstRes.Version
	prod, err := reg.Get(ctx, s.Model, v1)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := offline.ReadManifest(ctx, store, prod.TrainingSet)
	if err != nil {
		t.Fatalf("the production version's training set %q: %v", prod.TrainingSet, err)
	}
	rows, err := offline.ReadRows(ctx, store, ts)
	if err != nil {
		t.Fatal(err)
	}
	traffic := newDriftTraffic(t, ts, rows, prod.SchemaHash, v1)
	t.Logf("production %s, training set %s: %d rows, %d value columns", v1, ts.ID, len(rows), ts.Width)

	// An hour of traffic served like the training set, two hours back, and
	// the last hour with four features shifted. Each hour's events fall
	// in its middle 58 minutes, so that checks ending up to a minute later
	// read the same events.
	at := time.Now().UTC().Truncate(time.Minute)
	const perHour = 1000
	steady := traffic.events("steady", at.Add(-3*time.Hour+time.Minute), perHour, nil)
	drifting := traffic.events("drift", at.Add(-time.Hour+time.Minute), perHour, driftShifted)
	// In batches of 100 (serving publishes at most 256 at a time): a
	// record batch of a thousand of these events is over the broker's
	// message size limit.
	for evs := range slices.Chunk(append(steady, drifting...), 100) {
		if err := producer.Publish(ctx, evs...); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 2*time.Minute, func() error {
		if st := arc.Stats(); st.Archived < 2*perHour {
			return fmt.Errorf("archiver: %+v, want %d archived", st, 2*perHour)
		}
		return nil
	})

	check := func(id string, at time.Time) DriftCheckResult {
		t.Helper()
		run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: activities.TaskQueueDefault,
			WorkflowExecutionTimeout: 2 * time.Minute}, DriftCheck, DriftCheckParams{Settings: s, At: at, CodeVersion: "it-code", Actor: "it"})
		if err != nil {
			t.Fatal(err)
		}
		var res DriftCheckResult
		if err := run.Get(ctx, &res); err != nil {
			t.Fatalf("drift check %s: %v", id, err)
		}
		t.Logf("drift check %s: note %q; reason %q; report: %d of %d columns flagged, %d judged, served %+v",
			id, res.Note, res.Reason, res.Report.Flagged, res.Report.Columns, res.Report.Judged, res.Report.Served)
		rep := res.Report
		if rep.Production != v1 || rep.TrainingSet != ts.ID || rep.Columns != ts.Width || !rep.To.Equal(at) || !rep.From.Equal(at.Add(-s.DriftWindow)) {
			t.Errorf("drift check %s: report of production %s, training set %s, %d columns over [%s, %s); want %s, %s, %d columns over the hour before %s",
				id, rep.Production, rep.TrainingSet, rep.Columns, rep.From, rep.To, v1, ts.ID, ts.Width, at)
		}
		if rep.Served.Events != perHour || rep.Served.Sampled != perHour || rep.Served.OtherSchema != 0 || rep.Served.Malformed != 0 ||
			len(rep.Served.Unknown) != 0 || rep.Judged != rep.Columns {
			t.Errorf("drift check %s: served %+v, %d of %d columns judged; want the hour's %d predictions read, every column judged",
				id, rep.Served, rep.Judged, rep.Columns, perHour)
		}
		return res
	}
	runningRetrains := func() []activities.RetrainRun {
		t.Helper()
		runs, err := activities.ListRetrainRuns(ctx, tc, s.Model, true, 10)
		if err != nil {
			t.Fatal(err)
		}
		return runs
	}

	// 1. Served like the training set: nothing flagged, no retrain.
	res := check("it-drift-check-steady", at.Add(-2*time.Hour))
	if res.Report.Flagged != 0 || len(res.Report.Features) != 0 || res.Retrain != "" || res.Reason != "" {
		t.Errorf("steady traffic: %d flagged %v, retrain %q, reason %q; want none", res.Report.Flagged, flaggedNames(res.Report), res.Retrain, res.Reason)
	}
	if want := fmt.Sprintf("0 of %d value columns flagged (%d judged on %d sampled predictions), not more than drift_max_flagged 3: no retrain",
		ts.Width, ts.Width, perHour); res.Note != want {
		t.Errorf("steady traffic: note %q, want %q", res.Note, want)
	}
	if runs := runningRetrains(); len(runs) != 0 {
		t.Errorf("running retrains after a check without drift: %+v", runs)
	}

	// 2. Four features shifted: a retrain under the hour's id.
	retrainID := "retrain-" + s.Model + "-drift-" + at.Format("20060102T15") + "Z"
	res = check("it-drift-check-1", at)
	if got := flaggedNames(res.Report); !slices.Equal(got, sorted(driftShifted)) || res.Report.Flagged != len(driftShifted) {
		t.Errorf("drifting traffic: %d flagged %v, want exactly %v", res.Report.Flagged, got, sorted(driftShifted))
	}
	for _, f := range res.Report.Features {
		if !slices.Contains(f.Reasons, skew.ReasonMeanShift) || math.Abs(f.MeanShift) < 2 {
			t.Errorf("%s: reasons %v, mean shift %.2f sd; want a mean shift of at least 2 sd", f.Name, f.Reasons, f.MeanShift)
		}
	}
	if res.Retrain != retrainID || res.RetrainRunID == "" || res.Note != "retrain started: "+retrainID {
		t.Fatalf("drifting traffic: retrain %q (run %q), note %q; want %s started", res.Retrain, res.RetrainRunID, res.Note, retrainID)
	}
	retrainRun := res.RetrainRunID
	wantReason := fmt.Sprintf("drift: %d of %d value columns flagged (more than drift_max_flagged 3) in %d predictions of [%s, %s) against training set %s of production %s: ",
		len(driftShifted), ts.Width, perHour, at.Add(-time.Hour).Format(time.RFC3339), at.Format(time.RFC3339), ts.ID, v1)
	if !strings.HasPrefix(res.Reason, wantReason) {
		t.Errorf("reason %q, want it to start %q", res.Reason, wantReason)
	}
	for _, name := range driftShifted {
		if !strings.Contains(res.Reason, name+" mean shift ") {
			t.Errorf("reason %q does not name %s and its mean shift", res.Reason, name)
		}
	}

	// The child, as Temporal has it: a running RetrainWorkflow whose
	// parameters and memo carry the reason, left running by the check.
	desc, err := tc.DescribeWorkflowExecution(ctx, retrainID, "")
	if err != nil {
		t.Fatal(err)
	}
	info := desc.GetWorkflowExecutionInfo()
	if info.GetType().GetName() != "RetrainWorkflow" || info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING ||
		info.GetExecution().GetRunId() != res.RetrainRunID || info.GetParentExecution().GetWorkflowId() != "it-drift-check-1" {
		t.Errorf("%s: %s %s run %s, parent %v; want a running RetrainWorkflow run %s, child of it-drift-check-1 (completed)",
			retrainID, info.GetType().GetName(), info.GetStatus(), info.GetExecution().GetRunId(), info.GetParentExecution(), res.RetrainRunID)
	}
	if cfg := desc.GetExecutionConfig(); cfg.GetWorkflowExecutionTimeout().AsDuration() != 0 || cfg.GetWorkflowRunTimeout().AsDuration() != 0 {
		t.Errorf("%s: execution timeout %s, run timeout %s; want none (not the check's 2m)", retrainID,
			cfg.GetWorkflowExecutionTimeout().AsDuration(), cfg.GetWorkflowRunTimeout().AsDuration())
	}
	memo := map[string]string{}
	for k, p := range info.GetMemo().GetFields() {
		var v string
		if err := converter.GetDefaultDataConverter().FromPayload(p, &v); err != nil {
			t.Errorf("memo %s: %v", k, err)
		}
		memo[k] = v
	}
	if memo[activities.MemoModel] != s.Model || memo[activities.MemoReason] != res.Reason {
		t.Errorf("memo %v, want model %s and the reason %q", memo, s.Model, res.Reason)
	}
	hist := tc.GetWorkflowHistory(ctx, retrainID, res.RetrainRunID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	ev, err := hist.Next()
	if err != nil {
		t.Fatal(err)
	}
	var params RetrainParams
	if err := converter.GetDefaultDataConverter().FromPayloads(ev.GetWorkflowExecutionStartedEventAttributes().GetInput(), &params); err != nil {
		t.Fatal(err)
	}
	if params.Reason != res.Reason || params.Settings.Model != s.Model || params.CodeVersion != "it-code" || params.Actor != "it (drift check it-drift-check-1)" {
		t.Errorf("the retrain's parameters: reason %q, model %s, code %q, actor %q; want the drift reason, %s, it-code, it (drift check it-drift-check-1)",
			params.Reason, params.Settings.Model, params.CodeVersion, params.Actor, s.Model)
	}
	parentHist := tc.GetWorkflowHistory(ctx, "it-drift-check-1", "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	var initiated bool
	for parentHist.HasNext() {
		e, err := parentHist.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := e.GetStartChildWorkflowExecutionInitiatedEventAttributes(); a != nil {
			initiated = true
			if a.GetWorkflowId() != retrainID || a.GetParentClosePolicy() != enumspb.PARENT_CLOSE_POLICY_ABANDON ||
				a.GetWorkflowIdReusePolicy() != enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE {
				t.Errorf("child started as %s with parent close policy %s, id reuse policy %s; want %s, ABANDON, REJECT_DUPLICATE",
					a.GetWorkflowId(), a.GetParentClosePolicy(), a.GetWorkflowIdReusePolicy(), retrainID)
			}
		}
	}
	if !initiated {
		t.Error("the check's history starts no child")
	}

	// 3. Again later in the hour, while the retrain runs: skipped.
	testenv.Eventually(t, 30*time.Second, func() error {
		if runs := runningRetrains(); len(runs) != 1 || runs[0].WorkflowID != retrainID {
			return fmt.Errorf("running retrains %+v, want %s", runs, retrainID)
		}
		return nil
	})
	res = check("it-drift-check-2", at.Add(20*time.Second))
	if res.Retrain != "" || !strings.HasPrefix(res.Note, "skipped: retraining run "+retrainID+" is already running (stage ") ||
		!strings.HasSuffix(res.Note, "); no second run") || res.Report.Flagged != len(driftShifted) || !strings.HasPrefix(res.Reason, "drift: ") {
		t.Errorf("second check in the hour: retrain %q, note %q, %d flagged, reason %q; want skipped while %s runs",
			res.Retrain, res.Note, res.Report.Flagged, res.Reason, retrainID)
	}

	// 4. The retrain stopped, again later in the hour: its id is not
	// reused.
	if err := tc.TerminateWorkflow(ctx, retrainID, "", "drift integration test: the drift retrain was checked"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if runs := runningRetrains(); len(runs) != 0 {
			return fmt.Errorf("running retrains %+v, want none", runs)
		}
		return nil
	})
	res = check("it-drift-check-3", at.Add(40*time.Second))
	if want := "skipped: the drift retrain of this hour, " + retrainID + ", was already started"; res.Retrain != "" || res.Note != want {
		t.Errorf("third check in the hour: retrain %q, note %q; want %q", res.Retrain, res.Note, want)
	}
	desc, err = tc.DescribeWorkflowExecution(ctx, retrainID, "")
	if err != nil {
		t.Fatal(err)
	}
	if info := desc.GetWorkflowExecutionInfo(); info.GetExecution().GetRunId() != retrainRun || info.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED {
		t.Errorf("%s after the third check: run %s %s, want the terminated run %s", retrainID, info.GetExecution().GetRunId(), info.GetStatus(), retrainRun)
	}
	all, err := activities.ListRetrainRuns(ctx, tc, s.Model, false, 10)
	if err != nil {
		t.Fatal(err)
	}
	var drifts int
	for _, r := range all {
		if strings.HasPrefix(r.WorkflowID, "retrain-"+s.Model+"-drift-") {
			drifts++
		}
	}
	if drifts != 1 {
		t.Errorf("retraining runs %+v: want one started by the drift trigger", all)
	}

	// The checks' histories replay.
	dir := t.TempDir()
	for _, id := range []string{"it-drift-check-steady", "it-drift-check-1", "it-drift-check-2", "it-drift-check-3"} {
		path := filepath.Join(dir, id+".json")
		writeHistory(t, tc, id, path)
		replayer := worker.NewWorkflowReplayer()
		replayer.RegisterWorkflow(DriftCheck)
		if err := replayer.ReplayWorkflowHistoryFromJSONFile(nil, path); err != nil {
			t.Errorf("replay %s: %v", id, err)
		}
	}
}

// driftTraffic makes PredictionEvents as serving publishes them for a
// model trained on a training set, with feature values drawn from its
// rows.
type driftTraffic struct {
	t          *testing.T
	rows       []offline.Row
	schemaHash string
	version    string
	// user and item are the features on each side of an event, as
	// serving splits them (user and request features on the user side).
	user, item []driftFeature
	rng        *rand.Rand
}

// driftFeature is one feature of the training set: its columns in a row,
// whether it is an integer, and the standard deviation of its first
// column.
type driftFeature struct {
	name     string
	from, to int
	integer  bool
	std      float64
}

func newDriftTraffic(t *testing.T, ts offline.Manifest, rows []offline.Row, schemaHash, version string) *driftTraffic {
	t.Helper()
	cols, err := skew.Columns(ts.Model)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) == 0 || len(cols) != ts.Width {
		t.Fatalf("training set %s: %d rows, %d columns for width %d", ts.ID, len(rows), len(cols), ts.Width)
	}
	d := &driftTraffic{t: t, rows: rows, schemaHash: schemaHash, version: version, rng: rand.New(rand.NewPCG(31, 7))}
	i := 0
	for _, f := range ts.Model.Features {
		df := driftFeature{name: f.Name, from: i, integer: f.Type == "int"}
		for i < len(cols) && cols[i].Feature == f.Name {
			i++
		}
		df.to = i
		var sum, sq float64
		for _, r := range rows {
			x := float64(r.Features[df.from])
			sum, sq = sum+x, sq+x*x
		}
		n := float64(len(rows))
		df.std = math.Sqrt(max(0, sq/n-(sum/n)*(sum/n)))
		switch f.Entity {
		case "user", "request":
			d.user = append(d.user, df)
		default:
			d.item = append(d.item, df)
		}
	}
	for _, name := range driftShifted {
		if !slices.ContainsFunc(append(slices.Clone(d.user), d.item...), func(f driftFeature) bool {
			return f.name == name && f.to == f.from+1 && f.std > 1e-3
		}) {
			t.Fatalf("training set %s has no scalar feature %s whose values vary, to shift", ts.ID, name)
		}
	}
	return d
}

// events returns n PredictionEvents of five items each, their event
// times spread over the 58 minutes from start; the features named in
// shifted are served 3 standard deviations above the training set's
// values (rounded up to a whole number for an integer).
func (d *driftTraffic) events(prefix string, start time.Time, n int, shifted []string) []*adaptrecv1.Event {
	values := func(fs []driftFeature, r offline.Row) (names []string, vals []float32) {
		for _, f := range fs {
			names = append(names, f.name)
			for c := f.from; c < f.to; c++ {
				x := r.Features[c]
				if slices.Contains(shifted, f.name) {
					shift := 3 * f.std
					if f.integer {
						shift = math.Ceil(shift)
					}
					x += float32(shift)
				}
				vals = append(vals, x)
			}
		}
		return names, vals
	}
	out := make([]*adaptrecv1.Event, n)
	for i := range n {
		r := d.rows[d.rng.IntN(len(d.rows))]
		p := &adaptrecv1.PredictionEvent{
			RequestId: fmt.Sprintf("it-%s-%04d", prefix, i), UserId: r.UserID, ModelVersion: d.version,
			ExperimentArm: serving.ArmProduction, FeatureSchemaHash: d.schemaHash, LatencyMs: 12,
			DegradationLevel: adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_FULL,
		}
		p.UserFeatureNames, p.UserFeatures = values(d.user, r)
		for k := range 5 {
			ir := d.rows[d.rng.IntN(len(d.rows))]
			names, vals := values(d.item, ir)
			p.ItemFeatureNames = names
			p.Items = append(p.Items, &adaptrecv1.ServedItem{ItemId: ir.ItemID, Score: float32(0.9 - 0.1*float64(k)), Position: int32(k), Features: vals})
		}
		at := start.Add(time.Duration(i) * 58 * time.Minute / time.Duration(n))
		out[i] = events.NewPrediction(fmt.Sprintf("it-%s-%04d", prefix, i), at, "it-serving", p)
	}
	return out
}

// flaggedNames are the names of a report's flagged columns, sorted.
func flaggedNames(rep activities.DriftReport) []string {
	var out []string
	for _, f := range rep.Features {
		out = append(out, f.Name)
	}
	return sorted(out)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
