package serving

import (
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

// actionWeight is how much an action says about an item's appeal. Negative
// signals pull an item down; impressions carry no signal on their own.
var actionWeight = map[adaptrecv1.Action]float64{
	adaptrecv1.Action_ACTION_VIEW:        0.2,
	adaptrecv1.Action_ACTION_CLICK:       1,
	adaptrecv1.Action_ACTION_WATCH:       1,
	adaptrecv1.Action_ACTION_COMPLETE:    2,
	adaptrecv1.Action_ACTION_PURCHASE:    3,
	adaptrecv1.Action_ACTION_ADD_TO_CART: 1.5,
	adaptrecv1.Action_ACTION_LIKE:        1.5,
	adaptrecv1.Action_ACTION_SKIP:        -0.3,
}

func weightOf(in *adaptrecv1.UserInteractionEvent) float64 {
	if in.GetAction() == adaptrecv1.Action_ACTION_RATE {
		// Ratings on a 1-5 scale: 3 is neutral.
		return (in.GetValue() - 3) / 2
	}
	return actionWeight[in.GetAction()]
}

// Popularity ranks items by exponentially decayed engagement. It is the last
// model-free level of the degradation hierarchy: it needs nothing but the
// interactions flowing through Ingest. Reads are lock-free on a snapshot
// rebuilt at most every refresh interval.
type Popularity struct {
	halfLife time.Duration
	keep     int

	mu     sync.Mutex
	ref    time.Time // scores are stored relative to exp(age since ref)
	scores map[string]float64
	dirty  bool

	snap atomic.Pointer[[]ScoredItem]
}

// ScoredItem is an item with a score, best first in rankings.
type ScoredItem struct {
	ItemID string
	Score  float64
}

// NewPopularity returns a ranker whose scores halve every halfLife and which
// keeps the top keep items in its snapshot.
func NewPopularity(halfLife time.Duration, keep int) *Popularity {
	p := &Popularity{halfLife: halfLife, keep: keep, scores: make(map[string]float64)}
	p.snap.Store(&[]ScoredItem{})
	return p
}

// Observe adds the signal of one interaction that happened at t.
func (p *Popularity) Observe(in *adaptrecv1.UserInteractionEvent, t time.Time) {
	w := weightOf(in)
	if w == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ref.IsZero() {
		p.ref = t
	}
	// Growing weights instead of decaying all scores keeps Observe O(1);
	// rebase keeps the exponent bounded.
	exp := float64(t.Sub(p.ref)) / float64(p.halfLife)
	if exp > 30 {
		p.rebaseLocked(t)
		exp = 0
	}
	p.scores[in.GetItemId()] += w * math.Exp2(exp)
	p.dirty = true
}

func (p *Popularity) rebaseLocked(t time.Time) {
	f := math.Exp2(-float64(t.Sub(p.ref)) / float64(p.halfLife))
	for k, v := range p.scores {
		if v *= f; math.Abs(v) < 1e-6 {
			delete(p.scores, k)
		} else {
			p.scores[k] = v
		}
	}
	p.ref = t
}

// Refresh rebuilds the ranking snapshot if anything changed since the last one.
func (p *Popularity) Refresh() {
	p.mu.Lock()
	if !p.dirty {
		p.mu.Unlock()
		return
	}
	items := make([]ScoredItem, 0, len(p.scores))
	for id, s := range p.scores {
		if s > 0 {
			items = append(items, ScoredItem{id, s})
		}
	}
	p.dirty = false
	p.mu.Unlock()
	slices.SortFunc(items, func(a, b ScoredItem) int {
		if a.Score != b.Score {
			if a.Score > b.Score {
				return -1
			}
			return 1
		}
		if a.ItemID < b.ItemID {
			return -1
		}
		return 1
	})
	if len(items) > p.keep {
		items = items[:p.keep:p.keep]
	}
	// Normalise so the top item scores 1: scores are comparable across
	// snapshots and independent of the decay reference.
	if len(items) > 0 {
		top := items[0].Score
		for i := range items {
			items[i].Score /= top
		}
	}
	p.snap.Store(&items)
}

// Top appends up to n of the most popular items not in exclude to dst.
func (p *Popularity) Top(dst []ScoredItem, n int, exclude map[string]bool) []ScoredItem {
	for _, it := range *p.snap.Load() {
		if len(dst) >= n {
			break
		}
		if !exclude[it.ItemID] {
			dst = append(dst, it)
		}
	}
	return dst
}
