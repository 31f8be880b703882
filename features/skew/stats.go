// Package skew compares the feature values of a training set with the values
// served online, as recorded in archived PredictionEvents, and flags the
// features whose distributions moved (training/serving skew).
//
// Features are compared one value column at a time: a float or int feature is
// one column named after it, a vector feature of dimension n is n columns
// named name[0] … name[n-1]. For each column a Profile keeps the count, mean,
// standard deviation, a bounded sample for quantiles and PSI, and the default
// rate: the share of values equal to the feature's declared default. A ranker
// row holds the default wherever a value was missing, so the default rate is
// the "null rate" of a column (a real value that happens to equal the default
// counts as well).
package skew

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"

	"github.com/adaptrec/adaptrec/features"
)

// DefaultSampleSize is the number of values per column a Profile keeps for
// quantiles and PSI when NewProfile is given 0.
const DefaultSampleSize = 10_000

// Column is one value column of a ranker row.
type Column struct {
	// Name is the feature name, or name[i] for component i of a vector.
	Name string `json:"name"`
	// Feature is the name of the feature the column belongs to.
	Feature string `json:"feature"`
	// Default is the column's value when the feature is missing.
	Default float64 `json:"default"`
}

// Columns expands a model schema into its value columns in row order,
// parsing each feature's canonical default.
func Columns(m features.ModelSchema) ([]Column, error) {
	var out []Column
	for _, f := range m.Features {
		t, err := features.ParseType(f.Type)
		if err != nil {
			return nil, fmt.Errorf("feature %s: %w", f.Name, err)
		}
		switch t.Kind {
		case features.KindFloat, features.KindInt:
			d, err := strconv.ParseFloat(f.Default, 64)
			if err != nil {
				return nil, fmt.Errorf("feature %s: default %q is not a number", f.Name, f.Default)
			}
			out = append(out, Column{Name: f.Name, Feature: f.Name, Default: float64(float32(d))})
		case features.KindVector:
			var d []float64
			if err := json.Unmarshal([]byte(f.Default), &d); err != nil || len(d) != t.Dim {
				return nil, fmt.Errorf("feature %s: default %q is not a vector of %d numbers", f.Name, f.Default, t.Dim)
			}
			for i, x := range d {
				out = append(out, Column{Name: fmt.Sprintf("%s[%d]", f.Name, i), Feature: f.Name, Default: float64(float32(x))})
			}
		default:
			return nil, fmt.Errorf("feature %s: a %s is not a ranker input", f.Name, f.Type)
		}
	}
	return out, nil
}

// Stats summarises one column's values.
type Stats struct {
	// Count is the number of values seen.
	Count int64 `json:"count"`
	// Mean and Std are over every value seen (population standard
	// deviation).
	Mean float64 `json:"mean"`
	Std  float64 `json:"std"`
	// P01 … P99 are quantiles of the sample (linear interpolation between
	// the closest ranks); exact while Count ≤ the sample size.
	P01 float64 `json:"p01"`
	P10 float64 `json:"p10"`
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	// DefaultRate is the share of values equal to the column's default.
	DefaultRate float64 `json:"default_rate"`
}

// accumulator gathers one column's values.
type accumulator struct {
	def      float64
	n        int64
	mean, m2 float64 // Welford
	defaults int64
	sample   []float64
	sorted   bool
}

// Profile accumulates the values of a set of columns. A Profile is not safe
// for concurrent use.
type Profile struct {
	cols  []Column
	index map[string]int
	accs  []accumulator
	size  int
	rng   *rand.Rand
}

// NewProfile returns an empty profile of cols keeping at most sampleSize
// values per column (DefaultSampleSize when 0) in a reservoir. The reservoir
// draws from a fixed seed, so the same values in the same order give the
// same profile.
func NewProfile(cols []Column, sampleSize int) (*Profile, error) {
	if sampleSize < 0 {
		return nil, fmt.Errorf("skew: sample size %d is negative", sampleSize)
	}
	if sampleSize == 0 {
		sampleSize = DefaultSampleSize
	}
	p := &Profile{cols: cols, index: make(map[string]int, len(cols)), accs: make([]accumulator, len(cols)),
		size: sampleSize, rng: rand.New(rand.NewPCG(1, 2))}
	for i, c := range cols {
		if _, dup := p.index[c.Name]; dup {
			return nil, fmt.Errorf("skew: column %s named twice", c.Name)
		}
		p.index[c.Name] = i
		p.accs[i].def = c.Default
	}
	return p, nil
}

