package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/adaptrec/adaptrec/features/skew"
	"github.com/adaptrec/adaptrec/internal/objstore"
)

type featuresSkewOptions struct {
	trainingSet string
	from, to    string
	opt         skew.Options
	json        bool
	failOnSkew  bool
	now         time.Time
}

// errSkewFound is returned with --fail-on-skew when a feature is flagged.
var errSkewFound = errors.New("training/serving skew found")

func newFeaturesSkewCmd() *cobra.Command {
	var o featuresSkewOptions
	cmd := &cobra.Command{
		Use:   "skew --training-set ID --from T --to T",
		Short: "Compare a training set's feature statistics with the values served online",
		Long: `skew compares the feature values of a training set with those recorded in the
PredictionEvents archived in [--from, --to): per value column (a vector's
components as name[i]) the count, mean, standard deviation, quantiles and
default rate (the share of values equal to the feature's declared default,
i.e. missing values). A column is flagged when its served mean moved more than
--mean-shift training standard deviations, its PSI over the training deciles
exceeds --psi, or its default rate changed by more than --default-rate.
Columns with fewer than --min-served served values are listed but not judged.

Events are sampled deterministically: the --max-events whose event ids hash
lowest, and --max-items of each. Shadow predictions are skipped.

The exit status is 0 when features are flagged, unless --fail-on-skew is
given (then 1); errors always exit 1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			st, err := objstore.New(cmd.Context(), cfg.S3)
			if err != nil {
				return err
			}
			o.now = time.Now()
			return featuresSkew(cmd.Context(), cmd.OutOrStdout(), st, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.trainingSet, "training-set", "", "id of the training set (training/<id>/ on S3)")
	f.StringVar(&o.from, "from", "", "start of the served range: RFC 3339, a UTC date, now, or relative (-1d)")
	f.StringVar(&o.to, "to", "now", "end of the served range (exclusive)")
	f.IntVar(&o.opt.MaxEvents, "max-events", skew.DefaultMaxEvents, "most PredictionEvents sampled")
	f.IntVar(&o.opt.MaxItemsPerEvent, "max-items", skew.DefaultMaxItemsPerEvent, "most served items sampled per event")
	f.Float64Var(&o.opt.Thresholds.MeanShift, "mean-shift", skew.DefaultMeanShift, "flag |mean shift| above this many training standard deviations (negative: off)")
	f.Float64Var(&o.opt.Thresholds.PSI, "psi", skew.DefaultPSI, "flag PSI over the training deciles above this (negative: off)")
	f.Float64Var(&o.opt.Thresholds.DefaultRate, "default-rate", skew.DefaultDefaultRate, "flag a default-rate change above this (negative: off)")
	f.Int64Var(&o.opt.Thresholds.MinServed, "min-served", skew.DefaultMinServed, "fewest served values a column needs to be judged")
	f.BoolVar(&o.json, "json", false, "print the report as JSON")
	f.BoolVar(&o.failOnSkew, "fail-on-skew", false, "exit 1 when any feature is flagged")
	return cmd
}

func featuresSkew(ctx context.Context, out io.Writer, st skew.Store, o featuresSkewOptions) error {
	if o.trainingSet == "" {
		return errors.New("--training-set is required")
	}
	var err error
	if o.opt.From, err = eventsParseTime("from", o.from, o.now); err != nil {
		return err
	}
	if o.opt.To, err = eventsParseTime("to", o.to, o.now); err != nil {
		return err
	}
	if !o.opt.From.Before(o.opt.To) {
		return fmt.Errorf("--from %s is not before --to %s", o.opt.From.Format(time.RFC3339), o.opt.To.Format(time.RFC3339))
	}
	if o.opt.MaxEvents <= 0 || o.opt.MaxItemsPerEvent <= 0 {
		return fmt.Errorf("--max-events %d and --max-items %d must be positive", o.opt.MaxEvents, o.opt.MaxItemsPerEvent)
	}
	if o.opt.Thresholds.MinServed <= 0 {
		return fmt.Errorf("--min-served %d must be positive", o.opt.Thresholds.MinServed)
	}
	o.opt.TrainingSet = o.trainingSet
	r, err := skew.Run(ctx, st, o.opt)
	if err != nil {
		return err
	}
	if err := printSkewReport(out, r, o.json); err != nil {
		return err
	}
	if o.failOnSkew && r.Flagged > 0 {
		return fmt.Errorf("%w: %d of %d value columns of training set %s flagged", errSkewFound, r.Flagged, len(r.Features), r.TrainingSet)
	}
	return nil
}

// printSkewReport writes r as a table or as indented JSON.
func printSkewReport(out io.Writer, r skew.Report, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(out, "training set %s (%d rows) vs %d predictions in [%s, %s) (%d sampled, %d items; %d shadow, %d other schema, %d malformed skipped)\n",
		r.TrainingSet, r.TrainingRows, r.Served.Events, r.From.Format(time.RFC3339), r.To.Format(time.RFC3339),
		r.Served.Sampled, r.Served.Items, r.Served.Shadow, r.Served.OtherSchema, r.Served.Malformed)
	fmt.Fprintf(out, "thresholds: mean shift %g std, PSI %g, default rate %g; %d of %d columns flagged\n\n",
		r.Thresholds.MeanShift, r.Thresholds.PSI, r.Thresholds.DefaultRate, r.Flagged, len(r.Features))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "feature\ttrain mean\ttrain std\tserved mean\tserved std\tserved n\tshift\tPSI\tdefault Δ\tflags")
	for _, f := range r.Features {
		flags := strings.Join(f.Reasons, ",")
		if !f.Judged {
			flags = "(not judged)"
		}
		fmt.Fprintf(tw, "%s\t%.4g\t%.4g\t%.4g\t%.4g\t%d\t%.3g\t%.3g\t%+.3f\t%s\n", f.Name,
			f.Training.Mean, f.Training.Std, f.Served.Mean, f.Served.Std, f.Served.Count, f.MeanShift, f.PSI, f.DefaultRateDiff, flags)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Served.Unknown) > 0 {
		fmt.Fprintf(out, "\nserved but not in the training set: %s\n", strings.Join(r.Served.Unknown, ", "))
	}
	return nil
}
