package servingworld

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/online"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/serving/ann"
	"github.com/adaptrec/adaptrec/serving/covisit"
	"github.com/adaptrec/adaptrec/trainer/job"
	"github.com/adaptrec/adaptrec/trainer/ranker"
	"github.com/adaptrec/adaptrec/trainer/retrieval"
)

// cacheFormat versions the cached artifacts and what they are built from:
// bump it whenever the world's generation or training changes, so that an
// old cache entry is never served for a new world. Format 2 added users.emb.
const cacheFormat = 2

// metaFile is written last into a cache entry: an entry without it is
// incomplete and rebuilt.
const metaFile = "servingworld.json"

// candidatesPerExample is how many items one synthetic training request
// ranks; favouriteCandidates of them come from the user's favourite
// categories, the rest from anywhere, as retrieval would mix them.
const (
	candidatesPerExample = 50
	favouriteCandidates  = 20
)

// DefaultCacheDir is where built model artifacts are kept when
// Options.CacheDir is empty: adaptrec/servingworld in the user's cache
// directory ($XDG_CACHE_HOME, else ~/.cache on Linux).
func DefaultCacheDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("servingworld: no user cache directory (%w): set $XDG_CACHE_HOME or pass a cache directory", err)
	}
	return filepath.Join(dir, "adaptrec", "servingworld"), nil
}

// artifactMeta is the cache entry's description of its artifacts.
type artifactMeta struct {
	Format     int                `json:"format"`
	Key        string             `json:"key"`
	SchemaHash string             `json:"schema_hash"`
	Width      int                `json:"width"`
	Hidden     []int              `json:"hidden"`
	Metrics    map[string]float64 `json:"metrics"`
	BuiltAt    time.Time          `json:"built_at"`
	BuildS     float64            `json:"build_s"`
}

// artifacts are a model version's files.
type artifacts struct {
	files  map[string][]byte
	meta   artifactMeta
	cached bool
	dir    string
}

// artifactNames are the files of a version, in the training job's layout.
var artifactNames = []string{job.RankerFile, job.IndexFile, job.ANNFile, job.CovisitFile, job.UsersFile}

