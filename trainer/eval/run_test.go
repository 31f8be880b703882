package eval

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/adaptrec/adaptrec/internal/testenv"
	"github.com/adaptrec/adaptrec/trainer/retrieval"
)

// tasteLog is a synthetic data set: users and items belong to one of four
// tastes, and users rate items of their taste high, others low, over time.
func tasteLog(users, items, perUser int, seed uint64) *Dataset {
	rng := rand.New(rand.NewPCG(seed, 4))
	ds := &Dataset{}
	for u := 0; u < users; u++ {
		ds.UserIDs = append(ds.UserIDs, fmt.Sprintf("u%d", u))
	}
	for i := 0; i < items; i++ {
		ds.ItemIDs = append(ds.ItemIDs, fmt.Sprintf("i%d", i))
	}
	for u := 0; u < users; u++ {
		for _, i := range rng.Perm(items)[:perUser] {
			r := float32(1 + rng.IntN(3))
			if u%4 == i%4 {
				r = float32(4 + rng.IntN(2))
			}
			ds.Interactions = append(ds.Interactions, Interaction{
				User: int32(u), Item: int32(i), Rating: r, Time: int64(rng.IntN(100_000)),
			})
		}
	}
	sortByTime(ds.Interactions)
	return ds
}

func smallOptions() Options {
	return Options{Retrieval: retrieval.Config{Factors: 8, Iterations: 5, Regularization: 1, Alpha: 5}, Candidates: 50}
}

func TestRunReportJSON(t *testing.T) {
	t.Parallel()
	ds := tasteLog(200, 120, 30, 1)
	rep, err := Run(t.Context(), ds, smallOptions())
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	keys := []string{"ndcg@10", "recall@20", "coverage"}
	for _, k := range append(keys, "train_seconds", "protocol") {
		if _, ok := got[k]; !ok {
			t.Errorf("report JSON has no %q: %s", k, b)
		}
	}
	for _, nested := range []string{"baseline_popular", "baseline_cooccurrence"} {
		obj, ok := got[nested].(map[string]any)
		if !ok {
			t.Fatalf("report JSON has no object %q: %s", nested, b)
		}
		for _, k := range keys {
			if _, ok := obj[k].(float64); !ok {
				t.Errorf("%s has no number %q", nested, k)
			}
		}
	}
	if _, ok := got["ranker"]; ok {
		t.Error("ranker metrics without a ranker")
	}
	// Tastes are learnable: the embeddings must beat popularity, which
	// knows nothing of them.
	if rep.NDCG10 <= rep.BaselinePopular.NDCG10 {
		t.Errorf("funnel NDCG@10 %.4f does not beat popularity %.4f on taste data", rep.NDCG10, rep.BaselinePopular.NDCG10)
	}
	table := rep.Table()
	for _, want := range []string{"NDCG@10", "Recall@20", "most popular", "item-item co-occurrence", "funnel"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
}

func TestRunIsDeterministic(t *testing.T) {
	t.Parallel()
	ds := tasteLog(150, 100, 25, 2)
	opt := smallOptions()
	opt.IVF = true
	a, err := Run(t.Context(), ds, opt)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Run(t.Context(), ds, opt)
	if err != nil {
		t.Fatal(err)
	}
	a.TrainSeconds, a.IndexSeconds, b.TrainSeconds, b.IndexSeconds = 0, 0, 0, 0
	a.EmbeddingSeconds, b.EmbeddingSeconds = 0, 0
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("two runs differ:\n%+v\n%+v", a, b)
	}
	if a.Protocol.Retrieval == "exact" || !(a.IVFRecall > 0 && a.IVFRecall <= 1) {
		t.Fatalf("IVF run: retrieval %q, IVF recall %v", a.Protocol.Retrieval, a.IVFRecall)
	}
}

func TestRunWithRanker(t *testing.T) {
	t.Parallel()
	ds := tasteLog(200, 120, 30, 3)
	var calls int
	// An oracle that knows the tastes, as probabilities.
	oracle := func(user string, items []string) []float32 {
		calls++
		var u, i int
		fmt.Sscanf(user, "u%d", &u)
		out := make([]float32, len(items))
		for k, id := range items {
			fmt.Sscanf(id, "i%d", &i)
			out[k] = 0.1
			if u%4 == i%4 {
				out[k] = 0.9
			}
		}
		return out
	}
	opt := smallOptions()
	plain, err := Run(t.Context(), ds, opt)
	if err != nil {
		t.Fatal(err)
	}
	opt.Rank = oracle
	ranked, err := Run(t.Context(), ds, opt)
	if err != nil {
		t.Fatal(err)
	}
	if calls != ranked.Users {
		t.Fatalf("ranker called %d times for %d users", calls, ranked.Users)
	}
	rm := ranked.Ranker
	if rm == nil || rm.LogLoss == nil || rm.Pairs == 0 || rm.Positives == 0 || rm.AUC <= 0.5 {
		t.Fatalf("ranker metrics %+v", rm)
	}
	if ranked.NDCG10 < plain.NDCG10 {
		t.Errorf("the oracle ranker lowered NDCG@10 from %.4f to %.4f", plain.NDCG10, ranked.NDCG10)
	}
	if !reflect.DeepEqual(ranked.BaselinePopular, plain.BaselinePopular) {
		t.Error("the ranker changed a baseline")
	}

	opt.Rank = func(string, []string) []float32 { return []float32{1} }
	if _, err := Run(t.Context(), ds, opt); err == nil || !strings.Contains(err.Error(), "scores for") {
		t.Fatalf("a ranker returning too few scores: err = %v", err)
	}
}

