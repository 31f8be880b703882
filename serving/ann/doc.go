// Package ann is serving's approximate nearest-neighbour index over item
// embeddings: given a user vector it returns the k items of highest inner
// product, fast enough to pick a few hundred candidates from hundreds of
// thousands of items on every request.
//
// Build takes item ids and float32 vectors of any norm (the ALS factors of
// trainer/retrieval are compared by inner product, and their norms grow
// with popularity over two orders of magnitude). It sorts the items by
// norm into bands, each spanning at most Config.NormRatio between its
// largest and smallest norm, and builds one HNSW graph per band (Malkov
// and Yashunin 2016) on the band's vectors after the MIPS-to-L2 reduction:
// an extra coordinate √(R² − ‖x‖²), R the band's largest norm, makes
// nearest neighbours in L2 the items of largest inner product. A single
// graph over all items with one reduction fails on trained embeddings
// (recall@200 ≈ 0.2): the extra coordinate swamps every direction but
// those of the few largest items; bands keep it in proportion
// (docs/adr/016-ann-index.md).
//
// Search visits the bands from the largest norms down: a band small
// enough that scanning it costs less than walking it is scanned exactly,
// any other is walked with a beam of width ef (half that, at least k,
// after the first walk), and the search stops at the first band whose
// largest norm times ‖q‖ cannot beat the k-th hit so far
// (Cauchy–Schwarz). On trained embeddings the answers come mostly from
// the first bands, so a search usually visits two or three. Exclude drops
// items (what the user has seen) without cutting the graph, and a search
// that comes back short falls back to an exact scan, so it never returns
// fewer than k items while k items remain. Exact is the brute-force
// ground truth.
//
// Building is parallel on Config.Workers cores and deterministic: the same
// vectors, parameters and seed give the same index, bit for bit, whatever
// the number of workers. An Index is immutable and safe for concurrent
// searches; serving swaps whole indexes. Save and Load (WriteFile,
// ReadFile) store it as a checksummed artifact; Load refuses a corrupt or
// inconsistent one with ErrCorrupt.
package ann