// cacheKey identifies everything the artifacts depend on.
func cacheKey(fs *features.FeatureSet, o Options) string {
	b, _ := json.Marshal(struct {
		Format                          int
		Items, Users, Pairs, TrainRows  int
		Hidden                          []int
		Seed                            uint64
		SchemaHash                      string
		Dims, EfSearch, M, Construction int
	}{cacheFormat, o.Items, o.Users, o.PairsPerUser, o.TrainRows, o.Hidden, o.Seed, fs.SchemaHash(),
		EmbeddingDims, ann.DefaultEfSearch, ann.DefaultM, ann.DefaultEfConstruction})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// buildModel returns the world's model artifacts, from the cache when an
// entry for these options exists, else built (and then saved there): a
// ranker trained on rows the online store assembles for synthetic
// requests, item vectors clustered by category with their IVF and HNSW
// indexes, a co-visitation table of the users' sessions, and user vectors
// folded in from the users' past sessions against the IVF's vectors.
func buildModel(ctx context.Context, cfg config.Config, fs *features.FeatureSet, obj *objstore.Store, rdb redis.UniversalClient,
	g *gen, layout *features.Layout, o Options, progress func(string)) (*artifacts, error) {
	key := cacheKey(fs, o)
	var dir string
	switch o.CacheDir {
	case "-":
	case "":
		base, err := DefaultCacheDir()
		if err != nil {
			progress(fmt.Sprintf("%v; building the model artifacts without a cache", err))
			break
		}
		dir = filepath.Join(base, key)
	default:
		dir = filepath.Join(o.CacheDir, key)
	}
	if dir != "" {
		a, err := readCache(dir, layout)
		switch {
		case err == nil:
			progress(fmt.Sprintf("model artifacts from the cache %s (built %s in %.1fs)", dir, a.meta.BuiltAt.Format(time.RFC3339), a.meta.BuildS))
			return a, nil
		case !errors.Is(err, os.ErrNotExist):
			progress(fmt.Sprintf("cache entry %s unusable (%v); rebuilding it", dir, err))
		}
	}

	start := time.Now()
	a := &artifacts{files: map[string][]byte{}, dir: dir}
	t := time.Now()
	rows, labels, probs, err := trainingRows(ctx, cfg, fs, obj, rdb, g, layout, o)
	if err != nil {
		return nil, err
	}
	progress(fmt.Sprintf("assembled %d training rows of %d values through the online store in %s (%.1f%% positive)",
		len(labels), layout.Width(), time.Since(t).Round(time.Millisecond), 100*mean(labels)))
	t = time.Now()
	onnx, metrics, err := trainRanker(ctx, rows, labels, probs, layout, o, progress)
	if err != nil {
		return nil, err
	}
	a.files[job.RankerFile] = onnx
	progress(fmt.Sprintf("ranker %s trained in %s: held-out AUC %.3f (the labels' own probabilities: %.3f), log loss %.3f", describeHidden(o.Hidden),
		time.Since(t).Round(time.Millisecond), metrics[job.MetricAUC], metrics[metricLabelAUC], metrics[job.MetricLogLoss]))

	t = time.Now()
	vectors := g.itemVectors()
	ivf, err := retrieval.BuildIndex(ctx, g.itemIDs, vectors, EmbeddingDims, retrieval.IndexConfig{
		Seed: o.Seed, Regularization: retrieval.DefaultRegularization, Alpha: retrieval.DefaultAlpha,
	})
	if err != nil {
		return nil, fmt.Errorf("servingworld: IVF index: %w", err)
	}
	var buf bytes.Buffer
	if err := ivf.Save(&buf); err != nil {
		return nil, err
	}
	a.files[job.IndexFile] = slices.Clone(buf.Bytes())
	progress(fmt.Sprintf("%s: %d items of %d dims in %d lists, built in %s", job.IndexFile, ivf.Len(), ivf.Dims(), ivf.Lists(), time.Since(t).Round(time.Millisecond)))

	t = time.Now()
	progress(fmt.Sprintf("building %s: HNSW over %d items of %d dims (takes a while; cached afterwards)", job.ANNFile, len(g.itemIDs), EmbeddingDims))
	ids := make([]int32, len(g.itemIDs))
	for i := range ids {
		ids[i] = int32(i) // the IVF index's item numbers, which serving maps through items.ivf
	}
	x, err := ann.Build(ctx, ids, vectors, EmbeddingDims, ann.Config{Seed: o.Seed})
	if err != nil {
		return nil, fmt.Errorf("servingworld: ANN index: %w", err)
	}
	buf.Reset()
	if err := x.Save(&buf); err != nil {
		return nil, err
	}
	a.files[job.ANNFile] = slices.Clone(buf.Bytes())
	progress(fmt.Sprintf("%s: %d items in %d norm bands, built in %s", job.ANNFile, x.Len(), x.Bands(), time.Since(t).Round(time.Millisecond)))

	t = time.Now()
	now := time.Now()
	visits := g.visits(now)
	users, err := g.userVectors(ctx, ivf, visits, now)
	if err != nil {
		return nil, err
	}
	buf.Reset()
	if err := users.Save(&buf); err != nil {
		return nil, err
	}
	a.files[job.UsersFile] = slices.Clone(buf.Bytes())
	progress(fmt.Sprintf("%s: %d users of %d dims folded in from their past sessions in %s", job.UsersFile, users.Len(), users.Dims(), time.Since(t).Round(time.Millisecond)))

	t = time.Now()
	table, err := covisit.Build(ctx, visits, covisit.Config{})
	if err != nil {
		return nil, fmt.Errorf("servingworld: co-visitation table: %w", err)
	}
	buf.Reset()
	if err := table.Save(&buf); err != nil {
		return nil, err
	}
	a.files[job.CovisitFile] = slices.Clone(buf.Bytes())
	progress(fmt.Sprintf("%s: %d items, %d edges from %d session interactions, built in %s", job.CovisitFile, table.Len(), table.Edges(), len(visits), time.Since(t).Round(time.Millisecond)))

	a.meta = artifactMeta{Format: cacheFormat, Key: key, SchemaHash: fs.SchemaHash(), Width: layout.Width(), Hidden: o.Hidden,
		Metrics: metrics, BuiltAt: time.Now().UTC().Truncate(time.Second), BuildS: roundS(time.Since(start).Seconds())}
	if dir != "" {
		if err := writeCache(dir, a); err != nil {
			progress(fmt.Sprintf("could not cache the model artifacts (%v); the next run builds them again", err))
			a.dir = ""
		} else {
			progress("cached the model artifacts in " + dir)
		}
	}
	return a, nil
}

// readCache reads a complete cache entry and checks that its ranker reads
// rows of layout.
func readCache(dir string, layout *features.Layout) (*artifacts, error) {
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return nil, err
	}
	a := &artifacts{files: map[string][]byte{}, cached: true, dir: dir}
	if err := json.Unmarshal(b, &a.meta); err != nil {
		return nil, fmt.Errorf("%s: %w", metaFile, err)
	}
	if a.meta.Format != cacheFormat || a.meta.Width != layout.Width() {
		return nil, fmt.Errorf("%s describes format %d, width %d; want format %d, width %d", metaFile, a.meta.Format, a.meta.Width, cacheFormat, layout.Width())
	}
	for _, name := range artifactNames {
		if a.files[name], err = os.ReadFile(filepath.Join(dir, name)); err != nil {
			return nil, fmt.Errorf("incomplete: %w", err)
		}
	}
	m, err := ranker.ParseONNX(a.files[job.RankerFile])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", job.RankerFile, err)
	}
	if m.Width != layout.Width() {
		return nil, fmt.Errorf("%s reads rows of %d values, the layout has %d", job.RankerFile, m.Width, layout.Width())
	}
	return a, nil
}

