package batch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/snapshot"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/objstore"
)

// Store is the object store the job reads the event log from and writes
// snapshots to; *objstore.Store implements it.
type Store interface {
	eventlog.Source
	snapshot.Store
	// URI names a key in messages and events (s3://bucket/key).
	URI(key string) string
}

var _ Store = (*objstore.Store)(nil)

// Publisher publishes events; *events.Producer implements it.
type Publisher interface {
	Publish(ctx context.Context, evs ...*adaptrecv1.Event) error
}

var _ Publisher = (*events.Producer)(nil)

// DefaultProducer is the envelope producer of the job's events.
const DefaultProducer = "adaptrec/features-batch"

// Job computes, validates and publishes batch-feature snapshots. Its fields
// are set once; a Job is safe for sequential use.
type Job struct {
	// Store holds the event log and the snapshots.
	Store Store
	// Features are the definitions; snapshots record their schema hash.
	// Publish and Rollback do not need them.
	Features *features.FeatureSet
	// Events receives a FeatureSnapshotEvent for every snapshot made
	// current (adaptrec.feature-snapshots.v1); required.
	Events Publisher
	// Config configures the computation (catalogue, zones, lookback).
	Config Config
	// Validation bounds what a snapshot may look like to become current.
	Validation ValidationOptions
	// Producer is the envelope producer of the events; DefaultProducer when
	// empty.
	Producer string
	// Preload, when set, is called with a snapshot that is about to become
	// current (by Publish or Rollback), before the pointer moves: serving
	// caches that must hold a version before readers switch to it load it
	// here (features/online.LoadUsersFromSnapshot for user groups). An
	// error leaves the pointer where it is.
	Preload func(ctx context.Context, group, version string) error
	// Logf, when set, receives progress lines.
	Logf func(format string, args ...any)
}

// Request asks for snapshots of batch groups as of a time.
type Request struct {
	// AsOf is the data cutoff: only events before it are read.
	AsOf time.Time
	// Groups are the batch groups to materialize; BatchGroups when empty.
	Groups []string
}

// Candidate is a written and validated snapshot, ready to become current.
// It holds only plain data, so a workflow can pass it between activities.
type Candidate struct {
	Group       string
	Version     string
	AsOf        time.Time
	Rows        int64
	SchemaHash  string
	ManifestURI string
	// Base is the version that was current when the candidate was
	// validated ("" for none): Publish flips only if it still is.
	Base string
	// ComparedWith is the snapshot the drift checks compared against (""
	// for none: the first snapshot of the group).
	ComparedWith string
	// Flip is false when the current snapshot has a later cutoff: the
	// candidate is a backfill for point-in-time joins and stays history.
	Flip bool
	// Failures are the validation checks it failed; a candidate with
	// failures is rejected and never becomes current.
	Failures []Failure
	// NotComputed lists the features left at their defaults, with why.
	NotComputed map[string]string
}

// Valid reports whether the candidate passed validation.
func (c *Candidate) Valid() bool { return len(c.Failures) == 0 }

// GroupReport says what happened to one group.
type GroupReport struct {
	Candidate
	// Pointer is the group's pointer after the run (zero when it was not
	// changed).
	Pointer snapshot.Pointer
	// Outcome is "current", "rejected" or "history".
	Outcome string
}

// Report summarises a Materialize run.
type Report struct {
	AsOf     time.Time
	Events   int64
	InWindow int64
	Objects  int
	// Scan, Build and Write are the time spent reading the event log,
	// building rows and writing + validating snapshots.
	Scan, Build, Write time.Duration
	Groups             []GroupReport
}

func (j *Job) logf(format string, args ...any) {
	if j.Logf != nil {
		j.Logf(format, args...)
	}
}

