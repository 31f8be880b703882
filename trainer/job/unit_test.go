package job

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/features/offline"
	"github.com/adaptrec/adaptrec/serving/ann"
	"github.com/adaptrec/adaptrec/serving/covisit"
	"github.com/adaptrec/adaptrec/trainer/retrieval"
)

func TestSplitByTimeNeverTrainsOnTheFuture(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	// 100 examples a minute apart, given latest first; every third is
	// clicked. Two share the minute that becomes the cutoff.
	c := &offline.Columns{Width: 1}
	at := func(i int) int64 {
		if i == 81 {
			i = 80 // same time as example 80
		}
		return t0.Add(time.Duration(i) * time.Minute).UnixMilli()
	}
	for i := 99; i >= 0; i-- {
		c.EventTimes = append(c.EventTimes, at(i))
		c.Labels = append(c.Labels, int32(min(i%3, 1)^1))
		c.Values = append(c.Values, float32(i))
	}
	s, train, val, err := splitByTime(c, 0.2, 10*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// The 20th latest example is at minute 80, which example 81 shares:
	// both validate, with 82..99; training ends 10 minutes earlier.
	if !s.Cutoff.Equal(t0.Add(80*time.Minute)) || !s.TrainEnd.Equal(t0.Add(70*time.Minute)) ||
		s.ValidationRows != 20 || s.TrainRows != 70 || s.GapRows != 10 {
		t.Errorf("split %+v", s)
	}
	// Ties at the boundary all go to validation: with 19 wanted, minute
	// 80's two examples still validate together.
	if s, _, _, err := splitByTime(c, 0.19, 0); err != nil || s.ValidationRows != 20 || s.TrainRows != 80 {
		t.Errorf("a cutoff between two examples of the same time: %+v, %v", s, err)
	}
	for _, i := range train {
		if c.EventTimes[i] >= s.TrainEnd.UnixMilli() {
			t.Errorf("training example %v at %d is not before %s", c.Values[i], c.EventTimes[i], s.TrainEnd)
		}
	}
	for k, i := range val {
		if c.EventTimes[i] < s.Cutoff.UnixMilli() {
			t.Errorf("validation example %v is before the cutoff", c.Values[i])
		}
		if k > 0 && c.EventTimes[i] < c.EventTimes[val[k-1]] {
			t.Errorf("validation examples out of time order")
		}
	}
	var pos int64
	for _, i := range val {
		pos += int64(c.Labels[i])
	}
	if pos != s.ValidationPositives || int64(len(train)) != s.TrainRows {
		t.Errorf("counts %+v, %d validation positives, %d training rows", s, pos, len(train))
	}

	// A gap longer than the data leaves nothing to train on.
	if _, _, _, err := splitByTime(c, 0.2, 100*time.Minute); err == nil || !strings.Contains(err.Error(), "no training examples before") {
		t.Errorf("gap longer than the data: %v", err)
	}
	// A validation part of one class has no AUC.
	for i := range c.Labels {
		if c.EventTimes[i] > t0.Add(75*time.Minute).UnixMilli() {
			c.Labels[i] = 0
		}
	}
	if _, _, _, err := splitByTime(c, 0.2, 0); err == nil || !strings.Contains(err.Error(), "AUC is undefined") {
		t.Errorf("validation part without positives: %v", err)
	}
}

func TestProtocolLines(t *testing.T) {
	t.Parallel()
	p := Progress{Stage: StageRanker, Step: 3, Steps: 8, Message: "epoch 3/8", Metrics: map[string]float64{"loss": 0.31, "bad": math.NaN()}, Elapsed: 41234 * time.Millisecond}
	line := FormatEvent(ProgressEvent(p))
	if want := `{"event":"progress","stage":"ranker","step":3,"steps":8,"message":"epoch 3/8","metrics":{"loss":0.31},"elapsed_s":41.234}` + "\n"; string(line) != want {
		t.Errorf("line %s, want %s", line, want)
	}
	e, ok := ParseEvent("  " + string(line))
	if !ok || e.Stage != StageRanker || e.Step != 3 || e.Metrics["loss"] != 0.31 || e.ElapsedS != 41.234 {
		t.Errorf("parsed %+v, %v", e, ok)
	}
	for _, s := range []string{"", "epoch 3", `{"level":"info","msg":"hi"}`, `{"event":"progress"`, `{"event":"checkpoint"}`, `[1,2]`} {
		if _, ok := ParseEvent(s); ok {
			t.Errorf("%q parsed as a protocol line", s)
		}
	}
	if e, ok := ParseEvent(`{"event":"error","message":"CUDA out of memory"}`); !ok || e.Message != "CUDA out of memory" {
		t.Errorf("error line: %+v", e)
	}
}

func TestParamsAndInput(t *testing.T) {
	t.Parallel()
	p := Params{}.WithDefaults()
	if !reflect.DeepEqual(p.Ranker.Hidden, DefaultHidden) || p.ValidationFraction != DefaultValidationFraction || p.Embeddings.Factors != DefaultFactors ||
		!reflect.DeepEqual(p.Embeddings.Weights, DefaultWeights) {
		t.Errorf("defaults %+v", p)
	}
	if err := p.Validate(); err != nil {
		t.Error(err)
	}
	lr := Params{Ranker: RankerParams{Hidden: []int{}}}.WithDefaults()
	if lr.Ranker.Hidden == nil || len(lr.Ranker.Hidden) != 0 || lr.Flatten()["ranker.hidden"] != "" {
		t.Errorf("an empty hidden list (logistic regression) became %v", lr.Ranker.Hidden)
	}
	bad := Params{ValidationFraction: 1.5, Ranker: RankerParams{Hidden: []int{0}, LearningRate: -1},
		Embeddings: EmbeddingParams{Factors: 5000, Weights: map[string]float64{"ACTION_NAP": 1, "ACTION_CLICK": -1}},
		ANN:        ANNParams{M: 1}, Covisit: CovisitParams{Neighbours: 5000, RecencyDecay: 2}}
	err := bad.Validate()
	for _, want := range []string{"validation_fraction 1.5", "Hidden[0] is 0", "LearningRate -1", "factors 5000", `"ACTION_NAP" is not an action`, "ACTION_CLICK has weight -1",
		"ann: M 1", "covisit: neighbours 5000", "covisit: recency decay 2"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v, want %q", err, want)
		}
	}
	flat := p.Flatten()
	if flat["ranker.hidden"] != "64,32" || flat["gap"] != "0s" || !strings.Contains(flat["embeddings.weights"], "ACTION_PURCHASE=3") ||
		flat["ann.m"] != "16" || flat["ann.ef_search"] != "300" || flat["covisit.window"] != "1h0m0s" || flat["covisit.neighbours"] != "50" {
		t.Errorf("flattened %v", flat)
	}

	in := Input{Format: InputFormat, JobID: NewJobID(time.Date(2026, 11, 22, 1, 2, 3, 0, time.UTC)), Store: "s3://b/p/", TrainingSet: "ts",
		Events: EventRange{From: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)}, Params: Params{Seed: 9, Gap: Duration(time.Hour)}.WithDefaults()}
	if err := in.Validate(); err != nil || !strings.HasPrefix(in.JobID, "20261122T010203Z-") {
		t.Fatalf("%s: %v", in.JobID, err)
	}
	b, err := EncodeInput(in)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeInput(b)
	if err != nil || !reflect.DeepEqual(back, in) {
		t.Errorf("round trip: %v\n%+v\n%+v", err, back, in)
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil || raw["params"].(map[string]any)["gap"] != "1h0m0s" {
		t.Errorf("input.json %s", b)
	}
	if _, err := DecodeInput([]byte(`{"format":1,"job_id":"j","surprise":true}`)); err == nil {
		t.Error("an unknown field was accepted")
	}
	if err := (Input{Format: 2, JobID: "../x"}).Validate(); err == nil || !strings.Contains(err.Error(), "format 2") ||
		!strings.Contains(err.Error(), `job_id "../x"`) || !strings.Contains(err.Error(), "training_set is required") {
		t.Errorf("bad input: %v", err)
	}
}

