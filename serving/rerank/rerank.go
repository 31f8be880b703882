package rerank

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Item is one candidate as the ranker scored it.
type Item struct {
	ID       int32   // catalogue index
	Score    float32 // ranker score, higher is better
	Category int32   // < 0: unknown
	Creator  int32   // < 0: unknown
	Fresh    bool    // younger than the freshness horizon
	Promoted bool
	Flagged  bool
	Seen     bool // the user already saw or interacted with it
}

// Rule names one re-ranking rule, in explanations and in the rule label
// of adaptrec_rerank_actions_total.
type Rule uint8

// The rules, in the order they act.
const (
	RuleFlagged     Rule = iota // flagged items removed
	RuleSeen                    // seen items held back
	RulePromoted                // promoted items boosted and capped
	RuleCategoryCap             // items per category capped
	RuleCreatorCap              // items per creator capped
	RuleFreshMin                // a minimum of fresh items
	numRules
)

var ruleNames = [numRules]string{"flagged", "seen", "promoted", "category_cap", "creator_cap", "fresh_min"}

// String returns the rule's metric label.
func (r Rule) String() string {
	if r < numRules {
		return ruleNames[r]
	}
	return fmt.Sprintf("Rule(%d)", uint8(r))
}

// Rules is a set of rules, one bit each.
type Rules uint8

// Has reports whether r is in the set.
func (s Rules) Has(r Rule) bool { return s&(1<<r) != 0 }

// String lists the rules as their labels joined by "|", for logs.
func (s Rules) String() string {
	var b strings.Builder
	for r := range numRules {
		if s.Has(r) {
			if b.Len() > 0 {
				b.WriteByte('|')
			}
			b.WriteString(r.String())
		}
	}
	return b.String()
}

func ruleSet(r Rule) Rules { return 1 << r }

// Action is what a rule did to an item, the action label of
// adaptrec_rerank_actions_total.
type Action uint8

// The actions. Not every rule takes every action; validActions lists the
// pairs that occur.
const (
	// ActionRemoved: the item left the list or never entered it — a
	// flagged item, a seen item held back, a non-fresh item displaced by
	// a fresh one.
	ActionRemoved Action = iota
	// ActionSkipped: the greedy selection passed the item over because a
	// cap was full. An item blocked by two caps counts under both.
	ActionSkipped
	// ActionInserted: the item is in the list though a rule would have
	// kept it out (a relaxed cap, a seen item filling the end) or because
	// a rule put it there (the fresh minimum).
	ActionInserted
	// ActionBoosted: a promoted item returned with a boosted score.
	ActionBoosted
	// ActionShort: a fresh item missing from the minimum.
	ActionShort
	numActions
)

var actionNames = [numActions]string{"removed", "skipped", "inserted", "boosted", "short"}

