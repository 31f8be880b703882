package batch

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/adaptrec/adaptrec/features/snapshot"
)

// ValidationOptions bound what a new snapshot may look like before it can
// become current. Zero values mean the documented defaults; a negative
// value disables a check.
type ValidationOptions struct {
	// MinCoverage is the least share of active entities (an event in the
	// 30-day window) that must have a row; default 1.
	MinCoverage float64
	// MaxRowDrop is the largest relative fall in rows against the previous
	// snapshot (0.5: at least half as many rows); default 0.5.
	MaxRowDrop float64
	// MaxMeanShift bounds |mean − previous mean| in previous standard
	// deviations, per computed feature; default 1.
	MaxMeanShift float64
	// MaxMeanRatio bounds the ratio of a feature's mean to its previous mean
	// (either way), for features whose previous mean is not 0; default 3.
	MaxMeanRatio float64
	// MaxDefaultRateRise bounds how much the share of rows holding a
	// feature's default may grow (a broken join makes everything default);
	// default 0.25.
	MaxDefaultRateRise float64
	// MinDriftRows is the least rows both snapshots need before the drift
	// checks apply (small samples move a lot); default 100.
	MinDriftRows int64
}

func (o ValidationOptions) withDefaults() ValidationOptions {
	def := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.MinCoverage, 1)
	def(&o.MaxRowDrop, 0.5)
	def(&o.MaxMeanShift, 1)
	def(&o.MaxMeanRatio, 3)
	def(&o.MaxDefaultRateRise, 0.25)
	if o.MinDriftRows == 0 {
		o.MinDriftRows = 100
	}
	return o
}

// Check names a validation check.
type Check string

// The checks Validate runs.
const (
	CheckCoverage Check = "coverage" // active entities have rows
	CheckRows     Check = "rows"     // row count vs the previous snapshot
	CheckFinite   Check = "finite"   // no NaN or infinity
	CheckRange    Check = "range"    // values within the feature's bounds
	CheckDrift    Check = "drift"    // mean vs the previous snapshot
	CheckDefaults Check = "defaults" // default rate vs the previous snapshot
)

// Failure is one failed check.
type Failure struct {
	Check Check `json:"check"`
	// Feature is the feature concerned; empty for whole-snapshot checks.
	Feature string `json:"feature,omitempty"`
	Detail  string `json:"detail"`
}

// String reads "check: feature: detail".
func (f Failure) String() string {
	if f.Feature == "" {
		return fmt.Sprintf("%s: %s", f.Check, f.Detail)
	}
	return fmt.Sprintf("%s: %s: %s", f.Check, f.Feature, f.Detail)
}

// ValidationError lists every check a snapshot failed.
type ValidationError struct {
	Group, Version string
	Failures       []Failure
}

// Error names the snapshot and every failed check.
func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Failures))
	for i, f := range e.Failures {
		parts[i] = f.String()
	}
	return fmt.Sprintf("snapshot %s/%s failed validation: %s", e.Group, e.Version, strings.Join(parts, "; "))
}

// Validate checks a written snapshot (its manifest m, computed as g) before
// it may become current: coverage of the active entities, finite values,
// values within each feature's bounds (rates and shares in [0, 1], counts
// and sums not negative), and, against prev (the snapshot it would replace;
// nil for the first one), the row count and each feature's mean and
// default rate. It returns a *ValidationError naming every failed check,
// or nil.
func Validate(g *GroupData, m *snapshot.Manifest, prev *snapshot.Manifest, opts ValidationOptions) error {
	o := opts.withDefaults()
	var fails []Failure
	add := func(c Check, feature, format string, args ...any) {
		fails = append(fails, Failure{Check: c, Feature: feature, Detail: fmt.Sprintf(format, args...)})
	}

	if o.MinCoverage > 0 && len(g.Active) > 0 {
		ids := make(map[string]struct{}, len(g.Rows))
		for i := range g.Rows {
			ids[g.Rows[i].EntityID] = struct{}{}
		}
		var missing []string
		for _, id := range g.Active {
			if _, ok := ids[id]; !ok {
				missing = append(missing, id)
			}
		}
		if cov := 1 - float64(len(missing))/float64(len(g.Active)); cov < o.MinCoverage {
			add(CheckCoverage, "", "%d of %d active %s entities have no row (coverage %.4f < %.4f), e.g. %q",
				len(missing), len(g.Active), g.Entity, cov, o.MinCoverage, printable(missing[0]))
		}
	}
	if prev != nil && o.MaxRowDrop > 0 && prev.Rows > 0 {
		if float64(m.Rows) < (1-o.MaxRowDrop)*float64(prev.Rows) {
			add(CheckRows, "", "%d rows, previous snapshot %s had %d (more than %.0f%% fewer)", m.Rows, prev.Version, prev.Rows, 100*o.MaxRowDrop)
		}
	}

	names := slices.Sorted(maps.Keys(m.Stats))
	for _, name := range names {
		s := m.Stats[name]
		if s.NaN > 0 || s.Inf > 0 {
			add(CheckFinite, name, "%d NaN and %d infinite values", s.NaN, s.Inf)
		}
		if b, ok := g.Bounds[name]; ok && s.Count > s.NaN+s.Inf {
			if s.Min < b.Min || s.Max > b.Max {
				add(CheckRange, name, "values span [%g, %g], outside [%g, %g]", s.Min, s.Max, b.Min, b.Max)
			}
		}
		if prev == nil || s.NotComputed != "" {
			continue
		}
		ps, ok := prev.Stats[name]
		if !ok || ps.NotComputed != "" || m.Rows < o.MinDriftRows || prev.Rows < o.MinDriftRows {
			continue
		}
		if o.MaxDefaultRateRise > 0 && s.DefaultRate-ps.DefaultRate > o.MaxDefaultRateRise {
			add(CheckDefaults, name, "%.1f%% of rows hold the default, %.1f%% in %s", 100*s.DefaultRate, 100*ps.DefaultRate, prev.Version)
		}
		shift := math.Abs(s.Mean - ps.Mean)
		if o.MaxMeanShift > 0 && ps.Std > 0 && shift > o.MaxMeanShift*ps.Std {
			add(CheckDrift, name, "mean %.6g moved %.2f standard deviations from %.6g in %s (bound %g)", s.Mean, shift/ps.Std, ps.Mean, prev.Version, o.MaxMeanShift)
		} else if o.MaxMeanRatio > 0 && ps.Mean != 0 {
			r := s.Mean / ps.Mean
			if r > o.MaxMeanRatio || r < 1/o.MaxMeanRatio {
				add(CheckDrift, name, "mean %.6g is %.3g× the %.6g of %s (bound %g×)", s.Mean, r, ps.Mean, prev.Version, o.MaxMeanRatio)
			}
		}
	}
	if len(fails) == 0 {
		return nil
	}
	return &ValidationError{Group: m.Group, Version: m.Version, Failures: fails}
}

// printable shows a pair id with a visible separator.
func printable(id string) string { return strings.ReplaceAll(id, snapshot.PairSeparator, "×") }
