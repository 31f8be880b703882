// Package eval evaluates recommenders offline, without leakage: a global
// time split (train on the past, test on the future), top-K metrics over the
// whole catalogue minus what each user already saw, and baselines in the
// same run on the same candidates.
//
// The pieces compose: TimeSplit and Split.Cases define the protocol;
// Recommender is what is evaluated (Popular, CoOccurrence and Funnel
// implement it); Evaluate computes NDCG@10/20, Recall@10/20 and catalogue
// coverage; RecallAt, NDCGAt, Coverage, AUC and LogLoss are the metrics on
// their own. Run and RunMovieLens do a whole evaluation: train the
// retrieval embeddings (trainer/retrieval) on the training period, build the
// item index, and compare the funnel (fold-in user embedding → top-200
// retrieval → optional ranker, plugged in as a RankFunc) with most-popular
// and item-item co-occurrence. Report marshals to the JSON the CLI prints
// and renders a table with Report.Table.
//
// The protocol, the MovieLens 100K figures and how the defaults were chosen
// are in docs/evaluation.md.
package eval
