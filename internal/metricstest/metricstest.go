// Package metricstest reads Prometheus series from the default registry,
// where promauto registers them, for tests that check what code counted.
// (prometheus/testutil would need modules the repository does not require
// otherwise.)
package metricstest

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Value returns the value of the gauge or counter name whose labels are
// exactly labels, or the sample count of such a histogram; ok is false when
// no such series exists yet.
func Value(t testing.TB, name string, labels map[string]string) (v float64, ok bool) {
	t.Helper()
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue metrics
				}
			}
			return m.GetGauge().GetValue() + m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// Must is Value for a series that must exist: the test fails without it.
func Must(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	v, ok := Value(t, name, labels)
	if !ok {
		t.Fatalf("no metric %s%v", name, labels)
	}
	return v
}
