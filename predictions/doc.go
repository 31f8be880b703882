// Package predictions stores batch predictions: the top-K items precomputed
// for every active user by the BatchPredictions workflow, which serving
// answers from when it cannot rank (DEGRADATION_LEVEL_BATCH_PREDICTIONS).
//
// Predictions live in Redis, next to the online feature store and under its
// key prefix P (config features.key_prefix), in numbered versions
// predictions_v1, predictions_v2, ...:
//
//	P{<user>}:pred:v<N>      the user's list in version N (Encode; the hash tag puts it in the user's slot)
//	Ppred:v<N>:users:<i>     Redis list of the users of version N, chunk i (ChunkUsers per chunk), to delete a version without SCAN
//	Ppred:v<N>:meta          JSON Meta of version N, written last: a version is complete once it exists
//	Ppred:versions           set of the version numbers ever begun (complete, rejected or abandoned)
//	Ppred:seq                counter that numbers versions
//	Ppred:pointer            JSON Pointer: the current version and the previous one
//
// Snapshot semantics. A Writer writes a new version beside the current one,
// validating every list as it goes; Close checks coverage and the user count
// and writes the version's meta, marked rejected when a check failed.
// Flip then makes a complete, accepted version current with one
// compare-and-swap of the pointer (a Lua script), keeping the old current
// version as the previous one; Rollback swaps the two the same way. Serving
// reads the pointer once per refresh interval and each user's list with one
// GET, so a flip or a rollback changes every user's answer together. Prune,
// after a flip, deletes every version but the newest Keep complete ones,
// never the current or the previous one.
//
// Nothing here calls context.Background: deadlines come from the caller.
package predictions
