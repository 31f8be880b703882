package serving

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/online"
	"github.com/adaptrec/adaptrec/internal/onnxrt"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/serving/ann"
	"github.com/adaptrec/adaptrec/serving/covisit"
	"github.com/adaptrec/adaptrec/trainer/ranker"
	"github.com/adaptrec/adaptrec/trainer/retrieval"
)

// Artifact names of a model version that serving reads (the training job's
// layout, trainer/job).
const (
	ArtifactRanker  = "ranker.onnx"
	ArtifactIVF     = "items.ivf"
	ArtifactANN     = "items.ann"
	ArtifactCovisit = "covisit.bin"
	ArtifactUsers   = "users.emb"
)

// Model is one registered model version loaded for serving: the ONNX ranker
// in ONNX Runtime, the same ranker's Go forward pass (the simple-ranking
// level, which needs no ONNX Runtime), the feature layout its rows follow
// and an assembler for it, the item embeddings with their fold-in, the ANN
// index over them, the co-visitation table and the user vectors of the
// same training run. A Model is immutable; serving swaps whole models.
type Model struct {
	Version  string
	Manifest registry.Manifest

	layout *features.Layout
	// The layout's columns split for PredictionEvents: user and request
	// columns are recorded once per request, item and pair columns per
	// served item.
	userCols, itemCols   []features.Column
	userNames, itemNames []string
	userWidth, itemWidth int
	asm                  *online.Assembler
	scorer               *onnxrt.Session
	goRank               *ranker.Model
	// ivf holds the item ids and vectors the ANN ids index, and the
	// fold-in parameters; embed folds a user in from recent items.
	ivf   *retrieval.Index
	embed *retrieval.Embedder
	ann   *ann.Index
	// covisit is the co-visitation table; nil for a version without one.
	// covisitSameItems says it lists the IVF's items in the IVF's order,
	// so one pair of id maps serves both.
	covisit          *covisit.Table
	covisitSameItems bool
	// users are the user vectors the training run learned with the IVF's
	// item vectors (users.emb), for a user without recent items; nil for
	// a version without them.
	users *retrieval.UserVectors

	LoadedIn time.Duration
}

// ModelSource reads model versions; *registry.Client is one.
type ModelSource interface {
	Get(ctx context.Context, model, version string) (registry.Manifest, error)
	ReadArtifact(ctx context.Context, m registry.Manifest, name string) ([]byte, error)
}

