// Package servingworld builds a synthetic but self-consistent world for a
// serving instance: an item catalogue with meaningful attributes, users
// with interests, the features of both in the online store, and a model
// version in the registry that was trained on them, all written through the
// same paths production uses (feature snapshots flipped by the batch lane's
// publish step and preloaded into Redis, nearline values through
// online.Writer, the model through registry.Client). A serving.Instance
// pointed at the same configuration then serves the world as it would
// serve real traffic, which is what `adaptrec bench serving` measures.
//
// The world is coherent where serving looks: items belong to one of the
// categories of user_category_affinity and cluster by category in the
// embedding space the ANN index searches, users favour two or three
// categories and their sessions hold items of those, co-visitation comes
// from the same sessions, popularity follows a Zipf law, a few percent of
// items are fresh, flagged or promoted, and the ranker's labels depend on
// the user's affinity for the item's category, its popularity, CTR and
// freshness, so scores are neither constant nor random. Every other feature
// gets a plausible value from a hash of the entity and the feature.
//
// Building the model artifacts (ranker, IVF and HNSW indexes, co-visitation
// table, user vectors) over 200,000 items takes tens of seconds on two
// cores, so they are cached on disk under a key of everything they depend on
// (Options.CacheDir); the features are written afresh on every Build because
// they go to servers that usually start empty.
package servingworld

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/online"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/trainer/job"
)

// Defaults of Options.
const (
	DefaultItems        = 200_000
	DefaultUsers        = 20_000
	DefaultPairsPerUser = 20
	DefaultTrainRows    = 60_000
	DefaultSeed         = 1
	// EmbeddingDims is the dimension of the item vectors the IVF and ANN
	// indexes hold, that of the training job's ALS factors.
	EmbeddingDims = 64
	// NumItems is how many items World.Request asks for.
	NumItems = 20
)

// Options size the world. Zero values mean the defaults.
type Options struct {
	// Items is the catalogue size (DefaultItems); Users the users with
	// features (DefaultUsers).
	Items, Users int
	// PairsPerUser is how many items each user has user×item batch values
	// for (DefaultPairsPerUser; negative: none).
	PairsPerUser int
	// Hidden are the ranker's hidden layer sizes: nil means the training
	// job's job.DefaultHidden, an empty non-nil slice logistic regression.
	Hidden []int
	// TrainRows is how many synthetic examples the ranker learns from
	// (DefaultTrainRows); a tenth of them measure it.
	TrainRows int
	// Seed makes the world reproducible (DefaultSeed).
	Seed uint64
	// CacheDir holds built model artifacts between runs, in a folder per
	// key of everything they depend on; "" means DefaultCacheDir, "-" no
	// cache.
	CacheDir string
}

// WithDefaults returns the options with every default filled in.
func (o Options) WithDefaults() Options {
	o.Items = cmp.Or(o.Items, DefaultItems)
	o.Users = cmp.Or(o.Users, DefaultUsers)
	o.PairsPerUser = cmp.Or(o.PairsPerUser, DefaultPairsPerUser)
	o.PairsPerUser = max(o.PairsPerUser, 0)
	if o.Hidden == nil {
		o.Hidden = slices.Clone(job.DefaultHidden)
	}
	o.TrainRows = cmp.Or(o.TrainRows, DefaultTrainRows)
	o.Seed = cmp.Or(o.Seed, DefaultSeed)
	return o
}

// Validate reports every option out of range.
func (o Options) Validate() error {
	var errs []error
	if o.Items < 0 || (o.Items > 0 && o.Items < 100) || o.Items > 5_000_000 {
		errs = append(errs, fmt.Errorf("items must be in 100..5000000 (0: %d), got %d", DefaultItems, o.Items))
	}
	if o.Users < 0 || (o.Users > 0 && o.Users < 10) || o.Users > 5_000_000 {
		errs = append(errs, fmt.Errorf("users must be in 10..5000000 (0: %d), got %d", DefaultUsers, o.Users))
	}
	if o.PairsPerUser > 1000 {
		errs = append(errs, fmt.Errorf("pairs per user must be at most 1000, got %d", o.PairsPerUser))
	}
	for _, h := range o.Hidden {
		if h < 1 || h > 4096 {
			errs = append(errs, fmt.Errorf("hidden layer sizes must be in 1..4096, got %v", o.Hidden))
			break
		}
	}
	if o.TrainRows < 0 || (o.TrainRows > 0 && o.TrainRows < 1000) || o.TrainRows > 5_000_000 {
		errs = append(errs, fmt.Errorf("train rows must be in 1000..5000000 (0: %d), got %d", DefaultTrainRows, o.TrainRows))
	}
	return errors.Join(errs...)
}

