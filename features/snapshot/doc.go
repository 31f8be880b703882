// Package snapshot stores versioned batch-feature snapshots in the object
// store and the "current" pointer serving reads, with rollback to the
// previous snapshot and the history of snapshots that point-in-time joins
// read (decisions: docs/adr/006).
//
// Layout, per storage group of features.yaml (e.g. item_batch):
//
//	features/snapshots/<group>/<version>/part-00000.parquet   rows, sorted by entity id
//	features/snapshots/<group>/<version>/manifest.json         written last: the snapshot exists once it does
//	features/snapshots/<group>/CURRENT                         pointer: {version, previous, updated_at}
//	features/snapshots/<group>/REJECTED/<version>.json         why validation refused a version
//
// A version is "<as-of, 20060102T150405Z>-<8 hex digits>": versions sort by
// their data cutoff, and the digits are a hash of the snapshot's content, so
// writing the same rows for the same cutoff again (a retried job) gives the
// same version and the same bytes.
//
// A Parquet part holds one row per entity: entity_id (a user id, an item id,
// or PairID(user, item) for user×item features), values (the fixed-width
// features of the group flattened into Manifest.Width doubles in the order
// of Manifest.Features, vectors expanded) and map_entries (the group's map
// features). The manifest records the schema hash of the definitions the
// values were computed with, the data cutoff, per-file checksums and
// per-feature statistics; readers verify it before trusting a row.
//
// The pointer is replaced only with conditional writes (create-only the
// first time, then compare-and-swap on its ETag), so of two concurrent
// flips exactly one wins and the other gets ErrConflict.
//
// Retention. Flip, Rollback and Reject never delete anything; Prune does:
// it keeps a group's newest versions, the pointer's current and previous
// versions, young versions and the versions a caller says are in use, and
// deletes the others manifest first. Training sets (features/offline)
// record in their manifests the snapshot versions their rows read; the
// caller of Prune passes those in (adaptrec features prune reads every
// training manifest), since this package does not know training sets.
package snapshot
