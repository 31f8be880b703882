package snapshot_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/features/snapshot"
	"github.com/adaptrec/adaptrec/internal/objstore"
)

// keys lists every object key under prefix.
func keys(t *testing.T, st snapshot.Store, prefix string) []string {
	t.Helper()
	var out []string
	for info, err := range st.List(t.Context(), prefix, objstore.ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, info.Key)
	}
	return out
}

func historyVersions(t *testing.T, st snapshot.Store) []string {
	t.Helper()
	hist, err := snapshot.History(t.Context(), st, "item_batch")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range hist {
		out = append(out, m.Version)
	}
	return out
}

// decisions maps each version of a report to "delete" or "keep: reason".
func decisions(rep snapshot.PruneReport) map[string]string {
	out := map[string]string{}
	for _, d := range rep.Versions {
		if d.Delete {
			out[d.Version] = "delete"
		} else {
			out[d.Version] = "keep: " + d.Reason
		}
	}
	return out
}

// recordingStore records the keys Prune deletes, in order.
type recordingStore struct {
	*objstore.Store
	mu      sync.Mutex
	deleted []string
	// before, when set, runs before each delete.
	before func(key string)
}

func (r *recordingStore) Delete(ctx context.Context, key string) error {
	if r.before != nil {
		r.before(key)
	}
	r.mu.Lock()
	r.deleted = append(r.deleted, key)
	r.mu.Unlock()
	return r.Store.Delete(ctx, key)
}

