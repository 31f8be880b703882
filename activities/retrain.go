package activities

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/offline"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/trainer/eval"
	"github.com/adaptrec/adaptrec/trainer/job"
	"github.com/adaptrec/adaptrec/trainer/ranker"
)

// Retrain holds the activities of the retraining workflow
// (workflows.RetrainWorkflow) but training itself, which Training holds so
// GPU hosts can run it alone.
type Retrain struct {
	// Store is the offline store: the event log, training sets and
	// training jobs' output folders.
	Store *objstore.Store
	// Registry registers versions and changes aliases; its Validator
	// (registry/onnxcheck) runs ONNX Runtime on a version before it is
	// written.
	Registry *registry.Client
	// Features are the feature definitions training sets are built with.
	Features *features.FeatureSet
	// Online reads what the feedback loop measured (shadow reports, online
	// accuracy per model version); required by ShadowReport and
	// CanaryReport only.
	Online OnlineMetrics
}

// OnlineMetrics reads the feedback loop's measurements of live traffic
// (consumers/feedback) between from and to.
type OnlineMetrics interface {
	// ShadowReport compares a shadow version's scores of mirrored requests
	// with production's.
	ShadowReport(ctx context.Context, shadowVersion string, from, to time.Time) (ShadowReport, error)
	// Accuracy returns the online accuracy per model version and arm.
	Accuracy(ctx context.Context, from, to time.Time) ([]ArmStats, error)
}

// ShadowReport is what a shadow version did on mirrored live traffic.
type ShadowReport struct {
	ShadowVersion      string
	ProductionVersions []string
	// Requests were mirrored to the shadow; Matched are those whose
	// production scores were found to compare with.
	Requests, Matched int64
	// ScoreCorrelation is the Pearson correlation of the two models'
	// scores, RankCorrelation Spearman's, TopKOverlap the shared share of
	// the top of the lists.
	ScoreCorrelation, RankCorrelation, TopKOverlap float64
	LatencyP50Ms, LatencyP99Ms                     float64
	ErrorRate                                      float64
	From, To                                       time.Time
}

// ArmStats is the online accuracy of one model version (in one arm, or
// summed over arms).
type ArmStats struct {
	ModelVersion string
	Arm          string
	Requests     int64
	Impressions  int64
	Clicks       int64
	Errors       int64
	// CTR is Clicks / Impressions; LatencyP99Ms the highest p99 of the
	// windows read.
	CTR, LatencyP99Ms float64
}

// ErrorRate is Errors / Requests (0 without requests).
func (s ArmStats) ErrorRate() float64 {
	if s.Requests == 0 {
		return 0
	}
	return float64(s.Errors) / float64(s.Requests)
}

// Application error types of the retraining activities.
const (
	// ErrTypeInvalidParams is a request an activity cannot run.
	ErrTypeInvalidParams = "InvalidParams"
	// ErrTypeConflict is an alias change refused because the aliases are
	// not what the run decided on (another run or a person changed them).
	ErrTypeConflict = "Conflict"
	// ErrTypeInvalidLayout is a training job output that fails its checks.
	ErrTypeInvalidLayout = "InvalidLayout"
	// ErrTypeRegistryRefused is a version the registry refuses (schema,
	// ONNX Runtime validation).
	ErrTypeRegistryRefused = "RegistryRefused"
)

// DataContract bounds what the event log of a training window may look
// like before a model is trained on it (config.Pipeline's data contract).
type DataContract struct {
	MinRows      int64
	MaxRowChange float64
	MaxNullRate  float64
	MaxPosition  int
	MaxStaleness time.Duration
}

// DataRequest asks ValidateData to check the impressions of [From, To)
// against Contract; the training set of Previous (a registered version,
// "" for none) gives the row rate to compare with.
type DataRequest struct {
	Model    string
	Previous string
	From, To time.Time
	Contract DataContract
}

