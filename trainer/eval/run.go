package eval

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/trainer/retrieval"
)

// Defaults of Options.
const (
	DefaultTestFraction = 0.2
	DefaultMinPositive  = 4
)

// Options configures Run and RunMovieLens. Zero values mean the documented
// defaults.
type Options struct {
	// TestFraction is the share of interactions, latest first, in the test
	// period; 0 means 0.2.
	TestFraction float64
	// ValidationFraction, when > 0, evaluates on a validation split
	// instead: the training period is split again at its own last
	// ValidationFraction, and the test period is never read. Choose
	// hyperparameters this way.
	ValidationFraction float64
	// MinPositive is the lowest rating that counts as a positive; 0 means 4.
	MinPositive float32
	// Retrieval configures the embeddings; zero values mean retrieval's
	// defaults (64 factors, 15 iterations, regularization 40, alpha 10,
	// seed 0), chosen with ValidationFraction on this data set.
	Retrieval retrieval.Config
	// Index configures the item index (zero values: retrieval's defaults).
	Index retrieval.IndexConfig
	// Candidates is the retrieval depth of the funnel; 0 means 200.
	Candidates int
	// IVF retrieves through the IVF index instead of by exact search.
	// Exact is the default because MovieLens 100K's catalogue is small
	// (1,682 items: a scan costs microseconds) while its top-200 is deep:
	// IVF needs about half the lists to find 0.95 of it
	// (docs/evaluation.md).
	IVF bool
	// NProbe is the IVF search's least number of lists; 0 means the
	// index's default. CandidateRecall is measured at it either way.
	NProbe int
	// Rank, if set, re-scores the funnel's candidates; its AUC and log
	// loss over them are reported.
	Rank RankFunc
	// Features, when set, adds the built-in ranker to the funnel: a
	// ranker.Model over rows of these definitions' batch features
	// (computed by features/batch from the training period's archived
	// interactions) plus extra columns from retrieval (the gap to the
	// user's best score, the position) and a category affinity, trained
	// on a label window at the end of the training period (see
	// RankerOptions).
	// The report then carries the funnel without the ranker as
	// RetrievalOnly. Rank and Features exclude each other.
	Features *features.FeatureSet
	// Ranker configures the built-in ranker.
	Ranker RankerOptions
	// Cutoffs are extra K values at which NDCG and recall are reported
	// (Metrics.AtK), each at least 1; 10 and 20 are always reported.
	Cutoffs []int
	// Progress, if set, receives a line for every stage of the run.
	Progress func(line string)
}

func (o Options) withDefaults() Options {
	if o.TestFraction == 0 {
		o.TestFraction = DefaultTestFraction
	}
	if o.MinPositive == 0 {
		o.MinPositive = DefaultMinPositive
	}
	r := &o.Retrieval
	r.Factors = cmp.Or(r.Factors, retrieval.DefaultFactors)
	r.Iterations = cmp.Or(r.Iterations, retrieval.DefaultIterations)
	r.Regularization = cmp.Or(r.Regularization, retrieval.DefaultRegularization)
	r.Alpha = cmp.Or(r.Alpha, retrieval.DefaultAlpha)
	if o.Candidates == 0 {
		o.Candidates = DefaultCandidates
	}
	return o
}

