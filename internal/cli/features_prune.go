package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/adaptrec/adaptrec/features/snapshot"
	"github.com/adaptrec/adaptrec/internal/objstore"
)

// defaultPruneKeep is generous: a month of daily snapshots stays
// available for rollback, comparison and new training sets.
const defaultPruneKeep = 30

type featuresPruneOptions struct {
	groups []string
	keep   int
	minAge time.Duration
	dryRun bool
	asJSON bool
	now    time.Time
}

func newFeaturesPruneCmd() *cobra.Command {
	var o featuresPruneOptions
	cmd := &cobra.Command{
		Use:   "prune [--group G] [--keep N] [--min-age D] [--dry-run]",
		Short: "Delete old batch feature snapshots, keeping the newest, the current and previous, and those training sets read",
		Long: `prune deletes the snapshot versions of each group (features/snapshots/<group>/<version>/
on S3) beyond the newest --keep, and prints every version with what it did and
why. It never deletes:

  - the group's current version nor its previous one (the rollback target),
    whatever --keep says, so 'features rollback' works after any prune;
  - a version written less than --min-age ago (a batch job may be validating
    it, or about to flip it);
  - a version a training set read: every manifest under training/ is read
    first, and the snapshot versions it records are kept while it exists.

Rejected versions (see 'features materialize') and incomplete ones (no
manifest) do not count towards --keep and are deleted once older than
--min-age. Each version goes manifest first, then its data files: a reader
never takes a half-deleted version for a whole one (a training set being built
meanwhile may fail on a version deleted under it, never read wrong values).
Without --group every group with snapshots on S3 is pruned. --dry-run prints
the same decisions and deletes nothing.`,
		Example: `  adaptrec features prune --dry-run
  adaptrec features prune --group item_batch --keep 7
  adaptrec features prune --keep 0 --min-age 48h --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			store, err := objstore.New(cmd.Context(), cfg.S3)
			if err != nil {
				return err
			}
			o.now = time.Now()
			return featuresPrune(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), store, o)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&o.groups, "group", nil, "feature group to prune (repeatable or comma-separated); default every group with snapshots")
	f.IntVar(&o.keep, "keep", defaultPruneKeep, "newest complete versions kept per group, besides the current, previous, young and training-set versions")
	f.DurationVar(&o.minAge, "min-age", snapshot.DefaultMinAge, "keep every version written less than this long ago (0: no minimum)")
	f.BoolVar(&o.dryRun, "dry-run", false, "print what would be deleted; delete nothing")
	f.BoolVar(&o.asJSON, "json", false, "print one JSON object on one line")
	return cmd
}

// featuresPruneResult is what `features prune --json` prints.
type featuresPruneResult struct {
	DryRun bool `json:"dry_run"`
	// TrainingSets counts the training sets whose snapshot versions were
	// protected.
	TrainingSets   int                    `json:"training_sets"`
	Groups         []snapshot.PruneReport `json:"groups"`
	Deleted        int                    `json:"deleted"`
	DeletedObjects int                    `json:"deleted_objects"`
	DeletedBytes   int64                  `json:"deleted_bytes"`
	Warnings       []string               `json:"warnings,omitempty"`
}

func featuresPrune(ctx context.Context, stdout, stderr io.Writer, st *objstore.Store, o featuresPruneOptions) error {
	var errs []error
	if o.keep < 0 {
		errs = append(errs, fmt.Errorf("--keep %d must not be negative", o.keep))
	}
	if o.minAge < 0 {
		errs = append(errs, fmt.Errorf("--min-age %s must not be negative", o.minAge))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	known, err := snapshot.Groups(ctx, st)
	if err != nil {
		return err
	}
	groups := o.groups
	if len(groups) == 0 {
		groups = known
	}
	for _, g := range groups {
		if !slices.Contains(known, g) {
			return fmt.Errorf("--group %q: no such group has snapshots under %s (groups with snapshots: %s)", g, st.URI(snapshot.Root), cmp.Or(strings.Join(known, ", "), "none"))
		}
	}

	res := featuresPruneResult{DryRun: o.dryRun}
	inUse, n, warnings, err := trainingSetSnapshotUses(ctx, st)
	if err != nil {
		return err
	}
	res.TrainingSets, res.Warnings = n, warnings
	for _, w := range warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	minAge := o.minAge
	if minAge == 0 {
		minAge = -1 // Prune's "no minimum"
	}
	for _, g := range groups {
		rep, err := snapshot.Prune(ctx, st, g, o.keep, snapshot.PruneOptions{MinAge: minAge, InUse: inUse, DryRun: o.dryRun, Now: o.now})
		if len(rep.Versions) > 0 {
			res.Groups = append(res.Groups, rep)
			res.Deleted += rep.Deleted
			res.DeletedObjects += rep.DeletedObjects
			res.DeletedBytes += rep.DeletedBytes
		}
		if err != nil {
			if !o.asJSON {
				_ = printPruneResult(stdout, res)
			}
			return err
		}
	}
	if o.asJSON {
		b, err := json.Marshal(res)
		if err != nil {
			return fmt.Errorf("encode result: %w", err)
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	return printPruneResult(stdout, res)
}

// trainingSetSnapshotUses reads every training set's manifest and returns
// a snapshot.PruneOptions.InUse naming the training sets that read each
// snapshot version, how many training sets there are, and warnings for
// those whose manifest cannot be read (a build in progress has none yet).
func trainingSetSnapshotUses(ctx context.Context, st *objstore.Store) (func(group, version string) string, int, []string, error) {
	sets, err := listTrainingSets(ctx, st)
	if err != nil {
		return nil, 0, nil, err
	}
	users := map[[2]string][]string{}
	var warnings []string
	for _, e := range sets {
		if e.Manifest == nil {
			if e.Status == trainingSetUnreadable {
				warnings = append(warnings, fmt.Sprintf("training set %s has an unreadable manifest: the snapshots it read are not known, and not protected (%s)", e.ID, e.Error))
			}
			continue
		}
		for _, u := range e.Manifest.Snapshots {
			if u.Version == "" {
				continue
			}
			k := [2]string{u.Group, u.Version}
			if !slices.Contains(users[k], e.ID) {
				users[k] = append(users[k], e.ID)
			}
		}
	}
	inUse := func(group, version string) string {
		ids := users[[2]string{group, version}]
		switch {
		case len(ids) == 0:
			return ""
		case len(ids) > 3:
			return fmt.Sprintf("read by training sets %s and %d more", strings.Join(ids[:3], ", "), len(ids)-3)
		case len(ids) > 1:
			return "read by training sets " + strings.Join(ids, ", ")
		}
		return "read by training set " + ids[0]
	}
	return inUse, len(sets), warnings, nil
}

func printPruneResult(w io.Writer, res featuresPruneResult) error {
	verb := "delete"
	if res.DryRun {
		verb = "would delete"
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tVERSION\tSTATE\tWRITTEN\tOBJECTS\tBYTES\tACTION\tWHY")
	for _, g := range res.Groups {
		for _, d := range g.Versions {
			action := "keep"
			if d.Delete {
				action = verb
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", g.Group, d.Version, d.State,
				d.WrittenAt.UTC().Format(time.RFC3339), d.Objects, d.Bytes, action, d.Reason)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	done := "deleted"
	if res.DryRun {
		done = "dry run: would delete"
	}
	_, err := fmt.Fprintf(w, "%s %s (%s, %d bytes) of %s; the snapshots read by %s are protected\n",
		done, count(res.Deleted, "version"), count(res.DeletedObjects, "object"), res.DeletedBytes,
		count(len(res.Groups), "group"), count(res.TrainingSets, "training set"))
	return err
}

// count says "1 version", "2 versions".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
