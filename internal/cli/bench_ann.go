package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/adaptrec/adaptrec/internal/bench"
	"github.com/adaptrec/adaptrec/serving/ann"
)

type benchANNOptions struct {
	asJSON bool
	bench.ANNOptions
}

func newBenchANNCmd(asJSON *bool) *cobra.Command {
	var o benchANNOptions
	cmd := &cobra.Command{
		Use:   "ann",
		Short: "Top-200 retrieval among the 64-dim embeddings of a 200,000-item catalogue: recall@200 against exact search, p99 against a 2 ms goal",
		Long: fmt.Sprintf(`ann measures the item index serving retrieves candidates from
(serving/ann, docs/adr/016-ann-index.md): the top --k items by inner product
for a user vector, against exact (brute-force) search.

With --data sim (the default) the embeddings are trained ones: it simulates a
world of --items items and --users users, generates --events events of
history, keeps the positive actions with the training job's weights, trains
ALS (trainer/retrieval, --dims factors, --als-iterations iterations) and
indexes every item that has a positive (about 92%% of the catalogue with the
defaults). Queries are the trained vectors of random users (what serving's
fold-in gives for their interactions), each excluding the items that user
interacted with. With --data clustered it indexes --items unit vectors drawn
around items/100 random centres with broad, overlapping spreads, and queries
from the same law.

It builds the index (build_seconds, on --workers goroutines), computes the
exact top --k of every query, runs 100 unmeasured searches and then times
--queries searches from --concurrency goroutines. recall is the mean share of
the exact top k a search returned. --sweep measures further beam widths over
the same queries: the recall/latency curve to choose --ef from on a real
catalogue. Nothing else runs: no servers are started.

The goal is recall@200 >= %.2f with p99 <= %s at the defaults; meets_target
says whether the run met both.`, bench.ANNTargetRecall, bench.ANNTargetP99),
		Example: `  adaptrec bench ann --json
  adaptrec bench ann --data clustered --json
  adaptrec bench ann --sweep 200,250,400,600
  adaptrec bench ann --items 50000 --users 20000 --events 2000000 --ef 200`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.asJSON = *asJSON
			return benchANN(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.Data, "data", bench.ANNDataSim, `embeddings: "sim" (ALS trained on a simulated history) or "clustered" (unit vectors)`)
	fs.IntVar(&o.Items, "items", bench.DefaultANNItems, "catalogue items of the simulated world, or clustered vectors")
	fs.IntVar(&o.Dims, "dims", bench.DefaultANNDims, "embedding dimension")
	fs.IntVar(&o.Users, "users", bench.DefaultANNUsers, "sim: users of the simulated world")
	fs.Int64Var(&o.Events, "events", bench.DefaultANNEvents, "sim: events of simulated history")
	fs.IntVar(&o.Iterations, "als-iterations", bench.DefaultANNIterations, "sim: ALS iterations")
	fs.IntVar(&o.K, "k", bench.DefaultANNK, "items per search")
	fs.IntVar(&o.Queries, "queries", bench.DefaultANNQueries, "measured searches")
	fs.IntVar(&o.Concurrency, "concurrency", 1, "goroutines searching at once")
	fs.IntVar(&o.Index.M, "m", ann.DefaultM, "index: neighbours per node on the upper layers (2·m on layer 0)")
	fs.IntVar(&o.Index.EfConstruction, "ef-construction", ann.DefaultEfConstruction, "index: beam width while building")
	fs.IntVar(&o.Index.EfSearch, "ef", ann.DefaultEfSearch, "index: beam width of a search (at least k is used)")
	fs.Float64Var(&o.Index.NormRatio, "norm-ratio", ann.DefaultNormRatio, "index: largest ratio of norms within a band")
	fs.IntVar(&o.Index.Workers, "workers", 0, "index: goroutines building; 0 means GOMAXPROCS")
	fs.IntSliceVar(&o.Sweep, "sweep", nil, "further beam widths to measure after --ef, e.g. 200,400,600 (reported under sweep)")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the data, the index and the queries")
	return cmd
}

// benchANNReport is the result `bench ann` prints.
type benchANNReport struct {
	Bench string `json:"bench"`
	bench.ANNResult
	TargetRecall float64 `json:"target_recall"`
	TargetP99Ms  float64 `json:"target_p99_ms"`
	MeetsTarget  bool    `json:"meets_target"`
}

// MarshalJSON names the recall after k ("recall@200"), which a struct tag
// cannot.
func (r benchANNReport) MarshalJSON() ([]byte, error) {
	type plain benchANNReport
	b, err := json.Marshal(plain(r))
	if err != nil {
		return nil, err
	}
	return bytes.Replace(b, []byte(`"recall_at_k":`), fmt.Appendf(nil, `"recall@%d":`, r.K), 1), nil
}

func benchANN(ctx context.Context, stdout, stderr io.Writer, o benchANNOptions) error {
	if err := o.Validate(); err != nil {
		return err
	}
	stderr = &lockedWriter{w: stderr}
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, "bench ann: "+format+"\n", args...) }
	opts := o.ANNOptions
	opts.Logf = logf
	res, err := bench.RunANN(ctx, opts)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("bench ann interrupted: %w", err)
		}
		return fmt.Errorf("bench ann: %w", err)
	}
	logf("%d searches of the top %d among %d × %d: recall %.4f, p50 %.3f ms, p99 %.3f ms (exact p50 %.2f ms); build %.1fs (goal recall >= %.2f, p99 <= %s)",
		res.Queries, res.K, res.Items, res.Dims, res.Recall, res.P50Ms, res.P99Ms, res.ExactP50Ms, res.BuildSeconds, bench.ANNTargetRecall, bench.ANNTargetP99)
	target := float64(bench.ANNTargetP99) / float64(time.Millisecond)
	return benchReport(stdout, o.asJSON, benchANNReport{
		Bench:        "ann",
		ANNResult:    res,
		TargetRecall: bench.ANNTargetRecall,
		TargetP99Ms:  target,
		MeetsTarget:  res.Recall >= bench.ANNTargetRecall && res.P99Ms <= target,
	})
}
