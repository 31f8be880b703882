package servingworld

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/adaptrec/adaptrec/features"
)

// Shape of the generated world.
const (
	// defaultCategories is the number of categories when the definitions
	// have no user_category_affinity to take it from.
	defaultCategories = 32
	// itemsPerCreator sets the number of creators: items/20.
	itemsPerCreator = 20
	// freshShare of items were published less than freshHours ago;
	// flaggedShare are flagged by moderation, promotedShare promoted.
	freshShare    = 0.03
	freshHours    = 48
	flaggedShare  = 0.005
	promotedShare = 0.01
	// meanAgeHours is the mean age of the other items beyond freshHours:
	// most are weeks old.
	meanAgeHours = 24 * 30
	// activeClicks is the fewest 7-day clicks of an item with clicks in the
	// last hour, which the nearline lane keeps values of; trendingShare of
	// those are heating up.
	activeClicks  = 20
	trendingShare = 0.06
	// sessionShare of users are in a session: they have recent items and
	// nearline values.
	sessionShare = 0.85
	// maxSessionItems is user_session_recent_items' cap.
	maxSessionItems = 10
	// pastSessions per user, of pastSessionItems items each, feed the
	// co-visitation table.
	pastSessions     = 3
	pastSessionItems = 12
	// embedding16 is the width of item_embedding and user_embedding.
	embedding16 = 16
)

// timeZones are the users' home zones; each is an IANA name the server
// accepts.
var timeZones = []string{
	"Europe/Paris", "America/New_York", "America/Los_Angeles", "Europe/London",
	"Asia/Tokyo", "Asia/Kolkata", "America/Sao_Paulo", "Australia/Sydney",
}

// deviceWeights are the shares of users whose usual device is mobile,
// desktop, tablet and TV (the order of req_device's vocabulary).
var deviceWeights = []float64{0.6, 0.25, 0.1, 0.05}

// gen holds the world's entities and their hidden attributes, from which
// every feature value is derived. It is built once by newGen and read-only
// afterwards.
type gen struct {
	fs   *features.FeatureSet
	o    Options
	seed uint64

	categories, creators int
	catWeight            []float64

	itemIDs   []string
	itemIndex map[string]int32
	cat       []int32
	creator   []int32
	age       []float32
	fresh     []bool
	flagged   []bool
	promoted  []bool
	clicks    []int64
	// quality multiplies the 3% prior CTR: the item's true CTR.
	quality  []float32
	duration []float32
	price    []float32
	// velocity is item_trending_velocity_30m of active items.
	velocity []float32
	active   []int32 // items with nearline values

	creatorCat     []int32
	creatorItems   []int32
	creatorQuality []float32
	catCTR         []float32
	// byCat lists each category's unflagged items, most popular first.
	byCat [][]int32

	userIDs []string
	fav     [][]int32
	favW    [][]float32
	// other holds the categories sharing the rest of the affinity.
	other    [][]int32
	device   []int8
	tz       []int8
	peakHour []int8
	userCTR  []float32
	activity []float32
	// session lists the items of the user's current session, newest first;
	// nil for a user without one. sessionStart is how long ago it began.
	session      [][]int32
	sessionStart []time.Duration
	pairs        [][]int32

	// centroids16 and centroids64 are per-category directions of the
	// item_embedding and ANN spaces.
	centroids16, centroids64 [][]float32
}

// newGen generates the world's entities from the seed.
func newGen(fs *features.FeatureSet, o Options) (*gen, error) {
	g := &gen{fs: fs, o: o, seed: o.Seed, categories: defaultCategories}
	if f, ok := fs.Lookup("user_category_affinity"); ok {
		if f.Type.Kind != features.KindVector || f.Type.Dim < 2 {
			return nil, fmt.Errorf("servingworld: %s defines user_category_affinity as %s, want a vector with a component per category", fs.Source(), f.Type)
		}
		g.categories = f.Type.Dim
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x5e77))
	g.catWeight = make([]float64, g.categories)
	for k := range g.catWeight {
		g.catWeight[k] = 1 / float64(k+4)
	}
	normalize(g.catWeight)
	g.centroids16 = centroids(rng, g.categories, embedding16)
	g.centroids64 = centroids(rng, g.categories, EmbeddingDims)
	g.items(rng)
	g.users(rng)
	return g, nil
}

