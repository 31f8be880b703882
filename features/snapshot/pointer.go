package snapshot

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/adaptrec/adaptrec/internal/objstore"
)

// Pointer is a group's current-snapshot pointer.
type Pointer struct {
	// Group is the feature group.
	Group string `json:"group"`
	// Version is the current snapshot; empty in the zero Pointer that
	// Current returns for a group that never had one.
	Version string `json:"version"`
	// Previous is the snapshot that was current before, the target of a
	// rollback; empty when there was none.
	Previous string `json:"previous,omitempty"`
	// UpdatedAt is when the pointer was last written.
	UpdatedAt time.Time `json:"updated_at"`
	// RolledBack is true when Version became current through Rollback.
	RolledBack bool `json:"rolled_back,omitempty"`

	// etag is the pointer object's ETag when read; "" when it does not
	// exist. FlipFrom writes only if it is still the same.
	etag string
}

// Current returns a group's pointer. A group without one yields a Pointer
// with an empty Version and an error wrapping ErrNotFound; that Pointer can
// still be passed to FlipFrom to create the first one.
func Current(ctx context.Context, st Store, group string) (Pointer, error) {
	if err := checkGroup(group); err != nil {
		return Pointer{}, err
	}
	key := PointerKey(group)
	b, info, err := st.Get(ctx, key)
	if errors.Is(err, objstore.ErrNotFound) {
		return Pointer{Group: group}, fmt.Errorf("%w: group %s has no current snapshot (%s)", ErrNotFound, group, key)
	}
	if err != nil {
		return Pointer{}, fmt.Errorf("read pointer of %s: %w", group, err)
	}
	var p Pointer
	if err := json.Unmarshal(b, &p); err != nil {
		return Pointer{}, fmt.Errorf("%w: %s is not a valid pointer: %v", ErrCorrupt, key, err)
	}
	if p.Group != group || checkGroupVersion(group, p.Version) != nil || (p.Previous != "" && checkGroupVersion(group, p.Previous) != nil) {
		return Pointer{}, fmt.Errorf("%w: %s names group %q version %q previous %q", ErrCorrupt, key, p.Group, p.Version, p.Previous)
	}
	if info.ETag == "" {
		return Pointer{}, fmt.Errorf("read pointer of %s: the store returned no ETag; conditional updates are impossible", group)
	}
	p.etag = info.ETag
	return p, nil
}

// Flip makes version the group's current snapshot, with the old current
// one as Previous. See FlipFrom.
func Flip(ctx context.Context, st Store, group, version string) (Pointer, error) {
	cur, err := Current(ctx, st, group)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Pointer{}, err
	}
	return FlipFrom(ctx, st, cur, version)
}

// FlipFrom makes version current, provided the pointer is still what from
// says (a Pointer returned by Current, or by an earlier flip): a
// compare-and-swap on the pointer object's ETag, or a create-only write
// when from has no Version. If the pointer changed in between, nothing is
// written and the error wraps ErrConflict, so of two concurrent flips from
// the same state exactly one wins.
//
// The snapshot's manifest must exist and be valid, and the version must not
// be rejected. Flipping to the version that is already current changes
// nothing and returns the pointer as it is.
func FlipFrom(ctx context.Context, st Store, from Pointer, version string) (Pointer, error) {
	return swap(ctx, st, from, version, false)
}

// Rollback makes the previous snapshot current again, with the one it
// replaces as the new Previous (so a second rollback rolls forward). It
// fails with ErrNoPrevious when there is none and with ErrConflict when the
// pointer changes meanwhile.
func Rollback(ctx context.Context, st Store, group string) (Pointer, error) {
	cur, err := Current(ctx, st, group)
	if err != nil {
		return Pointer{}, err
	}
	return RollbackFrom(ctx, st, cur)
}

// RollbackFrom is Rollback from a pointer read earlier by Current: it makes
// from.Previous current only if the pointer is still from (ErrConflict
// otherwise), so a caller can prepare the target (load it into a cache)
// before the switch.
func RollbackFrom(ctx context.Context, st Store, from Pointer) (Pointer, error) {
	if from.Version == "" || from.etag == "" {
		return Pointer{}, fmt.Errorf("%w: group %s has no current snapshot to roll back from", ErrNotFound, from.Group)
	}
	if from.Previous == "" {
		return Pointer{}, fmt.Errorf("%w: %s has only %s", ErrNoPrevious, from.Group, from.Version)
	}
	return swap(ctx, st, from, from.Previous, true)
}

