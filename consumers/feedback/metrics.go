package feedback

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	onlineCTR = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "adaptrec_feedback_online_ctr",
		Help: "CTR (clicks / served items) of the last window emitted per model version and arm.",
	}, []string{"model_version", "arm"})
	joinedTotal = promauto.NewCounter(prometheus.CounterOpts{
		Name: "adaptrec_feedback_interactions_joined_total",
		Help: "Interactions credited to the served prediction of their request, in a window not emitted yet.",
	})
	unmatchedTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_feedback_interactions_unmatched_total",
		Help: "Interactions not credited to any prediction, by reason: no_request_id, no_prediction, outside_attribution_window, item_not_served.",
	}, []string{"reason"})
	lateTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_feedback_late_total",
		Help: "Events read after the window they belong to was emitted, so not counted in it, by kind (interaction, prediction).",
	}, []string{"kind"})
	predictionsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_feedback_predictions_total",
		Help: "Prediction events read, by kind: served, or shadow (skipped: never shown).",
	}, []string{"kind"})
	emittedTotal = promauto.NewCounter(prometheus.CounterOpts{
		Name: "adaptrec_feedback_accuracy_events_emitted_total",
		Help: "ModelAccuracyEvents acknowledged by the brokers (a window emitted again after a restart counts again).",
	})
	deadLetteredTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_feedback_dead_lettered_total",
		Help: "Malformed messages sent to the dead-letter topic, by reason code.",
	}, []string{"reason"})
	duplicatesTotal = promauto.NewCounter(prometheus.CounterOpts{
		Name: "adaptrec_feedback_duplicates_dropped_total",
		Help: "Duplicates dropped: interactions whose event id was in the partition's dedupe window, served predictions whose request id was read before.",
	})
	watermarkLag = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "adaptrec_feedback_watermark_lag_seconds",
		Help: "Wall clock minus the consumer's stream time (the slowest partition's progress); windows are emitted emit_delay after the stream time passes their end.",
	})
	flushErrorsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_feedback_flush_errors_total",
		Help: "Failed attempts to publish dead letters or accuracy events, or to commit offsets (retried), by step.",
	}, []string{"step"})
)
