package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/serving/ann"
	"github.com/adaptrec/adaptrec/sim"
	"github.com/adaptrec/adaptrec/trainer/job"
	"github.com/adaptrec/adaptrec/trainer/retrieval"
)

// The goal of `adaptrec bench ann`: the top 200 items by inner product
// among 200,000 × 64 item embeddings with recall ≥ 0.95 against exact
// search and a p99 of at most 2 ms.
const (
	ANNTargetRecall = 0.95
	ANNTargetP99    = 2 * time.Millisecond
)

// Data sets of RunANN.
const (
	// ANNDataSim trains ALS embeddings (trainer/retrieval) on a simulated
	// world's history and indexes every item with a positive interaction;
	// queries are the trained vectors of random users, whose positives are
	// excluded as serving excludes what a user has seen.
	ANNDataSim = "sim"
	// ANNDataClustered draws unit vectors around Items/100 random centres
	// with broad, overlapping spreads, and queries from the same law.
	ANNDataClustered = "clustered"
)

// Defaults of ANNOptions.
const (
	DefaultANNItems      = 200_000
	DefaultANNDims       = 64
	DefaultANNK          = 200
	DefaultANNQueries    = 1000
	DefaultANNUsers      = 100_000
	DefaultANNEvents     = 12_000_000
	DefaultANNIterations = 6
	annWarmupQueries     = 100
)

// annWeights are the strengths of the actions that count as positives:
// the training job's defaults.
var annWeights = func() map[adaptrecv1.Action]float32 {
	m := make(map[adaptrecv1.Action]float32, len(job.DefaultWeights))
	for name, w := range job.DefaultWeights {
		m[adaptrecv1.Action(adaptrecv1.Action_value[name])] = float32(w)
	}
	return m
}()

// ANNOptions configure RunANN. Zero values mean the defaults.
type ANNOptions struct {
	// Data is ANNDataSim (the default) or ANNDataClustered.
	Data string
	// Items is the catalogue size of the simulated world, or the number
	// of clustered vectors (DefaultANNItems).
	Items int
	// Dims is the embedding dimension (DefaultANNDims).
	Dims int
	// Users, Events and Iterations shape the simulated world's users, its
	// history and the ALS training (DefaultANNUsers, DefaultANNEvents,
	// DefaultANNIterations).
	Users      int
	Events     int64
	Iterations int
	// K is the number of items a search returns (DefaultANNK); Queries
	// the number of measured searches (DefaultANNQueries), after 100
	// unmeasured ones.
	K, Queries int
	// Concurrency is the number of goroutines searching (1: one caller,
	// the latency of a search alone).
	Concurrency int
	// Index holds the index parameters; zero values mean ann's defaults.
	Index ann.Config
	// Sweep lists further beam widths to measure after the index's own,
	// each over all queries: the recall/latency curve to choose
	// EfSearch from.
	Sweep []int
	// Seed makes the data, the index and the queries reproducible.
	Seed uint64
	// Logf, when set, receives one line per step.
	Logf func(format string, args ...any)
}

