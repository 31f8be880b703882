package registry

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/internal/objstore"
)

// Role says what an artifact is for.
type Role string

// Roles. A version has exactly one RoleRanker artifact; the others are
// optional.
const (
	// RoleRanker is the ONNX ranking model serving scores candidates with.
	RoleRanker Role = "ranker"
	// RoleEmbeddings holds item or user embeddings.
	RoleEmbeddings Role = "embeddings"
	// RoleIndex is a nearest-neighbour index over the embeddings.
	RoleIndex Role = "index"
	// RoleANNIndex is serving's HNSW index (serving/ann) over the same
	// item embeddings as the index.
	RoleANNIndex Role = "ann_index"
	// RoleCovisit is a co-visitation table (serving/covisit).
	RoleCovisit Role = "covisit"
	// RoleUserVectors is a table of user vectors by user id
	// (trainer/retrieval.UserVectors) from the same training run as the
	// index's item vectors, so serving can retrieve for a user without
	// recent items.
	RoleUserVectors Role = "user_vectors"
	// RoleOther is anything else the model ships (calibration, vocabularies).
	RoleOther Role = "other"
)

var roles = []Role{RoleRanker, RoleEmbeddings, RoleIndex, RoleANNIndex, RoleCovisit, RoleUserVectors, RoleOther}

