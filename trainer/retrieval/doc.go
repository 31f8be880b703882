// Package retrieval learns user and item embeddings from implicit feedback
// and serves them: an item index for nearest-neighbour retrieval and a
// fold-in that embeds a user from recent items without retraining.
//
// Train fits implicit-feedback matrix factorisation by alternating least
// squares (Hu, Koren and Volinsky 2008), 64 dimensions by default. Every row
// is an exact closed-form solve, so training is parallel over users and
// items on every core yet bit-for-bit deterministic for a seed: rows are
// independent, and every sum across rows runs in fixed chunks added in
// order, whatever the number of workers. See docs/adr for why ALS and not
// BPR.
//
// Embedder.Embed is the serving half of ALS: the least-squares user vector
// for a list of items with strengths against fixed item factors, the same
// solve Train does for each user, so a user's own training interactions
// give back their trained vector. It costs O(n·d² + d³) for n items and
// does not allocate (about 0.07 ms for 50 items at d=64).
//
// Index is an IVF-Flat index for maximum-inner-product search over item
// vectors (k-means lists, nprobe best lists scanned exactly, top-k by inner
// product), with Exact as brute-force ground truth. Its artifact (Save,
// Load, WriteFile, ReadIndexFile) holds the item ids, vectors, lists and the
// ALS fold-in parameters behind a header with magic, version, sizes and a
// CRC-32C checksum; Load refuses anything else with ErrCorruptIndex. A
// serving process needs only the artifact: Index.Embedder folds users in
// over the index's own vectors.
//
// UserVectors holds the trained user vectors by user id (Model.UserVectors),
// so that serving can retrieve for a returning user without recent items.
// User vectors only mean something against the item vectors of the same
// run, so they ship with the index as their own artifact (Save,
// LoadUserVectors, WriteFile, ReadUserVectorsFile: ids, dims and vectors
// behind the same kind of checked header; ErrCorruptUserVectors). Its memory
// is one flat []float32 with the ids in one string and a uint32 offset per
// user, and Lookup is an allocation-free binary search.
package retrieval
