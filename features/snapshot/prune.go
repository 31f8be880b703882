package snapshot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/adaptrec/adaptrec/internal/objstore"
)

// DeleteStore is the store Prune needs: a Store that can also delete;
// *objstore.Store implements it.
type DeleteStore interface {
	Store
	// Delete removes an object; a missing object is not an error.
	Delete(ctx context.Context, key string) error
}

var _ DeleteStore = (*objstore.Store)(nil)

// DefaultMinAge is PruneOptions.MinAge when zero: a week, far longer than
// a batch job takes to write, validate and flip a snapshot.
const DefaultMinAge = 7 * 24 * time.Hour

// PruneOptions tune Prune. Zero values mean the documented defaults.
type PruneOptions struct {
	// MinAge keeps every version written less than MinAge before Now: it
	// may be a snapshot a batch job is still writing, validating or about
	// to flip, or a backfill a training set is about to read. A version's
	// age runs from the newest of its manifest's CreatedAt and its objects'
	// modification times, so a retried job that rewrites an old version
	// makes it young again. DefaultMinAge when zero; negative: no minimum.
	MinAge time.Duration
	// InUse, when set, returns why a version must be kept although it is
	// old ("" when nothing needs it), e.g. the training sets whose manifests
	// name it.
	InUse func(group, version string) string
	// DryRun decides and reports without deleting anything.
	DryRun bool
	// Now is the time ages are measured at; time.Now when zero.
	Now time.Time
}

// Version states in PruneDecision.State.
const (
	// StateComplete is a version with a valid manifest and no rejection.
	StateComplete = "complete"
	// StateRejected is a version validation refused (see Reject).
	StateRejected = "rejected"
	// StateIncomplete is a version without a manifest: a write that has not
	// finished (or never will), or a rejection note whose data is gone.
	StateIncomplete = "incomplete"
	// StateCorrupt is a version whose manifest cannot be trusted.
	StateCorrupt = "corrupt"
)

// PruneDecision is what Prune decided for one version.
type PruneDecision struct {
	Version string `json:"version"`
	// AsOf is the data cutoff encoded in the version.
	AsOf time.Time `json:"as_of"`
	// WrittenAt is the newest of the manifest's CreatedAt and the
	// modification times of the version's objects; ages run from it.
	WrittenAt time.Time `json:"written_at"`
	// State is StateComplete, StateRejected, StateIncomplete or
	// StateCorrupt.
	State string `json:"state"`
	// Objects and Bytes count the version's objects: data files, manifest
	// and rejection note.
	Objects int   `json:"objects"`
	Bytes   int64 `json:"bytes"`
	// Delete is true for a version that was deleted (or, in a dry run,
	// would be).
	Delete bool `json:"delete"`
	// Reason says why the version is kept or deleted.
	Reason string `json:"reason"`

	keys     []string // data files and anything else under the version's prefix
	manifest bool
	note     bool
	created  time.Time // the manifest's CreatedAt, for History's order
}

// PruneReport is the outcome of Prune for one group.
type PruneReport struct {
	Group string `json:"group"`
	// Current and Previous are the pointer's versions when Prune read it.
	Current  string `json:"current,omitempty"`
	Previous string `json:"previous,omitempty"`
	Keep     int    `json:"keep"`
	// MinAge is the minimum age applied, as a Go duration.
	MinAge string `json:"min_age"`
	DryRun bool   `json:"dry_run"`
	// Versions holds every version of the group, oldest first.
	Versions []PruneDecision `json:"versions"`
	// Deleted counts the versions deleted (in a dry run: that would be),
	// DeletedObjects and DeletedBytes their objects.
	Deleted        int   `json:"deleted"`
	DeletedObjects int   `json:"deleted_objects"`
	DeletedBytes   int64 `json:"deleted_bytes"`
}