// World is a built world: what was written where, and what a load
// generator needs to send realistic requests.
type World struct {
	// Options are the resolved options it was built with.
	Options Options
	// Model is the registry model (cfg.Server.Model) and Version the
	// version Build registered and promoted to production.
	Model, Version string
	// Cached says the model artifacts came from the cache.
	Cached bool
	// CacheDir is the folder the artifacts were read from or saved to;
	// empty without a cache.
	CacheDir string
	// Layout is the ranker's input layout: every ranker input of the
	// definitions.
	Layout *features.Layout
	// Metrics are the ranker's on its held-out examples (auc, logloss).
	Metrics map[string]float64
	// Snapshots maps each batch group to the version made current.
	Snapshots map[string]string
	// Timings are the seconds each step took.
	Timings map[string]float64

	cfg config.Config
	fs  *features.FeatureSet
	g   *gen
	rdb *redis.Client
	w   *online.Writer
}

// ItemIDs returns the catalogue's item ids, in index order (shared: do
// not modify).
func (w *World) ItemIDs() []string { return w.g.itemIDs }

// UserIDs returns the users' ids, in index order (shared: do not modify).
func (w *World) UserIDs() []string { return w.g.userIDs }

// ItemIndex returns the index of an item id.
func (w *World) ItemIndex(id string) (int, bool) {
	i, ok := w.g.itemIndex[id]
	return int(i), ok
}

// Category returns item i's category.
func (w *World) Category(i int) int { return int(w.g.cat[i]) }

// Flagged reports whether moderation flagged item i.
func (w *World) Flagged(i int) bool { return w.g.flagged[i] }

// Favourites returns user u's favourite categories, strongest first.
func (w *World) Favourites(u int) []int {
	out := make([]int, len(w.g.fav[u]))
	for i, c := range w.g.fav[u] {
		out[i] = int(c)
	}
	return out
}

// InSession reports whether user u is in a session: the nearline store
// holds the session's recent items. Users who are not are returning users
// whom serving knows only by their features and the model's stored user
// vector.
func (w *World) InSession(u int) bool { return len(w.g.session[u]) > 0 }

// Request returns a realistic RecommendRequest of user u (an index of
// UserIDs) for NumItems items: a few recent items from the user's
// favourite categories (the session's, when the user has one), the user's
// usual device and time zone, a session id matching the nearline session,
// and the home or item page surface. rng picks among the variations.
func (w *World) Request(u int, rng *rand.Rand) *adaptrecv1.RecommendRequest {
	g := w.g
	surface := "home"
	if rng.IntN(5) == 0 {
		surface = "item_page"
	}
	var recent []string
	n := 2 + rng.IntN(3)
	if s := g.session[u]; len(s) > 0 {
		for _, i := range s[:min(n, len(s))] {
			recent = append(recent, g.itemIDs[i])
		}
	}
	for len(recent) < n {
		recent = append(recent, g.itemIDs[g.pickFavourite(u, rng)])
	}
	return &adaptrecv1.RecommendRequest{
		UserId:   g.userIDs[u],
		NumItems: NumItems,
		Surface:  surface,
		Context: &adaptrecv1.RequestContext{
			Device:        adaptrecv1.Device(g.device[u] + 1),
			TimeZone:      timeZones[g.tz[u]],
			SessionId:     sessionID(g.userIDs[u]),
			RecentItemIds: recent,
		},
	}
}

// Close releases the Redis client.
func (w *World) Close() error { return w.rdb.Close() }

