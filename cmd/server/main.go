// Command server serves RecommendService over gRPC, with Prometheus metrics
// and health endpoints over HTTP.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
	// Requests name IANA time zones; embed the zone database so the server
	// works in images without /usr/share/zoneinfo.
	_ "time/tzdata"

	"golang.org/x/sync/errgroup"

	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/telemetry"
	"github.com/adaptrec/adaptrec/serving"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

func run() error {
	configPath := flag.String("config", os.Getenv(config.EnvPrefix+"CONFIG"), "configuration file (YAML); ADAPTREC_* environment variables override it")
	flag.Parse()
	cfg, err := config.Load(*configPath, nil)
	if err != nil {
		return err
	}
	log := telemetry.NewLogger(os.Stderr, cfg.Log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	ops, err := telemetry.Listen(cfg.Server.HTTPAddr)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", cfg.Server.GRPCAddr)
	if err != nil {
		return fmt.Errorf("listen for gRPC on %s (config key server.grpc_addr): %w", cfg.Server.GRPCAddr, err)
	}

	producer, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{})
	if err != nil {
		return err
	}
	defer producer.Close()
	host, _ := os.Hostname()
	name := "server/" + host
	async := serving.NewAsyncPublisher(producer, log, 10000, 500, 2*time.Second)
	svc := serving.NewService(log, producer, async, serving.Options{Producer: name, IngestTimeout: cfg.Server.IngestTimeout})
	grpcSrv, health := serving.NewGRPCServer(svc)
	ops.AddReadiness("grpc", func(context.Context) error { return nil })

	g, gctx := errgroup.WithContext(ctx)
	bgCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	g.Go(func() error { return ops.Serve(gctx) })
	g.Go(func() error { svc.RunBackground(gctx); return nil })
	// The async publisher outlives the gRPC server so in-flight responses'
	// events are flushed after the last request.
	asyncDone := make(chan struct{})
	go func() { async.Run(bgCtx); close(asyncDone) }()
	g.Go(func() error {
		log.Info("serving", "grpc", lis.Addr().String(), "http", ops.Addr(), "brokers", cfg.Kafka.Brokers)
		if err := grpcSrv.Serve(lis); err != nil {
			return fmt.Errorf("gRPC server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down: draining in-flight requests")
		health.Shutdown()
		drained := make(chan struct{})
		go func() { grpcSrv.GracefulStop(); close(drained) }()
		select {
		case <-drained:
		case <-time.After(10 * time.Second):
			grpcSrv.Stop()
		}
		return nil
	})
	err = g.Wait()
	stopBackground()
	<-asyncDone
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
