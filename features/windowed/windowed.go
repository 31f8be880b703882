package windowed

import (
	"time"

	"github.com/adaptrec/adaptrec/features"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

// Windows and bounds of the features.
const (
	// Hour is the window of the "_1h" features.
	Hour = time.Hour
	// TrendWindow is the window of item_trending_velocity_30m's clicks.
	TrendWindow = 30 * time.Minute
	// DefaultBucket is the width of the item count buckets.
	DefaultBucket = time.Minute
	// RecentItemsMax bounds user_session_recent_items.
	RecentItemsMax = 10
	// MaxPairItems bounds the items a user's ui_impressions_1h lists: a
	// request reads a user's whole set, and a user shown more items than
	// this in an hour keeps the ones shown last.
	MaxPairItems = 200
	// CTRPriorWeight is the smoothing weight of the rates of features.yaml:
	// (successes + 100·prior) / (trials + 100).
	CTRPriorWeight = 100
	// HalfHoursPer7Days divides item_clicks_7d into the trending baseline.
	HalfHoursPer7Days = 7 * 24 * 2
)

const (
	hourMs  = int64(Hour / time.Millisecond)
	trendMs = int64(TrendWindow / time.Millisecond)
)

// Feature is a nearline feature this package computes.
type Feature uint8

// The features, users' first, then items', then the user×item one.
const (
	SessionKey Feature = iota
	SessionStartMs
	SessionInteractions
	SessionClicks
	SessionRecentItems
	LastInteractionMs
	UserClicks1h
	UserPurchases1h
	ItemClicks1h
	ItemImpressions1h
	ItemCTR1h
	ItemTrendingVelocity30m
	PairImpressions1h
	// NumFeatures is the number of features: Feature(0) to
	// NumFeatures-1.
	NumFeatures
)

var featureNames = [NumFeatures]string{
	features.FeatureSessionKey, features.FeatureSessionStartMs, features.FeatureSessionInteractions,
	"user_session_clicks", "user_session_recent_items", features.FeatureLastInteractionMs,
	"user_clicks_1h", "user_purchases_1h",
	"item_clicks_1h", "item_impressions_1h", "item_ctr_1h", "item_trending_velocity_30m",
	"ui_impressions_1h",
}

// Name is the feature's name in features.yaml.
func (f Feature) Name() string {
	if f >= NumFeatures {
		return ""
	}
	return featureNames[f]
}

// Entity is the entity the feature describes.
func (f Feature) Entity() features.Entity {
	switch {
	case f <= UserPurchases1h:
		return features.EntityUser
	case f <= ItemTrendingVelocity30m:
		return features.EntityItem
	}
	return features.EntityUserItem
}

// Kind is the kind of value the package computes for the feature: a
// definition of another type cannot hold it.
func (f Feature) Kind() features.Kind {
	switch f {
	case SessionRecentItems:
		return features.KindList
	case ItemCTR1h, ItemTrendingVelocity30m:
		return features.KindFloat
	}
	return features.KindInt
}

// Defines reports whether fs defines the feature as this package computes
// it: a nearline feature of its entity and kind.
func (f Feature) Defines(fs *features.FeatureSet) bool {
	d, ok := fs.Lookup(f.Name())
	return ok && d.Entity == f.Entity() && d.Lane == features.LaneNearline && d.Type.Kind == f.Kind()
}

// Windowed reports whether the feature's value changes with time alone (a
// count over a window ending now): a writer must rewrite it as time
// passes, not only on events.
func (f Feature) Windowed() bool {
	switch f {
	case UserClicks1h, UserPurchases1h, ItemClicks1h, ItemImpressions1h, ItemCTR1h, ItemTrendingVelocity30m, PairImpressions1h:
		return true
	}
	return false
}

// Lookup returns the feature of a name.
func Lookup(name string) (Feature, bool) {
	for f, n := range featureNames {
		if n == name {
			return Feature(f), true
		}
	}
	return 0, false
}

// Rules are the parameters the definitions decide. The zero value is not
// useful: use RulesFor or DefaultRules.
type Rules struct {
	// SessionTTL is the gap after which an event starts a new session:
	// user_session_key's ttl.
	SessionTTL time.Duration
	// CTRPrior is item_ctr_1h's prior: its default.
	CTRPrior float64
	// VelocityDefault is item_trending_velocity_30m's default.
	VelocityDefault float64
}

// DefaultRules are the rules of definitions that declare none of the
// features they read.
var DefaultRules = Rules{SessionTTL: 30 * time.Minute, CTRPrior: 0.03, VelocityDefault: 1}

// RulesFor returns the rules of fs: user_session_key's ttl, item_ctr_1h's
// and item_trending_velocity_30m's defaults, DefaultRules' for those fs
// does not define.
func RulesFor(fs *features.FeatureSet) Rules {
	r := DefaultRules
	if f, ok := fs.Lookup(SessionKey.Name()); ok && f.TTL > 0 {
		r.SessionTTL = f.TTL
	}
	if f, ok := fs.Lookup(ItemCTR1h.Name()); ok && f.Type.Kind == features.KindFloat {
		r.CTRPrior = float64(f.Default.Float)
	}
	if f, ok := fs.Lookup(ItemTrendingVelocity30m.Name()); ok && f.Type.Kind == features.KindFloat {
		r.VelocityDefault = float64(f.Default.Float)
	}
	return r
}

// Action is what an event did, as far as the features care.
type Action uint8

// Actions.
const (
	// ActionOther is every action without a rule of its own: an action
	// of the session, counted nowhere else.
	ActionOther Action = iota
	ActionImpression
	ActionClick
	ActionView
	ActionPurchase
)

// ActionOf maps an event's action.
func ActionOf(a adaptrecv1.Action) Action {
	switch a {
	case adaptrecv1.Action_ACTION_IMPRESSION:
		return ActionImpression
	case adaptrecv1.Action_ACTION_CLICK:
		return ActionClick
	case adaptrecv1.Action_ACTION_VIEW:
		return ActionView
	case adaptrecv1.Action_ACTION_PURCHASE:
		return ActionPurchase
	}
	return ActionOther
}

// ActionNamed maps an action's enum name, as the event log archives it
// ("ACTION_CLICK").
func ActionNamed(name string) Action {
	switch name {
	case "ACTION_IMPRESSION":
		return ActionImpression
	case "ACTION_CLICK":
		return ActionClick
	case "ACTION_VIEW":
		return ActionView
	case "ACTION_PURCHASE":
		return ActionPurchase
	}
	return ActionOther
}

// CountsForItems reports whether Items counts the action: clicks and
// impressions.
func (a Action) CountsForItems() bool { return a == ActionClick || a == ActionImpression }

// Event is the part of an interaction the features read.
type Event struct {
	// T is the event time, unix ms.
	T int64
	// Item is the item id; "" for none.
	Item string
	// Session is features.SessionKey of the session id; 0 for none.
	Session int64
	// Action is what the event did.
	Action Action
}

// SmoothedRate is the rate of features.yaml: (successes + 100·prior) /
// (trials + 100).
func SmoothedRate(successes, trials int64, prior float64) float64 {
	return (float64(successes) + CTRPriorWeight*prior) / (float64(trials) + CTRPriorWeight)
}

// Velocity is item_trending_velocity_30m: clicks in the last 30 minutes
// over the mean clicks per 30 minutes, both plus one.
func Velocity(clicks30m int64, meanPer30m float64) float64 {
	return (float64(clicks30m) + 1) / (meanPer30m + 1)
}

// BaselinePer30m is the trending baseline of an item: its item_clicks_7d
// per 30 minutes.
func BaselinePer30m(clicks7d float64) float64 { return clicks7d / HalfHoursPer7Days }

// floorTo is the start of t's bucket of width d.
func floorTo(t, d int64) int64 {
	r := t % d
	if r < 0 {
		r += d
	}
	return t - r
}
