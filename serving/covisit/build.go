package covisit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/adaptrec/adaptrec/internal/topk"
)

// Defaults of Config.
const (
	// DefaultWindow joins the interactions of one visit: the nearline
	// session features end a session after 30 minutes without activity,
	// and an hour covers a long session while keeping apart visits of
	// different days, whose pairs say more about the user than about the
	// items.
	DefaultWindow = time.Hour
	// DefaultMaxDistance bounds the steps between two co-visited items,
	// and with it the build's work per interaction.
	DefaultMaxDistance = 20
	// DefaultDistanceDecay makes the next item count most: a pair d steps
	// apart counts 0.8^(d−1), half at 4 steps.
	DefaultDistanceDecay = 0.8
	// DefaultNeighbours is the neighbours kept per item: a query over 20
	// recent items then scores up to 1,000 candidates.
	DefaultNeighbours = 50
	// DefaultRecencyDecay weighs the i-th most recent item 0.8^i: the
	// last three actions carry half the weight of a 20-item history.
	DefaultRecencyDecay = 0.8
)

// Limits of a table; Build refuses and Load rejects anything beyond them.
const (
	MaxNeighbours = 1000
	MaxDistance   = 1000
	MaxIDLen      = 1 << 16
	// MaxItems and MaxEdges keep indexes and offsets in int32.
	MaxItems = 1<<31 - 1
	MaxEdges = 1<<31 - 1
)

// Interaction is one positive interaction: a user acted on an item at a
// time, with a strength (the action's weight, e.g. 1 for a click, 3 for a
// purchase).
type Interaction struct {
	User, Item string
	Time       time.Time
	Weight     float32
}

// Config configures Build. Zero values mean the documented defaults.
type Config struct {
	// Window is the longest time between two co-visited interactions of
	// a user; 0 means DefaultWindow (1h).
	Window time.Duration
	// MaxDistance is the most steps between two co-visited interactions
	// in a user's sequence; 0 means DefaultMaxDistance (20).
	MaxDistance int
	// DistanceDecay in (0, 1] discounts a pair d steps apart by
	// DistanceDecay^(d−1); 0 means DefaultDistanceDecay (0.8).
	DistanceDecay float64
	// Neighbours is the most neighbours kept per item; 0 means
	// DefaultNeighbours (50).
	Neighbours int
	// RecencyDecay in (0, 1] is stored with the table for Recommend: the
	// i-th most recent item weighs RecencyDecay^i; 0 means
	// DefaultRecencyDecay (0.8).
	RecencyDecay float64
	// Workers is the number of goroutines building; 0 means GOMAXPROCS.
	// It never changes the result.
	Workers int
}

func (c Config) withDefaults() Config {
	if c.Window == 0 {
		c.Window = DefaultWindow
	}
	if c.MaxDistance == 0 {
		c.MaxDistance = DefaultMaxDistance
	}
	if c.DistanceDecay == 0 {
		c.DistanceDecay = DefaultDistanceDecay
	}
	if c.Neighbours == 0 {
		c.Neighbours = DefaultNeighbours
	}
	if c.RecencyDecay == 0 {
		c.RecencyDecay = DefaultRecencyDecay
	}
	if c.Workers == 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	return c
}

// Validate reports every configuration value out of range, after defaults
// are applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Window < 0 {
		errs = append(errs, fmt.Errorf("covisit: window %s, want a positive duration (0: %s)", c.Window, DefaultWindow))
	}
	if c.MaxDistance < 1 || c.MaxDistance > MaxDistance {
		errs = append(errs, fmt.Errorf("covisit: max distance %d, want 1..%d", c.MaxDistance, MaxDistance))
	}
	if !(c.DistanceDecay > 0 && c.DistanceDecay <= 1) {
		errs = append(errs, fmt.Errorf("covisit: distance decay %v, want a value in (0, 1]", c.DistanceDecay))
	}
	if c.Neighbours < 1 || c.Neighbours > MaxNeighbours {
		errs = append(errs, fmt.Errorf("covisit: neighbours %d, want 1..%d", c.Neighbours, MaxNeighbours))
	}
	if !(c.RecencyDecay > 0 && c.RecencyDecay <= 1) {
		errs = append(errs, fmt.Errorf("covisit: recency decay %v, want a value in (0, 1]", c.RecencyDecay))
	}
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("covisit: workers %d, want at least 1", c.Workers))
	}
	return errors.Join(errs...)
}

// sequences are the users' collapsed interaction sequences, concatenated
// in user order: step s is item[s], from first[s] to last[s] (Unix
// nanoseconds), with strength w[s] and its square root.
type sequences struct {
	item        []int32
	first, last []int64
	w, sqrtW    []float32
	// userStart[u]..userStart[u+1] are user u's steps; user[s] is step
	// s's user.
	userStart []int32
	user      []int32
}

