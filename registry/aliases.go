package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/objstore"
)

// Alias names.
const (
	AliasProduction = "production"
	AliasPrevious   = "previous"
	AliasShadow     = "shadow"
	AliasCanary     = "canary"
)

// AliasNames lists the alias names Resolve accepts.
var AliasNames = []string{AliasProduction, AliasPrevious, AliasShadow, AliasCanary}

// None is the Change.ExpectProduction of a caller that expects no
// production version yet.
const None = "none"

// Action is a kind of alias change.
type Action string

// Actions.
const (
	// ActionPromote makes Version production; the old production becomes
	// previous, and Version stops being canary or shadow.
	ActionPromote Action = "promote"
	// ActionRollback makes previous production again. The rolled-back
	// version is no longer referenced by any alias (previous becomes empty),
	// so a second rollback fails with ErrNoPrevious instead of rolling
	// forward to the version that was just taken out; to go forward,
	// promote it again.
	ActionRollback Action = "rollback"
	// ActionShadow makes Version the shadow (scored on live traffic, never
	// served).
	ActionShadow Action = "shadow"
	// ActionCanary makes Version the canary, served to Weight of the
	// traffic; Weight is in (0, 1].
	ActionCanary Action = "canary"
	// ActionClearShadow and ActionClearCanary remove the shadow or canary.
	ActionClearShadow Action = "clear-shadow"
	ActionClearCanary Action = "clear-canary"
)

// Actions lists every action.
var Actions = []Action{ActionPromote, ActionRollback, ActionShadow, ActionCanary, ActionClearShadow, ActionClearCanary}

// Change is one alias change: what Apply is asked to do, and, with
// Replaced and At filled in, the record kept in the aliases and history.
type Change struct {
	Action Action `json:"action"`
	// Version is the version the change gives an alias to: required for
	// promote, shadow and canary; for rollback and the clears Apply fills
	// it in (the new production, the cleared version).
	Version string `json:"version,omitempty"`
	// Weight is the canary's share of traffic, in (0, 1]; canary only.
	Weight float64 `json:"weight,omitempty"`
	// ExpectProduction, when set, is the production version the change was
	// decided on (None for none): if production is another, the change
	// fails with ErrConflict.
	ExpectProduction string `json:"expect_production,omitempty"`
	// Actor is who or what makes the change (required); Reason why.
	Actor  string `json:"actor"`
	Reason string `json:"reason,omitempty"`
	// Replaced is the version that lost the alias (the old production,
	// shadow or canary; for a rollback the version rolled back from).
	// Apply fills it in.
	Replaced string `json:"replaced,omitempty"`
	// At is when the change was made. Apply fills it in.
	At time.Time `json:"at,omitzero"`
}

// Aliases is a model's aliases at one revision: what serving reads.
type Aliases struct {
	// Format is FormatVersion.
	Format int    `json:"format"`
	Model  string `json:"model"`
	// Revision counts changes: 0 before the first, then 1, 2, ...
	Revision int64 `json:"revision"`
	// Production serves traffic; Previous is what a rollback returns to.
	Production string `json:"production,omitempty"`
	Previous   string `json:"previous,omitempty"`
	// Shadow is scored on live traffic and never served.
	Shadow string `json:"shadow,omitempty"`
	// Canary is served to CanaryWeight of the traffic.
	Canary       string  `json:"canary,omitempty"`
	CanaryWeight float64 `json:"canary_weight,omitempty"`
	// UpdatedAt is when this revision was written.
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	// Change is the change that made this revision; nil at revision 0.
	Change *Change `json:"change,omitempty"`

	// etag is the aliases object's ETag when read ("" when it does not
	// exist); raw its bytes, written to history as they are.
	etag string
	raw  []byte
}

// Get returns the version an alias names ("" when unset) and whether name
// is an alias.
func (a Aliases) Get(name string) (string, bool) {
	switch name {
	case AliasProduction:
		return a.Production, true
	case AliasPrevious:
		return a.Previous, true
	case AliasShadow:
		return a.Shadow, true
	case AliasCanary:
		return a.Canary, true
	}
	return "", false
}

// Of returns the aliases that name version, in AliasNames order.
func (a Aliases) Of(version string) []string {
	var out []string
	for _, n := range AliasNames {
		if v, _ := a.Get(n); v == version && v != "" {
			out = append(out, n)
		}
	}
	return out
}

