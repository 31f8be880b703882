package activities

import (
	"context"
	"time"

	"github.com/adaptrec/adaptrec/consumers/feedback"
	"github.com/adaptrec/adaptrec/internal/config"
)

// FeedbackReader reads the feedback loop's topics (consumers/feedback) on
// Kafka: the OnlineMetrics of a worker.
type FeedbackReader struct {
	Kafka config.Kafka
}

var _ OnlineMetrics = FeedbackReader{}

// ShadowReport reads feedback.ReadShadowReport.
func (f FeedbackReader) ShadowReport(ctx context.Context, version string, from, to time.Time) (ShadowReport, error) {
	r, err := feedback.ReadShadowReport(ctx, f.Kafka, version, from, to)
	if err != nil {
		return ShadowReport{}, err
	}
	return ShadowReport{
		ShadowVersion: r.ShadowVersion, ProductionVersions: r.ProductionVersions, Requests: r.Requests, Matched: r.Matched,
		ScoreCorrelation: r.ScoreCorrelation, RankCorrelation: r.RankCorrelation, TopKOverlap: r.TopKOverlap,
		LatencyP50Ms: r.LatencyP50Ms, LatencyP99Ms: r.LatencyP99Ms, ErrorRate: r.ErrorRate, From: r.From, To: r.To,
	}, nil
}

// Accuracy reads feedback.ReadAccuracy.
func (f FeedbackReader) Accuracy(ctx context.Context, from, to time.Time) ([]ArmStats, error) {
	arms, err := feedback.ReadAccuracy(ctx, f.Kafka, from, to)
	if err != nil {
		return nil, err
	}
	out := make([]ArmStats, len(arms))
	for i, a := range arms {
		out[i] = ArmStats{ModelVersion: a.ModelVersion, Arm: a.Arm, Requests: a.Requests, Impressions: a.Impressions,
			Clicks: a.Clicks, Errors: a.Errors, CTR: a.CTR, LatencyP99Ms: a.LatencyP99Ms}
	}
	return out, nil
}