// writeCache saves an entry: the artifacts and then the meta into a
// temporary folder that is renamed into place, so a reader never sees half
// an entry and two concurrent builds leave one whole entry.
func writeCache(dir string, a *artifacts) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, name := range artifactNames {
		if err := os.WriteFile(filepath.Join(tmp, name), a.files[name], 0o644); err != nil {
			return err
		}
	}
	b, err := json.MarshalIndent(a.meta, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tmp, metaFile), b, 0o644); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// trainingRows assembles synthetic training examples through a store over
// the world just written: each of TrainRows/candidatesPerExample requests
// of a random user at a random hour of the last week ranks items of the
// user's favourite categories and items from anywhere; each row's label is
// drawn from labelProb of the row's own values, so the ranker learns what
// serving will feed it.
func trainingRows(ctx context.Context, cfg config.Config, fs *features.FeatureSet, obj *objstore.Store, rdb redis.UniversalClient,
	g *gen, layout *features.Layout, o Options) (rows, labels, probs []float32, err error) {
	store, err := online.New(fs, rdb, online.ObjectSnapshots{Store: obj}, online.Options{
		KeyPrefix: cfg.Features.KeyPrefix,
		// Training reads must not fall back to defaults on a slow read.
		UserReadTimeout: 5 * time.Second,
	})
	if err != nil {
		return nil, nil, nil, err
	}
	if err := store.Refresh(ctx); err != nil {
		return nil, nil, nil, fmt.Errorf("servingworld: load the world's features for training: %w", err)
	}
	if err := store.RefreshNearline(ctx); err != nil {
		return nil, nil, nil, fmt.Errorf("servingworld: load the world's nearline features for training: %w", err)
	}
	asm, err := store.NewAssembler(layout)
	if err != nil {
		return nil, nil, nil, err
	}
	label, err := newLabeler(layout)
	if err != nil {
		return nil, nil, nil, err
	}
	w := layout.Width()
	requests := max(o.TrainRows/candidatesPerExample, 2)
	rows = make([]float32, 0, requests*candidatesPerExample*w)
	labels = make([]float32, 0, requests*candidatesPerExample)
	probs = make([]float32, 0, requests*candidatesPerExample)
	rng := rand.New(rand.NewPCG(o.Seed, 0x7a1))
	ids := make([]string, candidatesPerExample)
	dst := make([]float32, candidatesPerExample*w)
	now := time.Now()
	for range requests {
		u := rng.IntN(len(g.userIDs))
		for k := range ids {
			var i int32
			if k < favouriteCandidates {
				i = g.pickFavourite(u, rng)
			} else {
				i = g.pickAny(rng)
			}
			ids[k] = g.itemIDs[i]
		}
		at := now.Add(-time.Duration(rng.IntN(7*24*60)) * time.Minute)
		rc := features.RequestContext{Time: at, TimeZone: timeZones[g.tz[u]], SessionID: sessionID(g.userIDs[u])}
		if err := asm.Assemble(ctx, g.userIDs[u], ids, online.Request{Context: rc, Now: now}, dst, nil); err != nil {
			return nil, nil, nil, fmt.Errorf("servingworld: assemble training rows: %w", err)
		}
		for k := range ids {
			row := dst[k*w : (k+1)*w]
			rows = append(rows, row...)
			y, p := float32(0), label.prob(row)
			probs = append(probs, float32(p))
			if rng.Float64() < p {
				y = 1
			}
			labels = append(labels, y)
		}
	}
	return rows, labels, probs, nil
}