// Build builds a table from positive interactions (see the package
// documentation), in any order. Every interaction needs a user, an item
// and a finite weight > 0. It uses cfg.Workers goroutines and stops early
// when ctx is done.
func Build(ctx context.Context, interactions []Interaction, cfg Config) (*Table, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	for k, it := range interactions {
		switch {
		case it.User == "" || it.Item == "":
			return nil, fmt.Errorf("covisit: interaction %d has user %q and item %q; both are required", k, it.User, it.Item)
		case len(it.Item) > MaxIDLen:
			return nil, fmt.Errorf("covisit: interaction %d: item id of %d bytes, want at most %d", k, len(it.Item), MaxIDLen)
		case !(it.Weight > 0) || math.IsInf(float64(it.Weight), 0):
			return nil, fmt.Errorf("covisit: interaction %d (user %q, item %q) has weight %v, want a finite value > 0", k, it.User, it.Item, it.Weight)
		}
	}
	ids, seq := sequence(interactions)
	if len(ids) > MaxItems {
		return nil, fmt.Errorf("covisit: %d items, want at most %d", len(ids), MaxItems)
	}
	lists, err := neighbours(ctx, len(ids), seq, cfg)
	if err != nil {
		return nil, err
	}
	edges := 0
	for _, l := range lists {
		edges += len(l)
	}
	if edges > MaxEdges {
		return nil, fmt.Errorf("covisit: %d neighbours in all, want at most %d: lower Neighbours", edges, MaxEdges)
	}
	t := &Table{
		ids: ids, off: make([]int32, len(ids)+1), nbr: make([]int32, 0, edges), wt: make([]float32, 0, edges),
		window: cfg.Window, maxDistance: cfg.MaxDistance, distanceDecay: float32(cfg.DistanceDecay),
		neighbours: cfg.Neighbours, recencyDecay: float32(cfg.RecencyDecay),
	}
	for i, l := range lists {
		for _, h := range l {
			t.nbr = append(t.nbr, h.ID)
			t.wt = append(t.wt, h.Score)
		}
		t.off[i+1] = int32(len(t.nbr))
	}
	t.init()
	return t, nil
}

// sequence indexes the items in id order and lays out every user's
// interactions, ordered by time (ties by item, then weight, so the input
// order never matters), with runs of one item collapsed into one step.
func sequence(interactions []Interaction) ([]string, *sequences) {
	itemOf := map[string]int32{}
	userOf := map[string]int32{}
	for _, it := range interactions {
		itemOf[it.Item] = 0
		userOf[it.User] = 0
	}
	ids := slices.Sorted(maps.Keys(itemOf))
	for i, id := range ids {
		itemOf[id] = int32(i)
	}
	users := slices.Sorted(maps.Keys(userOf))
	for u, id := range users {
		userOf[id] = int32(u)
	}

	type event struct {
		t    int64
		item int32
		w    float32
	}
	start := make([]int32, len(users)+1)
	userIdx := make([]int32, len(interactions))
	for k, it := range interactions {
		u := userOf[it.User]
		userIdx[k] = u
		start[u+1]++
	}
	for u := range users {
		start[u+1] += start[u]
	}
	events := make([]event, len(interactions))
	next := slices.Clone(start[:len(users)])
	for k, it := range interactions {
		u := userIdx[k]
		events[next[u]] = event{it.Time.UnixNano(), itemOf[it.Item], it.Weight}
		next[u]++
	}

	s := &sequences{userStart: make([]int32, len(users)+1)}
	for u := range users {
		evs := events[start[u]:start[u+1]]
		slices.SortFunc(evs, func(a, b event) int {
			return cmp.Or(cmp.Compare(a.t, b.t), cmp.Compare(a.item, b.item), cmp.Compare(a.w, b.w))
		})
		for k, e := range evs {
			if k > 0 && e.item == s.item[len(s.item)-1] {
				last := len(s.item) - 1
				s.last[last] = e.t
				if e.w > s.w[last] {
					s.w[last], s.sqrtW[last] = e.w, float32(math.Sqrt(float64(e.w)))
				}
				continue
			}
			s.item = append(s.item, e.item)
			s.first = append(s.first, e.t)
			s.last = append(s.last, e.t)
			s.w = append(s.w, e.w)
			s.sqrtW = append(s.sqrtW, float32(math.Sqrt(float64(e.w))))
			s.user = append(s.user, int32(u))
		}
		s.userStart[u+1] = int32(len(s.item))
	}
	return ids, s
}

// worker is one building goroutine's memory: dense per-item accumulators
// with the lists of what they touched.
type worker struct {
	// acc sums C(i, j) for the item i in hand; accMark[j] == itemMark
	// when acc[j] holds a value for it.
	acc      []float64
	accMark  []uint32
	accUsed  []int32
	itemMark uint32
	// best holds one user's best pair value; bestMark[j] == userMark when
	// it is set for the user in hand.
	best     []float32
	bestMark []uint32
	bestUsed []int32
	userMark uint32
	top      []topk.Hit
}