// Prune deletes the versions of a group that retention no longer needs
// and reports what it decided for every version.
//
// The newest keep complete, non-rejected versions (in History order) are
// kept, and so are, whatever keep says: the pointer's current version, its
// previous version (the rollback target), versions younger than
// opts.MinAge, and versions opts.InUse names. Everything else is deleted:
// older complete versions, and rejected, incomplete or corrupt versions,
// which do not count towards keep. With keep 0 only the protected versions
// remain. A group whose pointer cannot be read is not touched.
//
// A version's manifest is deleted first, then its data files, then its
// rejection note: a concurrent reader either finds no manifest (the version
// is gone: History skips it, Open and Flip return ErrNotFound) or a data
// file missing from a manifest it read earlier (ErrCorrupt); it never
// takes a half-deleted version for a valid one, nor a rejected one for an
// accepted one. Before deleting each version Prune reads the pointer
// again, and once more after deleting the manifest: a version that became
// current or previous meanwhile is kept (its manifest is put back), so a
// concurrent flip or rollback is not undone.
//
// Training sets (features/offline) record in their manifests which snapshot
// versions their rows read; Prune knows nothing of them, so callers pass
// those versions through opts.InUse (adaptrec features prune does). A
// training set that is being built while Prune runs may fail reading a
// version deleted under it; it never reads wrong values.
func Prune(ctx context.Context, st DeleteStore, group string, keep int, opts PruneOptions) (PruneReport, error) {
	if err := checkGroup(group); err != nil {
		return PruneReport{}, err
	}
	if keep < 0 {
		return PruneReport{}, fmt.Errorf("%w: prune %s: keep %d must not be negative", ErrInvalid, group, keep)
	}
	minAge := opts.MinAge
	switch {
	case minAge == 0:
		minAge = DefaultMinAge
	case minAge < 0:
		minAge = 0
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	rep := PruneReport{Group: group, Keep: keep, MinAge: minAge.String(), DryRun: opts.DryRun}
	ptr, err := Current(ctx, st, group)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return rep, fmt.Errorf("prune %s: the current pointer must be readable: %w", group, err)
	}
	rep.Current, rep.Previous = ptr.Version, ptr.Previous

	versions, err := listVersions(ctx, st, group)
	if err != nil {
		return rep, err
	}
	newest := 0
	for i := len(versions) - 1; i >= 0; i-- {
		d := &versions[i]
		usable := d.State == StateComplete
		if usable && newest < keep {
			newest++
			d.Reason = fmt.Sprintf("among the newest %d", keep)
			if d.Version == ptr.Version {
				d.Reason = "current; " + d.Reason
			} else if d.Version == ptr.Previous {
				d.Reason = "previous (rollback target); " + d.Reason
			}
			continue
		}
		inUse := ""
		if opts.InUse != nil {
			inUse = opts.InUse(group, d.Version)
		}
		switch age := now.Sub(d.WrittenAt); {
		case d.Version == ptr.Version:
			d.Reason = "current"
		case d.Version == ptr.Previous:
			d.Reason = "previous (rollback target)"
		case inUse != "":
			d.Reason = inUse
		case age < minAge:
			d.Reason = fmt.Sprintf("written %s ago, younger than the minimum age %s", age.Round(time.Second), minAge)
		default:
			d.Delete = true
			d.Reason = deleteReason(d, keep)
		}
	}
	rep.Versions = versions

	for i := range rep.Versions {
		d := &rep.Versions[i]
		if !d.Delete {
			continue
		}
		if !opts.DryRun {
			kept, err := deleteVersion(ctx, st, group, d)
			if err != nil {
				return rep, err
			}
			if kept {
				continue
			}
		}
		rep.Deleted++
		rep.DeletedObjects += d.Objects
		rep.DeletedBytes += d.Bytes
	}
	return rep, nil
}

func deleteReason(d *PruneDecision, keep int) string {
	switch d.State {
	case StateRejected:
		return "rejected by validation"
	case StateIncomplete:
		return "incomplete: no manifest"
	case StateCorrupt:
		return "corrupt manifest"
	}
	if keep == 0 {
		return "not protected (keep 0)"
	}
	return fmt.Sprintf("older than the newest %d", keep)
}

