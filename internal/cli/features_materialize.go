package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/batch"
	"github.com/adaptrec/adaptrec/features/online"
	"github.com/adaptrec/adaptrec/features/snapshot"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/sim"
)

type featuresMaterializeOptions struct {
	file      string
	asOf      string
	groups    []string
	world     string
	catalogue string
	lookback  time.Duration
	valid     batch.ValidationOptions
	now       time.Time
}

func newFeaturesMaterializeCmd() *cobra.Command {
	var o featuresMaterializeOptions
	cmd := &cobra.Command{
		Use:   "materialize [--as-of TIME] [--groups G,...]",
		Short: "Compute batch feature snapshots from the event log, validate them and make them current",
		Long: `materialize reads the archived interactions before --as-of (the data cutoff;
default: the start of the current UTC day), computes the batch-lane features of
the definitions file, writes one snapshot per group under
features/snapshots/<group>/<version>/, validates it (active entities covered, no
NaN or infinity, values within their bounds, row count and means not far from the
snapshot it replaces) and makes it current, announcing it on
adaptrec.feature-snapshots.v1. A snapshot that fails validation is marked
rejected and the group's pointer does not move; the command then exits 1 naming
every failed check. A cutoff earlier than the current snapshot's writes history
for point-in-time training sets without moving the pointer.

Item metadata (categories, creators, durations, prices, flags) is not in the
event log: --world or --catalogue provides it; without either those features keep
their defaults, as the summary says.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			o.now = time.Now()
			return featuresMaterialize(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), cfg, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.file, "file", "", fileFlagHelp)
	f.StringVar(&o.asOf, "as-of", "", "data cutoff: RFC 3339, a UTC date, now, or relative (-1d); default the start of today (UTC)")
	f.StringSliceVar(&o.groups, "groups", nil, "batch groups to materialize (comma-separated); default every group the batch job computes")
	f.StringVar(&o.world, "world", "", "simulated world whose catalogue (worlds/<id>/catalogue.bin on S3) provides item metadata")
	f.StringVar(&o.catalogue, "catalogue", "", "local catalogue file (adaptrec sim history --catalogue-out) providing item metadata")
	f.DurationVar(&o.lookback, "tenure-lookback", batch.DefaultTenureLookback, "how far back to look for users' first interaction")
	f.Float64Var(&o.valid.MaxMeanShift, "max-mean-shift", 1, "largest change of a feature's mean, in standard deviations of the replaced snapshot")
	f.Float64Var(&o.valid.MaxRowDrop, "max-row-drop", 0.5, "largest relative fall in rows against the replaced snapshot")
	f.Float64Var(&o.valid.MinCoverage, "min-coverage", 1, "least share of active entities that must have a row")
	return cmd
}

func featuresMaterialize(ctx context.Context, stdout, stderr io.Writer, cfg config.Config, o featuresMaterializeOptions) error {
	asOf := time.Date(o.now.UTC().Year(), o.now.UTC().Month(), o.now.UTC().Day(), 0, 0, 0, 0, time.UTC)
	if o.asOf != "" {
		var err error
		if asOf, err = eventsParseTime("as-of", o.asOf, o.now); err != nil {
			return err
		}
	}
	if asOf.After(o.now) {
		return fmt.Errorf("--as-of %s is in the future: a snapshot's cutoff must have passed", asOf.Format(time.RFC3339))
	}
	if o.world != "" && o.catalogue != "" {
		return errors.New("--world and --catalogue both name a catalogue: give one")
	}
	fs, err := features.Load(definitionsFile(o.file, cfg))
	if err != nil {
		return err
	}
	store, err := objstore.New(ctx, cfg.S3)
	if err != nil {
		return err
	}
	bc := batch.Config{TenureLookback: o.lookback}
	switch {
	case o.world != "":
		if bc.Catalogue, err = batch.ReadSimCatalogue(ctx, store, activities.CatalogueKey(o.world)); err != nil {
			return fmt.Errorf("--world %s: %w", o.world, err)
		}
	case o.catalogue != "":
		f, err := os.Open(o.catalogue)
		if err != nil {
			return fmt.Errorf("--catalogue: %w", err)
		}
		sc, err := sim.ReadCatalogue(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("--catalogue %s: %w", o.catalogue, err)
		}
		bc.Catalogue = batch.CatalogueFromSim(sc)
	}
	bc.Progress = progressPrinter(stderr)
	producer, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{})
	if err != nil {
		return err
	}
	defer producer.Close()
	// User groups are loaded into Redis before their pointer moves, so
	// serving can switch the moment it does.
	rdb := online.NewClient(cfg.Redis)
	defer rdb.Close()
	job := &batch.Job{
		Store: store, Features: fs, Events: producer, Config: bc, Validation: o.valid,
		Preload: online.Preloader(rdb, fs, online.ObjectSnapshots{Store: store}, online.LoadOptions{KeyPrefix: cfg.Features.KeyPrefix}),
		Logf:    func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) },
	}
	groups, err := job.Groups(o.groups)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "materializing %s as of %s from %s\n", strings.Join(groups, ", "), asOf.Format(time.RFC3339), store.URI("events/"))
	start := time.Now()
	rep, err := job.Materialize(ctx, batch.Request{AsOf: asOf, Groups: groups})
	printMaterializeReport(stdout, rep, time.Since(start))
	return err
}

// progressPrinter reports the scan of the event log about every 2 seconds.
func progressPrinter(w io.Writer) func(batch.ScanProgress) {
	var last time.Duration
	return func(p batch.ScanProgress) {
		if p.Elapsed-last < 2*time.Second && p.Objects < p.ObjectsTotal {
			return
		}
		last = p.Elapsed
		fmt.Fprintf(w, "read %d of %d event-log objects, %d events, %s\n", p.Objects, p.ObjectsTotal, p.Events, p.Elapsed.Round(100*time.Millisecond))
	}
}

func printMaterializeReport(w io.Writer, rep batch.Report, elapsed time.Duration) {
	if len(rep.Groups) == 0 {
		return
	}
	fmt.Fprintf(w, "as of %s: %d events read (%d in the 30-day window) from %d objects; scan %s, build %s, write+validate %s, total %s\n\n",
		rep.AsOf.Format(time.RFC3339), rep.Events, rep.InWindow, rep.Objects, rep.Scan.Round(time.Millisecond),
		rep.Build.Round(time.Millisecond), rep.Write.Round(time.Millisecond), elapsed.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tVERSION\tROWS\tOUTCOME\tPREVIOUS\tDEFAULTED")
	for _, g := range rep.Groups {
		prev := g.Pointer.Previous
		if g.Outcome != "current" {
			prev = g.Base
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\n", g.Group, g.Version, g.Rows, g.Outcome, orDash(prev), len(g.NotComputed))
	}
	tw.Flush()
	for _, g := range rep.Groups {
		byReason := map[string][]string{}
		for n, why := range g.NotComputed {
			byReason[why] = append(byReason[why], n)
		}
		reasons := slices.Sorted(maps.Keys(byReason))
		for _, why := range reasons {
			names := byReason[why]
			slices.Sort(names)
			fmt.Fprintf(w, "  %s: defaults kept for %s: %s\n", g.Group, strings.Join(names, ", "), why)
		}
		for _, f := range g.Failures {
			fmt.Fprintf(w, "  %s REJECTED: %s\n", g.Group, f)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newFeaturesRollbackCmd() *cobra.Command {
	var group, file string
	cmd := &cobra.Command{
		Use:   "rollback --group G",
		Short: "Make a feature group's previous snapshot current again",
		Long: `rollback moves the group's current-snapshot pointer back to the snapshot it
replaced (compare-and-swap: it fails if the pointer changes meanwhile) and
announces it on adaptrec.feature-snapshots.v1 with rolled_back set, so serving
reloads it. The replaced snapshot becomes the previous one: a second rollback
rolls forward again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			return featuresRollback(cmd.Context(), cmd.OutOrStdout(), cfg, group, file)
		},
	}
	cmd.Flags().StringVar(&group, "group", "", "feature group (required), e.g. item_batch")
	cmd.Flags().StringVar(&file, "file", "", fileFlagHelp)
	return cmd
}

func featuresRollback(ctx context.Context, out io.Writer, cfg config.Config, group, file string) error {
	if group == "" {
		return errors.New("--group is required (e.g. --group item_batch)")
	}
	store, err := objstore.New(ctx, cfg.S3)
	if err != nil {
		return err
	}
	producer, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{})
	if err != nil {
		return err
	}
	defer producer.Close()
	// A user group's previous version may have expired from Redis: load it
	// again before the pointer moves back.
	rdb := online.NewClient(cfg.Redis)
	defer rdb.Close()
	job := &batch.Job{Store: store, Events: producer, Preload: func(ctx context.Context, group, version string) error {
		fs, err := features.Load(definitionsFile(file, cfg))
		if err != nil {
			return err
		}
		return online.Preloader(rdb, fs, online.ObjectSnapshots{Store: store}, online.LoadOptions{KeyPrefix: cfg.Features.KeyPrefix})(ctx, group, version)
	}}
	before, err := snapshot.Current(ctx, store, group)
	if err != nil {
		return err
	}
	p, err := job.Rollback(ctx, group)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s: rolled back from %s to %s (announced on %s)\n", group, before.Version, p.Version, events.TopicFeatureSnapshots)
	return nil
}