// TestPrune walks a group through retention: young versions survive any
// keep, a dry run deletes nothing, the current and previous versions
// survive keep 0 and 1, versions in use survive, rejected and incomplete
// versions go, every version is deleted manifest first, and rollback still
// works afterwards.
func TestPrune(t *testing.T) {
	t.Parallel()
	base := testStore(t)
	st := &recordingStore{Store: base}
	ctx := t.Context()
	fs := testSet(t)
	day := 24 * time.Hour

	v := make([]string, 6)
	for i := range 5 {
		v[i] = write(t, base, fs, asOf.Add(time.Duration(i)*day), 0.02+0.001*float64(i))
	}
	for _, ver := range v[:3] {
		if _, err := snapshot.Flip(ctx, base, "item_batch", ver); err != nil {
			t.Fatal(err)
		}
	}
	// v[3] and v[4] were written later and never flipped (say a backfill
	// and a pending job); v[5] was rejected.
	v[5] = write(t, base, fs, asOf.Add(5*day), 0.5)
	if err := snapshot.Reject(ctx, base, "item_batch", v[5], "item_ctr: mean moved"); err != nil {
		t.Fatal(err)
	}
	// A write that never finished, and a rejection note without data.
	incomplete, orphan := "20261101T000000Z-00000001", "20261102T000000Z-00000002"
	if _, err := base.Put(ctx, snapshot.VersionPrefix("item_batch", incomplete)+"part-00000.parquet", []byte("partial"), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := snapshot.Reject(ctx, base, "item_batch", orphan, "old note"); err != nil {
		t.Fatal(err)
	}
	all := keys(t, base, snapshot.Root)
	later := time.Now().Add(30 * day)

	// Everything was written moments ago: the minimum age keeps it all.
	rep, err := snapshot.Prune(ctx, st, "item_batch", 0, snapshot.PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Deleted != 0 || len(rep.Versions) != 8 || rep.Current != v[2] || rep.Previous != v[1] || rep.MinAge != "168h0m0s" {
		t.Errorf("young versions: %+v", rep)
	}
	for ver, d := range decisions(rep) {
		if ver != v[1] && ver != v[2] && !strings.Contains(d, "younger than the minimum age 168h0m0s") {
			t.Errorf("young %s: %s", ver, d)
		}
	}

	// A dry run decides but deletes nothing.
	rep, err = snapshot.Prune(ctx, st, "item_batch", 0, snapshot.PruneOptions{DryRun: true, Now: later})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		incomplete: "delete", orphan: "delete",
		v[0]: "delete", v[1]: "keep: previous (rollback target)", v[2]: "keep: current",
		v[3]: "delete", v[4]: "delete", v[5]: "delete",
	}
	if got := decisions(rep); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("dry run keep 0:\n got %v\nwant %v", got, want)
	}
	if rep.Deleted != 6 || !rep.DryRun || rep.DeletedBytes == 0 {
		t.Errorf("dry run: %d deleted, %d bytes", rep.Deleted, rep.DeletedBytes)
	}
	if got := keys(t, base, snapshot.Root); !slices.Equal(got, all) || len(st.deleted) != 0 {
		t.Errorf("dry run deleted %v", st.deleted)
	}
	for _, d := range rep.Versions {
		if d.Version == v[5] && (d.State != snapshot.StateRejected || d.Reason != "rejected by validation") ||
			d.Version == incomplete && d.State != snapshot.StateIncomplete {
			t.Errorf("%s: state %s, reason %q", d.Version, d.State, d.Reason)
		}
	}

	// keep 1: the newest complete version, the pointer's two and the one
	// a training set read stay.
	inUse := func(group, version string) string {
		if group == "item_batch" && version == v[0] {
			return "read by training set ts-1"
		}
		return ""
	}
	rep, err = snapshot.Prune(ctx, st, "item_batch", 1, snapshot.PruneOptions{InUse: inUse, Now: later})
	if err != nil {
		t.Fatal(err)
	}
	want = map[string]string{
		incomplete: "delete", orphan: "delete",
		v[0]: "keep: read by training set ts-1", v[1]: "keep: previous (rollback target)", v[2]: "keep: current",
		v[3]: "delete", v[4]: "keep: among the newest 1", v[5]: "delete",
	}
	if got := decisions(rep); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("keep 1:\n got %v\nwant %v", got, want)
	}
	if got := historyVersions(t, base); !slices.Equal(got, []string{v[0], v[1], v[2], v[4]}) {
		t.Errorf("history after keep 1: %v", got)
	}
	for _, gone := range []string{incomplete, orphan, v[3], v[5]} {
		if left := keys(t, base, snapshot.VersionPrefix("item_batch", gone)); len(left) > 0 {
			t.Errorf("%s: %v left", gone, left)
		}
		if why, err := snapshot.Rejection(ctx, base, "item_batch", gone); err != nil || why != "" {
			t.Errorf("%s: rejection note left: %q %v", gone, why, err)
		}
	}
	// Manifest first, rejection note last, per version.
	for _, ver := range []string{v[3], v[5]} {
		var order []string
		for _, k := range st.deleted {
			if strings.Contains(k, ver) {
				order = append(order, k[strings.LastIndex(k, "/")+1:])
			}
		}
		wantOrder := []string{"manifest.json", "part-00000.parquet"}
		if ver == v[5] {
			wantOrder = append(wantOrder, ver+".json")
		}
		if !slices.Equal(order, wantOrder) {
			t.Errorf("%s deleted in the order %v, want %v", ver, order, wantOrder)
		}
	}

	// keep 0 twice: only the pointer's versions remain, however often.
	for range 2 {
		if _, err := snapshot.Prune(ctx, st, "item_batch", 0, snapshot.PruneOptions{Now: later}); err != nil {
			t.Fatal(err)
		}
		if got := historyVersions(t, base); !slices.Equal(got, []string{v[1], v[2]}) {
			t.Errorf("history after keep 0: %v", got)
		}
	}

	// Rollback still works, and rolls forward again.
	p, err := snapshot.Rollback(ctx, base, "item_batch")
	if err != nil || p.Version != v[1] || p.Previous != v[2] {
		t.Fatalf("rollback after pruning: %+v %v", p, err)
	}
	if m, rows, err := snapshot.Read(ctx, base, "item_batch", p.Version); err != nil || len(rows) != 50 || m.Version != v[1] {
		t.Errorf("read the rolled-back snapshot: %d rows, %v", len(rows), err)
	}
	if p, err := snapshot.Rollback(ctx, base, "item_batch"); err != nil || p.Version != v[2] {
		t.Errorf("roll forward: %+v %v", p, err)
	}
	if _, err := snapshot.OpenCurrent(ctx, base, "item_batch"); err != nil {
		t.Errorf("open current: %v", err)
	}
	if _, _, err := base.Get(ctx, snapshot.PointerKey("item_batch")); err != nil {
		t.Errorf("pointer: %v", err)
	}
}

