package eval

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"text/tabwriter"
	"time"

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
// funnel's (retrieval, then the ranker when one is plugged in).
type Report struct {
	Metrics
	BaselinePopular      Metrics `json:"baseline_popular"`
	BaselineCoOccurrence Metrics `json:"baseline_cooccurrence"`
	// TrainSeconds is the wall time of fitting the embeddings.
	TrainSeconds float64 `json:"train_seconds"`
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
// retrieves Candidates items from the IVF index and re-ranks them with
// opt.Rank when set.
func Run(ctx context.Context, ds *Dataset, opt Options) (Report, error) {
	opt = opt.withDefaults()
	if err := opt.Retrieval.Validate(); err != nil {
		return Report{}, fmt.Errorf("eval: %w", err)
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
	}}

	var train []retrieval.Interaction
	for _, it := range sp.Train {
		if it.Rating >= opt.MinPositive {
			train = append(train, retrieval.Interaction{User: it.User, Item: it.Item, Strength: 1})
		}
	}
	start := time.Now()
	model, err := retrieval.Train(ctx, len(ds.UserIDs), items, train, opt.Retrieval)
	if err != nil {
		return Report{}, fmt.Errorf("eval: train embeddings: %w", err)
	}
	rep.TrainSeconds = time.Since(start).Seconds()
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
	var scores, labels []float32
	if opt.Rank != nil {
		funnel.OnRank = func(c *Case, cand []int32, s []float32) {
			for i, item := range cand {
				scores = append(scores, s[i])
				labels = append(labels, b2f(inSorted(c.Relevant, item)))
			}
		}
	}
	rep.Metrics = Evaluate(cases, funnel, items)
	if funnel.Err != nil {
		return Report{}, funnel.Err
	}
	if opt.Rank != nil {
		if rep.Ranker, err = rankerMetrics(scores, labels); err != nil {
			return Report{}, err
		}
	}
	if err := ctx.Err(); err != nil {
		return Report{}, err
	}

	rep.BaselinePopular = Evaluate(cases, NewPopular(sp.Train, items, opt.MinPositive), items)
	co, err := NewCoOccurrence(sp.Train, items, opt.MinPositive)
	if err != nil {
		return Report{}, err
	}
	rep.BaselineCoOccurrence = Evaluate(cases, co, items)
	return rep, ctx.Err()
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
	fmt.Fprintln(tw, "recommender\tNDCG@10\tNDCG@20\tRecall@10\tRecall@20\tCoverage\t")
	row := func(name string, m Metrics) {
		fmt.Fprintf(tw, "%s\t%.4f\t%.4f\t%.4f\t%.4f\t%.4f\t\n", name, m.NDCG10, m.NDCG20, m.Recall10, m.Recall20, m.Coverage)
	}
	funnel := fmt.Sprintf("funnel: ALS d=%d, top-%d", p.Factors, p.Candidates)
	if r.Ranker != nil {
		funnel += ", ranker"
	}
	row(funnel, r.Metrics)
	row("most popular", r.BaselinePopular)
	row("item-item co-occurrence", r.BaselineCoOccurrence)
	tw.Flush()
	fmt.Fprintf(&sb, "\nembeddings: %d factors, %d iterations, regularization %g, alpha %g, seed %d; trained in %.2f s\n",
		p.Factors, p.Iterations, p.Regularization, p.Alpha, p.Seed, r.TrainSeconds)
	fmt.Fprintf(&sb, "retrieval: %s; IVF index of %d lists built in %.2f s, its top-%d recall vs exact at nprobe %d: %.4f\n",
		p.Retrieval, p.Lists, r.IndexSeconds, p.Candidates, p.NProbe, r.IVFRecall)
	if rm := r.Ranker; rm != nil {
		fmt.Fprintf(&sb, "ranker: AUC %.4f", rm.AUC)
		if rm.LogLoss != nil {
			fmt.Fprintf(&sb, ", log loss %.4f", *rm.LogLoss)
		}
		fmt.Fprintf(&sb, " over %d candidates (%d relevant)\n", rm.Pairs, rm.Positives)
	}
	return sb.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
