package serving

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/online"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/breaker"
	"github.com/adaptrec/adaptrec/serving/catalog"
	"github.com/adaptrec/adaptrec/serving/rerank"
	"github.com/adaptrec/adaptrec/serving/retrieve"
)

var stageSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
	Name:    "adaptrec_serving_stage_seconds",
	Help:    "Time spent in each stage of a Recommend request.",
	Buckets: []float64{.0001, .00025, .0005, .001, .002, .005, .01, .02, .05, .1},
}, []string{"stage"})

var rankerTotal = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "adaptrec_serving_ranker_total",
	Help: "Requests by the ranking level that scored them (onnx, go, retrieval) and why a level was skipped.",
}, []string{"ranker", "reason"})

// Stages of a request, the label of adaptrec_serving_stage_seconds.
var (
	stageUser     = stageSeconds.WithLabelValues("user_features")
	stageRetrieve = stageSeconds.WithLabelValues("retrieval")
	stageItems    = stageSeconds.WithLabelValues("item_features")
	stageRank     = stageSeconds.WithLabelValues("rank")
	stageRerank   = stageSeconds.WithLabelValues("rerank")
)

// PipelineConfig tunes the Recommend pipeline.
type PipelineConfig struct {
	// Candidates is how many retrieved candidates are ranked (default 500).
	Candidates int
	// RankTimeout bounds the ONNX ranker per request; past it the
	// lightweight ranker answers (default 25 ms).
	RankTimeout time.Duration
	// SimpleCandidates is how many of the best retrieved candidates the
	// lightweight ranker (the Go forward pass) scores; the rest keep their
	// retrieval order below them (default 100).
	SimpleCandidates int
	// RecentItems bounds the recent items retrieval reads (default 50).
	RecentItems int
	// Rerank are the re-ranking rules.
	Rerank rerank.Config
	// FreshHours is the age below which an item counts as fresh (default 48).
	FreshHours float32
	// CatalogInterval is how often the catalogue is rebuilt from the item
	// features when they changed (default 30 s); snapshot events rebuild it
	// at once.
	CatalogInterval time.Duration
}

func (c PipelineConfig) withDefaults() PipelineConfig {
	if c.Candidates == 0 {
		c.Candidates = 500
	}
	if c.RankTimeout == 0 {
		c.RankTimeout = 25 * time.Millisecond
	}
	if c.SimpleCandidates == 0 {
		c.SimpleCandidates = 100
	}
	if c.RecentItems == 0 {
		c.RecentItems = 50
	}
	if c.FreshHours == 0 {
		c.FreshHours = 48
	}
	if c.CatalogInterval == 0 {
		c.CatalogInterval = 30 * time.Second
	}
	return c
}

// Pipeline is the model-driven Recommend path: user features, multi-source
// retrieval, item features, the ranking cascade and re-ranking.
type Pipeline struct {
	cfg      PipelineConfig
	log      *slog.Logger
	store    *online.Store
	models   *ModelManager
	views    *viewKeeper
	reranker *rerank.Reranker
	onnx     *breaker.Breaker
	bufs     sync.Pool // *requestBuffers
	// The catalogue-only retrieval sources, shared by every binding.
	category *retrieve.CategoryAffinity
	trending *retrieve.Trending
	fresh    *retrieve.Fresh
}

// requestBuffers is one request's reusable memory.
type requestBuffers struct {
	cands  []retrieve.Candidate
	ids    []string
	rows   []float32
	scores []float32
	items  []rerank.Item
	res    rerank.Result
	recent []int32
	seen   map[int32]struct{}
	vec    []float32
	ivf    []int32
	str    []float32
	fres   online.Result
}

// outcome is what one pipeline run produced.
type outcome struct {
	items   []rerank.Ranked
	sources []uint16
	version string
	arm     string
	level   adaptrecv1.DegradationLevel
	ranker  string
	// Feature values for the PredictionEvent: the user and request columns
	// once, the item and pair columns per returned item.
	userNames, itemNames []string
	userValues           []float32
	itemValues           [][]float32
	schemaHash           string
	candidateIDs         []string
	cat                  *catalog.Catalog
	retriever            *retrieve.Retriever
}

// errNoCandidates: retrieval found nothing to rank.
var errNoCandidates = errors.New("retrieval returned no candidates")

// routedError is a pipeline failure after the request was routed to a
// model version and arm: the fallback that answers instead is recorded
// against them, so the feedback loop counts it as that version's error
// (a canary's guardrails must see the canary fail).
type routedError struct {
	version, arm string
	err          error
}

