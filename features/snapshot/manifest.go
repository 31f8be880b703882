package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"regexp"
	"strings"
	"time"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/internal/objstore"
)

// Store is the part of the object store snapshots need; *objstore.Store
// implements it.
type Store interface {
	Get(ctx context.Context, key string) ([]byte, objstore.ObjectInfo, error)
	Put(ctx context.Context, key string, body []byte, opts objstore.PutOptions) (string, error)
	List(ctx context.Context, prefix string, opts objstore.ListOptions) iter.Seq2[objstore.ObjectInfo, error]
}

var _ Store = (*objstore.Store)(nil)

// Errors callers can test for with errors.Is.
var (
	// ErrNotFound reports a snapshot, or a group without a current pointer,
	// that does not exist.
	ErrNotFound = errors.New("feature snapshot not found")
	// ErrCorrupt reports a manifest, pointer or data file that cannot be
	// trusted: unreadable, inconsistent with its key, or not matching the
	// manifest's checksums.
	ErrCorrupt = errors.New("corrupt feature snapshot")
	// ErrConflict reports a pointer update that lost a race: another flip or
	// rollback changed the pointer after it was read. Nothing was written;
	// read the pointer again and decide again.
	ErrConflict = errors.New("feature snapshot pointer changed concurrently")
	// ErrNoPrevious reports a rollback with no previous snapshot to go to.
	ErrNoPrevious = errors.New("no previous feature snapshot")
	// ErrRejected reports a flip to a version that validation refused.
	ErrRejected = errors.New("feature snapshot was rejected by validation")
	// ErrInvalid reports rows or arguments a snapshot cannot be written
	// from.
	ErrInvalid = errors.New("invalid feature snapshot")
)

// Root is the key prefix of every snapshot.
const Root = "features/snapshots/"

// FormatVersion is the manifest format this package writes and reads.
const FormatVersion = 1

const (
	manifestName = "manifest.json"
	pointerName  = "CURRENT"
	rejectedDir  = "REJECTED/"
	versionTime  = "20060102T150405Z"
)

