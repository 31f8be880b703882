// Package covisit is session-based collaborative filtering: item-to-item
// neighbours from co-visitation, and the query that turns what a user did
// in the last seconds into recommendations.
//
// The embeddings of trainer/retrieval learn a user's long-term taste and
// change once per training job; a user's vector is folded in from their
// history. Co-visitation answers a narrower question fast: people who
// just interacted with these items went on to (or came from) those. The
// recent items come from the request and from the user's nearline
// user_session_recent_items feature, so the recommendations follow a
// click within seconds, with no model update in between.
//
// # Building
//
// Build reads positive interactions (user, item, time, action strength).
// Per user, ordered by time, a run of interactions with the same item
// collapses into one step (a view, a click and a purchase of one item are
// one visit). Two steps d apart in a user's sequence co-visit when
// d <= Config.MaxDistance and at most Config.Window passed between them;
// the pair counts
//
//	sqrt(wᵢ·wⱼ) · DistanceDecay^(d−1)
//
// (w the steps' strengths, the largest of a collapsed run), and a user
// counts each pair of items once, with their best such value, so one
// user who bounces between two items cannot make them neighbours for
// everyone. Summed over users that is C(i,j), symmetric. Popularity
// P(i) is the sum over users of their largest strength on i, and the
// neighbour weight is
//
//	C(i,j) / sqrt(P(i)·P(j))
//
// a cosine between the items' user sets: an item everyone visits
// co-occurs with everything, and without the division it would top every
// list. Each item keeps its Config.Neighbours heaviest neighbours (ties
// to the lower index).
//
// Items are indexed in id order (Go string order), which for the same
// positive interactions is the order of trainer/retrieval's IVF index:
// the training job relies on it so that a covisit index and an IVF index
// name the same item. Building is parallel over items on Config.Workers
// goroutines and deterministic: the same interactions, in any order, give
// the same table, bit for bit, whatever the number of workers.
//
// # Serving
//
// Recommend scores the neighbours of the recent items, newest first: the
// i-th recent item (0 the newest) weighs RecencyDecay^i, so what the user
// did last counts most, and a candidate's score is the sum over recent
// items of that weight times its neighbour weight. It allocates nothing
// with a caller's dst and takes a pooled Scorer; a goroutine that
// serves many requests can hold its own (NewScorer). A Table is immutable
// and safe for concurrent use; serving swaps whole tables.
//
// # Artifact
//
// Save and Load (WriteFile, ReadFile) store a table as a checksummed
// artifact framed by internal/artifact; Load refuses a corrupt or
// inconsistent one with ErrCorrupt.
package covisit