// LoadModel reads a version's artifacts (each checked against the
// manifest's size and SHA-256 by the registry), checks that the store's
// feature definitions can build its rows, and loads the ranker into ONNX
// Runtime and the indexes into memory. users.emb is optional (versions
// trained before it lack it); when present, its vectors must have the IVF's
// dims. Any failure leaves nothing loaded: the caller keeps serving what it
// had.
func LoadModel(ctx context.Context, src ModelSource, store *online.Store, model, version string, ort onnxrt.Options) (*Model, error) {
	start := time.Now()
	m, err := src.Get(ctx, model, version)
	if err != nil {
		return nil, fmt.Errorf("load model %s@%s: %w", model, version, err)
	}
	fs := store.FeatureSet()
	if err := fs.Satisfies(m.Schema); err != nil {
		return nil, fmt.Errorf("load model %s@%s: the serving feature definitions cannot build its rows: %w", model, version, err)
	}
	layout, err := fs.LayoutFor(m.Schema)
	if err != nil {
		return nil, fmt.Errorf("load model %s@%s: %w", model, version, err)
	}
	read := func(name string) ([]byte, error) {
		b, err := src.ReadArtifact(ctx, m, name)
		if err != nil {
			return nil, fmt.Errorf("load model %s@%s: %w", model, version, err)
		}
		return b, nil
	}
	onnxBytes, err := read(ArtifactRanker)
	if err != nil {
		return nil, err
	}
	goRank, err := ranker.ParseONNX(onnxBytes)
	if err != nil {
		return nil, fmt.Errorf("load model %s@%s: %s: %w", model, version, ArtifactRanker, err)
	}
	if goRank.Width != layout.Width() {
		return nil, fmt.Errorf("load model %s@%s: ranker reads rows of %d values, its schema implies %d", model, version, goRank.Width, layout.Width())
	}
	ivfBytes, err := read(ArtifactIVF)
	if err != nil {
		return nil, err
	}
	ivf, err := retrieval.Load(bytes.NewReader(ivfBytes))
	if err != nil {
		return nil, fmt.Errorf("load model %s@%s: %s: %w", model, version, ArtifactIVF, err)
	}
	embed, err := ivf.Embedder()
	if err != nil {
		return nil, fmt.Errorf("load model %s@%s: %s: %w", model, version, ArtifactIVF, err)
	}
	annBytes, err := read(ArtifactANN)
	if err != nil {
		return nil, err
	}
	idx, err := ann.Load(bytes.NewReader(annBytes))
	if err != nil {
		return nil, fmt.Errorf("load model %s@%s: %s: %w", model, version, ArtifactANN, err)
	}
	if idx.Len() != ivf.Len() || idx.Dims() != ivf.Dims() {
		return nil, fmt.Errorf("load model %s@%s: %s holds %d items of %d dimensions, %s %d of %d: not built from the same embeddings",
			model, version, ArtifactANN, idx.Len(), idx.Dims(), ArtifactIVF, ivf.Len(), ivf.Dims())
	}
	var cov *covisit.Table
	if _, ok := m.Artifact(ArtifactCovisit); ok {
		b, err := read(ArtifactCovisit)
		if err != nil {
			return nil, err
		}
		if cov, err = covisit.Load(bytes.NewReader(b)); err != nil {
			return nil, fmt.Errorf("load model %s@%s: %s: %w", model, version, ArtifactCovisit, err)
		}
	}
	var users *retrieval.UserVectors
	if _, ok := m.Artifact(ArtifactUsers); ok {
		b, err := read(ArtifactUsers)
		if err != nil {
			return nil, err
		}
		if users, err = retrieval.LoadUserVectors(bytes.NewReader(b)); err != nil {
			return nil, fmt.Errorf("load model %s@%s: %s: %w", model, version, ArtifactUsers, err)
		}
		if users.Dims() != ivf.Dims() {
			return nil, fmt.Errorf("load model %s@%s: %s holds vectors of %d dimensions, %s %d: not from the same embeddings",
				model, version, ArtifactUsers, users.Dims(), ArtifactIVF, ivf.Dims())
		}
	}
	sameItems := cov != nil && cov.Len() == ivf.Len()
	for i := 0; sameItems && i < ivf.Len(); i++ {
		sameItems = cov.ID(int32(i)) == ivf.ID(int32(i))
	}
	asm, err := store.NewAssembler(layout)
	if err != nil {
		return nil, fmt.Errorf("load model %s@%s: %w", model, version, err)
	}
	scorer, err := onnxrt.Load(onnxBytes, ort)
	if err != nil {
		return nil, fmt.Errorf("load model %s@%s: ONNX Runtime: %w", model, version, err)
	}
	mod := &Model{
		Version: version, Manifest: m,
		layout: layout, asm: asm, scorer: scorer, goRank: goRank,
		ivf: ivf, embed: embed, ann: idx, covisit: cov, covisitSameItems: sameItems, users: users,
	}
	for _, c := range layout.Columns() {
		switch c.Entity {
		case features.EntityUser, features.EntityRequest:
			mod.userCols, mod.userNames, mod.userWidth = append(mod.userCols, c), append(mod.userNames, c.Name), mod.userWidth+c.Width
		default:
			mod.itemCols, mod.itemNames, mod.itemWidth = append(mod.itemCols, c), append(mod.itemNames, c.Name), mod.itemWidth+c.Width
		}
	}
	// A probe batch: a model that loads but cannot score is refused here,
	// not on the first request.
	probe := make([]float32, 2*layout.Width())
	if _, err := scorer.Score(probe, 2); err != nil {
		_ = scorer.Close()
		return nil, fmt.Errorf("load model %s@%s: probe batch: %w", model, version, err)
	}
	mod.LoadedIn = time.Since(start)
	return mod, nil
}

// Close releases the ONNX Runtime session. Call it only once no request
// can reach the model any more.
func (m *Model) Close() error {
	if m == nil || m.scorer == nil {
		return nil
	}
	return m.scorer.Close()
}

// userVectorTotal counts the requests by where retrieval's user vector came
// from; query increments the pre-resolved counters below, which cost no
// allocation.
var userVectorTotal = promauto.NewCounterVec(prometheus.CounterOpts{
	Name: "adaptrec_serving_user_vector_total",
	Help: "Requests by the source of the user vector the ANN retrieval searched with: folded in from recent items (recent), the model's stored vector of the user (stored), or none.",
}, []string{"source"})

var (
	userVectorRecent = userVectorTotal.WithLabelValues("recent")
	userVectorStored = userVectorTotal.WithLabelValues("stored")
	userVectorNone   = userVectorTotal.WithLabelValues("none")
)

// storedUserVector returns the vector the model's training run learned for
// user id (users.emb), or nil when the version has none for the user. The
// vector is the model's own memory, to be read, never written. It does not
// allocate.
func (m *Model) storedUserVector(id string) []float32 {
	if m.users == nil || id == "" {
		return nil
	}
	if i, ok := m.users.Lookup(id); ok {
		return m.users.Vector(i)
	}
	return nil
}

// errNoModel is returned by model-dependent stages when nothing is loaded.
var errNoModel = errors.New("no model loaded")
