package serving

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/online"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

var shadowTotal = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "adaptrec_serving_shadow_total",
	Help: "Mirrored requests by outcome: scored, dropped (queue full), failed.",
}, []string{"outcome"})

var shadowSeconds = promauto.NewHistogram(prometheus.HistogramOpts{
	Name:    "adaptrec_serving_shadow_seconds",
	Help:    "Time to score one mirrored request with the shadow model (features and ranking).",
	Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1},
})

// ShadowScorer scores mirrored requests with the shadow model, off the
// request path: the served request hands over its candidates and returns;
// a bounded queue and one worker score them later, and a full queue drops
// the mirror (counted), never the request. Each mirror is published as a
// PredictionEvent with shadow set, under the served request's id, so the
// shadow report can pair it with what production served. A mirror the
// shadow model failed to score (an error, a panic, or past ShadowTimeout)
// is published too, without items and at ShadowFailedLevel, so the shadow
// report's error rate counts the shadow version's failures.
type ShadowScorer struct {
	p        *Pipeline
	async    *AsyncPublisher
	producer string
	log      *slog.Logger
	ch       chan shadowJob
	// Buffers of the one worker, reused from mirror to mirror.
	rows, scores []float32
	order        []int
}

// ShadowTimeout bounds the scoring of one mirrored request.
const ShadowTimeout = time.Second

// ShadowFailedLevel is the degradation level of a shadow PredictionEvent
// whose scoring failed or timed out: no items, at the first level that
// feedback.IsError counts (no shadow model ranked the request).
const ShadowFailedLevel = adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_SIMPLE_RANKING

type shadowJob struct {
	req        *adaptrecv1.RecommendRequest
	requestID  string
	candidates []string
	n          int
	at         time.Time
}

// NewShadowScorer returns a scorer with a queue of capacity mirrors.
func NewShadowScorer(p *Pipeline, async *AsyncPublisher, producer string, log *slog.Logger, capacity int) *ShadowScorer {
	return &ShadowScorer{p: p, async: async, producer: producer, log: log, ch: make(chan shadowJob, capacity)}
}

func (s *ShadowScorer) offer(req *adaptrecv1.RecommendRequest, requestID string, out *outcome, at time.Time) {
	if s.p.views.cur.Load().shadow == nil {
		return
	}
	select {
	case s.ch <- shadowJob{req: req, requestID: requestID, candidates: out.candidateIDs, n: len(out.items), at: at}:
	default:
		shadowTotal.WithLabelValues("dropped").Inc()
	}
}

// Run scores mirrors until ctx ends.
func (s *ShadowScorer) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-s.ch:
			s.score(ctx, j)
		}
	}
}

// score scores one mirror with the current shadow model and publishes the
// shadow PredictionEvent: the ranked items, or none at ShadowFailedLevel
// when scoring failed.
func (s *ShadowScorer) score(ctx context.Context, j shadowJob) {
	start := time.Now()
	b := s.p.views.cur.Load().shadow
	if b == nil {
		return
	}
	pred := &adaptrecv1.PredictionEvent{
		RequestId: j.requestID, UserId: j.req.GetUserId(), ModelVersion: b.m.Version,
		ExperimentArm: ArmShadow, Surface: j.req.GetSurface(), Shadow: true,
		FeatureSchemaHash: b.m.Manifest.SchemaHash,
		SessionId:         j.req.GetContext().GetSessionId(), Device: j.req.GetContext().GetDevice(),
		DegradationLevel: adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_FULL,
	}
	err := s.rank(ctx, j, b, pred)
	if err == nil && time.Since(start) > ShadowTimeout {
		err = fmt.Errorf("scored in %s, more than %s", time.Since(start).Round(time.Millisecond), ShadowTimeout)
	}
	d := time.Since(start)
	pred.LatencyMs = float64(d.Microseconds()) / 1000
	if err != nil {
		if ctx.Err() != nil {
			return // stopping: not the shadow model's failure
		}
		pred.Items, pred.DegradationLevel = nil, ShadowFailedLevel
		shadowTotal.WithLabelValues("failed").Inc()
		s.log.Debug("shadow: scoring a mirrored request failed", "version", b.m.Version, "err", err)
	} else {
		shadowSeconds.Observe(d.Seconds())
		shadowTotal.WithLabelValues("scored").Inc()
	}
	if s.async != nil {
		s.async.Offer(events.NewPrediction(events.NewID(), j.at, s.producer, pred))
	}
}

// rank fills pred.Items with the shadow model's ranking of the mirror's
// candidates. A panic is an error: a broken shadow model must not stop
// the serving process.
func (s *ShadowScorer) rank(ctx context.Context, j shadowJob, b *binding, pred *adaptrecv1.PredictionEvent) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("shadow scoring panicked: %v", r)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, ShadowTimeout)
	defer cancel()
	rctx := features.RequestFromRecommend(j.req, j.at, features.UserState{})
	se, err := b.m.asm.Begin(ctx, j.req.GetUserId(), online.Request{Context: rctx, Now: j.at}, nil, online.BeginOptions{})
	if err != nil {
		return err
	}
	defer se.Close()
	k, w := len(j.candidates), b.m.layout.Width()
	s.rows = slices.Grow(s.rows[:0], k*w)[:k*w]
	if err := se.Assemble(j.candidates, s.rows); err != nil {
		return err
	}
	s.scores = slices.Grow(s.scores[:0], k)[:k]
	scores := s.scores
	if err := b.m.scorer.ScoreInto(scores, s.rows, k); err != nil {
		return err
	}
	s.order = slices.Grow(s.order[:0], k)[:k]
	order := s.order
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, c int) int {
		if r := cmp.Compare(scores[c], scores[a]); r != 0 {
			return r
		}
		return cmp.Compare(a, c)
	})
	n := min(j.n, k)
	for pos, i := range order[:n] {
		pred.Items = append(pred.Items, &adaptrecv1.ServedItem{ItemId: j.candidates[i], Score: scores[i], Position: int32(pos)})
	}
	return nil
}
