package archiver

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var (
	archivedTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_archiver_events_archived_total",
		Help: "Events written to the offline event log and committed, by topic.",
	}, []string{"topic"})
	duplicatesTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_archiver_duplicates_dropped_total",
		Help: "Events dropped because their event id was already in the dedupe window, by topic.",
	}, []string{"topic"})
	replayedTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_archiver_replayed_skipped_total",
		Help: "Messages skipped because events replay re-published them from the archive, by topic.",
	}, []string{"topic"})
	deadLetteredTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_archiver_dead_lettered_total",
		Help: "Malformed messages sent to the dead-letter topic, by origin topic and reason code.",
	}, []string{"topic", "reason"})
	objectsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_archiver_objects_written_total",
		Help: "Parquet objects written, by topic.",
	}, []string{"topic"})
	objectBytesTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_archiver_object_bytes_written_total",
		Help: "Bytes of Parquet objects written, by topic.",
	}, []string{"topic"})
	batchesRedoneTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_archiver_batches_redone_total",
		Help: "Uncommitted batches rewritten after a crash or rebalance, by topic.",
	}, []string{"topic"})
	flushErrorsTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_archiver_flush_errors_total",
		Help: "Failed attempts to write or commit a batch (retried), by topic and step.",
	}, []string{"topic", "step"})
	flushSeconds = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "adaptrec_archiver_flush_duration_seconds",
		Help:    "Time to make one batch durable: encode, state, objects, dead letters, commit.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
	}, []string{"topic"})
	durableLatency = promauto.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "adaptrec_archiver_durable_latency_seconds",
		Help:    "Event time to durable in the offline store (objects written and offset committed), per event.",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300, 1800, 3600},
	}, []string{"topic"})
	consumerLag = promauto.NewGaugeVec(prometheus.GaugeOpts{
		Name: "adaptrec_archiver_consumer_lag",
		Help: "Messages between the last committed offset and the partition's high watermark.",
	}, []string{"topic", "partition"})
	assignedPartitions = promauto.NewGauge(prometheus.GaugeOpts{
		Name: "adaptrec_archiver_assigned_partitions",
		Help: "Partitions this instance archives in the current consumer group generation.",
	})
)
