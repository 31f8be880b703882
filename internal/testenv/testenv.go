// Package testenv starts the real servers an integration test needs (Kafka
// protocol broker, Redis, S3, Temporal) on free loopback ports, each test in
// its own state directory, and stops them when the test ends:
//
//	env := testenv.New(t, testenv.Kafka, testenv.Redis)
//	cfg := env.Config() // addresses of this test's servers
//
// It uses internal/devstack, the same supervisor as `adaptrec dev up`. A
// missing tool fails the test with the command that installs it: integration
// tests never skip. Binary builds a main package of this module for tests
// that run (and kill) real processes, and Eventually polls a condition with a
// deadline so tests never sleep to wait.
package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/devstack"
)

// Component names a server New can start.
type Component = devstack.Component

// The components New can start.
const (
	Kafka    = devstack.Kafka
	Redis    = devstack.Redis
	S3       = devstack.S3
	Temporal = devstack.Temporal
)

// unreachable is the address given to components a test did not ask for,
// so code that uses one by mistake fails fast instead of reaching a
// developer's `adaptrec dev up` stack on the default ports.
const unreachable = "127.0.0.1:1"

// Options configure NewWithOptions.
type Options struct {
	// Components to start; empty means none.
	Components []Component
	// Persist keeps the broker's log and offsets, Redis's AOF and Temporal's
	// database on disk, so they survive StopComponent/StartComponent and
	// KillComponent. Without it those restart empty (S3 always keeps its
	// files).
	Persist bool
	// StartTimeout bounds starting the whole set; 0 means 3 minutes.
	StartTimeout time.Duration
}

// Env is a set of servers started for one test.
type Env struct {
	t     testing.TB
	stack *devstack.Stack
}

// New starts components on free loopback ports in t.TempDir, registers their
// shutdown with t.Cleanup and returns once every one answers its protocol.
// Any failure, a missing tool included, fails the test; only go test -short
// skips, by explicit request.
func New(t testing.TB, components ...Component) *Env {
	t.Helper()
	return NewWithOptions(t, Options{Components: components})
}

// NewWithOptions is New with options, e.g. persistence across restarts.
func NewWithOptions(t testing.TB, opts Options) *Env {
	t.Helper()
	if testing.Short() {
		// Only an explicit -short (make test-unit) skips; make test never does.
		t.Skip("integration test: starts real servers; run without -short (make test)")
	}
	if len(opts.Components) == 0 {
		t.Fatal("testenv: no components requested")
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	start := time.Now()
	stack, err := devstack.Start(ctx, devstack.Options{
		StateDir:         t.TempDir(),
		Components:       opts.Components,
		Persist:          opts.Persist,
		TemporalHeadless: true,
		// Lets tests use short session timeouts to observe rebalances.
		KafkaGroupMinSessionTimeout: time.Second,
		LookupTool:                  lookupTool(t),
		Logf:                        t.Logf,
	})
	if err != nil {
		t.Fatalf("testenv: start %v: %v", opts.Components, err)
	}
	t.Logf("testenv: %v ready in %s", opts.Components, time.Since(start).Round(time.Millisecond))
	e := &Env{t: t, stack: stack}
	t.Cleanup(func() {
		if t.Failed() {
			e.logTails()
		}
		// t.Context is canceled before cleanup runs; stopping needs its own
		// bounded time.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second)
		defer cancel()
		if err := stack.Stop(ctx); err != nil {
			t.Errorf("testenv: stop: %v", err)
		}
	})
	return e
}

// lookupTool finds the servers' executables; the broker is built from this
// module's source so tests always run the broker code they are checked in
// with, with or without `make tools`.
func lookupTool(t testing.TB) func(string) (string, error) {
	return func(name string) (string, error) {
		if name == devstack.Kafka.Tool() {
			return Binary(t, "./devtools/kafkabroker"), nil
		}
		return devstack.FindTool(name)
	}
}

// logTails logs the end of every component's log, for failed tests (the
// state directory is removed with the test's temp dir).
func (e *Env) logTails() {
	for _, c := range e.stack.Components() {
		tail, err := e.stack.LogTail(c, 20)
		if err != nil {
			e.t.Logf("testenv: %s log: %v", c, err)
			continue
		}
		e.t.Logf("testenv: last lines of %s:\n%s", e.stack.LogPath(c), tail)
	}
}

// Config returns config.Default pointing at this test's servers. Components
// the test did not ask for get an address where nothing listens, so using
// one by mistake fails fast.
func (e *Env) Config() config.Config {
	cfg := e.stack.Config()
	if !e.stack.Has(Kafka) {
		cfg.Kafka.Brokers = []string{unreachable}
	}
	if !e.stack.Has(Redis) {
		cfg.Redis.Addr = unreachable
	}
	if !e.stack.Has(S3) {
		cfg.S3.Endpoint = "http://" + unreachable
	}
	if !e.stack.Has(Temporal) {
		cfg.Temporal.HostPort = unreachable
		cfg.Temporal.UIURL = ""
	}
	return cfg
}

// Stack returns the underlying stack, e.g. for its Ports or LogPath.
func (e *Env) Stack() *devstack.Stack { return e.stack }

// KafkaAddr returns the broker's bootstrap address.
func (e *Env) KafkaAddr() string { e.require(Kafka); return e.stack.Config().Kafka.Brokers[0] }

// RedisAddr returns the Redis host:port.
func (e *Env) RedisAddr() string { e.require(Redis); return e.stack.Config().Redis.Addr }

// S3Endpoint returns the S3 endpoint URL; the bucket is Config().S3.Bucket.
func (e *Env) S3Endpoint() string { e.require(S3); return e.stack.Config().S3.Endpoint }

// TemporalHostPort returns the Temporal frontend address.
func (e *Env) TemporalHostPort() string {
	e.require(Temporal)
	return e.stack.Config().Temporal.HostPort
}

func (e *Env) require(c Component) {
	e.t.Helper()
	if !e.stack.Has(c) {
		e.t.Fatalf("testenv: %s was not requested from testenv.New", c)
	}
}

// StopComponent stops c gracefully; its port and data are kept for
// StartComponent.
func (e *Env) StopComponent(c Component) {
	e.t.Helper()
	e.require(c)
	if err := e.stack.StopComponent(e.t.Context(), c); err != nil {
		e.t.Fatalf("testenv: %v", err)
	}
}

// KillComponent kills c with SIGKILL, as a crash would.
func (e *Env) KillComponent(c Component) {
	e.t.Helper()
	e.require(c)
	if err := e.stack.KillComponent(e.t.Context(), c); err != nil {
		e.t.Fatalf("testenv: %v", err)
	}
}

// StartComponent starts a stopped c again on the same port and data
// directory and waits until it answers.
func (e *Env) StartComponent(c Component) {
	e.t.Helper()
	e.require(c)
	ctx, cancel := context.WithTimeout(e.t.Context(), 2*time.Minute)
	defer cancel()
	if err := e.stack.StartComponent(ctx, c); err != nil {
		e.t.Fatalf("testenv: %v", err)
	}
}
