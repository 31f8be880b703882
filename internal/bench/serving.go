package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/devstack"
	"github.com/adaptrec/adaptrec/internal/onnxrt"
	"github.com/adaptrec/adaptrec/internal/servingworld"
	"github.com/adaptrec/adaptrec/serving"
)

// Defaults of ServingOptions.
const (
	DefaultServingRate        = 500
	DefaultServingDuration    = 30 * time.Second
	DefaultServingWarmup      = 2 * time.Second
	DefaultServingDeadline    = 200 * time.Millisecond
	DefaultServingConcurrency = 256
	DefaultServingCandidates  = 500
	// DefaultNearlinePeriod is how often the nearline values of active
	// items and users are rewritten while the benchmark runs: half their
	// one-minute freshness SLA.
	DefaultNearlinePeriod = 30 * time.Second
	// servingReadyTimeout bounds the wait for the instance to load the
	// catalogue and the model.
	servingReadyTimeout = 3 * time.Minute
	// requestPool is how many distinct requests are prepared before the
	// run, so the load generator spends nothing building them.
	requestPool = 8192
)

// ServingTargetP99 is the p99 goal of `adaptrec bench serving` at a rate:
// 10 ms up to 500 requests/s, the rate one 2-core instance is sized for,
// and 50 ms above, where a single instance is overloaded by design and the
// goal only asks that it degrade gracefully.
func ServingTargetP99(rate float64) time.Duration {
	if rate <= 500 {
		return 10 * time.Millisecond
	}
	return 50 * time.Millisecond
}

// ServingOptions configure RunServing. Zero values mean the defaults.
type ServingOptions struct {
	// World sizes the synthetic world (servingworld.Options).
	World servingworld.Options
	// Rate is the request rate per second (DefaultServingRate); requests
	// leave on a fixed schedule whatever the responses do.
	Rate float64
	// Duration is how long requests are measured (DefaultServingDuration),
	// after Warmup (DefaultServingWarmup) at the same rate, unmeasured.
	Duration, Warmup time.Duration
	// Deadline bounds each request from its scheduled send time
	// (DefaultServingDeadline: the page's budget for recommendations).
	Deadline time.Duration
	// Concurrency bounds the requests in flight (DefaultServingConcurrency);
	// a request due while the bound is reached is not sent and counts as an
	// error ("unsent").
	Concurrency int
	// Candidates is server.candidates, the candidates ranked per request
	// (DefaultServingCandidates).
	Candidates int
	// FeaturesFile, when set, replaces the configuration's features.file.
	FeaturesFile string
	// Config, when set, points the benchmark at running servers (Kafka,
	// Redis, S3). It then writes below its own S3 prefix and Redis key
	// prefix and registers its own model (ExternalModel), so it leaves a
	// deployment's data alone; its events go to the shared topics. When
	// nil, Redis, S3 and Kafka are started on free ports in a temporary
	// directory and removed afterwards.
	Config *config.Config
	// LookupTool finds the servers' executables (devstack.FindTool when
	// nil).
	LookupTool func(string) (string, error)
	// Seed makes the users and requests reproducible.
	Seed uint64
	// CPUProfile, when set, receives a CPU profile (pprof) of the process
	// over the measured part of the run.
	CPUProfile io.Writer
	// Trace, when set, receives a runtime execution trace of the measured
	// part (go tool trace): where the tail latency's stalls come from
	// (scheduler waits, GC, syscalls), which a CPU profile cannot show.
	Trace io.Writer
	// MemProfile, when set, receives a heap profile (pprof) taken after
	// the measured part: what the live heap the GC marks on every cycle is
	// made of (-sample_index=inuse_space) and who allocated during the run
	// (alloc_space). MemProfileStart, when set, receives one taken as the
	// measured part starts: with -diff_base it, alloc_space is what the
	// measured requests allocated, apart from the world's build. Taking it
	// collects the heap first (a profile's figures are as of the last GC),
	// which moves the run's next GC later: compare GC-sensitive figures
	// with runs without it.
	MemProfile, MemProfileStart io.Writer
	// Logger receives the serving instance's log (warnings and up are
	// worth showing); nil discards it.
	Logger *slog.Logger
}

