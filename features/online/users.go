package online

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/snapshot"
)

// ErrVersionNotLoaded reports a user batch snapshot version that is not (or
// no longer) materialized in Redis: LoadUsersFromSnapshot has not finished
// for it, or its keys expired.
var ErrVersionNotLoaded = errors.New("user snapshot version not loaded into Redis")

// DefaultUserVersionTTL is how long a loaded user batch version stays in
// Redis unless LoadOptions.TTL says otherwise: long enough to serve a
// daily snapshot, keep the previous one for a rollback, and overlap the
// next load.
const DefaultUserVersionTTL = 72 * time.Hour

// DefaultLoadBatch is how many users one pipelined write carries unless
// LoadOptions.Batch says otherwise: Redis runs a pipeline's commands back
// to back, so serving reads queued behind one wait for all of it; 256 SETs
// take well under their 2 ms deadline.
const DefaultLoadBatch = 256

// versionMeta is the JSON stored under keys.batchMeta once every record of
// a version is written: readers switch to a version only when it exists,
// and decode its records with the layout it lists.
type versionMeta struct {
	Format      int       `json:"format"`
	Group       string    `json:"group"`
	Version     string    `json:"version"`
	SchemaHash  string    `json:"schema_hash"`
	AsOf        time.Time `json:"as_of"`
	Features    []string  `json:"features"`
	Types       []string  `json:"types"`
	MapFeatures []string  `json:"map_features,omitempty"`
	Rows        int64     `json:"rows"`
	LoadedAt    time.Time `json:"loaded_at"`
}

// LoadOptions tune LoadUsersFromSnapshot. Zero values mean the defaults.
type LoadOptions struct {
	// KeyPrefix must be the serving stores' Options.KeyPrefix
	// (DefaultKeyPrefix when empty).
	KeyPrefix string
	// TTL is how long the version's keys live (DefaultUserVersionTTL when
	// 0). It bounds how far back a rollback can go.
	TTL time.Duration
	// Batch is how many users one pipelined write carries
	// (DefaultLoadBatch when 0).
	Batch int
	// Progress, when set, is called after every batch.
	Progress func(LoadProgress)
	// MaxPairs bounds the pairs of one user LoadPairsFromSnapshot keeps
	// (DefaultMaxPairs when 0).
	MaxPairs int
}

func (o LoadOptions) withDefaults() LoadOptions {
	if o.KeyPrefix == "" {
		o.KeyPrefix = DefaultKeyPrefix
	}
	if o.TTL <= 0 {
		o.TTL = DefaultUserVersionTTL
	}
	if o.Batch <= 0 {
		o.Batch = DefaultLoadBatch
	}
	if o.MaxPairs <= 0 {
		o.MaxPairs = DefaultMaxPairs
	}
	return o
}

// LoadProgress reports a running load.
type LoadProgress struct {
	Group, Version string
	// Written users so far, of Total in the snapshot.
	Written, Total int64
	Elapsed        time.Duration
}

// LoadStats summarises a finished load.
type LoadStats struct {
	Group, Version string
	Users          int64
	Bytes          int64
	Duration       time.Duration
}

