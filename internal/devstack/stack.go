// Package devstack supervises the local stack of real servers that
// `adaptrec dev up`, the demo and every integration test run against: a
// Kafka-protocol broker, Redis, an S3 server and the Temporal dev server.
//
// Each component is a child process in its own process group, its output
// appended to <state dir>/logs/<component>.log. Start returns once every
// component answers its own protocol (a Kafka metadata request, a Redis PING,
// an S3 HeadBucket, a Temporal health check and namespace lookup) and owns
// its port; a component that exits during startup is reported with the last
// lines of its log. Single components can be stopped, killed and restarted
// on the same port and data directory, so tests can prove fallbacks.
//
// Executables are found by FindTool: $ADAPTREC_TOOLS_DIR, else
// <module root>/.tools/bin (filled by `make tools`), then $PATH.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/adaptrec/adaptrec/internal/config"
)

// ErrPortInUse matches (with errors.Is) every *PortInUseError.
var ErrPortInUse = errors.New("port already in use")

// PortInUseError reports a port of a component that another process holds.
type PortInUseError struct {
	// Component is the component that could not listen.
	Component Component
	// Port says which of the component's ports, e.g. "UI port".
	Port string
	// Addr is the loopback host:port that is taken.
	Addr string
	// Answered is set when a server answered the protocol on Addr but was
	// not the component's process.
	Answered bool
}

// Error implements error.
func (e *PortInUseError) Error() string {
	if e.Answered {
		return fmt.Sprintf("%s: another process answers on %s %s", e.Component, e.Port, e.Addr)
	}
	return fmt.Sprintf("%s: %s %s is already in use (is `adaptrec dev up` already running? try `adaptrec dev status`)",
		e.Component, e.Port, e.Addr)
}

// Is makes errors.Is(err, ErrPortInUse) true.
func (e *PortInUseError) Is(target error) bool { return target == ErrPortInUse }

// Options choose what Start runs and where. The zero value of every field
// but StateDir means the documented default.
type Options struct {
	// StateDir holds each component's data (<StateDir>/<component>) and
	// logs (<StateDir>/logs). Required.
	StateDir string
	// Components to run; nil means All.
	Components []Component
	// Ports to listen on; a zero port is replaced by a free loopback port.
	// Start retries on new ports when another process grabs a free port
	// first; fixed ports that are taken fail with ErrPortInUse.
	Ports Ports
	// Persist keeps data across restarts: the broker's log and offsets,
	// Redis's append-only file and Temporal's SQLite database. Without it
	// Redis runs with --save '' and no AOF, and Kafka and Temporal keep
	// everything in memory. S3 objects are always files under StateDir.
	Persist bool
	// TemporalHeadless skips the Temporal Web UI (tests do not need it).
	TemporalHeadless bool
	// KafkaPartitions is the broker's partition count for auto-created
	// topics; 0 means config.Default().Kafka.Partitions.
	KafkaPartitions int
	// KafkaGroupMinSessionTimeout is the smallest consumer group session
	// timeout the broker accepts; 0 means the broker's default (6 s, as in
	// Kafka). Tests lower it to observe rebalances quickly.
	KafkaGroupMinSessionTimeout time.Duration
	// ReadyTimeout bounds the wait for each component to answer; 0 means
	// 1 minute (2 minutes for Temporal).
	ReadyTimeout time.Duration
	// StopGrace is how long a component gets to exit after SIGTERM before
	// it is killed; 0 means 15 seconds.
	StopGrace time.Duration
	// LookupTool finds an executable by name; nil means FindTool.
	LookupTool func(name string) (string, error)
	// Logf receives progress messages ("waiting for temporal…"); nil
	// discards them.
	Logf func(format string, args ...any)
}

// Stack is a running set of components. Its methods are safe for concurrent
// use.
type Stack struct {
	opts  Options
	comps []Component
	tools map[Component]string

	mu    sync.Mutex
	ports Ports
	procs map[Component]*process // nil entry: stopped

	crashed chan error
	stopped atomic.Bool
}

// Endpoint is one address of the stack, for people to read.
type Endpoint struct {
	// Component serves the address.
	Component Component
	// Name says what the address serves, e.g. "Temporal UI".
	Name string
	// URL is the address or URL.
	URL string
}

