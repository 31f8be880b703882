package bench

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/online"
	"github.com/adaptrec/adaptrec/features/snapshot"
)

// FeaturesTargetP99 is the goal of `adaptrec bench features`: all features
// of 1 user and 500 candidate items assembled within 1 ms at p99.
const FeaturesTargetP99 = time.Millisecond

// Defaults of FeaturesOptions.
const (
	DefaultFeaturesItems      = 200_000
	DefaultFeaturesUsers      = 20_000
	DefaultFeaturesCandidates = 500
	DefaultFeaturesDuration   = 5 * time.Second
	DefaultFeaturesWarmup     = time.Second
	DefaultNearlineWritesPerS = 1000
	DefaultPairsPerUser       = 100
	DefaultPairHits           = 50
	// pairNearlineItems of a user's pairs carry a nearline value.
	pairNearlineItems = 20
)

// FeaturesOptions configure RunFeatures. Zero values mean the defaults.
type FeaturesOptions struct {
	// Items is the catalogue size (DefaultFeaturesItems).
	Items int
	// Users is how many users have stored features (DefaultFeaturesUsers).
	Users int
	// Candidates per request (DefaultFeaturesCandidates).
	Candidates int
	// Concurrency is the number of goroutines assembling; GOMAXPROCS when 0.
	Concurrency int
	// Duration is how long requests are measured (DefaultFeaturesDuration),
	// after Warmup (DefaultFeaturesWarmup) unmeasured.
	Duration, Warmup time.Duration
	// NearlineWritesPerS is the rate at which a background writer updates
	// item and user nearline values while requests run, as the nearline
	// lane would (DefaultNearlineWritesPerS; negative: none). The store's
	// refresh loop runs throughout, so requests share the machine with
	// the work that keeps the caches fresh.
	NearlineWritesPerS int
	// PairsPerUser is how many items each user has user×item batch values
	// for (DefaultPairsPerUser; negative: none); the first 20 of them also
	// have user×item nearline values.
	PairsPerUser int
	// PairHits is how many of a request's candidates are items of the
	// user's pairs (DefaultPairHits, at most PairsPerUser and Candidates):
	// retrieval brings back items the user has seen.
	PairHits int
	// Seed makes the data and the requests reproducible.
	Seed uint64
	// Logf, when set, receives one line per step.
	Logf func(format string, args ...any)
	// Progress, when set, is called about every second while requests run.
	Progress func(FeaturesProgress)
}

// FeaturesProgress reports a running measurement.
type FeaturesProgress struct {
	Elapsed  time.Duration
	Requests int64
	// RatePerS is requests/s since the previous report.
	RatePerS float64
}

