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
// example's time is never read. Request features come from the request
// lane (features.RequestFromEvent, features.FillRequest) with the user's
// nearline state replayed from the log strictly before the event's
// millisecond: the session of the user's latest event while it is less than
// 30 minutes old, the session's first event, its actions so far (every
// action but impressions) and the user's latest action.
//
// Output: Parquet parts under training/<id>/ with one row per example
// (event_id, event_time, user_id, item_id, request_id, position, label,
// watched, purchased, features as float32 × Layout.Width) and a
// manifest.json recording the layout's features.ModelSchema (schema hash
// included), the snapshots each group read and over which event times,
// and the features that hold defaults because the join cannot reproduce
// them.
package offline