// ExternalModel is the registry model an --external run registers and
// serves, so a deployment's own model keeps its aliases.
const ExternalModel = "bench-serving"

func (o ServingOptions) withDefaults() ServingOptions {
	o.Rate = cmp.Or(o.Rate, DefaultServingRate)
	o.Duration = cmp.Or(o.Duration, DefaultServingDuration)
	o.Warmup = cmp.Or(o.Warmup, DefaultServingWarmup)
	o.Deadline = cmp.Or(o.Deadline, DefaultServingDeadline)
	o.Concurrency = cmp.Or(o.Concurrency, DefaultServingConcurrency)
	o.Candidates = cmp.Or(o.Candidates, DefaultServingCandidates)
	o.Seed = cmp.Or(o.Seed, 1)
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return o
}

// Validate reports every invalid option.
func (o ServingOptions) Validate() error {
	errs := []error{o.World.Validate()}
	if o.Rate < 0 || o.Rate > 100_000 || math.IsNaN(o.Rate) {
		errs = append(errs, fmt.Errorf("rate must be in 1..100000 requests/s, got %g", o.Rate))
	}
	if o.Duration < 0 || o.Warmup < 0 {
		errs = append(errs, fmt.Errorf("duration and warmup must be >= 0, got %s and %s", o.Duration, o.Warmup))
	}
	if o.Deadline < 0 || o.Deadline > time.Minute {
		errs = append(errs, fmt.Errorf("deadline must be in 1ms..1m, got %s", o.Deadline))
	}
	if o.Concurrency < 0 || o.Concurrency > 100_000 {
		errs = append(errs, fmt.Errorf("concurrency must be in 1..100000 requests in flight, got %d", o.Concurrency))
	}
	if o.Candidates < 0 || o.Candidates > 5000 {
		errs = append(errs, fmt.Errorf("candidates must be in 1..5000 (server.candidates), got %d", o.Candidates))
	}
	return errors.Join(errs...)
}

