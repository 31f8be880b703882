package registry

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/objstore"
)

// Store is the part of the object store the registry needs;
// *objstore.Store implements it.
type Store interface {
	Get(ctx context.Context, key string) ([]byte, objstore.ObjectInfo, error)
	Put(ctx context.Context, key string, body []byte, opts objstore.PutOptions) (string, error)
	List(ctx context.Context, prefix string, opts objstore.ListOptions) iter.Seq2[objstore.ObjectInfo, error]
	// URI names a key in messages and events (s3://bucket/key).
	URI(key string) string
}

var _ Store = (*objstore.Store)(nil)

// Publisher publishes events; *events.Producer implements it.
type Publisher interface {
	Publish(ctx context.Context, evs ...*adaptrecv1.Event) error
}

var _ Publisher = (*events.Producer)(nil)

// PublisherFunc adapts a function to Publisher.
type PublisherFunc func(ctx context.Context, evs ...*adaptrecv1.Event) error

var _ Publisher = PublisherFunc(nil)

// Publish calls f.
func (f PublisherFunc) Publish(ctx context.Context, evs ...*adaptrecv1.Event) error {
	return f(ctx, evs...)
}

// Errors callers can test for with errors.Is.
var (
	// ErrNotFound reports a model, version or alias that does not exist.
	ErrNotFound = errors.New("not in the model registry")
	// ErrExists reports a Register of a version that is already registered.
	ErrExists = errors.New("model version already registered")
	// ErrInvalid reports a version refused by validation, or arguments that
	// make no sense (an unknown action, a canary weight outside (0, 1]).
	ErrInvalid = errors.New("invalid model version or registry change")
	// ErrCorrupt reports a manifest, artifact, aliases or history object
	// that cannot be trusted: unreadable, inconsistent with its key, or not
	// matching the manifest's sizes and checksums.
	ErrCorrupt = errors.New("corrupt model registry object")
	// ErrConflict reports a change that lost a race or whose precondition
	// no longer holds: the aliases changed after the caller read them, or
	// production is not the version the caller expected. Nothing was
	// written; read the aliases again and decide again.
	ErrConflict = errors.New("model aliases changed concurrently")
	// ErrNoPrevious reports a rollback with no previous version to go to.
	ErrNoPrevious = errors.New("no previous model version")
	// ErrUnpublished reports a change that was made (the aliases or the
	// version are written) but whose ModelLifecycleEvent was not published.
	// Applying the same change again publishes it.
	ErrUnpublished = errors.New("registry change made but its lifecycle event was not published")
)

// Root is the key prefix of every model.
const Root = "models/"

// FormatVersion is the manifest and aliases format this package writes and
// reads.
const FormatVersion = 1

// DefaultProducer is the envelope producer of the registry's events.
const DefaultProducer = "adaptrec/registry"

const (
	manifestName = "manifest.json"
	aliasesName  = "ALIASES.json"
	versionsDir  = "versions/"
	historyDir   = "history/"
	versionTime  = "20060102T150405Z"
)

var (
	modelRE    = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)
	versionRE  = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$`)
	artifactRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	historyRE  = regexp.MustCompile(`^[0-9]{12}\.json$`)
)

// ModelPrefix is the key prefix of one model's versions, aliases and
// history.
func ModelPrefix(model string) string { return Root + model + "/" }

// VersionPrefix is the key prefix of one version's files.
func VersionPrefix(model, version string) string {
	return ModelPrefix(model) + versionsDir + version + "/"
}

// ManifestKey is the key of a version's manifest.
func ManifestKey(model, version string) string { return VersionPrefix(model, version) + manifestName }

// ArtifactKey is the key of one artifact of a version.
func ArtifactKey(model, version, name string) string { return VersionPrefix(model, version) + name }

// AliasesKey is the key of a model's aliases object.
func AliasesKey(model string) string { return ModelPrefix(model) + aliasesName }

// HistoryKey is the key of the record of one revision of a model's
// aliases.
func HistoryKey(model string, revision int64) string {
	return fmt.Sprintf("%s%s%012d.json", ModelPrefix(model), historyDir, revision)
}

// VersionTime returns the creation time encoded in a version (to the
// second).
func VersionTime(version string) (time.Time, error) {
	if !versionRE.MatchString(version) {
		return time.Time{}, fmt.Errorf("%w: version %q is not <yyyymmddThhmmssZ>-<8 hex digits>", ErrInvalid, version)
	}
	return time.Parse(versionTime, version[:len(versionTime)])
}

// IsVersion reports whether s has the form of a version id (as opposed to
// an alias name).
func IsVersion(s string) bool { return versionRE.MatchString(s) }

// CheckModel reports whether name can be a model name.
func CheckModel(name string) error {
	if !modelRE.MatchString(name) {
		return fmt.Errorf("%w: model name %q is not ^[a-z][a-z0-9_-]{0,63}$", ErrInvalid, name)
	}
	return nil
}

func checkModelVersion(model, version string) error {
	if err := CheckModel(model); err != nil {
		return err
	}
	_, err := VersionTime(version)
	return err
}

// Client reads and changes the registry. Its fields are set once; it is
// safe for concurrent use.
type Client struct {
	// Store holds the registry; required.
	Store Store
	// Events receives a ModelLifecycleEvent for every registration and
	// alias change (adaptrec.model-lifecycle.v1); required by Register and
	// Apply, unused by readers.
	Events Publisher
	// Producer is the envelope producer of the events; DefaultProducer when
	// empty.
	Producer string
	// Features are the feature definitions serving feeds models from. When
	// set, Register refuses a version whose schema they cannot satisfy
	// (features.FeatureSet.Satisfies), and so does Apply for a version
	// about to get an alias.
	Features *features.FeatureSet
	// Validator, when set, runs on every version Register is asked to
	// write, after the built-in checks passed: it loads the ranker and
	// scores a probe batch. Without it Register runs the built-in checks
	// only.
	Validator Validator
	// RequiredMetrics name metrics every version must report (e.g. "auc").
	RequiredMetrics []string
	// Logf, when set, receives what the registry cannot return: a history
	// record that could not be written after a change that stands (the
	// next change writes it).
	Logf func(format string, args ...any)
	// Now returns the time changes are stamped with; time.Now when nil.
	Now func() time.Time
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now().UTC()
	}
	return time.Now().UTC()
}

func (c *Client) logf(format string, args ...any) {
	if c.Logf != nil {
		c.Logf(format, args...)
	}
}

func (c *Client) producer() string {
	if c.Producer != "" {
		return c.Producer
	}
	return DefaultProducer
}

func (c *Client) checkWriter() error {
	if c.Store == nil {
		return errors.New("registry: Client.Store is required")
	}
	if c.Events == nil {
		return errors.New("registry: Client.Events is required to change the registry: every change publishes a ModelLifecycleEvent")
	}
	return nil
}

// Models returns the names of the models that have versions or aliases,
// sorted.
func (c *Client) Models(ctx context.Context) ([]string, error) {
	var out []string
	for info, err := range c.Store.List(ctx, Root, objstore.ListOptions{Delimiter: "/"}) {
		if err != nil {
			return nil, fmt.Errorf("list models: %w", err)
		}
		if name, ok := strings.CutSuffix(strings.TrimPrefix(info.Key, Root), "/"); ok && modelRE.MatchString(name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, nil
}
