package activities

import (
	"context"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/adaptrec/adaptrec/features/skew"
	"github.com/adaptrec/adaptrec/registry"
)

// Drift holds the activity of the DriftCheck workflow
// (workflows.DriftCheck): the training/serving skew report of the
// production model.
type Drift struct {
	// Store holds the training sets and the archived PredictionEvents.
	Store skew.Store
	// Registry is read for the production version and its training set.
	Registry *registry.Client
}

// DriftRequest asks for the skew report of Model's production version:
// its training set against the PredictionEvents archived in [From, To).
type DriftRequest struct {
	Model      string
	From, To   time.Time
	Thresholds skew.Thresholds
	// MaxEvents caps the PredictionEvents sampled (skew.DefaultMaxEvents
	// when 0).
	MaxEvents int
}

// DriftReport summarises a skew report for the drift trigger.
type DriftReport struct {
	Model string
	// Production is the production version ("" when there is none: no
	// report was made); TrainingSet its training set.
	Production, TrainingSet string
	From, To                time.Time
	Thresholds              skew.Thresholds
	Served                  skew.ServedSummary
	// Columns counts the value columns compared, Judged those with enough
	// served values to be judged, Flagged those over a threshold.
	Columns, Judged, Flagged int
	// Features are the flagged columns, most severe first.
	Features []skew.FeatureSkew
}

// DriftReport reads the production version of req.Model and runs the skew
// report of its training set against the served features (features/skew,
// the report `adaptrec features skew` prints). No production version is a
// report without one, not an error.
func (a *Drift) DriftReport(ctx context.Context, req DriftRequest) (DriftReport, error) {
	rep := DriftReport{Model: req.Model, From: req.From, To: req.To}
	if !req.From.Before(req.To) {
		return rep, nonRetryable(fmt.Errorf("drift window [%s, %s) is empty", req.From.Format(time.RFC3339), req.To.Format(time.RFC3339)), ErrTypeInvalidParams)
	}
	al, err := a.Registry.Aliases(ctx, req.Model)
	if err != nil {
		return rep, fmt.Errorf("aliases of %s: %w", req.Model, err)
	}
	if al.Production == "" {
		return rep, nil
	}
	rep.Production = al.Production
	m, err := a.Registry.Get(ctx, req.Model, al.Production)
	if err != nil {
		return rep, fmt.Errorf("production %s: %w", al.Production, err)
	}
	rep.TrainingSet = m.TrainingSet
	if m.TrainingSet == "" {
		return rep, nonRetryable(fmt.Errorf("production %s/%s names no training set: its features cannot be compared", req.Model, al.Production), ErrTypeInvalidParams)
	}
	activity.RecordHeartbeat(ctx, "skew report of "+m.TrainingSet)
	r, err := skew.Run(ctx, a.Store, skew.Options{TrainingSet: m.TrainingSet, From: req.From, To: req.To, MaxEvents: req.MaxEvents, Thresholds: req.Thresholds})
	if err != nil {
		return rep, fmt.Errorf("skew report of training set %s over [%s, %s): %w", m.TrainingSet, req.From.Format(time.RFC3339), req.To.Format(time.RFC3339), err)
	}
	rep.Thresholds, rep.Served, rep.Columns, rep.Flagged = r.Thresholds, r.Served, len(r.Features), r.Flagged
	for _, f := range r.Features {
		if f.Judged {
			rep.Judged++
		}
		if f.Flagged() {
			rep.Features = append(rep.Features, f)
		}
	}
	return rep, nil
}