// items generates the catalogue.
func (g *gen) items(rng *rand.Rand) {
	n := g.o.Items
	g.creators = max(1, n/itemsPerCreator)
	g.creatorCat = make([]int32, g.creators)
	g.creatorItems = make([]int32, g.creators)
	g.creatorQuality = make([]float32, g.creators)
	for c := range g.creators {
		g.creatorCat[c] = int32(pick(g.catWeight, rng.Float64()))
		g.creatorQuality[c] = float32(math.Exp(0.3 * rng.NormFloat64()))
	}
	g.catCTR = make([]float32, g.categories)
	for k := range g.catCTR {
		g.catCTR[k] = float32(0.03 * math.Exp(0.2*rng.NormFloat64()))
	}
	g.itemIDs = make([]string, n)
	g.itemIndex = make(map[string]int32, n)
	g.cat, g.creator = make([]int32, n), make([]int32, n)
	g.age, g.quality, g.duration, g.price, g.velocity = make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
	g.fresh, g.flagged, g.promoted = make([]bool, n), make([]bool, n), make([]bool, n)
	g.clicks = make([]int64, n)
	// Zipf popularity: the item of rank r has about 2·(n/(r+1))^0.9 clicks
	// a week, so a few items take most clicks and most have a handful.
	rank := rng.Perm(n)
	for i := range n {
		id := itemID(i)
		g.itemIDs[i], g.itemIndex[id] = id, int32(i)
		// Few creators publish most items: the creator's index is drawn
		// with density falling as its square root.
		c := min(int32(float64(g.creators)*math.Pow(rng.Float64(), 2)), int32(g.creators-1))
		g.creator[i] = c
		g.creatorItems[c]++
		if rng.Float64() < 0.85 {
			g.cat[i] = g.creatorCat[c]
		} else {
			g.cat[i] = int32(pick(g.catWeight, rng.Float64()))
		}
		if rng.Float64() < freshShare {
			g.age[i] = float32(freshHours * rng.Float64())
			g.fresh[i] = true
		} else {
			g.age[i] = float32(min(freshHours+rng.ExpFloat64()*meanAgeHours, 5*365*24))
		}
		g.flagged[i] = rng.Float64() < flaggedShare
		g.promoted[i] = !g.flagged[i] && rng.Float64() < promotedShare
		g.quality[i] = float32(math.Exp(0.5*rng.NormFloat64()) * float64(g.creatorQuality[c]))
		clicks := 2 * math.Pow(float64(n)/float64(rank[i]+1), 0.9) * math.Exp(0.3*rng.NormFloat64())
		if g.age[i] < 168 {
			clicks *= float64(g.age[i]) / 168
		}
		g.clicks[i] = int64(clicks)
		g.duration[i] = float32(math.Round(math.Min(math.Exp(5.5+0.8*rng.NormFloat64()), 4*3600)))
		if rng.Float64() < 0.3 {
			g.price[i] = float32(math.Round(math.Exp(1.5+0.9*rng.NormFloat64())*100)/100 + 0.99)
		}
		g.velocity[i] = 1
		if g.clicks[i] >= activeClicks || (g.fresh[i] && g.clicks[i] > 0) {
			g.active = append(g.active, int32(i))
			g.velocity[i] = float32(math.Exp(0.15 * rng.NormFloat64()))
			if rng.Float64() < trendingShare {
				g.velocity[i] = float32(1.5 + 4.5*rng.Float64())
			}
		}
	}
	g.byCat = make([][]int32, g.categories)
	for i := range int32(n) {
		if !g.flagged[i] {
			g.byCat[g.cat[i]] = append(g.byCat[g.cat[i]], i)
		}
	}
	for _, l := range g.byCat {
		slices.SortFunc(l, func(a, b int32) int {
			if g.clicks[a] != g.clicks[b] {
				return int(g.clicks[b] - g.clicks[a])
			}
			return int(a - b)
		})
	}
}