// DataReport is what ValidateData found. Violations name every broken
// rule with its value and threshold; none means the data may be trained on.
type DataReport struct {
	Topic       string
	Events      int64
	Impressions int64
	Clicks      int64
	// MissingUser, MissingItem and MissingSession count impressions
	// without that id; NullRate is the highest of their shares and
	// NullColumn its column.
	MissingUser, MissingItem, MissingSession int64
	NullRate                                 float64
	NullColumn                               string
	// OutOfRange counts impressions whose position is missing or outside
	// [0, MaxPosition]; BadSchema events that are not interactions of a
	// schema version this build reads.
	OutOfRange, BadSchema int64
	// Newest is the latest event time in the window.
	Newest time.Time
	// PerHour is impressions per hour of the window; PreviousPerHour the
	// rows per hour of PreviousTrainingSet (0 when there is none).
	PerHour             float64
	PreviousTrainingSet string
	PreviousPerHour     float64
	Violations          []string
}

// Check fills r.Violations from the counts and c: row count, row rate
// against the previous training set, null rates, value ranges, schema and
// freshness, each violation naming its value and threshold.
func (r *DataReport) Check(c DataContract, to time.Time) {
	r.Violations = nil
	add := func(format string, args ...any) { r.Violations = append(r.Violations, fmt.Sprintf(format, args...)) }
	if r.Impressions < c.MinRows {
		add("rows: %d impressions in the window, fewer than min_rows %d", r.Impressions, c.MinRows)
	}
	// max_row_change 1 disables the check (config.Pipeline.MaxRowChange).
	if r.PreviousPerHour > 0 && c.MaxRowChange < 1 {
		change := math.Abs(r.PerHour-r.PreviousPerHour) / r.PreviousPerHour
		if change > c.MaxRowChange {
			add("row count: %.1f impressions per hour against %.1f in training set %s, a change of %.0f%%, more than max_row_change %.0f%%",
				r.PerHour, r.PreviousPerHour, r.PreviousTrainingSet, 100*change, 100*c.MaxRowChange)
		}
	}
	if r.Impressions > 0 {
		for _, col := range []struct {
			name string
			n    int64
		}{{"user_id", r.MissingUser}, {"item_id", r.MissingItem}, {"session_id", r.MissingSession}} {
			rate := float64(col.n) / float64(r.Impressions)
			if rate > r.NullRate || r.NullColumn == "" {
				r.NullRate, r.NullColumn = rate, col.name
			}
			if rate > c.MaxNullRate {
				add("null rate: %s is empty in %d of %d impressions (%.4f), above max_null_rate %v", col.name, col.n, r.Impressions, rate, c.MaxNullRate)
			}
		}
	}
	if r.OutOfRange > 0 {
		add("value range: %d impressions have no position or one outside [0, max_position %d]", r.OutOfRange, c.MaxPosition)
	}
	if r.BadSchema > 0 {
		add("schema: %d events of %s are not interactions of schema version <= %d", r.BadSchema, r.Topic, events.SchemaVersion)
	}
	switch {
	case r.Newest.IsZero():
		add("freshness: no events in the window")
	case to.Sub(r.Newest) > c.MaxStaleness:
		add("freshness: the newest event is at %s, %s before the window's end %s, more than max_staleness %s",
			r.Newest.UTC().Format(time.RFC3339), to.Sub(r.Newest).Round(time.Second), to.UTC().Format(time.RFC3339), c.MaxStaleness)
	}
}

