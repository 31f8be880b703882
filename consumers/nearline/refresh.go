package nearline

import "hash/maphash"

// refreshSlots is how many phases a refresh period is divided into.
const refreshSlots = 64

var refreshSeed = maphash.MakeSeed()

// phases spreads the periodic rewrite of held values over a refresh
// period: each id belongs to one of refreshSlots slots (by hash), and
// advancing time marks the ids of every slot whose turn has come since the
// last advance. Every held id is so rewritten once per period, a
// 1/refreshSlots share at a time, instead of all of them at one instant
// (which stalled a busy partition for seconds at each minute boundary).
type phases struct {
	width int64 // slot width, ms
	sets  [refreshSlots]map[string]struct{}
	last  int64 // absolute slot (time / width) of the last advance; 0 before the first
}

func newPhases(period int64) *phases {
	p := &phases{width: max(period/refreshSlots, 1)}
	for i := range p.sets {
		p.sets[i] = map[string]struct{}{}
	}
	return p
}

func slotOf(id string) int { return int(maphash.String(refreshSeed, id) % refreshSlots) }

func (p *phases) add(id string)    { p.sets[slotOf(id)][id] = struct{}{} }
func (p *phases) remove(id string) { delete(p.sets[slotOf(id)], id) }

func (p *phases) len() int {
	n := 0
	for _, s := range p.sets {
		n += len(s)
	}
	return n
}

// advance marks the ids whose slots have come up between the last advance
// and t (unix ms). A jump of more than a period (the first call, a
// partition that was lagging or stalled) marks only the current slot:
// everything is then rewritten over the next period rather than at once.
func (p *phases) advance(t int64, mark func(id string)) {
	cur := t / p.width
	if cur <= p.last {
		return
	}
	from := p.last + 1
	if p.last == 0 || cur-p.last > refreshSlots {
		from = cur
	}
	p.last = cur
	for s := from; s <= cur; s++ {
		for id := range p.sets[s%refreshSlots] {
			mark(id)
		}
	}
}
