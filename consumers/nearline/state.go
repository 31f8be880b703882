package nearline

import (
	"time"

	"github.com/adaptrec/adaptrec/features"
)

// The rules of the user session state, identical to features/offline's
// replay (its joiner is unexported, so the rule is restated here and
// TestSessionRuleMatchesOffline pins it): the session is the one of the
// user's latest event while that event is less than sessionTTL old; a new
// session id, or one after a gap longer than sessionTTL, starts a new
// session at that event; actions are every event but impressions.
const (
	sessionTTL     = 30 * time.Minute
	recentItemsMax = 10
	hour           = time.Hour
	trendWindow    = 30 * time.Minute
)

// userState is what the consumer knows about one user of its partition.
type userState struct {
	lastEvent    int64 // unix ms of the latest event, any action
	sessionKey   int64
	sessionStart int64
	sessionActs  int64
	sessionClick int64
	lastAction   int64    // unix ms of the latest action that is not an impression
	recent       []string // items clicked or viewed in the session, newest first
	clicks       []int64  // unix ms of clicks in the last hour, ascending
	purchases    []int64  // unix ms of purchases in the last hour, ascending
}

// interaction is the part of an event the state needs.
type interaction struct {
	t            int64 // unix ms
	user, item   string
	session      string
	action       string // adaptrecv1.Action name, e.g. ACTION_CLICK
	isImpression bool
	isClick      bool
	isView       bool
	isPurchase   bool
}

// apply updates the user's state with one event. An event older than the
// user's latest (out of order within the partition) is counted in the
// windows and the session's actions but does not move the session.
func (s *userState) apply(in interaction) {
	t := in.t
	key := features.SessionKey(in.session)
	if t >= s.lastEvent {
		if key != 0 && (key != s.sessionKey || t-s.lastEvent > sessionTTL.Milliseconds()) {
			s.sessionKey, s.sessionStart, s.sessionActs, s.sessionClick, s.recent = key, t, 0, 0, nil
		}
		s.lastEvent = t
	}
	inSession := key != 0 && key == s.sessionKey
	if !in.isImpression {
		if inSession {
			s.sessionActs++
		}
		s.lastAction = max(s.lastAction, t)
	}
	if in.isClick {
		if inSession {
			s.sessionClick++
		}
		s.clicks = insertSorted(s.clicks, t)
	}
	if in.isPurchase {
		s.purchases = insertSorted(s.purchases, t)
	}
	if inSession && (in.isClick || in.isView) && in.item != "" {
		r := make([]string, 0, recentItemsMax)
		r = append(r, in.item)
		for _, it := range s.recent {
			if it != in.item && len(r) < recentItemsMax {
				r = append(r, it)
			}
		}
		s.recent = r
	}
}

// windows returns the user's clicks and purchases in the hour before at
// (unix ms), trimming what has left the window.
func (s *userState) windows(at int64) (clicks1h, purchases1h int64) {
	s.clicks = trimBefore(s.clicks, at-hour.Milliseconds())
	s.purchases = trimBefore(s.purchases, at-hour.Milliseconds())
	return int64(len(s.clicks)), int64(len(s.purchases))
}

// idle reports whether the state holds nothing that is still served at at
// except the last interaction time, which the stored value keeps.
func (s *userState) idle(at int64) bool {
	return at-s.lastEvent > sessionTTL.Milliseconds() && len(trimBefore(s.clicks, at-hour.Milliseconds())) == 0 &&
		len(trimBefore(s.purchases, at-hour.Milliseconds())) == 0
}

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

func trimBefore(ts []int64, from int64) []int64 {
	i := 0
	for i < len(ts) && ts[i] <= from {
		i++
	}
	if i == 0 {
		return ts
	}
	return append(ts[:0], ts[i:]...)
}

// counts are an item's events in one bucket.
type counts struct{ clicks, impressions int64 }

// itemState holds one item's bucketed counts of this partition.
type itemState struct {
	buckets map[int64]*counts // by bucket start, unix ms
}

// windows holds the item buckets of one partition with the watermark that
// decides which buckets are still held.
type windows struct {
	bucket   int64 // bucket width, ms
	lateness int64 // how far behind the latest event time an event may be, ms
	maxT     int64 // latest event time seen, unix ms
	items    map[string]*itemState
}

func newWindows(bucket, lateness time.Duration) *windows {
	return &windows{bucket: bucket.Milliseconds(), lateness: lateness.Milliseconds(), items: map[string]*itemState{}}
}

// watermark is the event time below which events are late.
func (w *windows) watermark() int64 { return w.maxT - w.lateness }

// horizon is the start of the oldest bucket still held: the buckets that
// can still be in an hour window ending at or after the watermark.
func (w *windows) horizon() int64 {
	return floorTo(w.watermark()-hour.Milliseconds(), w.bucket)
}

// lateness outcomes of add.
const (
	onTime = iota
	lateCounted
	lateDropped
)

// add counts one item event and says whether it was late.
func (w *windows) add(item string, t int64, click, impression bool) int {
	if !click && !impression {
		return onTime
	}
	late := onTime
	if t < w.watermark() {
		late = lateCounted
		if t < w.horizon() {
			return lateDropped
		}
	}
	w.maxT = max(w.maxT, t)
	st := w.items[item]
	if st == nil {
		st = &itemState{buckets: map[int64]*counts{}}
		w.items[item] = st
	}
	b := floorTo(t, w.bucket)
	c := st.buckets[b]
	if c == nil {
		c = &counts{}
		st.buckets[b] = c
	}
	if click {
		c.clicks++
	}
	if impression {
		c.impressions++
	}
	return late
}

// shard is one partition's totals of one item as of at.
type shard struct {
	at                                 int64
	clicks1h, impressions1h, clicks30m int64
}

// totals sums the item's buckets in the windows ending at at: a bucket
// counts when it starts within the window (bucket granularity).
func (w *windows) totals(item string, at int64) shard {
	s := shard{at: at}
	st := w.items[item]
	if st == nil {
		return s
	}
	h := floorTo(at, w.bucket) - hour.Milliseconds() + w.bucket
	m := floorTo(at, w.bucket) - trendWindow.Milliseconds() + w.bucket
	for b, c := range st.buckets {
		if b > at {
			continue
		}
		if b >= h {
			s.clicks1h += c.clicks
			s.impressions1h += c.impressions
		}
		if b >= m {
			s.clicks30m += c.clicks
		}
	}
	return s
}

// evict drops buckets older than the horizon and items left without any.
// It returns the items it dropped entirely.
func (w *windows) evict() []string {
	hz := w.horizon()
	var gone []string
	for id, st := range w.items {
		for b := range st.buckets {
			if b < hz {
				delete(st.buckets, b)
			}
		}
		if len(st.buckets) == 0 {
			delete(w.items, id)
			gone = append(gone, id)
		}
	}
	return gone
}

func floorTo(t, d int64) int64 {
	r := t % d
	if r < 0 {
		r += d
	}
	return t - r
}
