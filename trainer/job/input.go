package job

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/adaptrec/adaptrec/features/offline"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/version"
	"github.com/adaptrec/adaptrec/serving/ann"
	"github.com/adaptrec/adaptrec/serving/covisit"
	"github.com/adaptrec/adaptrec/trainer/ranker"
	"github.com/adaptrec/adaptrec/trainer/retrieval"
)

// InputFormat is the version of input.json this package writes and reads.
const InputFormat = 1

// Defaults of Input and Params.
const (
	// DefaultValidationFraction is the latest share of a training set's
	// examples, by event time, that measures the ranker.
	DefaultValidationFraction = 0.2
	// DefaultEmbeddingLookback is how long before the training set's first
	// example the embeddings' positives start when Events.From is zero.
	DefaultEmbeddingLookback = 30 * 24 * time.Hour
	// DefaultEpochs, DefaultBatchSize and DefaultLearningRate train the
	// ranker; DefaultHidden are its hidden layers.
	DefaultEpochs       = 4
	DefaultBatchSize    = 512
	DefaultLearningRate = 0.002
	// DefaultFactors and DefaultALSIterations train the embeddings.
	DefaultFactors       = retrieval.DefaultFactors
	DefaultALSIterations = retrieval.DefaultIterations
)

// DefaultHidden are the ranker's hidden layer sizes when Params leave them
// unset.
var DefaultHidden = []int{64, 32}

// DefaultWeights are the strengths of the actions that count as positive
// interactions for the embeddings (impressions and skips do not).
var DefaultWeights = map[string]float64{
	adaptrecv1.Action_ACTION_VIEW.String():        1,
	adaptrecv1.Action_ACTION_CLICK.String():       1,
	adaptrecv1.Action_ACTION_WATCH.String():       1,
	adaptrecv1.Action_ACTION_COMPLETE.String():    2,
	adaptrecv1.Action_ACTION_LIKE.String():        2,
	adaptrecv1.Action_ACTION_ADD_TO_CART.String(): 2,
	adaptrecv1.Action_ACTION_PURCHASE.String():    3,
}

// Duration is a time.Duration written in JSON as Go's duration text
// ("30m0s").
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Input is what a training job trains from: a training set, the event log
// the embeddings learn from, and the parameters. It is written to the
// output folder as input.json before the job starts.
type Input struct {
	// Format is InputFormat.
	Format int `json:"format"`
	// JobID names the job: "<creation time>-<8 hex digits>" from NewJobID.
	JobID string `json:"job_id"`
	// Store is the URI of the store that holds the training set
	// (training/<id>/) and the event log (events/<topic>/), e.g.
	// s3://bucket/prefix/. An external trainer opens it; the Go trainer
	// reads GoTrainer.Store.
	Store string `json:"store"`
	// TrainingSet is the id of a training set built by features/offline.
	TrainingSet string `json:"training_set"`
	// Events is the event log the embeddings' positives come from.
	Events EventRange `json:"events"`
	// Params are the hyperparameters and the seed.
	Params Params `json:"params"`
	// CodeVersion identifies the code that starts the job; the trainer
	// records its own in Metadata (CodeVersion() for the Go trainer).
	CodeVersion string `json:"code_version,omitempty"`
	// Data, when set, is the training set in memory instead of on the
	// store (tests, benchmarks). Only GoTrainer reads it; it is not
	// written to input.json.
	Data *TrainingData `json:"-"`
}

// TrainingData is a training set held in memory.
type TrainingData struct {
	Manifest offline.Manifest
	Rows     []offline.Row
}

// EventRange selects the interactions the embeddings learn from. Events at
// or after the split's cutoff are never read, whatever To says.
type EventRange struct {
	// Topic is the archived topic; events.TopicInteractions when empty.
	Topic string `json:"topic,omitempty"`
	// From is the first event time read; zero means DefaultEmbeddingLookback
	// before the training set's From.
	From time.Time `json:"from,omitzero"`
	// To ends the range (exclusive); zero means the split's cutoff, and a
	// later time is cut to it.
	To time.Time `json:"to,omitzero"`
}

