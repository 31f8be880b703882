package bench

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

func TestVersionWatchSwitched(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	w := NewVersionWatch(3)
	answer := func(i, at int, version string) {
		w.Record(i, Answer{Sent: ms(at - 5), Received: ms(at), Version: version})
	}
	// Instance 0 serves a half canary of v2 before the change and v1 until
	// 300 ms after it, then v2 only.
	for _, at := range []int{-100, -50, 20, 150, 300} {
		answer(0, at, "v1")
	}
	for _, at := range []int{-80, 100, 320, 400, 500} {
		answer(0, at, "v2")
	}
	// Instance 1 serves v2 from its first answer after the change; a
	// failed call counts as neither version.
	answer(1, -10, "v1")
	w.Record(1, Answer{Received: ms(40), Failed: true, Code: "Unavailable"})
	answer(1, 60, "v2")
	answer(1, 90, "v2")
	// Instance 2 never switches.
	answer(2, 50, "v1")

	ss := w.Switched("v2", t0)
	if ss[0].Ms != 320 || ss[0].After != 3 {
		t.Errorf("instance 0: %+v, want 320 ms with 3 answers after", ss[0])
	}
	if ss[1].Ms != 60 || ss[1].After != 2 {
		t.Errorf("instance 1: %+v, want 60 ms with 2 answers after", ss[1])
	}
	if ss[2].Ms != -1 || !ss[2].At.IsZero() {
		t.Errorf("instance 2: %+v, want never", ss[2])
	}
	if worst, per := SlowestSwitch(ss); worst != -1 || len(per) != 3 || per[0] != 320 {
		t.Errorf("SlowestSwitch = %v %v, want -1 (instance 2 never switched)", worst, per)
	}
	if worst, _ := SlowestSwitch(ss[:2]); worst != 320 {
		t.Errorf("SlowestSwitch of the first two = %v, want 320", worst)
	}
	if n, codes := w.Failures(t0, ms(100)); n != 1 || codes["Unavailable"] != 1 {
		t.Errorf("Failures = %d %v, want 1 Unavailable", n, codes)
	}
	if n, _ := w.Failures(ms(41), ms(1000)); n != 0 {
		t.Errorf("Failures after the failure = %d", n)
	}
	if calls, failed := w.Totals(); calls != 15 || failed != 1 {
		t.Errorf("Totals = %d, %d; want 15, 1", calls, failed)
	}
	if w.Settled("v2", t0, 0, 1) {
		t.Error("Settled with an instance that never switched")
	}
	if !watchSwitchedTo(t, "v2", t0).Settled("v2", t0, 0, 1) {
		t.Error("not Settled when every instance switched")
	}
}

// watchSwitchedTo returns a watch of one instance that answered with
// version once after since.
func watchSwitchedTo(t *testing.T, version string, since time.Time) *VersionWatch {
	t.Helper()
	w := NewVersionWatch(1)
	w.Record(0, Answer{Received: since.Add(time.Millisecond), Version: version})
	return w
}

type fakeRecommend struct {
	adaptrecv1.RecommendServiceClient
	version string
	err     error
}

func (f fakeRecommend) Recommend(context.Context, *adaptrecv1.RecommendRequest, ...grpc.CallOption) (*adaptrecv1.RecommendResponse, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &adaptrecv1.RecommendResponse{ModelVersion: f.version, ExperimentArm: "production"}, nil
}

func TestVersionWatchClient(t *testing.T) {
	w := NewVersionWatch(2)
	ok := w.Client(0, fakeRecommend{version: "v1"})
	bad := w.Client(1, fakeRecommend{err: status.Error(codes.Unavailable, "down")})
	if _, err := ok.Recommend(t.Context(), &adaptrecv1.RecommendRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := bad.Recommend(t.Context(), &adaptrecv1.RecommendRequest{}); err == nil {
		t.Fatal("the failing client did not fail")
	}
	// A call the caller gave up on is the load stopping, not a failure.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	stopped := w.Client(1, fakeRecommend{err: status.FromContextError(context.Canceled).Err()})
	if _, err := stopped.Recommend(ctx, &adaptrecv1.RecommendRequest{}); err == nil {
		t.Fatal("the stopped call did not fail")
	}
	calls, failed := w.Totals()
	if calls != 2 || failed != 1 {
		t.Errorf("Totals = %d, %d; want 2 calls, 1 failed", calls, failed)
	}
	if ss := w.Switched("v1", time.Time{}); ss[0].Ms < 0 || ss[1].Ms != -1 {
		t.Errorf("Switched = %+v", ss)
	}
}

func TestPipelineResultEvaluate(t *testing.T) {
	good := func() PipelineResult {
		return PipelineResult{Bench: "pipeline", Events: 1_000_000, TotalSeconds: 180, Stages: map[string]float64{"train": 60},
			Outcome: "Succeeded", CutoverMs: 350, RollbackMs: 420, Instances: 2}
	}
	r := good()
	r.Evaluate()
	if !r.MeetsTarget || len(r.Missed) != 0 || r.TargetTotalSeconds != 300 || r.TargetCutoverMs != 2000 || r.TargetRollbackMs != 2000 {
		t.Fatalf("a run within every goal: %+v", r)
	}
	for name, tc := range map[string]func(*PipelineResult){
		"slow run":             func(r *PipelineResult) { r.TotalSeconds = 301 },
		"slow cutover":         func(r *PipelineResult) { r.CutoverMs = 2001 },
		"no cutover":           func(r *PipelineResult) { r.CutoverMs = -1 },
		"slow rollback":        func(r *PipelineResult) { r.RollbackMs = 2500 },
		"failed in cutover":    func(r *PipelineResult) { r.FailedRequestsCutover = 1 },
		"failed in rollback":   func(r *PipelineResult) { r.FailedRequestsRollback = 2 },
		"failed run":           func(r *PipelineResult) { r.Outcome = "CanaryGuardrailBreached" },
		"one instance":         func(r *PipelineResult) { r.Instances = 1 },
		"nothing was measured": func(r *PipelineResult) { r.TotalSeconds = 0 },
	} {
		r := good()
		tc(&r)
		r.Evaluate()
		if r.MeetsTarget || len(r.Missed) != 1 {
			t.Errorf("%s: meets_target %v, missed %q; want one miss", name, r.MeetsTarget, r.Missed)
		}
	}
}

func TestPipelineResultJSON(t *testing.T) {
	r := PipelineResult{Bench: "pipeline", Events: 1_000_000, TotalSeconds: 200, Stages: map[string]float64{"validate": 1.5, "canary": 40},
		Outcome: "Succeeded", PreviousVersion: "v1", NewVersion: "v2", RolledBackTo: "v1", CutoverMs: 300, RollbackMs: 400,
		CutoverMsByInstance: []float64{250, 300}, RollbackMsByInstance: []float64{400, 380}, Instances: 2, Mode: "self-contained"}
	r.Evaluate()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"bench", "events", "total_seconds", "stages", "cutover_ms", "rollback_ms",
		"rollback_workflow_ms", "failed_requests_cutover", "failed_requests_rollback", "failed_requests", "requests", "previous_version",
		"new_version", "rolled_back_to", "instances", "setup_seconds", "target_total_seconds", "target_cutover_ms",
		"target_rollback_ms", "meets_target", "outcome", "mode"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON has no %q: %s", k, b)
		}
	}
	if st, ok := m["stages"].(map[string]any); !ok || st["canary"] != 40.0 {
		t.Errorf("stages = %v", m["stages"])
	}
	if m["meets_target"] != true {
		t.Errorf("meets_target = %v", m["meets_target"])
	}
}
