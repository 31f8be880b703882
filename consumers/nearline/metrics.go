package nearline

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	eventsTotal = promauto.NewCounter(prometheus.CounterOpts{
		Name: "adaptrec_nearline_events_applied_total",
		Help: "Interaction events applied to the nearline state and committed.",
	})
	duplicatesTotal = promauto.NewCounter(prometheus.CounterOpts{
		Name: "adaptrec_nearline_duplicates_dropped_total",
		Help: "Events dropped because their event id was already in the partition's dedupe window.",
	})
	deadLetteredTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_nearline_dead_lettered_total",
		Help: "Malformed messages sent to the dead-letter topic, by reason code.",
	}, []string{"reason"})
	lateTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_nearline_late_events_total",
		Help: "Item events behind the partition's watermark: counted (their bucket was still held) or dropped.",
	}, []string{"outcome"})
	flushErrorsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_nearline_flush_errors_total",
		Help: "Failed attempts to write a batch's values or commit it (retried), by step.",
	}, []string{"step"})
)
