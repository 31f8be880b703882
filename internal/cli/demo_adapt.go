package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"go.temporal.io/sdk/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/adaptrec/adaptrec/consumers/feedback"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/sim"
	"github.com/adaptrec/adaptrec/workflows"
)

// The demo's shift of taste: most users move most of the way to tastes
// they did not have, so the first model's picks miss them.
const (
	demoShiftShare    = 0.8
	demoShiftStrength = 1.0
)

// demoFirstModelAge is how long before the end of the history the first
// model's training window ends when the adaptive loop runs: the retrain
// trains on the newest two days, and its offline gate scores both models
// on the newest rows, which the first model must not have seen.
const demoFirstModelAge = 24 * time.Hour

// adaptReport is what the demo's adaptive loop did.
type adaptReport struct {
	// ShiftAt is when the users' tastes shifted, Shifted the share of
	// users whose tastes did.
	ShiftAt time.Time
	Shifted float64
	// Reason is why the retrain was started; RunID and RunURL name it.
	Reason, RunID, RunURL string
	Result                workflows.RetrainResult
	// RunErr is the run's failure, nil when it promoted its version.
	RunErr error
	// Drift is the live users after the shift, before the retrain;
	// During while it ran (shadow, canary, cutover); After once it ended.
	Drift, During, After *sim.LiveReport
	// Feedback is the feedback loop's accuracy per version and arm from
	// the shift to the end, as the canary's guardrails read it.
	Feedback []feedback.ArmAccuracy
	Seconds  float64
}

// demoAdapt runs the adaptive loop on the demo's world after the first
// model served its live users: the users' tastes shift, the live users
// keep coming, a retrain is started for the drift, followed stage by stage
// through shadow and canary to production, and the live users then meet
// the new model.
func demoAdapt(ctx context.Context, stderr io.Writer, tc client.Client, cfg config.Config, world *sim.World,
	before *sim.LiveReport, production string, o demoOptions) (*adaptReport, error) {
	say := func(format string, args ...any) { fmt.Fprintf(stderr, "==> "+format+"\n", args...) }
	begin := time.Now()
	rep := &adaptReport{ShiftAt: time.Now().Add(time.Second).UTC().Truncate(time.Second)}
	if err := world.ShiftTastes(sim.Shift{At: rep.ShiftAt, Share: demoShiftShare, Strength: demoShiftStrength}); err != nil {
		return nil, err
	}
	rep.Shifted = world.Users.ShiftedShare()
	conn, err := grpc.NewClient(cfg.Server.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", cfg.Server.GRPCAddr, err)
	}
	defer conn.Close()
	rc := adaptrecv1.NewRecommendServiceClient(conn)
	liveCfg := func(d time.Duration) sim.LiveConfig {
		return sim.LiveConfig{Users: o.liveUsrs, Duration: d, ThinkTime: 50 * time.Millisecond}
	}

	// 1. Drift: the same users, new tastes, the first model still serving.
	say("users drift: %.0f%% of the users' tastes shift at %s (strength %.1f); live users keep calling for %s",
		100*rep.Shifted, rep.ShiftAt.Format(time.TimeOnly), demoShiftStrength, o.drift)
	rep.Drift, err = sim.RunLive(ctx, world, rc, liveCfg(o.drift))
	if err != nil {
		return nil, fmt.Errorf("live users after the shift: %w", err)
	}
	rep.Reason = driftReason(production, before, rep.Drift, rep.ShiftAt, rep.Shifted)
	say("retrain triggered: %s", rep.Reason)

	// 2. The retrain, with the live users still coming: they are the
	// shadow's mirrored traffic and the canary's users.
	liveCtx, stopLive := context.WithCancel(ctx)
	defer stopLive()
	type liveOut struct {
		rep *sim.LiveReport
		err error
	}
	during := make(chan liveOut, 1)
	go func() {
		r, err := sim.RunLive(liveCtx, world, rc, liveCfg(0))
		during <- liveOut{r, err}
	}()
	rep.RunID = workflows.RetrainID(cfg.Pipeline.Model, workflows.TriggerDrift, time.Now())
	settings := loopPipeline(cfg.Pipeline)
	say("settings shortened for the demo:")
	for _, kv := range loopSettings(settings) {
		fmt.Fprintf(stderr, "    %s = %s\n", kv[0], kv[1])
	}
	run, link, err := startRetrain(ctx, tc, cfg, settings, rep.RunID, "adaptrec demo", rep.Reason)
	if err != nil {
		stopLive()
		<-during
		return nil, err
	}
	rep.RunURL = link
	say("RetrainWorkflow started: validate, training set, train, evaluate, register, shadow, canary, cutover, watch\n    follow it in the Temporal UI: %s", link)
	rep.Result, rep.RunErr = retrainFollow(ctx, stderr, "    ", tc, run, 2*time.Second)
	stopLive()
	d := <-during
	if d.err != nil && !errors.Is(d.err, context.Canceled) {
		return nil, fmt.Errorf("live users during the retrain: %w", d.err)
	}
	rep.During = d.rep
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if rep.RunErr != nil {
		say("WARNING: the retrain did not promote: %s: %s", rep.Result.Outcome, rep.Result.Reason)
	}

	// 3. After: the live users meet what production is now.
	if o.live > 0 {
		say("live users call RecommendService for %s on production %s", o.live, orNoneStr(rep.Result.Production))
		rep.After, err = sim.RunLive(ctx, world, rc, liveCfg(o.live))
		if err != nil {
			return nil, fmt.Errorf("live users after the retrain: %w", err)
		}
	}
	// The feedback loop's view: windows are emitted a window and the
	// emit delay after they end.
	time.Sleep(loopFeedbackWindow + loopFeedbackEmitDelay + time.Second)
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if arms, err := feedback.ReadAccuracy(rctx, cfg.Kafka, rep.ShiftAt, time.Now()); err == nil {
		rep.Feedback = arms
	} else {
		say("WARNING: the feedback loop's accuracy could not be read: %v", err)
	}
	rep.Seconds = time.Since(begin).Seconds()
	return rep, nil
}