// Report is the result of one evaluation run. The embedded Metrics are the
// funnel's (retrieval, then the ranker when there is one).
type Report struct {
	Metrics
	BaselinePopular      Metrics `json:"baseline_popular"`
	BaselineCoOccurrence Metrics `json:"baseline_cooccurrence"`
	// RetrievalOnly is the funnel without its ranker, on the same users:
	// set when the built-in ranker is on.
	RetrievalOnly *Metrics `json:"retrieval_only,omitempty"`
	// TrainSeconds is the wall time of training everything the funnel
	// uses: the embeddings and, with the built-in ranker, its whole stage
	// (EmbeddingSeconds plus Ranker.Training.Seconds).
	TrainSeconds float64 `json:"train_seconds"`
	// EmbeddingSeconds is the wall time of fitting the embeddings the
	// funnel retrieves with.
	EmbeddingSeconds float64 `json:"embedding_seconds"`
	// IndexSeconds is the wall time of building the item index.
	IndexSeconds float64 `json:"index_seconds"`
	// IVFRecall is the mean share of each test user's exact
	// top-Candidates (by the embeddings) that the IVF search at NProbe
	// returns, whether or not the funnel used it.
	IVFRecall float64 `json:"ivf_candidate_recall"`
	// Ranker holds the plugged-in ranker's metrics over the candidates.
	Ranker   *RankerMetrics `json:"ranker,omitempty"`
	Protocol Protocol       `json:"protocol"`
}

// RankerMetrics score a ranker pointwise over every test user's retrieved
// candidates, a candidate being positive when it is relevant.
type RankerMetrics struct {
	AUC float64 `json:"auc"`
	// LogLoss is absent unless every score is a probability in [0, 1].
	LogLoss   *float64 `json:"log_loss,omitempty"`
	Pairs     int      `json:"pairs"`
	Positives int      `json:"positives"`
	// RetrievalAUC is the AUC of the retrieval scores over the same
	// candidates: what the ranker has to beat.
	RetrievalAUC float64 `json:"retrieval_auc"`
	// Training describes the built-in ranker's training; nil for a
	// plugged-in RankFunc.
	Training *RankerTraining `json:"training,omitempty"`
}

// Protocol records what was evaluated, so a report can be reproduced.
type Protocol struct {
	Dataset string `json:"dataset"`
	// Period is "test", or "validation" with Options.ValidationFraction.
	Period            string    `json:"period"`
	SplitTime         time.Time `json:"split_time"`
	HeldOutFraction   float64   `json:"held_out_fraction"`
	MinPositive       float32   `json:"min_positive"`
	TrainInteractions int       `json:"train_interactions"`
	TestInteractions  int       `json:"test_interactions"`
	Catalogue         int       `json:"catalogue"`
	Candidates        int       `json:"candidates"`
	Retrieval         string    `json:"retrieval"`
	Lists             int       `json:"ivf_lists"`
	NProbe            int       `json:"ivf_nprobe"`
	Factors           int       `json:"factors"`
	Iterations        int       `json:"iterations"`
	Regularization    float64   `json:"regularization"`
	Alpha             float64   `json:"alpha"`
	Seed              uint64    `json:"seed"`
	// Cutoffs are the extra K values of Metrics.AtK.
	Cutoffs []int `json:"cutoffs,omitempty"`
	// Ranker is "none", "plugged in" or the built-in ranker's model.
	Ranker string `json:"ranker"`
	// Description says the whole protocol in words.
	Description string `json:"description"`
}

// RunMovieLens evaluates the funnel and the baselines on the MovieLens
// 100K copy in dir (u.data, u.item). See Run.
func RunMovieLens(ctx context.Context, dir string, opt Options) (Report, error) {
	ds, err := LoadMovieLens(dir)
	if err != nil {
		return Report{}, err
	}
	r, err := Run(ctx, ds, opt)
	r.Protocol.Dataset = dir
	return r, err
}

