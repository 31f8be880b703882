package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/objstore"
)

// Artifact is one file of a version to register.
type Artifact struct {
	// Name is the file name within the version (e.g. ranker.onnx).
	Name string
	Role Role
	Data []byte
}

// RegisterRequest describes a version to register.
type RegisterRequest struct {
	// Model names the model (e.g. ranker).
	Model string
	// CreatedAt is the version's creation time; now when zero. A retried
	// registration that passes the same time and content computes the same
	// version, and gets ErrExists with the manifest that is registered.
	CreatedAt time.Time
	// Schema is the ranker's input schema (features.Layout.Schema of the
	// training layout); its SchemaHash is the version's schema hash.
	Schema features.ModelSchema
	// TrainingSet is the training set id; CodeVersion the trainer's code.
	TrainingSet string
	CodeVersion string
	// Parameters are the training parameters, as text.
	Parameters map[string]string
	// Metrics are the offline evaluation metrics; at least one, all finite.
	Metrics map[string]float64
	// Artifacts are the files; exactly one with RoleRanker.
	Artifacts []Artifact
	// Actor is who or what registers (a user, a workflow id); Reason why.
	Actor  string
	Reason string
}

// Register validates a version, writes its artifacts and then its manifest,
// all create-only, and publishes a LIFECYCLE_STAGE_REGISTERED event. It
// changes no alias.
//
// A version that fails validation is refused with a *ValidationError
// (wrapping ErrInvalid) before anything is written. A version that is
// already registered is refused with ErrExists; when its content is the
// request's (a retry), the registered manifest is returned with the error.
// If the event cannot be published the version stays registered and the
// error wraps ErrUnpublished.
func (c *Client) Register(ctx context.Context, req RegisterRequest) (Manifest, error) {
	if err := c.checkWriter(); err != nil {
		return Manifest{}, err
	}
	m, data, err := c.prepare(ctx, req)
	if err != nil {
		return Manifest{}, err
	}
	// Fail before uploading artifacts when the version exists.
	if existing, err := c.Get(ctx, m.Model, m.Version); err == nil {
		return existing, fmt.Errorf("%w: %s/%s (%s)", ErrExists, m.Model, m.Version, c.Store.URI(m.Key()))
	} else if !errors.Is(err, ErrNotFound) {
		return Manifest{}, err
	}
	for _, f := range m.Artifacts {
		if err := c.putArtifact(ctx, m, f, data[f.Name]); err != nil {
			return Manifest{}, err
		}
	}
	body, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Manifest{}, fmt.Errorf("encode manifest of %s/%s: %w", m.Model, m.Version, err)
	}
	_, err = c.Store.Put(ctx, m.Key(), body, objstore.PutOptions{IfNoneMatch: "*", ContentType: "application/json"})
	if errors.Is(err, objstore.ErrPreconditionFailed) {
		existing, gerr := c.Get(ctx, m.Model, m.Version)
		if gerr != nil {
			return Manifest{}, fmt.Errorf("%w: %s/%s was registered concurrently, and its manifest cannot be read: %w", ErrExists, m.Model, m.Version, gerr)
		}
		return existing, fmt.Errorf("%w: %s/%s was registered concurrently (%s)", ErrExists, m.Model, m.Version, c.Store.URI(m.Key()))
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("write manifest of %s/%s: %w", m.Model, m.Version, err)
	}
	ev := c.event("model-lifecycle:"+m.Model+":registered:"+m.Version, m.CreatedAt, &adaptrecv1.ModelLifecycleEvent{
		ModelName:    m.Model,
		ModelVersion: m.Version,
		Stage:        adaptrecv1.LifecycleStage_LIFECYCLE_STAGE_REGISTERED,
		Reason:       m.Reason,
		Actor:        m.RegisteredBy,
		ArtifactUri:  c.Store.URI(VersionPrefix(m.Model, m.Version)),
	})
	if err := c.Events.Publish(ctx, ev); err != nil {
		return m, fmt.Errorf("%s/%s is registered but %w (%s): %w", m.Model, m.Version, ErrUnpublished, events.TopicModelLifecycle, err)
	}
	return m, nil
}