// Params are a job's hyperparameters. Zero values mean the documented
// defaults; Metadata records them resolved.
type Params struct {
	// Seed drives every random choice: the ranker's initial weights and
	// shuffles, the ALS factors, the k-means of the IVF index and the
	// layers of the HNSW index. The same data, parameters and seed give
	// the same artifacts, bit for bit.
	Seed uint64 `json:"seed"`
	// ValidationFraction is the latest share of examples, by event time,
	// held out to measure the ranker; 0 means DefaultValidationFraction.
	ValidationFraction float64 `json:"validation_fraction"`
	// Gap drops the training examples within Gap before the cutoff, so
	// every training label was settled before any validation example;
	// 0 means the training set's attribution window, negative means none.
	Gap Duration `json:"gap"`
	// Ranker trains the ranking model.
	Ranker RankerParams `json:"ranker"`
	// Embeddings trains the item embeddings and index.
	Embeddings EmbeddingParams `json:"embeddings"`
	// ANN builds the HNSW index over the item embeddings (items.ann).
	ANN ANNParams `json:"ann"`
	// Covisit builds the co-visitation table (covisit.bin).
	Covisit CovisitParams `json:"covisit"`
}

// RankerParams configure trainer/ranker. Zero values mean the defaults.
type RankerParams struct {
	// Hidden are the hidden layer sizes: nil means DefaultHidden, an empty
	// (non-nil) slice logistic regression.
	Hidden       []int   `json:"hidden"`
	Epochs       int     `json:"epochs"`
	BatchSize    int     `json:"batch_size"`
	LearningRate float64 `json:"learning_rate"`
	L2           float64 `json:"l2"`
	// EarlyStoppingFraction of the training part, drawn by the seed, picks
	// the best epoch and stops early after Patience epochs without a
	// better log loss; 0 trains every epoch. The validation part (the
	// future) is never used to choose anything.
	EarlyStoppingFraction float64 `json:"early_stopping_fraction"`
	Patience              int     `json:"patience,omitempty"`
}

// EmbeddingParams configure trainer/retrieval. Zero values mean the
// defaults.
type EmbeddingParams struct {
	Factors        int     `json:"factors"`
	Iterations     int     `json:"iterations"`
	Regularization float64 `json:"regularization"`
	Alpha          float64 `json:"alpha"`
	// Lists and NProbe configure the IVF index (0: retrieval's defaults,
	// round(2·√items) lists and 8 probes).
	Lists  int `json:"lists"`
	NProbe int `json:"nprobe"`
	// Weights are the strengths of the actions (protobuf names, e.g.
	// ACTION_CLICK) that count as positives; nil means DefaultWeights.
	// Strengths of one user and item add up.
	Weights map[string]float64 `json:"weights"`
}

// ANNParams configure serving/ann's index. Zero values mean its defaults;
// its seed is Params.Seed.
type ANNParams struct {
	M              int     `json:"m"`
	EfConstruction int     `json:"ef_construction"`
	EfSearch       int     `json:"ef_search"`
	NormRatio      float64 `json:"norm_ratio"`
}

// CovisitParams configure serving/covisit's table. Zero values mean its
// defaults.
type CovisitParams struct {
	// Window is the longest time between two co-visited interactions.
	Window        Duration `json:"window"`
	MaxDistance   int      `json:"max_distance"`
	DistanceDecay float64  `json:"distance_decay"`
	Neighbours    int      `json:"neighbours"`
	// RecencyDecay is stored with the table for serving's queries.
	RecencyDecay float64 `json:"recency_decay"`
}

// WithDefaults returns the parameters with every default filled in.
func (p Params) WithDefaults() Params {
	if p.ValidationFraction == 0 {
		p.ValidationFraction = DefaultValidationFraction
	}
	r := &p.Ranker
	if r.Hidden == nil {
		r.Hidden = slices.Clone(DefaultHidden)
	} else {
		r.Hidden = slices.Clone(r.Hidden)
	}
	if r.Epochs == 0 {
		r.Epochs = DefaultEpochs
	}
	if r.BatchSize == 0 {
		r.BatchSize = DefaultBatchSize
	}
	if r.LearningRate == 0 {
		r.LearningRate = DefaultLearningRate
	}
	if r.EarlyStoppingFraction > 0 && r.Patience == 0 {
		r.Patience = 2
	}
	e := &p.Embeddings
	if e.Factors == 0 {
		e.Factors = DefaultFactors
	}
	if e.Iterations == 0 {
		e.Iterations = DefaultALSIterations
	}
	if e.Regularization == 0 {
		e.Regularization = retrieval.DefaultRegularization
	}
	if e.Alpha == 0 {
		e.Alpha = retrieval.DefaultAlpha
	}
	if e.NProbe == 0 {
		e.NProbe = retrieval.DefaultNProbe
	}
	if e.Weights == nil {
		e.Weights = maps.Clone(DefaultWeights)
	} else {
		e.Weights = maps.Clone(e.Weights)
	}
	a := &p.ANN
	a.M = cmp.Or(a.M, ann.DefaultM)
	a.EfConstruction = cmp.Or(a.EfConstruction, ann.DefaultEfConstruction)
	a.EfSearch = cmp.Or(a.EfSearch, ann.DefaultEfSearch)
	a.NormRatio = cmp.Or(a.NormRatio, ann.DefaultNormRatio)
	c := &p.Covisit
	c.Window = cmp.Or(c.Window, Duration(covisit.DefaultWindow))
	c.MaxDistance = cmp.Or(c.MaxDistance, covisit.DefaultMaxDistance)
	c.DistanceDecay = cmp.Or(c.DistanceDecay, covisit.DefaultDistanceDecay)
	c.Neighbours = cmp.Or(c.Neighbours, covisit.DefaultNeighbours)
	c.RecencyDecay = cmp.Or(c.RecencyDecay, covisit.DefaultRecencyDecay)
	return p
}

