package batch

import (
	"math"
	"strings"
	"time"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/features"
)

// Windows and smoothing of the batch features, as features.yaml defines
// them.
const (
	// Day is the length of the 1d window; 7d and 30d are multiples of it.
	Day = 24 * time.Hour
	// PriorWeight is the number of pseudo-trials in the smoothing rule
	// rate = (successes + PriorWeight·prior) / (trials + PriorWeight).
	PriorWeight = 100
	// PositionDecay is the exponent of the examination model of
	// item_ctr_position_adjusted_7d: a slot at 0-based position p is
	// examined with probability (1+p)^-PositionDecay.
	PositionDecay = 0.7
	// MaxDays is the longest window (30d) in days.
	MaxDays = 30
)

// smooth is the smoothing rule of features.yaml. Successes are capped at
// trials: an event whose cause fell just before the window (a click at
// its start, the watch after it) must not push a share above 1.
func smooth(successes, trials, prior float64) float64 {
	return (min(successes, trials) + PriorWeight*prior) / (trials + PriorWeight)
}

type action uint8

const (
	actOther action = iota
	actImpression
	actView
	actClick
	actWatch
	actComplete
	actPurchase
	actSkip
)

func parseAction(s string) action {
	switch s {
	case "ACTION_IMPRESSION":
		return actImpression
	case "ACTION_VIEW":
		return actView
	case "ACTION_CLICK":
		return actClick
	case "ACTION_WATCH":
		return actWatch
	case "ACTION_COMPLETE":
		return actComplete
	case "ACTION_PURCHASE":
		return actPurchase
	case "ACTION_SKIP":
		return actSkip
	}
	return actOther
}

// interner maps ids to dense indexes.
type interner struct {
	idx map[string]int32
	ids []string
}

func newInterner() interner { return interner{idx: make(map[string]int32)} }

// get returns s's index, adding s (copied: archive rows are reused) when new.
func (in *interner) get(s string) (int32, bool) {
	if i, ok := in.idx[s]; ok {
		return i, false
	}
	c := strings.Clone(s)
	i := int32(len(in.ids))
	in.idx[c] = i
	in.ids = append(in.ids, c)
	return i, true
}

// userAgg accumulates one user's events. Counts are over the 30d window
// unless named otherwise.
type userAgg struct {
	first  int64 // unix ms of the first event in the tenure lookback
	active bool  // an event in the 30d window

	impr, clicks, purchases, watches, completes, skips int64
	spend, watchSec                                    float64

	days     uint64 // bit d: an event on UTC day firstDay+d
	loc      *time.Location
	locKnown bool
	hours    [24]int32 // actions (not impressions) per local hour

	catClicks      []int32 // clicks per primary category, with a catalogue
	knownCatClicks int32
	creators       map[int32]int32 // clicks per creator, with a catalogue
}

// itemAgg accumulates one item's events.
type itemAgg struct {
	active                                 bool
	info                                   ItemInfo
	hasInfo                                bool
	impr1d, impr7d, impr30d                int64
	clicks1d, clicks7d, clicks30d          int64
	opens7d, opens30d                      int64 // clicks and views: the item was opened
	posWeight7d                            float64
	watches7d, completes7d, skips7d        int64
	purchases30d, browseViews7d, viewers7d int64
	watchSec7d, watchFrac7d, revenue7d     float64
	watchFracN                             int64
}

// pairAgg accumulates one (user, item) pair's events in the 30d window.
type pairAgg struct {
	user, item                 int32
	impr7d, impr30d, clicks30d int32
	opened7d                   bool
}

type sessKey struct {
	user int32
	key  int64
}

type sessAgg struct {
	first, last int64
	device      int8 // index in user_device_share's vocabulary, -1 unknown
}

// aggregator holds everything one pass over the event log accumulates.
type aggregator struct {
	asOf, from30, from7, from1 int64 // unix ms
	firstDay                   int64 // unix day of from30
	browseSurface              string
	catalogue                  *Catalogue
	zones                      func(user string) string
	devices                    []string // user_device_share's vocabulary, lower case
	categories                 int      // categories counted per user

	users, items interner
	u            []userAgg
	it           []itemAgg
	pairIdx      map[uint64]int32
	pairs        []pairAgg
	sessIdx      map[sessKey]int32
	sess         []sessAgg
	sessUser     []int32

	impr7d, clicks7d int64 // global, for the position-adjusted CTR
	catImpr7d        []int64
	catClicks7d      []int64
	creatorImpr30d   map[int32]int64
	creatorClicks30d map[int32]int64
	creatorItems     map[int32]int64

	events, inWindow int64
	posWeight        [64]float64
	zoneCache        map[string]*time.Location // nil: not a valid zone
}

