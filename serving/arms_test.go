package serving

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/consumers/feedback"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/serving/catalog"
	"github.com/adaptrec/adaptrec/serving/rerank"
)

// brokenModel is a loaded version that cannot assemble its rows (it has no
// assembler): every pipeline run on it panics in the feature stage.
func brokenModel(version string) *binding { return &binding{m: &Model{Version: version}} }

// testCatalog is a catalogue of n items of one category, by popularity.
func testCatalog(t *testing.T, n int) *catalog.Catalog {
	t.Helper()
	ids := make([]string, n)
	cols := catalog.Columns{Category: make([]int32, n), Creator: make([]int32, n), AgeHours: make([]float32, n),
		Flagged: make([]bool, n), Promoted: make([]bool, n), Popularity: make([]float32, n), Trending: make([]float32, n)}
	for i := range ids {
		ids[i] = "item" + string(rune('a'+i))
		cols.Popularity[i] = float32(n - i)
	}
	cat, err := catalog.New(ids, cols, testNow)
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// pipelineWithView returns a pipeline serving v (no store, no model
// manager: nothing past the view is reached by these tests).
func pipelineWithView(t *testing.T, v *view) *Pipeline {
	t.Helper()
	p, err := NewPipeline(nil, nil, PipelineConfig{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	v.set = &ModelSet{}
	p.views.cur.Store(v)
	return p
}

// TestFallbackKeepsTheRoutedArm: a request routed to a version whose
// pipeline run fails is answered by a fallback, and its PredictionEvent
// names the routed version and arm at the fallback's level, an error to the
// feedback loop, so a failing canary breaks its own guardrails.
func TestFallbackKeepsTheRoutedArm(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tt := range []struct {
		name                 string
		view                 *view
		wantVersion, wantArm string
		wantLevel            adaptrecv1.DegradationLevel
	}{
		{"canary fails", &view{cat: testCatalog(t, 5), prod: brokenModel("p"), canary: brokenModel("c"), canaryWeight: 1},
			"c", ArmCanary, adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_POPULARITY},
		{"production fails", &view{cat: testCatalog(t, 5), prod: brokenModel("p"), canary: brokenModel("c"), canaryWeight: 0},
			"p", ArmProduction, adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_POPULARITY},
		// Routed, but no catalogue yet: the model could not serve; the
		// ingested interactions' popularity answers.
		{"canary before the catalogue", &view{prod: brokenModel("p"), canary: brokenModel("c"), canaryWeight: 1},
			"c", ArmCanary, adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_POPULARITY},
		// Nothing to route to: popularity under its own name, no arm.
		{"no model", &view{cat: testCatalog(t, 5)},
			PopularityModel, "", adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_POPULARITY},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			async := NewAsyncPublisher(&recorder{}, log, 16, 16, time.Second)
			svc := NewService(log, &recorder{}, async, Options{Now: func() time.Time { return testNow }, Pipeline: pipelineWithView(t, tt.view)})
			if _, err := svc.Ingest(t.Context(), &adaptrecv1.IngestRequest{Events: []*adaptrecv1.Event{interaction("e1", "u0", "x1", adaptrecv1.Action_ACTION_CLICK)}}); err != nil {
				t.Fatal(err)
			}
			svc.popularity.Refresh()
			resp, err := svc.Recommend(t.Context(), &adaptrecv1.RecommendRequest{UserId: "user-1", NumItems: 3})
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetDegradationLevel() != tt.wantLevel || resp.GetModelVersion() != PopularityModel || resp.GetExperimentArm() != tt.wantArm || len(resp.GetItems()) == 0 {
				t.Fatalf("response %s %s arm %q with %d items, want %s %s arm %q", resp.GetDegradationLevel(), resp.GetModelVersion(),
					resp.GetExperimentArm(), len(resp.GetItems()), tt.wantLevel, PopularityModel, tt.wantArm)
			}
			var pred *adaptrecv1.PredictionEvent
			select {
			case e := <-async.ch:
				pred = e.GetPrediction()
			default:
				t.Fatal("no PredictionEvent was published")
			}
			if pred.GetModelVersion() != tt.wantVersion || pred.GetExperimentArm() != tt.wantArm || pred.GetDegradationLevel() != tt.wantLevel ||
				!feedback.IsError(pred.GetDegradationLevel()) || len(pred.GetItems()) != len(resp.GetItems()) {
				t.Errorf("prediction %s arm %q at %s with %d items (error to the feedback loop: %v), want %s arm %q at %s with %d",
					pred.GetModelVersion(), pred.GetExperimentArm(), pred.GetDegradationLevel(), len(pred.GetItems()),
					feedback.IsError(pred.GetDegradationLevel()), tt.wantVersion, tt.wantArm, tt.wantLevel, len(resp.GetItems()))
			}
		})
	}
}

// TestRoutedErrorUnwraps: the routing wrapper keeps the pipeline's reason
// visible to the fallback metrics and to batch predictions.
func TestRoutedErrorUnwraps(t *testing.T) {
	t.Parallel()
	p := pipelineWithView(t, &view{prod: brokenModel("p")})
	_, err := p.safeRun(context.Background(), &adaptrecv1.RecommendRequest{UserId: "u"}, 3, testNow)
	if v, arm := routedTo(err); v != "p" || arm != ArmProduction || reasonOf(err) != "no_model" {
		t.Errorf("safeRun error %v: routed to %q %q, reason %s; want p, production, no_model", err, v, arm, reasonOf(err))
	}
	p = pipelineWithView(t, &view{})
	if _, err := p.safeRun(context.Background(), &adaptrecv1.RecommendRequest{UserId: "u"}, 3, testNow); reasonOf(err) != "no_model" {
		t.Errorf("no model: %v", err)
	} else if v, _ := routedTo(err); v != "" {
		t.Errorf("no model: routed to %q", v)
	}
}

// TestShadowFailureIsPublished: a mirror the shadow model fails to score
// (here it panics: the model cannot assemble rows) is published as a
// shadow PredictionEvent of the shadow version without items at
// ShadowFailedLevel, which the shadow report counts as an error, and the
// worker goes on.
func TestShadowFailureIsPublished(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := pipelineWithView(t, &view{cat: testCatalog(t, 5), prod: brokenModel("p"), shadow: brokenModel("s")})
	async := NewAsyncPublisher(&recorder{}, log, 16, 16, time.Second)
	sc := NewShadowScorer(p, async, "test", log, 4)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); sc.Run(ctx) }()
	defer func() { cancel(); <-done }()
	req := &adaptrecv1.RecommendRequest{UserId: "u1", Surface: "home"}
	for i, id := range []string{"r1", "r2"} {
		sc.offer(req, id, &outcome{candidateIDs: []string{"itema", "itemb"}, items: make([]rerank.Ranked, 2)}, testNow)
		var e *adaptrecv1.Event
		select {
		case e = <-async.ch:
		case <-time.After(30 * time.Second):
			t.Fatalf("mirror %d: no shadow PredictionEvent published", i)
		}
		pred := e.GetPrediction()
		if !pred.GetShadow() || pred.GetModelVersion() != "s" || pred.GetRequestId() != id || pred.GetExperimentArm() != ArmShadow ||
			len(pred.GetItems()) != 0 || pred.GetDegradationLevel() != ShadowFailedLevel || !feedback.IsError(pred.GetDegradationLevel()) {
			t.Errorf("mirror %d: prediction %+v, want a failed shadow prediction of s for %s", i, pred, id)
		}
	}
}