// users generates the users, their interests and sessions.
func (g *gen) users(rng *rand.Rand) {
	n := g.o.Users
	g.userIDs = make([]string, n)
	g.fav, g.favW, g.other = make([][]int32, n), make([][]float32, n), make([][]int32, n)
	g.device, g.tz, g.peakHour = make([]int8, n), make([]int8, n), make([]int8, n)
	g.userCTR, g.activity = make([]float32, n), make([]float32, n)
	g.session, g.sessionStart, g.pairs = make([][]int32, n), make([]time.Duration, n), make([][]int32, n)
	for u := range n {
		g.userIDs[u] = userID(u)
		// Two or three favourite categories share most of the clicks;
		// two others get the crumbs.
		k := 2 + rng.IntN(2)
		chosen := drawDistinct(rng, g.catWeight, k+2)
		g.fav[u], g.other[u] = chosen[:k], chosen[k:]
		if k == 3 {
			g.favW[u] = []float32{0.55, 0.28, 0.12}
		} else {
			g.favW[u] = []float32{0.62, 0.30}
		}
		g.device[u] = int8(pick(deviceWeights, rng.Float64()))
		g.tz[u] = int8(rng.IntN(len(timeZones)))
		g.peakHour[u] = int8(17 + rng.IntN(6))
		g.userCTR[u] = float32(0.03 * math.Exp(0.4*rng.NormFloat64()))
		g.activity[u] = float32(math.Exp(0.8 * rng.NormFloat64()))
		if rng.Float64() < sessionShare {
			g.session[u] = g.sessionItems(u, rng, 3+rng.IntN(maxSessionItems-2))
			g.sessionStart[u] = time.Duration(2+rng.IntN(25)) * time.Minute
		}
		if p := g.o.PairsPerUser; p > 0 {
			seen := map[int32]bool{}
			pairs := make([]int32, 0, p)
			for _, i := range g.session[u] {
				if len(pairs) < p && !seen[i] {
					seen[i] = true
					pairs = append(pairs, i)
				}
			}
			for tries := 0; len(pairs) < p && tries < 4*p; tries++ {
				if i := g.pickFavourite(u, rng); !seen[i] {
					seen[i] = true
					pairs = append(pairs, i)
				}
			}
			g.pairs[u] = pairs
		}
	}
}

// sessionItems returns n items of one visit of user u, newest first: a
// favourite category, an item of it drawn by popularity, then items near
// it in the category's popularity order, so that sessions of different
// users around the same items co-visit them.
func (g *gen) sessionItems(u int, rng *rand.Rand, n int) []int32 {
	list := g.byCat[g.fav[u][pickF(g.favW[u], rng.Float64())]]
	if len(list) == 0 {
		return nil
	}
	at := int(float64(len(list)) * math.Pow(rng.Float64(), 2.5))
	out := make([]int32, 0, n)
	for range n {
		j := min(max(at+rng.IntN(41)-20, 0), len(list)-1)
		if !slices.Contains(out, list[j]) {
			out = append(out, list[j])
		}
		at = j
	}
	return out
}

// pickFavourite draws an unflagged item of one of user u's favourite
// categories, by the category's weight and then by popularity.
func (g *gen) pickFavourite(u int, rng *rand.Rand) int32 {
	for {
		list := g.byCat[g.fav[u][pickF(g.favW[u], rng.Float64())]]
		if len(list) > 0 {
			return list[int(float64(len(list))*math.Pow(rng.Float64(), 2.5))]
		}
		// An empty favourite (a tiny catalogue): any category will do.
		list = g.byCat[rng.IntN(g.categories)]
		if len(list) > 0 {
			return list[rng.IntN(len(list))]
		}
	}
}