// Run evaluates on ds with a global time split: the embeddings and both
// baselines learn from the training period's positives only; every test
// user (a positive in training, a relevant item in the test period) gets a
// top-20 over the whole catalogue minus the items they saw in training;
// relevant items are the test period's positives. The funnel embeds each
// test user by fold-in from their training positives, as serving does,
// retrieves Candidates items (exactly, or from the IVF index) and re-ranks
// them with the built-in ranker (opt.Features) or opt.Rank when set.
func Run(ctx context.Context, ds *Dataset, opt Options) (Report, error) {
	opt = opt.withDefaults()
	if err := opt.Retrieval.Validate(); err != nil {
		return Report{}, fmt.Errorf("eval: %w", err)
	}
	for _, k := range opt.Cutoffs {
		if k < 1 || k > len(ds.ItemIDs) {
			return Report{}, fmt.Errorf("eval: cutoff %d, want 1..%d (the catalogue)", k, len(ds.ItemIDs))
		}
	}
	if opt.Rank != nil && opt.Features != nil {
		return Report{}, errors.New("eval: Options.Rank and Options.Features both set; plug in one ranker")
	}
	progress := func(format string, args ...any) {
		if opt.Progress != nil {
			opt.Progress(fmt.Sprintf(format, args...))
		}
	}
	sp, err := TimeSplit(ds.Interactions, opt.TestFraction)
	if err != nil {
		return Report{}, err
	}
	period, held := "test", opt.TestFraction
	if opt.ValidationFraction > 0 {
		if sp, err = TimeSplit(sp.Train, opt.ValidationFraction); err != nil {
			return Report{}, fmt.Errorf("eval: validation split: %w", err)
		}
		period, held = "validation", opt.ValidationFraction
	}
	cases := sp.Cases(opt.MinPositive)
	if len(cases) == 0 {
		return Report{}, errors.New("eval: no test users: nobody with a training positive has a relevant test item")
	}
	items := len(ds.ItemIDs)
	rep := Report{Protocol: Protocol{
		Period:            period,
		SplitTime:         time.Unix(sp.Time, 0).UTC(),
		HeldOutFraction:   held,
		MinPositive:       opt.MinPositive,
		TrainInteractions: len(sp.Train),
		TestInteractions:  len(sp.Test),
		Catalogue:         items,
		Candidates:        opt.Candidates,
		Factors:           opt.Retrieval.Factors,
		Iterations:        opt.Retrieval.Iterations,
		Regularization:    opt.Retrieval.Regularization,
		Alpha:             opt.Retrieval.Alpha,
		Seed:              opt.Retrieval.Seed,
		Ranker:            "none",
		Cutoffs:           slices.Clone(opt.Cutoffs),
	}}
	progress("split at %s: %d training, %d %s interactions, %d users to evaluate",
		rep.Protocol.SplitTime.Format(time.RFC3339), len(sp.Train), len(sp.Test), period, len(cases))

	progress("retrieval: training embeddings (%d factors, %d iterations) on the training positives", opt.Retrieval.Factors, opt.Retrieval.Iterations)
	start := time.Now()
	var train []retrieval.Interaction
	for _, it := range sp.Train {
		if it.Rating >= opt.MinPositive {
			train = append(train, retrieval.Interaction{User: it.User, Item: it.Item, Strength: 1})
		}
	}
	model, err := retrieval.Train(ctx, len(ds.UserIDs), items, train, opt.Retrieval)
	if err != nil {
		return Report{}, fmt.Errorf("eval: train embeddings: %w", err)
	}
	rep.EmbeddingSeconds = time.Since(start).Seconds()
	start = time.Now()
	index, err := model.BuildIndex(ctx, ds.ItemIDs, opt.Index)
	if err != nil {
		return Report{}, fmt.Errorf("eval: build item index: %w", err)
	}
	rep.IndexSeconds = time.Since(start).Seconds()
	emb, err := index.Embedder()
	if err != nil {
		return Report{}, fmt.Errorf("eval: %w", err)
	}
	nprobe := opt.NProbe
	if nprobe == 0 {
		nprobe = index.NProbe()
	}
	rep.Protocol.Lists, rep.Protocol.NProbe = index.Lists(), nprobe
	rep.Protocol.Retrieval = "exact"
	if opt.IVF {
		rep.Protocol.Retrieval = fmt.Sprintf("ivf lists=%d nprobe=%d", index.Lists(), nprobe)
	}

	embed := func(c *Case) ([]float32, error) { return emb.Embed(nil, c.Liked, nil) }
	rep.IVFRecall, err = ivfRecall(index, cases, embed, opt.Candidates, nprobe)
	if err != nil {
		return Report{}, err
	}

	funnel := &Funnel{
		Index: index, Embed: embed, Candidates: opt.Candidates,
		Exact: !opt.IVF, NProbe: nprobe, Rank: opt.Rank, UserIDs: ds.UserIDs,
	}
	var stage *rankStage
	if opt.Features != nil {
		if stage, err = trainRankStage(ctx, ds, sp, opt, progress); err != nil {
			return Report{}, err
		}
		funnel.RankHits = stage.score
		rep.Protocol.Ranker = stage.info.Model
	} else if opt.Rank != nil {
		rep.Protocol.Ranker = "plugged in"
	}
	rep.TrainSeconds = rep.EmbeddingSeconds
	if stage != nil {
		rep.TrainSeconds += stage.info.Seconds
	}

	progress("evaluating the funnel on %d users", len(cases))
	var scores, labels, retrievalScores []float32
	if funnel.Rank != nil || funnel.RankHits != nil {
		funnel.OnRank = func(c *Case, cand []int32, s []float32) {
			q, _ := embed(c) // embedded without error a moment ago
			for i, item := range cand {
				scores = append(scores, s[i])
				labels = append(labels, b2f(inSorted(c.Relevant, item)))
				retrievalScores = append(retrievalScores, dotf(q, index.Vector(item)))
			}
		}
	}
	rep.Metrics = EvaluateAt(cases, funnel, items, opt.Cutoffs)
	if funnel.Err != nil {
		return Report{}, funnel.Err
	}
	if funnel.Rank != nil || funnel.RankHits != nil {
		if rep.Ranker, err = rankerMetrics(scores, labels); err != nil {
			return Report{}, err
		}
		if rep.Ranker.RetrievalAUC, err = AUC(retrievalScores, labels); err != nil {
			return Report{}, fmt.Errorf("eval: retrieval %w", err)
		}
		if stage != nil {
			rep.Ranker.Training = &stage.info
			plain := *funnel
			plain.RankHits, plain.OnRank = nil, nil
			m := EvaluateAt(cases, &plain, items, opt.Cutoffs)
			rep.RetrievalOnly = &m
		}
	}
	if err := ctx.Err(); err != nil {
		return Report{}, err
	}

	progress("baselines: most popular and item-item co-occurrence")
	rep.BaselinePopular = EvaluateAt(cases, NewPopular(sp.Train, items, opt.MinPositive), items, opt.Cutoffs)
	co, err := NewCoOccurrence(sp.Train, items, opt.MinPositive)
	if err != nil {
		return Report{}, err
	}
	rep.BaselineCoOccurrence = EvaluateAt(cases, co, items, opt.Cutoffs)
	rep.Protocol.Description = describe(rep, opt)
	return rep, ctx.Err()
}

