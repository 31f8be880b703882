// Command consumers runs adaptrec's Kafka consumer services; today that is
// the archiver, which writes every event topic to Parquet on S3 exactly once
// (see package consumers/archiver). It serves Prometheus /metrics, /healthz
// and /readyz on consumers.http_addr and shuts down gracefully on SIGINT or
// SIGTERM: buffered events are made durable and the consumer group is left
// before it exits. It exits non-zero when it cannot start or a service
// fails.
//
// Usage:
//
//	consumers [--config FILE]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/adaptrec/adaptrec/consumers/archiver"
	"github.com/adaptrec/adaptrec/consumers/nearline"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/online"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/internal/telemetry"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "consumers:", err)
		os.Exit(1)
	}
}

func run() error {
	configPath := flag.String("config", os.Getenv(config.EnvPrefix+"CONFIG"), "configuration file (YAML); ADAPTREC_* environment variables override it")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	cfg, err := config.Load(*configPath, os.Environ())
	if err != nil {
		return err
	}
	log := telemetry.NewLogger(os.Stderr, cfg.Log)
	// Installed before anything starts: a process started in the background
	// by a non-interactive shell otherwise ignores SIGINT.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ops, err := telemetry.Listen(cfg.Consumers.HTTPAddr)
	if err != nil {
		return err
	}
	store, err := objstore.New(ctx, cfg.S3)
	if err != nil {
		return err
	}
	// Fail fast with a clear message when S3 or Kafka is unreachable at
	// start; later outages are retried by the archiver.
	setupCtx, cancelSetup := context.WithTimeout(ctx, 30*time.Second)
	defer cancelSetup()
	if err := store.EnsureBucket(setupCtx); err != nil {
		return fmt.Errorf("offline store (config keys s3.*): %w", err)
	}
	// The dead-letter topic must exist before the first malformed message.
	if err := events.EnsureTopics(setupCtx, cfg.Kafka); err != nil {
		return fmt.Errorf("event topics (config keys kafka.*): %w", err)
	}
	cancelSetup()

	arch, err := archiver.New(cfg, store, log)
	if err != nil {
		return err
	}
	ops.AddReadiness("archiver", arch.Ready)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return ops.Serve(gctx) })
	if n := cfg.Consumers.Nearline; n.Enabled {
		fs, err := features.Load(n.FeaturesFile)
		if err != nil {
			return fmt.Errorf("nearline features (config key consumers.nearline.features_file): %w", err)
		}
		rdb := online.NewClient(cfg.Redis)
		defer rdb.Close()
		nl, err := nearline.New(nearline.Config{Kafka: cfg.Kafka, GroupID: n.GroupID}, fs, rdb, log)
		if err != nil {
			return err
		}
		ops.AddReadiness("nearline", nl.Ready)
		g.Go(func() error {
			if err := nl.Run(gctx); err != nil {
				return fmt.Errorf("nearline: %w", err)
			}
			if ctx.Err() == nil {
				return errors.New("nearline stopped unexpectedly")
			}
			return nil
		})
	}
	g.Go(func() error {
		log.Info("consumers running", "http", ops.Addr(), "brokers", cfg.Kafka.Brokers, "bucket", store.Bucket())
		if err := arch.Run(gctx); err != nil {
			return fmt.Errorf("archiver: %w", err)
		}
		if ctx.Err() == nil {
			return errors.New("archiver stopped unexpectedly")
		}
		return nil
	})
	err = g.Wait()
	st := arch.Stats()
	log.Info("consumers stopped", "archived", st.Archived, "duplicates", st.Duplicates, "dead_lettered", st.DeadLettered, "objects", st.Objects)
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