// LoadUsersFromSnapshot materializes a user batch snapshot in Redis: one
// packed record per user under a key naming the version, written with
// pipelined SETs, then the version's meta, which is what makes the version
// visible to serving stores. It never touches the version stores serve:
// they switch when the snapshot pointer names the version (Store.Refresh,
// a FeatureSnapshotEvent). The batch lane calls it after snapshot.Write and
// before snapshot.Flip; calling it again for a loaded version rewrites the
// same bytes.
func LoadUsersFromSnapshot(ctx context.Context, rdb redis.UniversalClient, fs *features.FeatureSet, snaps Snapshots, group, version string, opts LoadOptions) (LoadStats, error) {
	start := time.Now()
	stats := LoadStats{Group: group, Version: version}
	opts = opts.withDefaults()
	v, err := openBatchVersion(ctx, fs, snaps, features.EntityUser, group, version)
	if err != nil {
		return stats, err
	}
	r, bind, meta, rl := v.r, v.bind, v.meta, v.rl
	m := r.Manifest()
	k := keys{prefix: opts.KeyPrefix}
	// The meta expires before any record it describes: a version is never
	// visible with records already gone.
	expireAt := start.Add(opts.TTL)
	rec := fs.NewRecord(features.EntityUser)
	var arena []byte
	pipe := rdb.Pipeline()
	pending := 0
	flush := func() error {
		if pending == 0 {
			return nil
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("load users of %s/%s: write batch: %w", group, version, err)
		}
		stats.Users += int64(pending)
		pending, arena = 0, nil
		if opts.Progress != nil {
			opts.Progress(LoadProgress{Group: group, Version: version, Written: stats.Users, Total: m.Rows, Elapsed: time.Since(start)})
		}
		return nil
	}
	for row, err := range r.Rows(ctx) {
		if err != nil {
			return stats, fmt.Errorf("load users of %s/%s: %w", group, version, err)
		}
		if err := bind.Fill(rec, &row); err != nil {
			return stats, fmt.Errorf("load users of %s/%s: %w", group, version, err)
		}
		n := len(arena)
		if arena, err = rl.encode(arena, rec); err != nil {
			return stats, fmt.Errorf("load users of %s/%s: user %q: %w", group, version, row.EntityID, err)
		}
		// Appending never rewrites bytes already handed out, so the slices
		// given to the pipeline stay valid when the arena moves.
		pipe.Set(ctx, k.userBatch(group, version, row.EntityID), arena[n:len(arena):len(arena)], opts.TTL)
		stats.Bytes += int64(len(arena) - n)
		pending++
		if pending == opts.Batch {
			if err := flush(); err != nil {
				return stats, err
			}
		}
	}
	if err := flush(); err != nil {
		return stats, err
	}
	if err := writeVersionMeta(ctx, rdb, k, meta, expireAt); err != nil {
		return stats, err
	}
	stats.Duration = time.Since(start)
	return stats, nil
}

// newVersionMeta is the meta of a batch version of group g about to be
// loaded, and the layout its records are encoded with.
func newVersionMeta(fs *features.FeatureSet, g features.Group, m snapshot.Manifest) (versionMeta, *recordLayout, error) {
	meta := versionMeta{Format: recordFormat, Group: m.Group, Version: m.Version, SchemaHash: fs.SchemaHash(), AsOf: m.AsOf, Rows: m.Rows}
	for _, f := range g.Features {
		switch {
		case f.Type.Kind == features.KindMap:
			meta.MapFeatures = append(meta.MapFeatures, f.Name)
		case f.Type.Width() > 0:
			meta.Features = append(meta.Features, f.Name)
			meta.Types = append(meta.Types, f.Type.String())
		}
	}
	rl, err := newRecordLayout(fs, g.Entity, meta.Features, meta.Types, meta.MapFeatures)
	return meta, rl, err
}

// writeVersionMeta stores a loaded version's meta, which makes it visible,
// expiring at expireAt (before any of its records).
func writeVersionMeta(ctx context.Context, rdb redis.UniversalClient, k keys, meta versionMeta, expireAt time.Time) error {
	meta.LoadedAt = time.Now().UTC()
	b, err := json.Marshal(meta)
	if err != nil {
		return fmt.Errorf("encode meta: %w", err)
	}
	key := k.batchMeta(meta.Group, meta.Version)
	if err := rdb.Set(ctx, key, b, 0).Err(); err != nil {
		return fmt.Errorf("load %s/%s: write meta: %w", meta.Group, meta.Version, err)
	}
	if err := rdb.PExpireAt(ctx, key, expireAt).Err(); err != nil {
		return fmt.Errorf("load %s/%s: expire meta: %w", meta.Group, meta.Version, err)
	}
	return nil
}

// batchVersion is a snapshot version about to be loaded into Redis.
type batchVersion struct {
	r    SnapshotReader
	bind *snapshot.Binding
	meta versionMeta
	rl   *recordLayout
}