func dotf(a, b []float32) float32 {
	var s float32
	for i, x := range a[:len(b)] {
		s += x * b[i]
	}
	return s
}

// ivfRecall measures the IVF search against exact search over the test
// users' candidate lists.
func ivfRecall(index *retrieval.Index, cases []Case, embed func(*Case) ([]float32, error), k, nprobe int) (float64, error) {
	var sum float64
	var got, want []retrieval.Hit
	for i := range cases {
		c := &cases[i]
		q, err := embed(c)
		if err != nil {
			return 0, fmt.Errorf("eval: embed user %d: %w", c.User, err)
		}
		exclude := func(item int32) bool { return inSorted(c.Seen, item) }
		got = index.Search(got, q, k, retrieval.SearchOptions{NProbe: nprobe, Exclude: exclude})
		want = index.Exact(want, q, k, exclude)
		in := make(map[int32]bool, len(want))
		for _, h := range want {
			in[h.Item] = true
		}
		n := 0
		for _, h := range got {
			if in[h.Item] {
				n++
			}
		}
		sum += float64(n) / float64(max(len(want), 1))
	}
	return sum / float64(len(cases)), nil
}

func rankerMetrics(scores, labels []float32) (*RankerMetrics, error) {
	m := &RankerMetrics{Pairs: len(scores)}
	if len(scores) == 0 {
		return nil, errors.New("eval: the ranker saw no candidates")
	}
	for _, y := range labels {
		if y == 1 {
			m.Positives++
		}
	}
	var err error
	if m.AUC, err = AUC(scores, labels); err != nil {
		return nil, fmt.Errorf("eval: ranker %w", err)
	}
	if math.IsNaN(m.AUC) {
		m.AUC = 0.5 // one class only; JSON has no NaN
	}
	probs := true
	for _, s := range scores {
		if !(s >= 0 && s <= 1) {
			probs = false
			break
		}
	}
	if probs {
		ll, err := LogLoss(scores, labels)
		if err != nil {
			return nil, fmt.Errorf("eval: ranker %w", err)
		}
		m.LogLoss = &ll
	}
	return m, nil
}