// String returns the action's metric label.
func (a Action) String() string {
	if a < numActions {
		return actionNames[a]
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// validActions lists, per rule, the actions it takes; these are the label
// pairs Record exports from the start.
var validActions = [numRules][]Action{
	RuleFlagged:     {ActionRemoved},
	RuleSeen:        {ActionRemoved, ActionInserted},
	RulePromoted:    {ActionBoosted, ActionSkipped, ActionInserted},
	RuleCategoryCap: {ActionSkipped, ActionInserted},
	RuleCreatorCap:  {ActionSkipped, ActionInserted},
	RuleFreshMin:    {ActionInserted, ActionRemoved, ActionShort},
}

// Stats counts what each rule did in one Apply, or in many after Add.
type Stats struct {
	n [numRules][numActions]int64
}

// Count returns how many items rule r took action a on.
func (s *Stats) Count(r Rule, a Action) int64 {
	if r >= numRules || a >= numActions {
		return 0
	}
	return s.n[r][a]
}

// Add adds o's counts to s, so that many requests can be recorded at
// once.
func (s *Stats) Add(o *Stats) {
	for r := range s.n {
		for a := range s.n[r] {
			s.n[r][a] += o.n[r][a]
		}
	}
}

// Reset sets every count to zero.
func (s *Stats) Reset() { *s = Stats{} }

// Ranked is one item of the returned list.
type Ranked struct {
	Item Item
	// Score is the score the list is ordered by: the ranker's, boosted if
	// the item is promoted. Item.Score keeps the ranker's.
	Score float32
	// Rules are the rules that acted on the item: RulePromoted when its
	// score was boosted, RuleFreshMin when it replaced a non-fresh item,
	// and every rule in Relaxed.
	Rules Rules
	// Relaxed are the rules the item breaks to keep the list from coming
	// back short: RuleSeen for a seen item at the end, a cap rule for an
	// item beyond its category, creator or promotion cap.
	Relaxed Rules
}

// Result is the output of Apply and the working memory it reuses. The
// zero Result is ready to use; one Result must not be used by two calls
// at once, and Items is overwritten by the next call.
type Result struct {
	// Items is the list, best first. It is shorter than asked for only
	// when fewer unflagged candidates were given.
	Items []Ranked
	// Relaxed are the rules the list does not satisfy: caps relaxed or
	// seen items used to fill it, and RuleFreshMin when fewer than the
	// minimum of fresh items could be placed.
	Relaxed Rules
	// Stats counts what each rule did in this call.
	Stats Stats

	s scratch
}

// Reranker applies one Config. It is immutable and safe for concurrent
// use.
type Reranker struct {
	cfg      Config
	boost    float32 // 0: no boost
	maxPromo int32
	maxCat   int32
	maxCre   int32
	minFresh int
}

// New returns a Reranker for cfg, or cfg's Validate error.
func New(cfg Config) (*Reranker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Reranker{
		cfg:      cfg,
		maxPromo: int32(cfg.MaxPromoted),
		maxCat:   int32(cfg.MaxPerCategory),
		maxCre:   int32(cfg.MaxPerCreator),
		minFresh: cfg.MinFresh,
	}
	// A factor of exactly 1 changes no score, so no item is marked as
	// boosted.
	if cfg.PromotedBoost > 1 {
		r.boost = float32(cfg.PromotedBoost)
	}
	return r, nil
}

// Config returns the configuration r applies.
func (r *Reranker) Config() Config { return r.cfg }

// entry is a candidate in selection order: key orders by final score and
// then by smaller ID, idx (its position in the input) breaks the ties of
// duplicate IDs.
type entry struct {
	key uint64
	idx int32
}

// before reports whether a is selected before b.
func (a entry) before(b entry) bool {
	return a.key > b.key || a.key == b.key && a.idx < b.idx
}

// Sections of the list, in list order: the items that keep every cap,
// then the unseen items that relax one, then the seen items that keep the
// caps, then those that relax one.
const (
	secKept uint8 = iota
	secRelaxed
	secSeenKept
	secSeenRelaxed
)

type pick struct {
	entry
	section uint8
	rules   Rules
	relaxed Rules
}

type scratch struct {
	heap    []entry // the candidates of the tier being selected, a max-heap
	seen    []entry // held-back seen items, the second tier
	skipped []entry // passed over by a full cap, in selection order
	picks   []pick
	fresh   []entry // fresh candidates for the minimum, in selection order
	victims []entry // non-fresh items of the list, lowest placed first
	cats    counts
	cres    counts
	promo   int32
}

// Apply writes into res the best n items of items after the rules (n = 0
// means DefaultN). items is not modified. The only error is an n outside
// 0..MaxN, and it leaves res.Items empty, so a caller that drops the
// error serves nothing rather than the previous request's list.
func (r *Reranker) Apply(res *Result, items []Item, n int) error {
	res.Items = res.Items[:0]
	if n == 0 {
		n = DefaultN
	}
	if n < 0 || n > MaxN {
		return fmt.Errorf("rerank: n %d outside 1..%d (0 means %d)", n, MaxN, DefaultN)
	}
	if len(items) > math.MaxInt32 {
		return fmt.Errorf("rerank: %d candidates, at most %d", len(items), math.MaxInt32)
	}
	s := &res.s
	res.Stats.Reset()
	res.Relaxed = 0
	st := &res.Stats.n
	s.heap, s.seen, s.skipped, s.picks = s.heap[:0], s.seen[:0], s.skipped[:0], s.picks[:0]
	s.promo = 0
	if r.maxCat > 0 {
		s.cats.reset(n)
	}
	if r.maxCre > 0 {
		s.cres.reset(n)
	}

	freshLeft := 0 // fresh candidates of the unseen tier
	for i := range items {
		it := &items[i]
		if it.Flagged {
			st[RuleFlagged][ActionRemoved]++
			continue
		}
		e := entry{key: orderKey(r.final(it), it.ID), idx: int32(i)}
		if it.Seen && r.cfg.SuppressSeen {
			st[RuleSeen][ActionRemoved]++
			s.seen = append(s.seen, e)
			continue
		}
		if it.Fresh {
			freshLeft++
		}
		s.heap = append(s.heap, e)
	}

	heapify(s.heap)
	fillPos := r.fill(res, items, n, secKept)
	seenTier := false
	if len(s.picks) < n && len(s.seen) > 0 {
		// Every unseen candidate is in the list; only seen ones can fill it.
		seenTier = true
		s.heap, s.seen = s.seen, s.heap
		heapify(s.heap)
		r.fill(res, items, n, secSeenKept)
	}

	if r.minFresh > 0 {
		want := min(r.minFresh, len(s.picks))
		have := 0
		for _, p := range s.picks {
			if items[p.idx].Fresh {
				have++
			}
		}
		// With the seen tier started every fresh unseen item is already in
		// the list, and a seen one must not come in for freshness.
		if have < want && !seenTier {
			freshLeft -= have
			have += r.addFresh(res, items, want-have, freshLeft, fillPos)
		}
		if have < want {
			res.Relaxed |= ruleSet(RuleFreshMin)
			st[RuleFreshMin][ActionShort] += int64(want - have)
		}
	}

	if cap(res.Items) < len(s.picks) {
		res.Items = make([]Ranked, 0, n)
	}
	for _, p := range s.picks {
		it := &items[p.idx]
		rules := p.rules | p.relaxed
		if it.Promoted && r.boost != 0 {
			rules |= ruleSet(RulePromoted)
			st[RulePromoted][ActionBoosted]++
		}
		if p.relaxed.Has(RuleSeen) {
			st[RuleSeen][ActionInserted]++
		}
		// Computed from the items, not during selection, because a fresh
		// item may have displaced the one that broke a cap.
		res.Relaxed |= p.relaxed
		res.Items = append(res.Items, Ranked{Item: *it, Score: r.final(it), Rules: rules, Relaxed: p.relaxed})
	}
	return nil
}

// final returns the score the item is ordered by.
func (r *Reranker) final(it *Item) float32 {
	s := it.Score
	if it.Promoted && r.boost != 0 {
		if s >= 0 {
			s *= r.boost
		} else {
			s /= r.boost
		}
	}
	return s
}

// orderKey packs a score and an ID into a key that is larger for a higher
// score and, at equal scores, for a smaller ID. NaN sorts below every
// number, and -0 equals 0.
func orderKey(score float32, id int32) uint64 {
	var sk uint32
	if score == score {
		if score == 0 {
			score = 0 // -0 → +0
		}
		b := math.Float32bits(score)
		if b&(1<<31) != 0 {
			sk = ^b
		} else {
			sk = b | 1<<31
		}
		// -Inf maps to 0x007fffff, so 0 is free for NaN.
	}
	ik := ^(uint32(id) ^ 1<<31)
	return uint64(sk)<<32 | uint64(ik)
}

// blocked returns the caps the item would break if it joined the list
// now.
func (r *Reranker) blocked(s *scratch, it *Item) Rules {
	var b Rules
	if r.maxCat > 0 && it.Category >= 0 && s.cats.get(it.Category) >= r.maxCat {
		b |= ruleSet(RuleCategoryCap)
	}
	if r.maxCre > 0 && it.Creator >= 0 && s.cres.get(it.Creator) >= r.maxCre {
		b |= ruleSet(RuleCreatorCap)
	}
	if r.maxPromo > 0 && it.Promoted && s.promo >= r.maxPromo {
		b |= ruleSet(RulePromoted)
	}
	return b
}

// over returns the caps that the list, which holds the item, exceeds for
// it.
func (r *Reranker) over(s *scratch, it *Item) Rules {
	var b Rules
	if r.maxCat > 0 && it.Category >= 0 && s.cats.get(it.Category) > r.maxCat {
		b |= ruleSet(RuleCategoryCap)
	}
	if r.maxCre > 0 && it.Creator >= 0 && s.cres.get(it.Creator) > r.maxCre {
		b |= ruleSet(RuleCreatorCap)
	}
	if r.maxPromo > 0 && it.Promoted && s.promo > r.maxPromo {
		b |= ruleSet(RulePromoted)
	}
	return b
}

// count adds d to the item's category, creator and promotion counts.
func (r *Reranker) count(s *scratch, it *Item, d int32) {
	if r.maxCat > 0 && it.Category >= 0 {
		s.cats.add(it.Category, d)
	}
	if r.maxCre > 0 && it.Creator >= 0 {
		s.cres.add(it.Creator, d)
	}
	if it.Promoted {
		s.promo += d
	}
}

// fill selects from s.heap until the list holds n items: greedily in
// order, skipping items that would break a cap, and then, if that leaves
// the list short, from the skipped items in order, relaxing the caps.
// sec is the section of the greedy picks; the relaxed ones get the next.
// It returns how many skipped items it used; the rest, s.skipped[used:],
// are the best remaining candidates, all ahead of what is left in s.heap.
func (r *Reranker) fill(res *Result, items []Item, n int, sec uint8) int {
	s := &res.s
	st := &res.Stats.n
	var base Rules
	if sec >= secSeenKept {
		base = ruleSet(RuleSeen)
	}
	s.skipped = s.skipped[:0]
	for len(s.picks) < n && len(s.heap) > 0 {
		e := popHeap(&s.heap)
		it := &items[e.idx]
		if b := r.blocked(s, it); b != 0 {
			for rule := range numRules {
				if b.Has(rule) {
					st[rule][ActionSkipped]++
				}
			}
			s.skipped = append(s.skipped, e)
			continue
		}
		r.count(s, it, 1)
		s.picks = append(s.picks, pick{entry: e, section: sec, relaxed: base})
	}
	used := 0
	for len(s.picks) < n && used < len(s.skipped) {
		e := s.skipped[used]
		used++
		it := &items[e.idx]
		b := r.blocked(s, it)
		for rule := range numRules {
			if b.Has(rule) {
				st[rule][ActionInserted]++
			}
		}
		r.count(s, it, 1)
		s.picks = append(s.picks, pick{entry: e, section: sec + 1, relaxed: base | b})
	}
	return used
}

// addFresh replaces up to need non-fresh items of the list with fresh
// candidates, changing the bottom of the list before the top: the
// non-fresh items leave from the lowest placed up, each replaced by the
// best fresh candidate left that can take its place without adding to
// any cap's excess. An item no candidate can replace stays; the pass
// does not return to it after later swaps change the counts, which keeps
// the cost at (list × fresh candidates) checks at worst.
//
// The candidates are the fresh items among s.skipped[fillPos:] and
// s.heap; left is their number. It returns the number of items replaced.
func (r *Reranker) addFresh(res *Result, items []Item, need, left, fillPos int) int {
	s := &res.s
	st := &res.Stats.n
	// The skipped items precede everything in the heap, so only the
	// heap's share needs sorting; it is a few dozen items at most in
	// practice.
	s.fresh = s.fresh[:0]
	for _, e := range s.skipped[fillPos:] {
		if items[e.idx].Fresh {
			s.fresh = append(s.fresh, e)
		}
	}
	sorted := len(s.fresh)
	for _, e := range s.heap {
		if len(s.fresh) == left {
			break
		}
		if items[e.idx].Fresh {
			s.fresh = append(s.fresh, e)
		}
	}
	slices.SortFunc(s.fresh[sorted:], func(a, b entry) int {
		if a.before(b) {
			return -1
		}
		return 1 // entries are never equal: idx is unique
	})

	s.victims = s.victims[:0]
	for i := len(s.picks) - 1; i >= 0; i-- {
		if !items[s.picks[i].idx].Fresh {
			s.victims = append(s.victims, s.picks[i].entry)
		}
	}
	done := 0
	for _, ve := range s.victims {
		if done == need || len(s.fresh) == 0 {
			break
		}
		v := &items[ve.idx]
		c := -1
		for i, e := range s.fresh {
			if r.canReplace(s, &items[e.idx], v) {
				c = i
				break
			}
		}
		if c < 0 {
			continue
		}
		e := s.fresh[c]
		s.fresh = append(s.fresh[:c], s.fresh[c+1:]...)
		it := &items[e.idx]
		at := 0
		for s.picks[at].idx != ve.idx {
			at++
		}
		s.picks = append(s.picks[:at], s.picks[at+1:]...)
		r.count(s, v, -1)
		r.count(s, it, 1)
		// The newcomer belongs among the items that keep the caps, at its
		// score, unless it took the place of an item of its own category
		// or creator in a list already over that cap: then it is one of
		// the excess, and goes with the relaxed items.
		p := pick{entry: e, section: secKept, rules: ruleSet(RuleFreshMin)}
		if over := r.over(s, it); over != 0 {
			p.section, p.relaxed = secRelaxed, over
		}
		at = 0
		for at < len(s.picks) && (s.picks[at].section < p.section ||
			s.picks[at].section == p.section && s.picks[at].before(e)) {
			at++
		}
		s.picks = append(s.picks, pick{})
		copy(s.picks[at+1:], s.picks[at:])
		s.picks[at] = p
		st[RuleFreshMin][ActionInserted]++
		st[RuleFreshMin][ActionRemoved]++
		done++
	}
	return done
}

// canReplace reports whether the fresh item it can take the place of v
// without adding to any cap's excess. Replacing an item of the same
// category, creator or promotion leaves that count as it was, so it is
// allowed even where the count is at or over its cap.
func (r *Reranker) canReplace(s *scratch, it, v *Item) bool {
	if r.maxCat > 0 && it.Category >= 0 && v.Category != it.Category && s.cats.get(it.Category) >= r.maxCat {
		return false
	}
	if r.maxCre > 0 && it.Creator >= 0 && v.Creator != it.Creator && s.cres.get(it.Creator) >= r.maxCre {
		return false
	}
	if r.maxPromo > 0 && it.Promoted && !v.Promoted && s.promo >= r.maxPromo {
		return false
	}
	return true
}

// heapify makes h a heap with the first selected item on top.
func heapify(h []entry) {
	for i := len(h)/2 - 1; i >= 0; i-- {
		siftDown(h, i)
	}
}

func siftDown(h []entry, i int) {
	n := len(h)
	for {
		c := 2*i + 1
		if c >= n {
			return
		}
		if r := c + 1; r < n && h[r].before(h[c]) {
			c = r
		}
		if !h[c].before(h[i]) {
			return
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
}

func popHeap(h *[]entry) entry {
	old := *h
	top := old[0]
	last := len(old) - 1
	old[0] = old[last]
	*h = old[:last]
	siftDown(*h, 0)
	return top
}

// counts maps categories or creators (>= 0) to how many items of each
// the list holds: an open-addressing table cleared per call, so that
// counting costs no allocation and no map hashing.
type counts struct {
	keys  []uint32 // key+1; 0 marks an empty slot
	vals  []int32
	shift uint8
}

// reset empties the table for a list of n items. The list inserts at
// most n keys and the fresh minimum at most n more, so 4n slots keep the
// load at or under one half.
func (c *counts) reset(n int) {
	size, bits := 16, uint8(4)
	for size < 4*n {
		size <<= 1
		bits++
	}
	if cap(c.keys) < size {
		c.keys = make([]uint32, size)
		c.vals = make([]int32, size)
	}
	c.keys, c.vals = c.keys[:size], c.vals[:size]
	clear(c.keys)
	clear(c.vals)
	c.shift = 32 - bits
}

func (c *counts) slot(k int32) uint32 {
	return (uint32(k) * 0x9e3779b1) >> c.shift
}

func (c *counts) get(k int32) int32 {
	mask := uint32(len(c.keys) - 1)
	want := uint32(k) + 1
	for i := c.slot(k); ; i = (i + 1) & mask {
		switch c.keys[i] {
		case want:
			return c.vals[i]
		case 0:
			return 0
		}
	}
}

func (c *counts) add(k int32, d int32) {
	mask := uint32(len(c.keys) - 1)
	want := uint32(k) + 1
	for i := c.slot(k); ; i = (i + 1) & mask {
		switch c.keys[i] {
		case want:
			c.vals[i] += d
			return
		case 0:
			c.keys[i] = want
			c.vals[i] = d
			return
		}
	}
}
