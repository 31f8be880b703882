package sim

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// streamShift draws the tastes of ShiftTastes, apart from the streams the
// world was built with (rand.go), so shifting a world changes nothing else.
const streamShift uint64 = 0x5348494654 // "SHIFT"

// ShiftTastes gives a share of the world's users a new taste from s.At on,
// like PopulationConfig.Shift, but on a world that already exists: the
// users, their initial and drifted tastes and everything generated from
// them stay as they were, and the new tastes are drawn from a random stream
// of their own. It is how a running simulation (the live users of a world
// whose history was generated without a shift) makes its users change their
// minds at a chosen moment, so that a model trained before it loses
// accuracy and a retrain recovers it.
//
// Call it before the world is used concurrently (e.g. before RunLive);
// a second call replaces the first shift.
func (w *World) ShiftTastes(s Shift) error {
	if s.At.IsZero() {
		return errors.New("shift tastes: the shift time is required")
	}
	s.Share = share(s.Share, 0.5)
	s.Strength = share(s.Strength, 0.8)
	if s.Share > 1 || s.Strength > 1 {
		return fmt.Errorf("shift tastes: share %g and strength %g must be in [0, 1]", s.Share, s.Strength)
	}
	p, cat := w.Users, w.Catalogue
	if cat.Dim != p.dim || len(cat.Categories) == 0 {
		return fmt.Errorf("shift tastes: the catalogue (dim %d, %d categories) does not match the users (dim %d)", cat.Dim, len(cat.Categories), p.dim)
	}
	catWeights := make([]float64, len(cat.Categories))
	for i := range catWeights {
		catWeights[i] = float64(len(cat.byCategory[i])) + 1
	}
	catAlias := newAlias(catWeights)
	r := newRNG(mix(w.Seed, streamShift, uint64(s.At.UnixNano())))
	dim := p.dim
	prefs := make([]float32, len(p.Users)*dim)
	for i := range p.Users {
		u := &p.Users[i]
		u.Shifted, u.pref2 = false, nil
		if !r.bernoulli(s.Share) {
			continue
		}
		dst := prefs[i*dim : (i+1)*dim : (i+1)*dim]
		// Two categories the user did not favour, as PopulationConfig.Shift
		// draws them.
		for range 2 {
			c := int32(catAlias.sample(&r))
			for range 16 {
				if !slices.Contains(u.favourites, c) {
					break
				}
				c = int32(catAlias.sample(&r))
			}
			wt := float32(r.exp(1))
			for j, x := range cat.Categories[c].Centroid {
				dst[j] += wt * x
			}
		}
		normalize(dst)
		for j := range dst {
			dst[j] += float32(0.35 * r.norm() / math.Sqrt(float64(dim)))
		}
		normalize(dst)
		u.Shifted, u.pref2 = true, dst
	}
	p.shiftAt = s.At.Unix()
	p.strength = float32(s.Strength)
	return nil
}

// ShiftedShare returns the share of users under a shift of taste.
func (p *Population) ShiftedShare() float64 {
	if len(p.Users) == 0 {
		return 0
	}
	n := 0
	for i := range p.Users {
		if p.Users[i].Shifted {
			n++
		}
	}
	return float64(n) / float64(len(p.Users))
}

// ShiftAt returns when the population's tastes shift (the zero time for
// never).
func (p *Population) ShiftAt() time.Time {
	if p.shiftAt == math.MaxInt64 {
		return time.Time{}
	}
	return time.Unix(p.shiftAt, 0).UTC()
}