func (o ANNOptions) withDefaults() ANNOptions {
	if o.Data == "" {
		o.Data = ANNDataSim
	}
	if o.Items == 0 {
		o.Items = DefaultANNItems
	}
	if o.Dims == 0 {
		o.Dims = DefaultANNDims
	}
	if o.Users == 0 {
		o.Users = DefaultANNUsers
	}
	if o.Events == 0 {
		o.Events = DefaultANNEvents
	}
	if o.Iterations == 0 {
		o.Iterations = DefaultANNIterations
	}
	if o.K == 0 {
		o.K = DefaultANNK
	}
	if o.Queries == 0 {
		o.Queries = DefaultANNQueries
	}
	if o.Concurrency == 0 {
		o.Concurrency = 1
	}
	if o.Index.Seed == 0 {
		o.Index.Seed = o.Seed
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return o
}

// Validate reports every invalid option.
func (o ANNOptions) Validate() error {
	var errs []error
	switch o.Data {
	case "", ANNDataSim:
		if o.Items < 0 || o.Items > sim.MaxItems {
			errs = append(errs, fmt.Errorf("items must be in 1..%d for simulated data, got %d", sim.MaxItems, o.Items))
		}
		if o.Dims < 0 || o.Dims > retrieval.MaxDims {
			errs = append(errs, fmt.Errorf("dims must be in 1..%d, got %d", retrieval.MaxDims, o.Dims))
		}
	case ANNDataClustered:
		if o.Items < 0 || o.Items > 10_000_000 {
			errs = append(errs, fmt.Errorf("items must be in 1..10000000, got %d", o.Items))
		}
		if o.Dims < 0 || o.Dims > ann.MaxDims {
			errs = append(errs, fmt.Errorf("dims must be in 1..%d, got %d", ann.MaxDims, o.Dims))
		}
	default:
		errs = append(errs, fmt.Errorf("data must be %q or %q, got %q", ANNDataSim, ANNDataClustered, o.Data))
	}
	if o.Users < 0 || o.Users > sim.MaxUsers {
		errs = append(errs, fmt.Errorf("users must be in 1..%d, got %d", sim.MaxUsers, o.Users))
	}
	if o.Events < 0 || o.Events > sim.MaxHistoryEvents {
		errs = append(errs, fmt.Errorf("events must be in 1..%d, got %d", int64(sim.MaxHistoryEvents), o.Events))
	}
	if o.Iterations < 0 || o.Iterations > 100 {
		errs = append(errs, fmt.Errorf("iterations must be in 1..100, got %d", o.Iterations))
	}
	if o.K < 0 || o.K > 10_000 {
		errs = append(errs, fmt.Errorf("k must be in 1..10000, got %d", o.K))
	}
	if o.Queries < 0 || o.Queries > 1_000_000 {
		errs = append(errs, fmt.Errorf("queries must be in 1..1000000, got %d", o.Queries))
	}
	if o.Concurrency < 0 || o.Concurrency > 256 {
		errs = append(errs, fmt.Errorf("concurrency must be in 1..256, got %d", o.Concurrency))
	}
	for _, ef := range o.Sweep {
		if ef < 1 || ef > ann.MaxEf {
			errs = append(errs, fmt.Errorf("sweep ef must be in 1..%d, got %d", ann.MaxEf, ef))
		}
	}
	if err := o.Index.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ANNResult is what RunANN measured; its JSON names are those of
// `adaptrec bench ann --json` (Recall is printed as "recall@<k>").
type ANNResult struct {
	// Data names the data set; CatalogueItems is the simulated world's
	// catalogue, of which Items had a positive and so an embedding.
	Data           string `json:"data"`
	Items          int    `json:"items"`
	CatalogueItems int    `json:"catalogue_items,omitempty"`
	Dims           int    `json:"dims"`
	// Users (those with a positive), Events, Pairs and Iterations
	// describe the simulated history and the ALS training (sim only).
	Users      int   `json:"users,omitempty"`
	Events     int64 `json:"events,omitempty"`
	Pairs      int   `json:"pairs,omitempty"`
	Iterations int   `json:"als_iterations,omitempty"`
	// DataSeconds is the time to make the embeddings (simulation and
	// training included).
	DataSeconds float64 `json:"data_seconds"`
	// K items per search, Queries measured searches, ExcludedPerQuery the
	// mean number of items each search excluded (the user's positives).
	K                int     `json:"k"`
	Queries          int     `json:"queries"`
	ExcludedPerQuery float64 `json:"excluded_per_query"`
	Concurrency      int     `json:"concurrency"`
	// Recall is the mean share of the exact top K that a search returned.
	// MinRecall is the worst query's.
	Recall    float64 `json:"recall_at_k"`
	MinRecall float64 `json:"min_recall"`
	// Latency quantiles of one search, in milliseconds; ExactP50Ms is
	// the median exact (brute-force) search for comparison.
	P50Ms      float64 `json:"p50_ms"`
	P95Ms      float64 `json:"p95_ms"`
	P99Ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
	MeanMs     float64 `json:"mean_ms"`
	ExactP50Ms float64 `json:"exact_p50_ms"`
	// ThroughputPerS is searches per second over the measurement.
	ThroughputPerS float64 `json:"throughput_per_s"`
	// BuildSeconds is the index build on BuildWorkers goroutines.
	BuildSeconds float64 `json:"build_seconds"`
	BuildWorkers int     `json:"build_workers"`
	// Index parameters and shape; ArtifactBytes is the size Save writes.
	M              int     `json:"m"`
	EfConstruction int     `json:"ef_construction"`
	EfSearch       int     `json:"ef_search"`
	NormRatio      float64 `json:"norm_ratio"`
	Bands          int     `json:"bands"`
	ArtifactBytes  int64   `json:"artifact_bytes"`
	Seed           uint64  `json:"seed"`
	// Sweep holds the measurements at the further beam widths asked for.
	Sweep []ANNSweepPoint `json:"sweep,omitempty"`
}

// ANNSweepPoint is the recall and latency of all queries at one beam
// width (a search uses at least k, so Ef is at least K).
type ANNSweepPoint struct {
	Ef     int     `json:"ef"`
	Recall float64 `json:"recall"`
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
}

// annData is a data set: item ids and vectors, queries and what each
// query excludes.
type annData struct {
	ids     []int32
	vecs    []float32
	queries [][]float32
	exclude [][]int32 // sorted
}

// RunANN makes the embeddings, builds an index over them, finds the exact
// top K for every query by brute force, then times Queries searches and
// measures their recall against it.
func RunANN(ctx context.Context, opts ANNOptions) (ANNResult, error) {
	if err := opts.Validate(); err != nil {
		return ANNResult{}, err
	}
	o := opts.withDefaults()
	res := ANNResult{Data: o.Data, Dims: o.Dims, K: o.K, Queries: o.Queries, Concurrency: o.Concurrency, Seed: o.Seed}

	begin := time.Now()
	var data annData
	var err error
	switch o.Data {
	case ANNDataSim:
		data, err = simEmbeddings(ctx, o, &res)
	case ANNDataClustered:
		data = clusteredEmbeddings(o)
		res.Items = o.Items
	}
	if err != nil {
		return res, err
	}
	res.DataSeconds = Round(time.Since(begin).Seconds(), 2)

	cfg := o.Index
	if cfg.Workers == 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	o.Logf("building the index of %d × %d on %d workers", len(data.ids), o.Dims, cfg.Workers)
	begin = time.Now()
	x, err := ann.Build(ctx, data.ids, data.vecs, o.Dims, cfg)
	if err != nil {
		return res, fmt.Errorf("build the index: %w", err)
	}
	res.BuildSeconds = Round(time.Since(begin).Seconds(), 2)
	res.BuildWorkers = cfg.Workers
	res.M, res.EfConstruction, res.EfSearch, res.NormRatio, res.Bands = x.M(), x.EfConstruction(), x.EfSearch(), x.NormRatio(), x.Bands()
	var cw countingWriter
	if err := x.Save(&cw); err != nil {
		return res, err
	}
	res.ArtifactBytes = cw.n
	o.Logf("index built in %.1fs: %d norm bands, M %d, efConstruction %d, artifact %.1f MB",
		res.BuildSeconds, res.Bands, res.M, res.EfConstruction, float64(res.ArtifactBytes)/1e6)

	excludes := make([]func(int32) bool, len(data.queries))
	var excluded int
	for i, ex := range data.exclude {
		excluded += len(ex)
		if len(ex) > 0 {
			excludes[i] = func(id int32) bool { _, found := slices.BinarySearch(ex, id); return found }
		}
	}
	if len(data.queries) > 0 {
		res.ExcludedPerQuery = Round(float64(excluded)/float64(len(data.queries)), 1)
	}

	// One goroutine, so exact_p50_ms is the cost of a brute-force search
	// alone, comparable with the searches' latencies.
	o.Logf("exact top %d of %d queries by brute force", o.K, o.Queries)
	truth := make([][]ann.Hit, len(data.queries))
	exactLat := make([]time.Duration, len(data.queries))
	if err := forEach(ctx, len(data.queries), 1, func(i int) error {
		start := time.Now()
		h, err := x.Exact(nil, data.queries[i], o.K, excludes[i])
		exactLat[i] = time.Since(start)
		truth[i] = h
		return err
	}); err != nil {
		return res, err
	}
	res.ExactP50Ms = ms3(Summarize(exactLat).P50)

	o.Logf("%d searches for the top %d (ef %d) from %d goroutine(s), after %d unmeasured",
		o.Queries, o.K, x.EfSearch(), o.Concurrency, annWarmupQueries)
	runtime.GC() // the data's garbage is not the searches'
	m, err := measureSearches(ctx, x, data, excludes, truth, o, 0)
	if err != nil {
		return res, err
	}
	res.P50Ms, res.P95Ms, res.P99Ms, res.MaxMs, res.MeanMs = m.p50, m.p95, m.p99, m.max, m.mean
	res.ThroughputPerS, res.Recall, res.MinRecall = m.throughput, m.recall, m.minRecall
	for _, ef := range o.Sweep {
		m, err := measureSearches(ctx, x, data, excludes, truth, o, ef)
		if err != nil {
			return res, err
		}
		o.Logf("ef %d: recall %.4f, p50 %.3f ms, p99 %.3f ms", max(ef, o.K), m.recall, m.p50, m.p99)
		res.Sweep = append(res.Sweep, ANNSweepPoint{Ef: max(ef, o.K), Recall: m.recall, P50Ms: m.p50, P99Ms: m.p99})
	}
	return res, nil
}

// searchStats summarises one pass of searches: latencies in milliseconds
// and recall against the exact top k.
type searchStats struct {
	p50, p95, p99, max, mean float64
	throughput               float64
	recall, minRecall        float64
}

// measureSearches times every query at beam width ef (0: the index's)
// and scores the results against truth.
func measureSearches(ctx context.Context, x *ann.Index, data annData, excludes []func(int32) bool, truth [][]ann.Hit,
	o ANNOptions, ef int) (searchStats, error) {
	got := make([][]ann.Hit, len(data.queries))
	lat := make([]time.Duration, len(data.queries))
	elapsed, err := timeSearches(ctx, x, data, excludes, o, ef, got, lat)
	if err != nil {
		return searchStats{}, err
	}
	var st searchStats
	sum := Summarize(lat)
	st.p50, st.p95, st.p99, st.max = ms3(sum.P50), ms3(sum.P95), ms3(sum.P99), ms3(sum.Max)
	var total time.Duration
	for _, d := range lat {
		total += d
	}
	st.mean = ms3(total / time.Duration(len(lat)))
	st.throughput = Round(float64(len(lat))/elapsed.Seconds(), 0)
	st.minRecall = 1
	var recallSum float64
	for i := range got {
		r := annRecall(got[i], truth[i])
		recallSum += r
		st.minRecall = min(st.minRecall, r)
	}
	st.recall = Round(recallSum/float64(len(got)), 4)
	st.minRecall = Round(st.minRecall, 4)
	return st, nil
}

// timeSearches runs a warm-up and then every query once at beam width ef,
// from o.Concurrency goroutines, recording each search's latency and
// result.
func timeSearches(ctx context.Context, x *ann.Index, data annData, excludes []func(int32) bool, o ANNOptions, ef int,
	got [][]ann.Hit, lat []time.Duration) (time.Duration, error) {
	dst := make([]ann.Hit, 0, o.K)
	for i := range min(annWarmupQueries, len(data.queries)) {
		var err error
		if dst, err = x.Search(dst, data.queries[i], o.K, ann.SearchOptions{Ef: ef, Exclude: excludes[i]}); err != nil {
			return 0, err
		}
	}
	for i := range got {
		got[i] = make([]ann.Hit, 0, o.K)
	}
	begin := time.Now()
	err := forEach(ctx, len(data.queries), o.Concurrency, func(i int) error {
		start := time.Now()
		h, err := x.Search(got[i], data.queries[i], o.K, ann.SearchOptions{Ef: ef, Exclude: excludes[i]})
		lat[i] = time.Since(start)
		got[i] = h
		return err
	})
	return time.Since(begin), err
}

// forEach calls fn for 0..n-1 from workers goroutines and returns the
// first error, or ctx's.
func forEach(ctx context.Context, n, workers int, fn func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range min(workers, max(n, 1)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(i); err != nil {
					mu.Lock()
					first = cmpErr(first, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func annRecall(got, want []ann.Hit) float64 {
	if len(want) == 0 {
		return 1
	}
	in := make(map[int32]struct{}, len(want))
	for _, h := range want {
		in[h.ID] = struct{}{}
	}
	n := 0
	for _, h := range got {
		if _, ok := in[h.ID]; ok {
			n++
		}
	}
	return float64(n) / float64(len(want))
}

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

var _ io.Writer = (*countingWriter)(nil)

// simEmbeddings simulates a world, turns its history into implicit
// feedback as the training job does (positive actions with their weights,
// summed per user and item), trains ALS on it and returns the item
// vectors of every item with a positive (ids are catalogue indexes) and,
// as queries, the trained vectors of random users with their positives to
// exclude. A trained user vector is exactly what serving's fold-in gives
// for the same interactions (trainer/retrieval).
func simEmbeddings(ctx context.Context, o ANNOptions, res *ANNResult) (annData, error) {
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	o.Logf("simulating a world of %d items and %d users, then %d events of history", o.Items, o.Users, o.Events)
	w, err := sim.NewWorld(sim.WorldConfig{
		Seed: o.Seed, Start: start, Window: 14 * 24 * time.Hour,
		Catalogue:  sim.CatalogueConfig{Items: o.Items},
		Population: sim.PopulationConfig{Users: o.Users},
	})
	if err != nil {
		return annData{}, err
	}
	strength := make(map[uint64]float32)
	_, err = sim.GenerateHistory(ctx, w, sim.HistoryConfig{
		Events: o.Events,
		OnProgress: func(p sim.Progress) {
			o.Logf("%5.1fs  history: %d/%d events (%.0f/s)", p.Elapsed.Seconds(), p.Events, o.Events, p.EventsPerSecond)
		},
	}, func(_ context.Context, batch []*adaptrecv1.Event) error {
		for _, e := range batch {
			in := e.GetInteraction()
			if in == nil {
				continue
			}
			wt, ok := annWeights[in.GetAction()]
			if !ok {
				continue
			}
			u, okU := w.Users.Lookup(in.GetUserId())
			it, okI := w.Catalogue.Lookup(in.GetItemId())
			if !okU || !okI {
				return fmt.Errorf("event %s names an unknown user %q or item %q", e.GetEnvelope().GetEventId(), in.GetUserId(), in.GetItemId())
			}
			strength[uint64(u)<<32|uint64(it)] += wt
		}
		return nil
	})
	if err != nil {
		return annData{}, fmt.Errorf("simulate history: %w", err)
	}

	// Dense indexes in catalogue and population order, interactions in
	// (user, item) order: the training data does not depend on map order.
	keys := make([]uint64, 0, len(strength))
	for k := range strength {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	userOf := make(map[int32]int32)
	itemOf := make([]int32, o.Items)
	for i := range itemOf {
		itemOf[i] = -1
	}
	var users []int32
	for _, k := range keys {
		if u := int32(k >> 32); len(users) == 0 || users[len(users)-1] != u {
			userOf[u] = int32(len(users))
			users = append(users, u)
		}
		itemOf[int32(k&math.MaxUint32)] = 0
	}
	var ids []int32 // dense item → catalogue index
	for it, v := range itemOf {
		if v == 0 {
			itemOf[it] = int32(len(ids))
			ids = append(ids, int32(it))
		}
	}
	data := make([]retrieval.Interaction, len(keys))
	for i, k := range keys {
		data[i] = retrieval.Interaction{User: userOf[int32(k>>32)], Item: itemOf[k&math.MaxUint32], Strength: strength[k]}
	}
	res.CatalogueItems, res.Items, res.Users, res.Events, res.Pairs, res.Iterations = o.Items, len(ids), len(users), o.Events, len(keys), o.Iterations
	o.Logf("%d user–item pairs: %d users, %d of %d items; training ALS (%d dims, %d iterations)",
		len(keys), len(users), len(ids), o.Items, o.Dims, o.Iterations)
	m, err := retrieval.Train(ctx, len(users), len(ids), data, retrieval.Config{
		Factors: o.Dims, Iterations: o.Iterations, Seed: o.Seed,
		Progress: func(p retrieval.Progress) {
			o.Logf("%5.1fs  ALS iteration %d/%d: loss %.6g", p.Elapsed.Seconds(), p.Iteration, p.Iterations, p.Loss)
		},
	})
	if err != nil {
		return annData{}, fmt.Errorf("train ALS: %w", err)
	}

	// Queries: random users (with repeats when there are fewer users than
	// queries), each excluding the items they interacted with.
	byUser := make([][]int32, len(users))
	for _, in := range data {
		byUser[in.User] = append(byUser[in.User], ids[in.Item])
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x616e6e))
	d := annData{ids: ids, vecs: m.ItemFactors}
	for range o.Queries {
		u := rng.IntN(len(users))
		d.queries = append(d.queries, m.User(u))
		d.exclude = append(d.exclude, byUser[u]) // sorted: data is in (user, item) order
	}
	return d, nil
}

// clusteredEmbeddings draws o.Items unit vectors and o.Queries queries
// around o.Items/100 random centres with broad, overlapping spreads.
func clusteredEmbeddings(o ANNOptions) annData {
	o.Logf("drawing %d clustered unit vectors of %d dims", o.Items, o.Dims)
	rng := rand.New(rand.NewPCG(o.Seed, 0x636c75))
	clusters := max(1, o.Items/100)
	centres := make([]float32, clusters*o.Dims)
	for i := range centres {
		centres[i] = float32(rng.NormFloat64())
	}
	draw := func(v []float32) {
		c := rng.IntN(clusters)
		var s float64
		for j := range v {
			x := centres[c*o.Dims+j] + float32(0.5*rng.NormFloat64())
			v[j] = x
			s += float64(x) * float64(x)
		}
		inv := float32(1 / math.Sqrt(s))
		for j := range v {
			v[j] *= inv
		}
	}
	d := annData{ids: make([]int32, o.Items), vecs: make([]float32, o.Items*o.Dims)}
	for i := range d.ids {
		d.ids[i] = int32(i)
		draw(d.vecs[i*o.Dims : (i+1)*o.Dims])
	}
	d.queries = make([][]float32, o.Queries)
	d.exclude = make([][]int32, o.Queries)
	for i := range d.queries {
		d.queries[i] = make([]float32, o.Dims)
		draw(d.queries[i])
	}
	return d
}
