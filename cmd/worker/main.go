// Command worker runs adaptrec's Temporal workflows and activities. It polls
// the task queues in worker.task_queues, so a GPU host can run only the
// training queue.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"golang.org/x/sync/errgroup"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/online"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/internal/telemetry"
	"github.com/adaptrec/adaptrec/workflows"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}

// deps are the clients activities need, built once per process.
type deps struct {
	cfg      config.Config
	store    *objstore.Store
	redis    *redis.Client
	temporal client.Client
	// errs collect what registrations could not build (the worker does
	// not start); closers run when the worker stops.
	errs    []error
	closers []func()
}

// preloadUsers loads a user feature group's snapshot into the online store
// before the batch lane makes it current (batch.Job.Preload).
func (d *deps) preloadUsers(ctx context.Context, group, version string) error {
	fs, err := features.Load(d.cfg.Features.File)
	if err != nil {
		return fmt.Errorf("feature definitions (config key features.file): %w", err)
	}
	opts := online.LoadOptions{KeyPrefix: d.cfg.Features.KeyPrefix}
	return online.Preloader(d.redis, fs, online.ObjectSnapshots{Store: d.store}, opts)(ctx, group, version)
}

// queues maps each task queue to what its workers run: each file adds
// its registrations with register.
var queues = map[string][]func(worker.Worker, *deps){}

// register adds what fn registers to the workers of task queue q.
func register(q string, fn func(worker.Worker, *deps)) { queues[q] = append(queues[q], fn) }

func init() {
	register(activities.TaskQueueDefault, func(w worker.Worker, d *deps) {
		w.RegisterWorkflow(workflows.HistoryBackfill)
		w.RegisterActivity(&activities.Backfill{Kafka: d.cfg.Kafka, Store: d.store})
		w.RegisterWorkflow(workflows.BatchFeatures)
		w.RegisterActivity(&activities.BatchFeatures{Kafka: d.cfg.Kafka, Store: d.store, FeaturesFile: d.cfg.Features.File, Preload: d.preloadUsers})
	})
}

func run() error {
	configPath := flag.String("config", os.Getenv(config.EnvPrefix+"CONFIG"), "configuration file (YAML); ADAPTREC_* environment variables override it")
	flag.Parse()
	cfg, err := config.Load(*configPath, nil)
	if err != nil {
		return err
	}
	for _, q := range cfg.Worker.TaskQueues {
		if queues[q] == nil {
			known := make([]string, 0, len(queues))
			for k := range queues {
				known = append(known, k)
			}
			slices.Sort(known)
			return fmt.Errorf("config key worker.task_queues: %q is not a task queue this worker serves (known: %v)", q, known)
		}
	}
	log := telemetry.NewLogger(os.Stderr, cfg.Log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ops, err := telemetry.Listen(cfg.Worker.HTTPAddr)
	if err != nil {
		return err
	}
	store, err := objstore.New(ctx, cfg.S3)
	if err != nil {
		return err
	}
	tc, err := dialTemporal(ctx, cfg.Temporal, log)
	if err != nil {
		return err
	}
	defer tc.Close()
	ops.AddReadiness("temporal", func(ctx context.Context) error {
		_, err := tc.CheckHealth(ctx, &client.CheckHealthRequest{})
		return err
	})

	rdb := online.NewClient(cfg.Redis)
	defer rdb.Close()
	d := &deps{cfg: cfg, store: store, redis: rdb, temporal: tc}
	defer func() {
		for _, c := range d.closers {
			c()
		}
	}()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return ops.Serve(gctx) })
	for _, q := range cfg.Worker.TaskQueues {
		// Heartbeats carry progress (events published, rows archived) that
		// the UI and the CLI show, so send them every second rather than
		// the SDK's throttled default.
		w := worker.New(tc, q, worker.Options{MaxHeartbeatThrottleInterval: time.Second})
		for _, fn := range queues[q] {
			fn(w, d)
		}
		if err := errors.Join(d.errs...); err != nil {
			return fmt.Errorf("task queue %s: %w", q, err)
		}
		if err := w.Start(); err != nil {
			return fmt.Errorf("start worker on task queue %s: %w", q, err)
		}
		log.Info("polling", "task_queue", q, "temporal", cfg.Temporal.HostPort, "namespace", cfg.Temporal.Namespace)
		g.Go(func() error {
			<-gctx.Done()
			w.Stop() // waits for running activities up to the worker's stop timeout
			return nil
		})
	}
	return g.Wait()
}

// dialTemporal connects to the Temporal frontend, retrying for a while so a
// worker started together with its cluster does not fail its first second.
func dialTemporal(ctx context.Context, cfg config.Temporal, log *slog.Logger) (client.Client, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := client.DialContext(ctx, client.Options{
			HostPort:  cfg.HostPort,
			Namespace: cfg.Namespace,
			Logger:    sdklog.NewStructuredLogger(log),
		})
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("connect to Temporal at %s (config key temporal.host_port): %w", cfg.HostPort, err)
		}
		log.Warn("Temporal not reachable yet, retrying", "host_port", cfg.HostPort, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}
