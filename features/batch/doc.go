// Package batch computes adaptrec's batch-lane features from the archived
// interactions (package eventlog), validates the result and publishes it as
// a feature snapshot (package features/snapshot): Materialize is the one
// function the CLI and the Temporal activity call.
//
// Windows end at the snapshot's as-of time T and are half-open: the last
// day is [T-24h, T), the last 7 and 30 days likewise; no event at or after T
// is read. Rates use the rule of features.yaml,
//
//	rate = (min(successes, trials) + 100·prior) / (trials + 100)
//
// with the feature's default as the prior (ui_category_ctr_30d: the user's
// own smoothed CTR). Successes are capped at trials so that a watch whose
// click fell before the window cannot push a share above 1.
//
// What the counts mean, given the actions of UserInteractionEvent:
//   - impressions are ACTION_IMPRESSION; clicks are ACTION_CLICK (CTRs are
//     clicks over impressions);
//   - an item is opened by a click or an ACTION_VIEW (a view is how a user
//     opens an item they found by themselves, on the browse surface, which
//     has no impression and no click): watch and purchase rates are shares
//     of opens, unique viewers count users who opened the item;
//   - skips count ACTION_SKIP of shown slots (position ≥ 0) only, so the skip
//     rate is a share of impressions;
//   - a user's sessions are their distinct session ids; a session's length
//     runs from its first to its last event in the window and its device is
//     that of its first event;
//   - user_hour_profile counts the user's actions (every action but
//     impressions) per local hour of their home zone;
//   - user_tenure_days is measured from the user's first event in the tenure
//     lookback (Config.TenureLookback, 365 days by default).
//
// Item metadata (category, creator, publish time, duration, price, flags)
// is not in the event log: it comes from an optional Catalogue, and home
// time zones from an optional lookup. Without them, and for features no
// code here computes (the embeddings the trainer publishes), every row
// holds the feature's default and the manifest's statistics say why
// (FeatureStats.NotComputed).
package batch
