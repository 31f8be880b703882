package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/sim"
)

func init() { register(newSimCmd) }

func newSimCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sim",
		Short: "World simulator: historical logs, MovieLens replay, live users",
		Long: `The world simulator generates a catalogue and users with hidden tastes, and
a response model that decides what those users do with what they are shown.

  sim history    publish a deterministic historical interaction log to Kafka
  sim movielens  publish the MovieLens 100K ratings as events
  sim live       drive simulated live users against a RecommendService

history and live build the same world from the same --seed, --items,
--users/--population, --start and --days, so live users are the users of
the history log.`,
	}
	cmd.AddCommand(newSimHistoryCmd(), newSimMovieLensCmd(), newSimLiveCmd())
	return cmd
}

// simWorldFlags are the flags that define a simulated world.
type simWorldFlags struct {
	seed       uint64
	users      int
	items      int
	categories int
	days       int
	start      string
	shiftAt    string
	shiftShare float64
	catalogue  string // read the catalogue from this file instead of generating it
}

func (f *simWorldFlags) register(cmd *cobra.Command, usersFlag, usersHelp string) {
	fs := cmd.Flags()
	fs.Uint64Var(&f.seed, "seed", 1, "world seed: the same seed and sizes give the same world and log")
	fs.IntVar(&f.users, usersFlag, sim.DefaultUsers, usersHelp)
	fs.IntVar(&f.items, "items", sim.DefaultItems, fmt.Sprintf("catalogue size (1..%d)", sim.MaxItems))
	fs.IntVar(&f.categories, "categories", sim.DefaultCategories, fmt.Sprintf("number of categories (2..%d)", sim.MaxCategories))
	fs.IntVar(&f.days, "days", 30, "length of the history window in days")
	fs.StringVar(&f.start, "start", "", "start of the history window (RFC 3339 or YYYY-MM-DD, UTC); default: today 00:00 UTC minus --days")
	fs.StringVar(&f.shiftAt, "shift-at", "", "optional time (RFC 3339 or YYYY-MM-DD) at which a share of users abruptly change taste")
	fs.Float64Var(&f.shiftShare, "shift-share", 0.5, "share of users whose taste changes at --shift-at (0..1]")
	fs.StringVar(&f.catalogue, "catalogue", "", "read the catalogue from this file (written by --catalogue-out) instead of generating it")
}

// simParseTime accepts RFC 3339 or a UTC date.
func simParseTime(flag, v string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--%s %q is not an RFC 3339 time (2026-10-01T00:00:00Z) or a date (2026-10-01)", flag, v)
}

// config validates the flags and returns the world they describe; now is
// the clock the default start is taken from.
func (f *simWorldFlags) config(usersFlag string, now time.Time) (sim.WorldConfig, error) {
	var errs []error
	if f.users < 1 || f.users > sim.MaxUsers {
		errs = append(errs, fmt.Errorf("--%s must be in 1..%d, got %d", usersFlag, sim.MaxUsers, f.users))
	}
	if f.items < 1 || f.items > sim.MaxItems {
		errs = append(errs, fmt.Errorf("--items must be in 1..%d, got %d", sim.MaxItems, f.items))
	}
	if f.categories < 2 || f.categories > sim.MaxCategories {
		errs = append(errs, fmt.Errorf("--categories must be in 2..%d, got %d", sim.MaxCategories, f.categories))
	}
	if f.days < 1 || f.days > 3650 {
		errs = append(errs, fmt.Errorf("--days must be in 1..3650, got %d", f.days))
	}
	if f.shiftShare <= 0 || f.shiftShare > 1 {
		errs = append(errs, fmt.Errorf("--shift-share must be in (0, 1], got %g", f.shiftShare))
	}
	window := time.Duration(f.days) * 24 * time.Hour
	start := now.UTC().Truncate(24 * time.Hour).Add(-window)
	if f.start != "" {
		t, err := simParseTime("start", f.start)
		if err != nil {
			errs = append(errs, err)
		}
		start = t
	}
	var shift sim.Shift
	if f.shiftAt != "" {
		t, err := simParseTime("shift-at", f.shiftAt)
		if err != nil {
			errs = append(errs, err)
		}
		shift = sim.Shift{At: t, Share: f.shiftShare}
	}
	return sim.WorldConfig{
		Seed: f.seed, Start: start, Window: window,
		Catalogue:  sim.CatalogueConfig{Items: f.items, Categories: f.categories},
		Population: sim.PopulationConfig{Users: f.users, Shift: shift},
	}, errors.Join(errs...)
}

