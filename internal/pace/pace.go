// Package pace spreads background CPU work over time, so that a refresh
// or a rebuild running next to latency-sensitive requests takes at most a
// share of one core instead of holding it for tens of milliseconds.
//
// On a machine with few cores a background loop that runs for 60 ms takes
// one core of two away from requests for all of it: the requests queue
// behind each other on the other core, and that second's tail latency
// grows by the length of the burst. runtime.Gosched does not help, since
// it only lets goroutines already waiting run once; a Pacer instead sleeps
// after every slice of work, so requests arriving during the work find a
// free core within a slice.
package pace

import "time"

// Pacer runs a loop at a duty cycle: Yield, called between units of work,
// sleeps for Rest once Slice has passed since the last rest. A nil Pacer
// never sleeps. A Pacer is not safe for concurrent use: each loop has its
// own.
type Pacer struct {
	slice, rest time.Duration
	from        time.Time
	rested      time.Duration
}

// DefaultSlice is the work between rests of New: short next to the
// millisecond budgets of the requests the work runs beside.
const DefaultSlice = 500 * time.Microsecond

// New returns a Pacer that works DefaultSlice at a time and keeps the
// loop's share of a core at duty; a duty outside (0, 1) gives nil, a
// Pacer that never rests.
func New(duty float64) *Pacer {
	if duty >= 1 || duty <= 0 {
		return nil
	}
	slice := DefaultSlice
	return &Pacer{slice: slice, rest: time.Duration(float64(slice) * (1 - duty) / duty), from: time.Now()}
}

// Yield rests when the loop has worked a slice since its last rest.
func (p *Pacer) Yield() {
	if p == nil {
		return
	}
	if time.Since(p.from) < p.slice {
		return
	}
	t := time.Now()
	time.Sleep(p.rest)
	now := time.Now()
	p.rested += now.Sub(t)
	p.from = now
}

// Rested is how long Yield has slept so far.
func (p *Pacer) Rested() time.Duration {
	if p == nil {
		return 0
	}
	return p.rested
}
