// Package offline builds training sets from the offline store: every
// labelled event of the Parquet event log gets the feature values as of
// its event time — never later ones — flattened into ranker input rows by
// the same features.Layout serving uses (decisions: docs/adr/006).
//
// Examples and labels. Every ACTION_IMPRESSION in [From, To) is one
// example. Its label is 1 when the same user clicks (ACTION_CLICK) the same
// item in the same session within Attribution (30 minutes by default)
// after the impression, else 0; a click counts for the latest impression of
// that (user, session, item) before it, once. Watched and Purchased mark an
// ACTION_WATCH or ACTION_PURCHASE of the same key in the same window, for
// engagement-weighted training.
//
// Point in time. For each batch group the example reads the snapshot with
// the latest data cutoff (Manifest.AsOf) at or before the event time minus
// Config.AvailabilityLag; a snapshot computed from events after the
// example's time is never read. Nearline features are computed by
// features/windowed, the code the nearline consumer writes them with,
// from the events strictly before the example's millisecond (replayed from
// Config.StateLookback before From), as of the example's time: the user's
// session state, clicks and purchases in the last hour and latest action
// from the user's earlier events; the item's clicks, impressions,
// smoothed CTR (1-minute buckets) and trending velocity from every user's
// earlier events of the item, the velocity's baseline being item_clicks_7d
// of the item snapshot the example reads (none without one, as in
// serving); ui_impressions_1h from the user's earlier impressions of the
// item. A value older than its feature's ttl (a session over) reads as the
// default, as the online store's cascade reads it. Request features come
// from the request lane (features.RequestFromEvent, features.FillRequest)
// with the same user state. What can still differ from what serving read
// (the consumer's write lag, per-partition item shards, late events) is
// listed in features/windowed's documentation.
//
// Output: Parquet parts under training/<id>/ with one row per example
// (event_id, event_time, user_id, item_id, request_id, position, label,
// watched, purchased, features as float32 × Layout.Width) and a
// manifest.json recording the layout's features.ModelSchema (schema hash
// included), the snapshots each group read and over which event times,
// and the features that hold defaults because the join cannot reproduce
// them.
package offline