// ValidateData scans the archived interactions of [From, To) and checks
// them against the data contract (DataReport.Check); the rows per hour of
// the previous version's training set are the row-count baseline. It
// heartbeats the events read. A broken contract is a report with
// Violations, not an error: the workflow stops the run with them.
func (a *Retrain) ValidateData(ctx context.Context, req DataRequest) (DataReport, error) {
	r := DataReport{Topic: events.TopicInteractions}
	if req.From.IsZero() || !req.To.After(req.From) {
		return r, nonRetryable(fmt.Errorf("data window [%s, %s) is empty", req.From.Format(time.RFC3339), req.To.Format(time.RFC3339)), ErrTypeInvalidParams)
	}
	if req.Previous != "" {
		m, err := a.Registry.Get(ctx, req.Model, req.Previous)
		if err != nil {
			return r, fmt.Errorf("previous version %s: %w", req.Previous, err)
		}
		prev, err := offline.ReadManifest(ctx, a.Store, m.TrainingSet)
		if err != nil {
			return r, fmt.Errorf("training set of previous version %s: %w", req.Previous, err)
		}
		r.PreviousTrainingSet = prev.ID
		if h := prev.To.Sub(prev.From).Hours(); h > 0 {
			r.PreviousPerHour = float64(prev.Rows) / h
		}
	}
	impression := adaptrecv1.Action_ACTION_IMPRESSION.String()
	click := adaptrecv1.Action_ACTION_CLICK.String()
	interaction := adaptrecv1.EventType_EVENT_TYPE_INTERACTION.String()
	err := eventlog.Scan(ctx, a.Store, r.Topic, req.From, req.To, func(row *eventlog.Row) error {
		r.Events++
		if r.Events%50_000 == 0 {
			activity.RecordHeartbeat(ctx, r.Events)
		}
		if row.EventTime.After(r.Newest) {
			r.Newest = row.EventTime
		}
		if row.EventType != interaction || row.SchemaVersion > int32(events.SchemaVersion) {
			r.BadSchema++
			return nil
		}
		switch row.Action {
		case click:
			r.Clicks++
		case impression:
			r.Impressions++
			if row.UserID == "" {
				r.MissingUser++
			}
			if row.ItemID == "" {
				r.MissingItem++
			}
			if row.SessionID == "" {
				r.MissingSession++
			}
			if row.Position == nil || *row.Position < 0 || int(*row.Position) > req.Contract.MaxPosition {
				r.OutOfRange++
			}
		}
		return nil
	})
	if err != nil {
		return r, fmt.Errorf("scan %s over [%s, %s): %w", r.Topic, req.From.Format(time.RFC3339), req.To.Format(time.RFC3339), err)
	}
	r.PerHour = float64(r.Impressions) / req.To.Sub(req.From).Hours()
	r.Check(req.Contract, req.To)
	return r, nil
}

// TrainingSetRequest asks for the point-in-time training set ID of the
// impressions in [From, To).
type TrainingSetRequest struct {
	ID       string
	From, To time.Time
}

// TrainingSetResult describes the training set built (or found).
type TrainingSetResult struct {
	ID         string
	URI        string
	Rows       int64
	Positives  int64
	SchemaHash string
	// Reused is true when a finished training set of this id existed (an
	// attempt retried after its build wrote the manifest).
	Reused bool
}

// BuildTrainingSet builds the training set with features/offline (the
// join `adaptrec features training-set` runs), heartbeating its progress.
// The id comes from the run, so a retried attempt finds the manifest of a
// finished build and reuses it; an unfinished build (no manifest) is
// rebuilt, overwriting its parts.
func (a *Retrain) BuildTrainingSet(ctx context.Context, req TrainingSetRequest) (TrainingSetResult, error) {
	if req.ID == "" || !req.To.After(req.From) {
		return TrainingSetResult{}, nonRetryable(fmt.Errorf("training set %q over [%s, %s): an id and a non-empty range are required",
			req.ID, req.From.Format(time.RFC3339), req.To.Format(time.RFC3339)), ErrTypeInvalidParams)
	}
	result := func(m offline.Manifest, reused bool) TrainingSetResult {
		return TrainingSetResult{ID: m.ID, URI: a.Store.URI(offline.Root + m.ID + "/"), Rows: m.Rows, Positives: m.Positives, SchemaHash: m.SchemaHash, Reused: reused}
	}
	if m, err := offline.ReadManifest(ctx, a.Store, req.ID); err == nil {
		return result(m, true), nil
	} else if !errors.Is(err, objstore.ErrNotFound) {
		return TrainingSetResult{}, err
	}
	cfg := offline.Config{ID: req.ID, From: req.From, To: req.To, Progress: func(p offline.Progress) {
		activity.RecordHeartbeat(ctx, fmt.Sprintf("%d events read, %d examples, at %s", p.Events, p.Examples, p.EventTime.UTC().Format(time.RFC3339)))
	}}
	m, err := offline.Build(ctx, a.Store, a.Features, cfg)
	if err != nil {
		return TrainingSetResult{}, err
	}
	if m.Rows == 0 {
		return TrainingSetResult{}, nonRetryable(fmt.Errorf("training set %s over [%s, %s) has no rows", m.ID, req.From.Format(time.RFC3339), req.To.Format(time.RFC3339)), ErrTypeInvalidParams)
	}
	return result(m, false), nil
}