// Build creates the world on the servers of cfg: feature snapshots of
// every batch group on S3 (cfg.S3), made current by the batch lane's
// publish step, which preloads the user groups into Redis under
// cfg.Features.KeyPrefix; nearline values of the active items and of the
// users in a session; and a model version of cfg.Server.Model trained on
// the world, registered and promoted to production. Snapshot and model
// lifecycle events go to cfg.Kafka, whose topics it creates when missing.
// progress receives one line per step.
func Build(ctx context.Context, cfg config.Config, opts Options, progress func(string)) (*World, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	o := opts.WithDefaults()
	if progress == nil {
		progress = func(string) {}
	}
	start := time.Now()
	timings := map[string]float64{}
	step := func(name string, since time.Time) { timings[name] = roundS(time.Since(since).Seconds()) }

	fs, err := features.Load(cfg.Features.File)
	if err != nil {
		return nil, err
	}
	obj, err := objstore.New(ctx, cfg.S3)
	if err != nil {
		return nil, err
	}
	if err := obj.EnsureBucket(ctx); err != nil {
		return nil, err
	}
	if err := events.EnsureTopics(ctx, cfg.Kafka); err != nil {
		return nil, fmt.Errorf("servingworld: create the event topics on %v: %w", cfg.Kafka.Brokers, err)
	}
	producer, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{})
	if err != nil {
		return nil, err
	}
	defer producer.Close()
	rdb := online.NewClient(cfg.Redis)
	ok := false
	defer func() {
		if !ok {
			rdb.Close()
		}
	}()
	wr, err := online.NewWriter(rdb, fs, online.WriterOptions{KeyPrefix: cfg.Features.KeyPrefix})
	if err != nil {
		return nil, err
	}

	t := time.Now()
	g, err := newGen(fs, o)
	if err != nil {
		return nil, err
	}
	progress(fmt.Sprintf("generated %d items (%d categories, %d creators; %d fresh, %d flagged, %d promoted) and %d users in %s",
		o.Items, g.categories, g.creators, g.count(g.fresh), g.count(g.flagged), g.count(g.promoted), o.Users, time.Since(t).Round(time.Millisecond)))
	step("generate", t)

	w := &World{Options: o, Model: cfg.Server.Model, cfg: cfg, fs: fs, g: g, rdb: rdb, w: wr, Timings: timings}
	asOf := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	t = time.Now()
	if w.Snapshots, err = publishSnapshots(ctx, obj, fs, g, producer, rdb, cfg.Features.KeyPrefix, asOf, progress); err != nil {
		return nil, err
	}
	step("snapshots", t)

	t = time.Now()
	items, users, err := w.WriteNearline(ctx, time.Now())
	if err != nil {
		return nil, err
	}
	progress(fmt.Sprintf("wrote nearline values of %d active items and %d users in a session in %s", items, users, time.Since(t).Round(time.Millisecond)))
	step("nearline", t)

	t = time.Now()
	layout, err := rankerLayout(fs)
	if err != nil {
		return nil, err
	}
	w.Layout = layout
	arts, err := buildModel(ctx, cfg, fs, obj, rdb, g, layout, o, progress)
	if err != nil {
		return nil, err
	}
	w.Cached, w.CacheDir, w.Metrics = arts.cached, arts.dir, arts.meta.Metrics
	step("model", t)

	t = time.Now()
	if w.Version, err = registerModel(ctx, cfg, fs, obj, producer, layout, arts, o); err != nil {
		return nil, err
	}
	progress(fmt.Sprintf("registered %s@%s and promoted it to production in %s", w.Model, w.Version, time.Since(t).Round(time.Millisecond)))
	step("register", t)
	timings["total"] = roundS(time.Since(start).Seconds())
	ok = true
	return w, nil
}

// rankerLayout is the layout of every ranker input of the definitions, the
// widest row a model of them can read.
func rankerLayout(fs *features.FeatureSet) (*features.Layout, error) {
	var names []string
	for _, f := range fs.RankerInputs() {
		names = append(names, f.Name)
	}
	return fs.NewLayout(names)
}

func roundS(s float64) float64 { return float64(int64(s*100+0.5)) / 100 }