func (a *Aliases) check(model string) error {
	var bad []string
	if a.Format != FormatVersion {
		bad = append(bad, fmt.Sprintf("format %d, this reader knows %d", a.Format, FormatVersion))
	}
	if a.Model != model {
		bad = append(bad, fmt.Sprintf("describes model %q", a.Model))
	}
	if a.Revision < 1 {
		bad = append(bad, fmt.Sprintf("revision %d", a.Revision))
	}
	for _, n := range AliasNames {
		if v, _ := a.Get(n); v != "" && !versionRE.MatchString(v) {
			bad = append(bad, fmt.Sprintf("%s %q is not a version", n, v))
		}
	}
	if (a.Canary == "") != (a.CanaryWeight == 0) || a.CanaryWeight < 0 || a.CanaryWeight > 1 || math.IsNaN(a.CanaryWeight) {
		bad = append(bad, fmt.Sprintf("canary %q with weight %v", a.Canary, a.CanaryWeight))
	}
	if a.Change == nil {
		bad = append(bad, "no change record")
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

func decodeAliases(b []byte, model string) (Aliases, error) {
	var a Aliases
	if err := json.Unmarshal(b, &a); err != nil {
		return Aliases{}, err
	}
	if err := a.check(model); err != nil {
		return Aliases{}, err
	}
	a.raw = b
	return a, nil
}

// Aliases returns a model's aliases. A model that never had an alias
// change yields revision 0 with every alias empty; it can be passed to
// ApplyFrom like any other state.
func (c *Client) Aliases(ctx context.Context, model string) (Aliases, error) {
	if err := CheckModel(model); err != nil {
		return Aliases{}, err
	}
	key := AliasesKey(model)
	b, info, err := c.Store.Get(ctx, key)
	if errors.Is(err, objstore.ErrNotFound) {
		return Aliases{Format: FormatVersion, Model: model}, nil
	}
	if err != nil {
		return Aliases{}, fmt.Errorf("read aliases of %s: %w", model, err)
	}
	a, err := decodeAliases(b, model)
	if err != nil {
		return Aliases{}, fmt.Errorf("%w: %s: %v", ErrCorrupt, c.Store.URI(key), err)
	}
	if info.ETag == "" {
		return Aliases{}, fmt.Errorf("read aliases of %s: the store returned no ETag; conditional updates are impossible", model)
	}
	a.etag = info.ETag
	return a, nil
}

// Resolve returns the version ref names: a version id (which must be
// registered) or an alias name (which must be set).
func (c *Client) Resolve(ctx context.Context, model, ref string) (string, error) {
	if IsVersion(ref) {
		if _, err := c.Get(ctx, model, ref); err != nil {
			return "", err
		}
		return ref, nil
	}
	if !isAlias(ref) {
		return "", fmt.Errorf("%w: %q is neither a version (<yyyymmddThhmmssZ>-<8 hex digits>) nor an alias (%s)", ErrInvalid, ref, strings.Join(AliasNames, ", "))
	}
	a, err := c.Aliases(ctx, model)
	if err != nil {
		return "", err
	}
	v, _ := a.Get(ref)
	if v == "" {
		return "", fmt.Errorf("%w: %s has no %s version", ErrNotFound, model, ref)
	}
	return v, nil
}

func isAlias(s string) bool {
	_, ok := Aliases{}.Get(s)
	return ok
}

// Apply reads a model's aliases and applies ch to them; see ApplyFrom.
func (c *Client) Apply(ctx context.Context, model string, ch Change) (Aliases, error) {
	from, err := c.Aliases(ctx, model)
	if err != nil {
		return Aliases{}, err
	}
	return c.ApplyFrom(ctx, from, ch)
}

// ApplyFrom applies ch to the aliases from (returned by Aliases or an
// earlier ApplyFrom) with a compare-and-swap: if the aliases are no longer
// from, nothing is written and the error wraps ErrConflict (describing
// what they are now). It never retries on newer state: the caller decided
// on from, and decides again.
//
// A version about to get an alias is checked first: its manifest and
// every artifact's checksum (ErrCorrupt), and its schema against
// Client.Features (ErrInvalid). A change that would change
// nothing (promoting production, clearing an empty canary) writes nothing
// and returns from; if from's last change was the same change, its event
// is published again with the same id, completing a change whose event was
// lost.
//
// After the swap the new revision is recorded in the history and a
// ModelLifecycleEvent is published. If publishing fails the change stands
// and the error wraps ErrUnpublished.
func (c *Client) ApplyFrom(ctx context.Context, from Aliases, ch Change) (Aliases, error) {
	if err := c.checkWriter(); err != nil {
		return Aliases{}, err
	}
	model := from.Model
	if err := CheckModel(model); err != nil {
		return Aliases{}, err
	}
	if err := checkChange(ch); err != nil {
		return Aliases{}, err
	}
	if want := ch.ExpectProduction; want != "" && want != orNone(from.Production) {
		return Aliases{}, fmt.Errorf("%w: %s production is %s, not %s as expected (revision %d%s)",
			ErrConflict, model, orNone(from.Production), want, from.Revision, lastChange(from))
	}
	next, target, err := plan(from, ch)
	if err != nil {
		return Aliases{}, err
	}
	if next == nil {
		if from.Change != nil && from.Change.Action == ch.Action && from.Change.Version == target {
			if err := c.publish(ctx, from); err != nil {
				return from, err
			}
		}
		return from, nil
	}
	if target != "" {
		if err := c.checkTarget(ctx, model, target); err != nil {
			return Aliases{}, err
		}
	}
	// Every revision before the new one must be in the history before the
	// swap: its writer may have stopped between its swap and its record.
	if from.Revision > 0 {
		if err := c.putHistory(ctx, from); err != nil {
			return Aliases{}, fmt.Errorf("record revision %d of %s before changing it (nothing changed): %w", from.Revision, model, err)
		}
	}
	now := c.now()
	next.Format, next.Model, next.Revision, next.UpdatedAt = FormatVersion, model, from.Revision+1, now
	next.Change.At, next.Change.Actor, next.Change.Reason, next.Change.ExpectProduction = now, ch.Actor, ch.Reason, ch.ExpectProduction
	body, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return Aliases{}, fmt.Errorf("encode aliases of %s: %w", model, err)
	}
	opts := objstore.PutOptions{IfMatch: from.etag, ContentType: "application/json"}
	if from.etag == "" {
		opts = objstore.PutOptions{IfNoneMatch: "*", ContentType: "application/json"}
	}
	etag, err := c.Store.Put(ctx, AliasesKey(model), body, opts)
	if errors.Is(err, objstore.ErrPreconditionFailed) {
		return Aliases{}, c.conflict(ctx, from, ch, err)
	}
	if err != nil {
		return Aliases{}, fmt.Errorf("write aliases of %s: %w", model, err)
	}
	next.etag, next.raw = etag, body
	if err := c.putHistory(ctx, *next); err != nil {
		// The change stands; the next change records this revision first.
		c.logf("registry: %s revision %d is made but not yet in the history (the next change records it): %v", model, next.Revision, err)
	}
	if err := c.publish(ctx, *next); err != nil {
		return *next, err
	}
	return *next, nil
}

func checkChange(ch Change) error {
	var bad []string
	switch ch.Action {
	case ActionPromote, ActionShadow, ActionCanary:
		if !versionRE.MatchString(ch.Version) {
			bad = append(bad, fmt.Sprintf("version %q is not <yyyymmddThhmmssZ>-<8 hex digits>", ch.Version))
		}
	case ActionRollback, ActionClearShadow, ActionClearCanary:
		if ch.Version != "" {
			bad = append(bad, fmt.Sprintf("%s takes no version (got %q)", ch.Action, ch.Version))
		}
	default:
		bad = append(bad, fmt.Sprintf("action %q is not one of %s", ch.Action, joinActions()))
	}
	if ch.Action == ActionCanary {
		if !(ch.Weight > 0 && ch.Weight <= 1) {
			bad = append(bad, fmt.Sprintf("canary weight %v is not in (0, 1]", ch.Weight))
		}
	} else if ch.Weight != 0 {
		bad = append(bad, fmt.Sprintf("weight %v is only for %s", ch.Weight, ActionCanary))
	}
	if e := ch.ExpectProduction; e != "" && e != None && !versionRE.MatchString(e) {
		bad = append(bad, fmt.Sprintf("expected production %q is neither a version nor %q", e, None))
	}
	if strings.TrimSpace(ch.Actor) == "" {
		bad = append(bad, "actor missing: say who makes the change")
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(bad, "; "))
	}
	return nil
}

