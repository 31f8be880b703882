// Package online is adaptrec's online feature store: what serving reads to
// assemble the features of one user and hundreds of candidate items within
// a millisecond, and what the batch and nearline lanes write to keep it
// fresh (decisions: docs/adr/007).
//
// Item features never leave the serving process per request. Each serving
// instance holds an immutable, columnar copy of every item group: batch
// groups (item_batch, item_embedding) loaded from the group's current
// snapshot (features/snapshot), nearline groups refreshed in bulk from Redis
// every few seconds by reading only the items updated since the last
// refresh. Over them it keeps each item's record after the fallback
// cascade, with the interval during which it stays right, so a request
// mostly picks records instead of setting values. A new snapshot (a
// FeatureSnapshotEvent, or the periodic pointer check) builds a new copy
// that is swapped in with one atomic pointer store, so a request reads all
// of its items from one version.
//
// User features are read from Redis with one round trip per request: one
// packed binary record per (user, batch group) under a key that names the
// snapshot version, and one small hash per (user, nearline group) whose
// fields carry their own update time. User×item features travel with their
// user in the same round trip: per (user, user×item batch group) one table
// of the user's pairs (item id → packed record) per snapshot version, and
// per user×item nearline feature one hash field holding every item's value;
// candidates are looked up in them (LoadPairsFromSnapshot,
// Writer.WritePairsNearline). LoadUsersFromSnapshot (the batch
// lane's Preloader) materializes a snapshot's user rows before it becomes
// current; Writer is what the nearline lane calls, and documents the write
// contract readers rely on.
//
// Assembler.Assemble fills a caller-provided []float32 matrix through
// features.Layout.FillBatch, the one flattening path training also uses,
// applying the fallback cascade per feature:
//
//   - a batch value whose snapshot is older than the feature's ttl is
//     missing (its default); older than its freshness SLA it is served and
//     reported late;
//   - a nearline value older than its freshness SLA (its ttl when it has no
//     SLA) is replaced by its batch twin's value when Options.BatchTwins
//     declares one and the twin has a value; without a twin it is still
//     served while younger than its ttl; either way the group's staleness
//     indicator (Options.StaleIndicators) is set;
//   - a nearline value older than its ttl without a usable twin, a value
//     never written, an unknown user or item: the declared default;
//   - Redis unreachable, failing or slower than Options.UserReadTimeout
//     (or the caller's deadline): every user feature takes its default and
//     Result.Degraded is set; Assemble still succeeds.
//
// Every read reports which source served each group (Result), and
// Prometheus counters count served values by group, lane and source.
package online