func TestFunnelRanksRetrievedCandidates(t *testing.T) {
	t.Parallel()
	vecs := []float32{1, 0, 0.9, 0, 0.8, 0, 0.7, 0, 0.1, 0} // 5 items, 2 dims
	ids := []string{"a", "b", "c", "d", "e"}
	idx, err := retrieval.BuildIndex(t.Context(), ids, vecs, 2, retrieval.IndexConfig{Lists: 1})
	if err != nil {
		t.Fatal(err)
	}
	f := &Funnel{
		Index: idx, Exact: true, Candidates: 3, UserIDs: []string{"u"},
		Embed: func(*Case) ([]float32, error) { return []float32{1, 0}, nil },
	}
	c := &Case{Seen: []int32{1}}
	// Retrieval: a, c, d (b is seen); without a ranker that is the order.
	if got := f.Recommend(nil, c, 2); !slices.Equal(got, []int32{0, 2}) {
		t.Fatalf("retrieval order %v, want [0 2]", got)
	}
	var saw []string
	f.Rank = func(user string, items []string) []float32 {
		saw = items
		return []float32{0, 1, 2} // reverses a, c, d
	}
	if got := f.Recommend(nil, c, 2); !slices.Equal(got, []int32{3, 2}) || !slices.Equal(saw, []string{"a", "c", "d"}) {
		t.Fatalf("ranked %v from candidates %v, want [3 2] from [a c d]", got, saw)
	}
}

// TestMovieLensQualityBar holds the funnel as delivered (retrieval, then
// the built-in ranker over the project's feature definitions) to the bar
// of docs/evaluation.md: on MovieLens 100K under the time split it beats
// both baselines on NDCG@10 and Recall@20, and the ranker improves on
// retrieval alone.
func TestMovieLensQualityBar(t *testing.T) {
	if testing.Short() {
		t.Skip("reads MovieLens 100K and trains on it; run without -short")
	}
	ml100k := testenv.Dataset(t, "ml-100k", "u.data", "u.item")
	abs, _ := filepath.Abs(ml100k)
	rep, err := RunMovieLens(t.Context(), ml100k, Options{Features: loadFeatures(t)})
	if err != nil {
		t.Fatal(err)
	}
	rep.Protocol.Dataset = abs
	t.Logf("\n%s", rep.Table())
	if rep.Users < 90 || rep.Protocol.Catalogue != 1682 || rep.Protocol.TrainInteractions != 79_999 {
		t.Fatalf("protocol drifted: %d users, %d items, %d training interactions; want about 97, 1682, 79999",
			rep.Users, rep.Protocol.Catalogue, rep.Protocol.TrainInteractions)
	}
	// Over seeds 0-9 the funnel leads each baseline by 55-77% on both
	// metrics; a 25% margin fails a change that loses most of that, and
	// retrieval alone (9-15% ahead of most popular on NDCG@10) fails it.
	const margin = 1.25
	for _, b := range []struct {
		name string
		m    Metrics
	}{{"most popular", rep.BaselinePopular}, {"co-occurrence", rep.BaselineCoOccurrence}} {
		if rep.NDCG10 < margin*b.m.NDCG10 {
			t.Errorf("NDCG@10: funnel %.4f, %s %.4f; want the funnel ahead by 25%%", rep.NDCG10, b.name, b.m.NDCG10)
		}
		if rep.Recall20 < margin*b.m.Recall20 {
			t.Errorf("Recall@20: funnel %.4f, %s %.4f; want the funnel ahead by 25%%", rep.Recall20, b.name, b.m.Recall20)
		}
	}
	r := rep.RetrievalOnly
	if r == nil || rep.NDCG10 <= r.NDCG10 || rep.Recall20 <= r.Recall20 {
		t.Errorf("the ranker does not improve on retrieval alone: %+v vs %+v", rep.Metrics, r)
	}
	if rk := rep.Ranker; rk == nil || rk.AUC <= rk.RetrievalAUC || rk.LogLoss == nil {
		t.Errorf("ranker metrics %+v: want an AUC above the retrieval scores' and a log loss", rk)
	}
}

func TestRunMovieLensNamesMissingPath(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "no-such-ml-100k")
	_, err := RunMovieLens(t.Context(), dir, Options{})
	if err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("err = %v, want one naming %s", err, dir)
	}
}