// StageLatency summarises one pipeline stage over the measured requests,
// from the server's adaptrec_serving_stage_seconds histogram: quantiles are
// interpolated within its buckets (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50,
// 100 ms), so they are estimates; the mean is exact.
type StageLatency struct {
	Count  int64   `json:"count"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
}

// ServingResult is what RunServing measured; its JSON names are those of
// `adaptrec bench serving --json`.
type ServingResult struct {
	// Rate is the scheduled request rate; DurationS the measured seconds,
	// after WarmupS seconds unmeasured.
	Rate      float64 `json:"rate"`
	DurationS float64 `json:"duration_s"`
	WarmupS   float64 `json:"warmup_s"`
	// Requests were scheduled in the measured window; OK answered.
	Requests int64 `json:"requests"`
	OK       int64 `json:"ok"`
	// Latency quantiles in milliseconds, measured from each request's
	// scheduled send time to its response (or error), so a stalled server
	// delays the requests due meanwhile instead of hiding them. A request
	// that could not be sent counts at the deadline.
	P50Ms float64 `json:"p50_ms"`
	P95Ms float64 `json:"p95_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	// ThroughputPerS is answered requests per second.
	ThroughputPerS float64 `json:"throughput_per_s"`
	// Errors counts failed and unsent requests, ErrorCodes them by gRPC
	// code name ("unsent" for requests over the in-flight bound).
	Errors     int64            `json:"errors"`
	ErrorCodes map[string]int64 `json:"error_codes,omitempty"`
	// Degraded counts responses below the FULL degradation level; Levels
	// counts every response by level name.
	Degraded int64            `json:"degraded"`
	Levels   map[string]int64 `json:"levels"`
	// WrongModel counts responses from another model version than the
	// world's (the popularity level included).
	WrongModel int64 `json:"wrong_model"`
	// Items and Users are the world's; Candidates are ranked per request,
	// each a row of FeaturesPerCandidate features (ValuesPerCandidate
	// float32 values).
	Items                int `json:"items"`
	Users                int `json:"users"`
	Candidates           int `json:"candidates"`
	FeaturesPerCandidate int `json:"features_per_candidate"`
	ValuesPerCandidate   int `json:"values_per_candidate"`
	// ModelVersion is the served version; Ranker its ranker ("mlp[64,32]"
	// or "lr"), RankerAUC its held-out AUC on the world.
	ModelVersion string  `json:"model_version"`
	Ranker       string  `json:"ranker"`
	RankerAUC    float64 `json:"ranker_auc"`
	// Stages break the server's time down by pipeline stage, with the
	// whole handler (server_total), the wait for admission
	// (admission_wait) and each retrieval source (source_ann, ...);
	// Rankers count
	// the ranking level that scored (onnx, go, retrieval) and Fallbacks the
	// pipeline failures a model-free level answered, by reason.
	Stages    map[string]StageLatency `json:"stages,omitempty"`
	Rankers   map[string]int64        `json:"rankers,omitempty"`
	Fallbacks map[string]int64        `json:"fallbacks,omitempty"`
	// FeaturesDegraded counts the requests whose user features read as
	// defaults (Redis failed or missed its read deadline), by reason: they
	// answer at the STALE_FEATURES level. Shed counts the requests
	// admission control refused, by priority and reason.
	FeaturesDegraded map[string]int64 `json:"features_degraded,omitempty"`
	Shed             map[string]int64 `json:"shed,omitempty"`
	// SourcesDropped counts retrieval answers left out of the merge, by
	// source and reason (timeout: past the source's deadline).
	SourcesDropped map[string]int64 `json:"sources_dropped,omitempty"`
	// Concurrency is the in-flight bound, MaxInFlight the most requests
	// in flight seen; DeadlineMs the per-request deadline.
	Concurrency int     `json:"concurrency"`
	MaxInFlight int64   `json:"max_in_flight"`
	DeadlineMs  float64 `json:"deadline_ms"`
	// SendLagP99Ms is the load generator's own lateness: the p99 of how
	// long after its scheduled time a request left. Part of every latency
	// above; large values mean the generator, not the server, was short of
	// CPU.
	SendLagP99Ms float64 `json:"send_lag_p99_ms"`
	// AllocsPerRequest and BytesPerRequest are the process's heap
	// allocations per scheduled request over the measurement: the server's,
	// plus the load generator's and the background work's. GCCycles counts
	// the garbage collections meanwhile, HeapMB the heap at the end: each
	// cycle marks the whole live heap (indexes, item caches, catalogue).
	AllocsPerRequest float64 `json:"allocs_per_request"`
	BytesPerRequest  float64 `json:"bytes_per_request"`
	GCCycles         int64   `json:"gc_cycles"`
	HeapMB           float64 `json:"heap_mb"`
	// GCPercent is the garbage collector's target the server ran with
	// (server.gc_percent, or GOGC).
	GCPercent int `json:"gc_percent"`
	// WorldBuildS is how long building the world took; WorldCached says
	// its model artifacts came from the cache.
	WorldBuildS float64 `json:"world_build_s"`
	WorldCached bool    `json:"world_cached"`
	// TargetP99Ms is ServingTargetP99 at the rate; MeetsTarget says p99 is
	// within it with no error.
	TargetP99Ms float64 `json:"target_p99_ms"`
	MeetsTarget bool    `json:"meets_target"`
}

