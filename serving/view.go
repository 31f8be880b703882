package serving

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/adaptrec/adaptrec/features/online"
	"github.com/adaptrec/adaptrec/internal/fnv1a"
	"github.com/adaptrec/adaptrec/serving/catalog"
	"github.com/adaptrec/adaptrec/serving/retrieve"
)

// binding is a model tied to one catalogue: its ANN ids translated to
// catalogue indexes and back, computed once per (model, catalogue) pair in
// the background so a request never builds a map.
type binding struct {
	m         *Model
	annToCat  []int32 // ANN id (= IVF item) → catalogue index, -1 absent
	catToIVF  []int32 // catalogue index → IVF item, -1 absent
	covisit   *covisitSource
	retriever *retrieve.Retriever
}

func newBinding(m *Model, cat *catalog.Catalog) *binding {
	b := &binding{m: m}
	b.annToCat, b.catToIVF = cat.Translate(m.ivf.Len(), m.ivf.ID)
	return b
}

// view is everything a request reads, from one model set and one
// catalogue, published with one atomic store: no request mixes versions.
type view struct {
	cat                  *catalog.Catalog
	set                  *ModelSet
	prod, canary, shadow *binding
	canaryWeight         float64
}

// arm names the experiment arm a user's requests go to.
const (
	ArmProduction = "production"
	ArmCanary     = "canary"
	ArmShadow     = "shadow"
)

// canaryHash maps a user to [0, 1) stably within a process and across
// processes: a fixed FNV-1a, not maphash, so every serving instance routes a
// user to the same arm.
func canaryHash(user string) float64 {
	h := fnv1a.String(user)
	// Finalize (splitmix64) so nearby ids spread evenly.
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return float64(h>>11) / (1 << 53)
}

// route picks the model for a user: the canary for a stable share of users,
// else production.
func (v *view) route(user string) (*binding, string) {
	if v.canary != nil && v.canaryWeight > 0 && canaryHash(user) < v.canaryWeight {
		return v.canary, ArmCanary
	}
	return v.prod, ArmProduction
}

// viewKeeper rebuilds the catalogue from the store and publishes views as
// the catalogue or the models change.
type viewKeeper struct {
	store    *online.Store
	models   *ModelManager
	log      *slog.Logger
	interval time.Duration
	bind     func(m *Model, cat *catalog.Catalog, same *binding) (*binding, error)
	cur      atomic.Pointer[view]
	refresh  chan struct{}
	// built is the item generation the current catalogue was built from.
	built online.ItemsGeneration
}

func newViewKeeper(store *online.Store, models *ModelManager, log *slog.Logger, interval time.Duration, bind func(*Model, *catalog.Catalog, *binding) (*binding, error)) *viewKeeper {
	k := &viewKeeper{store: store, models: models, log: log, interval: interval, bind: bind, refresh: make(chan struct{}, 1)}
	k.cur.Store(&view{set: &ModelSet{}})
	return k
}

// rebuildCatalog asks Run to rebuild the catalogue now (a snapshot flip).
func (k *viewKeeper) rebuildCatalog() {
	select {
	case k.refresh <- struct{}{}:
	default:
	}
}

// build makes a view from a catalogue and the current model set, reusing
// the bindings of prev that still apply.
func (k *viewKeeper) build(cat *catalog.Catalog, set *ModelSet, prev *view) *view {
	v := &view{cat: cat, set: set, canaryWeight: set.Aliases.CanaryWeight}
	sameItems := prev != nil && prev.cat != nil && prev.cat.SameItems(cat)
	reuse := func(m *Model) *binding {
		if m == nil {
			return nil
		}
		var old *binding
		if prev != nil {
			for _, b := range []*binding{prev.prod, prev.canary, prev.shadow} {
				if b != nil && b.m == m {
					old = b
				}
			}
		}
		if old != nil && prev.cat == cat {
			return old
		}
		if !sameItems {
			old = nil // its id maps index another catalogue
		}
		b, err := k.bind(m, cat, old)
		if err != nil {
			k.log.Error("serving: cannot bind a model to the catalogue; it is not served", "version", m.Version, "err", err)
			return nil
		}
		return b
	}
	v.prod, v.canary, v.shadow = reuse(set.Production), reuse(set.Canary), reuse(set.Shadow)
	return v
}

// loadCatalog builds a catalogue and publishes a view with it, unless the
// item features did not change since the current one was built.
func (k *viewKeeper) loadCatalog(ctx context.Context) error {
	gen := k.store.ItemsGeneration()
	if k.cur.Load().cat != nil && gen == k.built {
		return nil
	}
	// Paced: the build is ~50 ms of CPU at 200,000 items, which run in one
	// go (or with 1 ms pauses, as before) held a core of two away from
	// requests and was the tail's one stall second every 30 s in bench
	// serving; at a quarter of a core it spreads over ~0.2 s.
	cat, err := catalog.Build(ctx, k.store, time.Now(), catalog.BuildOptions{Share: 0.25})
	if err != nil {
		return err
	}
	k.built = gen
	k.cur.Store(k.build(cat, k.models.Set(), k.cur.Load()))
	return nil
}

// Run keeps the view current until ctx ends: a new model set is bound at
// once, the catalogue is rebuilt every interval and on rebuildCatalog.
func (k *viewKeeper) Run(ctx context.Context) {
	t := time.NewTicker(k.interval)
	defer t.Stop()
	for {
		changed := k.models.Changed()
		if set := k.models.Set(); set != k.cur.Load().set {
			if cur := k.cur.Load(); cur.cat != nil {
				k.cur.Store(k.build(cur.cat, set, cur))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
			continue
		case <-t.C:
		case <-k.refresh:
		}
		if err := k.loadCatalog(ctx); err != nil && ctx.Err() == nil {
			k.log.Warn("serving: catalogue rebuild failed; serving the previous one", "err", err)
		}
	}
}