// build builds a validated world, reading the catalogue file if one is named.
func (f *simWorldFlags) build(cfg sim.WorldConfig) (*sim.World, error) {
	if f.catalogue != "" {
		cat, err := simReadCatalogue(f.catalogue)
		if err != nil {
			return nil, err
		}
		cfg.Prebuilt = cat
	}
	w, err := sim.NewWorld(cfg)
	if err != nil {
		return nil, fmt.Errorf("build the world: %w", err)
	}
	return w, nil
}

func simReadCatalogue(path string) (*sim.Catalogue, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--catalogue: %w", err)
	}
	defer f.Close()
	cat, err := sim.ReadCatalogue(f)
	if err != nil {
		return nil, fmt.Errorf("--catalogue %s: %w", path, err)
	}
	return cat, nil
}

// simWriteCatalogue writes through a temporary file so a reader never sees
// half a catalogue.
func simWriteCatalogue(path string, cat *sim.Catalogue) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write catalogue: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := cat.WriteTo(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("write catalogue %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write catalogue %s: %w", path, err)
	}
	// CreateTemp makes the file private; a catalogue is meant to be shared.
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("write catalogue: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write catalogue: %w", err)
	}
	return nil
}

// simPublisher sends event batches to Kafka, or nowhere on a dry run.
type simPublisher interface {
	Publish(ctx context.Context, evs ...*adaptrecv1.Event) error
}

type simDiscard struct{}

func (simDiscard) Publish(context.Context, ...*adaptrecv1.Event) error { return nil }

// simOpenPublisher creates the topics and a producer; close releases it.
func simOpenPublisher(ctx context.Context, cfg config.Kafka, compression string) (simPublisher, func() error, error) {
	if err := events.EnsureTopics(ctx, cfg); err != nil {
		return nil, nil, fmt.Errorf("create topics: %w", err)
	}
	p, err := events.NewProducer(cfg, events.ProducerOptions{Compression: compression})
	if err != nil {
		return nil, nil, fmt.Errorf("--compression: %w", err)
	}
	return p, p.Close, nil
}

type simHistoryOptions struct {
	world        simWorldFlags
	events       int64
	pageSize     int
	batch        int
	workers      int
	compression  string
	catalogueOut string
	dryRun       bool
	now          time.Time
}

func newSimHistoryCmd() *cobra.Command {
	var o simHistoryOptions
	cmd := &cobra.Command{
		Use:   "history",
		Short: "Generate a historical interaction log and publish it to Kafka",
		Long: `history generates --events interaction events of organic sessions (a feed
of popular, browsed and fresh items, then the users' responses) over the
window and publishes them to the interactions topic, in event-time order.

The log is deterministic: the same flags give the same events with the same
event ids, so publishing it twice is deduplicated by consumers.`,
		Example: `  adaptrec sim history --events 1000000 --users 10000 --items 20000 --days 30 --seed 1
  adaptrec sim history --events 200000 --dry-run --catalogue-out catalogue.bin`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.now = time.Now()
			var cfg config.Config
			if !o.dryRun {
				var err error
				if cfg, err = loadConfig(); err != nil {
					return err
				}
			}
			return simHistory(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), cfg, o)
		},
	}
	o.world.register(cmd, "users", fmt.Sprintf("number of simulated users (1..%d)", sim.MaxUsers))
	fs := cmd.Flags()
	fs.Int64Var(&o.events, "events", 1_000_000, "number of events to generate")
	fs.IntVar(&o.pageSize, "page-size", sim.DefaultPageSize, "items per organic page (1..100)")
	fs.IntVar(&o.batch, "batch", sim.DefaultHistoryBatch, "events per publish call")
	fs.IntVar(&o.workers, "workers", 0, "generator goroutines; 0 means one per CPU (the log does not depend on it)")
	fs.StringVar(&o.compression, "compression", "none", "Kafka compression: none, gzip, snappy, lz4 or zstd")
	fs.StringVar(&o.catalogueOut, "catalogue-out", "", "also write the catalogue to this file (see --catalogue)")
	fs.BoolVar(&o.dryRun, "dry-run", false, "generate without publishing (measures the generator)")
	return cmd
}

