package skew

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/adaptrec/adaptrec/features"
)

func near(t *testing.T, what string, got, want float64) {
	t.Helper()
	if math.Abs(got-want) > 1e-9*max(1, math.Abs(want)) {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

func TestQuantile(t *testing.T) {
	s := []float64{1, 2, 3, 4, 5}
	for _, c := range []struct{ q, want float64 }{
		{0, 1}, {0.01, 1.04}, {0.1, 1.4}, {0.5, 3}, {0.9, 4.6}, {0.99, 4.96}, {1, 5},
	} {
		near(t, "Quantile", Quantile(s, c.q), c.want)
	}
	if got := Quantile(nil, 0.5); got != 0 {
		t.Errorf("Quantile(nil) = %v, want 0", got)
	}
}

func TestProfileStats(t *testing.T) {
	p, err := NewProfile([]Column{{Name: "x", Feature: "x", Default: 1}, {Name: "empty", Feature: "empty"}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []float32{4, 1, 3, 2} {
		if err := p.AddRow([]float32{v, 0}); err != nil {
			t.Fatal(err)
		}
	}
	// Hand-computed: mean 2.5, population variance (2.25+0.25+0.25+2.25)/4 = 1.25.
	s := p.Stats(0)
	if s.Count != 4 {
		t.Errorf("Count = %d, want 4", s.Count)
	}
	near(t, "Mean", s.Mean, 2.5)
	near(t, "Std", s.Std, math.Sqrt(1.25))
	near(t, "P50", s.P50, 2.5)
	near(t, "P10", s.P10, 1.3)
	near(t, "P90", s.P90, 3.7)
	near(t, "DefaultRate", s.DefaultRate, 0.25)
	// The second column held its default (0) on every row.
	near(t, "empty DefaultRate", p.Stats(1).DefaultRate, 1)

	if err := p.AddRow([]float32{1}); err == nil || !strings.Contains(err.Error(), "1 values") {
		t.Errorf("AddRow of a short row: %v, want an error naming 1 values", err)
	}
	if _, err := NewProfile([]Column{{Name: "a"}, {Name: "a"}}, 0); err == nil || !strings.Contains(err.Error(), "a named twice") {
		t.Errorf("NewProfile with a repeated column: %v", err)
	}
	if _, err := NewProfile(nil, -3); err == nil || !strings.Contains(err.Error(), "-3") {
		t.Errorf("NewProfile(-3): %v", err)
	}
}

func TestProfileReservoirIsBoundedAndDeterministic(t *testing.T) {
	build := func() *Profile {
		p, err := NewProfile([]Column{{Name: "x", Default: -1}}, 100)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 10_000 {
			p.Add(0, float64(i))
		}
		return p
	}
	a, b := build(), build()
	if n := len(a.Sample(0)); n != 100 {
		t.Fatalf("sample holds %d values, want 100", n)
	}
	if !slices.Equal(a.Sample(0), b.Sample(0)) {
		t.Error("two profiles of the same values kept different samples")
	}
	s := a.Stats(0)
	// Mean and std are exact over all values; quantiles come from the sample.
	near(t, "Mean", s.Mean, 4999.5)
	near(t, "Std", s.Std, math.Sqrt((10_000*10_000-1)/12.0))
	if s.P50 < 3500 || s.P50 > 6500 {
		t.Errorf("sampled median %v is far from 4999.5", s.P50)
	}
	if s.DefaultRate != 0 {
		t.Errorf("DefaultRate = %v, want 0", s.DefaultRate)
	}
}

func seq(lo, hi int) []float64 {
	var out []float64
	for i := lo; i <= hi; i++ {
		out = append(out, float64(i))
	}
	return out
}

func TestPSI(t *testing.T) {
	train := seq(0, 99) // deciles cut 0..99 into ten bins of ten values
	near(t, "PSI of identical samples", PSI(train, train), 0)
	// Served: half in the first bin, half in the last, none in the eight
	// between (share floored at 0.0001).
	served := append(seq(0, 4), seq(95, 99)...)
	want := 2*(0.5-0.1)*math.Log(0.5/0.1) + 8*(psiFloor-0.1)*math.Log(psiFloor/0.1)
	near(t, "PSI of a split sample", PSI(train, served), want)
	// Served 0..49: a share of 0.2 in each of the first five bins, none in
	// the last five.
	want = 5*(0.2-0.1)*math.Log(2) + 5*(psiFloor-0.1)*math.Log(psiFloor/0.1)
	near(t, "PSI of the lower half", PSI(train, seq(0, 49)), want)

	// A constant training feature: one cut, two bins (≤0 and >0).
	zeros := make([]float64, 50)
	near(t, "PSI of constant samples", PSI(zeros, zeros), 0)
	mixed := append(make([]float64, 25), seq(1, 25)...)
	want = (0.5-1)*math.Log(0.5/1) + (0.5-psiFloor)*math.Log(0.5/psiFloor)
	near(t, "PSI of a constant feature that starts moving", PSI(zeros, mixed), want)

	if PSI(train, nil) != 0 || PSI(nil, train) != 0 {
		t.Error("PSI with an empty side is not 0")
	}
}

func TestColumns(t *testing.T) {
	m := features.ModelSchema{Features: []features.RequiredFeature{
		{Name: "user_ctr", Type: "float", Default: "0.03"},
		{Name: "item_age", Type: "int", Default: "7"},
		{Name: "emb", Type: "vector[2]", Default: "[1,-2.5]"},
	}}
	cols, err := Columns(m)
	if err != nil {
		t.Fatal(err)
	}
	want := []Column{
		{Name: "user_ctr", Feature: "user_ctr", Default: float64(float32(0.03))},
		{Name: "item_age", Feature: "item_age", Default: 7},
		{Name: "emb[0]", Feature: "emb", Default: 1},
		{Name: "emb[1]", Feature: "emb", Default: -2.5},
	}
	if !slices.Equal(cols, want) {
		t.Errorf("Columns = %+v, want %+v", cols, want)
	}
	for _, bad := range []features.RequiredFeature{
		{Name: "f", Type: "float", Default: "zero"},
		{Name: "v", Type: "vector[3]", Default: "[1,2]"},
		{Name: "l", Type: "list", Default: "[]"},
		{Name: "t", Type: "tensor", Default: "0"},
	} {
		_, err := Columns(features.ModelSchema{Features: []features.RequiredFeature{bad}})
		if err == nil || !strings.Contains(err.Error(), "feature "+bad.Name) {
			t.Errorf("Columns(%+v): %v, want an error naming the feature", bad, err)
		}
	}
}

func TestAlign(t *testing.T) {
	widths := map[string]int{"emb": 2}
	for _, c := range []struct {
		names []string
		n     int
		want  []string
	}{
		{[]string{"a", "emb", "b"}, 4, []string{"a", "emb[0]", "emb[1]", "b"}},
		{[]string{"a", "emb[0]", "emb[1]"}, 3, []string{"a", "emb[0]", "emb[1]"}},
		{[]string{"a", "emb"}, 5, nil},
	} {
		got, ok := align(c.names, make([]float32, c.n), widths)
		if ok != (c.want != nil) || (ok && !slices.Equal(got, c.want)) {
			t.Errorf("align(%v, %d values) = %v, %v; want %v", c.names, c.n, got, ok, c.want)
		}
	}
}

// profileOf builds a profile of named columns from per-column values.
func profileOf(t *testing.T, cols []Column, values map[string][]float64) *Profile {
	t.Helper()
	p, err := NewProfile(cols, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cols {
		for _, v := range values[c.Name] {
			p.Add(i, v)
		}
	}
	return p
}

func TestCompareFlagsShiftedFeatures(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	normal := func(n int, mean float64) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[i] = mean + rng.NormFloat64()
		}
		return out
	}
	withDefaults := func(n int, share float64) []float64 {
		out := normal(n, 5)
		for i := range int(float64(n) * share) {
			out[i] = 0
		}
		return out
	}
	cols := []Column{{Name: "stable"}, {Name: "shifted"}, {Name: "nulls"}, {Name: "rare"}, {Name: "unserved"}}
	train := profileOf(t, cols, map[string][]float64{
		"stable": normal(2000, 0), "shifted": normal(2000, 0), "nulls": withDefaults(2000, 0.05),
		"rare": normal(2000, 0), "unserved": normal(2000, 0),
	})
	served := profileOf(t, cols[:4], map[string][]float64{
		"stable": normal(1000, 0), "shifted": normal(1000, 1.5), "nulls": withDefaults(1000, 0.4),
		"rare": normal(10, 9), // far off, but fewer than MinServed values
	})
	rows, err := Compare(train, served, Thresholds{})
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]FeatureSkew{}
	for _, r := range rows {
		by[r.Name] = r
	}
	if r := by["stable"]; r.Flagged() || !r.Judged || r.MeanShift > 0.2 || r.PSI > 0.1 {
		t.Errorf("stable feature: %+v, want judged, unflagged, small shift and PSI", r)
	}
	if r := by["shifted"]; !slices.Equal(r.Reasons, []string{ReasonMeanShift, ReasonPSI}) || r.MeanShift < 1.2 || r.Severity <= 1 {
		t.Errorf("shifted feature: %+v, want flagged for mean shift and PSI", r)
	}
	if r := by["nulls"]; !slices.Contains(r.Reasons, ReasonDefaultRate) || math.Abs(r.DefaultRateDiff-0.35) > 1e-9 {
		t.Errorf("feature with more defaults: %+v, want flagged for default rate (diff 0.35)", r)
	}
	if r := by["rare"]; r.Judged || r.Flagged() || r.Served.Count != 10 {
		t.Errorf("feature with 10 served values: %+v, want not judged", r)
	}
	if r := by["unserved"]; r.Judged || r.Served.Count != 0 {
		t.Errorf("unserved feature: %+v, want not judged", r)
	}
	// Flagged first, by severity.
	if !rows[0].Flagged() || !rows[1].Flagged() || rows[2].Flagged() || rows[0].Severity < rows[1].Severity {
		t.Errorf("rows not sorted by severity: %+v", rows)
	}
	if _, err := json.Marshal(rows); err != nil {
		t.Errorf("rows do not encode as JSON: %v", err)
	}

	// Raising the thresholds clears the flags; a negative one disables a check.
	rows, err = Compare(train, served, Thresholds{MeanShift: 100, PSI: -1, DefaultRate: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Flagged() {
			t.Errorf("%s flagged under loose thresholds: %v", r.Name, r.Reasons)
		}
	}
	if _, err := Compare(train, served, Thresholds{PSI: math.NaN()}); err == nil || !strings.Contains(err.Error(), "NaN") {
		t.Errorf("Compare with a NaN threshold: %v", err)
	}
}

func TestCompareConstantTrainingFeature(t *testing.T) {
	cols := []Column{{Name: "c"}}
	train := profileOf(t, cols, map[string][]float64{"c": make([]float64, 100)})
	same := profileOf(t, cols, map[string][]float64{"c": make([]float64, 100)})
	rows, err := Compare(train, same, Thresholds{})
	if err != nil {
		t.Fatal(err)
	}
	if rows[0].Flagged() {
		t.Errorf("constant feature served unchanged is flagged: %+v", rows[0])
	}
	moved := profileOf(t, cols, map[string][]float64{"c": slices.Repeat([]float64{1}, 100)})
	rows, err = Compare(train, moved, Thresholds{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(rows[0].Reasons, ReasonMeanShift) {
		t.Errorf("constant feature served as 1 is not flagged for mean shift: %+v", rows[0])
	}
	if _, err := json.Marshal(rows); err != nil {
		t.Errorf("a constant feature's row does not encode as JSON: %v", err)
	}
}