// TestPruneKeepsAVersionFlippedMeanwhile flips the pointer to a version at
// the moment Prune deletes its manifest: the manifest is put back, the data
// stays, and the version is reported kept.
func TestPruneKeepsAVersionFlippedMeanwhile(t *testing.T) {
	t.Parallel()
	base := testStore(t)
	ctx := t.Context()
	fs := testSet(t)
	old := write(t, base, fs, asOf, 0.02)
	cur := write(t, base, fs, asOf.Add(24*time.Hour), 0.021)
	if _, err := snapshot.Flip(ctx, base, "item_batch", cur); err != nil {
		t.Fatal(err)
	}
	st := &recordingStore{Store: base}
	st.before = func(key string) {
		if key == snapshot.ManifestKey("item_batch", old) {
			// An operator flips to the old version after Prune decided
			// to delete it.
			if _, err := snapshot.Flip(ctx, base, "item_batch", old); err != nil {
				t.Error(err)
			}
		}
	}
	// Prune's first re-read must not see the flip: it happens just before
	// the manifest's deletion, so only the second re-read catches it.
	rep, err := snapshot.Prune(ctx, st, "item_batch", 0, snapshot.PruneOptions{Now: time.Now().Add(30 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if d := decisions(rep); d[old] != "keep: became current or previous while pruning (manifest restored)" || rep.Deleted != 0 {
		t.Errorf("decisions %v, %d deleted", d, rep.Deleted)
	}
	s, err := snapshot.OpenCurrent(ctx, base, "item_batch")
	if err != nil || s.Manifest().Version != old {
		t.Fatalf("open current: %v", err)
	}
	if rows, err := s.ReadAll(ctx); err != nil || len(rows) != 50 {
		t.Errorf("read current: %d rows, %v", len(rows), err)
	}
}

func TestPruneRefuses(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	ctx := t.Context()
	fs := testSet(t)
	if _, err := snapshot.Prune(ctx, st, "item_batch", -1, snapshot.PruneOptions{}); !errors.Is(err, snapshot.ErrInvalid) || !strings.Contains(err.Error(), "keep -1") {
		t.Errorf("negative keep: %v", err)
	}
	if _, err := snapshot.Prune(ctx, st, "../x", 1, snapshot.PruneOptions{}); !errors.Is(err, snapshot.ErrInvalid) {
		t.Errorf("bad group: %v", err)
	}
	// A group with no pointer is pruned by keep alone.
	v1 := write(t, st, fs, asOf, 0.02)
	v2 := write(t, st, fs, asOf.Add(time.Hour), 0.03)
	later := time.Now().Add(30 * 24 * time.Hour)
	rep, err := snapshot.Prune(ctx, st, "item_batch", 1, snapshot.PruneOptions{Now: later, DryRun: true})
	if err != nil || fmt.Sprint(decisions(rep)) != fmt.Sprint(map[string]string{v1: "delete", v2: "keep: among the newest 1"}) {
		t.Errorf("no pointer: %v %v", decisions(rep), err)
	}
	if gs, err := snapshot.Groups(ctx, st); err != nil || !slices.Equal(gs, []string{"item_batch"}) {
		t.Errorf("groups %v %v", gs, err)
	}
	// A pointer that cannot be read stops Prune before anything is deleted.
	if _, err := st.Put(ctx, snapshot.PointerKey("item_batch"), []byte(`{"group":"item_batch","version":"../../x"}`), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := snapshot.Prune(ctx, st, "item_batch", 0, snapshot.PruneOptions{Now: later}); !errors.Is(err, snapshot.ErrCorrupt) {
		t.Errorf("corrupt pointer: %v", err)
	}
	if got := historyVersions(t, st); !slices.Equal(got, []string{v1, v2}) {
		t.Errorf("history after a refused prune: %v", got)
	}
}
