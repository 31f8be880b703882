package nearline

import "github.com/adaptrec/adaptrec/features/windowed"

// user is what a partition knows about one of its users: the shared
// feature state (features/windowed, the rules training rows are built
// with) and what this consumer last wrote of it.
type user struct {
	windowed.User
	// pairsOut is set while the last ui_impressions_1h set written for
	// the user listed an item: an empty set must then be written once
	// the items leave the hour, or readers keep the old counts.
	pairsOut bool
	// pairsAt is when the set was last written (the partition's time,
	// unix ms); pairsNew says an impression came since, and pairsQueued
	// that the user waits in the partition's pair queue for
	// Config.PairInterval to pass.
	pairsAt               int64
	pairsNew, pairsQueued bool
}
