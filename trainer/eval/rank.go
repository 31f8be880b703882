package eval

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/adaptrec/adaptrec/trainer/ranker"
	"github.com/adaptrec/adaptrec/trainer/retrieval"
)

// DefaultLabelFraction is the share of the training period, latest first,
// whose positives label the built-in ranker's training examples: 0.25 of
// the training period is as many interactions as the default test period
// (0.2 of all), so the ranker learns for the horizon it is used on.
const DefaultLabelFraction = 0.25

// RankerOptions configures the funnel's built-in ranker, trained when
// Options.Features is set.
type RankerOptions struct {
	// LabelFraction is the latest share of the training period's
	// interactions whose positives label the ranker's examples (the label
	// window); their features and candidates come from the part before
	// it. 0 means 0.25.
	LabelFraction float64
	// Windows is how many consecutive label windows, each LabelFraction
	// of the training period's interactions, latest first, give examples;
	// each has its own embeddings and features as of its start. 0 means 1.
	Windows int
	// Features are the features.yaml features of a row, in order: batch
	// user and item features. nil means DefaultRankerFeatures.
	Features []string
	// Extras are the extra columns appended to each row; nil means
	// DefaultRankerExtras, an empty non-nil slice none.
	Extras []string
	// Model configures ranker.Train; its zero values mean
	// DefaultRankerModel's (so an L2 of exactly 0 cannot be asked for).
	// Seed is replaced by the run's seed (Options.Retrieval.Seed). Schema
	// stays empty: the extra columns are not features.yaml features, so
	// no ModelSchema describes the rows and the model is not exported.
	Model ranker.Config
}

// DefaultRankerModel is the built-in ranker's training configuration:
// logistic regression, which beat MLPs (8, 16, 32 and 32-16 hidden units)
// on validation splits of the MovieLens 100K training period
// (docs/evaluation.md); L2 1e-2 scored the same as 1e-4 there.
var DefaultRankerModel = ranker.Config{
	Hidden:             nil,
	Epochs:             30,
	BatchSize:          256,
	LearningRate:       0.003,
	L2:                 1e-4,
	ValidationFraction: 0.1,
	Patience:           3,
}

func (o RankerOptions) withDefaults() RankerOptions {
	if o.LabelFraction == 0 {
		o.LabelFraction = DefaultLabelFraction
	}
	o.Windows = max(o.Windows, 1)
	if o.Features == nil {
		o.Features = DefaultRankerFeatures
	}
	if o.Extras == nil {
		o.Extras = DefaultRankerExtras
	}
	m, d := &o.Model, DefaultRankerModel
	if m.Hidden == nil {
		m.Hidden = d.Hidden
	}
	m.Epochs = cmp.Or(m.Epochs, d.Epochs)
	m.BatchSize = cmp.Or(m.BatchSize, d.BatchSize)
	m.LearningRate = cmp.Or(m.LearningRate, d.LearningRate)
	m.L2 = cmp.Or(m.L2, d.L2)
	m.ValidationFraction = cmp.Or(m.ValidationFraction, d.ValidationFraction)
	m.Patience = cmp.Or(m.Patience, d.Patience)
	return o
}

// RankerTraining describes how the built-in ranker was trained.
type RankerTraining struct {
	// Windows is the number of label windows; LabelFrom is the start of
	// the earliest. The latest ends where the evaluated period starts.
	Windows   int       `json:"windows"`
	LabelFrom time.Time `json:"label_from"`
	// Users, Examples and Positives count the label window's users (a
	// training positive before LabelFrom and a new positive in the
	// window), their retrieved candidates and the relevant ones.
	Users     int `json:"users"`
	Examples  int `json:"examples"`
	Positives int `json:"positives"`
	// Model is "lr" or "mlp" with its hidden sizes; Epochs how many ran,
	// BestEpoch the one kept.
	Model     string `json:"model"`
	Epochs    int    `json:"epochs"`
	BestEpoch int    `json:"best_epoch"`
	// ValAUC and ValLogLoss are on the ranker's own validation rows (a
	// random share of the examples).
	ValAUC     float64 `json:"val_auc"`
	ValLogLoss float64 `json:"val_log_loss"`
	// Columns name the values of a row: features.yaml features (vector
	// components as name[i]), then the extra columns.
	Columns []string `json:"columns"`
	// Seconds is the wall time of the whole stage: archiving the training
	// period, the label windows' embeddings, every feature snapshot (those
	// the examples read and the one scoring reads), the examples and the
	// fit. FeatureSeconds is the part spent computing snapshots: the batch
	// job reading the archive.
	Seconds        float64 `json:"seconds"`
	FeatureSeconds float64 `json:"feature_seconds"`
}