// Validate reports every parameter out of range (after defaults).
func (p Params) Validate() error {
	p = p.WithDefaults()
	var bad []error
	if !(p.ValidationFraction > 0 && p.ValidationFraction < 1) {
		bad = append(bad, fmt.Errorf("validation_fraction %v, want a value in (0, 1)", p.ValidationFraction))
	}
	r := p.Ranker
	if err := r.config(0, nil).Validate(); err != nil {
		bad = append(bad, err)
	}
	if r.Epochs < 1 || r.BatchSize < 1 {
		bad = append(bad, fmt.Errorf("ranker epochs %d and batch_size %d, want at least 1", r.Epochs, r.BatchSize))
	}
	e := p.Embeddings
	if err := e.config(0, 0).Validate(); err != nil {
		bad = append(bad, err)
	}
	if e.Lists < 0 || e.NProbe < 1 {
		bad = append(bad, fmt.Errorf("embeddings lists %d and nprobe %d: want lists >= 0 (0: automatic) and nprobe >= 1", e.Lists, e.NProbe))
	}
	if len(e.Weights) == 0 {
		bad = append(bad, errors.New("embeddings weights: no action counts as a positive"))
	}
	for _, name := range slices.Sorted(maps.Keys(e.Weights)) {
		w := e.Weights[name]
		if _, ok := adaptrecv1.Action_value[name]; !ok || name == adaptrecv1.Action_ACTION_UNSPECIFIED.String() {
			bad = append(bad, fmt.Errorf("embeddings weights: %q is not an action (ACTION_CLICK, ...)", name))
		}
		if !(w > 0) || math.IsInf(w, 0) {
			bad = append(bad, fmt.Errorf("embeddings weights: %s has weight %v, want a finite value > 0", name, w))
		}
	}
	if err := p.ANN.config(0, 0).Validate(); err != nil {
		bad = append(bad, err)
	}
	if err := p.Covisit.config(0).Validate(); err != nil {
		bad = append(bad, err)
	}
	if err := errors.Join(bad...); err != nil {
		return fmt.Errorf("training params: %w", err)
	}
	return nil
}

func (r RankerParams) config(workers int, progress func(ranker.Progress)) ranker.Config {
	return ranker.Config{
		Hidden: r.Hidden, Epochs: r.Epochs, BatchSize: r.BatchSize, LearningRate: r.LearningRate, L2: r.L2,
		ValidationFraction: r.EarlyStoppingFraction, Patience: r.Patience, Workers: workers, Progress: progress,
	}
}

func (e EmbeddingParams) config(seed uint64, workers int) retrieval.Config {
	return retrieval.Config{
		Factors: e.Factors, Iterations: e.Iterations, Regularization: e.Regularization, Alpha: e.Alpha,
		Seed: seed, Workers: workers,
	}
}

func (a ANNParams) config(seed uint64, workers int) ann.Config {
	return ann.Config{M: a.M, EfConstruction: a.EfConstruction, EfSearch: a.EfSearch, NormRatio: a.NormRatio, Seed: seed, Workers: workers}
}

func (c CovisitParams) config(workers int) covisit.Config {
	return covisit.Config{
		Window: time.Duration(c.Window), MaxDistance: c.MaxDistance, DistanceDecay: c.DistanceDecay,
		Neighbours: c.Neighbours, RecencyDecay: c.RecencyDecay, Workers: workers,
	}
}