// plan returns the aliases ch makes from from (nil when it changes
// nothing) and the version that gets an alias ("" for the clears).
func plan(from Aliases, ch Change) (*Aliases, string, error) {
	next := from
	next.Change = &Change{Action: ch.Action, Version: ch.Version, Weight: ch.Weight}
	v := ch.Version
	switch ch.Action {
	case ActionPromote:
		if from.Production == v {
			return nil, v, nil
		}
		// The first production has nothing to roll back to: previous
		// stays empty.
		next.Production, next.Previous, next.Change.Replaced = v, from.Production, from.Production
		if next.Canary == v {
			next.Canary, next.CanaryWeight = "", 0
		}
		if next.Shadow == v {
			next.Shadow = ""
		}
	case ActionRollback:
		if from.Production == "" {
			return nil, "", fmt.Errorf("%w: %s has no production version to roll back", ErrNoPrevious, from.Model)
		}
		if from.Previous == "" {
			return nil, "", fmt.Errorf("%w: %s has only production %s (revision %d%s)", ErrNoPrevious, from.Model, from.Production, from.Revision, lastChange(from))
		}
		v = from.Previous
		next.Production, next.Previous = from.Previous, ""
		next.Change.Version, next.Change.Replaced = from.Previous, from.Production
		if next.Canary == v {
			next.Canary, next.CanaryWeight = "", 0
		}
		if next.Shadow == v {
			next.Shadow = ""
		}
	case ActionShadow:
		if from.Shadow == v {
			return nil, v, nil
		}
		if from.Production == v {
			return nil, "", fmt.Errorf("%w: %s is %s production; a shadow must be another version", ErrInvalid, v, from.Model)
		}
		next.Shadow, next.Change.Replaced = v, from.Shadow
	case ActionCanary:
		if from.Canary == v && from.CanaryWeight == ch.Weight {
			return nil, v, nil
		}
		if from.Production == v {
			return nil, "", fmt.Errorf("%w: %s is %s production; a canary must be another version", ErrInvalid, v, from.Model)
		}
		next.Canary, next.CanaryWeight = v, ch.Weight
		if from.Canary != v {
			next.Change.Replaced = from.Canary
		}
	case ActionClearShadow:
		if from.Shadow == "" {
			return nil, "", nil
		}
		next.Shadow, next.Change.Version = "", from.Shadow
		return &next, "", nil
	case ActionClearCanary:
		if from.Canary == "" {
			return nil, "", nil
		}
		next.Canary, next.CanaryWeight, next.Change.Version = "", 0, from.Canary
		return &next, "", nil
	}
	return &next, v, nil
}