// pickAny draws an unflagged item of any category by the categories'
// sizes and then by popularity: what a user outside their interests sees.
func (g *gen) pickAny(rng *rand.Rand) int32 {
	for {
		list := g.byCat[pick(g.catWeight, rng.Float64())]
		if len(list) > 0 {
			return list[int(float64(len(list))*math.Pow(rng.Float64(), 2))]
		}
	}
}

// affinity returns user u's user_category_affinity: click shares per
// category, concentrated on the favourites, summing to 1.
func (g *gen) affinity(u int) []float32 {
	v := make([]float32, g.categories)
	var rest float32 = 1
	for j, c := range g.fav[u] {
		v[c] += g.favW[u][j]
		rest -= g.favW[u][j]
	}
	for _, c := range g.other[u] {
		v[c] += rest / float32(len(g.other[u]))
	}
	return v
}

func (g *gen) count(v []bool) int {
	n := 0
	for _, b := range v {
		if b {
			n++
		}
	}
	return n
}

func itemID(i int) string { return fmt.Sprintf("item%07d", i) }
func userID(u int) string { return fmt.Sprintf("user%07d", u) }

// sessionID is the id of a user's current session, in requests and in the
// nearline session key alike.
func sessionID(user string) string { return "s-" + user }

// centroids returns k random unit vectors of d dimensions.
func centroids(rng *rand.Rand, k, d int) [][]float32 {
	out := make([][]float32, k)
	for i := range out {
		v := make([]float32, d)
		var s float64
		for j := range v {
			x := rng.NormFloat64()
			v[j], s = float32(x), s+x*x
		}
		s = math.Sqrt(s)
		for j := range v {
			v[j] = float32(float64(v[j]) / s)
		}
		out[i] = v
	}
	return out
}

// normalize scales w to sum to 1.
func normalize(w []float64) {
	var s float64
	for _, x := range w {
		s += x
	}
	for i := range w {
		w[i] /= s
	}
}

// pick returns the index u (uniform in [0, 1)) falls on in the cumulative
// weights w (summing to 1).
func pick(w []float64, u float64) int {
	for i, x := range w {
		if u < x {
			return i
		}
		u -= x
	}
	return len(w) - 1
}

// pickF is pick over float32 weights that need not sum to 1.
func pickF(w []float32, u float64) int {
	var s float64
	for _, x := range w {
		s += float64(x)
	}
	u *= s
	for i, x := range w {
		if u < float64(x) {
			return i
		}
		u -= float64(x)
	}
	return len(w) - 1
}

// drawDistinct draws k distinct indexes by weight w.
func drawDistinct(rng *rand.Rand, w []float64, k int) []int32 {
	k = min(k, len(w))
	out := make([]int32, 0, k)
	left := slices.Clone(w)
	for len(out) < k {
		normalize(left)
		i := pick(left, rng.Float64())
		out = append(out, int32(i))
		left[i] = 0
	}
	return out
}

// hash is splitmix64 over the inputs: a value of an entity and feature
// that does not depend on the order things are generated in.
func hash(xs ...uint64) uint64 {
	var h uint64 = 0x9e3779b97f4a7c15
	for _, x := range xs {
		h ^= x + 0x9e3779b97f4a7c15 + (h << 6) + (h >> 2)
		h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9
		h = (h ^ (h >> 27)) * 0x94d049bb133111eb
		h ^= h >> 31
	}
	return h
}

// unit is a uniform value in [0, 1) from a hash.
func unit(h uint64) float64 { return float64(h>>11) / (1 << 53) }

// normal is a standard normal value from a hash (Box-Muller).
func normal(h uint64) float64 {
	u1 := max(unit(h), 1e-12)
	u2 := unit(hash(h, 0x4e))
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}
