package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/trainer/eval"
)

func init() { register(newEvalCmd) }

// evalDatasetFiles are the files of a MovieLens 100K folder the evaluation
// reads.
var evalDatasetFiles = []string{"u.data", "u.item"}

type evalOptions struct {
	dataset    string
	asJSON     bool
	seed       uint64
	cutoffs    []int
	file       string
	noRanker   bool
	validation float64
	candidates int
	ivf        bool
}

func newEvalCmd() *cobra.Command {
	var o evalOptions
	cmd := &cobra.Command{
		Use:   "eval",
		Short: "Offline evaluation on MovieLens 100K: the funnel against most-popular and co-occurrence",
		Long: `eval runs the offline evaluation of docs/evaluation.md on a MovieLens 100K
folder (u.data, u.item): a global time split (the last 20% of ratings by time
are the test period; nothing at or after the split is read for training),
positive = rating >= 4, and for every test user a top 20 over the whole
catalogue minus the movies they rated before the split.

The funnel is ALS retrieval (top 200 candidates) re-ranked by a logistic
regression over the feature definitions' batch features (computed by
features/batch from the training period's ratings, as of the split) plus the
retrieval score and position. The ranker learns from a label window at the
end of the training period only. Most popular and item-item co-occurrence
run on the same users and candidates.

Progress goes to standard error, a table to standard output; with --json the
last line of standard output is one JSON object: ndcg@10, ndcg@20,
recall@10, recall@20 and coverage of the funnel, the same keys in
baseline_popular, baseline_cooccurrence and retrieval_only, train_seconds,
the ranker's AUC and log loss on the test candidates (ranker.auc,
ranker.log_loss) and the protocol (protocol.description says it in words).

The data set's licence forbids redistribution: point --dataset at your copy.`,
		Example: `  adaptrec eval --dataset ../shared/datasets/ml-100k
  adaptrec eval --dataset ../shared/datasets/ml-100k --json --seed 3 --k 5,50
  adaptrec eval --dataset ../shared/datasets/ml-100k --validation 0.2   # tune without reading the test period`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runEval(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), loadConfig, o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.dataset, "dataset", "", "MovieLens 100K folder holding u.data and u.item (required)")
	fs.BoolVar(&o.asJSON, "json", false, "print the report as one JSON object on the last line")
	fs.Uint64Var(&o.seed, "seed", 0, "seed of the embeddings and the ranker")
	fs.IntSliceVar(&o.cutoffs, "k", nil, "extra cutoffs K for NDCG@K and Recall@K (10 and 20 are always reported)")
	fs.StringVar(&o.file, "features", "", "feature definitions (YAML) of the ranker's features; default the config's features.file ("+defaultFeaturesFile+")")
	fs.BoolVar(&o.noRanker, "no-ranker", false, "evaluate the funnel without its ranker (retrieval order)")
	fs.Float64Var(&o.validation, "validation", 0, "evaluate on this last share of the training period instead of the test period (for tuning; 0: the test period)")
	fs.IntVar(&o.candidates, "candidates", eval.DefaultCandidates, "candidates retrieval hands to the ranker")
	fs.BoolVar(&o.ivf, "ivf", false, "retrieve through the IVF index instead of exactly")
	return cmd
}

// checkEvalOptions reports every bad flag at once.
func checkEvalOptions(o evalOptions) error {
	var errs []error
	if o.dataset == "" {
		errs = append(errs, fmt.Errorf("--dataset is required: a MovieLens 100K folder holding %s", strings.Join(evalDatasetFiles, " and ")))
	} else if fi, err := os.Stat(o.dataset); err != nil || !fi.IsDir() {
		errs = append(errs, fmt.Errorf("--dataset %s is not a folder; want a MovieLens 100K folder holding %s", o.dataset, strings.Join(evalDatasetFiles, " and ")))
	} else {
		for _, f := range evalDatasetFiles {
			if _, err := os.Stat(filepath.Join(o.dataset, f)); err != nil {
				errs = append(errs, fmt.Errorf("--dataset %s has no %s; want a MovieLens 100K folder holding %s", o.dataset, f, strings.Join(evalDatasetFiles, " and ")))
			}
		}
	}
	for _, k := range o.cutoffs {
		if k < 1 {
			errs = append(errs, fmt.Errorf("--k %d: cutoffs must be at least 1", k))
		}
	}
	if !(o.validation >= 0 && o.validation < 1) {
		errs = append(errs, fmt.Errorf("--validation must be in [0, 1), got %v", o.validation))
	}
	if o.candidates < 1 {
		errs = append(errs, fmt.Errorf("--candidates must be at least 1, got %d", o.candidates))
	}
	return errors.Join(errs...)
}

// runEval checks the flags, runs the evaluation and prints the report.
// The configuration is loaded only when it is needed: for the ranker's
// feature definitions when --features is not given.
func runEval(ctx context.Context, stdout, stderr io.Writer, load func() (config.Config, error), o evalOptions) error {
	if err := checkEvalOptions(o); err != nil {
		return err
	}
	opt := eval.Options{
		ValidationFraction: o.validation,
		Cutoffs:            o.cutoffs,
		Candidates:         o.candidates,
		IVF:                o.ivf,
	}
	begin := time.Now()
	opt.Progress = func(line string) {
		fmt.Fprintf(stderr, "eval: %5.1fs %s\n", time.Since(begin).Seconds(), line)
	}
	opt.Retrieval.Seed = o.seed
	if !o.noRanker {
		file := o.file
		if file == "" {
			cfg, err := load()
			if err != nil {
				return err
			}
			file = definitionsFile("", cfg)
		}
		fs, err := features.Load(file)
		if err != nil {
			return fmt.Errorf("load the ranker's feature definitions (--features or features.file; --no-ranker evaluates without them): %w", err)
		}
		opt.Features = fs
	}
	fmt.Fprintf(stderr, "eval: loading MovieLens 100K from %s\n", o.dataset)
	rep, err := eval.RunMovieLens(ctx, o.dataset, opt)
	if err != nil {
		return err
	}
	if !o.asJSON {
		_, err := io.WriteString(stdout, rep.Table())
		return err
	}
	fmt.Fprint(stderr, rep.Table())
	b, err := json.Marshal(rep)
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	_, err = fmt.Fprintf(stdout, "%s\n", b)
	return err
}