// checkTarget verifies a version before it gets an alias: manifest,
// checksums of every artifact, and the schema against Client.Features
// (every alias but previous serves or scores live traffic, and previous is
// only ever reached through production).
func (c *Client) checkTarget(ctx context.Context, model, version string) error {
	m, err := c.Get(ctx, model, version)
	if err != nil {
		return err
	}
	if err := c.Verify(ctx, m); err != nil {
		return fmt.Errorf("%s/%s cannot get an alias: %w", model, version, err)
	}
	if c.Features != nil {
		if err := c.Features.Satisfies(m.Schema); err != nil {
			return fmt.Errorf("%w: %s/%s cannot serve with these feature definitions: %w", ErrInvalid, model, version, err)
		}
	}
	return nil
}

// conflict explains a lost compare-and-swap with what the aliases are now.
func (c *Client) conflict(ctx context.Context, from Aliases, ch Change, cause error) error {
	what := fmt.Sprintf("%s %s", ch.Action, orNone(ch.Version))
	now, err := c.Aliases(ctx, from.Model)
	if err != nil {
		return fmt.Errorf("%w: %s of %s lost a race with another change from revision %d (and the aliases cannot be read again: %v): %w",
			ErrConflict, what, from.Model, from.Revision, err, cause)
	}
	return fmt.Errorf("%w: %s of %s was decided on revision %d, but the aliases are at revision %d now (production %s%s); nothing was changed: read them again and decide again",
		ErrConflict, what, from.Model, from.Revision, now.Revision, orNone(now.Production), lastChange(now))
}

func lastChange(a Aliases) string {
	if a.Change == nil {
		return ""
	}
	s := fmt.Sprintf(", last change %s %s by %s at %s", a.Change.Action, orNone(a.Change.Version), a.Change.Actor, a.Change.At.Format(time.RFC3339))
	if a.Change.Reason != "" {
		s += ": " + a.Change.Reason
	}
	return s
}

