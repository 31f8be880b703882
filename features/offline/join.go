package offline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/snapshot"
	"github.com/adaptrec/adaptrec/internal/objstore"
)

// Store is the object store holding the event log and the snapshots, and
// receiving the training set; *objstore.Store implements it.
type Store interface {
	eventlog.Source
	snapshot.Store
	// URI names a key in messages (s3://bucket/key).
	URI(key string) string
}

var _ Store = (*objstore.Store)(nil)

// Root is the key prefix of training sets.
const Root = "training/"

// Defaults of Config.
const (
	DefaultAttribution   = 30 * time.Minute
	DefaultStateLookback = 30 * 24 * time.Hour
	DefaultRowsPerFile   = 250_000
	// DefaultSessionTTL and DefaultLastInteractionTTL apply when the
	// definitions lack user_session_key or user_last_interaction_ms
	// (their ttl is used otherwise).
	DefaultSessionTTL         = 30 * time.Minute
	DefaultLastInteractionTTL = 30 * 24 * time.Hour
)

// Config describes a training set. Zero values mean the documented
// defaults.
type Config struct {
	// ID names the training set (its key prefix training/<ID>/); a new id
	// "<creation time>-<8 hex digits>" when empty.
	ID string
	// Topic is the archived topic read; events.TopicInteractions when
	// empty.
	Topic string
	// From and To bound the impressions that become examples: [From, To).
	From, To time.Time
	// Attribution is how long after an impression a click (watch,
	// purchase) still counts for it; DefaultAttribution when zero.
	Attribution time.Duration
	// Features are the row's features in order; when empty,
	// DefaultFeatures.
	Features []string
	// AvailabilityLag delays when a snapshot may be used: an example at t
	// reads the latest snapshot with AsOf + AvailabilityLag ≤ t. 0 uses a
	// snapshot from its cutoff on; set it to the batch job's publication
	// delay to train on exactly what serving had.
	AvailabilityLag time.Duration
	// StateLookback is how far before From the log is replayed for the
	// nearline state (sessions, last actions, the hour windows of users
	// and items); DefaultStateLookback (the ttl of
	// user_last_interaction_ms) when zero. Less than an hour leaves the
	// windows of the first examples short.
	StateLookback time.Duration
	// Zones returns a user's home IANA zone, used for events archived
	// without the client's time_zone.
	// Without it the local-time request features hold their defaults.
	Zones func(userID string) string
	// RowsPerFile caps rows per Parquet part; DefaultRowsPerFile when zero.
	RowsPerFile int
	// Progress, when set, is called every 100,000 events read and at the
	// end.
	Progress func(Progress)
}

// Progress reports how far a build is.
type Progress struct {
	Events, Examples int64
	EventTime        time.Time
	Elapsed          time.Duration
}

// SnapshotUse says which snapshot of a group the examples with event times
// in [First, Last] read; Version is empty for examples before the group's
// first usable snapshot (they read defaults).
type SnapshotUse struct {
	Group    string    `json:"group"`
	Version  string    `json:"version,omitempty"`
	AsOf     time.Time `json:"as_of,omitzero"`
	First    time.Time `json:"first_event"`
	Last     time.Time `json:"last_event"`
	Examples int64     `json:"examples"`
}

// Manifest describes a training set.
type Manifest struct {
	Format    int       `json:"format"`
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	// SchemaHash is that of the definitions the rows were built with;
	// Model is the ModelSchema of a model trained on them (hash and the
	// row's features in order), Width the number of values per row.
	SchemaHash string               `json:"schema_hash"`
	Model      features.ModelSchema `json:"model_schema"`
	Width      int                  `json:"width"`
	From       time.Time            `json:"from"`
	To         time.Time            `json:"to"`
	Label      string               `json:"label_rule"`
	// Attribution, AvailabilityLag and StateLookback are Go durations.
	Attribution     string `json:"attribution"`
	AvailabilityLag string `json:"availability_lag"`
	StateLookback   string `json:"state_lookback"`
	// Rows counts examples; Positives those labelled 1; Watched and
	// Purchased those with a watch or purchase.
	Rows      int64 `json:"rows"`
	Positives int64 `json:"positives"`
	Watched   int64 `json:"watched"`
	Purchased int64 `json:"purchased"`
	// EventsRead counts the archived events the build read.
	EventsRead int64           `json:"events_read"`
	Files      []snapshot.File `json:"files"`
	Snapshots  []SnapshotUse   `json:"snapshots"`
	// Defaulted maps features of the row that hold their default for every
	// example to the reason.
	Defaulted map[string]string `json:"defaulted,omitempty"`
}

