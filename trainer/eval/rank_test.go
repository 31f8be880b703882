package eval

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/batch"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/trainer/retrieval"
)

// projectFeatures loads the project's feature definitions once.
var projectFeatures = sync.OnceValues(func() (*features.FeatureSet, error) {
	return features.Load("../../features/features.yaml")
})

func loadFeatures(t *testing.T) *features.FeatureSet {
	t.Helper()
	fs, err := projectFeatures()
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func TestMemStore(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	st := newMemStore()
	for _, k := range []string{"a/2", "a/1", "b/1", "a/3"} {
		if _, err := st.Put(ctx, k, []byte(k), objstore.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.Put(ctx, "a/1", []byte("x"), objstore.PutOptions{IfNoneMatch: "*"}); !errors.Is(err, objstore.ErrPreconditionFailed) {
		t.Fatalf("IfNoneMatch on an existing key: err = %v", err)
	}
	var keys []string
	for info, err := range st.List(ctx, "a/", objstore.ListOptions{StartAfter: "a/1"}) {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, info.Key)
	}
	if !slices.Equal(keys, []string{"a/2", "a/3"}) {
		t.Fatalf("listed %v, want [a/2 a/3]", keys)
	}
	if b, err := st.GetRange(ctx, "a/3", 1, 10); err != nil || string(b) != "/3" {
		t.Fatalf("GetRange = %q, %v", b, err)
	}
	if _, _, err := st.Get(ctx, "c"); !errors.Is(err, objstore.ErrNotFound) {
		t.Fatalf("Get of a missing key: err = %v", err)
	}
}

// tinyLog is three users and three items over a few days.
func tinyLog() *Dataset {
	day := int64(24 * 3600)
	t0 := time.Date(1998, 3, 1, 0, 0, 0, 0, time.UTC).Unix()
	ds := &Dataset{
		UserIDs: []string{"u0", "u1", "u2"},
		ItemIDs: []string{"i0", "i1", "i2"},
		Interactions: []Interaction{
			{User: 0, Item: 0, Rating: 5, Time: t0},
			{User: 1, Item: 0, Rating: 2, Time: t0 + day},
			{User: 1, Item: 1, Rating: 4, Time: t0 + 2*day},
			{User: 2, Item: 0, Rating: 4, Time: t0 + 3*day},
			// On and after the as-of time of the test: never read.
			{User: 2, Item: 1, Rating: 5, Time: t0 + 4*day},
			{User: 0, Item: 2, Rating: 5, Time: t0 + 5*day},
		},
	}
	cat, err := batch.NewCatalogue(ds.ItemIDs, []batch.ItemInfo{
		{Category: 3, Creator: -1, Published: time.Unix(t0-10*day, 0)},
		{Category: 1, Creator: -1},
		{Category: 3, Creator: -1},
	})
	if err != nil {
		panic(err)
	}
	ds.Catalogue = cat
	return ds
}

// TestFeaturesAsOfComputesFromThePast archives a tiny log, computes the
// batch features as of a time inside it and checks them by hand: ratings
// count as impressions, positives as clicks, and nothing at or after the
// as-of time counts.
func TestFeaturesAsOfComputesFromThePast(t *testing.T) {
	t.Parallel()
	fs := loadFeatures(t)
	ds := tinyLog()
	st := newMemStore()
	if err := archiveInteractions(t.Context(), st, ds, ds.Interactions, 4); err != nil {
		t.Fatal(err)
	}
	asOf := time.Unix(ds.Interactions[4].Time, 0).UTC()
	groups, err := batchGroups(fs, []string{"user_clicks_30d", "item_impressions_7d"})
	if err != nil {
		t.Fatal(err)
	}
	v, err := featuresAsOf(t.Context(), st, fs, ds, groups, asOf)
	if err != nil {
		t.Fatal(err)
	}
	get := func(r *features.Record, name string) features.Value {
		t.Helper()
		f, _ := fs.Lookup(name)
		if r == nil {
			return f.Default
		}
		val, _, err := r.Get(f.ID)
		if err != nil {
			t.Fatal(err)
		}
		return val
	}
	for _, tt := range []struct {
		rec  *features.Record
		name string
		want float64
	}{
		{v.users[0], "user_impressions_30d", 1},
		{v.users[0], "user_clicks_30d", 1},
		{v.users[1], "user_impressions_30d", 2},
		{v.users[1], "user_clicks_30d", 1},
		{v.users[2], "user_impressions_30d", 1}, // not the rating at the as-of time
		{v.items[0], "item_impressions_7d", 3},
		{v.items[0], "item_clicks_7d", 2},
		{v.items[1], "item_impressions_7d", 1},
		{v.items[2], "item_impressions_7d", 0}, // rated after the as-of time only
		{v.items[0], "item_category_id", 3},
		{v.items[0], "item_age_hours", 14 * 24},
		{v.items[2], "item_category_id", 3},
	} {
		val := get(tt.rec, tt.name)
		got := float64(val.Float)
		if f, _ := fs.Lookup(tt.name); f.Type.Kind == features.KindInt {
			got = float64(val.Int)
		}
		if math.Abs(got-tt.want) > 1e-3 {
			t.Errorf("%s = %v, want %v", tt.name, got, tt.want)
		}
	}
	// user 0's only click is on an item of category 3.
	aff := get(v.users[0], "user_category_affinity").Vector
	if len(aff) != 32 || aff[3] != 1 {
		t.Errorf("user_category_affinity of u0 = %v, want 1 at 3", aff)
	}
}

func TestRowsFollowTheLayout(t *testing.T) {
	t.Parallel()
	fs := loadFeatures(t)
	ds := tinyLog()
	st := newMemStore()
	if err := archiveInteractions(t.Context(), st, ds, ds.Interactions, 4); err != nil {
		t.Fatal(err)
	}
	names := []string{"user_clicks_30d", "item_impressions_7d"}
	b, err := newRowBuilder(fs, names, []string{ExtraRetrievalScore, ExtraRetrievalRank, ExtraRetrievalGap, ExtraCategoryAffinity})
	if err != nil {
		t.Fatal(err)
	}
	groups, err := b.groups(fs)
	if err != nil {
		t.Fatal(err)
	}
	v, err := featuresAsOf(t.Context(), st, fs, ds, groups, time.Unix(ds.Interactions[4].Time, 0).UTC())
	if err != nil {
		t.Fatal(err)
	}
	hits := []retrieval.Hit{{Item: 2, Score: 0.9}, {Item: 0, Score: 0.5}}
	rows, err := b.appendRows(nil, v, 0, hits)
	if err != nil {
		t.Fatal(err)
	}
	want := []float32{
		1, 0, 0.9, 1, 0, 1, // u0 clicked once; i2 not rated yet; rank 0 → log2(2); u0 likes category 3
		1, 3, 0.5, float32(math.Log2(3)), 0.4, 1,
	}
	for i := range want {
		if math.Abs(float64(rows[i]-want[i])) > 1e-6 {
			t.Fatalf("rows = %v, want %v", rows, want)
		}
	}
	if cols := b.columns(); !slices.Equal(cols, []string{"user_clicks_30d", "item_impressions_7d", "retrieval_score", "retrieval_rank", "retrieval_gap", "category_affinity"}) {
		t.Errorf("columns %v", cols)
	}
	if _, err := newRowBuilder(fs, names, []string{"clairvoyance"}); err == nil || !strings.Contains(err.Error(), "clairvoyance") {
		t.Errorf("unknown extra: err = %v", err)
	}
	if _, err := batchGroups(fs, []string{"item_clicks_1h"}); err == nil || !strings.Contains(err.Error(), "item_clicks_1h is a item nearline feature") {
		t.Errorf("nearline feature: err = %v", err)
	}
}

// TestRankStageIgnoresTheEvaluatedPeriod trains the ranker stage twice,
// once with the evaluated period's interactions replaced by others: the
// model and the scoring features must be bit-identical, because nothing
// at or after the split may reach the ranker.
func TestRankStageIgnoresTheEvaluatedPeriod(t *testing.T) {
	t.Parallel()
	fs := loadFeatures(t)
	ds := tasteLog(200, 120, 30, 5)
	opt := smallOptions()
	opt.Features = fs
	opt = opt.withDefaults()
	sp, err := TimeSplit(ds.Interactions, opt.TestFraction)
	if err != nil {
		t.Fatal(err)
	}
	noop := func(string, ...any) {}
	a, err := trainRankStage(t.Context(), ds, sp, opt, noop)
	if err != nil {
		t.Fatal(err)
	}
	other := *ds
	other.Interactions = slices.Clone(ds.Interactions)
	for i := len(sp.Train); i < len(other.Interactions); i++ {
		it := &other.Interactions[i]
		it.Item = (it.Item + 7) % int32(len(ds.ItemIDs))
		it.Rating = 6 - it.Rating
	}
	sp2, err := TimeSplit(other.Interactions, opt.TestFraction)
	if err != nil || sp2.Time != sp.Time {
		t.Fatalf("split moved: %v, %d vs %d", err, sp2.Time, sp.Time)
	}
	b, err := trainRankStage(t.Context(), &other, sp2, opt, noop)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.model, b.model) {
		t.Fatal("the ranker changed with the evaluated period's interactions")
	}
	if !reflect.DeepEqual(a.view, b.view) {
		t.Fatal("the scoring features changed with the evaluated period's interactions")
	}
	info := a.info
	if info.Windows != 1 || info.Users == 0 || info.Positives == 0 || info.Examples != info.Users*opt.Candidates ||
		!info.LabelFrom.Before(time.Unix(sp.Time, 0)) || len(info.Columns) != len(DefaultRankerFeatures)+len(DefaultRankerExtras) {
		t.Fatalf("training info %+v", info)
	}
}

func TestRunWithBuiltInRanker(t *testing.T) {
	t.Parallel()
	ds := tasteLog(200, 120, 30, 3)
	opt := smallOptions()
	opt.Features = loadFeatures(t)
	opt.Cutoffs = []int{5}
	var lines []string
	opt.Progress = func(l string) { lines = append(lines, l) }
	rep, err := Run(t.Context(), ds, opt)
	if err != nil {
		t.Fatal(err)
	}
	if rep.RetrievalOnly == nil || rep.Ranker == nil || rep.Ranker.Training == nil || rep.Ranker.LogLoss == nil {
		t.Fatalf("report lacks the ranker's parts: %+v", rep)
	}
	if rep.Ranker.Pairs != rep.Users*opt.Candidates {
		t.Errorf("ranker scored %d candidates for %d users", rep.Ranker.Pairs, rep.Users)
	}
	if !(rep.TrainSeconds >= rep.EmbeddingSeconds+rep.Ranker.Training.Seconds-1e-9) {
		t.Errorf("train seconds %v leave out the ranker's %v", rep.TrainSeconds, rep.Ranker.Training.Seconds)
	}
	if rep.AtK["ndcg@5"] == 0 && rep.AtK["recall@5"] == 0 && rep.NDCG10 > 0 {
		t.Errorf("no metrics at 5: %v", rep.AtK)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"retrieval_only", "ranker", "train_seconds"} {
		if got[k] == nil {
			t.Errorf("JSON lacks %s", k)
		}
	}
	table := rep.Table()
	for _, want := range []string{"ranker lr", "retrieval only", "ranker training", "NDCG@5"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if !strings.Contains(rep.Protocol.Description, "label window") || len(lines) < 5 {
		t.Errorf("description %q, %d progress lines", rep.Protocol.Description, len(lines))
	}

	again, err := Run(t.Context(), ds, opt)
	if err != nil {
		t.Fatal(err)
	}
	if again.Metrics.NDCG10 != rep.NDCG10 || again.Ranker.AUC != rep.Ranker.AUC || *again.Ranker.LogLoss != *rep.Ranker.LogLoss {
		t.Errorf("two runs differ: %+v vs %+v", again.Metrics, rep.Metrics)
	}

	opt.Rank = func(string, []string) []float32 { return nil }
	if _, err := Run(t.Context(), ds, opt); err == nil || !strings.Contains(err.Error(), "both set") {
		t.Errorf("Rank and Features: err = %v", err)
	}
}

func TestRankerOptionsRejected(t *testing.T) {
	t.Parallel()
	ds := tasteLog(100, 60, 20, 4)
	for name, r := range map[string]RankerOptions{
		"windows cover everything": {Windows: 5, LabelFraction: 0.2},
		"request feature":          {Features: []string{"req_local_hour"}},
		"unknown feature":          {Features: []string{"user_clairvoyance"}},
	} {
		opt := smallOptions()
		opt.Features = loadFeatures(t)
		opt.Ranker = r
		if _, err := Run(t.Context(), ds, opt); err == nil {
			t.Errorf("%s: no error", name)
		} else if name != "windows cover everything" && !strings.Contains(err.Error(), fmt.Sprint(r.Features[0])) {
			t.Errorf("%s: error %q does not name the feature", name, err)
		}
	}
}