// File is one artifact of a version as its manifest records it.
type File struct {
	// Name is relative to the version's VersionPrefix.
	Name   string `json:"name"`
	Role   Role   `json:"role"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// Manifest describes one model version. It is written after every artifact
// and never changed.
type Manifest struct {
	// Format is FormatVersion.
	Format int `json:"format"`
	// Model names the model; Version the version (see the package
	// documentation).
	Model   string `json:"model"`
	Version string `json:"version"`
	// CreatedAt is when the version was registered (or the time its
	// registration request gave).
	CreatedAt time.Time `json:"created_at"`
	// SchemaHash is features.FeatureSet.SchemaHash of the definitions the
	// model was trained with; it equals Schema.SchemaHash.
	SchemaHash string `json:"schema_hash"`
	// Schema lists the ranker's input features in input-row order.
	Schema features.ModelSchema `json:"schema"`
	// InputWidth is the number of float32 values per input row that
	// Schema implies (vectors expanded).
	InputWidth int `json:"input_width"`
	// TrainingSet is the id of the training set the model was fitted on
	// (features/offline, training/<id>/).
	TrainingSet string `json:"training_set"`
	// CodeVersion identifies the trainer's code (a commit).
	CodeVersion string `json:"code_version"`
	// Parameters are the training parameters, as text.
	Parameters map[string]string `json:"parameters,omitempty"`
	// Metrics are the offline evaluation metrics; all finite.
	Metrics map[string]float64 `json:"metrics"`
	// Artifacts are the version's files, sorted by name.
	Artifacts []File `json:"artifacts"`
	// RegisteredBy is who or what registered the version.
	RegisteredBy string `json:"registered_by"`
	// Reason says why it was registered (a workflow run, a note).
	Reason string `json:"reason,omitempty"`
}

// Key returns the manifest's object key.
func (m *Manifest) Key() string { return ManifestKey(m.Model, m.Version) }

// Ranker returns the ranker artifact.
func (m *Manifest) Ranker() (File, bool) {
	for _, f := range m.Artifacts {
		if f.Role == RoleRanker {
			return f, true
		}
	}
	return File{}, false
}

// Artifact returns the artifact with the given name.
func (m *Manifest) Artifact(name string) (File, bool) {
	for _, f := range m.Artifacts {
		if f.Name == name {
			return f, true
		}
	}
	return File{}, false
}

// contentHash hashes everything that makes a version what it is, except
// when it was made and by whom: it is the suffix of the version id.
func (m *Manifest) contentHash() string {
	b, err := json.Marshal(struct {
		Model       string               `json:"model"`
		Schema      features.ModelSchema `json:"schema"`
		TrainingSet string               `json:"training_set"`
		CodeVersion string               `json:"code_version"`
		Parameters  map[string]string    `json:"parameters"`
		Metrics     map[string]float64   `json:"metrics"`
		Artifacts   []File               `json:"artifacts"`
	}{m.Model, m.Schema, m.TrainingSet, m.CodeVersion, m.Parameters, m.Metrics, m.Artifacts})
	if err != nil {
		// Checked before: metrics are finite, the rest are strings.
		panic(fmt.Sprintf("registry: marshal manifest content: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:4])
}

// schemaWidth returns the input row width a model schema implies, or an
// error naming every feature whose type has no fixed width.
func schemaWidth(s features.ModelSchema) (int, error) {
	width := 0
	var bad []string
	for _, f := range s.Features {
		t, err := features.ParseType(f.Type)
		if err != nil || t.Width() == 0 {
			bad = append(bad, fmt.Sprintf("%s has type %q, not a fixed-width ranker input", f.Name, f.Type))
			continue
		}
		width += t.Width()
	}
	if len(bad) > 0 {
		return 0, errors.New(strings.Join(bad, "; "))
	}
	return width, nil
}

// problems lists what is wrong with a manifest's own fields; Register and
// readers share it.
func (m *Manifest) problems() []string {
	var bad []string
	if err := CheckModel(m.Model); err != nil {
		bad = append(bad, err.Error())
	}
	if m.CreatedAt.IsZero() {
		bad = append(bad, "created_at missing")
	}
	switch {
	case m.SchemaHash == "":
		bad = append(bad, "schema hash missing: record the features.FeatureSet.SchemaHash the model was trained with")
	case !strings.HasPrefix(m.SchemaHash, features.SchemaHashPrefix):
		bad = append(bad, fmt.Sprintf("schema hash %q is not a %s hash", m.SchemaHash, features.SchemaHashPrefix))
	case m.Schema.SchemaHash != m.SchemaHash:
		bad = append(bad, fmt.Sprintf("schema hash %q differs from the schema's %q", m.SchemaHash, m.Schema.SchemaHash))
	}
	if len(m.Schema.Features) == 0 {
		bad = append(bad, "the schema lists no input features")
	} else if w, err := schemaWidth(m.Schema); err != nil {
		bad = append(bad, "schema: "+err.Error())
	} else if w != m.InputWidth {
		bad = append(bad, fmt.Sprintf("input width %d, the schema's features add up to %d", m.InputWidth, w))
	}
	if m.TrainingSet == "" {
		bad = append(bad, "training set id missing")
	}
	if m.CodeVersion == "" {
		bad = append(bad, "code version missing")
	}
	if m.RegisteredBy == "" {
		bad = append(bad, "registered_by (actor) missing")
	}
	for k := range m.Parameters {
		if k == "" {
			bad = append(bad, "a parameter has an empty name")
		}
	}
	if len(m.Metrics) == 0 {
		bad = append(bad, "no metrics: a version must report its offline evaluation")
	}
	for _, k := range sortedKeys(m.Metrics) {
		switch v := m.Metrics[k]; {
		case k == "":
			bad = append(bad, "a metric has an empty name")
		case math.IsNaN(v) || math.IsInf(v, 0):
			bad = append(bad, fmt.Sprintf("metric %s is %v, not a finite number", k, v))
		}
	}
	rankers := 0
	seen := map[string]bool{}
	for _, f := range m.Artifacts {
		switch {
		case !artifactRE.MatchString(f.Name) || f.Name == manifestName:
			bad = append(bad, fmt.Sprintf("artifact name %q is not ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$ (and not %s)", f.Name, manifestName))
		case seen[f.Name]:
			bad = append(bad, fmt.Sprintf("artifact %s listed twice", f.Name))
		}
		seen[f.Name] = true
		if !slices.Contains(roles, f.Role) {
			bad = append(bad, fmt.Sprintf("artifact %s has role %q, not one of %s", f.Name, f.Role, joinRoles()))
		}
		if f.Role == RoleRanker {
			rankers++
		}
		if f.Bytes <= 0 {
			bad = append(bad, fmt.Sprintf("artifact %s is empty", f.Name))
		}
		if b, err := hex.DecodeString(f.SHA256); err != nil || len(b) != sha256.Size {
			bad = append(bad, fmt.Sprintf("artifact %s has sha256 %q, not 64 hex digits", f.Name, f.SHA256))
		}
	}
	if rankers != 1 {
		bad = append(bad, fmt.Sprintf("%d artifacts with role %s, want exactly 1 (the ONNX ranker)", rankers, RoleRanker))
	}
	if !slices.IsSortedFunc(m.Artifacts, func(a, b File) int { return strings.Compare(a.Name, b.Name) }) {
		bad = append(bad, "artifacts not sorted by name")
	}
	return bad
}

// check verifies that a manifest read from the key of (model, version) is
// consistent with it and with itself.
func (m *Manifest) check(model, version string) error {
	var bad []string
	if m.Format != FormatVersion {
		bad = append(bad, fmt.Sprintf("format %d, this reader knows %d", m.Format, FormatVersion))
	}
	if m.Model != model || m.Version != version {
		bad = append(bad, fmt.Sprintf("describes %s/%s, stored as %s/%s", m.Model, m.Version, model, version))
	}
	if at, err := VersionTime(version); err == nil && !at.Equal(m.CreatedAt.UTC().Truncate(time.Second)) {
		bad = append(bad, fmt.Sprintf("created_at %s does not match the version's %s", m.CreatedAt.Format(time.RFC3339), at.Format(time.RFC3339)))
	}
	bad = append(bad, m.problems()...)
	if len(bad) == 0 && version[len(versionTime)+1:] != m.contentHash() {
		bad = append(bad, fmt.Sprintf("content hash %s does not match the version", m.contentHash()))
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s: %s", ErrCorrupt, ManifestKey(model, version), strings.Join(bad, "; "))
	}
	return nil
}

// Get reads and checks the manifest of a version. A version whose manifest
// was never written (a registration that failed half-way) does not exist:
// the error wraps ErrNotFound.
func (c *Client) Get(ctx context.Context, model, version string) (Manifest, error) {
	if err := checkModelVersion(model, version); err != nil {
		return Manifest{}, err
	}
	key := ManifestKey(model, version)
	b, _, err := c.Store.Get(ctx, key)
	if err != nil {
		if errors.Is(err, objstore.ErrNotFound) {
			return Manifest{}, fmt.Errorf("%w: %s has no version %s (%s)", ErrNotFound, model, version, c.Store.URI(key))
		}
		return Manifest{}, fmt.Errorf("read manifest of %s/%s: %w", model, version, err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return Manifest{}, fmt.Errorf("%w: %s is not a valid manifest: %v", ErrCorrupt, c.Store.URI(key), err)
	}
	if err := m.check(model, version); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// Versions returns the manifests of a model's versions, oldest first (by
// creation time, then version). Versions whose manifest was never written
// are left out; a manifest that cannot be trusted is an error.
func (c *Client) Versions(ctx context.Context, model string) ([]Manifest, error) {
	if err := CheckModel(model); err != nil {
		return nil, err
	}
	prefix := ModelPrefix(model) + versionsDir
	var versions []string
	for info, err := range c.Store.List(ctx, prefix, objstore.ListOptions{Delimiter: "/"}) {
		if err != nil {
			return nil, fmt.Errorf("list versions of %s: %w", model, err)
		}
		if v, ok := strings.CutSuffix(strings.TrimPrefix(info.Key, prefix), "/"); ok && versionRE.MatchString(v) {
			versions = append(versions, v)
		}
	}
	out := make([]Manifest, 0, len(versions))
	for _, v := range versions {
		m, err := c.Get(ctx, model, v)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Manifest) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.Version, b.Version))
	})
	return out, nil
}

// ReadArtifact reads one artifact of a version and checks it against the
// manifest: a size or SHA-256 mismatch is ErrCorrupt.
func (c *Client) ReadArtifact(ctx context.Context, m Manifest, name string) ([]byte, error) {
	f, ok := m.Artifact(name)
	if !ok {
		return nil, fmt.Errorf("%w: %s/%s has no artifact %q", ErrNotFound, m.Model, m.Version, name)
	}
	key := ArtifactKey(m.Model, m.Version, name)
	b, _, err := c.Store.Get(ctx, key)
	if errors.Is(err, objstore.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s is listed in the manifest but missing", ErrCorrupt, c.Store.URI(key))
	}
	if err != nil {
		return nil, fmt.Errorf("read artifact %s of %s/%s: %w", name, m.Model, m.Version, err)
	}
	if int64(len(b)) != f.Bytes {
		return nil, fmt.Errorf("%w: %s has %d bytes, the manifest says %d", ErrCorrupt, c.Store.URI(key), len(b), f.Bytes)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != f.SHA256 {
		return nil, fmt.Errorf("%w: %s has sha256 %x, the manifest says %s", ErrCorrupt, c.Store.URI(key), sum, f.SHA256)
	}
	return b, nil
}

// Verify reads every artifact of a version and checks its size and
// checksum; the error joins every mismatch.
func (c *Client) Verify(ctx context.Context, m Manifest) error {
	var errs []error
	for _, f := range m.Artifacts {
		if _, err := c.ReadArtifact(ctx, m, f.Name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func joinRoles() string {
	s := make([]string, len(roles))
	for i, r := range roles {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}