// listVersions returns every version of a group found under its prefix
// (data, manifest or rejection note), in History order: by cutoff, then
// the manifest's CreatedAt, then name.
func listVersions(ctx context.Context, st Store, group string) ([]PruneDecision, error) {
	prefix := GroupPrefix(group)
	byVersion := map[string]*PruneDecision{}
	get := func(v string) *PruneDecision {
		d := byVersion[v]
		if d == nil {
			at, _ := VersionTime(v)
			d = &PruneDecision{Version: v, AsOf: at}
			byVersion[v] = d
		}
		return d
	}
	for info, err := range st.List(ctx, prefix, objstore.ListOptions{}) {
		if err != nil {
			return nil, fmt.Errorf("list snapshots of %s: %w", group, err)
		}
		rest := strings.TrimPrefix(info.Key, prefix)
		var d *PruneDecision
		if note, ok := strings.CutPrefix(rest, rejectedDir); ok {
			v, ok := strings.CutSuffix(note, ".json")
			if !ok || !versionRE.MatchString(v) {
				continue
			}
			d = get(v)
			d.note = true
		} else {
			v, name, ok := strings.Cut(rest, "/")
			if !ok || !versionRE.MatchString(v) {
				continue // CURRENT, or nothing this package wrote
			}
			d = get(v)
			if name == manifestName {
				d.manifest = true
			} else {
				d.keys = append(d.keys, info.Key)
			}
		}
		d.Objects++
		d.Bytes += info.Size
		if info.LastModified.After(d.WrittenAt) {
			d.WrittenAt = info.LastModified
		}
	}
	out := make([]PruneDecision, 0, len(byVersion))
	for _, d := range byVersion {
		d.State = StateIncomplete
		if d.manifest {
			m, err := ReadManifest(ctx, st, group, d.Version)
			switch {
			case errors.Is(err, ErrCorrupt):
				d.State = StateCorrupt
			case errors.Is(err, ErrNotFound):
				// Deleted since the listing: still incomplete.
			case err != nil:
				return nil, err
			default:
				d.State = StateComplete
				d.created = m.CreatedAt
			}
		}
		if d.created.After(d.WrittenAt) {
			d.WrittenAt = d.created
		}
		if d.note {
			why, err := Rejection(ctx, st, group, d.Version)
			if err != nil {
				return nil, err
			}
			if why != "" && d.State == StateComplete {
				d.State = StateRejected
			}
		}
		out = append(out, *d)
	}
	slices.SortFunc(out, func(a, b PruneDecision) int {
		return cmp.Or(a.AsOf.Compare(b.AsOf), a.created.Compare(b.created), strings.Compare(a.Version, b.Version))
	})
	return out, nil
}

// deleteVersion deletes one version's objects, manifest first and
// rejection note last. It returns kept = true, having deleted nothing that
// stays missing, when the pointer came to name the version meanwhile.
func deleteVersion(ctx context.Context, st DeleteStore, group string, d *PruneDecision) (kept bool, err error) {
	referenced := func() (bool, error) {
		p, err := Current(ctx, st, group)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return false, fmt.Errorf("prune %s: re-read the pointer before deleting %s: %w", group, d.Version, err)
		}
		return p.Version == d.Version || p.Previous == d.Version, nil
	}
	if ref, err := referenced(); err != nil || ref {
		if ref {
			d.Delete, d.Reason = false, "became current or previous while pruning"
		}
		return ref, err
	}
	if d.manifest {
		key := ManifestKey(group, d.Version)
		body, _, err := st.Get(ctx, key)
		if err != nil && !errors.Is(err, objstore.ErrNotFound) {
			return false, fmt.Errorf("prune %s/%s: %w", group, d.Version, err)
		}
		if err := st.Delete(ctx, key); err != nil {
			return false, fmt.Errorf("prune %s/%s: delete the manifest: %w", group, d.Version, err)
		}
		// A flip that read the manifest just before it went may have
		// moved the pointer since: put the manifest back and stop.
		if ref, rerr := referenced(); rerr != nil || ref {
			if body != nil {
				if _, err := st.Put(ctx, key, body, objstore.PutOptions{IfNoneMatch: "*", ContentType: "application/json"}); err != nil && !errors.Is(err, objstore.ErrPreconditionFailed) {
					return false, errors.Join(rerr, fmt.Errorf("prune %s/%s: restore the manifest of a version that became current: %w", group, d.Version, err))
				}
			}
			if rerr != nil {
				return false, rerr
			}
			d.Delete, d.Reason = false, "became current or previous while pruning (manifest restored)"
			return true, nil
		}
	}
	for _, key := range d.keys {
		if err := st.Delete(ctx, key); err != nil {
			return false, fmt.Errorf("prune %s/%s: %w", group, d.Version, err)
		}
	}
	if d.note {
		if err := st.Delete(ctx, RejectedKey(group, d.Version)); err != nil {
			return false, fmt.Errorf("prune %s/%s: delete the rejection note: %w", group, d.Version, err)
		}
	}
	return false, nil
}

// Groups returns the groups that have snapshots, a pointer or rejection
// notes in the store, in name order.
func Groups(ctx context.Context, st Store) ([]string, error) {
	var out []string
	for info, err := range st.List(ctx, Root, objstore.ListOptions{Delimiter: "/"}) {
		if err != nil {
			return nil, fmt.Errorf("list snapshot groups: %w", err)
		}
		g, ok := strings.CutSuffix(strings.TrimPrefix(info.Key, Root), "/")
		if ok && groupRE.MatchString(g) {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return out, nil
}