func b2f(b bool) float32 {
	if b {
		return 1
	}
	return 0
}

// Table renders the report for people: one row per recommender, then the
// protocol.
func (r Report) Table() string {
	var sb strings.Builder
	p := r.Protocol
	fmt.Fprintf(&sb, "%s, %s period from %s (last %.0f%% of interactions by time)\n",
		orDash(p.Dataset), p.Period, p.SplitTime.Format(time.RFC3339), 100*p.HeldOutFraction)
	fmt.Fprintf(&sb, "train %d / held out %d interactions, %d test users, catalogue %d items, positive = rating >= %g\n\n",
		p.TrainInteractions, p.TestInteractions, r.Users, p.Catalogue, p.MinPositive)
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', tabwriter.AlignRight)
	extra := p.Cutoffs
	fmt.Fprint(tw, "recommender\tNDCG@10\tNDCG@20\tRecall@10\tRecall@20\tCoverage\t")
	for _, k := range extra {
		fmt.Fprintf(tw, "NDCG@%d\tRecall@%d\t", k, k)
	}
	fmt.Fprintln(tw)
	row := func(name string, m Metrics) {
		fmt.Fprintf(tw, "%s\t%.4f\t%.4f\t%.4f\t%.4f\t%.4f\t", name, m.NDCG10, m.NDCG20, m.Recall10, m.Recall20, m.Coverage)
		for _, k := range extra {
			fmt.Fprintf(tw, "%.4f\t%.4f\t", m.AtK["ndcg@"+strconv.Itoa(k)], m.AtK["recall@"+strconv.Itoa(k)])
		}
		fmt.Fprintln(tw)
	}
	retrieval := fmt.Sprintf("ALS d=%d, top-%d", p.Factors, p.Candidates)
	switch {
	case r.Ranker == nil:
		row("funnel: "+retrieval, r.Metrics)
	case r.Ranker.Training != nil:
		row("funnel: "+retrieval+" → ranker "+p.Ranker, r.Metrics)
	default:
		row("funnel: "+retrieval+" → plugged-in ranker", r.Metrics)
	}
	if r.RetrievalOnly != nil {
		row("retrieval only: "+retrieval, *r.RetrievalOnly)
	}
	row("most popular", r.BaselinePopular)
	row("item-item co-occurrence", r.BaselineCoOccurrence)
	tw.Flush()
	fmt.Fprintf(&sb, "\nembeddings: %d factors, %d iterations, regularization %g, alpha %g, seed %d; trained in %.2f s\n",
		p.Factors, p.Iterations, p.Regularization, p.Alpha, p.Seed, r.EmbeddingSeconds)
	fmt.Fprintf(&sb, "retrieval: %s; IVF index of %d lists built in %.2f s, its top-%d recall vs exact at nprobe %d: %.4f\n",
		p.Retrieval, p.Lists, r.IndexSeconds, p.Candidates, p.NProbe, r.IVFRecall)
	if rm := r.Ranker; rm != nil {
		fmt.Fprintf(&sb, "ranker on the %s candidates: AUC %.4f", p.Period, rm.AUC)
		if rm.LogLoss != nil {
			fmt.Fprintf(&sb, ", log loss %.4f", *rm.LogLoss)
		}
		fmt.Fprintf(&sb, " over %d candidates (%d relevant); retrieval scores' AUC %.4f\n", rm.Pairs, rm.Positives, rm.RetrievalAUC)
		if t := rm.Training; t != nil {
			fmt.Fprintf(&sb, "ranker training: %s, label window from %s, %d users, %d examples (%d relevant), %d columns; "+
				"best epoch %d of %d, validation AUC %.4f, log loss %.4f; %.2f s with its embeddings and features (%.2f s of batch features)\n",
				t.Model, t.LabelFrom.Format(time.RFC3339), t.Users, t.Examples, t.Positives, len(t.Columns),
				t.BestEpoch, t.Epochs, t.ValAUC, t.ValLogLoss, t.Seconds, t.FeatureSeconds)
		}
	}
	fmt.Fprintf(&sb, "train seconds (everything the funnel uses): %.2f\n", r.TrainSeconds)
	return sb.String()
}