// EvaluateRequest asks for the candidate in a training job's output folder
// (JobPrefix, a key prefix in the offline store) and the Production version
// ("" for none) to be measured on the candidate's holdout.
type EvaluateRequest struct {
	Model      string
	JobPrefix  string
	Production string
	// K is the NDCG cutoff; 10 when 0.
	K int
}

// OfflineMetrics are a model's metrics on a holdout. The holdout's clicks
// were logged under the production model's ranking, and users click the
// top of a page more whatever it shows (position bias), so plain AUC and
// NDCG over the logged lists credit production for its own ordering: a
// candidate that ranks better would still look worse. The gates read the
// position-debiased metrics instead:
//
//   - AUC is the AUC within positions: impressions are compared only with
//     impressions shown at the same position (in other requests), and the
//     positions' AUCs are averaged weighted by their clicked × unclicked
//     pairs. Where an item was shown no longer matters, only what it is.
//   - NDCG is NDCG@K with inverse-propensity gains: a click at position p
//     gains 1/prop(p), prop(p) being the holdout's click-through rate at p
//     over that at the top position (clipped to [MinPropensity, 1]), so a
//     click low on the page, which the user had less chance to give, counts
//     more. The lists' DCGs and ideal DCGs are summed before dividing: most
//     lists hold one click, whose gain a per-list ratio would cancel. Both
//     models are scored against the same gains.
//
// LoggedAUC and LoggedNDCG are the plain metrics, for comparison.
type OfflineMetrics struct {
	AUC  float64
	NDCG float64
	// LoggedAUC and LoggedNDCG ignore position bias.
	LoggedAUC  float64 `json:",omitempty"`
	LoggedNDCG float64 `json:",omitempty"`
}

// MinPropensity bounds the inverse-propensity gains of the debiased NDCG
// (at most 20 times a top-position click), so that a few clicks at rarely
// clicked positions cannot dominate it.
const MinPropensity = 0.05

// EvaluationReport compares the candidate with production on the same
// holdout: the validation part of the candidate's training set (every
// example at or after its split's cutoff), which neither model trained on.
type EvaluationReport struct {
	TrainingSet string
	Cutoff      time.Time
	// Rows are the holdout's examples, Lists its impression lists with a
	// click (NDCG is their mean).
	Rows, Lists int
	K           int
	Candidate   OfflineMetrics
	// Production is nil when there is no production version.
	Production        *OfflineMetrics
	ProductionVersion string
}

// Evaluate scores the holdout with the candidate's ranker and production's
// (the Go forward pass, trainer/ranker, of both ONNX models) and measures
// AUC and NDCG@K over the impression lists (one request's impressions)
// that hold a click. A production version with another feature schema
// cannot score the holdout's rows: that fails without retries, naming both
// schema hashes.
func (a *Retrain) Evaluate(ctx context.Context, req EvaluateRequest) (EvaluationReport, error) {
	rep := EvaluationReport{K: cmp.Or(req.K, 10), ProductionVersion: req.Production}
	l, err := job.CheckLayout(ctx, job.NewStoreDir(a.Store, req.JobPrefix))
	if err != nil {
		return rep, nonRetryable(fmt.Errorf("candidate %s: %w", a.Store.URI(req.JobPrefix), err), ErrTypeInvalidLayout)
	}
	md := l.Metadata
	rep.TrainingSet, rep.Cutoff = md.TrainingSet, md.Split.Cutoff
	cand, err := ranker.ParseONNX(l.Files[job.RankerFile])
	if err != nil {
		return rep, nonRetryable(fmt.Errorf("candidate ranker: %w", err), ErrTypeInvalidLayout)
	}
	var prod *ranker.Model
	if req.Production != "" {
		m, err := a.Registry.Get(ctx, req.Model, req.Production)
		if err != nil {
			return rep, fmt.Errorf("production %s: %w", req.Production, err)
		}
		if m.SchemaHash != md.SchemaHash {
			return rep, nonRetryable(fmt.Errorf("production %s has feature schema %s, the candidate's holdout %s: they cannot be compared on the same rows",
				req.Production, m.SchemaHash, md.SchemaHash), ErrTypeInvalidParams)
		}
		f, ok := m.Ranker()
		if !ok {
			return rep, nonRetryable(fmt.Errorf("production %s has no ranker artifact", req.Production), ErrTypeInvalidParams)
		}
		b, err := a.Registry.ReadArtifact(ctx, m, f.Name)
		if err != nil {
			return rep, err
		}
		if prod, err = ranker.ParseONNX(b); err != nil {
			return rep, nonRetryable(fmt.Errorf("production %s ranker: %w", req.Production, err), ErrTypeInvalidParams)
		}
	}
	tm, err := offline.ReadManifest(ctx, a.Store, md.TrainingSet)
	if err != nil {
		return rep, err
	}
	rows, err := offline.ReadRows(ctx, a.Store, tm)
	if err != nil {
		return rep, err
	}
	activity.RecordHeartbeat(ctx, fmt.Sprintf("read %d rows of %s", len(rows), tm.ID))
	var holdout []offline.Row
	for _, r := range rows {
		if !r.EventTime.Before(md.Split.Cutoff) {
			holdout = append(holdout, r)
		}
	}
	rep.Rows = len(holdout)
	if rep.Rows == 0 {
		return rep, nonRetryable(fmt.Errorf("training set %s has no example at or after the split's cutoff %s", tm.ID, md.Split.Cutoff.Format(time.RFC3339)), ErrTypeInvalidParams)
	}
	var lists int
	rep.Candidate, lists, err = holdoutMetrics(cand, holdout, tm.Width, rep.K)
	if err != nil {
		return rep, nonRetryable(fmt.Errorf("candidate on the holdout: %w", err), ErrTypeInvalidLayout)
	}
	rep.Lists = lists
	if prod != nil {
		pm, _, err := holdoutMetrics(prod, holdout, tm.Width, rep.K)
		if err != nil {
			return rep, nonRetryable(fmt.Errorf("production %s on the holdout: %w", req.Production, err), ErrTypeInvalidParams)
		}
		rep.Production = &pm
	}
	return rep, nil
}

