// Package bench holds adaptrec's end-to-end benchmarks: each runs real
// components (started on free ports or already running), drives them with
// simulated load and returns what it measured, for `adaptrec bench` to print
// and for Go benchmarks to report. Every timing goal of the project is
// checked by one of them.
package bench

import (
	"math"
	"slices"
	"time"
)

// Latencies summarises a set of latencies by nearest-rank quantiles.
type Latencies struct {
	// N is the number of samples.
	N                  int
	P50, P95, P99, Max time.Duration
}

// Summarize sorts d in place and returns its quantiles; an empty d gives
// zeros.
func Summarize(d []time.Duration) Latencies {
	slices.Sort(d)
	return Latencies{
		N:   len(d),
		P50: Quantile(d, 0.50), P95: Quantile(d, 0.95), P99: Quantile(d, 0.99), Max: Quantile(d, 1),
	}
}

// Quantile returns the nearest-rank q-quantile (0 < q <= 1) of sorted: the
// smallest sample with at least q of the samples at or below it. It returns
// 0 for no samples.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// Millis converts d to milliseconds rounded to 0.1 ms, the unit of every
// latency in benchmark reports.
func Millis(d time.Duration) float64 { return Round(float64(d)/float64(time.Millisecond), 1) }

// Round rounds v to the given number of decimals, to keep reports readable.
func Round(v float64, decimals int) float64 {
	p := math.Pow(10, float64(decimals))
	return math.Round(v*p) / p
}