// describe states the protocol of a run in words, for the report.
func describe(r Report, opt Options) string {
	p := r.Protocol
	var sb strings.Builder
	fmt.Fprintf(&sb, "Global time split: interactions before %s train, the rest (last %.0f%% by time) is the %s period. ",
		p.SplitTime.Format(time.RFC3339), 100*p.HeldOutFraction, p.Period)
	fmt.Fprintf(&sb, "Positive = rating >= %g. Evaluated users: a training positive and a new positive in the %s period; "+
		"relevant = their %s-period positives not seen in training; candidates = the whole catalogue (%d items) minus what they saw in training. ",
		p.MinPositive, p.Period, p.Period, p.Catalogue)
	fmt.Fprintf(&sb, "Funnel: implicit ALS (%d factors, regularization %g, alpha %g, %d iterations, seed %d) on training positives, "+
		"fold-in user embedding, %s top-%d retrieval",
		p.Factors, p.Regularization, p.Alpha, p.Iterations, p.Seed, p.Retrieval, p.Candidates)
	switch {
	case r.Ranker != nil && r.Ranker.Training != nil:
		t := r.Ranker.Training
		fmt.Fprintf(&sb, ", re-ranked by a %s ranker over %d columns (%s). ", t.Model, len(t.Columns), strings.Join(t.Columns, ", "))
		window := fmt.Sprintf("label window = its last %.0f%%", 100*opt.Ranker.withDefaults().LabelFraction)
		if t.Windows > 1 {
			window = fmt.Sprintf("%d consecutive label windows of %.0f%% each at its end", t.Windows, 100*opt.Ranker.withDefaults().LabelFraction)
		}
		fmt.Fprintf(&sb, "Ranker training uses the training period only: %s (from %s); "+
			"examples = the top-%d candidates of an ALS trained before the window, with batch features (features/batch over the archived "+
			"interactions, a rating = an impression, a positive = a click) as of the window's start, labelled by the user's new positives in the window; "+
			"scoring uses ALS and features as of the split. ",
			window, t.LabelFrom.Format(time.RFC3339), p.Candidates)
	case r.Ranker != nil:
		sb.WriteString(", re-ranked by a plugged-in ranker. ")
	default:
		sb.WriteString(", in retrieval order. ")
	}
	sb.WriteString("Baselines on the same users and candidates: most popular (training positives) and item-item cosine co-occurrence. ")
	sb.WriteString("Metrics from each top 20: Recall@K, binary NDCG@K, coverage = distinct recommended items / catalogue.")
	return sb.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