func (o simHistoryOptions) validate() (sim.WorldConfig, error) {
	wc, err := o.world.config("users", o.now)
	errs := []error{err}
	if o.events < 1 || o.events > sim.MaxHistoryEvents {
		errs = append(errs, fmt.Errorf("--events must be in 1..%d, got %d", int64(sim.MaxHistoryEvents), o.events))
	}
	if o.pageSize < 1 || o.pageSize > 100 {
		errs = append(errs, fmt.Errorf("--page-size must be in 1..100, got %d", o.pageSize))
	}
	if o.batch < 1 || o.batch > 100_000 {
		errs = append(errs, fmt.Errorf("--batch must be in 1..100000, got %d", o.batch))
	}
	if o.workers < 0 {
		errs = append(errs, fmt.Errorf("--workers must be >= 0, got %d", o.workers))
	}
	// Consumers reject events more than a day in the future; the last
	// sessions may run a few hours past the window.
	if end := wc.Start.Add(wc.Window); err == nil && end.After(o.now.Add(12*time.Hour)) {
		errs = append(errs, fmt.Errorf("--start %s plus --days %d ends at %s, in the future: consumers reject future events",
			wc.Start.Format(time.RFC3339), o.world.days, end.Format(time.RFC3339)))
	}
	return wc, errors.Join(errs...)
}

func simHistory(ctx context.Context, stdout, stderr io.Writer, cfg config.Config, o simHistoryOptions) error {
	wc, err := o.validate()
	if err != nil {
		return err
	}
	w, err := o.world.build(wc)
	if err != nil {
		return err
	}
	if o.catalogueOut != "" {
		if err := simWriteCatalogue(o.catalogueOut, w.Catalogue); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "sim history: catalogue of %d items written to %s\n", w.Catalogue.Len(), o.catalogueOut)
	}
	var pub simPublisher = simDiscard{}
	if !o.dryRun {
		p, closeFn, err := simOpenPublisher(ctx, cfg.Kafka, o.compression)
		if err != nil {
			return err
		}
		defer closeFn()
		pub = p
	}
	verb := "published"
	if o.dryRun {
		verb = "generated (dry run)"
	}
	fmt.Fprintf(stderr, "sim history: %d events, %d users, %d items, window %s + %dd, seed %d\n",
		o.events, w.Users.Len(), w.Catalogue.Len(), w.Start.Format(time.RFC3339), o.world.days, o.world.seed)
	st, err := sim.GenerateHistory(ctx, w, sim.HistoryConfig{
		Events: o.events, PageSize: o.pageSize, BatchSize: o.batch, Workers: o.workers,
		OnProgress: func(p sim.Progress) {
			fmt.Fprintf(stderr, "sim history: %d/%d events  %.0f events/s  %s elapsed  (event time %s)\n",
				p.Events, o.events, p.EventsPerSecond, p.Elapsed.Round(100*time.Millisecond), p.EventTime.Format(time.RFC3339))
		},
	}, func(ctx context.Context, batch []*adaptrecv1.Event) error {
		return pub.Publish(ctx, batch...)
	})
	if err != nil {
		return fmt.Errorf("sim history after %d events: %w", st.Events, err)
	}
	imp := st.ByAction[adaptrecv1.Action_ACTION_IMPRESSION]
	fmt.Fprintf(stdout, "sim history: %s %d events in %s (%.0f events/s)\n",
		verb, st.Events, st.Elapsed.Round(time.Millisecond), float64(st.Events)/st.Elapsed.Seconds())
	fmt.Fprintf(stdout, "  sessions %d, users %d of %d, items %d\n", st.Sessions, st.Users, w.Users.Len(), w.Catalogue.Len())
	fmt.Fprintf(stdout, "  event time %s .. %s\n", st.First.Format(time.RFC3339), st.Last.Format(time.RFC3339))
	fmt.Fprintf(stdout, "  actions %s\n", simFormatActions(st.ByAction))
	if imp > 0 {
		fmt.Fprintf(stdout, "  organic CTR %.2f%%\n", 100*float64(st.ByAction[adaptrecv1.Action_ACTION_CLICK])/float64(imp))
	}
	fmt.Fprintf(stdout, "  run key %012x (in every event id: the same flags give the same ids)\n", st.RunKey)
	return nil
}