// rankStage is a trained ranker with the features it scores from.
type rankStage struct {
	model *ranker.Model
	rows  *rowBuilder
	view  *featureView
	buf   []float32
	info  RankerTraining
}

// trainRankStage trains the ranker for an evaluation whose training
// period is sp.Train and whose evaluated period starts at sp.Time, using
// nothing at or after sp.Time: the training period is split again at its
// own latest LabelFraction; embeddings are trained and features computed
// from the part before that (as of LabelFrom); each label-window user's
// retrieved candidates become examples labelled by whether the user liked
// them in the window. The returned stage scores with features as of
// sp.Time, computed from the whole training period.
func trainRankStage(ctx context.Context, ds *Dataset, sp Split, opt Options, progress func(string, ...any)) (*rankStage, error) {
	start := time.Now()
	ro := opt.Ranker.withDefaults()
	if _, err := batchGroups(opt.Features, ro.Features); err != nil {
		return nil, err
	}
	rows, err := newRowBuilder(opt.Features, ro.Features, ro.Extras)
	if err != nil {
		return nil, err
	}
	groups, err := rows.groups(opt.Features)
	if err != nil {
		return nil, err
	}
	if !(ro.LabelFraction > 0) || float64(ro.Windows)*ro.LabelFraction >= 1 {
		return nil, fmt.Errorf("eval: ranker label windows: %d of %v of the training period, want a total share in (0, 1)", ro.Windows, ro.LabelFraction)
	}

	// Only the training period is archived: the batch job could not read
	// the evaluated period even if its cutoff were wrong.
	st := newMemStore()
	if err := archiveInteractions(ctx, st, ds, sp.Train, opt.MinPositive); err != nil {
		return nil, err
	}
	data := ranker.Dataset{Width: rows.width}
	var info RankerTraining
	end := sp.Time
	for w := 1; w <= ro.Windows; w++ {
		n, err := trainWindow(ctx, ds, sp.Train, end, float64(w)*ro.LabelFraction, st, groups, rows, &data, opt, progress)
		if err != nil {
			return nil, fmt.Errorf("eval: ranker label window %d: %w", w, err)
		}
		info.Users += n.users
		info.FeatureSeconds += n.featureSeconds
		info.LabelFrom = n.from
		end = n.from.Unix()
	}
	info.Windows, info.Examples, info.Columns = ro.Windows, data.Len(), rows.columns()
	for _, y := range data.Labels {
		if y == 1 {
			info.Positives++
		}
	}
	if info.Positives == 0 {
		return nil, errors.New("eval: ranker label windows: no retrieved candidate is relevant; nothing to learn from")
	}
	cfg := ro.Model
	cfg.Seed = opt.Retrieval.Seed
	progress("ranker: training on %d examples (%d relevant), %d columns", info.Examples, info.Positives, rows.width)
	res, err := ranker.Train(ctx, data, cfg)
	if err != nil {
		return nil, fmt.Errorf("eval: train ranker: %w", err)
	}
	info.Model = string(res.Model.Kind())
	for _, h := range res.Model.Hidden() {
		info.Model += fmt.Sprintf(" %d", h)
	}
	info.Epochs, info.BestEpoch = len(res.History), res.BestEpoch
	if res.BestEpoch > 0 && res.History[res.BestEpoch-1].HasValidation {
		info.ValAUC = res.History[res.BestEpoch-1].ValAUC
		info.ValLogLoss = res.History[res.BestEpoch-1].ValLoss
	}

	progress("ranker: features as of %s for scoring", time.Unix(sp.Time, 0).UTC().Format(time.RFC3339))
	fstart := time.Now()
	now, err := featuresAsOf(ctx, st, opt.Features, ds, groups, time.Unix(sp.Time, 0).UTC())
	if err != nil {
		return nil, err
	}
	info.FeatureSeconds += time.Since(fstart).Seconds()
	info.Seconds = time.Since(start).Seconds()
	return &rankStage{model: res.Model, rows: rows, view: now, info: info}, nil
}

