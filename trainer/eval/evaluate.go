package eval

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/adaptrec/adaptrec/trainer/retrieval"
)

// Metrics are the top-K metrics of one recommender over the test users,
// each the mean over users.
type Metrics struct {
	NDCG10   float64 `json:"ndcg@10"`
	NDCG20   float64 `json:"ndcg@20"`
	Recall10 float64 `json:"recall@10"`
	Recall20 float64 `json:"recall@20"`
	// Coverage is the share of the catalogue that appears in at least one
	// test user's top 20.
	Coverage float64 `json:"coverage"`
	// Users is the number of test users averaged over.
	Users int `json:"users"`
	// AtK holds "ndcg@K" and "recall@K" for the extra cutoffs asked for
	// (Options.Cutoffs); nil without any.
	AtK map[string]float64 `json:"at_k,omitempty"`
}

// listLen is the longest cut the fixed metrics read; coverage is over it.
const listLen = 20

// Evaluate asks r for every case's top 20 and averages the metrics.
func Evaluate(cases []Case, r Recommender, catalogue int) Metrics {
	return EvaluateAt(cases, r, catalogue, nil)
}

// EvaluateAt is Evaluate with extra cutoffs: NDCG and recall at each are
// added to Metrics.AtK, and lists are as long as the largest cutoff (at
// least 20).
func EvaluateAt(cases []Case, r Recommender, catalogue int, cutoffs []int) Metrics {
	var m Metrics
	n := listLen
	for _, k := range cutoffs {
		n = max(n, k)
	}
	var at []float64
	if len(cutoffs) > 0 {
		at = make([]float64, 2*len(cutoffs))
	}
	lists := make([][]int32, len(cases))
	for i := range cases {
		c := &cases[i]
		l := r.Recommend(nil, c, n)
		lists[i] = l
		m.NDCG10 += NDCGAt(l, c.Relevant, 10)
		m.NDCG20 += NDCGAt(l, c.Relevant, 20)
		m.Recall10 += RecallAt(l, c.Relevant, 10)
		m.Recall20 += RecallAt(l, c.Relevant, 20)
		for j, k := range cutoffs {
			at[2*j] += NDCGAt(l, c.Relevant, k)
			at[2*j+1] += RecallAt(l, c.Relevant, k)
		}
	}
	if n := float64(len(cases)); n > 0 {
		m.NDCG10 /= n
		m.NDCG20 /= n
		m.Recall10 /= n
		m.Recall20 /= n
		for j := range at {
			at[j] /= n
		}
	}
	if len(cutoffs) > 0 {
		m.AtK = make(map[string]float64, len(at))
		for j, k := range cutoffs {
			m.AtK["ndcg@"+strconv.Itoa(k)] = at[2*j]
			m.AtK["recall@"+strconv.Itoa(k)] = at[2*j+1]
		}
	}
	m.Coverage = Coverage(lists, listLen, catalogue)
	m.Users = len(cases)
	return m
}

// RankFunc is the re-scoring stage of a funnel: it scores a user's
// candidate items (ids of the data set), higher is better, one score per
// item. A ranker that predicts click probabilities returns them, so
// RunMovieLens can report its AUC and log loss.
type RankFunc func(user string, items []string) []float32

// Funnel is retrieval then ranking: the user's embedding retrieves the top
// Candidates unseen items from the item index, and Rank, if set, re-orders
// them; without Rank the order is the retrieval order.
type Funnel struct {
	// Index is the item index; its items are the data set's items.
	Index *retrieval.Index
	// Embed returns the user's vector for a test case.
	Embed func(c *Case) ([]float32, error)
	// Candidates is how many items retrieval hands to ranking; 0 means 200.
	Candidates int
	// Exact retrieves by brute force instead of the IVF search.
	Exact bool
	// NProbe is the IVF search's least number of lists; 0 means the
	// index's default.
	NProbe int
	// Rank, if set, re-scores the candidates by id.
	Rank RankFunc
	// RankHits, if set, re-scores the candidates from their retrieval
	// hits (the built-in ranker reads the retrieval score); it takes
	// precedence over Rank.
	RankHits func(c *Case, hits []retrieval.Hit) ([]float32, error)
	// UserIDs names the users for Rank.
	UserIDs []string

	// OnRank, if set, sees every ranked candidate list with its scores
	// (for the ranker's AUC and log loss).
	OnRank func(c *Case, items []int32, scores []float32)
	// Err records the first embedding or ranking error; Recommend returns
	// an empty list for that user.
	Err error
}

// DefaultCandidates is the retrieval depth of a Funnel.
const DefaultCandidates = 200

var _ Recommender = (*Funnel)(nil)

// Recommend implements Recommender.
func (f *Funnel) Recommend(dst []int32, c *Case, k int) []int32 {
	dst = dst[:0]
	q, err := f.Embed(c)
	if err != nil {
		f.fail(fmt.Errorf("eval: embed user %d: %w", c.User, err))
		return dst
	}
	n := f.Candidates
	if n <= 0 {
		n = DefaultCandidates
	}
	n = max(n, k)
	hits := retrieve(f.Index, nil, q, c, n, f.Exact, f.NProbe)
	items := make([]int32, len(hits))
	for i, h := range hits {
		items[i] = h.Item
	}
	var scores []float32
	switch {
	case f.RankHits != nil:
		if scores, err = f.RankHits(c, hits); err != nil {
			f.fail(fmt.Errorf("eval: rank user %d: %w", c.User, err))
			return dst
		}
	case f.Rank != nil:
		ids := make([]string, len(items))
		for i, it := range items {
			ids[i] = f.Index.ID(it)
		}
		scores = f.Rank(f.UserIDs[c.User], ids)
	}
	if f.RankHits != nil || f.Rank != nil {
		if len(scores) != len(items) {
			f.fail(fmt.Errorf("eval: ranker returned %d scores for %d candidates", len(scores), len(items)))
			return dst
		}
		if f.OnRank != nil {
			f.OnRank(c, items, scores)
		}
		pos := make([]int, len(items))
		for i := range pos {
			pos[i] = i
		}
		// Stable: equal scores keep retrieval order.
		slices.SortStableFunc(pos, func(a, b int) int {
			switch {
			case scores[a] > scores[b]:
				return -1
			case scores[a] < scores[b]:
				return 1
			}
			return 0
		})
		ranked := make([]int32, len(items))
		for i, p := range pos {
			ranked[i] = items[p]
		}
		items = ranked
	}
	return append(dst, items[:min(k, len(items))]...)
}

func (f *Funnel) fail(err error) {
	if f.Err == nil {
		f.Err = err
	}
}