func simFormatActions(m map[adaptrecv1.Action]int64) string {
	actions := slices.Sorted(maps.Keys(m))
	parts := make([]string, 0, len(actions))
	for _, a := range actions {
		parts = append(parts, fmt.Sprintf("%s %d", strings.TrimPrefix(a.String(), "ACTION_"), m[a]))
	}
	return strings.Join(parts, ", ")
}

type simMovieLensOptions struct {
	dataset      string
	batch        int
	compression  string
	catalogueOut string
	dryRun       bool
}

func newSimMovieLensCmd() *cobra.Command {
	var o simMovieLensOptions
	cmd := &cobra.Command{
		Use:   "movielens",
		Short: "Publish the MovieLens 100K ratings as interaction events",
		Long: `movielens reads u.data and u.item from --dataset and publishes every rating as
an interaction event (action RATE, value the rating, at the rating time) in
time order, with deterministic event ids. The movies can be written as a
catalogue file with --catalogue-out.

The data set's licence forbids redistribution: point --dataset at your copy.`,
		Example: `  adaptrec sim movielens --dataset ../shared/datasets/ml-100k`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var cfg config.Config
			if !o.dryRun {
				var err error
				if cfg, err = loadConfig(); err != nil {
					return err
				}
			}
			return simMovieLens(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), cfg, o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.dataset, "dataset", "", "directory holding u.data and u.item (required)")
	fs.IntVar(&o.batch, "batch", sim.DefaultHistoryBatch, "events per publish call")
	fs.StringVar(&o.compression, "compression", "none", "Kafka compression: none, gzip, snappy, lz4 or zstd")
	fs.StringVar(&o.catalogueOut, "catalogue-out", "", "also write the movies as a catalogue file")
	fs.BoolVar(&o.dryRun, "dry-run", false, "load and convert without publishing")
	return cmd
}

func simMovieLens(ctx context.Context, stdout, stderr io.Writer, cfg config.Config, o simMovieLensOptions) error {
	var errs []error
	if o.dataset == "" {
		errs = append(errs, errors.New("--dataset is required: the directory holding u.data and u.item"))
	} else if fi, err := os.Stat(o.dataset); err != nil || !fi.IsDir() {
		errs = append(errs, fmt.Errorf("--dataset %q is not a directory", o.dataset))
	}
	if o.batch < 1 || o.batch > 100_000 {
		errs = append(errs, fmt.Errorf("--batch must be in 1..100000, got %d", o.batch))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	begin := time.Now()
	m, err := sim.LoadMovieLens(o.dataset)
	if err != nil {
		return err
	}
	evs, err := m.Events("")
	if err != nil {
		return err
	}
	if o.catalogueOut != "" {
		cat, err := m.Catalogue()
		if err != nil {
			return err
		}
		if err := simWriteCatalogue(o.catalogueOut, cat); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "sim movielens: catalogue of %d movies written to %s\n", cat.Len(), o.catalogueOut)
	}
	var pub simPublisher = simDiscard{}
	if !o.dryRun {
		p, closeFn, err := simOpenPublisher(ctx, cfg.Kafka, o.compression)
		if err != nil {
			return err
		}
		defer closeFn()
		pub = p
	}
	last := time.Now()
	for i := 0; i < len(evs); i += o.batch {
		batch := evs[i:min(i+o.batch, len(evs))]
		if err := pub.Publish(ctx, batch...); err != nil {
			return fmt.Errorf("sim movielens after %d events: %w", i, err)
		}
		if time.Since(last) >= time.Second {
			last = time.Now()
			el := time.Since(begin)
			fmt.Fprintf(stderr, "sim movielens: %d/%d events  %.0f events/s  %s elapsed\n",
				i+len(batch), len(evs), float64(i+len(batch))/el.Seconds(), el.Round(100*time.Millisecond))
		}
	}
	el := time.Since(begin)
	verb := "published"
	if o.dryRun {
		verb = "converted (dry run)"
	}
	fmt.Fprintf(stdout, "sim movielens: %s %d ratings of %d users on %d movies in %s (%.0f events/s)\n",
		verb, len(evs), m.Users, len(m.Movies), el.Round(time.Millisecond), float64(len(evs))/el.Seconds())
	if len(evs) > 0 {
		fmt.Fprintf(stdout, "  event time %s .. %s\n",
			evs[0].GetEnvelope().GetEventTime().AsTime().Format(time.RFC3339),
			evs[len(evs)-1].GetEnvelope().GetEventTime().AsTime().Format(time.RFC3339))
	}
	return nil
}