func (e *routedError) Error() string {
	return fmt.Sprintf("%s (model %s, arm %s)", e.err, e.version, e.arm)
}

func (e *routedError) Unwrap() error { return e.err }

// routedTo returns the version and arm a failed pipeline run had routed
// the request to ("", "" when it failed before routing).
func routedTo(err error) (version, arm string) {
	var re *routedError
	if errors.As(err, &re) {
		return re.version, re.arm
	}
	return "", ""
}

// run executes the pipeline for one request. It returns an error only when
// the pipeline cannot answer at all (no model, nothing retrieved, a broken
// layout); the caller then takes a lower degradation level. It sets *rt to
// the model version and arm the request is routed to before it runs them.
func (p *Pipeline) run(ctx context.Context, req *adaptrecv1.RecommendRequest, n int, now time.Time, rt *routedError) (*outcome, error) {
	v := p.views.cur.Load()
	b, arm := v.route(req.GetUserId())
	if b != nil {
		rt.version, rt.arm = b.m.Version, arm
	}
	if b == nil || v.cat == nil {
		return nil, errNoModel
	}
	buf := p.bufs.Get().(*requestBuffers)
	defer p.bufs.Put(buf)

	// 1. The user's features: one Redis round trip for retrieval and ranking.
	t0 := time.Now()
	rctx := features.RequestFromRecommend(req, now, features.UserState{})
	se, err := b.m.asm.Begin(ctx, req.GetUserId(), online.Request{Context: rctx, Now: now}, &buf.fres, online.BeginOptions{Lists: true})
	if err != nil {
		return nil, err
	}
	defer se.Close()
	t1 := time.Now()
	stageUser.Observe(t1.Sub(t0).Seconds())

	// 2. Retrieval.
	q := p.query(v, b, req, se, buf)
	buf.cands, _ = b.retriever.Retrieve(ctx, q, buf.cands[:0])
	if len(buf.cands) == 0 {
		return nil, errNoCandidates
	}
	if len(buf.cands) > p.cfg.Candidates {
		buf.cands = buf.cands[:p.cfg.Candidates]
	}
	t2 := time.Now()
	stageRetrieve.Observe(t2.Sub(t1).Seconds())

	// 3. Item features.
	k := len(buf.cands)
	w := b.m.layout.Width()
	buf.ids = buf.ids[:0]
	for _, c := range buf.cands {
		buf.ids = append(buf.ids, v.cat.ID(c.Item))
	}
	buf.rows = slices.Grow(buf.rows[:0], k*w)[:k*w]
	if err := se.Assemble(buf.ids, buf.rows); err != nil {
		return nil, err
	}
	t3 := time.Now()
	stageItems.Observe(t3.Sub(t2).Seconds())

	// 4. Ranking cascade.
	buf.scores = slices.Grow(buf.scores[:0], k)[:k]
	rk := p.rank(ctx, b.m, buf, k, t3)
	t4 := time.Now()
	stageRank.Observe(t4.Sub(t3).Seconds())

	// 5. Re-ranking.
	buf.items = buf.items[:0]
	for i, c := range buf.cands {
		_, seen := buf.seen[c.Item]
		buf.items = append(buf.items, rerank.Item{
			ID: c.Item, Score: buf.scores[i],
			Category: v.cat.Category[c.Item], Creator: v.cat.Creator[c.Item],
			Fresh: v.cat.AgeHours[c.Item] < p.cfg.FreshHours, Promoted: v.cat.Promoted[c.Item],
			Flagged: v.cat.Flagged[c.Item], Seen: seen,
		})
	}
	if err := p.reranker.Apply(&buf.res, buf.items, n); err != nil {
		return nil, err
	}
	stageRerank.Observe(time.Since(t4).Seconds())

	out := &outcome{
		items: slices.Clone(buf.res.Items), version: b.m.Version, arm: arm, ranker: rk, cat: v.cat, retriever: b.retriever,
		level: adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_FULL, schemaHash: b.m.Manifest.SchemaHash,
	}
	if rk != rankerONNX {
		out.level = adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_SIMPLE_RANKING
	} else if stale(se.Result()) {
		out.level = adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_STALE_FEATURES
	}
	p.record(out, v, b, buf, k, w)
	return out, nil
}

// stale reports whether any feature came from a fallback lane or a
// default standing in for an unavailable value.
func stale(r *online.Result) bool {
	if r.Degraded {
		return true
	}
	for i := range r.Groups {
		if r.Groups[i].Stale {
			return true
		}
	}
	return false
}

