// Command consumers runs adaptrec's Kafka consumer services: the archiver,
// which writes every event topic to Parquet on S3 exactly once (see package
// consumers/archiver); when consumers.nearline.enabled, the nearline
// consumer, which keeps the nearline features of features.file fresh in the
// online store (see package consumers/nearline) with the trending baseline
// of features/baseline; and, when consumers.feedback.enabled, the feedback
// loop, which joins predictions with interactions into ModelAccuracyEvents
// per model version and arm (see package consumers/feedback). It serves
// Prometheus /metrics, /healthz and /readyz on consumers.http_addr (each
// consumer has a readiness check) and shuts down gracefully on SIGINT or
// SIGTERM: buffered events are made durable and the consumer groups are left
// before it exits. It exits non-zero when it cannot start or a service fails.
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
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/adaptrec/adaptrec/consumers/archiver"
	"github.com/adaptrec/adaptrec/consumers/feedback"
	"github.com/adaptrec/adaptrec/consumers/nearline"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/baseline"
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
		fs, err := features.Load(cfg.Features.File)
		if err != nil {
			return fmt.Errorf("nearline features (config key features.file): %w", err)
		}
		nc := nearline.Config{Kafka: cfg.Kafka, GroupID: n.GroupID, KeyPrefix: cfg.Features.KeyPrefix}
		bl, err := trendingBaseline(ctx, fs, store, log)
		if err != nil {
			return err
		}
		if bl != nil {
			nc.ClicksPer30m = bl.ClicksPer30m
			g.Go(func() error {
				if err := bl.Run(gctx); err != nil && !errors.Is(err, context.Canceled) {
					return fmt.Errorf("trending baseline: %w", err)
				}
				return nil
			})
		}
		rdb := online.NewClient(cfg.Redis)
		defer rdb.Close()
		nl, err := nearline.New(nc, fs, rdb, log)
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
	if fb := cfg.Consumers.Feedback; fb.Enabled {
		fc, err := newFeedback(cfg, log)
		if err != nil {
			return err
		}
		ops.AddReadiness("feedback", fc.Ready)
		g.Go(func() error {
			if err := fc.Run(gctx); err != nil {
				return fmt.Errorf("feedback: %w", err)
			}
			if ctx.Err() == nil {
				return errors.New("feedback stopped unexpectedly")
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

// trendingBaseline returns the baseline of item_trending_velocity_30m for
// the nearline consumer, loaded from the current item snapshot when there
// is one, so that the consumer's warm-up already writes velocities; nil
// when fs does not define baseline.Feature. Without a snapshot yet, or with
// S3 failing, it is returned empty: velocities are written once its Run
// loads one.
func trendingBaseline(ctx context.Context, fs *features.FeatureSet, store *objstore.Store, log *slog.Logger) (*baseline.Baseline, error) {
	if _, ok := fs.Lookup(baseline.Feature); !ok {
		log.Info("trending baseline: the feature definitions lack " + baseline.Feature + "; item_trending_velocity_30m is not written")
		return nil, nil
	}
	bl, err := baseline.New(fs, store, baseline.Options{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("nearline trending baseline (config key features.file): %w", err)
	}
	loadCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := bl.Refresh(loadCtx); err != nil {
		log.Warn("trending baseline not loaded at start; retrying in the background", "err", err)
	} else if v, _ := bl.Version(); v == "" {
		log.Info("trending baseline: no snapshot yet; item_trending_velocity_30m is not written until one is current", "group", bl.Group())
	}
	return bl, nil
}

// newFeedback returns the feedback-loop consumer of consumers.feedback,
// whose group must be its own: a group shared with another consumer would
// split their topics' partitions between unrelated members.
func newFeedback(cfg config.Config, log *slog.Logger) (*feedback.Consumer, error) {
	fb := cfg.Consumers.Feedback
	switch fb.GroupID {
	case cfg.Consumers.Archiver.GroupID:
		return nil, fmt.Errorf("config key consumers.feedback.group_id: %q is the archiver's group; the two must differ", fb.GroupID)
	case cfg.Consumers.Nearline.GroupID:
		if !cfg.Consumers.Nearline.Enabled {
			break
		}
		return nil, fmt.Errorf("config key consumers.feedback.group_id: %q is the nearline consumer's group; the two must differ", fb.GroupID)
	}
	delay := fb.EmitDelay
	if delay == 0 {
		delay = -1 // feedback.Config reads 0 as its default
	}
	return feedback.New(feedback.Config{Kafka: cfg.Kafka, GroupID: fb.GroupID, Window: fb.Window,
		AttributionWindow: fb.AttributionWindow, EmitDelay: delay}, log)
}