type simLiveOptions struct {
	world      simWorldFlags
	server     string
	users      int
	duration   time.Duration
	requests   int64
	numItems   int
	surface    string
	priority   string
	think      time.Duration
	browseRate float64
	timeout    time.Duration
	json       bool
	now        time.Time
}

func newSimLiveCmd() *cobra.Command {
	var o simLiveOptions
	cmd := &cobra.Command{
		Use:   "live",
		Short: "Drive simulated live users against a RecommendService",
		Long: `live runs --users concurrent simulated users against the RecommendService at
--server: they ask for recommendations, respond to the items shown according
to the world's hidden tastes, browse by themselves now and then, and send
what they did back through Ingest. It stops after --duration or --requests
(or on Ctrl-C) and prints CTR per model version and experiment arm (with the
oracle's expected CTR), latency percentiles, errors by gRPC code and
responses by degradation level.

Use the same --seed, --items, --population, --start and --days as the
history log so the live users are the users the server learned about.`,
		Example: `  adaptrec sim live --server 127.0.0.1:9090 --users 16 --duration 1m
  adaptrec sim live --requests 5000 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.now = time.Now()
			if o.server == "" {
				cfg, err := loadConfig()
				if err != nil {
					return err
				}
				o.server = cfg.Server.GRPCAddr
			}
			return simLive(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	o.world.register(cmd, "population", fmt.Sprintf("number of users in the simulated population (1..%d)", sim.MaxUsers))
	fs := cmd.Flags()
	fs.StringVar(&o.server, "server", "", "RecommendService address host:port; default server.grpc_addr of the configuration")
	fs.IntVar(&o.users, "users", sim.DefaultLiveUsers, "concurrent simulated users")
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "how long to run; 0 means until --requests or Ctrl-C")
	fs.Int64Var(&o.requests, "requests", 0, "stop after this many Recommend calls; 0 means no limit")
	fs.IntVar(&o.numItems, "num-items", sim.DefaultPageSize, "items asked per request (1..500)")
	fs.StringVar(&o.surface, "surface", sim.HistorySurface, "surface named in requests")
	fs.StringVar(&o.priority, "priority", "normal", "request priority: high, normal or low")
	fs.DurationVar(&o.think, "think", 0, "mean pause between a user's requests; 0 means none")
	fs.Float64Var(&o.browseRate, "browse-rate", 0.3, "chance before each request that the user opens an item by themselves (0..1)")
	fs.DurationVar(&o.timeout, "timeout", sim.DefaultRequestTimeout, "timeout of each Recommend and Ingest call")
	fs.BoolVar(&o.json, "json", false, "print the report as JSON")
	return cmd
}

func (o simLiveOptions) config() (sim.LiveConfig, sim.WorldConfig, error) {
	wc, err := o.world.config("population", o.now)
	errs := []error{err}
	if o.users < 1 || o.users > 10_000 {
		errs = append(errs, fmt.Errorf("--users must be in 1..10000, got %d", o.users))
	}
	if o.duration < 0 {
		errs = append(errs, fmt.Errorf("--duration must be >= 0, got %s", o.duration))
	}
	if o.requests < 0 {
		errs = append(errs, fmt.Errorf("--requests must be >= 0, got %d", o.requests))
	}
	if o.duration == 0 && o.requests == 0 {
		errs = append(errs, errors.New("--duration 0 needs --requests: give the run an end"))
	}
	if o.numItems < 1 || o.numItems > 500 {
		errs = append(errs, fmt.Errorf("--num-items must be in 1..500, got %d", o.numItems))
	}
	if o.surface == "" {
		errs = append(errs, errors.New("--surface must not be empty"))
	}
	priorities := map[string]adaptrecv1.Priority{
		"high": adaptrecv1.Priority_PRIORITY_HIGH, "normal": adaptrecv1.Priority_PRIORITY_NORMAL, "low": adaptrecv1.Priority_PRIORITY_LOW,
	}
	prio, ok := priorities[strings.ToLower(o.priority)]
	if !ok {
		errs = append(errs, fmt.Errorf("--priority must be high, normal or low, got %q", o.priority))
	}
	if o.think < 0 {
		errs = append(errs, fmt.Errorf("--think must be >= 0, got %s", o.think))
	}
	if o.browseRate < 0 || o.browseRate > 1 {
		errs = append(errs, fmt.Errorf("--browse-rate must be in 0..1, got %g", o.browseRate))
	}
	if o.timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout must be > 0, got %s", o.timeout))
	}
	browse := o.browseRate
	if browse == 0 {
		browse = -1 // LiveConfig's "none"
	}
	return sim.LiveConfig{
		Users: o.users, Duration: o.duration, Requests: o.requests, NumItems: o.numItems,
		Surface: o.surface, Priority: prio, ThinkTime: o.think, BrowseRate: browse, RequestTimeout: o.timeout,
	}, wc, errors.Join(errs...)
}

func simLive(ctx context.Context, stdout, stderr io.Writer, o simLiveOptions) error {
	lc, wc, err := o.config()
	if err != nil {
		return err
	}
	w, err := o.world.build(wc)
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(o.server, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("--server %q: %w", o.server, err)
	}
	defer conn.Close()
	fmt.Fprintf(stderr, "sim live: %d users against %s (population %d, %d items, seed %d)\n",
		o.users, o.server, w.Users.Len(), w.Catalogue.Len(), o.world.seed)
	rep, runErr := sim.RunLive(ctx, w, adaptrecv1.NewRecommendServiceClient(conn), lc)
	if rep == nil {
		return runErr
	}
	// A Ctrl-C still prints what was measured.
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return runErr
	}
	if o.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("encode report: %w", err)
		}
	} else if err := simWriteLiveReport(stdout, rep); err != nil {
		return err
	}
	if rep.Succeeded == 0 {
		return fmt.Errorf("no Recommend call to %s succeeded (errors by code: %v)", o.server, rep.Errors)
	}
	return nil
}

func simWriteLiveReport(out io.Writer, rep *sim.LiveReport) error {
	failed := rep.Requests - rep.Succeeded
	fmt.Fprintf(out, "sim live: %d requests in %.1fs (%.1f/s), %d ok, %d failed\n\n",
		rep.Requests, rep.ElapsedSeconds, rep.RequestsPerSecond, rep.Succeeded, failed)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MODEL VERSION\tARM\tREQUESTS\tIMPRESSIONS\tCLICKS\tCTR\tEXPECTED CTR\tWATCHES\tCOMPLETES\tPURCHASES")
	for _, a := range rep.Arms {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\t%d\t%d\t%d\n", simOrDash(a.ModelVersion), simOrDash(a.ExperimentArm),
			a.Requests, a.Impressions, a.Clicks, simPct(a.CTR), simPct(a.ExpectedCTR), a.Watches, a.Completes, a.Purchases)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	l := rep.Latency
	fmt.Fprintf(out, "\nlatency ms (%d ok calls): mean %.2f  p50 %.2f  p90 %.2f  p95 %.2f  p99 %.2f  max %.2f\n",
		l.Count, l.Mean, l.P50, l.P90, l.P95, l.P99, l.Max)
	fmt.Fprintf(out, "errors by code: %s\n", simFormatCounts(rep.Errors))
	fmt.Fprintf(out, "degradation: %s\n", simFormatCounts(rep.Degradation))
	in := rep.Ingest
	fmt.Fprintf(out, "ingest: %d calls, %d events (%d accepted), %d retries, %d dropped; errors by code: %s\n",
		in.Calls, in.Events, in.Accepted, in.Retries, in.Dropped, simFormatCounts(in.Errors))
	_, err := fmt.Fprintf(out, "organic events %d, unknown items %d, backoffs %d\n", rep.OrganicEvents, rep.UnknownItems, rep.Backoffs)
	return err
}

func simOrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func simPct(f float64) string {
	if math.IsNaN(f) {
		return "-"
	}
	return fmt.Sprintf("%.2f%%", 100*f)
}

func simFormatCounts(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
