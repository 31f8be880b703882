package eval

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Split is a global time-based split of an interaction log: everything
// before Time is the training period, everything at or after it the test
// period. No test interaction is earlier than any training one, so no model
// sees the future it is tested on, and ties at the boundary go wholly to
// the test side.
type Split struct {
	// Time is the first instant of the test period, in unix seconds.
	Time int64
	// Train and Test are in time order.
	Train []Interaction
	Test  []Interaction
}

// TimeSplit splits interactions at the time of the interaction that starts
// the last testFraction of them in time order (at index n − round(n·f) of
// the sorted log). Interactions at exactly that time all go to the test
// side, so the test side can be slightly larger than the fraction.
func TimeSplit(interactions []Interaction, testFraction float64) (Split, error) {
	if !(testFraction > 0 && testFraction < 1) {
		return Split{}, fmt.Errorf("eval: test fraction %v, want a value in (0, 1)", testFraction)
	}
	n := len(interactions)
	cut := n - int(math.Round(float64(n)*testFraction))
	if cut <= 0 || cut >= n {
		return Split{}, fmt.Errorf("eval: %d interactions are too few to hold out %v of them", n, testFraction)
	}
	sorted := slices.Clone(interactions)
	sortByTime(sorted)
	t := sorted[cut].Time
	first, _ := slices.BinarySearchFunc(sorted, t, func(a Interaction, t int64) int { return cmp64(a.Time, t) })
	if first == 0 {
		return Split{}, errors.New("eval: every interaction shares the split time; nothing is left to train on")
	}
	return Split{Time: t, Train: sorted[:first], Test: sorted[first:]}, nil
}

// Case is one test user: what they did in the training period and what
// they liked in the test period.
type Case struct {
	User int32
	// Seen holds the items the user interacted with in the training
	// period, any rating, ascending. They are excluded from the user's
	// candidates.
	Seen []int32
	// Liked holds the training-period items with a positive rating,
	// ascending: the user's profile for the models.
	Liked []int32
	// Relevant holds the test-period items with a positive rating that
	// the user had not seen in the training period, ascending.
	Relevant []int32
}

// Cases returns the test users of the split: users with at least one
// positive training interaction (so every model has a profile to work
// from) and at least one relevant test item, in user order. An interaction
// is positive when its rating is at least minPositive.
func (s Split) Cases(minPositive float32) []Case {
	byUser := make(map[int32]*Case)
	get := func(u int32) *Case {
		c := byUser[u]
		if c == nil {
			c = &Case{User: u}
			byUser[u] = c
		}
		return c
	}
	for _, it := range s.Train {
		c := get(it.User)
		c.Seen = append(c.Seen, it.Item)
		if it.Rating >= minPositive {
			c.Liked = append(c.Liked, it.Item)
		}
	}
	for _, it := range s.Test {
		if it.Rating >= minPositive {
			if c := byUser[it.User]; c != nil {
				c.Relevant = append(c.Relevant, it.Item)
			}
		}
	}
	var out []Case
	for _, c := range byUser {
		slices.Sort(c.Seen)
		c.Seen = slices.Compact(c.Seen)
		slices.Sort(c.Liked)
		c.Liked = slices.Compact(c.Liked)
		slices.Sort(c.Relevant)
		c.Relevant = slices.Compact(c.Relevant)
		// A re-rating of a seen item is not a discovery.
		c.Relevant = slices.DeleteFunc(c.Relevant, func(i int32) bool {
			_, found := slices.BinarySearch(c.Seen, i)
			return found
		})
		if len(c.Liked) > 0 && len(c.Relevant) > 0 {
			out = append(out, *c)
		}
	}
	slices.SortFunc(out, func(a, b Case) int { return int(a.User) - int(b.User) })
	return out
}