// labeler computes the synthetic click probability of a row.
type labeler struct {
	affinity, category, clicks, ctr, age int // offsets, -1 when absent
	affinityWidth                        int
}

func newLabeler(layout *features.Layout) (*labeler, error) {
	l := &labeler{affinity: -1, category: -1, clicks: -1, ctr: -1, age: -1}
	for _, c := range layout.Columns() {
		switch c.Name {
		case "user_category_affinity":
			l.affinity, l.affinityWidth = c.Offset, c.Width
		case "item_category_id":
			l.category = c.Offset
		case "item_clicks_7d":
			l.clicks = c.Offset
		case "item_ctr_7d":
			l.ctr = c.Offset
		case "item_age_hours":
			l.age = c.Offset
		}
	}
	if (l.affinity < 0 || l.category < 0) && l.clicks < 0 && l.ctr < 0 {
		return nil, fmt.Errorf("servingworld: the ranker layout lacks every feature the synthetic labels depend on (user_category_affinity with item_category_id, item_clicks_7d, item_ctr_7d): the ranker would learn a constant")
	}
	return l, nil
}

// prob is the click probability of a row: likelier for the user's
// favourite categories, popular items, items with a high CTR, and fresh
// items.
func (l *labeler) prob(row []float32) float64 {
	z := -3.0
	if l.affinity >= 0 && l.category >= 0 {
		if c := int(row[l.category]); c >= 0 && c < l.affinityWidth {
			z += 5 * float64(row[l.affinity+c])
		}
	}
	if l.clicks >= 0 {
		z += 0.3 * math.Log1p(max(float64(row[l.clicks]), 0))
	}
	if l.ctr >= 0 {
		z += 30 * (float64(row[l.ctr]) - 0.03)
	}
	if l.age >= 0 && row[l.age] < freshHours {
		z += 0.6
	}
	return 1 / (1 + math.Exp(-z))
}

// metricLabelAUC is the AUC of the labels' own probabilities on the
// held-out examples: the ceiling of the ranker's.
const metricLabelAUC = "label_auc"