// holdoutMetrics scores rows with m and returns its metrics (see
// OfflineMetrics) and the number of lists (rows of one request) holding a
// click, over which NDCG is the mean.
func holdoutMetrics(m *ranker.Model, rows []offline.Row, width, k int) (OfflineMetrics, int, error) {
	if m.Width != width {
		return OfflineMetrics{}, 0, fmt.Errorf("model input width %d, rows of %d values", m.Width, width)
	}
	flat := make([]float32, 0, len(rows)*width)
	labels := make([]float32, len(rows))
	for i, r := range rows {
		if len(r.Features) != width {
			return OfflineMetrics{}, 0, fmt.Errorf("row %s has %d values, want %d", r.EventID, len(r.Features), width)
		}
		flat = append(flat, r.Features...)
		labels[i] = float32(r.Label)
	}
	scores, err := m.Predict(flat, len(rows))
	if err != nil {
		return OfflineMetrics{}, 0, err
	}
	var out OfflineMetrics
	if out.LoggedAUC, err = eval.AUC(scores, labels); err != nil {
		return out, 0, err
	}
	if math.IsNaN(out.LoggedAUC) {
		return out, 0, errors.New("AUC is undefined: the holdout needs clicked and unclicked impressions")
	}
	if out.AUC, err = positionAUC(rows, scores, labels); err != nil {
		return out, 0, err
	}
	gain := propensityGains(rows)
	byList := map[string][]int{}
	var keys []string
	for i, r := range rows {
		key := cmp.Or(r.RequestID, r.UserID+"@"+r.EventTime.UTC().Format(time.RFC3339Nano))
		if _, ok := byList[key]; !ok {
			keys = append(keys, key)
		}
		byList[key] = append(byList[key], i)
	}
	var dcg, idcg, sumLogged float64
	var n int
	for _, key := range keys {
		idx := byList[key]
		var relevant []int32
		for _, i := range idx {
			if rows[i].Label > 0 {
				relevant = append(relevant, int32(i))
			}
		}
		if len(relevant) == 0 {
			continue
		}
		ranked := make([]int32, len(idx))
		for j, i := range idx {
			ranked[j] = int32(i)
		}
		slices.SortStableFunc(ranked, func(x, y int32) int { return cmp.Compare(scores[y], scores[x]) })
		slices.Sort(relevant)
		sumLogged += eval.NDCGAt(ranked, relevant, k)
		d, i := weightedDCG(ranked, rows, gain, k)
		dcg, idcg = dcg+d, idcg+i
		n++
	}
	if n == 0 {
		return out, 0, errors.New("NDCG is undefined: no impression list of the holdout holds a click")
	}
	out.NDCG, out.LoggedNDCG = dcg/idcg, sumLogged/float64(n)
	return out, n, nil
}