var (
	groupRE   = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	versionRE = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$`)
)

// PairSeparator joins the user and item ids of a user×item entity id; it is
// the ASCII unit separator, which ids never contain.
const PairSeparator = "\x1f"

// PairID returns the entity id of a (user, item) pair.
func PairID(user, item string) string { return user + PairSeparator + item }

// SplitPairID splits a PairID into its user and item ids.
func SplitPairID(id string) (user, item string, ok bool) {
	return strings.Cut(id, PairSeparator)
}

// GroupPrefix is the key prefix of a group's snapshots and pointer.
func GroupPrefix(group string) string { return Root + group + "/" }

// VersionPrefix is the key prefix of one snapshot's files.
func VersionPrefix(group, version string) string { return GroupPrefix(group) + version + "/" }

// ManifestKey is the key of a snapshot's manifest.
func ManifestKey(group, version string) string { return VersionPrefix(group, version) + manifestName }

// PointerKey is the key of a group's current pointer.
func PointerKey(group string) string { return GroupPrefix(group) + pointerName }

// RejectedKey is the key of the note that marks a version as refused.
func RejectedKey(group, version string) string {
	return GroupPrefix(group) + rejectedDir + version + ".json"
}

func partName(i int) string { return fmt.Sprintf("part-%05d.parquet", i) }

// VersionTime returns the data cutoff encoded in a version.
func VersionTime(version string) (time.Time, error) {
	if !versionRE.MatchString(version) {
		return time.Time{}, fmt.Errorf("%w: version %q is not <yyyymmddThhmmssZ>-<8 hex digits>", ErrInvalid, version)
	}
	return time.Parse(versionTime, version[:len(versionTime)])
}

func checkGroup(group string) error {
	if !groupRE.MatchString(group) {
		return fmt.Errorf("%w: group %q is not a feature group name (^[a-z][a-z0-9_]*$)", ErrInvalid, group)
	}
	return nil
}

func checkGroupVersion(group, version string) error {
	if err := checkGroup(group); err != nil {
		return err
	}
	_, err := VersionTime(version)
	return err
}

// QuantileLevels are the levels of FeatureStats.Quantiles.
var QuantileLevels = []float64{0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99}

// FeatureStats summarises one feature's values in a snapshot. For a vector
// the moments and quantiles are over all components of all rows; for a map
// over all entry values.
type FeatureStats struct {
	// Count is the number of values summarised (rows × width, or map
	// entries).
	Count int64 `json:"count"`
	// NaN and Inf count values that are not finite; they are left out of
	// the other statistics.
	NaN int64 `json:"nan,omitempty"`
	Inf int64 `json:"inf,omitempty"`
	// Mean, Std, Min and Max are over the finite values.
	Mean float64 `json:"mean"`
	Std  float64 `json:"std"`
	Min  float64 `json:"min"`
	Max  float64 `json:"max"`
	// DefaultRate is the share of rows whose value equals the feature's
	// default (an empty map for maps).
	DefaultRate float64 `json:"default_rate"`
	// Quantiles are estimates at QuantileLevels, from a deterministic
	// sample of at most 20,000 finite values.
	Quantiles []float64 `json:"quantiles,omitempty"`
	// NotComputed says why the job left every row at the default (a model
	// or catalogue input it did not have); empty when computed.
	NotComputed string `json:"not_computed,omitempty"`
}

// File is one data file of a snapshot.
type File struct {
	// Name is relative to the snapshot's VersionPrefix.
	Name   string `json:"name"`
	Rows   int64  `json:"rows"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// Manifest describes one snapshot. It is written after the data files and
// never changed.
type Manifest struct {
	// Format is FormatVersion.
	Format int
	// Group is the storage group (features.Feature.Group) and Entity the
	// entity its rows describe.
	Group  string
	Entity features.Entity
	// Version names the snapshot (see the package documentation).
	Version string
	// SchemaHash is features.FeatureSet.SchemaHash of the definitions the
	// values were computed with.
	SchemaHash string
	// AsOf is the data cutoff: only events before AsOf were used.
	AsOf time.Time
	// CreatedAt is when the snapshot was written.
	CreatedAt time.Time
	// Features are the fixed-width features, in value order; Types their
	// types as written in features.yaml ("float", "int", "vector[16]").
	Features []string
	Types    []string
	// Width is the number of values per row (vectors expanded).
	Width int
	// MapFeatures are the map features, in the order of Row.Maps.
	MapFeatures []string
	// Rows is the number of rows (entities).
	Rows int64
	// Files are the data files in entity id order.
	Files []File
	// Stats has an entry for every feature of Features and MapFeatures.
	Stats map[string]FeatureStats
}

type manifestJSON struct {
	Format      int                     `json:"format"`
	Group       string                  `json:"group"`
	Entity      string                  `json:"entity"`
	Version     string                  `json:"version"`
	SchemaHash  string                  `json:"schema_hash"`
	AsOf        time.Time               `json:"as_of"`
	CreatedAt   time.Time               `json:"created_at"`
	Features    []string                `json:"features"`
	Types       []string                `json:"types"`
	Width       int                     `json:"width"`
	MapFeatures []string                `json:"map_features,omitempty"`
	Rows        int64                   `json:"rows"`
	Files       []File                  `json:"files"`
	Stats       map[string]FeatureStats `json:"stats"`
}

// MarshalJSON writes the manifest as stored in manifest.json (the entity
// by name).
func (m Manifest) MarshalJSON() ([]byte, error) {
	return json.Marshal(manifestJSON{
		Format: m.Format, Group: m.Group, Entity: m.Entity.String(), Version: m.Version,
		SchemaHash: m.SchemaHash, AsOf: m.AsOf, CreatedAt: m.CreatedAt, Features: m.Features,
		Types: m.Types, Width: m.Width, MapFeatures: m.MapFeatures, Rows: m.Rows, Files: m.Files,
		Stats: m.Stats,
	})
}

// UnmarshalJSON reads a manifest.json.
func (m *Manifest) UnmarshalJSON(b []byte) error {
	var j manifestJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	e, err := features.ParseEntity(j.Entity)
	if err != nil {
		return err
	}
	*m = Manifest{
		Format: j.Format, Group: j.Group, Entity: e, Version: j.Version, SchemaHash: j.SchemaHash,
		AsOf: j.AsOf, CreatedAt: j.CreatedAt, Features: j.Features, Types: j.Types, Width: j.Width,
		MapFeatures: j.MapFeatures, Rows: j.Rows, Files: j.Files, Stats: j.Stats,
	}
	return nil
}

// Key returns the manifest's object key.
func (m *Manifest) Key() string { return ManifestKey(m.Group, m.Version) }

// check verifies that a manifest read from the key of (group, version) is
// internally consistent; it says what is wrong.
func (m *Manifest) check(group, version string) error {
	var bad []string
	if m.Format != FormatVersion {
		bad = append(bad, fmt.Sprintf("format %d, this reader knows %d", m.Format, FormatVersion))
	}
	if m.Group != group || m.Version != version {
		bad = append(bad, fmt.Sprintf("describes %s/%s, stored as %s/%s", m.Group, m.Version, group, version))
	}
	if at, err := VersionTime(version); err == nil && !at.Equal(m.AsOf.UTC().Truncate(time.Second)) {
		bad = append(bad, fmt.Sprintf("as_of %s does not match the version's %s", m.AsOf.Format(time.RFC3339), at.Format(time.RFC3339)))
	}
	if m.AsOf.IsZero() {
		bad = append(bad, "as_of missing")
	}
	if !strings.HasPrefix(m.SchemaHash, features.SchemaHashPrefix) {
		bad = append(bad, fmt.Sprintf("schema hash %q lacks the %s prefix", m.SchemaHash, features.SchemaHashPrefix))
	}
	if len(m.Types) != len(m.Features) {
		bad = append(bad, fmt.Sprintf("%d types for %d features", len(m.Types), len(m.Features)))
	} else {
		width := 0
		for i, t := range m.Types {
			typ, err := features.ParseType(t)
			if err != nil || typ.Width() == 0 {
				bad = append(bad, fmt.Sprintf("feature %s has type %q, not a fixed-width type", m.Features[i], t))
				continue
			}
			width += typ.Width()
		}
		if width != m.Width {
			bad = append(bad, fmt.Sprintf("width %d, the features' types add up to %d", m.Width, width))
		}
	}
	if len(m.Features)+len(m.MapFeatures) == 0 {
		bad = append(bad, "no features")
	}
	for _, name := range append(append([]string(nil), m.Features...), m.MapFeatures...) {
		if _, ok := m.Stats[name]; !ok {
			bad = append(bad, fmt.Sprintf("no stats for %s", name))
		}
	}
	var rows int64
	for i, f := range m.Files {
		if f.Name != partName(i) || len(f.SHA256) != 64 || f.Rows < 0 || f.Bytes <= 0 {
			bad = append(bad, fmt.Sprintf("file %d (%q) is not a valid part entry", i, f.Name))
		}
		rows += f.Rows
	}
	if rows != m.Rows {
		bad = append(bad, fmt.Sprintf("%d rows, the files hold %d", m.Rows, rows))
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s: %s", ErrCorrupt, ManifestKey(group, version), strings.Join(bad, "; "))
	}
	return nil
}

// ReadManifest reads and checks the manifest of a snapshot.
func ReadManifest(ctx context.Context, st Store, group, version string) (Manifest, error) {
	if err := checkGroupVersion(group, version); err != nil {
		return Manifest{}, err
	}
	key := ManifestKey(group, version)
	b, _, err := st.Get(ctx, key)
	if err != nil {
		if errors.Is(err, objstore.ErrNotFound) {
			return Manifest{}, fmt.Errorf("%w: %s/%s has no manifest (%s): never written, or its write did not finish", ErrNotFound, group, version, key)
		}
		return Manifest{}, fmt.Errorf("read manifest of %s/%s: %w", group, version, err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Manifest{}, fmt.Errorf("%w: %s is not a valid manifest: %v", ErrCorrupt, key, err)
	}
	if err := m.check(group, version); err != nil {
		return Manifest{}, err
	}
	return m, nil
}
