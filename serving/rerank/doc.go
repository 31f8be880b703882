// Package rerank is serving's re-ranking stage: it takes the few hundred
// candidates the ranker scored and returns the top N (DefaultN, at most
// MaxN) after the business and quality rules, on every request, so it is
// built to cost microseconds and allocate nothing once warm.
//
// The rules, in the order they act:
//
//  1. Flagged items are removed, always. No setting turns this off: a
//     flag is moderation's verdict, and a configuration mistake must not
//     put taken-down content live. Nothing refills their places with them.
//  2. Seen items (the user already saw or interacted with them) are held
//     back while unseen items remain: they are considered only when every
//     unseen candidate is already in the list, and then fill its end
//     rather than let the list come back short (Config.SuppressSeen).
//  3. Promoted items have their score multiplied by Config.PromotedBoost
//     before ordering, and at most Config.MaxPromoted of them make the
//     list.
//  4. At most Config.MaxPerCategory items share a category, and
//  5. at most Config.MaxPerCreator items share a creator. Unknown (< 0)
//     categories and creators are never capped.
//  6. At least Config.MinFresh items are fresh: when the list has fewer,
//     the lowest-placed non-fresh items are replaced by the best fresh
//     candidates left.
//
// Selection is greedy in order of the final score (the ranker's score
// after the boost), ties broken by the smaller ID and then by input
// position, so the output depends only on the input, not on its order
// when IDs are unique. An item whose category, creator or promotion cap
// is full is skipped. When the caps leave the list short because too few
// items fit them, the caps are relaxed: the best skipped items fill the
// end of the list, each marked with the caps it breaks (Ranked.Relaxed,
// Result.Relaxed), rather than returning fewer items than asked for.
// Diversity yields to length, and seen suppression outranks diversity:
// seen items come only after every unseen item, relaxed ones included.
//
// The fresh minimum changes the bottom of the list first: non-fresh items
// leave from the lowest placed up, each replaced by the best fresh
// candidate that can take its place without adding to any cap's excess
// (an item of the same category, creator or promotion always can). The
// newcomer is placed by its score among the items that keep the caps.
// Caps can push the swap up the list — with one promoted item allowed and
// only a promoted fresh candidate left, the promoted item is replaced wherever
// it is placed — because the minimum is a guarantee and the caps are kept. It
// never brings in a seen item. Where the minimum cannot be met,
// Result.Relaxed says so.
//
// A Reranker holds a validated Config and is safe for concurrent use. A
// Result holds one call's output and the working memory of the next; give
// each goroutine its own (or pool them) and Apply allocates nothing once
// the Result has grown to the request sizes it sees.
//
// Each Result carries Stats, counts of what every rule did. Record adds
// them to the adaptrec_rerank_actions_total counter; the caller chooses
// when, so a hot path can add up many requests' Stats (Stats.Add) and
// record them in one go.
package rerank