// RunServing measures the Recommend endpoint end to end: it builds a
// synthetic world (servingworld) on Redis, S3 and Kafka (started here, or
// those of opts.Config), starts one serving.Instance in process with gRPC
// on a free loopback port, waits until it is ready, and drives it over a
// real gRPC connection with an open-loop load: requests leave at opts.Rate
// on a fixed schedule whatever the responses do, each with opts.Deadline
// from its scheduled time, at most opts.Concurrency in flight. While it
// runs, the world's nearline values are kept fresh as the nearline lane
// would. progress receives one line per step and one per second of load.
func RunServing(ctx context.Context, opts ServingOptions, progress func(string)) (res ServingResult, err error) {
	if err := opts.Validate(); err != nil {
		return res, err
	}
	o := opts.withDefaults()
	if progress == nil {
		progress = func(string) {}
	}
	// The instance ranks with ONNX Runtime; without it, it would never
	// become ready. Fail before building anything, with the fix.
	if err := onnxrt.Init(""); err != nil {
		return res, fmt.Errorf("the serving instance ranks with ONNX Runtime: %w", err)
	}

	var cfg config.Config
	if o.Config != nil {
		cfg = isolateServing(*o.Config)
		progress(fmt.Sprintf("external servers: writing below s3 prefix %q and redis key prefix %q, model %q",
			cfg.S3.Prefix, cfg.Features.KeyPrefix, cfg.Server.Model))
	} else {
		dir, err := os.MkdirTemp("", "adaptrec-bench-serving-")
		if err != nil {
			return res, fmt.Errorf("state directory: %w", err)
		}
		defer os.RemoveAll(dir)
		comps := []devstack.Component{devstack.Kafka, devstack.Redis, devstack.S3}
		progress(fmt.Sprintf("starting %v on free ports in %s", comps, dir))
		begin := time.Now()
		stack, err := devstack.Start(ctx, devstack.Options{StateDir: dir, Components: comps, LookupTool: o.LookupTool})
		if err != nil {
			return res, fmt.Errorf("start the benchmark's %v: %w", comps, err)
		}
		defer func() {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if serr := stack.Stop(stopCtx); serr != nil {
				err = errors.Join(err, fmt.Errorf("stop the benchmark's %v: %w", comps, serr))
			}
		}()
		progress(fmt.Sprintf("%v ready in %s", comps, time.Since(begin).Round(time.Millisecond)))
		cfg = stack.Config()
	}
	if o.FeaturesFile != "" {
		cfg.Features.File = o.FeaturesFile
	}
	cfg.Server.Candidates = o.Candidates

	begin := time.Now()
	w, err := servingworld.Build(ctx, cfg, o.World, progress)
	if err != nil {
		return res, err
	}
	defer w.Close()
	res.WorldBuildS, res.WorldCached = Round(time.Since(begin).Seconds(), 1), w.Cached
	progress(fmt.Sprintf("world built in %.1fs", res.WorldBuildS))

	// The server's runtime settings, as cmd/server applies them.
	res.GCPercent = serving.ApplyRuntimeSettings(cfg.Server)
	inst, err := serving.NewInstance(ctx, cfg, o.Logger, serving.InstanceOptions{Name: "adaptrec/bench-serving"})
	if err != nil {
		return res, err
	}
	defer inst.Close()
	// The publisher outlives the server so the last responses' events are
	// flushed; the nearline writer and the instance stop with the server.
	pubCtx, stopPub := context.WithCancel(ctx)
	runCtx, stopRun := context.WithCancel(ctx)
	var bg sync.WaitGroup
	bg.Go(func() { inst.AsyncPublisher().Run(pubCtx) })
	bg.Go(func() { _ = inst.Run(runCtx) })
	bg.Go(func() { _ = w.KeepNearlineFresh(runCtx, DefaultNearlinePeriod) })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		stopRun()
		stopPub()
		bg.Wait()
		return res, err
	}
	bg.Go(func() { _ = inst.GRPC.Serve(lis) })
	defer func() {
		inst.GRPC.Stop()
		stopRun()
		stopPub()
		bg.Wait()
	}()
	if err := waitServingReady(ctx, inst, progress); err != nil {
		return res, err
	}

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return res, err
	}
	defer conn.Close()
	res.Rate, res.WarmupS, res.Concurrency, res.DeadlineMs = o.Rate, o.Warmup.Seconds(), o.Concurrency, ms3(o.Deadline)
	res.Items, res.Users, res.Candidates = len(w.ItemIDs()), len(w.UserIDs()), o.Candidates
	res.FeaturesPerCandidate, res.ValuesPerCandidate = len(w.Layout.Columns()), w.Layout.Width()
	res.ModelVersion, res.Ranker, res.RankerAUC = w.Version, servingRanker(w.Options.Hidden), Round(w.Metrics["auc"], 3)
	target := ServingTargetP99(o.Rate)
	res.TargetP99Ms = ms3(target)

	progress(fmt.Sprintf("open-loop load: %g requests/s over gRPC for %s after a %s warm-up, deadline %s, at most %d in flight",
		o.Rate, o.Duration, o.Warmup, o.Deadline, o.Concurrency))
	if err := runLoad(ctx, adaptrecv1.NewRecommendServiceClient(conn), w, o, &res, progress); err != nil {
		return res, err
	}
	res.MeetsTarget = res.OK > 0 && res.P99Ms <= res.TargetP99Ms && res.Errors == 0
	return res, nil
}

