package serving

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/adaptrec/adaptrec/features/online"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/breaker"
	"github.com/adaptrec/adaptrec/serving/catalog"
	"github.com/adaptrec/adaptrec/serving/covisit"
	"github.com/adaptrec/adaptrec/serving/rerank"
	"github.com/adaptrec/adaptrec/serving/retrieve"
)

// Retrieval quotas and deadlines. The ANN and co-visitation sources run on
// their own goroutines with their own deadlines; the catalogue sources are
// in-memory list walks that run inline.
const (
	quotaANN      = 200
	quotaCovisit  = 150
	quotaCategory = 100
	quotaTrending = 50
	quotaFresh    = 50
	quotaPopular  = 50

	timeoutANN     = 4 * time.Millisecond
	timeoutCovisit = 2 * time.Millisecond

	// efSearchANN is the ANN beam: the quota itself (a search uses at
	// least k). The index's default of 300 buys recall@200 from 0.96 to
	// 0.98 for half again the time; among six sources the ranker sees,
	// serving spends that CPU elsewhere.
	efSearchANN = quotaANN
)

// NewPipeline returns the model pipeline over store's features and the
// models mm serves. Run keeps it current; Ready says when it can rank.
func NewPipeline(store *online.Store, mm *ModelManager, cfg PipelineConfig, log *slog.Logger) (*Pipeline, error) {
	cfg = cfg.withDefaults()
	rr, err := rerank.New(cfg.Rerank)
	if err != nil {
		return nil, err
	}
	onnx, err := breaker.New(breaker.Config{Name: "onnx_ranker", Failures: 5, MinFailureSpan: time.Second, Cooldown: 5 * time.Second})
	if err != nil {
		return nil, err
	}
	p := &Pipeline{
		cfg: cfg, log: log, store: store, reranker: rr, onnx: onnx, models: mm,
		category: &retrieve.CategoryAffinity{}, trending: &retrieve.Trending{}, fresh: &retrieve.Fresh{},
	}
	p.bufs.New = func() any { return new(requestBuffers) }
	p.views = newViewKeeper(store, mm, log, cfg.CatalogInterval, p.bind)
	// The retriever of the model-free sources answers before any model
	// is loaded; it is what popularity falls back on too.
	return p, nil
}

// bind ties a model to a catalogue: id maps, and a retriever whose model
// sources search this model's indexes and whose catalogue sources have
// their lists for this catalogue precomputed. same, when not nil, is the
// model's binding to a catalogue of the same items, whose id maps still
// hold.
func (p *Pipeline) bind(m *Model, cat *catalog.Catalog, same *binding) (*binding, error) {
	var b *binding
	if same != nil {
		b = &binding{m: m, annToCat: same.annToCat, catToIVF: same.catToIVF, covisit: same.covisit}
	} else {
		b = newBinding(m, cat)
		if m.covisit != nil {
			// A training job's table lists items.ivf's items in its order
			// (trainer/job checks it), so the IVF's maps serve it too.
			tabToCat, catToTab := b.annToCat, b.catToIVF
			if !m.covisitSameItems {
				tabToCat, catToTab = cat.Translate(m.covisit.Len(), m.covisit.ID)
			}
			b.covisit = newCovisitSource(m.covisit, tabToCat, catToTab)
		}
	}
	srcs := []retrieve.SourceConfig{
		{Source: &retrieve.ANN{Index: m.ann, Map: b.annToCat, Catalog: cat, EfSearch: efSearchANN}, K: quotaANN, Timeout: timeoutANN},
	}
	if b.covisit != nil {
		srcs = append(srcs, retrieve.SourceConfig{Source: b.covisit, K: quotaCovisit, Timeout: timeoutCovisit})
	}
	srcs = append(srcs,
		retrieve.SourceConfig{Source: p.category, K: quotaCategory, Inline: true},
		retrieve.SourceConfig{Source: p.trending, K: quotaTrending, Inline: true},
		retrieve.SourceConfig{Source: p.fresh, K: quotaFresh, Inline: true},
		retrieve.SourceConfig{Source: retrieve.Popular{}, K: quotaPopular, Inline: true},
	)
	r, err := retrieve.New(retrieve.Config{Sources: srcs, Total: p.cfg.Candidates})
	if err != nil {
		return nil, fmt.Errorf("bind model %s: %w", m.Version, err)
	}
	r.Prepare(cat)
	b.retriever = r
	return b, nil
}