// neighbours computes every item's neighbour list, heaviest first.
func neighbours(ctx context.Context, n int, s *sequences, cfg Config) ([][]topk.Hit, error) {
	steps := len(s.item)
	// Popularity: per user, the largest strength on each item.
	pop := make([]float64, n)
	{
		mark := make([]int32, n)
		bestW := make([]float32, n)
		var used []int32
		for u := range len(s.userStart) - 1 {
			used = used[:0]
			for st := s.userStart[u]; st < s.userStart[u+1]; st++ {
				i := s.item[st]
				w := s.w[st]
				if mark[i] != int32(u)+1 {
					mark[i] = int32(u) + 1
					bestW[i] = w
					used = append(used, i)
				} else {
					bestW[i] = max(bestW[i], w)
				}
			}
			for _, i := range used {
				pop[i] += float64(bestW[i])
			}
		}
	}
	// occ lists each item's steps in ascending order (user order, then
	// time): the order every sum below runs in.
	occStart := make([]int32, n+1)
	for _, i := range s.item {
		occStart[i+1]++
	}
	for i := range n {
		occStart[i+1] += occStart[i]
	}
	occ := make([]int32, steps)
	fill := slices.Clone(occStart[:n])
	for st, i := range s.item {
		occ[fill[i]] = int32(st)
		fill[i]++
	}

	decay := make([]float32, cfg.MaxDistance+1)
	for d := 1; d <= cfg.MaxDistance; d++ {
		decay[d] = float32(math.Pow(cfg.DistanceDecay, float64(d-1)))
	}
	window := cfg.Window.Nanoseconds()
	lists := make([][]topk.Hit, n)

	const chunk = 256
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, cfg.Workers)
	for w := range cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wk := &worker{
				acc: make([]float64, n), accMark: make([]uint32, n),
				best: make([]float32, n), bestMark: make([]uint32, n),
			}
			for {
				lo := int(next.Add(chunk)) - chunk
				if lo >= n {
					return
				}
				if err := ctx.Err(); err != nil {
					errs[w] = err
					return
				}
				for i := lo; i < min(lo+chunk, n); i++ {
					lists[i] = wk.item(int32(i), occ[occStart[i]:occStart[i+1]], s, pop, decay, window, cfg.Neighbours)
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return lists, nil
}

// item returns item i's neighbours, heaviest first, from its steps.
func (wk *worker) item(i int32, steps []int32, s *sequences, pop []float64, decay []float32, window int64, keep int) []topk.Hit {
	wk.itemMark++
	if wk.itemMark == 0 {
		clear(wk.accMark)
		wk.itemMark = 1
	}
	wk.accUsed = wk.accUsed[:0]
	maxDist := int32(len(decay) - 1)
	for k := 0; k < len(steps); {
		// One user's steps of item i: their best value per partner.
		u := s.user[steps[k]]
		wk.userMark++
		if wk.userMark == 0 {
			clear(wk.bestMark)
			wk.userMark = 1
		}
		wk.bestUsed = wk.bestUsed[:0]
		lo, hi := s.userStart[u], s.userStart[u+1]
		for ; k < len(steps) && s.user[steps[k]] == u; k++ {
			g := steps[k]
			wg := s.sqrtW[g]
			for q := g + 1; q < hi && q-g <= maxDist; q++ {
				if s.first[q]-s.last[g] > window {
					break
				}
				wk.offer(s.item[q], i, wg*s.sqrtW[q]*decay[q-g])
			}
			for q := g - 1; q >= lo && g-q <= maxDist; q-- {
				if s.first[g]-s.last[q] > window {
					break
				}
				wk.offer(s.item[q], i, wg*s.sqrtW[q]*decay[g-q])
			}
		}
		for _, j := range wk.bestUsed {
			if wk.accMark[j] != wk.itemMark {
				wk.accMark[j] = wk.itemMark
				wk.acc[j] = 0
				wk.accUsed = append(wk.accUsed, j)
			}
			wk.acc[j] += float64(wk.best[j])
		}
	}
	if len(wk.accUsed) == 0 {
		return nil
	}
	h := topk.New(wk.top, keep)
	for _, j := range wk.accUsed {
		score := float32(wk.acc[j] / math.Sqrt(pop[i]*pop[j]))
		// Underflow to 0 is no neighbour: Load accepts only weights > 0.
		if score > 0 && !math.IsInf(float64(score), 0) {
			h.Push(topk.Hit{ID: j, Score: score})
		}
	}
	sorted := h.Sorted()
	wk.top = sorted[:0]
	return slices.Clone(sorted)
}

// offer records value v for the pair of the item in hand and j, keeping
// the user's best.
func (wk *worker) offer(j, i int32, v float32) {
	if j == i {
		return
	}
	if wk.bestMark[j] != wk.userMark {
		wk.bestMark[j] = wk.userMark
		wk.best[j] = v
		wk.bestUsed = append(wk.bestUsed, j)
		return
	}
	wk.best[j] = max(wk.best[j], v)
}