// itemsFixture is a small IVF index with the ANN index and co-visitation
// table a job would build over the same items.
func itemsFixture(t *testing.T) (*retrieval.Index, []float32, []covisit.Interaction) {
	t.Helper()
	const n, d = 60, 4
	rng := rand.New(rand.NewPCG(1, 2))
	ids := make([]string, n)
	vecs := make([]float32, n*d)
	for i := range ids {
		ids[i] = fmt.Sprintf("item-%03d", i)
	}
	for k := range vecs {
		vecs[k] = float32(rng.NormFloat64())
	}
	ivf, err := retrieval.BuildIndex(t.Context(), ids, vecs, d, retrieval.IndexConfig{Lists: 4, NProbe: 2, Regularization: 1, Alpha: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Every item is visited, next to its successor.
	var visits []covisit.Interaction
	at := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	for i := range n {
		user := fmt.Sprintf("u%d", i/3)
		visits = append(visits, covisit.Interaction{User: user, Item: ids[i], Time: at.Add(time.Duration(i) * time.Minute), Weight: 1})
	}
	return ivf, vecs, visits
}

func annOf(t *testing.T, ids []int32, vecs []float32, d int) ([]byte, ANNIndex) {
	t.Helper()
	x, err := ann.Build(t.Context(), ids, vecs, d, ann.Config{M: 4, EfConstruction: 16, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := x.Save(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), ANNIndex{Items: x.Len(), Dims: x.Dims(), M: x.M(), EfConstruction: x.EfConstruction(), EfSearch: x.EfSearch(),
		NormRatio: x.NormRatio(), Bands: x.Bands()}
}

func TestCheckANNAgainstIVF(t *testing.T) {
	t.Parallel()
	ivf, vecs, _ := itemsFixture(t)
	n, d := ivf.Len(), ivf.Dims()
	seq := make([]int32, n)
	for i := range seq {
		seq[i] = int32(i)
	}
	good, md := annOf(t, seq, vecs, d)
	if err := checkANN(good, md, ivf); err != nil {
		t.Fatalf("the matching index: %v", err)
	}
	if err := checkANN(good, md, nil); err != nil {
		t.Fatalf("without items.ivf: %v", err)
	}
	other := md
	other.EfSearch++
	shifted := slices.Clone(seq)
	for i := range shifted {
		shifted[i]++
	}
	scaled := slices.Clone(vecs)
	for k := range scaled {
		scaled[k] *= 2
	}
	fewer, fewerMD := annOf(t, seq[:n-1], vecs[:(n-1)*d], d)
	shiftedB, shiftedMD := annOf(t, shifted, vecs, d)
	scaledB, scaledMD := annOf(t, seq, scaled, d)
	for _, tt := range []struct {
		name string
		data []byte
		md   ANNIndex
		want string
	}{
		{"metadata differs", good, other, "the metadata says"},
		{"corrupt", good[:len(good)-1], md, "truncated"},
		{"fewer items", fewer, fewerMD, fmt.Sprintf("holds %d items of %d dims, items.ivf %d of %d", n-1, d, n, d)},
		{"ids are not item indexes", shiftedB, shiftedMD, `has no item 0 (items.ivf's "item-000")`},
		{"other vectors", scaledB, scaledMD, "another vector than in items.ivf"},
	} {
		if err := checkANN(tt.data, tt.md, ivf); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestCheckCovisitAgainstIVF(t *testing.T) {
	t.Parallel()
	ivf, _, visits := itemsFixture(t)
	table := func(in []covisit.Interaction) ([]byte, CovisitTable) {
		c, err := covisit.Build(t.Context(), in, covisit.Config{})
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := c.Save(&b); err != nil {
			t.Fatal(err)
		}
		md := CovisitTable{Items: c.Len(), Edges: int64(c.Edges())}
		for i := range int32(c.Len()) {
			if nbr, _ := c.Neighbours(i); len(nbr) > 0 {
				md.ItemsWithNeighbours++
			}
		}
		return b.Bytes(), md
	}
	good, md := table(visits)
	if md.Edges == 0 || md.Items != ivf.Len() {
		t.Fatalf("the fixture's table: %+v", md)
	}
	if err := checkCovisit(good, md, ivf); err != nil {
		t.Fatalf("the matching table: %v", err)
	}
	renamed := slices.Clone(visits)
	for k := range renamed {
		renamed[k].Item = "z-" + renamed[k].Item
	}
	renamedB, renamedMD := table(renamed)
	fewer, fewerMD := table(visits[:len(visits)-1])
	other := md
	other.Edges++
	for _, tt := range []struct {
		name string
		data []byte
		md   CovisitTable
		want string
	}{
		{"metadata differs", good, other, "the metadata says"},
		{"corrupt", append(slices.Clone(good), 0), md, "bytes follow"},
		{"fewer items", fewer, fewerMD, fmt.Sprintf("holds %d items, items.ivf %d", ivf.Len()-1, ivf.Len())},
		{"other items", renamedB, renamedMD, `item 0 is "z-item-000", in items.ivf "item-000"`},
	} {
		if err := checkCovisit(tt.data, tt.md, ivf); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}
