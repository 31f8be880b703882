package serving

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/online"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/internal/onnxrt"
	"github.com/adaptrec/adaptrec/predictions"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/serving/catalog"
)

// SourceBatchPredictions is the source a PredictionEvent names for items
// served from batch predictions.
const SourceBatchPredictions = "batch_predictions"

// ErrNoList is returned by BatchRanker.Rank when the pipeline found nothing
// to rank for a user (no candidates): the user gets no list.
var ErrNoList = errors.New("serving: no candidates to rank for the user")

// BatchRanker ranks users offline through the serving pipeline itself, so
// that batch predictions are what serving would have answered: the same
// production model version (loaded from the registry), the same catalogue
// and feature store, retrieval, ranking cascade and re-ranking. It skips
// admission control and PredictionEvents, gives the ONNX ranker and the
// feature reads budgets fit for a batch job, never serves the canary, and
// keeps the model set and catalogue it opened with for its whole life, so
// every list of one run comes from one model version.
type BatchRanker struct {
	pipe    *Pipeline
	models  *ModelManager
	model   string
	version string
	items   int
}

// BatchRankerOptions configure OpenBatchRanker. Zero values mean the
// configuration's values.
type BatchRankerOptions struct {
	// FeaturesFile overrides config features.file.
	FeaturesFile string
	// Log receives the store's and the model manager's messages;
	// slog.Default when nil.
	Log *slog.Logger
}

// productionOnly hides the canary and shadow aliases: batch predictions are
// the production model's.
type productionOnly struct{ RegistrySource }

func (p productionOnly) Aliases(ctx context.Context, model string) (registry.Aliases, error) {
	al, err := p.RegistrySource.Aliases(ctx, model)
	al.Canary, al.CanaryWeight, al.Shadow = "", 0, ""
	return al, err
}

// OpenBatchRanker loads what serving loads (the item features and nearline
// values into a catalogue, the production model of config server.model)
// over obj and rdb, with config predictions.rank_timeout and
// predictions.feature_timeout as the ranking and feature-read budgets.
// It fails when no production model can be loaded or the catalogue is
// empty. Close releases the model.
func OpenBatchRanker(ctx context.Context, cfg config.Config, obj *objstore.Store, rdb redis.UniversalClient, o BatchRankerOptions) (*BatchRanker, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	file := cfg.Features.File
	if o.FeaturesFile != "" {
		file = o.FeaturesFile
	}
	fs, err := features.Load(file)
	if err != nil {
		return nil, fmt.Errorf("feature definitions (config key features.file): %w", err)
	}
	store, err := online.New(fs, rdb, online.ObjectSnapshots{Store: obj}, online.Options{
		KeyPrefix: cfg.Features.KeyPrefix, UserReadTimeout: cfg.Predictions.FeatureTimeout, Logger: o.Log,
	})
	if err != nil {
		return nil, err
	}
	reg := &registry.Client{Store: obj, Features: fs}
	mm := NewModelManager(productionOnly{reg}, store, cfg.Server.Model, onnxrt.Options{}, o.Log)
	pc := PipelineConfig{
		Candidates: cfg.Server.Candidates, SimpleCandidates: cfg.Server.Candidates,
		RankTimeout: cfg.Predictions.RankTimeout, Rerank: cfg.Server.Rerank,
	}
	pipe, err := NewPipeline(store, mm, pc, o.Log)
	if err != nil {
		return nil, err
	}
	if err := store.Refresh(ctx); err != nil {
		return nil, fmt.Errorf("batch ranker: load the feature snapshots: %w", err)
	}
	if err := store.RefreshNearline(ctx); err != nil {
		return nil, fmt.Errorf("batch ranker: load the nearline item features: %w", err)
	}
	if err := mm.Reconcile(ctx); err != nil {
		closeModels(mm)
		return nil, fmt.Errorf("batch ranker: load the production model of %s: %w", cfg.Server.Model, err)
	}
	if err := pipe.LoadCatalog(ctx); err != nil {
		closeModels(mm)
		return nil, fmt.Errorf("batch ranker: build the catalogue: %w", err)
	}
	if err := pipe.Ready(); err != nil {
		closeModels(mm)
		return nil, fmt.Errorf("batch ranker: %w", err)
	}
	v := pipe.views.cur.Load()
	return &BatchRanker{pipe: pipe, models: mm, model: cfg.Server.Model, version: v.prod.m.Version, items: v.cat.Len()}, nil
}

func closeModels(mm *ModelManager) {
	set := mm.Set()
	for _, m := range []*Model{set.Production, set.Canary, set.Shadow} {
		_ = m.Close()
	}
}