// record keeps, for the returned items, their sources and feature values:
// the user and request columns once, the item and pair columns per item.
func (p *Pipeline) record(out *outcome, v *view, b *binding, buf *requestBuffers, k, w int) {
	m := b.m
	out.userNames, out.itemNames = m.userNames, m.itemNames
	out.userValues = gather(make([]float32, 0, m.userWidth), buf.rows[:w], m.userCols)
	out.sources = make([]uint16, len(out.items))
	out.itemValues = make([][]float32, len(out.items))
	for i, it := range out.items {
		// A linear scan: 20 returned items among 500 candidates cost less
		// than building a map per request.
		j := slices.IndexFunc(buf.cands, func(c retrieve.Candidate) bool { return c.Item == it.Item.ID })
		out.sources[i] = buf.cands[j].Sources
		out.itemValues[i] = gather(make([]float32, 0, m.itemWidth), buf.rows[j*w:(j+1)*w], m.itemCols)
	}
	if v.shadow != nil {
		out.candidateIDs = slices.Clone(buf.ids)
	}
}

func gather(dst, row []float32, cols []features.Column) []float32 {
	for _, c := range cols {
		dst = append(dst, row[c.Offset:c.Offset+c.Width]...)
	}
	return dst
}

// query builds the retrieval query: the user's recent items (the request's,
// then the session's from the nearline store), a user vector folded in from
// them or, for a user without any, the model's stored vector of the user,
// the category affinity, and what to exclude.
func (p *Pipeline) query(v *view, b *binding, req *adaptrecv1.RecommendRequest, se *online.Session, buf *requestBuffers) *retrieve.Query {
	cat := v.cat
	buf.recent = buf.recent[:0]
	if buf.seen == nil {
		buf.seen = make(map[int32]struct{}, 64)
	}
	clear(buf.seen)
	add := func(id string) {
		if len(buf.recent) >= p.cfg.RecentItems {
			return
		}
		if i, ok := cat.Lookup(id); ok {
			if _, dup := buf.seen[i]; !dup {
				buf.seen[i] = struct{}{}
				buf.recent = append(buf.recent, i)
			}
		}
	}
	for _, id := range req.GetContext().GetRecentItemIds() {
		add(id)
	}
	fs := p.store.FeatureSet()
	user := se.User()
	if f, ok := fs.Lookup("user_session_recent_items"); ok {
		if val, ok, err := user.Get(f.ID); err == nil && ok {
			for _, id := range val.List {
				add(id)
			}
		}
	}
	q := &retrieve.Query{Catalog: cat, Recent: buf.recent}
	if len(buf.seen) > 0 {
		seen := buf.seen
		q.Exclude = func(i int32) bool { _, ok := seen[i]; return ok }
	}
	if f, ok := fs.Lookup("user_category_affinity"); ok {
		if val, ok, err := user.Get(f.ID); err == nil && ok {
			q.CategoryAffinity = val.Vector
		}
	}
	// Fold the user in from the recent items, newest strongest.
	buf.ivf, buf.str = buf.ivf[:0], buf.str[:0]
	for j, i := range buf.recent {
		if x := b.catToIVF[i]; x >= 0 {
			buf.ivf = append(buf.ivf, x)
			buf.str = append(buf.str, 1/float32(1+j/5))
		}
	}
	if len(buf.ivf) > 0 {
		vec, err := b.m.embed.Embed(buf.vec[:0], buf.ivf, buf.str)
		if err == nil {
			buf.vec = vec
			q.UserVector = vec
		}
	}
	// A returning user without recent items: the vector the model's own
	// training run learned for them, from the same embeddings as the
	// index it searches, used in place (retrieval only reads it).
	if q.UserVector != nil {
		userVectorRecent.Inc()
	} else if vec := b.m.storedUserVector(req.GetUserId()); vec != nil {
		q.UserVector = vec
		userVectorStored.Inc()
	} else {
		userVectorNone.Inc()
	}
	return q
}

// Ranking levels, the ranker label of adaptrec_serving_ranker_total.
const (
	rankerONNX      = "onnx"
	rankerGo        = "go"
	rankerRetrieval = "retrieval"
)