// trainRanker trains on nine tenths of the rows with the training job's
// defaults, measures AUC and log loss on the rest, and exports to ONNX.
func trainRanker(ctx context.Context, rows, labels, probs []float32, layout *features.Layout, o Options, progress func(string)) ([]byte, map[string]float64, error) {
	w := layout.Width()
	n := len(labels)
	split := n - n/10
	res, err := ranker.Train(ctx, ranker.Dataset{Rows: rows[:split*w], Labels: labels[:split], Width: w}, ranker.Config{
		Hidden: o.Hidden, Epochs: job.DefaultEpochs, BatchSize: job.DefaultBatchSize, LearningRate: job.DefaultLearningRate,
		Seed: o.Seed, Schema: layout.Schema(),
		Progress: func(p ranker.Progress) {
			progress(fmt.Sprintf("ranker epoch %d/%d: loss %.4f, %.0f rows/s", p.Epoch, p.Epochs, p.Loss, p.RowsPerSec))
		},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("servingworld: train the ranker: %w", err)
	}
	scores, err := res.Model.Predict(rows[split*w:], n-split)
	if err != nil {
		return nil, nil, err
	}
	auc, err := ranker.AUC(scores, labels[split:])
	if err != nil {
		return nil, nil, fmt.Errorf("servingworld: held-out examples: %w", err)
	}
	loss, err := ranker.LogLoss(scores, labels[split:])
	if err != nil {
		return nil, nil, err
	}
	ceiling, err := ranker.AUC(probs[split:], labels[split:])
	if err != nil {
		return nil, nil, err
	}
	onnx, err := res.Model.ExportONNX()
	if err != nil {
		return nil, nil, err
	}
	return onnx, map[string]float64{job.MetricAUC: auc, job.MetricLogLoss: loss, metricLabelAUC: ceiling}, nil
}

// itemVectors returns the items' 64-dimensional vectors, as ALS would
// give them: the direction of the item's category plus noise, longer for
// more popular items.
func (g *gen) itemVectors() []float32 {
	top := 0.0
	for _, c := range g.clicks {
		top = max(top, math.Log1p(float64(c)))
	}
	top = max(top, 1)
	out := make([]float32, 0, len(g.itemIDs)*EmbeddingDims)
	for i := range g.itemIDs {
		scale := 0.4 + 0.6*math.Log1p(float64(g.clicks[i]))/top
		c := g.centroids64[g.cat[i]]
		h := hash(g.seed, uint64(i), 0x64)
		for d := range EmbeddingDims {
			out = append(out, float32(scale*(float64(c[d])+0.08*normal(hash(h, uint64(d))))))
		}
	}
	return out
}

// visits returns the positives the co-visitation table learns from: the
// users' past sessions over the last week and their current one.
func (g *gen) visits(now time.Time) []covisit.Interaction {
	rng := rand.New(rand.NewPCG(g.seed, 0xc0))
	var out []covisit.Interaction
	add := func(u int, items []int32, end time.Time) {
		// items are newest first.
		t := end
		for _, i := range items {
			out = append(out, covisit.Interaction{User: g.userIDs[u], Item: g.itemIDs[i], Time: t, Weight: 1})
			t = t.Add(-time.Duration(40+rng.IntN(80)) * time.Second)
		}
	}
	for u := range g.userIDs {
		for p := range pastSessions {
			end := now.Add(-time.Duration(p+1)*24*time.Hour - time.Duration(rng.IntN(12*60))*time.Minute)
			add(u, g.sessionItems(u, rng, pastSessionItems), end)
		}
		if s := g.session[u]; len(s) > 0 {
			add(u, s, now.Add(-time.Minute))
		}
	}
	return out
}

// userVectors folds every user with a past session in against the IVF's
// item vectors (Index.Embedder), from the items of their sessions that
// ended before now minus an hour: the vectors the training job's ALS gives
// the users it trained on, and what serving falls back on for a user
// without recent items. The current sessions stay out, as a training run
// would not have seen them.
func (g *gen) userVectors(ctx context.Context, ivf *retrieval.Index, visits []covisit.Interaction, now time.Time) (*retrieval.UserVectors, error) {
	emb, err := ivf.Embedder()
	if err != nil {
		return nil, fmt.Errorf("servingworld: user vectors: %w", err)
	}
	trainedBefore := now.Add(-time.Hour)
	var ids []string
	var vecs, vec []float32
	var items []int32
	// visits hold each user's sessions together.
	for k := 0; k < len(visits); {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		user := visits[k].User
		items = items[:0]
		for ; k < len(visits) && visits[k].User == user; k++ {
			if i, ok := ivf.Lookup(visits[k].Item); ok && visits[k].Time.Before(trainedBefore) {
				items = append(items, i)
			}
		}
		if len(items) == 0 {
			continue
		}
		if vec, err = emb.Embed(vec, items, nil); err != nil {
			return nil, fmt.Errorf("servingworld: user vectors: user %s: %w", user, err)
		}
		ids, vecs = append(ids, user), append(vecs, vec...)
	}
	u, err := retrieval.NewUserVectors(ids, vecs, ivf.Dims())
	if err != nil {
		return nil, fmt.Errorf("servingworld: user vectors: %w", err)
	}
	return u, nil
}

// registerModel registers the artifacts as a version of cfg.Server.Model
// through the registry and promotes it to production; it returns the
// version.
func registerModel(ctx context.Context, cfg config.Config, fs *features.FeatureSet, obj *objstore.Store, pub registry.Publisher,
	layout *features.Layout, a *artifacts, o Options) (string, error) {
	c := &registry.Client{Store: obj, Events: pub, Producer: Producer, Features: fs}
	roles := map[string]registry.Role{
		job.RankerFile: registry.RoleRanker, job.IndexFile: registry.RoleIndex, job.ANNFile: job.ANNRole, job.CovisitFile: job.CovisitRole,
		job.UsersFile: job.UsersRole,
	}
	req := registry.RegisterRequest{
		Model: cfg.Server.Model, Schema: layout.Schema(),
		TrainingSet: "servingworld/" + a.meta.Key, CodeVersion: "servingworld/" + strconv.Itoa(cacheFormat),
		Parameters: map[string]string{
			"world.items": strconv.Itoa(o.Items), "world.users": strconv.Itoa(o.Users), "world.seed": strconv.FormatUint(o.Seed, 10),
			"world.pairs_per_user": strconv.Itoa(o.PairsPerUser), "world.train_rows": strconv.Itoa(o.TrainRows),
			"ranker.hidden": joinInts(o.Hidden),
		},
		Metrics: a.meta.Metrics, Actor: Producer, Reason: "synthetic serving world (adaptrec bench serving)",
	}
	for _, name := range artifactNames {
		req.Artifacts = append(req.Artifacts, registry.Artifact{Name: name, Role: roles[name], Data: a.files[name]})
	}
	m, err := c.Register(ctx, req)
	if err != nil && !errors.Is(err, registry.ErrExists) {
		return "", fmt.Errorf("servingworld: register the world's model: %w", err)
	}
	if _, err := c.Apply(ctx, cfg.Server.Model, registry.Change{
		Action: registry.ActionPromote, Version: m.Version, Actor: Producer, Reason: req.Reason,
	}); err != nil {
		return "", fmt.Errorf("servingworld: promote %s@%s: %w", cfg.Server.Model, m.Version, err)
	}
	return m.Version, nil
}

func describeHidden(h []int) string {
	if len(h) == 0 {
		return "logistic regression"
	}
	return "MLP [" + joinInts(h) + "]"
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func mean(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x)
	}
	return s / float64(max(len(v), 1))
}