func newAggregator(asOf time.Time, cfg *Config, devices []string) *aggregator {
	ms := asOf.UnixMilli()
	a := &aggregator{
		asOf:          ms,
		from30:        ms - (MaxDays * Day).Milliseconds(),
		from7:         ms - (7 * Day).Milliseconds(),
		from1:         ms - Day.Milliseconds(),
		browseSurface: cfg.BrowseSurface,
		catalogue:     cfg.Catalogue,
		zones:         cfg.Zones,
		devices:       devices,
		users:         newInterner(),
		items:         newInterner(),
		pairIdx:       make(map[uint64]int32),
		sessIdx:       make(map[sessKey]int32),
	}
	a.firstDay = floorDiv(a.from30, Day.Milliseconds())
	for p := range a.posWeight {
		a.posWeight[p] = math.Pow(1+float64(p), -PositionDecay)
	}
	if c := a.catalogue; c != nil {
		a.creatorImpr30d = make(map[int32]int64)
		a.creatorClicks30d = make(map[int32]int64)
		a.creatorItems = make(map[int32]int64)
		maxCat := int32(-1)
		// Every published item gets a row, interacted with or not.
		for i, id := range c.ids {
			info := c.infos[i]
			maxCat = max(maxCat, info.Category)
			if !info.Published.IsZero() && info.Published.UnixMilli() > ms {
				continue
			}
			ix := a.item(id)
			a.it[ix].info, a.it[ix].hasInfo = info, true
			if info.Creator >= 0 {
				a.creatorItems[info.Creator]++
			}
		}
		a.categories = int(maxCat) + 1
		a.catImpr7d = make([]int64, a.categories)
		a.catClicks7d = make([]int64, a.categories)
	}
	return a
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func (a *aggregator) user(id string) int32 {
	i, added := a.users.get(id)
	if added {
		a.u = append(a.u, userAgg{first: math.MaxInt64})
		if a.categories > 0 {
			a.u[i].catClicks = make([]int32, a.categories)
		}
	}
	return i
}

func (a *aggregator) item(id string) int32 {
	i, added := a.items.get(id)
	if added {
		a.it = append(a.it, itemAgg{})
		if a.catalogue != nil {
			a.it[i].info, a.it[i].hasInfo = a.catalogue.Lookup(id)
		}
	}
	return i
}

func (a *aggregator) pair(u, it int32) *pairAgg {
	k := uint64(uint32(u))<<32 | uint64(uint32(it))
	p, ok := a.pairIdx[k]
	if !ok {
		p = int32(len(a.pairs))
		a.pairIdx[k] = p
		a.pairs = append(a.pairs, pairAgg{user: u, item: it})
	}
	return &a.pairs[p]
}

func (a *aggregator) deviceIndex(d string) int8 {
	name := strings.ToLower(strings.TrimPrefix(d, "DEVICE_"))
	for i, v := range a.devices {
		if v == name {
			return int8(i)
		}
	}
	return -1
}

// zone loads an IANA zone once per name (time.LoadLocation reads the zone
// database on every call); "" and "Local" are no zone.
func (a *aggregator) zone(name string) *time.Location {
	if name == "" || name == "Local" {
		return nil
	}
	if loc, ok := a.zoneCache[name]; ok {
		return loc
	}
	if a.zoneCache == nil {
		a.zoneCache = make(map[string]*time.Location)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		loc = nil
	}
	a.zoneCache[name] = loc
	return loc
}

// add accumulates one archived interaction with event time before asOf.
func (a *aggregator) add(r *eventlog.Row) {
	a.events++
	if r.UserID == "" {
		return
	}
	t := r.EventTime.UnixMilli()
	if t >= a.asOf {
		return
	}
	u := a.user(r.UserID)
	ua := &a.u[u]
	ua.first = min(ua.first, t)
	if t < a.from30 {
		return
	}
	a.inWindow++
	act := parseAction(r.Action)
	ua.active = true
	ua.days |= 1 << uint(floorDiv(t, Day.Milliseconds())-a.firstDay)
	if r.SessionID != "" {
		k := sessKey{user: u, key: features.SessionKey(r.SessionID)}
		s, ok := a.sessIdx[k]
		if !ok {
			s = int32(len(a.sess))
			a.sessIdx[k] = s
			a.sess = append(a.sess, sessAgg{first: t, last: t, device: a.deviceIndex(r.Device)})
			a.sessUser = append(a.sessUser, u)
		} else {
			sa := &a.sess[s]
			if t < sa.first {
				sa.first, sa.device = t, a.deviceIndex(r.Device)
			}
			sa.last = max(sa.last, t)
		}
	}
	if act != actImpression && act != actOther && a.zones != nil {
		if !ua.locKnown {
			ua.locKnown = true
			ua.loc = a.zone(a.zones(r.UserID))
		}
		if ua.loc != nil {
			ua.hours[r.EventTime.In(ua.loc).Hour()]++
		}
	}
	if r.ItemID == "" {
		return
	}
	it := a.item(r.ItemID)
	ia := &a.it[it]
	ia.active = true
	pa := a.pair(u, it)
	in7, in1 := t >= a.from7, t >= a.from1
	value := 0.0
	if r.Value != nil {
		value = *r.Value
	}
	positioned := r.Position != nil && *r.Position >= 0
	cat, creator := int32(-1), int32(-1)
	if ia.hasInfo {
		cat, creator = ia.info.Category, ia.info.Creator
	}
	switch act {
	case actImpression:
		ua.impr++
		ia.impr30d++
		pa.impr30d++
		if creator >= 0 {
			a.creatorImpr30d[creator]++
		}
		if in7 {
			ia.impr7d++
			pa.impr7d++
			a.impr7d++
			w := 1.0
			if positioned {
				if p := int(*r.Position); p < len(a.posWeight) {
					w = a.posWeight[p]
				} else {
					w = math.Pow(1+float64(p), -PositionDecay)
				}
			}
			ia.posWeight7d += w
			if cat >= 0 {
				a.catImpr7d[cat]++
			}
		}
		if in1 {
			ia.impr1d++
		}
	case actClick:
		ua.clicks++
		ia.clicks30d++
		ia.opens30d++
		pa.clicks30d++
		if cat >= 0 {
			ua.catClicks[cat]++
			ua.knownCatClicks++
		}
		if creator >= 0 {
			if ua.creators == nil {
				ua.creators = make(map[int32]int32)
			}
			ua.creators[creator]++
			a.creatorClicks30d[creator]++
		}
		if in7 {
			ia.clicks7d++
			ia.opens7d++
			a.clicks7d++
			if !pa.opened7d {
				pa.opened7d = true
				ia.viewers7d++
			}
			if cat >= 0 {
				a.catClicks7d[cat]++
			}
		}
		if in1 {
			ia.clicks1d++
		}
	case actView:
		ia.opens30d++
		if in7 {
			ia.opens7d++
			if !pa.opened7d {
				pa.opened7d = true
				ia.viewers7d++
			}
			if r.Surface == a.browseSurface {
				ia.browseViews7d++
			}
		}
	case actWatch:
		ua.watches++
		ua.watchSec += max(value, 0)
		if in7 {
			ia.watches7d++
			ia.watchSec7d += max(value, 0)
			if ia.hasInfo && ia.info.Duration > 0 {
				ia.watchFrac7d += min(max(value, 0)/ia.info.Duration, 1)
				ia.watchFracN++
			}
		}
	case actComplete:
		ua.completes++
		if in7 {
			ia.completes7d++
		}
	case actPurchase:
		ua.purchases++
		ua.spend += max(value, 0)
		ia.purchases30d++
		if in7 {
			ia.revenue7d += max(value, 0)
		}
	case actSkip:
		// Skips of a shown slot; a skipped self-found item was never an
		// impression.
		if positioned {
			ua.skips++
			if in7 {
				ia.skips7d++
			}
		}
	}
}