// Flatten returns the parameters as the registry records them: one text
// value per key ("ranker.hidden" = "64,32").
func (p Params) Flatten() map[string]string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	i := strconv.Itoa
	hidden := make([]string, len(p.Ranker.Hidden))
	for k, h := range p.Ranker.Hidden {
		hidden[k] = i(h)
	}
	out := map[string]string{
		"seed":                           strconv.FormatUint(p.Seed, 10),
		"validation_fraction":            f(p.ValidationFraction),
		"gap":                            time.Duration(p.Gap).String(),
		"ranker.hidden":                  strings.Join(hidden, ","),
		"ranker.epochs":                  i(p.Ranker.Epochs),
		"ranker.batch_size":              i(p.Ranker.BatchSize),
		"ranker.learning_rate":           f(p.Ranker.LearningRate),
		"ranker.l2":                      f(p.Ranker.L2),
		"ranker.early_stopping_fraction": f(p.Ranker.EarlyStoppingFraction),
		"ranker.patience":                i(p.Ranker.Patience),
		"embeddings.factors":             i(p.Embeddings.Factors),
		"embeddings.iterations":          i(p.Embeddings.Iterations),
		"embeddings.regularization":      f(p.Embeddings.Regularization),
		"embeddings.alpha":               f(p.Embeddings.Alpha),
		"embeddings.lists":               i(p.Embeddings.Lists),
		"embeddings.nprobe":              i(p.Embeddings.NProbe),
		"ann.m":                          i(p.ANN.M),
		"ann.ef_construction":            i(p.ANN.EfConstruction),
		"ann.ef_search":                  i(p.ANN.EfSearch),
		"ann.norm_ratio":                 f(p.ANN.NormRatio),
		"covisit.window":                 time.Duration(p.Covisit.Window).String(),
		"covisit.max_distance":           i(p.Covisit.MaxDistance),
		"covisit.distance_decay":         f(p.Covisit.DistanceDecay),
		"covisit.neighbours":             i(p.Covisit.Neighbours),
		"covisit.recency_decay":          f(p.Covisit.RecencyDecay),
	}
	var w []string
	for _, name := range slices.Sorted(maps.Keys(p.Embeddings.Weights)) {
		w = append(w, name+"="+f(p.Embeddings.Weights[name]))
	}
	out["embeddings.weights"] = strings.Join(w, ",")
	return out
}

// jobIDRE is what a job id may be: one key segment, safe in a URI.
var jobIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$`)

// NewJobID returns a fresh job id: the time as 20060102T150405Z and 8
// random hex digits.
func NewJobID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// Validate checks the input a trainer needs, naming every problem.
func (in Input) Validate() error {
	var bad []string
	if in.Format != InputFormat {
		bad = append(bad, fmt.Sprintf("format %d, this build reads %d", in.Format, InputFormat))
	}
	if !jobIDRE.MatchString(in.JobID) {
		bad = append(bad, fmt.Sprintf("job_id %q: want letters, digits, '.', '_' or '-', starting with a letter or digit", in.JobID))
	}
	switch {
	case in.Data != nil && in.TrainingSet != "" && in.TrainingSet != in.Data.Manifest.ID:
		bad = append(bad, fmt.Sprintf("training_set %q but the data in memory is training set %q", in.TrainingSet, in.Data.Manifest.ID))
	case in.Data == nil && in.TrainingSet == "":
		bad = append(bad, "training_set is required")
	}
	if !in.Events.From.IsZero() && !in.Events.To.IsZero() && !in.Events.From.Before(in.Events.To) {
		bad = append(bad, fmt.Sprintf("events from %s is not before to %s", in.Events.From.Format(time.RFC3339), in.Events.To.Format(time.RFC3339)))
	}
	if err := in.Params.Validate(); err != nil {
		bad = append(bad, err.Error())
	}
	if len(bad) > 0 {
		return fmt.Errorf("training job input: %s", strings.Join(bad, "; "))
	}
	return nil
}

// EncodeInput returns input.json's bytes.
func EncodeInput(in Input) ([]byte, error) {
	if in.Data != nil && in.TrainingSet == "" {
		in.TrainingSet = in.Data.Manifest.ID
	}
	b, err := json.MarshalIndent(in, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode training job input: %w", err)
	}
	return append(b, '\n'), nil
}

// DecodeInput parses input.json, refusing unknown fields.
func DecodeInput(b []byte) (Input, error) {
	var in Input
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return Input{}, fmt.Errorf("decode training job input: %w", err)
	}
	return in, nil
}

// CodeVersion identifies this build: the commit stamped at link time
// (internal/version, the Makefile), else the VCS revision it was built from
// (with "-dirty" for uncommitted changes) when the build recorded one, else
// the module version, else "devel".
func CodeVersion() string {
	if version.Commit != "" {
		return version.Commit
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	var rev string
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if dirty {
			rev += "-dirty"
		}
		return rev
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	return "devel"
}