// window is what one label window contributed.
type window struct {
	from           time.Time
	users          int
	featureSeconds float64
}

// trainWindow appends the examples of the label window that starts at the
// latest share of train and ends at end (unix seconds): the retrieved
// candidates of every user with a positive before the window and a new
// positive in it, from embeddings trained before the window, with features
// as of its start, labelled by the window's positives.
func trainWindow(ctx context.Context, ds *Dataset, train []Interaction, end int64, share float64,
	st *memStore, groups []string, rows *rowBuilder, data *ranker.Dataset, opt Options, progress func(string, ...any),
) (window, error) {
	inner, err := TimeSplit(train, share)
	if err != nil {
		return window{}, err
	}
	last, _ := slices.BinarySearchFunc(inner.Test, end, func(a Interaction, t int64) int { return cmp.Compare(a.Time, t) })
	inner.Test = inner.Test[:last]
	from := time.Unix(inner.Time, 0).UTC()
	cases := inner.Cases(opt.MinPositive)
	if len(cases) == 0 {
		return window{}, errors.New("nobody with a positive before it has a new positive in it")
	}
	progress("ranker: label window %s to %s, %d users; embeddings and features as of its start",
		from.Format(time.RFC3339), time.Unix(end, 0).UTC().Format(time.RFC3339), len(cases))
	fstart := time.Now()
	view, err := featuresAsOf(ctx, st, opt.Features, ds, groups, from)
	if err != nil {
		return window{}, err
	}
	featureSeconds := time.Since(fstart).Seconds()
	index, err := trainIndex(ctx, ds, inner.Train, opt)
	if err != nil {
		return window{}, err
	}
	emb, err := index.Embedder()
	if err != nil {
		return window{}, err
	}
	var hits []retrieval.Hit
	for i := range cases {
		c := &cases[i]
		q, err := emb.Embed(nil, c.Liked, nil)
		if err != nil {
			return window{}, fmt.Errorf("embed user %d: %w", c.User, err)
		}
		hits = retrieve(index, hits, q, c, opt.Candidates, !opt.IVF, opt.NProbe)
		if data.Rows, err = rows.appendRows(data.Rows, view, c.User, hits); err != nil {
			return window{}, err
		}
		for _, h := range hits {
			data.Labels = append(data.Labels, b2f(inSorted(c.Relevant, h.Item)))
		}
	}
	return window{from: from, users: len(cases), featureSeconds: featureSeconds}, nil
}

// score returns the click probability of each of a user's candidates.
func (s *rankStage) score(c *Case, hits []retrieval.Hit) ([]float32, error) {
	var err error
	if s.buf, err = s.rows.appendRows(s.buf[:0], s.view, c.User, hits); err != nil {
		return nil, err
	}
	return s.model.Predict(s.buf, len(hits))
}

// trainIndex trains embeddings on the positives of train and indexes the
// data set's items with them.
func trainIndex(ctx context.Context, ds *Dataset, train []Interaction, opt Options) (*retrieval.Index, error) {
	var data []retrieval.Interaction
	for _, it := range train {
		if it.Rating >= opt.MinPositive {
			data = append(data, retrieval.Interaction{User: it.User, Item: it.Item, Strength: 1})
		}
	}
	model, err := retrieval.Train(ctx, len(ds.UserIDs), len(ds.ItemIDs), data, opt.Retrieval)
	if err != nil {
		return nil, fmt.Errorf("train embeddings: %w", err)
	}
	index, err := model.BuildIndex(ctx, ds.ItemIDs, opt.Index)
	if err != nil {
		return nil, fmt.Errorf("build item index: %w", err)
	}
	return index, nil
}

// retrieve returns the top n candidates for q that c has not seen.
func retrieve(index *retrieval.Index, dst []retrieval.Hit, q []float32, c *Case, n int, exact bool, nprobe int) []retrieval.Hit {
	exclude := func(item int32) bool { return inSorted(c.Seen, item) }
	if exact {
		return index.Exact(dst, q, n, exclude)
	}
	return index.Search(dst, q, n, retrieval.SearchOptions{NProbe: nprobe, Exclude: exclude})
}
