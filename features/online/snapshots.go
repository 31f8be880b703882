package online

import (
	"context"
	"iter"

	"github.com/adaptrec/adaptrec/features/snapshot"
)

// Snapshots is where the store finds batch snapshots: which version of a
// group is current, and its rows. ObjectSnapshots reads them from the
// object store (features/snapshot); a benchmark can serve generated rows.
type Snapshots interface {
	// Current returns the group's pointer; an error wrapping
	// snapshot.ErrNotFound when the group has no snapshot yet.
	Current(ctx context.Context, group string) (snapshot.Pointer, error)
	// Open returns one snapshot of a group.
	Open(ctx context.Context, group, version string) (SnapshotReader, error)
}

// SnapshotReader is one opened snapshot; *snapshot.Snapshot implements it.
type SnapshotReader interface {
	// Manifest describes the snapshot.
	Manifest() snapshot.Manifest
	// Rows streams the snapshot's rows; an error ends the sequence.
	Rows(ctx context.Context) iter.Seq2[snapshot.Row, error]
}

var _ SnapshotReader = (*snapshot.Snapshot)(nil)

// ObjectSnapshots reads snapshots written by features/snapshot from an
// object store.
type ObjectSnapshots struct {
	// Store is the bucket holding features/snapshots/.
	Store snapshot.Store
}

var _ Snapshots = ObjectSnapshots{}

// Current returns snapshot.Current of the group.
func (o ObjectSnapshots) Current(ctx context.Context, group string) (snapshot.Pointer, error) {
	return snapshot.Current(ctx, o.Store, group)
}

// Open returns snapshot.Open of the version.
func (o ObjectSnapshots) Open(ctx context.Context, group, version string) (SnapshotReader, error) {
	s, err := snapshot.Open(ctx, o.Store, group, version)
	if err != nil {
		return nil, err
	}
	return s, nil
}
