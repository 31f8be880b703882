package serving

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/online"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/internal/onnxrt"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/serving/admission"
)

// Instance is one serving instance assembled from configuration: the
// online feature store, the model manager, the pipeline, admission
// control, the shadow scorer, the asynchronous prediction publisher and the
// gRPC server. cmd/server runs one; tests and `adaptrec bench serving` run
// the same assembly.
type Instance struct {
	Service  *Service
	Pipeline *Pipeline
	Models   *ModelManager
	Store    *online.Store
	GRPC     *grpc.Server
	Health   *health.Server

	cfg      config.Config
	log      *slog.Logger
	producer *events.Producer // Ingest: synchronous, acknowledged
	preds    *events.Producer // PredictionEvents: asynchronous, batched
	async    *AsyncPublisher
	shadow   *ShadowScorer
	// settled is set once the garbage of the first load is collected
	// (see Run); Ready waits for it.
	settled atomic.Bool
}

// InstanceOptions are what configuration does not say.
type InstanceOptions struct {
	// Name is the producer name in event envelopes (e.g. server/<host>).
	Name string
	// Pipeline overrides the pipeline settings derived from cfg.Server.
	Pipeline *PipelineConfig
	// Admission overrides the admission settings derived from cfg.Server.
	Admission *admission.Config
}

// NewInstance assembles an instance. Nothing is loaded or started: Run
// does that, and the instance reports ready (health SERVING, Ready nil)
// once the catalogue and a production model are loaded.
func NewInstance(ctx context.Context, cfg config.Config, log *slog.Logger, o InstanceOptions) (*Instance, error) {
	fs, err := features.Load(cfg.Features.File)
	if err != nil {
		return nil, err
	}
	obj, err := objstore.New(ctx, cfg.S3)
	if err != nil {
		return nil, err
	}
	rdb := online.NewClient(cfg.Redis)
	store, err := online.New(fs, rdb, online.ObjectSnapshots{Store: obj}, online.Options{KeyPrefix: cfg.Features.KeyPrefix})
	if err != nil {
		return nil, err
	}
	reg := &registry.Client{Store: obj, Features: fs}
	mm := NewModelManager(reg, store, cfg.Server.Model, onnxrt.Options{}, log)
	pc := PipelineConfig{Candidates: cfg.Server.Candidates, RankTimeout: cfg.Server.RankTimeout, Rerank: cfg.Server.Rerank}
	if o.Pipeline != nil {
		pc = *o.Pipeline
	}
	pipe, err := NewPipeline(store, mm, pc, log)
	if err != nil {
		return nil, err
	}
	ac := admission.Config{MaxInFlight: cfg.Server.MaxInFlight, LatencySLO: cfg.Server.LatencySLO}
	if q := cfg.Server.MaxQueue; q > 0 {
		ac.MaxQueuedHigh, ac.MaxQueuedNormal, ac.MaxQueuedLow = q, max(q/2, 1), max(q/4, 1)
	}
	if o.Admission != nil {
		ac = *o.Admission
	}
	adm, err := admission.New(ac)
	if err != nil {
		return nil, err
	}
	producer, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{})
	if err != nil {
		return nil, err
	}
	// PredictionEvents go out in batches of up to predictionBatch, lingering
	// up to predictionLinger for one to fill, spread over the partitions;
	// kafka-go preallocates BatchSize messages for every partition batch it
	// opens. Publishing each event as it came (a batch per partition per
	// event) with 128 preallocated made these batches the largest source of
	// garbage on the request path (17 KB per request at 500 requests/s), and
	// the garbage collector's cycles are the serving tail's longest stalls.
	preds, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{BatchSize: predictionPartitionBatch})
	if err != nil {
		producer.Close()
		return nil, err
	}
	if o.Name == "" {
		host, _ := os.Hostname()
		o.Name = "server/" + host
	}
	async := NewAsyncPublisher(preds, log, 10000, predictionBatch, 2*time.Second)
	async.Linger = predictionLinger
	shadow := NewShadowScorer(pipe, async, o.Name, log, cfg.Server.ShadowQueue)
	// Batch predictions (config predictions; batchpred.go): nil when off.
	batchPreds, err := newPredictionsReader(cfg, rdb, log)
	if err != nil {
		producer.Close()
		preds.Close()
		return nil, err
	}
	svc := NewService(log, producer, async, Options{
		Producer: o.Name, IngestTimeout: cfg.Server.IngestTimeout,
		Pipeline: pipe, Admission: adm, Shadow: shadow, Predictions: batchPreds,
	})
	opts, err := serverOptions(cfg.Server)
	if err != nil {
		producer.Close()
		preds.Close()
		return nil, err
	}
	srv, hs := NewGRPCServer(svc, opts...)
	// Not serving until the model, the index and the item features are in.
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	hs.SetServingStatus(adaptrecv1.RecommendService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	return &Instance{
		Service: svc, Pipeline: pipe, Models: mm, Store: store, GRPC: srv, Health: hs,
		cfg: cfg, log: log, producer: producer, preds: preds, async: async, shadow: shadow,
	}, nil
}

