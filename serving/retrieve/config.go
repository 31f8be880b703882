package retrieve

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// MaxSources is the most sources one Retriever runs: Candidate.Sources has
// a bit per source.
const MaxSources = 16

// MaxK bounds a source's quota: a request ranks a few hundred candidates,
// and a quota in the millions is a unit mistake that would size buffers by
// it.
const MaxK = 1 << 16

// Defaults of Config.
const (
	DefaultTotal            = 500
	DefaultMultiSourceBonus = 0.1
)

// SourceConfig is one source of a Retriever and its share of the work.
type SourceConfig struct {
	// Source is the source; required.
	Source Source
	// Name overrides Source.Name() in stats, metrics and
	// Retriever.SourceNames, for a source type configured twice (two ANN
	// indexes); empty means Source.Name(). Names must be distinct.
	Name string
	// K is the quota: the most hits the source is asked for; required,
	// 1..MaxK.
	K int
	// Timeout is the source's own deadline, counted from the start of
	// Retrieve; the caller's context deadline applies too, whichever comes
	// first. 0 means the caller's deadline alone.
	Timeout time.Duration
	// Weight multiplies the source's normalised scores in the merge, to
	// trust one source over another; 0 means 1.
	Weight float32
	// Inline runs the source on the calling goroutine once the others are
	// started, which saves a goroutine hand-off. Retrieve cannot walk away
	// from an inline source: it waits for its answer whatever the deadline
	// (and drops the answer if it is late), so mark only sources that
	// cannot block: the in-memory ones of this package, not one that does
	// I/O or takes locks. BenchmarkRetrieve (ANN 200 of 50,000 and three
	// catalogue sources on 2 cores of a shared, noisy machine) measured
	// 0.55 to 0.72 ms a call whatever the placement, the placements no
	// further apart than runs were: the ANN search is nine tenths of the
	// work and the other three take 10 µs together, so running them in
	// parallel saves little, while a hand-off may have to wake an idle
	// core. With more requests in flight than cores every placement costs
	// the same, about 0.54 ms of CPU a call. Keeping ANN on a goroutine
	// keeps it droppable.
	Inline bool
}

// Config configures a Retriever. Zero values mean the documented defaults.
type Config struct {
	// Sources are asked in parallel; 1..MaxSources. Their order is the bit
	// order of Candidate.Sources and the order their scores are summed in.
	Sources []SourceConfig
	// Total caps the merged candidates; 0 means 500.
	Total int
	// MultiSourceBonus is added to a candidate's merged score for every
	// source beyond the first that proposed it: agreement between
	// independent sources is evidence the ranker should see first. 0
	// means 0.1 (a tenth of a top hit's normalised score); a negative
	// value means no bonus.
	MultiSourceBonus float32
}

// withDefaults returns c with zero values replaced by the defaults.
func (c Config) withDefaults() Config {
	if c.Total == 0 {
		c.Total = DefaultTotal
	}
	switch {
	case c.MultiSourceBonus == 0:
		c.MultiSourceBonus = DefaultMultiSourceBonus
	case c.MultiSourceBonus < 0:
		c.MultiSourceBonus = 0
	}
	c.Sources = append([]SourceConfig(nil), c.Sources...)
	for i := range c.Sources {
		s := &c.Sources[i]
		if s.Name == "" && s.Source != nil {
			s.Name = s.Source.Name()
		}
		if s.Weight == 0 {
			s.Weight = 1
		}
	}
	return c
}

// Validate reports every configuration value out of range, after defaults
// are applied, each naming its key.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("retrieve: "+format, args...)) }
	if n := len(c.Sources); n == 0 || n > MaxSources {
		bad("sources: %d configured, want 1..%d", n, MaxSources)
	}
	if c.Total < 0 {
		bad("total: %d is negative; 0 means %d", c.Total, DefaultTotal)
	}
	if !finite(c.MultiSourceBonus) {
		bad("multi_source_bonus: %v is not a finite number", c.MultiSourceBonus)
	}
	names := make(map[string]int, len(c.Sources))
	for i, s := range c.Sources {
		if s.Source == nil {
			bad("sources[%d].source: missing", i)
			continue
		}
		if s.Name == "" {
			bad("sources[%d].name: empty, and the source's Name() is empty too", i)
		} else if j, dup := names[s.Name]; dup {
			bad("sources[%d].name: %q is also the name of sources[%d]; set Name on one of them", i, s.Name, j)
		} else {
			names[s.Name] = i
		}
		if s.K < 1 || s.K > MaxK {
			bad("sources[%d].k: %d (source %q), want 1..%d", i, s.K, s.Name, MaxK)
		}
		if s.Timeout < 0 {
			bad("sources[%d].timeout: %v (source %q) is negative; 0 means the caller's deadline", i, s.Timeout, s.Name)
		}
		if !finite(s.Weight) || s.Weight < 0 {
			bad("sources[%d].weight: %v (source %q), want a finite number ≥ 0 (0 means 1)", i, s.Weight, s.Name)
		}
		if v, ok := s.Source.(interface{ Validate() error }); ok {
			if err := v.Validate(); err != nil {
				bad("sources[%d].source (%q): %v", i, s.Name, err)
			}
		}
	}
	return errors.Join(errs...)
}

func finite(v float32) bool {
	return !math.IsNaN(float64(v)) && !math.IsInf(float64(v), 0)
}