func orNoneStr(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// writeAdapt prints the adaptive loop's summary.
func writeAdapt(w io.Writer, before *sim.LiveReport, first string, rep *adaptReport) {
	res := rep.Result
	fmt.Fprintf(w, "adaptive loop: users drift, a retrain is triggered, the new model goes through shadow and canary (%.0f s)\n", rep.Seconds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  drift\t%.0f%% of the users' tastes shifted at %s\n", 100*rep.Shifted, rep.ShiftAt.Format(time.RFC3339))
	fmt.Fprintf(tw, "  retrain reason\t%s\n", rep.Reason)
	fmt.Fprintf(tw, "  retrain run\t%s\n", rep.RunURL)
	fmt.Fprintf(tw, "  outcome\t%s", res.Outcome)
	if res.Reason != "" {
		fmt.Fprintf(tw, ": %s", res.Reason)
	}
	fmt.Fprintln(tw)
	fmt.Fprintf(tw, "  versions\t%s (before) -> %s (candidate); production is now %s\n", first, orNoneStr(res.Version), orNoneStr(res.Production))
	if e := res.Evaluation; e.Production != nil {
		fmt.Fprintf(tw, "  offline gate\tposition-debiased AUC %.4f vs production %.4f, NDCG@%d %.4f vs %.4f on %d holdout rows\n",
			e.Candidate.AUC, e.Production.AUC, e.K, e.Candidate.NDCG, e.Production.NDCG, e.Rows)
		fmt.Fprintf(tw, "  \tas logged (production ranked these pages, users click the top more): AUC %.4f vs %.4f, NDCG@%d %.4f vs %.4f\n",
			e.Candidate.LoggedAUC, e.Production.LoggedAUC, e.K, e.Candidate.LoggedNDCG, e.Production.LoggedNDCG)
	}
	if s := res.Shadow; s != nil {
		fmt.Fprintf(tw, "  shadow\t%d mirrored requests, score correlation %.3f, top-K overlap %.2f, p99 %.1f ms, error rate %.4f\n",
			s.Requests, s.ScoreCorrelation, s.TopKOverlap, s.LatencyP99Ms, s.ErrorRate)
	}
	for i, c := range res.Canary {
		fmt.Fprintf(tw, "  canary step %d\t%.0f%% of traffic for %.0f s: canary CTR %s (%d requests, p99 %.1f ms), production CTR %s (%d requests, p99 %.1f ms)\n",
			i+1, 100*c.Weight, c.Seconds, simPct(c.Report.Canary.CTR), c.Report.Canary.Requests, c.Report.Canary.LatencyP99Ms,
			simPct(c.Report.Production.CTR), c.Report.Production.Requests, c.Report.Production.LatencyP99Ms)
	}
	for _, n := range res.Notes {
		fmt.Fprintf(tw, "  note\t%s\n", n)
	}
	tw.Flush()
	fmt.Fprintln(w, "\n  stage timings:")
	writeTimings(w, res)

	fmt.Fprintln(w, "\n  CTR per model version and arm, from the live users (expected CTR: the simulator's click probability, without sampling noise):")
	phases := []string{"before drift", "after drift", "during retrain", "after retrain"}
	var rows []ctrRow
	rows = append(rows, liveRows(phases[0], before)...)
	rows = append(rows, liveRows(phases[1], rep.Drift)...)
	rows = append(rows, liveRows(phases[2], rep.During)...)
	rows = append(rows, liveRows(phases[3], rep.After)...)
	sortRows(rows, phases)
	writeCTR(w, rows)
	if len(rep.Feedback) > 0 {
		fmt.Fprintln(w, "\n  CTR per model version and arm since the drift, from the feedback loop (what the canary's guardrails read):")
		writeCTR(w, feedbackRows("since drift", rep.Feedback))
	}
	_, _, b := versionCTR(before, first)
	_, _, d := versionCTR(rep.Drift, first)
	n, _, a := versionCTR(rep.After, res.Production)
	if n > 0 && res.Production != first {
		fmt.Fprintf(w, "\n  %s: CTR %s before the drift, %s after it; %s after the retrain: %s\n", first, simPct(b), simPct(d), res.Production, simPct(a))
	}
}
