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

	gc := serving.ApplyRuntimeSettings(cfg.Server)
	log.Info("runtime", "gc_percent", gc)
	host, _ := os.Hostname()
	inst, err := serving.NewInstance(ctx, cfg, log, serving.InstanceOptions{Name: "server/" + host})
	if err != nil {
		return err
	}
	defer inst.Close()
	ops.AddReadiness("pipeline", inst.Ready)

	g, gctx := errgroup.WithContext(ctx)
	bgCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	g.Go(func() error { return ops.Serve(gctx) })
	g.Go(func() error { return inst.Run(gctx) })
	// The async publisher outlives the gRPC server so in-flight responses'
	// events are flushed after the last request.
	asyncDone := make(chan struct{})
	go func() { inst.AsyncPublisher().Run(bgCtx); close(asyncDone) }()
	g.Go(func() error {
		log.Info("serving", "grpc", lis.Addr().String(), "http", ops.Addr(), "model", cfg.Server.Model, "brokers", cfg.Kafka.Brokers,
			"tls", cfg.Server.TLSCert != "", "mtls", cfg.Server.ClientCA != "", "token_auth", len(cfg.Server.AuthTokens) > 0)
		if err := inst.GRPC.Serve(lis); err != nil {
			return fmt.Errorf("gRPC server: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down: draining in-flight requests")
		inst.Health.Shutdown()
		drained := make(chan struct{})
		go func() { inst.GRPC.GracefulStop(); close(drained) }()
		select {
		case <-drained:
		case <-time.After(10 * time.Second):
			inst.GRPC.Stop()
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