// FeaturesResult is what RunFeatures measured; its JSON names are those of
// `adaptrec bench features --json`.
type FeaturesResult struct {
	// ItemsPerRequest candidates per request, each a row of
	// FeaturesPerItem features (ValuesPerItem float32 values): every ranker
	// input of the definitions (user, item, user×item, request).
	ItemsPerRequest int `json:"items_per_request"`
	FeaturesPerItem int `json:"features_per_item"`
	ValuesPerItem   int `json:"values_per_item"`
	// ItemFeatures are the stored item features per row (batch, embedding
	// and nearline), served from the in-process cache.
	ItemFeatures int `json:"item_features"`
	// CatalogueItems and Users are the stored entities.
	CatalogueItems int `json:"catalogue_items"`
	Users          int `json:"users"`
	// PairsPerUser items of each user have user×item values; PairHits
	// candidates of each request are among them.
	PairsPerUser int `json:"pairs_per_user"`
	PairHits     int `json:"pair_hits_per_request"`
	// Concurrency is the number of goroutines assembling.
	Concurrency int `json:"concurrency"`
	// Requests were measured over DurationS seconds.
	Requests  int64   `json:"requests"`
	DurationS float64 `json:"duration_s"`
	// Latency quantiles of one Assemble call, in milliseconds.
	P50Ms float64 `json:"p50_ms"`
	P95Ms float64 `json:"p95_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	// ThroughputPerS is requests per second.
	ThroughputPerS float64 `json:"throughput_per_s"`
	// Degraded counts requests whose user features fell back to defaults,
	// DegradedReasons by reason (timeout, error, breaker_open).
	Degraded        int64            `json:"degraded"`
	DegradedReasons map[string]int64 `json:"degraded_reasons,omitempty"`
	// AllocsPerRequest and BytesPerRequest are heap allocations per
	// request over the measurement, background refreshes included.
	AllocsPerRequest float64 `json:"allocs_per_request"`
	BytesPerRequest  float64 `json:"bytes_per_request"`
	// NearlineWritesPerS is the background nearline write rate.
	NearlineWritesPerS int `json:"nearline_writes_per_s"`
	// LoadItemsS and LoadUsersS are the times to build the item caches and
	// to materialize the users' batch records in Redis.
	LoadItemsS float64 `json:"load_items_s"`
	LoadUsersS float64 `json:"load_users_s"`
	// HeapMB is the process's live heap after loading (item caches, their
	// records and index included), in MB.
	HeapMB float64 `json:"heap_mb"`
	// SchemaHash identifies the definitions.
	SchemaHash string `json:"schema_hash"`
}

func (o FeaturesOptions) withDefaults() FeaturesOptions {
	if o.Items == 0 {
		o.Items = DefaultFeaturesItems
	}
	if o.Users == 0 {
		o.Users = DefaultFeaturesUsers
	}
	if o.Candidates == 0 {
		o.Candidates = DefaultFeaturesCandidates
	}
	if o.Concurrency == 0 {
		o.Concurrency = runtime.GOMAXPROCS(0)
	}
	if o.Duration == 0 {
		o.Duration = DefaultFeaturesDuration
	}
	if o.Warmup == 0 {
		o.Warmup = DefaultFeaturesWarmup
	}
	if o.NearlineWritesPerS == 0 {
		o.NearlineWritesPerS = DefaultNearlineWritesPerS
	}
	if o.NearlineWritesPerS < 0 {
		o.NearlineWritesPerS = 0
	}
	if o.PairsPerUser == 0 {
		o.PairsPerUser = DefaultPairsPerUser
	}
	if o.PairsPerUser < 0 {
		o.PairsPerUser = 0
	}
	if o.PairHits == 0 {
		o.PairHits = DefaultPairHits
	}
	o.PairHits = max(0, min(o.PairHits, o.PairsPerUser, o.Candidates))
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return o
}

// Validate reports every invalid option.
func (o FeaturesOptions) Validate() error {
	var errs []error
	if o.Items < 0 || o.Items > 10_000_000 {
		errs = append(errs, fmt.Errorf("items must be in 1..10000000, got %d", o.Items))
	}
	if o.Users < 0 || o.Users > 10_000_000 {
		errs = append(errs, fmt.Errorf("users must be in 1..10000000, got %d", o.Users))
	}
	if o.Candidates < 0 || o.Candidates > 10_000 {
		errs = append(errs, fmt.Errorf("candidates must be in 1..10000, got %d", o.Candidates))
	}
	if o.Concurrency < 0 || o.Concurrency > 256 {
		errs = append(errs, fmt.Errorf("concurrency must be in 1..256, got %d", o.Concurrency))
	}
	if o.PairsPerUser > 10_000 {
		errs = append(errs, fmt.Errorf("pairs per user must be at most 10000, got %d", o.PairsPerUser))
	}
	if o.Duration < 0 || o.Warmup < 0 {
		errs = append(errs, fmt.Errorf("duration and warmup must be >= 0, got %s and %s", o.Duration, o.Warmup))
	}
	return errors.Join(errs...)
}

// RunFeatures measures online feature assembly against the Redis rdb talks
// to: it generates a catalogue of Items items and Users users with a value
// for every stored feature of fs, loads the item caches and writes the
// users' batch records and everyone's nearline values to Redis, then
// assembles every ranker input of fs for one random user and Candidates
// random items from Concurrency goroutines for Duration, timing each call.
// It writes below a key prefix of its own and deletes nothing: run it
// against a Redis that can be thrown away.
func RunFeatures(ctx context.Context, rdb redis.UniversalClient, fs *features.FeatureSet, opts FeaturesOptions) (FeaturesResult, error) {
	if err := opts.Validate(); err != nil {
		return FeaturesResult{}, err
	}
	o := opts.withDefaults()
	fx, err := setupFeatures(ctx, rdb, fs, o)
	if err != nil {
		return FeaturesResult{}, err
	}
	res := fx.res
	store, asm, layout, w, gen := fx.store, fx.asm, fx.layout, fx.w, fx.gen
	names := layout.Names()

	// Background: the refresh loop and the nearline lane's writes.
	bgCtx, stopBG := context.WithCancel(ctx)
	var bg sync.WaitGroup
	bg.Add(1)
	go func() {
		defer bg.Done()
		store.Run(bgCtx) //nolint:errcheck // returns the context's error
	}()
	if o.NearlineWritesPerS > 0 {
		bg.Add(1)
		go func() {
			defer bg.Done()
			gen.writeContinuously(bgCtx, w, o)
		}()
	}
	defer func() {
		stopBG()
		bg.Wait()
	}()

	o.Logf("assembling %d features × %d items per request from %d goroutines: %s warm-up, then %s measured",
		len(names), o.Candidates, o.Concurrency, o.Warmup, o.Duration)
	lat, reasons, elapsed, allocs, bytes, err := measure(ctx, asm, o, layout.Width())
	if err != nil {
		return res, err
	}
	sum := Summarize(lat)
	res.Requests = int64(sum.N)
	res.DurationS = Round(elapsed.Seconds(), 2)
	res.P50Ms, res.P95Ms, res.P99Ms, res.MaxMs = ms3(sum.P50), ms3(sum.P95), ms3(sum.P99), ms3(sum.Max)
	res.ThroughputPerS = Round(float64(sum.N)/elapsed.Seconds(), 0)
	for _, n := range reasons {
		res.Degraded += n
	}
	if len(reasons) > 0 {
		res.DegradedReasons = reasons
	}
	if sum.N > 0 {
		res.AllocsPerRequest = Round(float64(allocs)/float64(sum.N), 1)
		res.BytesPerRequest = Round(float64(bytes)/float64(sum.N), 0)
	}
	return res, nil
}

// featuresFixture is a loaded store ready to assemble.
type featuresFixture struct {
	res    FeaturesResult
	store  *online.Store
	asm    *online.Assembler
	layout *features.Layout
	w      *online.Writer
	gen    nearlineGen
}

// setupFeatures generates the data, loads it and builds an assembler of
// every ranker input.
func setupFeatures(ctx context.Context, rdb redis.UniversalClient, fs *features.FeatureSet, o FeaturesOptions) (*featuresFixture, error) {
	res := FeaturesResult{ItemsPerRequest: o.Candidates, CatalogueItems: o.Items, Users: o.Users,
		PairsPerUser: o.PairsPerUser, PairHits: o.PairHits, Concurrency: o.Concurrency, NearlineWritesPerS: o.NearlineWritesPerS, SchemaHash: fs.SchemaHash()}
	prefix := fmt.Sprintf("bench:features:%d:", time.Now().UnixNano())
	now := time.Now().UTC()
	snaps := newSynthSnapshots(fs, o, now.Add(-time.Hour))

	// Users' batch records and pair tables into Redis, as the batch lane
	// loads them.
	start := time.Now()
	for _, g := range fs.Groups() {
		if g.Lane != features.LaneBatch || (g.Entity != features.EntityUser && g.Entity != features.EntityUserItem) {
			continue
		}
		p, err := snaps.Current(ctx, g.Name)
		if err != nil {
			return nil, err
		}
		lo := online.LoadOptions{KeyPrefix: prefix, TTL: time.Hour}
		if g.Entity == features.EntityUserItem {
			stats, err := online.LoadPairsFromSnapshot(ctx, rdb, fs, snaps, g.Name, p.Version, lo)
			if err != nil {
				return nil, err
			}
			o.Logf("loaded %d user×item pairs of %d users of %s into Redis (%.1f MB) in %s", stats.Pairs, stats.Users, g.Name,
				float64(stats.Bytes)/1e6, stats.Duration.Round(time.Millisecond))
			continue
		}
		stats, err := online.LoadUsersFromSnapshot(ctx, rdb, fs, snaps, g.Name, p.Version, lo)
		if err != nil {
			return nil, err
		}
		o.Logf("loaded %d users of %s into Redis (%.1f MB) in %s", stats.Users, g.Name, float64(stats.Bytes)/1e6, stats.Duration.Round(time.Millisecond))
	}
	// Nearline values of every user and of a quarter of the items.
	w, err := online.NewWriter(rdb, fs, online.WriterOptions{KeyPrefix: prefix})
	if err != nil {
		return nil, err
	}
	gen := nearlineGen{fs: fs, seed: o.Seed}
	if err := gen.writeAll(ctx, w, o, now); err != nil {
		return nil, err
	}
	res.LoadUsersS = Round(time.Since(start).Seconds(), 2)
	o.Logf("wrote nearline values of %d users and %d items in %s", o.Users, (o.Items+3)/4, time.Since(start).Round(time.Millisecond))

	store, err := online.New(fs, rdb, snaps, online.Options{KeyPrefix: prefix})
	if err != nil {
		return nil, err
	}
	start = time.Now()
	if err := store.Refresh(ctx); err != nil {
		return nil, err
	}
	if err := store.RefreshNearline(ctx); err != nil {
		return nil, err
	}
	if err := store.Ready(); err != nil {
		return nil, err
	}
	res.LoadItemsS = Round(time.Since(start).Seconds(), 2)
	o.Logf("item caches hold %d items, loaded in %s", store.Items(), time.Since(start).Round(time.Millisecond))

	var names []string
	for _, f := range fs.RankerInputs() {
		names = append(names, f.Name)
		if f.Entity == features.EntityItem {
			res.ItemFeatures++
		}
	}
	layout, err := fs.NewLayout(names)
	if err != nil {
		return nil, err
	}
	res.FeaturesPerItem, res.ValuesPerItem = len(names), layout.Width()
	asm, err := store.NewAssembler(layout)
	if err != nil {
		return nil, err
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.HeapMB = Round(float64(ms.HeapAlloc)/1e6, 1)
	return &featuresFixture{res: res, store: store, asm: asm, layout: layout, w: w, gen: gen}, nil
}

// ms3 is milliseconds to 3 decimals: sub-millisecond latencies need them.
func ms3(d time.Duration) float64 { return Round(float64(d)/float64(time.Millisecond), 3) }

func measure(ctx context.Context, asm *online.Assembler, o FeaturesOptions, width int) (lat []time.Duration, degraded map[string]int64, elapsed time.Duration, allocs, bytes uint64, err error) {
	var (
		measuring atomic.Bool
		stop      atomic.Bool
		count     atomic.Int64
		wg        sync.WaitGroup
		mu        sync.Mutex
		firstErr  error
	)
	perWorker := make([][]time.Duration, o.Concurrency)
	perWorkerDegraded := make([]map[string]int64, o.Concurrency)
	itemIDs, userIDs := ids(o.Items, itemID), ids(o.Users, userID)
	for wk := range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(o.Seed, uint64(wk)+1))
			cands := make([]string, o.Candidates)
			dst := make([]float32, o.Candidates*width)
			var res online.Result
			own := make([]time.Duration, 0, 1<<16)
			reasons := map[string]int64{}
			for !stop.Load() {
				u := rng.IntN(o.Users)
				user := userIDs[u]
				for i := range cands {
					if i < o.PairHits {
						cands[i] = itemIDs[pairItem(o, u, i)]
						continue
					}
					cands[i] = itemIDs[rng.IntN(o.Items)]
				}
				t0 := time.Now()
				rctx := features.RequestContext{Time: t0, TimeZone: "Europe/Paris", SessionID: "s"}
				err := asm.Assemble(ctx, user, cands, online.Request{Context: rctx}, dst, &res)
				d := time.Since(t0)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					stop.Store(true)
					return
				}
				if measuring.Load() {
					own = append(own, d)
					count.Add(1)
					if res.Degraded {
						reasons[res.DegradedReason]++
					}
				}
			}
			perWorker[wk] = own
			perWorkerDegraded[wk] = reasons
		}()
	}
	select {
	case <-ctx.Done():
	case <-time.After(o.Warmup):
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	measuring.Store(true)
	tick := time.NewTicker(time.Second)
	last, lastN := start, int64(0)
	deadline := time.After(o.Duration)
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-deadline:
			break wait
		case t := <-tick.C:
			if o.Progress != nil {
				n := count.Load()
				o.Progress(FeaturesProgress{Elapsed: t.Sub(start), Requests: n, RatePerS: float64(n-lastN) / t.Sub(last).Seconds()})
				last, lastN = t, n
			}
		}
	}
	tick.Stop()
	measuring.Store(false)
	elapsed = time.Since(start)
	runtime.ReadMemStats(&after)
	stop.Store(true)
	wg.Wait()
	if firstErr != nil {
		return nil, nil, 0, 0, 0, fmt.Errorf("assemble: %w", firstErr)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, 0, 0, 0, err
	}
	degraded = map[string]int64{}
	for wk, w := range perWorker {
		lat = append(lat, w...)
		for r, n := range perWorkerDegraded[wk] {
			degraded[r] += n
		}
	}
	return lat, degraded, elapsed, after.Mallocs - before.Mallocs, after.TotalAlloc - before.TotalAlloc, nil
}

func itemID(i int) string { return fmt.Sprintf("item%07d", i) }
func userID(i int) string { return fmt.Sprintf("user%07d", i) }

// ids returns the ids of n entities, made once so that generating requests
// costs the measurement nothing.
func ids(n int, id func(int) string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = id(i)
	}
	return out
}

// synthSnapshots serves generated snapshots of every batch group: the
// benchmark measures assembly, not the object store.
type synthSnapshots struct {
	groups map[string]*synthSnapshot
}

type synthSnapshot struct {
	m    snapshot.Manifest
	n    int
	id   func(int) string
	fs   *features.FeatureSet
	seed uint64
}

var _ online.Snapshots = (*synthSnapshots)(nil)

func newSynthSnapshots(fs *features.FeatureSet, o FeaturesOptions, asOf time.Time) *synthSnapshots {
	s := &synthSnapshots{groups: map[string]*synthSnapshot{}}
	asOf = asOf.Truncate(time.Second)
	for _, g := range fs.Groups() {
		if g.Lane != features.LaneBatch {
			continue
		}
		names, types, width, maps, err := snapshot.Layout(fs, g.Name)
		if err != nil {
			continue
		}
		sn := &synthSnapshot{fs: fs, seed: o.Seed, n: o.Items, id: itemID}
		switch g.Entity {
		case features.EntityUser:
			sn.n, sn.id = o.Users, userID
		case features.EntityUserItem:
			sn.n = o.Users * o.PairsPerUser
			sn.id = func(i int) string {
				u, k := i/o.PairsPerUser, i%o.PairsPerUser
				return snapshot.PairID(userID(u), itemID(pairItem(o, u, k)))
			}
		}
		sn.m = snapshot.Manifest{
			Format: snapshot.FormatVersion, Group: g.Name, Entity: g.Entity,
			Version:    asOf.Format("20060102T150405Z") + "-00000001",
			SchemaHash: fs.SchemaHash(), AsOf: asOf, CreatedAt: asOf,
			Features: names, Types: types, Width: width, MapFeatures: maps, Rows: int64(sn.n),
		}
		s.groups[g.Name] = sn
	}
	return s
}

// Current returns the one generated version of a group.
func (s *synthSnapshots) Current(_ context.Context, group string) (snapshot.Pointer, error) {
	sn, ok := s.groups[group]
	if !ok {
		return snapshot.Pointer{Group: group}, fmt.Errorf("%w: %s", snapshot.ErrNotFound, group)
	}
	return snapshot.Pointer{Group: group, Version: sn.m.Version, UpdatedAt: sn.m.CreatedAt}, nil
}

// Open returns the generated snapshot of a group.
func (s *synthSnapshots) Open(_ context.Context, group, version string) (online.SnapshotReader, error) {
	sn, ok := s.groups[group]
	if !ok || sn.m.Version != version {
		return nil, fmt.Errorf("%w: %s/%s", snapshot.ErrNotFound, group, version)
	}
	return sn, nil
}

// Manifest describes the generated snapshot.
func (sn *synthSnapshot) Manifest() snapshot.Manifest { return sn.m }

// Rows generates the snapshot's rows.
func (sn *synthSnapshot) Rows(ctx context.Context) iter.Seq2[snapshot.Row, error] {
	return func(yield func(snapshot.Row, error) bool) {
		for i := range sn.n {
			if i%4096 == 0 && ctx.Err() != nil {
				yield(snapshot.Row{}, ctx.Err())
				return
			}
			r := snapshot.Row{EntityID: sn.id(i), Values: make([]float64, 0, sn.m.Width)}
			for fi, name := range sn.m.Features {
				f, _ := sn.fs.Lookup(name)
				for c := range f.Type.Width() {
					r.Values = append(r.Values, synthValue(f, hash(sn.seed, uint64(i), uint64(fi), uint64(c))))
				}
			}
			if len(sn.m.MapFeatures) > 0 {
				r.Maps = make([]map[string]float64, len(sn.m.MapFeatures))
				for mi := range r.Maps {
					m := map[string]float64{}
					for e := range 5 {
						h := hash(sn.seed, uint64(i), 1000+uint64(mi), uint64(e))
						m[fmt.Sprint(h%500)] = float64(h % 20)
					}
					r.Maps[mi] = m
				}
			}
			if !yield(r, nil) {
				return
			}
		}
	}
}

// pairItem is the index of the k-th item of user u's pairs.
func pairItem(o FeaturesOptions, u, k int) int {
	return int(hash(o.Seed, uint64(u), uint64(k), 0x9a15) % uint64(o.Items))
}

// synthValue is a plausible value of f from a hash: rates near their
// prior, counts and ids as small integers, vector components in [-1, 1].
func synthValue(f *features.Feature, h uint64) float64 {
	u := float64(h%1_000_000) / 1_000_000
	switch f.Type.Kind {
	case features.KindInt:
		return float64(h % 1000)
	case features.KindVector:
		return 2*u - 1
	}
	if d := float64(f.Default.Float); d > 0 && d <= 1 {
		return math.Min(1, 2*d*u)
	}
	return 1000 * u
}

// hash is splitmix64 over the inputs: deterministic, fast, well mixed.
func hash(xs ...uint64) uint64 {
	var h uint64 = 0x9e3779b97f4a7c15
	for _, x := range xs {
		h ^= x + 0x9e3779b97f4a7c15 + (h << 6) + (h >> 2)
		h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9
		h = (h ^ (h >> 27)) * 0x94d049bb133111eb
		h ^= h >> 31
	}
	return h
}

// nearlineGen writes generated nearline values.
type nearlineGen struct {
	fs   *features.FeatureSet
	seed uint64
}

func (g nearlineGen) values(e features.Entity, i int, at time.Time) []online.NearlineValue {
	var out []online.NearlineValue
	for _, f := range g.fs.Entity(e) {
		if f.Lane != features.LaneNearline {
			continue
		}
		h := hash(g.seed, uint64(i), uint64(f.ID), uint64(at.UnixMilli()))
		v := online.NearlineValue{Feature: f.Name, At: at}
		switch f.Type.Kind {
		case features.KindFloat:
			v.Value.Float = float32(synthValue(f, h))
		case features.KindInt:
			v.Value.Int = int64(synthValue(f, h))
			switch f.Name {
			case features.FeatureSessionKey:
				v.Value.Int = features.SessionKey("s")
			case features.FeatureSessionStartMs, features.FeatureLastInteractionMs:
				v.Value.Int = at.Add(-time.Duration(h%600) * time.Second).UnixMilli()
			}
		case features.KindVector:
			v.Value.Vector = make([]float32, f.Type.Dim)
			for c := range v.Value.Vector {
				v.Value.Vector[c] = float32(synthValue(f, hash(h, uint64(c))))
			}
		case features.KindList:
			v.Value.List = []string{itemID(int(h % 1000)), itemID(int(h % 997))}
		case features.KindMap:
			v.Value.Map = map[string]float64{"1": 1}
		}
		out = append(out, v)
	}
	return out
}

// writeAll writes nearline values of every user and of every fourth item.
func (g nearlineGen) writeAll(ctx context.Context, w *online.Writer, o FeaturesOptions, now time.Time) error {
	const batch = 500
	var ups []online.NearlineUpdate
	flush := func(e features.Entity) error {
		if len(ups) == 0 {
			return nil
		}
		var err error
		if e == features.EntityUser {
			err = w.WriteUsersNearline(ctx, ups)
		} else {
			err = w.WriteItemsNearline(ctx, ups)
		}
		ups = ups[:0]
		return err
	}
	for i := range o.Users {
		ups = append(ups, online.NearlineUpdate{ID: userID(i), Values: g.values(features.EntityUser, i, now.Add(-time.Duration(i%20)*time.Second))})
		if len(ups) == batch {
			if err := flush(features.EntityUser); err != nil {
				return err
			}
		}
	}
	if err := flush(features.EntityUser); err != nil {
		return err
	}
	if err := g.writePairs(ctx, w, o, now); err != nil {
		return err
	}
	for i := 0; i < o.Items; i += 4 {
		ups = append(ups, online.NearlineUpdate{ID: itemID(i), Values: g.values(features.EntityItem, i, now.Add(-time.Duration(i%20)*time.Second))})
		if len(ups) == batch {
			if err := flush(features.EntityItem); err != nil {
				return err
			}
		}
	}
	return flush(features.EntityItem)
}

// writePairs writes the user×item nearline values of every user: the
// first pairNearlineItems items of its pairs.
func (g nearlineGen) writePairs(ctx context.Context, w *online.Writer, o FeaturesOptions, now time.Time) error {
	var feats []*features.Feature
	for _, f := range g.fs.Entity(features.EntityUserItem) {
		if f.Lane == features.LaneNearline && (f.Type.Kind == features.KindInt || f.Type.Kind == features.KindFloat) {
			feats = append(feats, f)
		}
	}
	n := min(pairNearlineItems, o.PairsPerUser)
	if len(feats) == 0 || n == 0 {
		return nil
	}
	var ups []online.PairUpdate
	for u := range o.Users {
		seen := map[string]bool{}
		var items []string
		for k := range n {
			if id := itemID(pairItem(o, u, k)); !seen[id] {
				seen[id] = true
				items = append(items, id)
			}
		}
		up := online.PairUpdate{User: userID(u)}
		for _, f := range feats {
			pv := online.PairValues{Feature: f.Name, Items: items, Values: make([]features.Value, len(items)), At: now.Add(-time.Duration(u%20) * time.Second)}
			for k := range items {
				x := synthValue(f, hash(g.seed, uint64(u), uint64(k), uint64(f.ID)))
				pv.Values[k] = features.Value{Int: int64(x) % 20, Float: float32(x)}
			}
			up.Values = append(up.Values, pv)
		}
		ups = append(ups, up)
		if len(ups) == 500 {
			if err := w.WritePairsNearline(ctx, ups); err != nil {
				return err
			}
			ups = ups[:0]
		}
	}
	if len(ups) == 0 {
		return nil
	}
	return w.WritePairsNearline(ctx, ups)
}

// writeContinuously writes o.NearlineWritesPerS updates per second, half
// of users and half of items, in batches every 100 ms, until ctx ends. The
// updates are generated once and re-stamped, so that what the benchmark
// process spends is the writes (encoding, Redis), as a nearline consumer's
// would be, not making up values.
func (g nearlineGen) writeContinuously(ctx context.Context, w *online.Writer, o FeaturesOptions) {
	rng := rand.New(rand.NewPCG(o.Seed, 99))
	per := max(1, o.NearlineWritesPerS/20)
	const pool = 4096
	now := time.Now()
	users := make([]online.NearlineUpdate, pool)
	items := make([]online.NearlineUpdate, pool)
	for k := range pool {
		u, it := rng.IntN(o.Users), rng.IntN(o.Items)
		users[k] = online.NearlineUpdate{ID: userID(u), Values: g.values(features.EntityUser, u, now)}
		items[k] = online.NearlineUpdate{ID: itemID(it), Values: g.values(features.EntityItem, it, now)}
	}
	stamp := func(ups []online.NearlineUpdate, at time.Time) {
		for _, u := range ups {
			for i := range u.Values {
				u.Values[i].At = at
			}
		}
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	next := 0
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if next+per > pool {
				next = 0
			}
			us, is := users[next:next+per], items[next:next+per]
			next += per
			stamp(us, now)
			stamp(is, now)
			// Errors end with the context; a lost write only ages a value.
			_ = w.WriteUsersNearline(ctx, us)
			_ = w.WriteItemsNearline(ctx, is)
		}
	}
}