// positionAUC is the AUC within positions (OfflineMetrics.AUC): the AUC of
// each position's impressions, weighted by its clicked × unclicked pairs.
// Impressions without a position (reached by the user, not shown on a
// page) form one group of their own.
func positionAUC(rows []offline.Row, scores, labels []float32) (float64, error) {
	byPos := map[int32][]int{}
	for i, r := range rows {
		p := max(r.Position, -1)
		byPos[p] = append(byPos[p], i)
	}
	var sum, pairs float64
	var s, l []float32
	for _, idx := range byPos {
		s, l = s[:0], l[:0]
		var pos float64
		for _, i := range idx {
			s, l = append(s, scores[i]), append(l, labels[i])
			if labels[i] > 0 {
				pos++
			}
		}
		w := pos * (float64(len(idx)) - pos)
		if w == 0 {
			continue
		}
		a, err := eval.AUC(s, l)
		if err != nil {
			return 0, err
		}
		sum += w * a
		pairs += w
	}
	if pairs == 0 {
		return 0, errors.New("AUC is undefined: no position of the holdout has both clicked and unclicked impressions")
	}
	return sum / pairs, nil
}

// propensityGains returns each row's gain if clicked: 1/prop(position),
// prop(p) = CTR at p / CTR at the top position, clipped to
// [MinPropensity, 1]; 1 for rows without a position or at positions
// without a click-through rate to compare.
func propensityGains(rows []offline.Row) []float64 {
	type count struct{ shown, clicked float64 }
	byPos := map[int32]*count{}
	for _, r := range rows {
		if r.Position < 0 {
			continue
		}
		c := byPos[r.Position]
		if c == nil {
			c = &count{}
			byPos[r.Position] = c
		}
		c.shown++
		if r.Label > 0 {
			c.clicked++
		}
	}
	top := int32(math.MaxInt32)
	for p, c := range byPos {
		if c.clicked > 0 && p < top {
			top = p
		}
	}
	gain := make([]float64, len(rows))
	for i, r := range rows {
		gain[i] = 1
		c, t := byPos[r.Position], byPos[top]
		if r.Position < 0 || c == nil || t == nil {
			continue
		}
		prop := (c.clicked / c.shown) / (t.clicked / t.shown)
		gain[i] = 1 / min(max(prop, MinPropensity), 1)
	}
	return gain
}

// weightedDCG returns the DCG@k of a ranking (row indexes, best first)
// with the gains of the clicked rows, and the ideal DCG@k of those gains.
func weightedDCG(ranked []int32, rows []offline.Row, gain []float64, k int) (dcg, idcg float64) {
	var ideal []float64
	for r, i := range ranked {
		if rows[i].Label <= 0 {
			continue
		}
		if r < k {
			dcg += gain[i] / math.Log2(float64(r)+2)
		}
		ideal = append(ideal, gain[i])
	}
	slices.SortFunc(ideal, func(a, b float64) int { return cmp.Compare(b, a) })
	for r, g := range ideal {
		if r >= k {
			break
		}
		idcg += g / math.Log2(float64(r)+2)
	}
	return dcg, idcg
}

// RegisterVersionRequest asks for a finished training job's output
// (JobPrefix in the offline store) to be registered as a version of Model.
type RegisterVersionRequest struct {
	Model         string
	JobPrefix     string
	Actor, Reason string
}

// RegisteredVersion is the version registered.
type RegisteredVersion struct {
	Version string
	URI     string
	// Existed is true when an earlier attempt had registered it.
	Existed bool
	// Warning carries a lifecycle event that could not be published (the
	// version stands; serving finds it by polling).
	Warning string
}