// Start starts the chosen components in parallel and returns once every one
// answers its protocol. On failure it stops whatever it started and returns
// an error naming each component that failed. ctx bounds the startup only;
// the components run until Stop.
func Start(ctx context.Context, opts Options) (*Stack, error) {
	if opts.StateDir == "" {
		return nil, errors.New("devstack: Options.StateDir is required")
	}
	stateDir, err := filepath.Abs(opts.StateDir)
	if err != nil {
		return nil, fmt.Errorf("devstack: state dir: %w", err)
	}
	opts.StateDir = stateDir
	if opts.LookupTool == nil {
		opts.LookupTool = FindTool
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = 15 * time.Second
	}
	if opts.KafkaPartitions <= 0 {
		opts.KafkaPartitions = config.Default().Kafka.Partitions
	}
	comps := opts.Components
	if comps == nil {
		comps = All()
	}
	s := &Stack{
		opts:    opts,
		tools:   make(map[Component]string),
		ports:   opts.Ports,
		procs:   make(map[Component]*process),
		crashed: make(chan error, len(All())),
	}
	for _, c := range All() { // keep report order, drop duplicates
		if slices.Contains(comps, c) {
			s.comps = append(s.comps, c)
		}
	}
	for _, c := range comps {
		if c.Tool() == "" {
			return nil, fmt.Errorf("devstack: unknown component %q", c)
		}
	}

	var errs []error
	for _, c := range s.comps {
		tool, err := opts.LookupTool(c.Tool())
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c, err))
			continue
		}
		s.tools[c] = tool
		for _, dir := range []string{s.DataDir(c), s.LogDir()} {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				errs = append(errs, fmt.Errorf("%s: create %s: %w", c, dir, err))
			}
		}
		if err := s.assignPorts(c, false); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c, err))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	errs = make([]error, len(s.comps))
	var wg sync.WaitGroup
	for i, c := range s.comps {
		wg.Go(func() { errs[i] = s.startWithRetry(ctx, c) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		if stopErr := s.Stop(ctx); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return nil, err
	}
	return s, nil
}

// assignPorts picks free ports for c's zero ports (or, with again, for all
// of those that were zero in Options, after a collision).
func (s *Stack) assignPorts(c Component, again bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pp := range s.portFields(c) {
		if *pp.cur != 0 && !(again && pp.opt == 0) {
			continue
		}
		p, err := freePort()
		if err != nil {
			return err
		}
		*pp.cur = p
	}
	return nil
}

type portField struct {
	name string
	cur  *int // in s.ports
	opt  int  // as given in Options
}

// portFields lists the ports component c listens on; the first is the one
// clients use. The caller holds s.mu.
func (s *Stack) portFields(c Component) []portField {
	o := s.opts.Ports
	switch c {
	case Kafka:
		return []portField{{"port", &s.ports.Kafka, o.Kafka}}
	case Redis:
		return []portField{{"port", &s.ports.Redis, o.Redis}}
	case S3:
		return []portField{{"port", &s.ports.S3, o.S3}}
	case Temporal:
		f := []portField{
			{"gRPC port", &s.ports.Temporal, o.Temporal},
			{"HTTP API port", &s.ports.TemporalHTTP, o.TemporalHTTP},
			{"metrics port", &s.ports.TemporalMetrics, o.TemporalMetrics},
		}
		if !s.opts.TemporalHeadless {
			f = append(f, portField{"UI port", &s.ports.TemporalUI, o.TemporalUI})
		}
		return f
	}
	return nil
}

// autoPorted reports whether any of c's ports was picked by the stack.
func (s *Stack) autoPorted(c Component) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pp := range s.portFields(c) {
		if pp.opt == 0 {
			return true
		}
	}
	return false
}

// startWithRetry launches c, moving to new free ports when another process
// took one of the free ports it was given.
func (s *Stack) startWithRetry(ctx context.Context, c Component) error {
	for attempt := 1; ; attempt++ {
		err := s.launch(ctx, c)
		if err == nil || !errors.Is(err, ErrPortInUse) || !s.autoPorted(c) || attempt == 3 {
			return err
		}
		s.opts.Logf("%s: %v; retrying on other free ports", c, err)
		if err := s.assignPorts(c, true); err != nil {
			return fmt.Errorf("%s: %w", c, err)
		}
	}
}