// rank scores buf.rows[:k] into buf.scores through the cascade: the ONNX
// ranker within RankTimeout (and its breaker closed), else the Go forward
// pass of the same model over the best SimpleCandidates, else the retrieval
// order. It returns the level that scored.
func (p *Pipeline) rank(ctx context.Context, m *Model, buf *requestBuffers, k int, now time.Time) string {
	reason := "breaker_open"
	if p.onnx.Allow(now) {
		err := p.scoreONNX(ctx, m, buf, k)
		if err == nil {
			p.onnx.Success()
			rankerTotal.WithLabelValues(rankerONNX, "").Inc()
			return rankerONNX
		}
		p.onnx.Failure(time.Now())
		reason = "error"
		if errors.Is(err, context.DeadlineExceeded) {
			reason = "timeout"
		}
		p.log.Debug("ranking: ONNX ranker failed; lightweight ranker answers", "err", err)
	}
	s := min(k, p.cfg.SimpleCandidates)
	w := m.layout.Width()
	if scores, err := m.goRank.Predict(buf.rows[:s*w], s); err == nil {
		copy(buf.scores, scores)
		// The rest keep their retrieval order, below every scored one.
		for i := s; i < k; i++ {
			buf.scores[i] = -float32(i)
		}
		rankerTotal.WithLabelValues(rankerGo, reason).Inc()
		return rankerGo
	}
	for i := range k {
		buf.scores[i] = buf.cands[i].Score
	}
	rankerTotal.WithLabelValues(rankerRetrieval, reason).Inc()
	return rankerRetrieval
}

// scoreONNX runs the ONNX ranker on its own goroutine so that a request
// stops waiting for it after RankTimeout; the goroutine then finishes on a
// copy of the rows it owns, never on the request's buffers.
func (p *Pipeline) scoreONNX(ctx context.Context, m *Model, buf *requestBuffers, k int) error {
	w := m.layout.Width()
	done := make(chan error, 1)
	rows, scores := buf.rows[:k*w], buf.scores[:k]
	start := time.Now()
	go func() { done <- m.scorer.ScoreInto(scores, rows, k) }()
	timer := time.NewTimer(p.cfg.RankTimeout)
	defer timer.Stop()
	select {
	case err := <-done:
		// A result that came in past the budget is late even when it won
		// the race with the timer: the cascade's levels follow the budget.
		if late := time.Since(start); err == nil && late > p.cfg.RankTimeout {
			return fmt.Errorf("ONNX ranker: %w: answered after %s, budget %s", context.DeadlineExceeded, late, p.cfg.RankTimeout)
		}
		return err
	case <-timer.C:
	case <-ctx.Done():
	}
	// Abandon the call: it keeps the arrays it was given, and the request
	// (and the pool, later) gets new ones, so nothing reuses memory ONNX
	// Runtime still reads and writes.
	buf.rows = slices.Clone(buf.rows)
	buf.scores = make([]float32, cap(buf.scores))
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("ONNX ranker: %w after %s", context.DeadlineExceeded, p.cfg.RankTimeout)
}

// catalogOf returns the current catalogue (nil before the first build).
func (p *Pipeline) catalogOf() *catalog.Catalog { return p.views.cur.Load().cat }

// safeRun is run with a panic turned into an error: a bug in one stage
// must degrade the response, not kill the connection. An error after the
// request was routed to a model is a *routedError naming the version and
// arm (routedTo).
func (p *Pipeline) safeRun(ctx context.Context, req *adaptrecv1.RecommendRequest, n int, now time.Time) (out *outcome, err error) {
	rt := &routedError{}
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("pipeline panic: %v", r)
			p.log.Error("recommend: pipeline panicked; a fallback answers", "panic", r, "user", req.GetUserId())
		}
		if err != nil && rt.version != "" {
			rt.err = err
			err = rt
		}
	}()
	return p.run(ctx, req, n, now, rt)
}

// popular returns the catalogue's most popular items that are neither
// flagged nor in exclude: the popularity level, which needs no model and no
// user features.
func (p *Pipeline) popular(n int, exclude map[string]bool) []ScoredItem {
	cat := p.catalogOf()
	if cat == nil {
		return nil
	}
	out := make([]ScoredItem, 0, n)
	order := cat.ByPopularity()
	if len(order) == 0 {
		return nil
	}
	top := float64(cat.Popularity[order[0]])
	for _, i := range order {
		if len(out) == n {
			break
		}
		if cat.Flagged[i] || exclude[cat.ID(i)] {
			continue
		}
		score := 0.0
		if top > 0 {
			score = float64(cat.Popularity[i]) / top
		}
		out = append(out, ScoredItem{ItemID: cat.ID(i), Score: score})
	}
	return out
}