// RegisterVersion checks the job's layout and registers it
// (trainer/job.Register: schema check, ONNX Runtime validation). The
// version is a hash of the layout, so a retried attempt after a
// registration that succeeded gets the same version back (Existed).
func (a *Retrain) RegisterVersion(ctx context.Context, req RegisterVersionRequest) (RegisteredVersion, error) {
	l, err := job.CheckLayout(ctx, job.NewStoreDir(a.Store, req.JobPrefix))
	if err != nil {
		return RegisteredVersion{}, nonRetryable(fmt.Errorf("training job %s: %w", a.Store.URI(req.JobPrefix), err), ErrTypeInvalidLayout)
	}
	m, err := job.Register(ctx, a.Registry, l, req.Model, req.Actor, req.Reason)
	var out RegisteredVersion
	switch {
	case err == nil:
	case errors.Is(err, registry.ErrExists) && m.Version != "":
		out.Existed = true
	case errors.Is(err, registry.ErrUnpublished):
		out.Warning = err.Error()
	case errors.Is(err, registry.ErrInvalid):
		return out, nonRetryable(fmt.Errorf("the registry refused training job %s: %w", l.URI, err), ErrTypeRegistryRefused)
	default:
		return out, fmt.Errorf("register training job %s: %w", l.URI, err)
	}
	out.Version, out.URI = m.Version, a.Registry.Store.URI(registry.VersionPrefix(req.Model, m.Version))
	return out, nil
}

// CurrentAliases reads a model's aliases (none yet is revision 0).
func (a *Retrain) CurrentAliases(ctx context.Context, model string) (registry.Aliases, error) {
	al, err := a.Registry.Aliases(ctx, model)
	if err != nil {
		return al, fmt.Errorf("aliases of %s: %w", model, err)
	}
	return al, nil
}

// AliasRequest is one alias change of Model.
type AliasRequest struct {
	Model  string
	Change registry.Change
}

// ApplyAlias applies one alias change (registry.Client.Apply). A change
// refused because production is not Change.ExpectProduction, or because it
// is invalid, fails without retries: the run decided on another state. A
// change made whose lifecycle event was lost succeeds (serving polls the
// aliases). Reapplying a change already made is a no-op, so retries are
// safe.
func (a *Retrain) ApplyAlias(ctx context.Context, req AliasRequest) (registry.Aliases, error) {
	al, err := a.Registry.Apply(ctx, req.Model, req.Change)
	switch {
	case err == nil, errors.Is(err, registry.ErrUnpublished):
		activity.GetLogger(ctx).Info("aliases changed", "model", req.Model, "action", req.Change.Action, "version", req.Change.Version,
			"weight", req.Change.Weight, "revision", al.Revision, "reason", req.Change.Reason)
		return al, nil
	case errors.Is(err, registry.ErrConflict):
		return al, nonRetryable(err, ErrTypeConflict)
	case errors.Is(err, registry.ErrInvalid), errors.Is(err, registry.ErrNotFound), errors.Is(err, registry.ErrNoPrevious):
		return al, nonRetryable(err, ErrTypeInvalidParams)
	}
	return al, err
}

// WithdrawRequest takes Version out of live traffic: off the shadow and
// canary aliases, and, with Rollback, out of production (back to the
// previous version) when it is production.
type WithdrawRequest struct {
	Model         string
	Version       string
	Rollback      bool
	Actor, Reason string
}

// WithdrawResult says what Withdraw changed and where production is.
type WithdrawResult struct {
	// Cleared lists the aliases taken from the version ("shadow",
	// "canary", "production").
	Cleared    []string
	Production string
	Revision   int64
}

