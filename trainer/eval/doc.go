// Package eval evaluates recommenders offline, without leakage: a global
// time split (train on the past, test on the future), top-K metrics over the
// whole catalogue minus what each user already saw, and baselines in the
// same run on the same candidates.
//
// The pieces compose: TimeSplit and Split.Cases define the protocol;
// Recommender is what is evaluated (Popular, CoOccurrence and Funnel
// implement it); Evaluate computes NDCG@10/20, Recall@10/20 and catalogue
// coverage (EvaluateAt adds other cutoffs); RecallAt, NDCGAt, Coverage, AUC
// and LogLoss are the metrics on their own. Run and RunMovieLens do a whole
// evaluation: train the retrieval embeddings (trainer/retrieval) on the
// training period, build the item index, and compare the funnel (fold-in
// user embedding → top-200 retrieval → ranker) with most-popular and
// item-item co-occurrence. Report marshals to the JSON `adaptrec eval`
// prints and renders a table with Report.Table.
//
// The ranker is either plugged in (Options.Rank) or built in
// (Options.Features): a trainer/ranker model over rows of batch features
// of the feature definitions plus retrieval's score and position. Its
// features take the production path: the training period's interactions
// are archived as interaction events into an in-memory object store, the
// batch job (features/batch.Compute) computes snapshots as of a time, they
// are written and read back (features/snapshot), bound to records and
// flattened by features.Layout.FillBatch. It learns from a label window at
// the end of the training period (RankerOptions), so nothing at or after
// the split reaches it.
//
// The protocol, the MovieLens 100K figures and how the defaults were chosen
// are in docs/evaluation.md.
package eval