// prepare builds and validates the manifest of a request; it writes
// nothing.
func (c *Client) prepare(ctx context.Context, req RegisterRequest) (Manifest, map[string][]byte, error) {
	created := req.CreatedAt
	if created.IsZero() {
		created = c.now()
	}
	m := Manifest{
		Format:       FormatVersion,
		Model:        req.Model,
		CreatedAt:    created.UTC().Truncate(time.Millisecond),
		SchemaHash:   req.Schema.SchemaHash,
		Schema:       req.Schema,
		TrainingSet:  req.TrainingSet,
		CodeVersion:  req.CodeVersion,
		Parameters:   maps.Clone(req.Parameters),
		Metrics:      maps.Clone(req.Metrics),
		RegisteredBy: req.Actor,
		Reason:       req.Reason,
	}
	if len(m.Parameters) == 0 {
		m.Parameters = nil
	}
	if w, err := schemaWidth(req.Schema); err == nil {
		m.InputWidth = w
	}
	data := make(map[string][]byte, len(req.Artifacts))
	for _, a := range req.Artifacts {
		sum := sha256.Sum256(a.Data)
		m.Artifacts = append(m.Artifacts, File{Name: a.Name, Role: a.Role, Bytes: int64(len(a.Data)), SHA256: hex.EncodeToString(sum[:])})
		data[a.Name] = a.Data
	}
	slices.SortStableFunc(m.Artifacts, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	bad := m.problems()
	for _, name := range c.RequiredMetrics {
		if _, ok := m.Metrics[name]; !ok {
			bad = append(bad, fmt.Sprintf("metric %s missing (required)", name))
		}
	}
	if c.Features != nil && len(m.Schema.Features) > 0 {
		if err := c.Features.Satisfies(m.Schema); err != nil {
			bad = append(bad, err.Error())
		}
	}
	vErr := &ValidationError{Model: req.Model}
	if len(bad) > 0 {
		vErr.Problems = bad
		return Manifest{}, nil, vErr
	}
	m.Version = m.CreatedAt.Format(versionTime) + "-" + m.contentHash()
	vErr.Version = m.Version
	if bad := builtinProblems(&m, data); len(bad) > 0 {
		vErr.Problems = bad
		return Manifest{}, nil, vErr
	}
	if c.Validator != nil {
		if err := c.Validator.Validate(ctx, m, data); err != nil {
			if ctx.Err() != nil {
				return Manifest{}, nil, fmt.Errorf("validate %s/%s: %w", m.Model, m.Version, err)
			}
			vErr.Validator = err
			return Manifest{}, nil, vErr
		}
	}
	return m, data, nil
}

// putArtifact writes one artifact create-only. An artifact that is already
// there with the same bytes (a retry of a registration that stopped before
// its manifest) is accepted.
func (c *Client) putArtifact(ctx context.Context, m Manifest, f File, data []byte) error {
	key := ArtifactKey(m.Model, m.Version, f.Name)
	_, err := c.Store.Put(ctx, key, data, objstore.PutOptions{IfNoneMatch: "*"})
	if errors.Is(err, objstore.ErrPreconditionFailed) {
		have, _, gerr := c.Store.Get(ctx, key)
		if gerr != nil {
			return fmt.Errorf("write artifact %s of %s/%s: it exists and cannot be read: %w", f.Name, m.Model, m.Version, gerr)
		}
		if !bytes.Equal(have, data) {
			return fmt.Errorf("%w: %s exists with other bytes than %s/%s registers", ErrCorrupt, c.Store.URI(key), m.Model, m.Version)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("write artifact %s of %s/%s: %w", f.Name, m.Model, m.Version, err)
	}
	return nil
}

func (c *Client) event(id string, at time.Time, e *adaptrecv1.ModelLifecycleEvent) *adaptrecv1.Event {
	return events.NewModelLifecycle(id, at, c.producer(), e)
}