// check says which required fields are missing; Rollback needs no
// definitions.
func (j *Job) check(needFeatures bool) error {
	var missing []string
	if j.Store == nil {
		missing = append(missing, "Store")
	}
	if needFeatures && j.Features == nil {
		missing = append(missing, "Features")
	}
	if j.Events == nil {
		missing = append(missing, "Events")
	}
	if len(missing) > 0 {
		return fmt.Errorf("batch features job: %s not set", strings.Join(missing, ", "))
	}
	return nil
}

// Groups resolves the groups of a request: BatchGroups when none are named,
// and an error for a group this package computes nothing of.
func (j *Job) Groups(names []string) ([]string, error) {
	computable := BatchGroups(j.Features)
	if len(names) == 0 {
		if len(computable) == 0 {
			return nil, fmt.Errorf("%s has no batch group this job computes", j.Features.Source())
		}
		return computable, nil
	}
	var bad []string
	for _, n := range names {
		if !slices.Contains(computable, n) {
			bad = append(bad, n)
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("cannot materialize %s: the batch job computes the groups %s (embedding groups are published by the trainer)",
			strings.Join(bad, ", "), strings.Join(computable, ", "))
	}
	return names, nil
}

// Prepare computes the requested groups in one pass over the event log,
// writes each as a snapshot, validates it against the snapshot it would
// replace and rejects (snapshot.Reject) those that fail. No pointer moves.
func (j *Job) Prepare(ctx context.Context, req Request) ([]Candidate, Report, error) {
	rep := Report{AsOf: req.AsOf.UTC().Truncate(time.Second)}
	if err := j.check(true); err != nil {
		return nil, rep, err
	}
	groups, err := j.Groups(req.Groups)
	if err != nil {
		return nil, rep, err
	}
	res, err := Compute(ctx, j.Store, j.Features, rep.AsOf, groups, j.Config)
	if err != nil {
		return nil, rep, fmt.Errorf("compute batch features as of %s: %w", rep.AsOf.Format(time.RFC3339), err)
	}
	rep.Events, rep.InWindow, rep.Objects, rep.Scan, rep.Build = res.Events, res.InWindow, res.Objects, res.Scan, res.Build
	j.logf("read %d events (%d in the 30-day window) from %d objects in %s; built rows in %s",
		res.Events, res.InWindow, res.Objects, res.Scan.Round(time.Millisecond), res.Build.Round(time.Millisecond))

	start := time.Now()
	var cands []Candidate
	for i := range res.Groups {
		g := &res.Groups[i]
		c, err := j.prepareGroup(ctx, g, rep.AsOf)
		if err != nil {
			return nil, rep, err
		}
		cands = append(cands, c)
	}
	rep.Write = time.Since(start)
	return cands, rep, nil
}

func (j *Job) prepareGroup(ctx context.Context, g *GroupData, asOf time.Time) (Candidate, error) {
	m, err := snapshot.Write(ctx, j.Store, j.Features, g.Group, asOf, g.Rows, snapshot.WriteOptions{NotComputed: g.NotComputed})
	if err != nil {
		return Candidate{}, fmt.Errorf("write snapshot of %s: %w", g.Group, err)
	}
	c := Candidate{
		Group: g.Group, Version: m.Version, AsOf: m.AsOf, Rows: m.Rows, SchemaHash: m.SchemaHash,
		ManifestURI: j.Store.URI(m.Key()), Flip: true, NotComputed: g.NotComputed,
	}
	j.logf("%s: wrote %s (%d rows; left at defaults: %s)", g.Group, m.Version, m.Rows, orNone(g.describe()))

	prev, base, err := j.baseline(ctx, &m)
	if err != nil {
		return Candidate{}, err
	}
	if base != nil {
		c.Base = base.Version
		if base.AsOf.After(m.AsOf) {
			c.Flip = false
		}
	}
	if prev != nil {
		c.ComparedWith = prev.Version
	}
	if err := Validate(g, &m, prev, j.Validation); err != nil {
		var ve *ValidationError
		if !errors.As(err, &ve) {
			return Candidate{}, err
		}
		c.Failures = ve.Failures
		if err := snapshot.Reject(ctx, j.Store, g.Group, m.Version, ve.Error()); err != nil {
			return Candidate{}, err
		}
		j.logf("%s: %s REJECTED: %v", g.Group, m.Version, ve)
		return c, nil
	}
	// The same content may have been rejected under other bounds before.
	if err := snapshot.Accept(ctx, j.Store, g.Group, m.Version); err != nil {
		return Candidate{}, err
	}
	return c, nil
}

// baseline returns the snapshot to compare m with (the latest other one
// with a cutoff not after m's, preferring the current one) and the current
// snapshot (nil when the group has none).
func (j *Job) baseline(ctx context.Context, m *snapshot.Manifest) (prev, cur *snapshot.Manifest, err error) {
	p, err := snapshot.Current(ctx, j.Store, m.Group)
	switch {
	case errors.Is(err, snapshot.ErrNotFound):
	case err != nil:
		return nil, nil, err
	default:
		cm, err := snapshot.ReadManifest(ctx, j.Store, m.Group, p.Version)
		if err != nil {
			return nil, nil, fmt.Errorf("current snapshot of %s: %w", m.Group, err)
		}
		cur = &cm
		if cm.Version != m.Version && !cm.AsOf.After(m.AsOf) {
			return cur, cur, nil
		}
	}
	hist, err := snapshot.History(ctx, j.Store, m.Group)
	if err != nil {
		return nil, nil, err
	}
	for i := len(hist) - 1; i >= 0; i-- {
		if h := &hist[i]; h.Version != m.Version && !h.AsOf.After(m.AsOf) {
			return h, cur, nil
		}
	}
	return nil, cur, nil
}

// Publish makes a valid candidate current and announces it with a
// FeatureSnapshotEvent. It flips only if the pointer still names the
// candidate's Base (ErrConflict otherwise: another run moved it since the
// candidate was validated). A candidate that is already current is
// announced again, so a retried Publish completes a flip whose event was
// lost; the event id is the same, and consumers dedupe it.
func (j *Job) Publish(ctx context.Context, c Candidate) (snapshot.Pointer, error) {
	if err := j.check(false); err != nil {
		return snapshot.Pointer{}, err
	}
	if !c.Valid() {
		return snapshot.Pointer{}, &ValidationError{Group: c.Group, Version: c.Version, Failures: c.Failures}
	}
	if !c.Flip {
		return snapshot.Pointer{}, fmt.Errorf("%s/%s is older than the current snapshot %s: it stays history", c.Group, c.Version, c.Base)
	}
	cur, err := snapshot.Current(ctx, j.Store, c.Group)
	if err != nil && !errors.Is(err, snapshot.ErrNotFound) {
		return snapshot.Pointer{}, err
	}
	p := cur
	if cur.Version != c.Version {
		if cur.Version != c.Base {
			return snapshot.Pointer{}, fmt.Errorf("%w: %s is at %s, not %s as when %s was validated; run again",
				snapshot.ErrConflict, c.Group, orNone(cur.Version), orNone(c.Base), c.Version)
		}
		if err := j.preload(ctx, c.Group, c.Version); err != nil {
			return snapshot.Pointer{}, err
		}
		if p, err = snapshot.FlipFrom(ctx, j.Store, cur, c.Version); err != nil {
			return snapshot.Pointer{}, err
		}
		j.logf("%s: %s is current (previous %s)", c.Group, c.Version, orNone(p.Previous))
	}
	ev := j.event("feature-snapshot:"+c.Group+":"+c.Version, c.Group, c.Version, c.ManifestURI, c.SchemaHash, c.Rows, p)
	if err := j.Events.Publish(ctx, ev); err != nil {
		return p, fmt.Errorf("%s/%s is current but its event was not published (run again to publish it): %w", c.Group, c.Version, err)
	}
	return p, nil
}

func (j *Job) event(id, group, version, uri, hash string, rows int64, p snapshot.Pointer) *adaptrecv1.Event {
	producer := j.Producer
	if producer == "" {
		producer = DefaultProducer
	}
	return events.NewFeatureSnapshot(id, p.UpdatedAt, producer, &adaptrecv1.FeatureSnapshotEvent{
		FeatureView:     group,
		SnapshotVersion: version,
		Uri:             uri,
		SchemaHash:      hash,
		RowCount:        rows,
		PreviousVersion: p.Previous,
		RolledBack:      p.RolledBack,
	})
}

// Materialize computes, writes and validates snapshots of the requested
// groups as of req.AsOf, makes each valid one current (unless a snapshot
// with a later cutoff already is: then it stays history for point-in-time
// joins) and publishes a FeatureSnapshotEvent for it. Groups are
// independent: one failing validation leaves its pointer untouched, the
// others still flip. The error joins every group's failure; the report is
// filled either way.
func (j *Job) Materialize(ctx context.Context, req Request) (Report, error) {
	cands, rep, err := j.Prepare(ctx, req)
	if err != nil {
		return rep, err
	}
	var errs []error
	for _, c := range cands {
		gr := GroupReport{Candidate: c}
		switch {
		case !c.Valid():
			gr.Outcome = "rejected"
			errs = append(errs, &ValidationError{Group: c.Group, Version: c.Version, Failures: c.Failures})
		case !c.Flip:
			gr.Outcome = "history"
			j.logf("%s: %s kept as history: the current snapshot %s has a later cutoff", c.Group, c.Version, c.Base)
		default:
			p, err := j.Publish(ctx, c)
			if err != nil {
				errs = append(errs, fmt.Errorf("publish %s/%s: %w", c.Group, c.Version, err))
				gr.Outcome = "failed"
			} else {
				gr.Pointer, gr.Outcome = p, "current"
			}
		}
		rep.Groups = append(rep.Groups, gr)
	}
	return rep, errors.Join(errs...)
}

// Rollback makes a group's previous snapshot current again and announces
// it with a FeatureSnapshotEvent marked rolled_back.
func (j *Job) Rollback(ctx context.Context, group string) (snapshot.Pointer, error) {
	if err := j.check(false); err != nil {
		return snapshot.Pointer{}, err
	}
	cur, err := snapshot.Current(ctx, j.Store, group)
	if err != nil {
		return snapshot.Pointer{}, fmt.Errorf("roll back %s: %w", group, err)
	}
	if cur.Previous != "" {
		if err := j.preload(ctx, group, cur.Previous); err != nil {
			return snapshot.Pointer{}, err
		}
	}
	p, err := snapshot.RollbackFrom(ctx, j.Store, cur)
	if err != nil {
		return snapshot.Pointer{}, fmt.Errorf("roll back %s: %w", group, err)
	}
	m, err := snapshot.ReadManifest(ctx, j.Store, group, p.Version)
	if err != nil {
		return p, fmt.Errorf("%s rolled back to %s, but its manifest cannot be read: %w", group, p.Version, err)
	}
	// Every rollback is its own event: rolling back twice returns to the
	// first version and must not be deduped as a repeat.
	ev := j.event(events.NewID(), group, p.Version, j.Store.URI(m.Key()), m.SchemaHash, m.Rows, p)
	if err := j.Events.Publish(ctx, ev); err != nil {
		return p, fmt.Errorf("%s rolled back to %s but its event was not published: %w", group, p.Version, err)
	}
	return p, nil
}

func (j *Job) preload(ctx context.Context, group, version string) error {
	if j.Preload == nil {
		return nil
	}
	if err := j.Preload(ctx, group, version); err != nil {
		return fmt.Errorf("prepare %s/%s for serving (the pointer did not move): %w", group, version, err)
	}
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