// Model returns the registry model name; ModelVersion the production
// version every list comes from.
func (b *BatchRanker) Model() string { return b.model }

// ModelVersion returns the production model version the ranker serves.
func (b *BatchRanker) ModelVersion() string { return b.version }

// CatalogueItems returns how many items the catalogue holds.
func (b *BatchRanker) CatalogueItems() int { return b.items }

// Rank returns the user's top k items as serving would rank them now with
// no request context (no recent items, device or surface), and the
// degradation level the pipeline reached (FULL, or STALE_FEATURES when a
// feature read fell back, SIMPLE_RANKING when the ONNX ranker did). A user
// with nothing to rank gets ErrNoList. It is safe for concurrent use.
func (b *BatchRanker) Rank(ctx context.Context, user string, k int, now time.Time) ([]predictions.Entry, adaptrecv1.DegradationLevel, error) {
	req := &adaptrecv1.RecommendRequest{UserId: user, NumItems: int32(k)}
	out, err := b.pipe.safeRun(ctx, req, k, now)
	if errors.Is(err, errNoCandidates) {
		return nil, 0, ErrNoList
	}
	if err != nil {
		return nil, 0, fmt.Errorf("rank user %s: %w", user, err)
	}
	if out.version != b.version {
		return nil, 0, fmt.Errorf("rank user %s: ranked by %s, the ranker opened with %s", user, out.version, b.version)
	}
	list := make([]predictions.Entry, len(out.items))
	for i, it := range out.items {
		list[i] = predictions.Entry{ItemID: out.cat.ID(it.Item.ID), Score: it.Score}
	}
	return list, out.level, nil
}

// Close releases the model.
func (b *BatchRanker) Close() { closeModels(b.models) }

// newPredictionsReader returns the reader of the batch-predictions level
// configured by cfg.Predictions, nil when the level is off.
func newPredictionsReader(cfg config.Config, rdb redis.UniversalClient, log *slog.Logger) (*predictions.Reader, error) {
	if !cfg.Predictions.ServingEnabled {
		return nil, nil
	}
	return predictions.NewReader(rdb, predictions.ReaderOptions{
		KeyPrefix: cfg.Features.KeyPrefix, ReadTimeout: cfg.Predictions.ServingReadTimeout,
		Refresh: cfg.Predictions.PointerRefresh, Logger: log,
	})
}

// batchItems keeps up to n entries of a batch list that serving may still
// show: not in exclude (the request's recent items), and, when cat is not
// nil, still in the catalogue and not flagged by moderation since the list
// was computed. The order is the list's.
func batchItems(list []predictions.Entry, n int, exclude map[string]bool, cat *catalog.Catalog) []predictions.Entry {
	out := make([]predictions.Entry, 0, min(n, len(list)))
	for _, e := range list {
		if len(out) == n {
			break
		}
		if exclude[e.ItemID] {
			continue
		}
		if cat != nil {
			i, ok := cat.Lookup(e.ItemID)
			if !ok || cat.Flagged[i] {
				continue
			}
		}
		out = append(out, e)
	}
	return out
}

// answerFromBatch fills resp from the user's batch predictions, the level
// below the pipeline's when it cannot rank; false when the user has none
// (or none left after the filters), when the level is off, or when Redis
// did not answer in time.
func (s *Service) answerFromBatch(ctx context.Context, req *adaptrecv1.RecommendRequest, n int, now time.Time, exclude map[string]bool,
	resp *adaptrecv1.RecommendResponse, pred *adaptrecv1.PredictionEvent) bool {
	r := s.opts.Predictions
	if r == nil {
		return false
	}
	l, ok := r.Lookup(ctx, req.GetUserId(), now)
	if !ok {
		return false
	}
	var cat *catalog.Catalog
	if p := s.opts.Pipeline; p != nil {
		if c := p.catalogOf(); c != nil && c.Len() > 0 {
			cat = c
		}
	}
	items := batchItems(l.Entries, n, exclude, cat)
	if len(items) == 0 {
		return false
	}
	resp.ModelVersion = l.ModelVersion
	resp.DegradationLevel = adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_BATCH_PREDICTIONS
	resp.Items = make([]*adaptrecv1.ScoredItem, len(items))
	pred.Items = make([]*adaptrecv1.ServedItem, len(items))
	for i, it := range items {
		resp.Items[i] = &adaptrecv1.ScoredItem{ItemId: it.ItemID, Score: it.Score}
		pred.Items[i] = &adaptrecv1.ServedItem{ItemId: it.ItemID, Score: it.Score, Position: int32(i), Sources: []string{SourceBatchPredictions}}
	}
	return true
}