// sourceNames names the retrieval sources of a candidate's bit mask.
func (p *Pipeline) sourceNames(r *retrieve.Retriever, mask uint16) []string {
	if r == nil {
		return nil
	}
	return r.SourceNames(mask, nil)
}

// Run keeps the catalogue and the model bindings current until ctx ends.
func (p *Pipeline) Run(ctx context.Context) { p.views.Run(ctx) }

// LoadCatalog builds the first catalogue; serving is not ready before.
func (p *Pipeline) LoadCatalog(ctx context.Context) error { return p.views.loadCatalog(ctx) }

// Ready reports nil once the pipeline can rank: item features loaded into
// a catalogue and a production model loaded and bound to it.
func (p *Pipeline) Ready() error {
	v := p.views.cur.Load()
	switch {
	case v.cat == nil || v.cat.Len() == 0:
		return fmt.Errorf("no item features loaded yet (catalogue empty)")
	case v.prod == nil:
		if al := v.set.Aliases; al.Production == "" {
			return fmt.Errorf("no production model: the registry's %q aliases name none yet (adaptrec models promote)", p.models.name)
		}
		return fmt.Errorf("production model %s not loaded yet", v.set.Aliases.Production)
	}
	return nil
}

// HandleSnapshotEvent applies a FeatureSnapshotEvent: the store switches
// its item and user versions, then the catalogue is rebuilt from the new
// item features.
func (p *Pipeline) HandleSnapshotEvent(ctx context.Context, e *adaptrecv1.FeatureSnapshotEvent) error {
	if err := p.store.HandleSnapshotEvent(ctx, e); err != nil {
		return err
	}
	p.views.rebuildCatalog()
	return nil
}

// HandleModelEvent applies a ModelLifecycleEvent for the served model: the
// manager re-reads the aliases now instead of at its next poll.
func (p *Pipeline) HandleModelEvent(e *adaptrecv1.ModelLifecycleEvent) {
	if e.GetModelName() == p.models.name {
		p.models.Trigger()
	}
}

// covisitSource adapts a co-visitation table to retrieval: the user's
// recent items (catalogue indexes) are translated into the table's, and its
// hits back.
type covisitSource struct {
	t        *covisit.Table
	catToTab []int32
	tabToCat []int32
	pool     sync.Pool
}

type covisitScratch struct {
	recent []int32
	hits   []covisit.Hit
	sc     *covisit.Scorer
}

func newCovisitSource(t *covisit.Table, tabToCat, catToTab []int32) *covisitSource {
	s := &covisitSource{t: t, catToTab: catToTab, tabToCat: tabToCat}
	s.pool.New = func() any { return &covisitScratch{sc: t.NewScorer()} }
	return s
}

func (*covisitSource) Name() string { return "covisit" }

func (s *covisitSource) Retrieve(_ context.Context, q *retrieve.Query, k int, dst []retrieve.Hit) ([]retrieve.Hit, error) {
	if len(q.Recent) == 0 {
		return dst, nil
	}
	sc := s.pool.Get().(*covisitScratch)
	defer s.pool.Put(sc)
	sc.recent = sc.recent[:0]
	for _, c := range q.Recent {
		if int(c) < len(s.catToTab) {
			if x := s.catToTab[c]; x >= 0 {
				sc.recent = append(sc.recent, x)
			}
		}
	}
	if len(sc.recent) == 0 {
		return dst, nil
	}
	skip := func(x int32) bool {
		c := s.tabToCat[x]
		return c < 0 || q.Skip(c)
	}
	sc.hits = sc.sc.Recommend(sc.hits[:0], sc.recent, k, skip)
	for _, h := range sc.hits {
		dst = append(dst, retrieve.Hit{Item: s.tabToCat[h.Item], Score: h.Score})
	}
	return dst, nil
}
