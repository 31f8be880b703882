package windowed

import (
	"slices"

	"github.com/adaptrec/adaptrec/features"
)

// User is one user's state. The zero value is a user without events. Feed
// it the user's events with Apply, in order (an out-of-order event is
// counted but does not move the session); after warm-up it does not
// allocate per event.
type User struct {
	lastEvent     int64 // unix ms of the latest event, any action
	sessionKey    int64
	sessionStart  int64
	sessionActs   int64
	sessionClicks int64
	lastAction    int64    // unix ms of the latest action that is not an impression
	recent        []string // items clicked or viewed in the session, newest first
	clicks        []int64  // unix ms of clicks, ascending, none an hour before lastEvent
	purchases     []int64  // unix ms of purchases, likewise
	// pairs are the items shown in the hour before lastEvent, at most
	// MaxPairItems, in no order; pairs[len:cap] are spare entries whose
	// slices are reused.
	pairs []pairItem
	// pairOldest is at most the oldest impression time in pairs.
	pairOldest int64
}

// pairItem is one item's impressions of the user, ascending unix ms.
type pairItem struct {
	item string
	ts   []int64
}

// LastEvent is the time of the user's latest event (unix ms); 0 before
// any.
func (u *User) LastEvent() int64 { return u.lastEvent }

// Apply updates the state with one event of the user.
func (u *User) Apply(r *Rules, e Event) {
	t := e.T
	if t >= u.lastEvent {
		if e.Session != 0 && (e.Session != u.sessionKey || t-u.lastEvent > r.SessionTTL.Milliseconds()) {
			u.sessionKey, u.sessionStart, u.sessionActs, u.sessionClicks = e.Session, t, 0, 0
			u.recent = u.recent[:0]
		}
		u.lastEvent = t
	}
	inSession := e.Session != 0 && e.Session == u.sessionKey
	if e.Action != ActionImpression {
		if inSession {
			u.sessionActs++
		}
		u.lastAction = max(u.lastAction, t)
	}
	from := u.lastEvent - hourMs // nothing at or before it counts at or after lastEvent
	switch e.Action {
	case ActionClick:
		if inSession {
			u.sessionClicks++
		}
		u.clicks = trimTo(insertSorted(u.clicks, t), from)
	case ActionPurchase:
		u.purchases = trimTo(insertSorted(u.purchases, t), from)
	case ActionImpression:
		if e.Item != "" && t > from {
			u.addImpression(e.Item, t, from)
		}
	}
	if inSession && (e.Action == ActionClick || e.Action == ActionView) && e.Item != "" {
		u.touch(e.Item)
	}
}

// touch moves item to the front of the recent items, keeping at most
// RecentItemsMax.
func (u *User) touch(item string) {
	i := slices.Index(u.recent, item)
	if i < 0 {
		if len(u.recent) < RecentItemsMax {
			u.recent = append(u.recent, "")
		}
		i = len(u.recent) - 1
	}
	copy(u.recent[1:i+1], u.recent[:i])
	u.recent[0] = item
}

// addImpression records an impression of item at t; from is the time at or
// before which impressions no longer count.
func (u *User) addImpression(item string, t, from int64) {
	if len(u.pairs) > 0 && u.pairOldest <= from {
		u.expirePairs(from)
	}
	for i := range u.pairs {
		if p := &u.pairs[i]; p.item == item {
			p.ts = insertSorted(p.ts, t)
			u.pairOldest = min(u.pairOldest, t)
			return
		}
	}
	if len(u.pairs) >= MaxPairItems {
		v := 0
		for i := 1; i < len(u.pairs); i++ {
			if lessRecent(&u.pairs[i], &u.pairs[v]) {
				v = i
			}
		}
		if last := u.pairs[v].ts[len(u.pairs[v].ts)-1]; t < last || (t == last && item < u.pairs[v].item) {
			return // a late impression, older than every item kept
		}
		u.removePair(v)
	}
	n := len(u.pairs)
	if n < cap(u.pairs) {
		u.pairs = u.pairs[:n+1]
	} else {
		u.pairs = append(u.pairs, pairItem{})
	}
	p := &u.pairs[n]
	p.item, p.ts = item, append(p.ts[:0], t)
	if n == 0 {
		u.pairOldest = t
	}
	u.pairOldest = min(u.pairOldest, t)
}

// lessRecent orders items by their latest impression, then by id.
func lessRecent(a, b *pairItem) bool {
	la, lb := a.ts[len(a.ts)-1], b.ts[len(b.ts)-1]
	return la < lb || (la == lb && a.item < b.item)
}

// removePair drops pairs[i], keeping its entry beyond len for reuse.
func (u *User) removePair(i int) {
	n := len(u.pairs) - 1
	u.pairs[i], u.pairs[n] = u.pairs[n], u.pairs[i]
	u.pairs = u.pairs[:n]
}

