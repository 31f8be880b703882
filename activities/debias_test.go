package activities

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/adaptrec/adaptrec/features/offline"
)

// loggedPages simulates pages ranked by a logging policy whose scores are
// the items' attraction plus much noise, with clicks under a position-based
// model (examination (1+p)^-0.7, as the simulator's), and returns the rows,
// the logging policy's scores and a better model's (less noise) for them.
func loggedPages(pages int, seed uint64) (rows []offline.Row, logging, better []float32) {
	r := rand.New(rand.NewPCG(seed, 1))
	for pg := range pages {
		type item struct{ attract, logging, better float64 }
		items := make([]item, 10)
		for i := range items {
			a := 0.05 + 0.4*r.Float64()
			items[i] = item{a, a + 0.25*r.NormFloat64(), a + 0.03*r.NormFloat64()}
		}
		slices.SortFunc(items, func(x, y item) int { return cmp.Compare(y.logging, x.logging) })
		for p, it := range items {
			label := int32(0)
			if r.Float64() < math.Pow(float64(1+p), -0.7)*it.attract {
				label = 1
			}
			rows = append(rows, offline.Row{RequestID: fmt.Sprint("r", pg), Position: int32(p), Label: label})
			logging, better = append(logging, float32(it.logging)), append(better, float32(it.better))
		}
	}
	return rows, logging, better
}

func labelsOf(rows []offline.Row) []float32 {
	l := make([]float32, len(rows))
	for i, r := range rows {
		l[i] = float32(r.Label)
	}
	return l
}

// ndcgOf is the propensity-weighted NDCG@k of scores over the pages with
// a click, as holdoutMetrics computes it.
func ndcgOf(rows []offline.Row, scores []float32, gain []float64, k int) float64 {
	var dcg, idcg float64
	for start := 0; start < len(rows); start += 10 {
		ranked := make([]int32, 10)
		clicked := false
		for j := range ranked {
			ranked[j] = int32(start + j)
			clicked = clicked || rows[start+j].Label > 0
		}
		if !clicked {
			continue
		}
		slices.SortStableFunc(ranked, func(x, y int32) int { return cmp.Compare(scores[y], scores[x]) })
		d, i := weightedDCG(ranked, rows, gain, k)
		dcg, idcg = dcg+d, idcg+i
	}
	return dcg / idcg
}

// The gates must not credit the model that ranked the logged pages for its
// own ordering: on pages a poor model ranked, a model that knows the items
// better scores higher on the debiased metrics.
func TestDebiasedMetricsFavourTheBetterModel(t *testing.T) {
	t.Parallel()
	rows, logging, better := loggedPages(20000, 7)
	labels := labelsOf(rows)
	aucLogging, err := positionAUC(rows, logging, labels)
	if err != nil {
		t.Fatal(err)
	}
	aucBetter, err := positionAUC(rows, better, labels)
	if err != nil {
		t.Fatal(err)
	}
	if aucBetter <= aucLogging+0.01 {
		t.Errorf("AUC within positions: better model %.4f, logging model %.4f; want the better model ahead", aucBetter, aucLogging)
	}
	gain := propensityGains(rows)
	ndcgLogging, ndcgBetter := ndcgOf(rows, logging, gain, 10), ndcgOf(rows, better, gain, 10)
	if ndcgBetter <= ndcgLogging+0.01 {
		t.Errorf("debiased NDCG@10: better model %.4f, logging model %.4f; want the better model ahead", ndcgBetter, ndcgLogging)
	}
	// Unit gains ignore the position effect, which credits the logging
	// model's order.
	unit := make([]float64, len(rows))
	for i := range unit {
		unit[i] = 1
	}
	loggedLogging, loggedBetter := ndcgOf(rows, logging, unit, 10), ndcgOf(rows, better, unit, 10)
	t.Logf("AUC within positions %.4f vs %.4f; NDCG debiased %.4f vs %.4f, logged %.4f vs %.4f (better vs logging)",
		aucBetter, aucLogging, ndcgBetter, ndcgLogging, loggedBetter, loggedLogging)
	if loggedBetter-loggedLogging >= ndcgBetter-ndcgLogging {
		t.Errorf("logged NDCG gap %.4f is not smaller than the debiased gap %.4f: the position effect should favour the logging model as logged",
			loggedBetter-loggedLogging, ndcgBetter-ndcgLogging)
	}
}

func TestPropensityGains(t *testing.T) {
	t.Parallel()
	var rows []offline.Row
	add := func(pos int32, shown, clicked int) {
		for i := range shown {
			l := int32(0)
			if i < clicked {
				l = 1
			}
			rows = append(rows, offline.Row{Position: pos, Label: l})
		}
	}
	add(0, 100, 20) // CTR 0.2: the top
	add(1, 100, 10) // 0.1: propensity 0.5, gain 2
	add(2, 100, 30) // 0.3 > the top's: clipped to 1
	add(3, 1000, 1) // 0.001: clipped to MinPropensity, gain 20
	add(-1, 10, 5)  // no position: gain 1
	gain := propensityGains(rows)
	want := map[int32]float64{0: 1, 1: 2, 2: 1, 3: 1 / MinPropensity, -1: 1}
	for i, r := range rows {
		if math.Abs(gain[i]-want[r.Position]) > 1e-9 {
			t.Fatalf("gain at position %d = %v, want %v", r.Position, gain[i], want[r.Position])
		}
	}
}

func TestPositionAUC(t *testing.T) {
	t.Parallel()
	// Within each position the score orders clicks perfectly, though
	// across positions it orders them backwards: AUC within positions is 1.
	rows := []offline.Row{
		{Position: 0, Label: 1}, {Position: 0, Label: 0},
		{Position: 1, Label: 1}, {Position: 1, Label: 0},
		{Position: 2, Label: 0}, // one class only: no pairs
	}
	scores := []float32{0.2, 0.1, 0.9, 0.8, 0.5}
	got, err := positionAUC(rows, scores, labelsOf(rows))
	if err != nil || got != 1 {
		t.Fatalf("positionAUC = %v, %v; want 1", got, err)
	}
	if _, err := positionAUC(rows[4:], scores[4:], labelsOf(rows[4:])); err == nil {
		t.Fatal("positionAUC without a position holding both classes: no error")
	}
}

func TestWeightedDCG(t *testing.T) {
	t.Parallel()
	rows := []offline.Row{{Label: 1}, {Label: 0}, {Label: 1}}
	gain := []float64{1, 1, 4}
	// The heavier click first is ideal.
	if d, i := weightedDCG([]int32{2, 0, 1}, rows, gain, 10); math.Abs(d-i) > 1e-12 || d == 0 {
		t.Fatalf("ideal order: DCG %v, ideal %v; want equal", d, i)
	}
	wantD, wantI := 1+4/math.Log2(4), 4+1/math.Log2(3)
	if d, i := weightedDCG([]int32{0, 1, 2}, rows, gain, 10); math.Abs(d-wantD) > 1e-12 || math.Abs(i-wantI) > 1e-12 {
		t.Fatalf("DCG %v, ideal %v; want %v, %v", d, i, wantD, wantI)
	}
	// Beyond k a click adds to the ideal only.
	if d, i := weightedDCG([]int32{0, 1, 2}, rows, gain, 1); d != 1 || i != 4 {
		t.Fatalf("k=1: DCG %v, ideal %v; want 1, 4", d, i)
	}
}
