package windowed

import (
	"time"

	"github.com/adaptrec/adaptrec/features"
)

// Lateness is how Items.Add took an event.
type Lateness uint8

// Outcomes of Items.Add.
const (
	// OnTime: at or after the watermark.
	OnTime Lateness = iota
	// LateCounted: behind the watermark, counted because its bucket is
	// still held.
	LateCounted
	// LateDropped: behind the watermark and every held bucket.
	LateDropped
)

// bucket is one item's counts of one bucket.
type bucket struct{ start, clicks, impressions int64 }

// itemBuckets are one item's buckets, ascending by start.
type itemBuckets struct{ b []bucket }

// Items counts items' clicks and impressions in time buckets, holding the
// buckets an hour window ending at or after the watermark can read. It is
// not safe for concurrent use.
type Items struct {
	bucket   int64 // bucket width, ms
	lateness int64 // how far behind the latest event time an event may be, ms
	maxT     int64 // latest event time seen, unix ms
	items    map[string]*itemBuckets
}

// NewItems returns empty counts with buckets of width bucket (which must
// divide an hour) accepting events up to lateness behind the latest one.
func NewItems(bucket, lateness time.Duration) *Items {
	return &Items{bucket: max(bucket.Milliseconds(), 1), lateness: max(lateness.Milliseconds(), 0), items: map[string]*itemBuckets{}}
}

// BucketStart is the start of t's bucket (unix ms).
func (w *Items) BucketStart(t int64) int64 { return floorTo(t, w.bucket) }

// MaxT is the latest event time seen or advanced to (unix ms).
func (w *Items) MaxT() int64 { return w.maxT }

// Advance moves the latest time to t when t is later, as the wall clock
// does when no events come.
func (w *Items) Advance(t int64) { w.maxT = max(w.maxT, t) }

// Watermark is the event time below which events are late.
func (w *Items) Watermark() int64 { return w.maxT - w.lateness }

// horizon is the start of the oldest bucket still held: the buckets that
// can still be in an hour window ending at or after the watermark.
func (w *Items) horizon() int64 { return floorTo(w.Watermark()-hourMs, w.bucket) }

// Held reports whether the item has a bucket held.
func (w *Items) Held(item string) bool {
	_, ok := w.items[item]
	return ok
}

// Len is the number of items with a bucket held.
func (w *Items) Len() int { return len(w.items) }

// Add counts one event of item at t (unix ms) and says whether it was
// late. Only clicks and impressions are counted (Action.CountsForItems);
// other actions change nothing and are on time.
func (w *Items) Add(item string, t int64, a Action) Lateness {
	if !a.CountsForItems() {
		return OnTime
	}
	late := OnTime
	if t < w.Watermark() {
		late = LateCounted
		if t < w.horizon() {
			return LateDropped
		}
	}
	w.maxT = max(w.maxT, t)
	st := w.items[item]
	if st == nil {
		st = &itemBuckets{}
		w.items[item] = st
	}
	start := floorTo(t, w.bucket)
	i := len(st.b) - 1
	for i >= 0 && st.b[i].start > start {
		i--
	}
	if i < 0 || st.b[i].start != start {
		i++
		st.b = append(st.b, bucket{})
		copy(st.b[i+1:], st.b[i:])
		st.b[i] = bucket{start: start}
	}
	if a == ActionClick {
		st.b[i].clicks++
	} else {
		st.b[i].impressions++
	}
	return late
}

// Totals are an item's counts in the windows ending at At.
type Totals struct {
	// At is the end of the windows, unix ms.
	At int64
	// Clicks1h and Impressions1h count the hour, Clicks30m the last 30
	// minutes.
	Clicks1h, Impressions1h, Clicks30m int64
}

// Totals sums the item's buckets in the windows ending at at (unix ms) at
// bucket granularity: a bucket counts when it starts within the window and
// not after at, so the hour is the 60 one-minute buckets ending with at's.
func (w *Items) Totals(item string, at int64) Totals {
	s := Totals{At: at}
	st := w.items[item]
	if st == nil {
		return s
	}
	cur := floorTo(at, w.bucket)
	h := cur - hourMs + w.bucket
	m := cur - trendMs + w.bucket
	for i := len(st.b) - 1; i >= 0; i-- {
		b := &st.b[i]
		if b.start > at {
			continue
		}
		if b.start < h {
			break
		}
		s.Clicks1h += b.clicks
		s.Impressions1h += b.impressions
		if b.start >= m {
			s.Clicks30m += b.clicks
		}
	}
	return s
}

// Evict drops the buckets older than the horizon and the items left
// without any, and returns the items it dropped.
func (w *Items) Evict() []string {
	hz := w.horizon()
	var gone []string
	for id, st := range w.items {
		i := 0
		for i < len(st.b) && st.b[i].start < hz {
			i++
		}
		if i == len(st.b) {
			delete(w.items, id)
			gone = append(gone, id)
			continue
		}
		if i > 0 {
			st.b = append(st.b[:0], st.b[i:]...)
		}
	}
	return gone
}

// ItemValues are an item's values from its totals.
type ItemValues struct {
	// At is the time they are correct at.
	At int64
	// Clicks1h and Impressions1h are the totals'.
	Clicks1h, Impressions1h int64
	// CTR is item_ctr_1h.
	CTR float32
	// Velocity is item_trending_velocity_30m when HasVelocity.
	Velocity    float32
	HasVelocity bool
}

// ItemValues computes an item's values from its totals and, when
// hasBaseline, its trending baseline (BaselinePer30m). Without a baseline
// there is no velocity; an item with neither clicks nor impressions in the
// hour has the velocity's default.
func (r *Rules) ItemValues(t Totals, baseline float64, hasBaseline bool) ItemValues {
	v := ItemValues{At: t.At, Clicks1h: t.Clicks1h, Impressions1h: t.Impressions1h,
		CTR: float32(SmoothedRate(t.Clicks1h, t.Impressions1h, r.CTRPrior))}
	if hasBaseline {
		v.HasVelocity = true
		v.Velocity = float32(r.VelocityDefault)
		if t.Clicks1h > 0 || t.Impressions1h > 0 {
			v.Velocity = float32(Velocity(t.Clicks30m, baseline))
		}
	}
	return v
}

// Get returns an item feature's value and the time it is correct at (unix
// ms); false for the velocity without a baseline and for features that are
// not the item's.
func (v *ItemValues) Get(f Feature) (features.Value, int64, bool) {
	switch f {
	case ItemClicks1h:
		return features.Value{Int: v.Clicks1h}, v.At, true
	case ItemImpressions1h:
		return features.Value{Int: v.Impressions1h}, v.At, true
	case ItemCTR1h:
		return features.Value{Float: v.CTR}, v.At, true
	case ItemTrendingVelocity30m:
		return features.Value{Float: v.Velocity}, v.At, v.HasVelocity
	}
	return features.Value{}, 0, false
}