// expirePairs drops impressions at or before from, and items left without
// any.
func (u *User) expirePairs(from int64) {
	oldest := int64(0)
	for i := 0; i < len(u.pairs); {
		p := &u.pairs[i]
		p.ts = trimTo(p.ts, from)
		if len(p.ts) == 0 {
			u.removePair(i)
			continue
		}
		if i == 0 || p.ts[0] < oldest {
			oldest = p.ts[0]
		}
		i++
	}
	u.pairOldest = oldest
}

// PairImpressions is ui_impressions_1h of one item: the user's impressions
// of it in the hour ending at at (unix ms), (at − 1h, at].
func (u *User) PairImpressions(item string, at int64) int64 {
	for i := range u.pairs {
		if p := &u.pairs[i]; p.item == item {
			return countIn(p.ts, at-hourMs, at)
		}
	}
	return 0
}

// AppendPairImpressions appends ui_impressions_1h of every item the user
// was shown in the hour ending at at: the complete item → value set, items
// not listed being 0. Items and values are appended pairwise, in no order.
func (u *User) AppendPairImpressions(at int64, items []string, values []features.Value) ([]string, []features.Value) {
	for i := range u.pairs {
		p := &u.pairs[i]
		if n := countIn(p.ts, at-hourMs, at); n > 0 {
			items = append(items, p.item)
			values = append(values, features.Value{Int: n})
		}
	}
	return items, values
}

// Idle reports whether the state holds nothing that still changes a value
// served at at: the session is over and no window holds an event. What
// remains, the last interaction time, the stored value keeps.
func (u *User) Idle(r *Rules, at int64) bool {
	from := at - hourMs
	if at-u.lastEvent <= r.SessionTTL.Milliseconds() || countIn(u.clicks, from, at) > 0 || countIn(u.purchases, from, at) > 0 {
		return false
	}
	for i := range u.pairs {
		if countIn(u.pairs[i].ts, from, at) > 0 {
			return false
		}
	}
	return true
}

// UserValues are a user's values as of one time.
type UserValues struct {
	// At is the time the windowed values are correct at; LastEvent the
	// user's latest event, at which the session values are.
	At, LastEvent int64
	// SessionKey, SessionStart (unix ms), SessionInteractions and
	// SessionClicks describe the session of the latest event.
	SessionKey, SessionStart, SessionInteractions, SessionClicks int64
	// RecentItems is the state's own slice: copy it to keep it.
	RecentItems []string
	// LastInteraction is the latest action's time (unix ms); 0 for none.
	LastInteraction int64
	// Clicks1h and Purchases1h count the events in (At − 1h, At].
	Clicks1h, Purchases1h int64
}

// Values returns the user's values as of at (unix ms), which should not be
// before the user's latest event.
func (u *User) Values(at int64) UserValues {
	return UserValues{
		At: at, LastEvent: u.lastEvent,
		SessionKey: u.sessionKey, SessionStart: u.sessionStart, SessionInteractions: u.sessionActs, SessionClicks: u.sessionClicks,
		RecentItems:     u.recent,
		LastInteraction: u.lastAction,
		Clicks1h:        countIn(u.clicks, at-hourMs, at), Purchases1h: countIn(u.purchases, at-hourMs, at),
	}
}

// Get returns a user feature's value and the time it is correct at (unix
// ms); false when the user has no value of it (no event yet; no action for
// the last interaction) or f is not a user feature.
func (v *UserValues) Get(f Feature) (features.Value, int64, bool) {
	ev := v.LastEvent > 0
	switch f {
	case SessionKey:
		return features.Value{Int: v.SessionKey}, v.LastEvent, ev
	case SessionStartMs:
		return features.Value{Int: v.SessionStart}, v.LastEvent, ev
	case SessionInteractions:
		return features.Value{Int: v.SessionInteractions}, v.LastEvent, ev
	case SessionClicks:
		return features.Value{Int: v.SessionClicks}, v.LastEvent, ev
	case SessionRecentItems:
		return features.Value{List: v.RecentItems}, v.LastEvent, ev
	case LastInteractionMs:
		return features.Value{Int: v.LastInteraction}, v.LastInteraction, v.LastInteraction > 0
	case UserClicks1h:
		return features.Value{Int: v.Clicks1h}, v.At, v.At > 0
	case UserPurchases1h:
		return features.Value{Int: v.Purchases1h}, v.At, v.At > 0
	}
	return features.Value{}, 0, false
}

// insertSorted inserts t into ascending ts.
func insertSorted(ts []int64, t int64) []int64 {
	i := len(ts)
	for i > 0 && ts[i-1] > t {
		i--
	}
	ts = append(ts, 0)
	copy(ts[i+1:], ts[i:])
	ts[i] = t
	return ts
}

// trimTo drops the times at or before from, in place.
func trimTo(ts []int64, from int64) []int64 {
	i := 0
	for i < len(ts) && ts[i] <= from {
		i++
	}
	if i == 0 {
		return ts
	}
	return append(ts[:0], ts[i:]...)
}

// countIn counts the times in (from, to] of ascending ts.
func countIn(ts []int64, from, to int64) int64 {
	lo, _ := slices.BinarySearch(ts, from+1)
	hi, _ := slices.BinarySearch(ts, to+1)
	return int64(max(hi-lo, 0))
}