// LabelRule is the label definition recorded in every manifest.
const LabelRule = "one example per ACTION_IMPRESSION; label 1 when the same user clicks (ACTION_CLICK) the same item in the same session within the attribution window after it, attributed to the latest such impression once"

// ManifestKey is the key of a training set's manifest.
func ManifestKey(id string) string { return Root + id + "/manifest.json" }

func (c Config) withDefaults() Config {
	if c.Topic == "" {
		c.Topic = events.TopicInteractions
	}
	if c.Attribution == 0 {
		c.Attribution = DefaultAttribution
	}
	if c.StateLookback == 0 {
		c.StateLookback = DefaultStateLookback
	}
	if c.RowsPerFile <= 0 {
		c.RowsPerFile = DefaultRowsPerFile
	}
	if c.ID == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		c.ID = time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
	}
	return c
}

func (c Config) validate() error {
	var bad []string
	if c.From.IsZero() || c.To.IsZero() || !c.From.Before(c.To) {
		bad = append(bad, fmt.Sprintf("from %s must be before to %s", c.From.Format(time.RFC3339), c.To.Format(time.RFC3339)))
	}
	if c.Attribution < 0 || c.AvailabilityLag < 0 || c.StateLookback < 0 {
		bad = append(bad, "durations must not be negative")
	}
	if strings.ContainsAny(c.ID, "/\\") || strings.HasPrefix(c.ID, ".") {
		bad = append(bad, fmt.Sprintf("id %q must be one path segment", c.ID))
	}
	if len(bad) > 0 {
		return fmt.Errorf("training set: %s", strings.Join(bad, "; "))
	}
	return nil
}

// DefaultFeatures returns the features of a training row when Config names
// none: every ranker input in canonical order, except nearline features
// the join does not compute (those features/windowed has no rule for),
// which would hold their defaults in every row.
func DefaultFeatures(fs *features.FeatureSet) []string {
	var out []string
	for _, f := range fs.RankerInputs() {
		if f.Lane != features.LaneNearline || computedNearline(fs, f.Name) {
			out = append(out, f.Name)
		}
	}
	return out
}

// Build joins every impression in [cfg.From, cfg.To) with the features as
// of its event time, writes the training set to st under training/<id>/ and
// returns its manifest (written last: a training set without a manifest is
// incomplete).
func Build(ctx context.Context, st Store, fs *features.FeatureSet, cfg Config) (Manifest, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return Manifest{}, err
	}
	names := cfg.Features
	if len(names) == 0 {
		names = DefaultFeatures(fs)
	}
	layout, err := fs.NewLayout(names)
	if err != nil {
		return Manifest{}, err
	}
	j, err := newJoiner(ctx, st, fs, layout, &cfg)
	if err != nil {
		return Manifest{}, err
	}
	start := time.Now()
	from := cfg.From.Add(-cfg.StateLookback)
	to := cfg.To.Add(cfg.Attribution + time.Millisecond) // a click exactly at the window's end counts
	err = eventlog.ScanOrdered(ctx, st, cfg.Topic, from, to, func(r *eventlog.Row) error {
		if err := j.add(ctx, r); err != nil {
			return err
		}
		if cfg.Progress != nil && j.events%100_000 == 0 {
			cfg.Progress(Progress{Events: j.events, Examples: j.out.rows, EventTime: r.EventTime, Elapsed: time.Since(start)})
		}
		return nil
	})
	if err != nil {
		return Manifest{}, fmt.Errorf("training set %s: %w", cfg.ID, err)
	}
	if err := j.flush(ctx, -1); err != nil {
		return Manifest{}, err
	}
	if err := j.out.finish(ctx); err != nil {
		return Manifest{}, err
	}
	if cfg.Progress != nil {
		cfg.Progress(Progress{Events: j.events, Examples: j.out.rows, Elapsed: time.Since(start)})
	}
	m := j.manifest()
	if err := writeManifest(ctx, st, &m); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// ReadManifest reads a training set's manifest.
func ReadManifest(ctx context.Context, st snapshot.Store, id string) (Manifest, error) {
	b, _, err := st.Get(ctx, ManifestKey(id))
	if errors.Is(err, objstore.ErrNotFound) {
		return Manifest{}, fmt.Errorf("training set %s: no manifest (never built, or the build did not finish): %w", id, err)
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("read training set %s: %w", id, err)
	}
	return decodeManifest(b, id)
}
