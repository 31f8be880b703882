package online

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	servedTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_features_served_values_total",
		Help: "Feature values assembled, by storage group, lane and source (batch, nearline, a fallback, or a default and why).",
	}, []string{"group", "lane", "source"})
	assembleSeconds = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "adaptrec_features_assemble_seconds",
		Help:    "Time to assemble the features of one user and its candidate items.",
		Buckets: []float64{0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.025},
	})
	degradedTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_features_degraded_total",
		Help: "Assemble calls whose user features fell back to defaults because Redis failed, timed out or the breaker was open, by reason.",
	}, []string{"reason"})
	snapshotLoadsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_features_snapshot_switches_total",
		Help: "Batch snapshot versions the store switched to, by group and outcome (ok, error).",
	}, []string{"group", "outcome"})
	snapshotAge = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "adaptrec_features_snapshot_as_of_seconds",
		Help: "Data cutoff (Unix seconds) of the batch snapshot each group serves.",
	}, []string{"group"})
	nearlineRefreshSeconds = promauto.NewHistogram(prometheus.HistogramOpts{
		Name:    "adaptrec_features_item_nearline_refresh_seconds",
		Help:    "Time to refresh the item nearline caches from Redis.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 12),
	})
	nearlineRefreshedTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_features_item_nearline_refreshed_items_total",
		Help: "Items whose nearline values were re-read by refreshes, by group.",
	}, []string{"group"})
	refreshErrorsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_features_refresh_errors_total",
		Help: "Failed background refreshes, by kind (pointer, nearline).",
	}, []string{"kind"})
	corruptValuesTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_features_corrupt_values_total",
		Help: "Stored values that could not be decoded and were read as defaults, by group.",
	}, []string{"group"})
)

// groupCounters are a group's served counters, resolved once.
type groupCounters [numSources]prometheus.Counter

func newGroupCounters(g *groupPlan) *groupCounters {
	var c groupCounters
	for s := range numSources {
		c[s] = servedTotal.WithLabelValues(g.name, g.lane.String(), s.String())
	}
	return &c
}