// Ready is nil once the instance can rank with a model and the garbage
// of loading it is collected.
func (in *Instance) Ready(context.Context) error {
	if err := in.Pipeline.Ready(); err != nil {
		return err
	}
	if !in.settled.Load() {
		return errors.New("serving: collecting the garbage of the first load")
	}
	return nil
}

// Run loads the features and models, follows the lifecycle and snapshot
// topics, and keeps everything fresh until ctx ends. It does not serve
// gRPC: the caller runs GRPC.Serve on its listener. Run returns after ctx
// ends and the background work stopped; Close then flushes the events.
func (in *Instance) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	// Features first: a model binds to the catalogue built from them.
	if err := in.Store.Refresh(ctx); err != nil {
		in.log.Warn("serving: loading item features failed; retrying in the background", "err", err)
	}
	if err := in.Store.RefreshNearline(ctx); err != nil {
		in.log.Warn("serving: loading nearline item features failed; retrying in the background", "err", err)
	}
	if err := in.Pipeline.LoadCatalog(ctx); err != nil {
		in.log.Warn("serving: building the catalogue failed; retrying in the background", "err", err)
	}
	g.Go(func() error { _ = in.Store.Run(gctx); return nil })
	g.Go(func() error { in.Models.Run(gctx, in.cfg.Server.ModelPoll); return nil })
	g.Go(func() error { in.Pipeline.Run(gctx); return nil })
	g.Go(func() error { in.shadow.Run(gctx); return nil })
	g.Go(func() error { in.Service.RunBackground(gctx); return nil })
	g.Go(func() error {
		return events.Follow(gctx, in.cfg.Kafka, events.TopicModelLifecycle, in.log, func(_ context.Context, e *adaptrecv1.Event) error {
			if m := e.GetModelLifecycle(); m != nil {
				in.Pipeline.HandleModelEvent(m)
			}
			return nil
		})
	})
	g.Go(func() error {
		return events.Follow(gctx, in.cfg.Kafka, events.TopicFeatureSnapshots, in.log, func(ctx context.Context, e *adaptrecv1.Event) error {
			if s := e.GetFeatureSnapshot(); s != nil {
				return in.Pipeline.HandleSnapshotEvent(ctx, s)
			}
			return nil
		})
	})
	g.Go(func() error {
		// Health follows readiness.
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		serving := false
		for {
			ready := in.Pipeline.Ready() == nil
			if ready && !in.settled.Load() {
				// Loading reads the artifacts whole and decodes them: about
				// a gigabyte of garbage at 200,000 items, twice the
				// live heap. Collected now, before traffic, the first cycle
				// under load comes after a steady state's worth of
				// requests instead of stalling the first minute's (a cycle
				// holds a core of two for ~0.2 s).
				start := time.Now()
				runtime.GC()
				in.log.Info("serving: collected the loading garbage", "took", time.Since(start).Round(time.Millisecond))
				in.settled.Store(true)
			}
			if ready != serving {
				st := healthpb.HealthCheckResponse_NOT_SERVING
				if ready {
					st = healthpb.HealthCheckResponse_SERVING
					in.log.Info("serving: ready", "catalogue_items", in.Pipeline.catalogOf().Len(), "model", in.Models.Set().Aliases.Production)
				}
				in.Health.SetServingStatus("", st)
				in.Health.SetServingStatus(adaptrecv1.RecommendService_ServiceDesc.ServiceName, st)
				serving = ready
			}
			select {
			case <-gctx.Done():
				return nil
			case <-t.C:
			}
		}
	})
	return g.Wait()
}

