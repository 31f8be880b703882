// Package telemetry gives every adaptrec binary the same operational surface:
// a structured slog logger configured from config.Log, and an HTTP endpoint
// serving Prometheus /metrics, /healthz (the process is alive) and /readyz
// (the process can do its job).
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/adaptrec/adaptrec/internal/config"
)

// NewLogger returns a logger writing to w in the configured format and level.
func NewLogger(w io.Writer, cfg config.Log) *slog.Logger {
	var level slog.Level
	switch strings.ToLower(cfg.Level) {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// ReadinessCheck reports whether one dependency or stage is ready; a nil
// error means ready.
type ReadinessCheck func(ctx context.Context) error

// Server is the operational HTTP endpoint of a binary.
type Server struct {
	mu     sync.Mutex
	checks map[string]ReadinessCheck
	srv    *http.Server
	ln     net.Listener
}

// Listen binds addr and returns a Server; call Serve to start answering. The
// split lets a binary fail fast on a taken port before starting work.
func Listen(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for metrics and health on %s: %w", addr, err)
	}
	s := &Server{checks: make(map[string]ReadinessCheck), ln: ln}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", s.serveReady)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// AddReadiness registers a named readiness check evaluated on every /readyz.
func (s *Server) AddReadiness(name string, check ReadinessCheck) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = check
}

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	s.mu.Lock()
	checks := make(map[string]ReadinessCheck, len(s.checks))
	for k, v := range s.checks {
		checks[k] = v
	}
	s.mu.Unlock()
	var b strings.Builder
	ready := true
	for name, check := range checks {
		if err := check(ctx); err != nil {
			ready = false
			fmt.Fprintf(&b, "%s: not ready: %v\n", name, err)
		} else {
			fmt.Fprintf(&b, "%s: ok\n", name)
		}
	}
	if !ready {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, _ = io.WriteString(w, b.String())
}

// Serve answers until ctx is cancelled, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics and health server: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shut down metrics and health server: %w", err)
	}
	return nil
}