// isolateServing points a configuration of running servers at the benchmark's own
// S3 prefix, Redis keys and model, below a fresh run id.
func isolateServing(cfg config.Config) config.Config {
	run := time.Now().UTC().Format("20060102T150405Z")
	cfg.S3.Prefix += "bench/serving/" + run + "/"
	cfg.Features.KeyPrefix += "bench:serving:" + run + ":"
	cfg.Server.Model = ExternalModel
	return cfg
}

// waitServingReady polls the instance until it can rank with the world's model.
func waitServingReady(ctx context.Context, inst *serving.Instance, progress func(string)) error {
	start := time.Now()
	deadline := start.Add(servingReadyTimeout)
	lastReport := start
	for {
		err := inst.Ready(ctx)
		if err == nil {
			progress(fmt.Sprintf("serving instance ready in %s", time.Since(start).Round(time.Millisecond)))
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("serving instance not ready after %s: %w", servingReadyTimeout, err)
		}
		if time.Since(lastReport) >= 5*time.Second {
			progress(fmt.Sprintf("waiting for the serving instance: %v", err))
			lastReport = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func servingRanker(hidden []int) string {
	if len(hidden) == 0 {
		return "lr"
	}
	s := make([]string, len(hidden))
	for i, h := range hidden {
		s[i] = fmt.Sprint(h)
	}
	return "mlp[" + strings.Join(s, ",") + "]"
}

// servingOutcome is one measured request's result.
type servingOutcome struct {
	lat, lag time.Duration
	code     codes.Code
	unsent   bool
	level    adaptrecv1.DegradationLevel
	version  string
}

// runLoad sends the warm-up and the measured requests on their schedule
// and fills res with what the measured ones met.
func runLoad(ctx context.Context, client adaptrecv1.RecommendServiceClient, w *servingworld.World, o ServingOptions, res *ServingResult, progress func(string)) error {
	rng := rand.New(rand.NewPCG(o.Seed, 0x5e7))
	reqs := make([]*adaptrecv1.RecommendRequest, min(requestPool, max(int((o.Warmup+o.Duration).Seconds()*o.Rate), 1)))
	for k := range reqs {
		reqs[k] = w.Request(rng.IntN(len(w.UserIDs())), rng)
	}
	total := int((o.Warmup + o.Duration).Seconds() * o.Rate)
	first := int(o.Warmup.Seconds() * o.Rate)
	out := make([]servingOutcome, total-first)
	at := func(i int, start time.Time) time.Time {
		return start.Add(time.Duration(float64(i) * float64(time.Second) / o.Rate))
	}

	var (
		wg                sync.WaitGroup
		inFlight, maxSeen atomic.Int64
		done, failed      atomic.Int64
		mu                sync.Mutex
		window            []time.Duration // latencies of the current second, for progress
	)
	slots := make(chan struct{}, o.Concurrency)
	send := func(i int, sched time.Time, req *adaptrecv1.RecommendRequest) {
		defer wg.Done()
		lag := time.Since(sched)
		n := inFlight.Add(1)
		for m := maxSeen.Load(); n > m && !maxSeen.CompareAndSwap(m, n); m = maxSeen.Load() {
		}
		cctx, cancel := context.WithDeadline(ctx, sched.Add(o.Deadline))
		resp, err := client.Recommend(cctx, req)
		lat := time.Since(sched)
		cancel()
		inFlight.Add(-1)
		<-slots
		done.Add(1)
		if err != nil {
			failed.Add(1)
		}
		mu.Lock()
		window = append(window, lat)
		mu.Unlock()
		if i < first {
			return
		}
		r := &out[i-first]
		r.lat, r.lag, r.code = lat, lag, status.Code(err)
		if err == nil {
			r.level, r.version = resp.GetDegradationLevel(), resp.GetModelVersion()
		}
	}

	var before, after servingMetrics
	var memBefore, memAfter runtime.MemStats
	profiling, tracing := false, false
	defer func() {
		if profiling {
			pprof.StopCPUProfile()
		}
		if tracing {
			trace.Stop()
		}
	}()
	start := time.Now().Add(10 * time.Millisecond)
	tick := start.Add(time.Second)
	lastDone := int64(0)
	for i := range total {
		sched := at(i, start)
		if d := time.Until(sched); d > 0 {
			select {
			case <-ctx.Done():
				wg.Wait()
				return ctx.Err()
			case <-time.After(d):
			}
		}
		if i == first {
			writeHeapProfile(o.MemProfileStart, progress)
			runtime.ReadMemStats(&memBefore)
			before = readServingMetrics()
			if o.Trace != nil {
				if err := trace.Start(o.Trace); err != nil {
					progress(fmt.Sprintf("no execution trace: %v", err))
				} else {
					tracing = true
				}
			}
			if o.CPUProfile != nil {
				if err := pprof.StartCPUProfile(o.CPUProfile); err != nil {
					progress(fmt.Sprintf("no CPU profile: %v", err))
				} else {
					profiling = true
				}
			}
		}
		if now := time.Now(); now.After(tick) {
			mu.Lock()
			lat := window
			window = nil
			mu.Unlock()
			phase := "warm-up"
			if i >= first {
				phase = "measured"
			}
			d := done.Load()
			progress(fmt.Sprintf("%5.1fs %-8s  %d sent, %d answered (%d/s), %d failed, %d in flight, p99 of the last second %.2f ms",
				now.Sub(start).Seconds(), phase, i, d, d-lastDone, failed.Load(), inFlight.Load(), ms3(Quantile(sortedDurations(lat), 0.99))))
			lastDone = d
			tick = tick.Add(time.Second)
		}
		select {
		case slots <- struct{}{}:
			wg.Add(1)
			go send(i, sched, reqs[i%len(reqs)])
		default:
			if i >= first {
				out[i-first] = servingOutcome{unsent: true, lat: o.Deadline}
			}
		}
	}
	end := at(total, start)
	if d := time.Until(end); d > 0 {
		time.Sleep(d)
	}
	wg.Wait()
	if profiling {
		pprof.StopCPUProfile()
		profiling = false
	}
	if tracing {
		trace.Stop()
		tracing = false
	}
	after = readServingMetrics()
	runtime.ReadMemStats(&memAfter)
	writeHeapProfile(o.MemProfile, progress)

	res.DurationS = Round(at(total, start).Sub(at(first, start)).Seconds(), 2)
	res.Requests = int64(len(out))
	res.Levels = map[string]int64{}
	codesSeen := map[string]int64{}
	lat := make([]time.Duration, 0, len(out))
	lags := make([]time.Duration, 0, len(out))
	for _, r := range out {
		lat = append(lat, r.lat)
		switch {
		case r.unsent:
			codesSeen["unsent"]++
			continue
		case r.code != codes.OK:
			codesSeen[r.code.String()]++
		default:
			res.OK++
			res.Levels[strings.TrimPrefix(r.level.String(), "DEGRADATION_LEVEL_")]++
			if r.level != adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_FULL {
				res.Degraded++
			}
			if r.version != w.Version {
				res.WrongModel++
			}
		}
		lags = append(lags, r.lag)
	}
	for _, n := range codesSeen {
		res.Errors += n
	}
	if len(codesSeen) > 0 {
		res.ErrorCodes = codesSeen
	}
	sum := Summarize(lat)
	res.P50Ms, res.P95Ms, res.P99Ms, res.MaxMs = ms3(sum.P50), ms3(sum.P95), ms3(sum.P99), ms3(sum.Max)
	res.SendLagP99Ms = ms3(Summarize(lags).P99)
	res.MaxInFlight = maxSeen.Load()
	if res.DurationS > 0 {
		res.ThroughputPerS = Round(float64(res.OK)/res.DurationS, 1)
	}
	res.Stages = after.stages(before)
	res.Rankers, res.Fallbacks = after.counts(before, countRanker), after.counts(before, countFallback)
	res.FeaturesDegraded, res.Shed = after.counts(before, countDegraded), after.counts(before, countShed)
	res.SourcesDropped = after.counts(before, countDropped)
	if res.Requests > 0 {
		res.AllocsPerRequest = Round(float64(memAfter.Mallocs-memBefore.Mallocs)/float64(res.Requests), 0)
		res.BytesPerRequest = Round(float64(memAfter.TotalAlloc-memBefore.TotalAlloc)/float64(res.Requests), 0)
	}
	res.GCCycles = int64(memAfter.NumGC - memBefore.NumGC)
	res.HeapMB = Round(float64(memAfter.HeapAlloc)/1e6, 0)
	return nil
}

// writeHeapProfile writes a heap profile to w, if set, after a GC: a
// profile's in-use figures are those of the last completed cycle.
func writeHeapProfile(w io.Writer, progress func(string)) {
	if w == nil {
		return
	}
	runtime.GC()
	if err := pprof.Lookup("heap").WriteTo(w, 0); err != nil {
		progress(fmt.Sprintf("no heap profile: %v", err))
	}
}

func sortedDurations(d []time.Duration) []time.Duration {
	d = slices.Clone(d)
	slices.Sort(d)
	return d
}

// Serving metrics the result breaks down, from the default Prometheus
// registry the serving packages register them in.
const (
	stageMetric     = "adaptrec_serving_stage_seconds"
	handlerMetric   = "adaptrec_grpc_server_handling_seconds"
	admissionMetric = "adaptrec_admission_wait_seconds"
	rankerMetric    = "adaptrec_serving_ranker_total"
	fallbackMetric  = "adaptrec_serving_pipeline_fallbacks_total"
	degradedMetric  = "adaptrec_features_degraded_total"
	shedMetric      = "adaptrec_admission_shed_total"
	sourceMetric    = "adaptrec_retrieval_source_seconds"
	droppedMetric   = "adaptrec_retrieval_source_dropped_total"
	// recommendMethod is the handler metric's method label of Recommend.
	recommendMethod = "/adaptrec.v1.RecommendService/Recommend"
)

// Stage names of the result beyond the pipeline's own: the whole handler
// as the server timed it, the wait for an admission slot, and each
// retrieval source ("source_ann", late answers included).
const (
	stageHandler   = "server_total"
	stageAdmission = "admission_wait"
	sourcePrefix   = "source_"
)

// Counter families of servingMetrics.counter.
const (
	countRanker   = "ranker"
	countFallback = "fallback"
	countDegraded = "features_degraded"
	countShed     = "shed"
	countDropped  = "dropped"
)

// servingMetrics holds the serving metrics at one instant: per stage the
// cumulative bucket counts (by upper bound), count and sum, summed over the
// other labels; and counters by label.
type servingMetrics struct {
	buckets map[string][]histBucket
	count   map[string]uint64
	sum     map[string]float64
	counter map[string]map[string]float64 // family → label value(s) → value
}

type histBucket struct {
	upper float64
	n     uint64
}

func readServingMetrics() servingMetrics {
	s := servingMetrics{buckets: map[string][]histBucket{}, count: map[string]uint64{}, sum: map[string]float64{},
		counter: map[string]map[string]float64{countRanker: {}, countFallback: {}, countDegraded: {}, countShed: {}, countDropped: {}}}
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		return s
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			var stage string
			switch mf.GetName() {
			case stageMetric:
				stage = labels["stage"]
			case handlerMetric:
				if labels["method"] == recommendMethod {
					stage = stageHandler
				}
			case admissionMetric:
				stage = stageAdmission
			case sourceMetric:
				stage = sourcePrefix + labels["source"]
			case droppedMetric:
				s.counter[countDropped][labels["source"]+"/"+labels["reason"]] += m.GetCounter().GetValue()
			case rankerMetric:
				key := labels["ranker"]
				if r := labels["reason"]; r != "" {
					key += "/" + r
				}
				s.counter[countRanker][key] += m.GetCounter().GetValue()
			case fallbackMetric:
				s.counter[countFallback][labels["reason"]] += m.GetCounter().GetValue()
			case degradedMetric:
				s.counter[countDegraded][labels["reason"]] += m.GetCounter().GetValue()
			case shedMetric:
				s.counter[countShed][labels["priority"]+"/"+labels["reason"]] += m.GetCounter().GetValue()
			}
			if stage == "" {
				continue
			}
			h := m.GetHistogram()
			bs := s.buckets[stage]
			for k, b := range h.GetBucket() {
				if k == len(bs) {
					bs = append(bs, histBucket{upper: b.GetUpperBound()})
				}
				bs[k].n += b.GetCumulativeCount()
			}
			s.buckets[stage] = bs
			s.count[stage] += h.GetSampleCount()
			s.sum[stage] += h.GetSampleSum()
		}
	}
	return s
}

// stages returns each stage's latency between before and s.
func (s servingMetrics) stages(before servingMetrics) map[string]StageLatency {
	out := map[string]StageLatency{}
	for stage, bs := range s.buckets {
		n := s.count[stage] - before.count[stage]
		if n == 0 {
			continue
		}
		diff := make([]histBucket, len(bs))
		for k, b := range bs {
			diff[k] = b
			if prev := before.buckets[stage]; k < len(prev) {
				diff[k].n -= prev[k].n
			}
		}
		out[stage] = StageLatency{
			Count:  int64(n),
			MeanMs: Round((s.sum[stage]-before.sum[stage])/float64(n)*1000, 3),
			P50Ms:  Round(bucketQuantile(diff, n, 0.5)*1000, 3),
			P99Ms:  Round(bucketQuantile(diff, n, 0.99)*1000, 3),
		}
	}
	return out
}

// counts returns the increase of a counter family between before and s.
func (s servingMetrics) counts(before servingMetrics, family string) map[string]int64 {
	out := map[string]int64{}
	for k, v := range s.counter[family] {
		if d := int64(math.Round(v - before.counter[family][k])); d > 0 {
			out[k] = d
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// bucketQuantile estimates the q-quantile of n observations from
// cumulative buckets by linear interpolation within the histBucket it falls in;
// past the last finite bound it returns that bound.
func bucketQuantile(bs []histBucket, n uint64, q float64) float64 {
	rank := q * float64(n)
	lower, below := 0.0, uint64(0)
	for _, b := range bs {
		if float64(b.n) >= rank {
			if b.n == below {
				return b.upper
			}
			return lower + (b.upper-lower)*(rank-float64(below))/float64(b.n-below)
		}
		lower, below = b.upper, b.n
	}
	return lower
}
