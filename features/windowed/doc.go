// Package windowed computes the nearline features of features.yaml
// (lane: nearline) from interaction events: the one computation path that
// the streaming consumer (consumers/nearline, serving) and the
// point-in-time join (features/offline, training) both call, so that a
// feature means the same thing on both sides (docs/adr/008).
//
// # State and values
//
// User is one user's state, fed with the user's events in order by Apply:
//
//   - the session rule: the session is the one of the user's latest event;
//     an event with another session id, or one after a gap longer than
//     Rules.SessionTTL (user_session_key's ttl), starts a new session at
//     that event; an event without a session id keeps it. Actions are every
//     event but impressions. An event older than the user's latest one (out
//     of order in the stream) is counted but does not move the session;
//   - clicks and purchases in the hour before a time, by their exact times;
//   - the latest action (user_last_interaction_ms) and the items clicked or
//     viewed in the session, newest first, at most RecentItemsMax;
//   - per item, the times the user was shown it in the last hour
//     (ui_impressions_1h), for at most MaxPairItems items: an impression of
//     another item beyond them forgets the item whose latest impression is
//     the oldest (ties: the smaller id), so both sides keep the same items.
//
// Items holds per item the clicks and impressions of 1-minute buckets
// (DefaultBucket) with a watermark for late events (a stream's; the join,
// reading the log in time order, has none). Totals sums the buckets of the
// hour and of the 30 minutes ending at a time at bucket granularity: a
// bucket counts when it starts within the window, so the "hour" is the 60
// buckets ending with the bucket of that time. Rules.ItemValues turns
// totals into item_clicks_1h, item_impressions_1h, the smoothed
// item_ctr_1h (clicks + 100·prior) / (impressions + 100), prior being
// item_ctr_1h's default, and item_trending_velocity_30m, (clicks in 30
// minutes + 1) / (baseline + 1) with the baseline BaselinePer30m of the
// item's item_clicks_7d; without a baseline there is no velocity (readers
// get its default), and an item with neither clicks nor impressions in the
// hour gets its default too ("no evidence, no change"): that is also what
// serving reads once the consumer stops writing an item that has gone
// quiet and its value expires, so the join can match it.
//
// Values are returned with the time they are correct at (UserValues.Get,
// ItemValues.Get): session values and the recent items at the user's latest
// event, the last interaction at itself, windowed values at the time asked
// for. A reader applies each feature's ttl to that time, as the online
// store's cascade does.
//
// # Training against serving
//
// The join computes every value as of an example's event time t from the
// events strictly before t's millisecond, at t. The consumer writes the
// same functions' results at the times it writes (At), and serving reads
// the latest write. The remaining differences, all bounded and none
// leaking the future into training:
//
//   - Write lag: a windowed value is rewritten on every event of its user
//     or item (a user's ui_impressions_1h set at most once per consumer
//     PairInterval, 5s) and otherwise once per consumer Refresh (30s by
//     default), and serving refreshes item values every 5s. A request at t
//     reads values computed at t − (up to ~35s plus processing), so an
//     event that left the window in that span may still count in serving
//     (and one still in flight not yet); the join counts exactly the window
//     ending at t.
//   - Item shards: a stream partition counts its own events; serving reads
//     the sum of every partition's totals, each computed at that
//     partition's latest time (a shard an hour old is left out, a shard's
//     30-minute count only while it is younger than 30 minutes). The join
//     counts every event of the item in one Items.
//   - Late and unordered events: the consumer counts an item event up to
//     Lateness behind its partition's latest event (5m) and drops older
//     ones, and applies a user's events in partition order; the join reads
//     the archived log in event-time order, late events included.
//   - Restarts: a consumer taking over a partition rebuilds its state from
//     the last hour and 5 minutes only (Warmup), so a session started
//     before that shows a later start and fewer interactions until it
//     ends; the join replays StateLookback (30 days).
//   - Baseline: serving reads item_clicks_7d of the current snapshot
//     (checked every 30s); the join the snapshot as of t with its
//     AvailabilityLag, both honouring item_clicks_7d's ttl.
//   - Bucket width: both sides must use the same; the join uses
//     DefaultBucket, the consumer's default.
package windowed
