// Package sim is adaptrec's world simulator: a synthetic catalogue, a
// population of users with hidden tastes that drift, and a response model
// that decides what those users do with the items they are shown. Because the
// tastes are known, the simulator is also the oracle that measures how good a
// recommender really is.
//
// On top of the world it provides
//   - GenerateHistory: a deterministic historical interaction log (organic
//     sessions: pages chosen by popularity and browsing, then responses),
//     streamed in batches of events ordered by event time;
//   - LiveDriver: simulated live users that call RecommendService, respond to
//     what they are shown, ingest the interactions and report CTR per model
//     version and experiment arm;
//   - LoadMovieLens: the MovieLens 100K ratings as events and its movies as a
//     catalogue.
//
// Everything generated is a pure function of the seed and the configuration:
// the same seed gives the same catalogue, users, log and event ids, whatever
// the number of workers.
//
// Time of day uses each time zone's standard UTC offset; daylight saving time
// is ignored because it would only move the simulated daily rhythm by an hour.
package sim