// publish announces the change that made revision a.
func (c *Client) publish(ctx context.Context, a Aliases) error {
	ch := a.Change
	e := &adaptrecv1.ModelLifecycleEvent{
		ModelName:       a.Model,
		ModelVersion:    ch.Version,
		PreviousVersion: ch.Replaced,
		Reason:          ch.Reason,
		Actor:           ch.Actor,
	}
	switch ch.Action {
	case ActionPromote:
		e.Stage = adaptrecv1.LifecycleStage_LIFECYCLE_STAGE_PROMOTED
	case ActionRollback:
		e.Stage = adaptrecv1.LifecycleStage_LIFECYCLE_STAGE_ROLLED_BACK
	case ActionShadow:
		e.Stage = adaptrecv1.LifecycleStage_LIFECYCLE_STAGE_SHADOW
	case ActionCanary:
		e.Stage, e.CanaryWeight = adaptrecv1.LifecycleStage_LIFECYCLE_STAGE_CANARY, ch.Weight
	case ActionClearShadow, ActionClearCanary:
		e.Stage = adaptrecv1.LifecycleStage_LIFECYCLE_STAGE_RETIRED
	}
	if ch.Version != "" {
		e.ArtifactUri = c.Store.URI(VersionPrefix(a.Model, ch.Version))
	}
	ev := c.event(EventID(a.Model, a.Revision), ch.At, e)
	if err := c.Events.Publish(ctx, ev); err != nil {
		return fmt.Errorf("%s revision %d (%s %s) is made but %w (%s): %w", a.Model, a.Revision, ch.Action, orNone(ch.Version), ErrUnpublished, events.TopicModelLifecycle, err)
	}
	return nil
}

// EventID is the event id of the ModelLifecycleEvent announcing a
// revision of a model's aliases. Revisions order changes: a consumer that
// sees events out of order (two changes published concurrently) re-reads
// the aliases object or compares the ids' revisions.
func EventID(model string, revision int64) string {
	return fmt.Sprintf("model-lifecycle:%s:r%012d", model, revision)
}

// putHistory writes the record of one revision, create-only: a record
// that is already there was written from the same revision, whose bytes
// only one writer could ever have swapped in.
func (c *Client) putHistory(ctx context.Context, a Aliases) error {
	body := a.raw
	if body == nil {
		var err error
		if body, err = json.MarshalIndent(a, "", "  "); err != nil {
			return err
		}
	}
	_, err := c.Store.Put(ctx, HistoryKey(a.Model, a.Revision), body, objstore.PutOptions{IfNoneMatch: "*", ContentType: "application/json"})
	if errors.Is(err, objstore.ErrPreconditionFailed) {
		return nil
	}
	return err
}

// History returns every revision of a model's aliases, oldest first, each
// with the change that made it (actor, reason, time). The current revision
// is included even if its writer has not recorded it yet.
func (c *Client) History(ctx context.Context, model string) ([]Aliases, error) {
	cur, err := c.Aliases(ctx, model)
	if err != nil {
		return nil, err
	}
	prefix := ModelPrefix(model) + historyDir
	var out []Aliases
	for info, err := range c.Store.List(ctx, prefix, objstore.ListOptions{}) {
		if err != nil {
			return nil, fmt.Errorf("list history of %s: %w", model, err)
		}
		name := strings.TrimPrefix(info.Key, prefix)
		if !historyRE.MatchString(name) {
			continue
		}
		b, _, err := c.Store.Get(ctx, info.Key)
		if err != nil {
			return nil, fmt.Errorf("read history of %s: %w", model, err)
		}
		a, err := decodeAliases(b, model)
		if err == nil && HistoryKey(model, a.Revision) != info.Key {
			err = fmt.Errorf("holds revision %d", a.Revision)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, c.Store.URI(info.Key), err)
		}
		if a.Revision > cur.Revision {
			// Written after cur was read: the list is as of cur.
			break
		}
		out = append(out, a)
	}
	if cur.Revision > 0 && (len(out) == 0 || out[len(out)-1].Revision < cur.Revision) {
		out = append(out, cur)
	}
	for i, a := range out {
		if a.Revision != int64(i+1) {
			return nil, fmt.Errorf("%w: the history of %s lacks revision %d (%s)", ErrCorrupt, model, i+1, c.Store.URI(HistoryKey(model, int64(i+1))))
		}
	}
	return out, nil
}

func orNone(s string) string {
	if s == "" {
		return None
	}
	return s
}

func joinActions() string {
	s := make([]string, len(Actions))
	for i, a := range Actions {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}