// AsyncPublisher returns the prediction publisher, which the caller runs
// (Run) on a context that outlives the gRPC server, so that responses'
// events are flushed after the last request.
func (in *Instance) AsyncPublisher() *AsyncPublisher { return in.async }

// ApplyRuntimeSettings sets process-wide runtime settings a serving process
// runs with: the garbage collector's target (config server.gc_percent)
// unless the GOGC environment variable sets it. It returns the percent in
// effect.
func ApplyRuntimeSettings(c config.Server) int {
	if os.Getenv("GOGC") != "" {
		// The runtime read it at start; report it (SetGCPercent returns
		// the previous value) and leave it in place.
		cur := debug.SetGCPercent(100)
		debug.SetGCPercent(cur)
		return cur
	}
	debug.SetGCPercent(c.GCPercent)
	return c.GCPercent
}

// predictionBatch is the most PredictionEvents one asynchronous publish
// sends; predictionLinger how long a publish waits for more (the feedback
// join's attribution windows are seconds to minutes); and
// predictionPartitionBatch the writer's batch per partition, about what a
// lingered publish at a few hundred requests a second puts on each of the
// default 8 partitions (more are split into several batches).
const (
	predictionBatch          = 256
	predictionLinger         = 50 * time.Millisecond
	predictionPartitionBatch = 16
)

// Close releases the producers and the models.
func (in *Instance) Close() {
	in.producer.Close()
	in.preds.Close()
	set := in.Models.Set()
	for _, m := range []*Model{set.Production, set.Canary, set.Shadow} {
		_ = m.Close()
	}
}

// serverOptions builds TLS (and mTLS) credentials and the token check from
// configuration.
func serverOptions(c config.Server) ([]grpc.ServerOption, error) {
	var opts []grpc.ServerOption
	if c.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("config keys server.tls_cert/server.tls_key: %w", err)
		}
		tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if c.ClientCA != "" {
			pem, err := os.ReadFile(c.ClientCA)
			if err != nil {
				return nil, fmt.Errorf("config key server.client_ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("config key server.client_ca: %s holds no PEM certificate", c.ClientCA)
			}
			tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	}
	if len(c.AuthTokens) > 0 {
		opts = append(opts, grpc.ChainUnaryInterceptor(tokenAuth(c.AuthTokens)))
	}
	return opts, nil
}

// tokenAuth requires "authorization: Bearer <token>" on RecommendService
// calls; health and reflection stay open for probes and tooling.
func tokenAuth(tokens []string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !strings.HasPrefix(info.FullMethod, "/"+adaptrecv1.RecommendService_ServiceDesc.ServiceName+"/") {
			return handler(ctx, req)
		}
		md, _ := metadata.FromIncomingContext(ctx)
		vals := md.Get("authorization")
		if len(vals) == 0 {
			return nil, status.Error(codes.Unauthenticated, "missing authorization metadata: send \"authorization: Bearer <token>\"")
		}
		tok, ok := strings.CutPrefix(vals[0], "Bearer ")
		if !ok {
			return nil, status.Error(codes.Unauthenticated, "authorization metadata must be \"Bearer <token>\"")
		}
		for _, t := range tokens {
			if subtle.ConstantTimeCompare([]byte(tok), []byte(t)) == 1 {
				return handler(ctx, req)
			}
		}
		return nil, status.Error(codes.Unauthenticated, "unknown bearer token")
	}
}
