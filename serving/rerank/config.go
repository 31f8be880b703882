package rerank

import (
	"errors"
	"fmt"
)

// Sizes of the returned list. They match the num_items limits of the
// Recommend API.
const (
	DefaultN = 20
	MaxN     = 500
)

// MaxPromotedBoost bounds Config.PromotedBoost. A factor of 100 already
// lifts a promoted item at probability 0.005 above every organic item
// below 0.5, which is as close to pinning as a boost should come; larger
// values are far more likely a typo than a wish.
const MaxPromotedBoost = 100

// Config configures the rules. A zero number turns its rule off and
// SuppressSeen false lets seen items compete like the others, so the zero
// Config keeps only the flagged filter. Caps cannot use zero for "the
// default" because zero is how a rule is switched off; start from
// DefaultConfig, as the server does before it applies its YAML file, and
// set only what differs.
type Config struct {
	// SuppressSeen holds back items the user already saw until every
	// unseen candidate is in the list; only then do seen items fill its
	// end. DefaultConfig: true.
	SuppressSeen bool `yaml:"suppress_seen"`
	// PromotedBoost multiplies the score of promoted items before
	// ordering. A factor rather than an addend because ranker scores are
	// probabilities spanning orders of magnitude: adding 0.05 would
	// multiply an item at 0.01 by six and barely move one at 0.8, whereas
	// 1.2 raises both by the same 20%. A negative score is divided by the
	// factor instead, so the boost still raises it. 0 turns the boost off;
	// otherwise 1..MaxPromotedBoost. DefaultConfig: 1.2.
	PromotedBoost float64 `yaml:"promoted_boost"`
	// MaxPromoted caps the promoted items in the list, boosted or not, so
	// that promotion cannot crowd out the organic ranking. 0: no cap.
	// DefaultConfig: 3.
	MaxPromoted int `yaml:"max_promoted"`
	// MaxPerCategory caps the items of one category in the list. Items of
	// unknown category (< 0) are never capped. The cap does not scale with
	// the list's length: 3 of 20 is diverse, 3 of 500 will mostly be
	// relaxed. 0: no cap. DefaultConfig: 3.
	MaxPerCategory int `yaml:"max_per_category"`
	// MaxPerCreator caps the items of one creator in the list, like
	// MaxPerCategory. 0: no cap. DefaultConfig: 2.
	MaxPerCreator int `yaml:"max_per_creator"`
	// MinFresh is the least number of fresh items the list should hold (at
	// most the list's length); fresh candidates replace the lowest-placed
	// non-fresh items until it is met or no fresh candidate fits the caps.
	// 0: no minimum. DefaultConfig: 2.
	MinFresh int `yaml:"min_fresh"`
}

// DefaultConfig returns the recommended rules for a list of DefaultN
// items: seen items suppressed, promoted scores raised by 20% with at most
// 3 promoted items, at most 3 items per category and 2 per creator, and
// at least 2 fresh items.
func DefaultConfig() Config {
	return Config{
		SuppressSeen:   true,
		PromotedBoost:  1.2,
		MaxPromoted:    3,
		MaxPerCategory: 3,
		MaxPerCreator:  2,
		MinFresh:       2,
	}
}

// Validate reports every value out of range, each named by its YAML key.
func (c Config) Validate() error {
	var errs []error
	count := func(key string, v int) {
		if v < 0 || v > MaxN {
			errs = append(errs, fmt.Errorf("rerank: %s %d outside 0..%d (0 turns the rule off)", key, v, MaxN))
		}
	}
	count("max_promoted", c.MaxPromoted)
	count("max_per_category", c.MaxPerCategory)
	count("max_per_creator", c.MaxPerCreator)
	count("min_fresh", c.MinFresh)
	// The negated test also rejects NaN.
	if b := c.PromotedBoost; b != 0 && !(b >= 1 && b <= MaxPromotedBoost) {
		errs = append(errs, fmt.Errorf("rerank: promoted_boost %v: want 0 (off) or a factor in 1..%d, e.g. 1.2 to raise promoted scores by 20%%", b, MaxPromotedBoost))
	}
	return errors.Join(errs...)
}