// launch starts c's process on its current ports and waits until it is ready.
func (s *Stack) launch(ctx context.Context, c Component) error {
	s.mu.Lock()
	fields := s.portFields(c)
	ports := make([]int, len(fields))
	for i, pp := range fields {
		ports[i] = *pp.cur
	}
	argv := s.argv(c)
	s.mu.Unlock()
	for i, pp := range fields {
		if checkPortFree(ports[i]) != nil {
			return &PortInUseError{Component: c, Port: pp.name, Addr: loopback(ports[i])}
		}
	}
	p, err := startProcess(c, argv, s.DataDir(c), s.LogPath(c), s.onExit)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.procs[c] = p
	s.mu.Unlock()
	if err := s.waitReady(ctx, p, ports[0]); err != nil {
		if killErr := p.kill(); killErr != nil {
			err = errors.Join(err, killErr)
		}
		s.mu.Lock()
		s.procs[c] = nil
		s.mu.Unlock()
		return err
	}
	p.ready.Store(true)
	return nil
}

// waitReady polls c's protocol check until it passes against the child's own
// listener, the child exits, the ready timeout passes or ctx is done.
func (s *Stack) waitReady(ctx context.Context, p *process, port int) error {
	c := p.comp
	timeout := s.opts.ReadyTimeout
	if timeout <= 0 {
		timeout = c.defaultReadyTimeout()
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cfg := s.Config()
	s.opts.Logf("waiting for %s on %s%s…", c, loopback(port), c.readyHint())
	start := time.Now()
	interval := 20 * time.Millisecond
	var last error
	for {
		actx, acancel := context.WithTimeout(rctx, 5*time.Second)
		if c == S3 {
			last = ensureBucket(actx, cfg.S3)
		} else {
			last = Probe(actx, c, cfg)
		}
		acancel()
		if last == nil {
			if owned, known := listensOn(p.cmd.Process.Pid, port); known && !owned {
				return &PortInUseError{Component: c, Port: "port", Addr: loopback(port), Answered: true}
			}
			if p.exited() {
				return s.startFailure(p)
			}
			s.opts.Logf("%s ready on %s in %s", c, loopback(port), time.Since(start).Round(time.Millisecond))
			return nil
		}
		select {
		case <-p.done:
			return s.startFailure(p)
		case <-rctx.Done():
			if ctx.Err() != nil {
				return fmt.Errorf("start %s: %w", c, ctx.Err())
			}
			tail, _ := p.tail(15)
			return fmt.Errorf("%s did not answer on %s within %s: %v; last lines of %s:\n%s",
				c, loopback(port), timeout, last, p.logPath, indent(tail))
		case <-time.After(interval):
		}
		interval = min(2*interval, 250*time.Millisecond)
	}
}

// startFailure describes a child that exited during startup; a bind failure
// wraps ErrPortInUse so Start can retry on other ports.
func (s *Stack) startFailure(p *process) error {
	err := p.exitError("during startup")
	if tail, _ := p.tail(15); strings.Contains(strings.ToLower(tail), "address already in use") {
		return fmt.Errorf("%w: %w", ErrPortInUse, err)
	}
	return err
}

// onExit reports a ready component that exited without being asked to.
func (s *Stack) onExit(p *process) {
	if !p.ready.Load() || p.stopping.Load() {
		return
	}
	select {
	case s.crashed <- p.exitError("unexpectedly"):
	default:
	}
}

// argv is the command line that runs c. The caller holds s.mu.
func (s *Stack) argv(c Component) []string {
	tool := s.tools[c]
	p := s.ports
	switch c {
	case Kafka:
		argv := []string{tool,
			"--addr", loopback(p.Kafka),
			"--default-partitions", strconv.Itoa(s.opts.KafkaPartitions),
			"--log-level", "warn",
		}
		if s.opts.Persist {
			argv = append(argv, "--data-dir", s.DataDir(c))
		}
		if d := s.opts.KafkaGroupMinSessionTimeout; d > 0 {
			argv = append(argv, "--group-min-session-timeout", d.String())
		}
		return argv
	case Redis:
		aof := "no"
		if s.opts.Persist {
			aof = "yes"
		}
		return []string{tool,
			"--port", strconv.Itoa(p.Redis),
			"--bind", "127.0.0.1",
			"--dir", s.DataDir(c),
			"--daemonize", "no",
			"--save", "",
			"--appendonly", aof,
			"--loglevel", "warning",
		}
	case S3:
		return []string{tool,
			"--access", config.DevS3AccessKey,
			"--secret", config.DevS3SecretKey,
			"--port", loopback(p.S3),
			"--quiet",
			"posix", s.DataDir(c),
		}
	case Temporal:
		argv := []string{tool, "server", "start-dev",
			"--ip", "127.0.0.1",
			"--port", strconv.Itoa(p.Temporal),
			"--http-port", strconv.Itoa(p.TemporalHTTP),
			"--metrics-port", strconv.Itoa(p.TemporalMetrics),
			"--log-level", "warn",
		}
		if s.opts.TemporalHeadless {
			argv = append(argv, "--headless")
		} else {
			argv = append(argv, "--ui-port", strconv.Itoa(p.TemporalUI))
		}
		if s.opts.Persist {
			argv = append(argv, "--db-filename", filepath.Join(s.DataDir(c), "temporal.db"))
		}
		for _, sa := range TemporalSearchAttributes {
			argv = append(argv, "--search-attribute", sa[0]+"="+sa[1])
		}
		return argv
	}
	return nil
}

// Config returns config.Default with every address of a component in this
// stack replaced by the stack's own. Components not in the stack keep the
// defaults. The addresses stay valid across StopComponent/StartComponent.
func (s *Stack) Config() config.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg := config.Default()
	cfg.Kafka.Partitions = s.opts.KafkaPartitions
	for _, c := range s.comps {
		switch c {
		case Kafka:
			cfg.Kafka.Brokers = []string{loopback(s.ports.Kafka)}
		case Redis:
			cfg.Redis.Addr = loopback(s.ports.Redis)
		case S3:
			cfg.S3.Endpoint = "http://" + loopback(s.ports.S3)
			cfg.S3.Bucket = config.DevS3Bucket
			cfg.S3.AccessKeyID = config.DevS3AccessKey
			cfg.S3.SecretAccessKey = config.DevS3SecretKey
			cfg.S3.UsePathStyle = true
		case Temporal:
			cfg.Temporal.HostPort = loopback(s.ports.Temporal)
			cfg.Temporal.UIURL = ""
			if !s.opts.TemporalHeadless {
				cfg.Temporal.UIURL = "http://" + loopback(s.ports.TemporalUI)
			}
		}
	}
	return cfg
}