// openBatchVersion opens group's snapshot version for loading after
// checking that group is a batch group of entity e and the snapshot is the
// one asked for.
func openBatchVersion(ctx context.Context, fs *features.FeatureSet, snaps Snapshots, e features.Entity, group, version string) (batchVersion, error) {
	var v batchVersion
	g, found := features.Group{}, false
	for _, x := range fs.Groups() {
		if x.Name == group {
			g, found = x, true
		}
	}
	switch {
	case !found:
		return v, fmt.Errorf("load %s/%s: %s defines no group %q", group, version, fs.Source(), group)
	case g.Entity != e || g.Lane != features.LaneBatch:
		return v, fmt.Errorf("load %s/%s: group %s holds %s %s features, not %s batch features", group, version, group, g.Entity, g.Lane, e)
	}
	r, err := snaps.Open(ctx, group, version)
	if err != nil {
		return v, fmt.Errorf("load %s/%s: %w", group, version, err)
	}
	m := r.Manifest()
	if m.Group != group || m.Version != version || m.Entity != e {
		return v, fmt.Errorf("load %s/%s: the snapshot is %s/%s of %s features", group, version, m.Group, m.Version, m.Entity)
	}
	bind, err := m.Bind(fs)
	if err != nil {
		return v, fmt.Errorf("load %s/%s: %w", group, version, err)
	}
	meta, rl, err := newVersionMeta(fs, g, m)
	if err != nil {
		return v, err
	}
	return batchVersion{r: r, bind: bind, meta: meta, rl: rl}, nil
}

// userVersion is a loaded user (or user×item) batch version as requests
// read it.
type userVersion struct {
	version, schemaHash string
	asOf                time.Time
	layout              *recordLayout
}

// readUserVersion reads a loaded version's meta.
func readUserVersion(ctx context.Context, rdb redis.UniversalClient, fs *features.FeatureSet, k keys, e features.Entity, group, version string) (*userVersion, error) {
	b, err := rdb.Get(ctx, k.batchMeta(group, version)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%w: %s/%s (no %s)", ErrVersionNotLoaded, group, version, k.batchMeta(group, version))
	}
	if err != nil {
		return nil, fmt.Errorf("read meta of %s/%s: %w", group, version, err)
	}
	var m versionMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: meta of %s/%s: %v", ErrCorruptValue, group, version, err)
	}
	if m.Format != recordFormat || m.Group != group || m.Version != version {
		return nil, fmt.Errorf("%w: meta of %s/%s describes format %d %s/%s", ErrCorruptValue, group, version, m.Format, m.Group, m.Version)
	}
	rl, err := newRecordLayout(fs, e, m.Features, m.Types, m.MapFeatures)
	if err != nil {
		return nil, fmt.Errorf("meta of %s/%s: %w", group, version, err)
	}
	return &userVersion{version: version, schemaHash: m.SchemaHash, asOf: m.AsOf, layout: rl}, nil
}

// Preloader returns the batch lane's preload hook (batch.Job.Preload,
// activities' Preload): called with a snapshot about to become current, it
// loads a user group's rows into Redis with LoadUsersFromSnapshot, and a
// user×item group's with LoadPairsFromSnapshot, so that serving stores can
// switch as soon as the pointer moves. Item groups need nothing: serving
// instances load item snapshots themselves.
func Preloader(rdb redis.UniversalClient, fs *features.FeatureSet, snaps Snapshots, opts LoadOptions) func(ctx context.Context, group, version string) error {
	return func(ctx context.Context, group, version string) error {
		for _, g := range fs.Groups() {
			if g.Name != group {
				continue
			}
			if g.Lane != features.LaneBatch {
				return nil
			}
			switch g.Entity {
			case features.EntityUser:
				_, err := LoadUsersFromSnapshot(ctx, rdb, fs, snaps, group, version, opts)
				return err
			case features.EntityUserItem:
				_, err := LoadPairsFromSnapshot(ctx, rdb, fs, snaps, group, version, opts)
				return err
			}
			return nil
		}
		return fmt.Errorf("preload %s/%s: %s defines no group %q", group, version, fs.Source(), group)
	}
}
