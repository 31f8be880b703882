package sim

// The organic policy is what the platform shows before any recommender
// exists: a mix of popularity, browsing from what the user clicked recently
// (same category, same creator), fresh items and random discovery. It is
// deliberately naive: it leaves plenty of room for a learned model to win.

const (
	recentN     = 4         // recent clicks remembered per user
	freshWindow = 3 * 86400 // seconds: how new a "fresh" item is
	maxPageSize = 100
	maxTries    = 4 // draws per slot before the slot is left empty
	noItem      = int32(-1)
	clickDecay  = 7 * 86400.0 // seconds: popularity half-life

	// Cumulative shares of the organic page's slots: popularity, the
	// category of a recent click, its creator, fresh items, and the rest
	// random discovery.
	popularSlot  = 0.45
	categorySlot = 0.70
	creatorSlot  = 0.80
	freshSlot    = 0.90
)

// popularity is a snapshot of item popularity for sampling.
type popularity struct {
	cum cumulative
}

// recentClicks is a small ring of a user's latest clicked items.
type recentClicks struct {
	items []int32 // users × recentN, noItem when empty
	next  []uint8
}

func newRecentClicks(users int) recentClicks {
	rc := recentClicks{items: make([]int32, users*recentN), next: make([]uint8, users)}
	for i := range rc.items {
		rc.items[i] = noItem
	}
	return rc
}

func (rc *recentClicks) add(user, item int32) {
	i := int(user)*recentN + int(rc.next[user])
	rc.items[i] = item
	rc.next[user] = (rc.next[user] + 1) % recentN
}

func (rc *recentClicks) of(user int32) []int32 {
	return rc.items[int(user)*recentN : int(user+1)*recentN]
}

// pick returns a random recent click of user, or noItem.
func (rc *recentClicks) pick(r *rng, user int32) int32 {
	return rc.of(user)[r.intN(recentN)]
}

func (rc *recentClicks) contains(user, item int32) bool {
	for _, x := range rc.of(user) {
		if x == item {
			return true
		}
	}
	return false
}

// organicPick draws one item for user u at unix time t, or noItem.
func organicPick(r *rng, cat *Catalogue, pop *popularity, rc *recentClicks, u *User, t int64) int32 {
	x := r.float64()
	switch {
	case x < popularSlot:
		return int32(pop.cum.sample(r))
	case x < categorySlot:
		return browseCategory(r, cat, rc.pick(r, u.Index), u, t)
	case x < creatorSlot:
		if recent := rc.pick(r, u.Index); recent != noItem {
			if c := cat.Items[recent].Creator; c >= 0 {
				return pickPublished(r, cat, cat.byCreator[c], t)
			}
		}
		return int32(pop.cum.sample(r))
	case x < freshSlot:
		lo := cat.publishedBefore(cat.byPublished, t-freshWindow)
		hi := cat.publishedBefore(cat.byPublished, t)
		if hi > lo {
			return cat.byPublished[lo+r.intN(hi-lo)]
		}
		return int32(pop.cum.sample(r))
	default:
		return pickPublished(r, cat, cat.byPublished, t)
	}
}

// browseCategory picks from the category of recent (a recently clicked item,
// or noItem), or else one of the user's favourite categories (users navigate
// to what they like).
func browseCategory(r *rng, cat *Catalogue, recent int32, u *User, t int64) int32 {
	c := int32(-1)
	if recent != noItem {
		c = cat.Items[recent].Category()
	} else if len(u.favourites) > 0 && r.bernoulli(0.5) {
		c = u.favourites[r.intN(len(u.favourites))]
	}
	if c < 0 {
		return pickPublished(r, cat, cat.byPublished, t)
	}
	return pickPublished(r, cat, cat.byCategory[c], t)
}

// pickPublished picks from a list sorted by publish time among the items
// published by t, preferring the newest fifth half of the time.
func pickPublished(r *rng, cat *Catalogue, list []int32, t int64) int32 {
	n := cat.publishedBefore(list, t)
	if n == 0 {
		return noItem
	}
	if r.bernoulli(0.5) {
		lo := n - max(1, n/5)
		return list[lo+r.intN(n-lo)]
	}
	return list[r.intN(n)]
}

// fillPage fills page with distinct organic items for u at t and returns how
// many it found; recently clicked items are not shown again.
func fillPage(r *rng, cat *Catalogue, pop *popularity, rc *recentClicks, u *User, t int64, page []int32) int {
	n := 0
	for range page {
		for range maxTries {
			it := organicPick(r, cat, pop, rc, u, t)
			if it == noItem || rc.contains(u.Index, it) || containsItem(page[:n], it) {
				continue
			}
			page[n] = it
			n++
			break
		}
	}
	return n
}

func containsItem(list []int32, it int32) bool {
	for _, x := range list {
		if x == it {
			return true
		}
	}
	return false
}
