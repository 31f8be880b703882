package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"

	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/batch"
	"github.com/adaptrec/adaptrec/features/snapshot"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
)

// DefaultFeaturesFile is where BatchFeatures reads the feature definitions
// unless told otherwise, relative to the worker's working directory.
const DefaultFeaturesFile = "features/features.yaml"

// BatchFeatures holds the activities of the BatchFeatures workflow.
type BatchFeatures struct {
	Kafka config.Kafka
	Store *objstore.Store
	// FeaturesFile is the definitions file; DefaultFeaturesFile when empty.
	FeaturesFile string
	// Preload, when set, prepares a snapshot for serving before it becomes
	// current (batch.Job.Preload).
	Preload func(ctx context.Context, group, version string) error
}

// FeaturesRequest asks for batch-feature snapshots as of a cutoff.
type FeaturesRequest struct {
	// AsOf is the data cutoff; required, not in the future.
	AsOf time.Time
	// Groups are the batch groups; every group the batch job computes when
	// empty.
	Groups []string
	// WorldID names a simulated world whose stored catalogue provides item
	// metadata; "" for none.
	WorldID string
	// Validation bounds what a snapshot may look like to become current.
	Validation batch.ValidationOptions
}

// FeaturesPrepared is what PrepareSnapshots wrote.
type FeaturesPrepared struct {
	Candidates []batch.Candidate
	// Events and InWindow count the archived events read, Objects the
	// event-log objects.
	Events, InWindow int64
	Objects          int
	// Seconds spent scanning, building rows, and writing + validating.
	ScanSeconds, BuildSeconds, WriteSeconds float64
}

func (b *BatchFeatures) job(ctx context.Context, needFeatures bool) (*batch.Job, func(), error) {
	var fs *features.FeatureSet
	if needFeatures {
		file := b.FeaturesFile
		if file == "" {
			file = DefaultFeaturesFile
		}
		var err error
		if fs, err = features.Load(file); err != nil {
			return nil, nil, nonRetryable(fmt.Errorf("feature definitions: %w", err), "InvalidConfig")
		}
	}
	producer, err := events.NewProducer(b.Kafka, events.ProducerOptions{})
	if err != nil {
		return nil, nil, nonRetryable(err, "InvalidConfig")
	}
	log := activity.GetLogger(ctx)
	j := &batch.Job{
		Store: b.Store, Features: fs, Events: producer, Preload: b.Preload,
		Logf: func(format string, args ...any) { log.Info(fmt.Sprintf(format, args...)) },
	}
	return j, func() { producer.Close() }, nil
}

// PrepareSnapshots computes the requested groups from the event log, writes
// and validates their snapshots (rejecting those that fail) and returns
// them as candidates; no pointer moves. It heartbeats the events read.
// Snapshot versions are content hashes, so a retried attempt rewrites the
// same snapshots.
func (b *BatchFeatures) PrepareSnapshots(ctx context.Context, req FeaturesRequest) (FeaturesPrepared, error) {
	var res FeaturesPrepared
	if req.AsOf.IsZero() || req.AsOf.After(time.Now()) {
		return res, nonRetryable(fmt.Errorf("as-of %s must be set and not in the future", req.AsOf.Format(time.RFC3339)), "InvalidParams")
	}
	j, done, err := b.job(ctx, true)
	if err != nil {
		return res, err
	}
	defer done()
	if _, err := j.Groups(req.Groups); err != nil {
		return res, nonRetryable(err, "InvalidParams")
	}
	if req.WorldID != "" {
		if j.Config.Catalogue, err = batch.ReadSimCatalogue(ctx, b.Store, CatalogueKey(req.WorldID)); err != nil {
			return res, nonRetryable(fmt.Errorf("world %s: %w", req.WorldID, err), "InvalidParams")
		}
	}
	j.Validation = req.Validation
	j.Config.Progress = func(p batch.ScanProgress) { activity.RecordHeartbeat(ctx, p.Events) }
	cands, rep, err := j.Prepare(ctx, batch.Request{AsOf: req.AsOf, Groups: req.Groups})
	if err != nil {
		return res, err
	}
	return FeaturesPrepared{
		Candidates: cands, Events: rep.Events, InWindow: rep.InWindow, Objects: rep.Objects,
		ScanSeconds: rep.Scan.Seconds(), BuildSeconds: rep.Build.Seconds(), WriteSeconds: rep.Write.Seconds(),
	}, nil
}

// PublishSnapshot makes a valid candidate current and announces it
// (batch.Job.Publish). A rejected candidate, one older than the current
// snapshot, or a pointer moved since validation fail without retries:
// running the workflow again is the remedy.
func (b *BatchFeatures) PublishSnapshot(ctx context.Context, c batch.Candidate) (snapshot.Pointer, error) {
	j, done, err := b.job(ctx, false)
	if err != nil {
		return snapshot.Pointer{}, err
	}
	defer done()
	if !c.Valid() || !c.Flip {
		return snapshot.Pointer{}, nonRetryable(fmt.Errorf("%s/%s cannot become current (valid %t, newer than current %t)", c.Group, c.Version, c.Valid(), c.Flip), "InvalidParams")
	}
	p, err := j.Publish(ctx, c)
	if errors.Is(err, snapshot.ErrConflict) || errors.Is(err, snapshot.ErrRejected) {
		return p, nonRetryable(err, "Conflict")
	}
	return p, err
}