// Ports returns the ports in use, free ones filled in.
func (s *Stack) Ports() Ports {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ports
}

// Components returns the components of the stack in report order.
func (s *Stack) Components() []Component { return slices.Clone(s.comps) }

// Has reports whether c is part of the stack (running or stopped).
func (s *Stack) Has(c Component) bool { return slices.Contains(s.comps, c) }

// URLs lists the stack's addresses for people: Kafka bootstrap, Redis, the
// S3 endpoint and bucket, Temporal gRPC, UI and metrics.
func (s *Stack) URLs() []Endpoint {
	cfg := s.Config()
	ports := s.Ports()
	var out []Endpoint
	for _, c := range s.comps {
		switch c {
		case Kafka:
			out = append(out, Endpoint{c, "Kafka bootstrap", cfg.Kafka.Brokers[0]})
		case Redis:
			out = append(out, Endpoint{c, "Redis", "redis://" + cfg.Redis.Addr})
		case S3:
			out = append(out,
				Endpoint{c, "S3 endpoint", cfg.S3.Endpoint},
				Endpoint{c, "S3 bucket", "s3://" + cfg.S3.Bucket + " (access key " + cfg.S3.AccessKeyID + ", secret " + cfg.S3.SecretAccessKey + ")"})
		case Temporal:
			out = append(out, Endpoint{c, "Temporal gRPC", cfg.Temporal.HostPort})
			if cfg.Temporal.UIURL != "" {
				out = append(out, Endpoint{c, "Temporal UI", cfg.Temporal.UIURL})
			}
			out = append(out, Endpoint{c, "Temporal metrics", "http://" + loopback(ports.TemporalMetrics) + "/metrics"})
		}
	}
	return out
}