// Withdraw is the retraining run's compensation. It changes only aliases
// that hold Version, each with a compare-and-swap on the aliases it read,
// so it never clears another run's shadow or canary, and a rollback only
// happens while Version is production (ExpectProduction). Withdrawing
// again changes nothing, so retries are safe; a concurrent change makes it
// read the aliases again.
func (a *Retrain) Withdraw(ctx context.Context, req WithdrawRequest) (WithdrawResult, error) {
	var res WithdrawResult
	for attempt := 0; ; attempt++ {
		al, err := a.Registry.Aliases(ctx, req.Model)
		if err != nil {
			return res, err
		}
		var ch *registry.Change
		switch {
		case al.Shadow == req.Version:
			ch = &registry.Change{Action: registry.ActionClearShadow}
			res.Cleared = append(res.Cleared, registry.AliasShadow)
		case al.Canary == req.Version:
			ch = &registry.Change{Action: registry.ActionClearCanary}
			res.Cleared = append(res.Cleared, registry.AliasCanary)
		case req.Rollback && al.Production == req.Version:
			ch = &registry.Change{Action: registry.ActionRollback, ExpectProduction: req.Version}
			res.Cleared = append(res.Cleared, registry.AliasProduction)
		default:
			res.Production, res.Revision = al.Production, al.Revision
			return res, nil
		}
		ch.Actor, ch.Reason = req.Actor, req.Reason
		if _, err := a.Registry.ApplyFrom(ctx, al, *ch); err != nil && !errors.Is(err, registry.ErrUnpublished) {
			res.Cleared = res.Cleared[:len(res.Cleared)-1]
			switch {
			case errors.Is(err, registry.ErrConflict) && attempt < 10:
				continue // read the aliases again
			case errors.Is(err, registry.ErrNoPrevious):
				return res, nonRetryable(fmt.Errorf("roll %s back: %w", req.Version, err), ErrTypeInvalidParams)
			}
			return res, err
		}
	}
}

// ShadowRequest asks for the shadow report of Version over [From, To).
type ShadowRequest struct {
	Version  string
	From, To time.Time
}

// ShadowReport reads the feedback loop's shadow report of a version.
func (a *Retrain) ShadowReport(ctx context.Context, req ShadowRequest) (ShadowReport, error) {
	if a.Online == nil {
		return ShadowReport{}, nonRetryable(errors.New("the worker has no feedback-loop reader (Retrain.Online)"), ErrTypeInvalidParams)
	}
	rep, err := a.Online.ShadowReport(ctx, req.Version, req.From, req.To)
	if err != nil {
		return rep, fmt.Errorf("shadow report of %s over [%s, %s): %w", req.Version, req.From.Format(time.RFC3339), req.To.Format(time.RFC3339), err)
	}
	return rep, nil
}

// CanaryRequest asks for the online accuracy of the Canary and Production
// versions over [From, To).
type CanaryRequest struct {
	Canary, Production string
	From, To           time.Time
}

// CanaryReport is the online accuracy of the canary and of production,
// each summed over arms.
type CanaryReport struct {
	Canary, Production ArmStats
}

// CanaryReport reads the feedback loop's online accuracy and sums it per
// version: requests, impressions, clicks and errors add up, CTR is
// recomputed, and the latency p99 is the highest of the windows (a
// guardrail should see the worst).
func (a *Retrain) CanaryReport(ctx context.Context, req CanaryRequest) (CanaryReport, error) {
	if a.Online == nil {
		return CanaryReport{}, nonRetryable(errors.New("the worker has no feedback-loop reader (Retrain.Online)"), ErrTypeInvalidParams)
	}
	arms, err := a.Online.Accuracy(ctx, req.From, req.To)
	if err != nil {
		return CanaryReport{}, fmt.Errorf("online accuracy over [%s, %s): %w", req.From.Format(time.RFC3339), req.To.Format(time.RFC3339), err)
	}
	return SumArms(arms, req.Canary, req.Production), nil
}

// SumArms sums the stats of the canary and production versions over arms.
func SumArms(arms []ArmStats, canary, production string) CanaryReport {
	rep := CanaryReport{Canary: ArmStats{ModelVersion: canary}, Production: ArmStats{ModelVersion: production}}
	for _, s := range arms {
		var dst *ArmStats
		switch s.ModelVersion {
		case canary:
			dst = &rep.Canary
		case production:
			dst = &rep.Production
		default:
			continue
		}
		dst.Requests += s.Requests
		dst.Impressions += s.Impressions
		dst.Clicks += s.Clicks
		dst.Errors += s.Errors
		dst.LatencyP99Ms = max(dst.LatencyP99Ms, s.LatencyP99Ms)
		if dst.Arm == "" || strings.Contains(dst.Arm, s.Arm) {
			dst.Arm = cmp.Or(dst.Arm, s.Arm)
		} else {
			dst.Arm += "+" + s.Arm
		}
	}
	for _, s := range []*ArmStats{&rep.Canary, &rep.Production} {
		if s.Impressions > 0 {
			s.CTR = float64(s.Clicks) / float64(s.Impressions)
		}
	}
	return rep
}
