package serving

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/adaptrec/adaptrec/features/online"
	"github.com/adaptrec/adaptrec/internal/onnxrt"
	"github.com/adaptrec/adaptrec/registry"
)

var (
	modelLoadsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_serving_model_loads_total",
		Help: "Model version loads by outcome (ok, error).",
	}, []string{"outcome"})
	modelServing = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "adaptrec_serving_model_info",
		Help: "1 for the model version each alias serves on this instance.",
	}, []string{"alias", "version"})
)

// RegistrySource is what the model manager reads; *registry.Client is one.
type RegistrySource interface {
	ModelSource
	Aliases(ctx context.Context, model string) (registry.Aliases, error)
}

// ModelSet is the models one request may use, all from one aliases
// revision: requests read a set once, so none mixes versions.
type ModelSet struct {
	Aliases    registry.Aliases
	Production *Model
	Canary     *Model // with Aliases.CanaryWeight of the traffic
	Shadow     *Model
}

// ModelManager keeps the models the registry's aliases name loaded and
// publishes them as one ModelSet. It reconciles on a timer and whenever
// Trigger is called (a ModelLifecycleEvent), so a lost event delays a swap
// but never loses it. A version that fails to load (a corrupt artifact, an
// incompatible schema) is not served: the alias keeps its previous model on
// this instance, the failure is logged and counted, and it is retried after
// RetryFailed.
type ModelManager struct {
	src   RegistrySource
	store *online.Store
	name  string
	ort   onnxrt.Options
	log   *slog.Logger
	// Grace is how long a replaced model stays open for requests that
	// picked it before the swap; RetryFailed how long a failed version
	// waits before it is loaded again.
	Grace, RetryFailed time.Duration

	set     atomic.Pointer[ModelSet]
	trigger chan struct{}
	// changed is closed and replaced on every published set; chMu guards
	// it alone, so waiting for a change never waits for a model load.
	chMu    sync.Mutex
	changed chan struct{}

	mu     sync.Mutex // serializes Reconcile
	loaded map[string]*Model
	failed map[string]failure
}

type failure struct {
	at  time.Time
	err error
}

// NewModelManager returns a manager of the named model's aliases.
func NewModelManager(src RegistrySource, store *online.Store, model string, ort onnxrt.Options, log *slog.Logger) *ModelManager {
	mm := &ModelManager{
		src: src, store: store, name: model, ort: ort, log: log,
		Grace: 30 * time.Second, RetryFailed: time.Minute,
		trigger: make(chan struct{}, 1), changed: make(chan struct{}),
		loaded: map[string]*Model{}, failed: map[string]failure{},
	}
	mm.set.Store(&ModelSet{})
	return mm
}

// Set returns the current models.
func (mm *ModelManager) Set() *ModelSet { return mm.set.Load() }

// Changed returns a channel closed at the next published set.
func (mm *ModelManager) Changed() <-chan struct{} {
	mm.chMu.Lock()
	defer mm.chMu.Unlock()
	return mm.changed
}

// Trigger asks Run to reconcile now; it never blocks.
func (mm *ModelManager) Trigger() {
	select {
	case mm.trigger <- struct{}{}:
	default:
	}
}

// Run reconciles every interval and on Trigger until ctx ends.
func (mm *ModelManager) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := mm.Reconcile(ctx); err != nil && ctx.Err() == nil {
			mm.log.Warn("models: reconcile with the registry failed; serving what is loaded", "model", mm.name, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-mm.trigger:
		}
	}
}

// Reconcile reads the aliases and loads what they name. It returns an
// error when the aliases cannot be read or the production version cannot
// be loaded (the previous production model, if any, keeps serving).
func (mm *ModelManager) Reconcile(ctx context.Context) error {
	mm.mu.Lock()
	defer mm.mu.Unlock()
	al, err := mm.src.Aliases(ctx, mm.name)
	if err != nil {
		return err
	}
	cur := mm.set.Load()
	if cur.Aliases.Revision == al.Revision && cur.Aliases.Model != "" && mm.complete(cur, al) {
		return nil
	}
	var errs []error
	get := func(alias, version string, old *Model) *Model {
		if version == "" || version == registry.None {
			return nil
		}
		if m, ok := mm.loaded[version]; ok {
			return m
		}
		if f, ok := mm.failed[version]; ok && time.Since(f.at) < mm.RetryFailed {
			errs = append(errs, fmt.Errorf("%s %s: %w (not retried before %s)", alias, version, f.err, f.at.Add(mm.RetryFailed).Format(time.RFC3339)))
			return old
		}
		m, err := LoadModel(ctx, mm.src, mm.store, mm.name, version, mm.ort)
		if err != nil {
			modelLoadsTotal.WithLabelValues("error").Inc()
			mm.failed[version] = failure{at: time.Now(), err: err}
			errs = append(errs, fmt.Errorf("%s %s: %w", alias, version, err))
			return old // keep serving what this alias had
		}
		modelLoadsTotal.WithLabelValues("ok").Inc()
		delete(mm.failed, version)
		mm.loaded[version] = m
		mm.log.Info("models: loaded", "model", mm.name, "version", version, "alias", alias, "in", m.LoadedIn.Round(time.Millisecond))
		return m
	}
	next := &ModelSet{Aliases: al}
	next.Production = get(registry.AliasProduction, al.Production, cur.Production)
	next.Canary = get(registry.AliasCanary, al.Canary, nil)
	next.Shadow = get(registry.AliasShadow, al.Shadow, nil)
	mm.publish(next)
	return errors.Join(errs...)
}

// complete reports whether set serves everything al names.
func (mm *ModelManager) complete(set *ModelSet, al registry.Aliases) bool {
	is := func(m *Model, v string) bool {
		if v == "" || v == registry.None {
			return m == nil
		}
		return m != nil && m.Version == v
	}
	return is(set.Production, al.Production) && is(set.Canary, al.Canary) && is(set.Shadow, al.Shadow)
}

func (mm *ModelManager) publish(next *ModelSet) {
	mm.chMu.Lock()
	mm.set.Store(next)
	close(mm.changed)
	mm.changed = make(chan struct{})
	mm.chMu.Unlock()
	modelServing.Reset()
	for alias, m := range map[string]*Model{registry.AliasProduction: next.Production, registry.AliasCanary: next.Canary, registry.AliasShadow: next.Shadow} {
		if m != nil {
			modelServing.WithLabelValues(alias, m.Version).Set(1)
		}
	}
	// Close what no alias serves any more once the requests that picked it
	// before the swap are done. The previous production version stays
	// loaded when it is (it served until the cutover): a rollback then
	// swaps in a model already in memory, as a cutover does, instead of
	// loading it again (about a second at 200,000 items), at the cost of
	// one more model in memory.
	keep := map[*Model]bool{next.Production: true, next.Canary: true, next.Shadow: true}
	if m, ok := mm.loaded[next.Aliases.Previous]; ok {
		keep[m] = true
	}
	for v, m := range mm.loaded {
		if !keep[m] {
			delete(mm.loaded, v)
			time.AfterFunc(mm.Grace, func() { _ = m.Close() })
		}
	}
}