func swap(ctx context.Context, st Store, from Pointer, version string, rollback bool) (Pointer, error) {
	group := from.Group
	if err := checkGroupVersion(group, version); err != nil {
		return Pointer{}, err
	}
	if from.Version == version && from.etag != "" {
		return from, nil
	}
	if _, err := ReadManifest(ctx, st, group, version); err != nil {
		return Pointer{}, fmt.Errorf("make %s/%s current: %w", group, version, err)
	}
	if why, err := Rejection(ctx, st, group, version); err != nil {
		return Pointer{}, err
	} else if why != "" {
		return Pointer{}, fmt.Errorf("make %s/%s current: %w: %s", group, version, ErrRejected, why)
	}
	next := Pointer{Group: group, Version: version, Previous: from.Version, UpdatedAt: time.Now().UTC(), RolledBack: rollback}
	body, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return Pointer{}, fmt.Errorf("encode pointer of %s: %w", group, err)
	}
	opts := objstore.PutOptions{IfMatch: from.etag, ContentType: "application/json"}
	if from.etag == "" {
		opts = objstore.PutOptions{IfNoneMatch: "*", ContentType: "application/json"}
	}
	etag, err := st.Put(ctx, PointerKey(group), body, opts)
	if errors.Is(err, objstore.ErrPreconditionFailed) {
		was := from.Version
		if was == "" {
			was = "none"
		}
		return Pointer{}, fmt.Errorf("%w: %s moved away from %s before %s could become current: %w", ErrConflict, group, was, version, err)
	}
	if err != nil {
		return Pointer{}, fmt.Errorf("write pointer of %s: %w", group, err)
	}
	next.etag = etag
	return next, nil
}

// rejection is the note Reject writes; Accept empties its reason.
type rejection struct {
	Group      string    `json:"group"`
	Version    string    `json:"version"`
	Reason     string    `json:"reason,omitempty"`
	RejectedAt time.Time `json:"rejected_at,omitzero"`
	AcceptedAt time.Time `json:"accepted_at,omitzero"`
}

// Reject records that validation refused a snapshot: FlipFrom refuses it
// and History leaves it out. The snapshot's files stay for inspection.
func Reject(ctx context.Context, st Store, group, version, reason string) error {
	if reason == "" {
		return fmt.Errorf("%w: reject %s/%s: a reason is required", ErrInvalid, group, version)
	}
	return writeNote(ctx, st, rejection{Group: group, Version: version, Reason: reason, RejectedAt: time.Now().UTC()})
}

// Accept withdraws a rejection, when a later validation of the same
// version (same content, other bounds) passed.
func Accept(ctx context.Context, st Store, group, version string) error {
	why, err := Rejection(ctx, st, group, version)
	if err != nil || why == "" {
		return err
	}
	return writeNote(ctx, st, rejection{Group: group, Version: version, AcceptedAt: time.Now().UTC()})
}

func writeNote(ctx context.Context, st Store, r rejection) error {
	if err := checkGroupVersion(r.Group, r.Version); err != nil {
		return err
	}
	body, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode rejection note of %s/%s: %w", r.Group, r.Version, err)
	}
	if _, err := st.Put(ctx, RejectedKey(r.Group, r.Version), body, objstore.PutOptions{ContentType: "application/json"}); err != nil {
		return fmt.Errorf("write rejection note of %s/%s: %w", r.Group, r.Version, err)
	}
	return nil
}

// Rejection returns why a snapshot was rejected, or "" if it was not (or
// the rejection was withdrawn by Accept).
func Rejection(ctx context.Context, st Store, group, version string) (string, error) {
	b, _, err := st.Get(ctx, RejectedKey(group, version))
	if errors.Is(err, objstore.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read rejection of %s/%s: %w", group, version, err)
	}
	var r rejection
	if err := json.Unmarshal(b, &r); err != nil || r.Group != group || r.Version != version {
		return "", fmt.Errorf("%w: rejection note %s is unreadable", ErrCorrupt, RejectedKey(group, version))
	}
	return r.Reason, nil
}

// History returns the manifests of a group's snapshots ordered by AsOf
// (then CreatedAt: of two snapshots with one cutoff, the later written
// comes last), for point-in-time joins. Snapshots whose manifest was
// never completed and rejected snapshots are left out; a manifest that
// cannot be trusted is an error.
func History(ctx context.Context, st Store, group string) ([]Manifest, error) {
	if err := checkGroup(group); err != nil {
		return nil, err
	}
	prefix := GroupPrefix(group)
	var versions []string
	rejected := map[string]bool{}
	for info, err := range st.List(ctx, prefix, objstore.ListOptions{Delimiter: "/"}) {
		if err != nil {
			return nil, fmt.Errorf("list snapshots of %s: %w", group, err)
		}
		rest := strings.TrimPrefix(info.Key, prefix)
		if v, ok := strings.CutSuffix(rest, "/"); ok && versionRE.MatchString(v) {
			versions = append(versions, v)
		}
	}
	for info, err := range st.List(ctx, prefix+rejectedDir, objstore.ListOptions{}) {
		if err != nil {
			return nil, fmt.Errorf("list rejected snapshots of %s: %w", group, err)
		}
		v := strings.TrimSuffix(strings.TrimPrefix(info.Key, prefix+rejectedDir), ".json")
		if !versionRE.MatchString(v) {
			continue
		}
		why, err := Rejection(ctx, st, group, v)
		if err != nil {
			return nil, err
		}
		rejected[v] = why != ""
	}
	out := make([]Manifest, 0, len(versions))
	for _, v := range versions {
		if rejected[v] {
			continue
		}
		m, err := ReadManifest(ctx, st, group, v)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Manifest) int {
		return cmp.Or(a.AsOf.Compare(b.AsOf), a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.Version, b.Version))
	})
	return out, nil
}