// StateDir returns the absolute state directory.
func (s *Stack) StateDir() string { return s.opts.StateDir }

// DataDir returns component c's data directory (also its working directory).
func (s *Stack) DataDir(c Component) string { return filepath.Join(s.opts.StateDir, string(c)) }

// LogDir returns the directory holding one log file per component.
func (s *Stack) LogDir() string { return filepath.Join(s.opts.StateDir, "logs") }

// LogPath returns component c's log file; every start appends to it.
func (s *Stack) LogPath(c Component) string { return filepath.Join(s.LogDir(), string(c)+".log") }

// LogTail returns up to n last lines of component c's log file.
func (s *Stack) LogTail(c Component, n int) (string, error) {
	return tailFile(s.LogPath(c), 0, n)
}

// Running reports whether c's process is up (it may have crashed since
// the last check).
func (s *Stack) Running(c Component) bool {
	s.mu.Lock()
	p := s.procs[c]
	s.mu.Unlock()
	return p != nil && !p.exited()
}

// PID returns the process id of component c (the leader of its process
// group), or 0 when it is not running. Tests use it to pause a component
// with SIGSTOP or to crash it behind the stack's back.
func (s *Stack) PID(c Component) int {
	s.mu.Lock()
	p := s.procs[c]
	s.mu.Unlock()
	if p == nil || p.exited() {
		return 0
	}
	return p.cmd.Process.Pid
}

// StopComponent stops component c gracefully (SIGTERM, then SIGKILL after
// Options.StopGrace or once ctx is done). Stopping a stopped component is a
// no-op. Its port and data directory are kept for StartComponent.
func (s *Stack) StopComponent(ctx context.Context, c Component) error {
	return s.halt(ctx, c, false)
}

// KillComponent kills component c with SIGKILL, as a crash would, and waits
// for it to be gone. Killing a stopped component is a no-op.
func (s *Stack) KillComponent(ctx context.Context, c Component) error {
	return s.halt(ctx, c, true)
}

func (s *Stack) halt(ctx context.Context, c Component, kill bool) error {
	if !s.Has(c) {
		return fmt.Errorf("devstack: %s is not part of this stack", c)
	}
	s.mu.Lock()
	p := s.procs[c]
	s.mu.Unlock()
	if p == nil {
		return nil
	}
	var err error
	if kill {
		err = p.kill()
	} else {
		err = p.stop(ctx, s.opts.StopGrace)
	}
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.procs[c] == p {
		s.procs[c] = nil
	}
	s.mu.Unlock()
	return nil
}

// StartComponent starts component c again on its previous port and data
// directory and waits until it answers. It fails if c is running.
func (s *Stack) StartComponent(ctx context.Context, c Component) error {
	if !s.Has(c) {
		return fmt.Errorf("devstack: %s is not part of this stack", c)
	}
	if s.stopped.Load() {
		return fmt.Errorf("devstack: start %s: the stack was stopped", c)
	}
	if s.Running(c) {
		return fmt.Errorf("devstack: start %s: already running", c)
	}
	return s.launch(ctx, c)
}

// Wait blocks until ctx is done, returning nil, or until a component exits
// without being asked to, returning an error that quotes its log.
func (s *Stack) Wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-s.crashed:
		return err
	}
}

// Stop stops every component concurrently (SIGTERM, then SIGKILL after
// Options.StopGrace or once ctx is done). It is idempotent.
func (s *Stack) Stop(ctx context.Context) error {
	s.stopped.Store(true)
	errs := make([]error, len(s.comps))
	var wg sync.WaitGroup
	for i, c := range s.comps {
		wg.Go(func() { errs[i] = s.StopComponent(ctx, c) })
	}
	wg.Wait()
	return errors.Join(errs...)
}
