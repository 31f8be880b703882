package feedback

import (
	"math"
	"strings"
	"testing"
	"time"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

// scoredPrediction is a prediction whose items carry the given scores, in
// the order given (positions 0..).
func scoredPrediction(req, version string, shadow bool, latency float64, items ...any) *adaptrecv1.PredictionEvent {
	p := &adaptrecv1.PredictionEvent{RequestId: req, UserId: "u", ModelVersion: version, Shadow: shadow, LatencyMs: latency, DegradationLevel: full}
	for i := 0; i < len(items); i += 2 {
		p.Items = append(p.Items, &adaptrecv1.ServedItem{ItemId: items[i].(string), Score: float32(items[i+1].(float64)), Position: int32(i / 2)})
	}
	return p
}

// pearson is the textbook two-pass correlation, to check the streaming one.
func pearson(xs, ys []float64) float64 {
	var mx, my float64
	for i := range xs {
		mx += xs[i]
		my += ys[i]
	}
	mx /= float64(len(xs))
	my /= float64(len(ys))
	var sxy, sxx, syy float64
	for i := range xs {
		sxy += (xs[i] - mx) * (ys[i] - my)
		sxx += (xs[i] - mx) * (xs[i] - mx)
		syy += (ys[i] - my) * (ys[i] - my)
	}
	return sxy / math.Sqrt(sxx*syy)
}

func f32(x float64) float64 { return float64(float32(x)) }

func TestShadowPairing(t *testing.T) {
	t.Parallel()
	from, to := t0, t0.Add(time.Hour)
	at := t0.Add(time.Minute)
	predsA := []*adaptrecv1.PredictionEvent{
		scoredPrediction("A", "v1", false, 3, "a", 0.9, "b", 0.8, "c", 0.7, "d", 0.6),
		scoredPrediction("A", "v2", true, 5, "b", 0.95, "a", 0.85, "c", 0.5, "e", 0.4),
	}
	predsB := []*adaptrecv1.PredictionEvent{
		// The shadow one first: pairing works either way.
		scoredPrediction("B", "v2", true, 10, "x", 0.35, "y", 0.1),
		scoredPrediction("B", "v1", false, 4, "x", 0.3, "y", 0.2),
		scoredPrediction("C", "v2", true, 100, "x", 0.3),  // no served prediction
		scoredPrediction("D", "v3", true, 7, "x", 0.3),    // another shadow version
		scoredPrediction("B", "v2", true, 1000, "x", 0.1), // a duplicate
	}
	late := scoredPrediction("E", "v2", true, 1, "x", 0.3) // outside [from, to)

	check := func(t *testing.T, p *pairing) {
		t.Helper()
		var rep ShadowReport
		p.report(&rep)
		want := pearson([]float64{f32(0.9), f32(0.8), f32(0.7), f32(0.3), f32(0.2)}, []float64{f32(0.85), f32(0.95), f32(0.5), f32(0.35), f32(0.1)})
		if math.Abs(rep.ScoreCorrelation-want) > 1e-9 {
			t.Errorf("ScoreCorrelation %v, want %v", rep.ScoreCorrelation, want)
		}
		// A: served a,b,c ranked b,a,c by the shadow: 1 - 6*2/(3*8) = 0.5; B: 1.
		if math.Abs(rep.RankCorrelation-0.75) > 1e-12 || math.Abs(rep.TopKOverlap-(0.75+1)/2) > 1e-12 {
			t.Errorf("RankCorrelation %v, TopKOverlap %v; want 0.75, 0.875", rep.RankCorrelation, rep.TopKOverlap)
		}
		if rep.Requests != 3 || rep.Matched != 2 || strings.Join(rep.ProductionVersions, ",") != "v1" {
			t.Errorf("Requests %d, Matched %d, ProductionVersions %v; want 3, 2, [v1]", rep.Requests, rep.Matched, rep.ProductionVersions)
		}
		if rep.LatencyP50Ms != 10 || rep.LatencyP99Ms != 100 || rep.ErrorRate != 0 || len(rep.Notes) != 0 {
			t.Errorf("latency p50 %v p99 %v, error rate %v, notes %q; want 10, 100, 0, none", rep.LatencyP50Ms, rep.LatencyP99Ms, rep.ErrorRate, rep.Notes)
		}
	}
	t.Run("one partition", func(t *testing.T) {
		p := newPairing("v2", from, to)
		for _, pr := range append(predsA, predsB...) {
			p.add(at, at, pr)
		}
		p.add(at, to, late)
		check(t, p)
	})
	t.Run("merged partitions", func(t *testing.T) {
		a, b := newPairing("v2", from, to), newPairing("v2", from, to)
		for _, pr := range predsA {
			a.add(at, at, pr)
		}
		for _, pr := range predsB {
			b.add(at, at, pr)
		}
		total := newPairing("v2", from, to)
		total.merge(a)
		total.merge(b)
		check(t, total)
	})
	t.Run("counterpart too late", func(t *testing.T) {
		p := newPairing("v2", from, to)
		p.add(at, at, predsA[0])
		p.add(at.Add(pairGrace+time.Second), at, predsA[1])
		var rep ShadowReport
		p.report(&rep)
		if rep.Requests != 1 || rep.Matched != 0 || rep.ScoreCorrelation != 0 || len(rep.Notes) != 4 {
			t.Errorf("report %+v: want 1 request, none matched, 4 notes", rep)
		}
	})
	t.Run("failed shadows", func(t *testing.T) {
		// Serving publishes a mirror the shadow could not score without
		// items at an error level; an empty list alone is a failure too.
		p := newPairing("v2", from, to)
		for _, pr := range predsA {
			p.add(at, at, pr)
		}
		p.add(at, at, scoredPrediction("B", "v1", false, 4, "x", 0.3, "y", 0.2))
		failed := scoredPrediction("B", "v2", true, 1000)
		failed.DegradationLevel = adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_SIMPLE_RANKING
		p.add(at, at, failed)
		p.add(at, at, scoredPrediction("C", "v2", true, 20))
		var rep ShadowReport
		p.report(&rep)
		if rep.Requests != 3 || rep.Matched != 1 || math.Abs(rep.ErrorRate-2.0/3) > 1e-12 || rep.LatencyP99Ms != 1000 {
			t.Errorf("report %+v: want 3 requests, 1 matched, error rate 2/3, p99 1000", rep)
		}
	})
	t.Run("constant scores", func(t *testing.T) {
		p := newPairing("v2", from, to)
		p.add(at, at, scoredPrediction("A", "v1", false, 3, "a", 0.5, "b", 0.5))
		p.add(at, at, scoredPrediction("A", "v2", true, 3, "a", 0.9, "b", 0.1))
		var rep ShadowReport
		p.report(&rep)
		if rep.ScoreCorrelation != 0 || math.IsNaN(rep.ScoreCorrelation) || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "all equal") {
			t.Errorf("ScoreCorrelation %v, notes %q: want 0 with a note", rep.ScoreCorrelation, rep.Notes)
		}
	})
}
