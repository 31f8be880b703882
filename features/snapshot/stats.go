package snapshot

import (
	"math"
	"slices"

	"github.com/adaptrec/adaptrec/features"
)

// maxSample bounds the values kept per feature for quantiles.
const maxSample = 20_000

// accumulator gathers one feature's statistics.
type accumulator struct {
	n, nan, inf int64
	mean, m2    float64 // Welford
	min, max    float64
	defaults    int64
	sample      []float64
	seen        int64  // finite values offered to the sample
	rng         uint64 // deterministic reservoir sampling
}

func newAccumulator(seed uint64) *accumulator {
	return &accumulator{min: math.Inf(1), max: math.Inf(-1), rng: seed*0x9e3779b97f4a7c15 + 1}
}

func (a *accumulator) add(v float64) {
	a.n++
	switch {
	case math.IsNaN(v):
		a.nan++
		return
	case math.IsInf(v, 0):
		a.inf++
		return
	}
	k := float64(a.n - a.nan - a.inf)
	d := v - a.mean
	a.mean += d / k
	a.m2 += d * (v - a.mean)
	a.min = min(a.min, v)
	a.max = max(a.max, v)
	a.seen++
	if len(a.sample) < maxSample {
		a.sample = append(a.sample, v)
		return
	}
	// Reservoir sampling (algorithm R) with a xorshift generator: the same
	// rows always give the same sample.
	a.rng ^= a.rng << 13
	a.rng ^= a.rng >> 7
	a.rng ^= a.rng << 17
	if j := a.rng % uint64(a.seen); j < maxSample {
		a.sample[j] = v
	}
}

func (a *accumulator) stats(rows int64) FeatureStats {
	s := FeatureStats{Count: a.n, NaN: a.nan, Inf: a.inf}
	if rows > 0 {
		s.DefaultRate = float64(a.defaults) / float64(rows)
	}
	if k := a.n - a.nan - a.inf; k > 0 {
		s.Mean, s.Min, s.Max = a.mean, a.min, a.max
		s.Std = math.Sqrt(a.m2 / float64(k))
		slices.Sort(a.sample)
		s.Quantiles = make([]float64, len(QuantileLevels))
		for i, q := range QuantileLevels {
			s.Quantiles[i] = a.sample[int(math.Round(q*float64(len(a.sample)-1)))]
		}
	}
	return s
}

// computeStats summarises every feature of a group's rows.
func computeStats(fs *features.FeatureSet, names, maps []string, width int, rows []Row, notComputed map[string]string) map[string]FeatureStats {
	type col struct {
		name     string
		off, w   int
		def      []float64
		acc      *accumulator
		isVector bool
	}
	cols := make([]col, 0, len(names))
	off := 0
	for i, name := range names {
		f, _ := fs.Lookup(name)
		c := col{name: name, off: off, w: f.Type.Width(), acc: newAccumulator(uint64(i + 1))}
		c.def = defaultValues(f)
		off += c.w
		cols = append(cols, c)
	}
	mapAcc := make([]*accumulator, len(maps))
	for i := range maps {
		mapAcc[i] = newAccumulator(uint64(len(names) + i + 1))
	}
	for ri := range rows {
		r := &rows[ri]
		for ci := range cols {
			c := &cols[ci]
			vals := r.Values[c.off : c.off+c.w]
			isDefault := true
			for j, v := range vals {
				c.acc.add(v)
				// Defaults are compared as the model reads them (float32).
				if float32(v) != float32(c.def[j]) {
					isDefault = false
				}
			}
			if isDefault {
				c.acc.defaults++
			}
		}
		for mi, acc := range mapAcc {
			var m map[string]float64
			if r.Maps != nil {
				m = r.Maps[mi]
			}
			if len(m) == 0 {
				acc.defaults++
			}
			for _, v := range m {
				acc.add(v)
			}
		}
	}
	out := make(map[string]FeatureStats, len(names)+len(maps))
	for _, c := range cols {
		s := c.acc.stats(int64(len(rows)))
		s.NotComputed = notComputed[c.name]
		out[c.name] = s
	}
	for i, name := range maps {
		s := mapAcc[i].stats(int64(len(rows)))
		s.NotComputed = notComputed[name]
		out[name] = s
	}
	return out
}

// defaultValues returns a fixed-width feature's default as snapshot values.
func defaultValues(f *features.Feature) []float64 {
	switch f.Type.Kind {
	case features.KindFloat:
		return []float64{float64(f.Default.Float)}
	case features.KindInt:
		return []float64{float64(f.Default.Int)}
	case features.KindVector:
		out := make([]float64, len(f.Default.Vector))
		for i, v := range f.Default.Vector {
			out[i] = float64(v)
		}
		return out
	}
	return nil
}

// DefaultValues returns the values of a fixed-width feature's default, as a
// snapshot row holds them (an int as a double, a vector expanded); nil for
// maps and lists.
func DefaultValues(f *features.Feature) []float64 { return defaultValues(f) }