// Columns returns the profile's columns.
func (p *Profile) Columns() []Column { return p.cols }

// Column returns the index of the named column, or false.
func (p *Profile) Column(name string) (int, bool) {
	i, ok := p.index[name]
	return i, ok
}

// Add records value v of column i (an index into Columns).
func (p *Profile) Add(i int, v float64) {
	a := &p.accs[i]
	a.n++
	d := v - a.mean
	a.mean += d / float64(a.n)
	a.m2 += d * (v - a.mean)
	if v == a.def {
		a.defaults++
	}
	a.sorted = false
	if len(a.sample) < p.size {
		a.sample = append(a.sample, v)
		return
	}
	// Algorithm R: the n-th value replaces a random slot with probability
	// size/n.
	if j := p.rng.Int64N(a.n); j < int64(p.size) {
		a.sample[j] = v
	}
}

// AddRow records one value per column, in column order.
func (p *Profile) AddRow(row []float32) error {
	if len(row) != len(p.cols) {
		return fmt.Errorf("skew: row has %d values, the profile %d columns", len(row), len(p.cols))
	}
	for i, v := range row {
		p.Add(i, float64(v))
	}
	return nil
}

func (a *accumulator) sortedSample() []float64 {
	if !a.sorted {
		slices.Sort(a.sample)
		a.sorted = true
	}
	return a.sample
}

// Stats returns column i's statistics; all zero when it has no values.
func (p *Profile) Stats(i int) Stats {
	a := &p.accs[i]
	if a.n == 0 {
		return Stats{}
	}
	s := a.sortedSample()
	return Stats{
		Count:       a.n,
		Mean:        a.mean,
		Std:         math.Sqrt(a.m2 / float64(a.n)),
		P01:         Quantile(s, 0.01),
		P10:         Quantile(s, 0.10),
		P50:         Quantile(s, 0.50),
		P90:         Quantile(s, 0.90),
		P99:         Quantile(s, 0.99),
		DefaultRate: float64(a.defaults) / float64(a.n),
	}
}

// Sample returns column i's sample, sorted. The caller must not modify it.
func (p *Profile) Sample(i int) []float64 { return p.accs[i].sortedSample() }

// Quantile returns the q-quantile (0 ≤ q ≤ 1) of sorted values, linearly
// interpolated between the closest ranks (position q·(n−1)); 0 for no
// values.
func Quantile(sorted []float64, q float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	pos := q * float64(n-1)
	lo := int(math.Floor(pos))
	if lo >= n-1 {
		return sorted[n-1]
	}
	if lo < 0 {
		return sorted[0]
	}
	frac := pos - float64(lo)
	return sorted[lo] + frac*(sorted[lo+1]-sorted[lo])
}

// psiFloor replaces an empty bin's share in PSI, which would otherwise be
// infinite.
const psiFloor = 1e-4

// PSI returns the population stability index of served against training
// (both sorted), over bins cut at the training deciles: Σ (s−t)·ln(s/t) over
// the bins' shares, an empty bin counting as a share of 0.0001. Repeated
// deciles (a feature that mostly holds one value) merge their bins. A value
// equal to a cut point falls into the bin below it. It returns 0 when either
// side has no values.
func PSI(training, served []float64) float64 {
	if len(training) == 0 || len(served) == 0 {
		return 0
	}
	var cuts []float64
	for d := 1; d <= 9; d++ {
		c := Quantile(training, float64(d)/10)
		if len(cuts) == 0 || c > cuts[len(cuts)-1] {
			cuts = append(cuts, c)
		}
	}
	t := binShares(training, cuts)
	s := binShares(served, cuts)
	psi := 0.0
	for i := range t {
		ti, si := max(t[i], psiFloor), max(s[i], psiFloor)
		if t[i] == 0 && s[i] == 0 {
			continue
		}
		psi += (si - ti) * math.Log(si/ti)
	}
	return psi
}

// binShares returns the share of sorted values in each bin (−∞, c0],
// (c0, c1], …, (c_last, ∞).
func binShares(sorted []float64, cuts []float64) []float64 {
	out := make([]float64, len(cuts)+1)
	prev := 0
	for i, c := range cuts {
		// First index with a value > c.
		j, _ := slices.BinarySearchFunc(sorted, c, func(v, c float64) int {
			if v <= c {
				return -1
			}
			return 1
		})
		out[i] = float64(j-prev) / float64(len(sorted))
		prev = j
	}
	out[len(cuts)] = float64(len(sorted)-prev) / float64(len(sorted))
	return out
}
