package snapshot_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/snapshot"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

const testDefs = `
version: 1
features:
  - name: item_ctr
    entity: item
    type: float
    lane: batch
    default: 0.03
    freshness_sla: 26h
    owner: test
    description: test feature
  - name: item_count
    entity: item
    type: int
    lane: batch
    default: 0
    freshness_sla: 26h
    owner: test
    description: test feature
  - name: item_vec
    entity: item
    type: vector[3]
    lane: batch
    default: [0, 0, 1]
    freshness_sla: 26h
    owner: test
    description: test feature
  - name: item_clicks_by
    entity: item
    type: map
    lane: batch
    default: {}
    freshness_sla: 26h
    owner: test
    description: test feature
  - name: item_recent
    entity: item
    type: int
    lane: nearline
    default: 0
    ttl: 1h
    owner: test
    description: test feature
  - name: user_ctr
    entity: user
    type: float
    lane: batch
    default: 0.03
    freshness_sla: 26h
    owner: test
    description: test feature
`

func testSet(t testing.TB) *features.FeatureSet {
	t.Helper()
	fs, err := features.Parse("test.yaml", []byte(testDefs))
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// testStore starts a real S3 server (versitygw) for one test.
func testStore(t *testing.T) *objstore.Store {
	t.Helper()
	env := testenv.New(t, testenv.S3)
	cfg := env.Config()
	st, err := objstore.New(t.Context(), cfg.S3)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.EnsureBucket(t.Context()); err != nil {
		t.Fatal(err)
	}
	return st
}

// itemRows makes n rows of item_batch: values in canonical order
// (item_count, item_ctr, item_vec[3]) with item_ctr = base + i/1e4.
func itemRows(n int, base float64) []snapshot.Row {
	rows := make([]snapshot.Row, n)
	for i := range rows {
		// Reverse order: Write must sort.
		j := n - 1 - i
		rows[i] = snapshot.Row{
			EntityID: fmt.Sprintf("i%06d", j),
			Values:   []float64{float64(j), base + float64(j)/1e4, 1, 2, float64(j % 7)},
		}
		if j%3 == 0 {
			rows[i].Maps = []map[string]float64{{"c1": float64(j), "c2": 1}}
		}
	}
	return rows
}

var asOf = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)

func TestWriteReadRoundTrip(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	ctx := t.Context()
	fs := testSet(t)
	rows := itemRows(2500, 0.02)
	want := slices.Clone(rows)
	m, err := snapshot.Write(ctx, st, fs, "item_batch", asOf, rows, snapshot.WriteOptions{
		RowsPerFile: 1000,
		NotComputed: map[string]string{"item_clicks_by": "no creator index in this test"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.Version, "20261122T000000Z-") || len(m.Version) != len("20261122T000000Z-")+8 {
		t.Errorf("version %q", m.Version)
	}
	if m.Rows != 2500 || len(m.Files) != 3 || m.Width != 5 || m.Entity != features.EntityItem {
		t.Errorf("manifest rows %d files %d width %d entity %v", m.Rows, len(m.Files), m.Width, m.Entity)
	}
	if !slices.Equal(m.Features, []string{"item_count", "item_ctr", "item_vec"}) || !slices.Equal(m.Types, []string{"int", "float", "vector[3]"}) ||
		!slices.Equal(m.MapFeatures, []string{"item_clicks_by"}) {
		t.Errorf("features %v types %v maps %v", m.Features, m.Types, m.MapFeatures)
	}
	if m.SchemaHash != fs.SchemaHash() {
		t.Errorf("schema hash %s, want %s", m.SchemaHash, fs.SchemaHash())
	}
	cs := m.Stats["item_ctr"]
	if cs.Count != 2500 || math.Abs(cs.Mean-(0.02+1249.5/1e4)) > 1e-9 || cs.Min != 0.02 || math.Abs(cs.Max-(0.02+0.2499)) > 1e-12 ||
		len(cs.Quantiles) != len(snapshot.QuantileLevels) || math.Abs(cs.Quantiles[3]-(0.02+0.125)) > 1e-3 {
		t.Errorf("item_ctr stats %+v", cs)
	}
	if ns := m.Stats["item_count"]; ns.DefaultRate != 1.0/2500 || ns.Max != 2499 {
		t.Errorf("item_count stats %+v (one row holds the default 0)", ns)
	}
	if vs := m.Stats["item_vec"]; vs.Count != 7500 || vs.DefaultRate != 0 {
		t.Errorf("vector stats %+v", vs)
	}
	if ms := m.Stats["item_clicks_by"]; ms.NotComputed == "" || math.Abs(ms.DefaultRate-float64(2500-834)/2500) > 1e-9 {
		t.Errorf("map stats %+v", ms)
	}

	m2, got, err := snapshot.Read(ctx, st, "item_batch", m.Version)
	if err != nil {
		t.Fatal(err)
	}
	if m2.Version != m.Version || m2.Rows != m.Rows || !m2.AsOf.Equal(asOf) {
		t.Errorf("read manifest %+v", m2)
	}
	slices.SortFunc(want, func(a, b snapshot.Row) int { return strings.Compare(a.EntityID, b.EntityID) })
	if len(got) != len(want) {
		t.Fatalf("read %d rows, wrote %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.EntityID != w.EntityID || !slices.Equal(g.Values, w.Values) || fmt.Sprint(g.Maps) != fmt.Sprint(w.Maps) {
			t.Fatalf("row %d: got %+v, want %+v", i, g, w)
		}
	}

	// The same content for the same cutoff is the same snapshot.
	again, err := snapshot.Write(ctx, st, fs, "item_batch", asOf, itemRows(2500, 0.02), snapshot.WriteOptions{
		RowsPerFile: 1000,
		NotComputed: map[string]string{"item_clicks_by": "no creator index in this test"},
	})
	if err != nil || again.Version != m.Version || !again.CreatedAt.Equal(m.CreatedAt) {
		t.Errorf("rewrite: version %s (want %s), created %s (want %s), err %v", again.Version, m.Version, again.CreatedAt, m.CreatedAt, err)
	}
	other, err := snapshot.Write(ctx, st, fs, "item_batch", asOf, itemRows(2500, 0.021), snapshot.WriteOptions{})
	if err != nil || other.Version == m.Version {
		t.Errorf("other content: version %s, err %v", other.Version, err)
	}
}

func TestBindFillsRecords(t *testing.T) {
	fs := testSet(t)
	m := snapshot.Manifest{
		Format: 1, Group: "item_batch", Entity: features.EntityItem, Version: "20261122T000000Z-00000000",
		SchemaHash: fs.SchemaHash(), AsOf: asOf,
		Features: []string{"item_count", "item_ctr", "item_vec", "item_gone"}, Types: []string{"int", "float", "vector[3]", "float"},
		Width: 6, MapFeatures: []string{"item_clicks_by"},
		Stats: map[string]snapshot.FeatureStats{"item_count": {}, "item_ctr": {NotComputed: "test"}, "item_vec": {}, "item_gone": {}, "item_clicks_by": {}},
	}
	b, err := m.Bind(fs)
	if err != nil {
		t.Fatal(err)
	}
	rec := fs.NewRecord(features.EntityItem)
	row := snapshot.Row{EntityID: "i1", Values: []float64{42, 0.5, 1, 2, 3, 9}, Maps: []map[string]float64{{"a": 1}}}
	if err := b.Fill(rec, &row); err != nil {
		t.Fatal(err)
	}
	id := func(n string) features.ID { f, _ := fs.Lookup(n); return f.ID }
	if v, ok, _ := rec.Get(id("item_count")); !ok || v.Int != 42 {
		t.Errorf("item_count %v %v", v, ok)
	}
	if v, ok, _ := rec.Get(id("item_ctr")); ok || v.Float != 0.03 {
		t.Errorf("a not-computed feature must read as its default, unset: %v %v", v, ok)
	}
	if v, ok, _ := rec.Get(id("item_vec")); !ok || !slices.Equal(v.Vector, []float32{1, 2, 3}) {
		t.Errorf("item_vec %v %v", v, ok)
	}
	if v, ok, _ := rec.Get(id("item_clicks_by")); !ok || v.Map["a"] != 1 {
		t.Errorf("item_clicks_by %v %v", v, ok)
	}
	if err := b.Fill(rec, nil); err != nil {
		t.Fatal(err)
	}
	if rec.Has(id("item_count")) {
		t.Error("a nil row must leave every feature at its default")
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = b.Fill(rec, &row) }); allocs != 0 {
		t.Errorf("Fill allocates %v times per row", allocs)
	}

	m.Types[0] = "float"
	if _, err := m.Bind(fs); err == nil || !strings.Contains(err.Error(), "item_count is a item float in the snapshot, a item int") {
		t.Errorf("a type change must be refused, got %v", err)
	}
}

func TestFlipAndRollback(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	ctx := t.Context()
	fs := testSet(t)

	if p, err := snapshot.Current(ctx, st, "item_batch"); !errors.Is(err, snapshot.ErrNotFound) || p.Version != "" {
		t.Fatalf("no pointer yet: got %+v, %v", p, err)
	}
	if _, err := snapshot.Rollback(ctx, st, "item_batch"); !errors.Is(err, snapshot.ErrNotFound) {
		t.Errorf("rollback without a pointer: %v", err)
	}
	v1 := write(t, st, fs, asOf, 0.02)
	v2 := write(t, st, fs, asOf.Add(24*time.Hour), 0.025)
	if _, err := snapshot.Flip(ctx, st, "item_batch", "20261122T000000Z-deadbeef"); !errors.Is(err, snapshot.ErrNotFound) {
		t.Errorf("flip to a missing version: %v", err)
	}
	p, err := snapshot.Flip(ctx, st, "item_batch", v1)
	if err != nil || p.Version != v1 || p.Previous != "" {
		t.Fatalf("first flip: %+v %v", p, err)
	}
	if _, err := snapshot.Rollback(ctx, st, "item_batch"); !errors.Is(err, snapshot.ErrNoPrevious) {
		t.Errorf("rollback with no previous: %v", err)
	}
	p, err = snapshot.Flip(ctx, st, "item_batch", v2)
	if err != nil || p.Version != v2 || p.Previous != v1 {
		t.Fatalf("second flip: %+v %v", p, err)
	}
	s, err := snapshot.OpenCurrent(ctx, st, "item_batch")
	if err != nil || s.Manifest().Version != v2 {
		t.Fatalf("open current: %v", err)
	}
	p, err = snapshot.Rollback(ctx, st, "item_batch")
	if err != nil || p.Version != v1 || p.Previous != v2 || !p.RolledBack {
		t.Fatalf("rollback: %+v %v", p, err)
	}
	if cur, err := snapshot.Current(ctx, st, "item_batch"); err != nil || cur.Version != v1 || !cur.RolledBack {
		t.Errorf("after rollback current is %+v, %v", cur, err)
	}
	// Rolling back again rolls forward.
	if p, err = snapshot.Rollback(ctx, st, "item_batch"); err != nil || p.Version != v2 {
		t.Errorf("second rollback: %+v %v", p, err)
	}
	// Flipping to the current version changes nothing.
	cur, _ := snapshot.Current(ctx, st, "item_batch")
	if p, err := snapshot.Flip(ctx, st, "item_batch", v2); err != nil || p.Previous != cur.Previous || !p.UpdatedAt.Equal(cur.UpdatedAt) {
		t.Errorf("flip to current: %+v %v", p, err)
	}

	// A rejected version can neither become current nor appear in history.
	v3 := write(t, st, fs, asOf.Add(48*time.Hour), 0.03)
	if err := snapshot.Reject(ctx, st, "item_batch", v3, "item_ctr: 3 NaN values"); err != nil {
		t.Fatal(err)
	}
	if _, err := snapshot.Flip(ctx, st, "item_batch", v3); !errors.Is(err, snapshot.ErrRejected) || !strings.Contains(err.Error(), "3 NaN") {
		t.Errorf("flip to a rejected version: %v", err)
	}
	hist, err := snapshot.History(ctx, st, "item_batch")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range hist {
		got = append(got, m.Version)
	}
	if !slices.Equal(got, []string{v1, v2}) {
		t.Errorf("history %v, want [%s %s]", got, v1, v2)
	}
	// A later validation of the same content under other bounds passed.
	if err := snapshot.Accept(ctx, st, "item_batch", v3); err != nil {
		t.Fatal(err)
	}
	if p, err := snapshot.Flip(ctx, st, "item_batch", v3); err != nil || p.Version != v3 {
		t.Errorf("flip to an accepted version: %+v %v", p, err)
	}
	if hist, err := snapshot.History(ctx, st, "item_batch"); err != nil || len(hist) != 3 || hist[2].Version != v3 {
		t.Errorf("history after accept: %d entries, %v", len(hist), err)
	}
}

func write(t *testing.T, st *objstore.Store, fs *features.FeatureSet, at time.Time, base float64) string {
	t.Helper()
	m, err := snapshot.Write(t.Context(), st, fs, "item_batch", at, itemRows(50, base), snapshot.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return m.Version
}

func TestConcurrentFlipsExactlyOneWins(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	ctx := t.Context()
	fs := testSet(t)
	const n = 8
	versions := make([]string, n)
	for i := range versions {
		versions[i] = write(t, st, fs, asOf.Add(time.Duration(i)*time.Hour), 0.01*float64(i+1))
	}
	race := func(from snapshot.Pointer, round string) string {
		t.Helper()
		errs := make([]error, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				_, errs[i] = snapshot.FlipFrom(ctx, st, from, versions[i])
			})
		}
		close(start)
		wg.Wait()
		winner := ""
		for i, err := range errs {
			switch {
			case err == nil && winner != "":
				t.Errorf("%s: both %s and %s won", round, winner, versions[i])
			case err == nil:
				winner = versions[i]
			case !errors.Is(err, snapshot.ErrConflict):
				t.Errorf("%s: flip to %s: %v, want ErrConflict", round, versions[i], err)
			}
		}
		if winner == "" {
			t.Fatalf("%s: nobody won: %v", round, errs)
		}
		cur, err := snapshot.Current(ctx, st, "item_batch")
		if err != nil || cur.Version != winner || cur.Previous != from.Version {
			t.Errorf("%s: current %+v (%v), want %s after %q", round, cur, err, winner, from.Version)
		}
		return winner
	}
	none, _ := snapshot.Current(ctx, st, "item_batch")
	race(none, "creating the pointer")
	cur, err := snapshot.Current(ctx, st, "item_batch")
	if err != nil {
		t.Fatal(err)
	}
	// Flipping to the winner itself would be a no-op "win": take the others.
	versions = slices.DeleteFunc(versions, func(v string) bool { return v == cur.Version })
	versions = append(versions, write(t, st, fs, asOf.Add(100*time.Hour), 0.5))
	race(cur, "replacing the pointer")
}

// corruptStore serves a Store with one object's bytes replaced.
type corruptStore struct {
	*objstore.Store
	key  string
	body []byte
}

func (c corruptStore) Get(ctx context.Context, key string) ([]byte, objstore.ObjectInfo, error) {
	b, info, err := c.Store.Get(ctx, key)
	if err == nil && key == c.key {
		return c.body, info, nil
	}
	return b, info, err
}

func TestCorruptSnapshotsAreRefused(t *testing.T) {
	t.Parallel()
	st := testStore(t)
	ctx := t.Context()
	fs := testSet(t)
	m, err := snapshot.Write(ctx, st, fs, "item_batch", asOf, itemRows(100, 0.02), snapshot.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	good, _, err := st.Get(ctx, m.Key())
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		key  string
		body []byte
		want string
	}{
		{"not json", m.Key(), []byte("{\"format\": 1, "), "is not a valid manifest"},
		{"other version", m.Key(), bytes.Replace(good, []byte(m.Version), []byte("20261122T000000Z-00000000"), 1), "describes item_batch/20261122T000000Z-00000000"},
		{"width", m.Key(), bytes.Replace(good, []byte(`"width": 5`), []byte(`"width": 6`), 1), "width 6, the features' types add up to 5"},
		{"rows", m.Key(), bytes.Replace(good, []byte(`"rows": 100,`), []byte(`"rows": 101,`), 1), "101 rows, the files hold 100"},
		{"unknown entity", m.Key(), bytes.Replace(good, []byte(`"entity": "item"`), []byte(`"entity": "shop"`), 1), "unknown entity"},
		{"data file", snapshot.VersionPrefix("item_batch", m.Version) + "part-00000.parquet", []byte("PAR1 not really"), "SHA-256"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cs := corruptStore{Store: st, key: tc.key, body: tc.body}
			_, _, err := snapshot.Read(ctx, cs, "item_batch", m.Version)
			if !errors.Is(err, snapshot.ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want ErrCorrupt mentioning %q", err, tc.want)
			}
			if tc.key == m.Key() {
				if _, err := snapshot.Flip(ctx, cs, "item_batch", m.Version); !errors.Is(err, snapshot.ErrCorrupt) {
					t.Errorf("flip to a corrupt snapshot: %v", err)
				}
				if _, err := snapshot.History(ctx, cs, "item_batch"); !errors.Is(err, snapshot.ErrCorrupt) {
					t.Errorf("history with a corrupt manifest: %v", err)
				}
			}
		})
	}
	// A pointer that is not a pointer.
	if _, err := st.Put(ctx, snapshot.PointerKey("item_batch"), []byte(`{"group":"item_batch","version":"../../x"}`), objstore.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := snapshot.Current(ctx, st, "item_batch"); !errors.Is(err, snapshot.ErrCorrupt) {
		t.Errorf("corrupt pointer: %v", err)
	}
}

func TestWriteRefusesBadInput(t *testing.T) {
	t.Parallel()
	fs := testSet(t)
	ctx := context.Background()
	var st snapshot.Store // never reached: input is checked first
	cases := []struct {
		name  string
		group string
		rows  []snapshot.Row
		want  string
	}{
		{"unknown group", "shop_batch", nil, `no group "shop_batch"`},
		{"nearline group", "item_nearline", nil, "nearline lane"},
		{"path in group", "../x", nil, "not a feature group name"},
		{"width", "item_batch", []snapshot.Row{{EntityID: "a", Values: []float64{1}}}, "has 1 values, the group's features take 5"},
		{"repeated id", "item_batch", []snapshot.Row{{EntityID: "a", Values: make([]float64, 5)}, {EntityID: "a", Values: make([]float64, 5)}}, `entity "a" has two rows`},
		{"empty id", "item_batch", []snapshot.Row{{Values: make([]float64, 5)}}, "empty entity id"},
	}
	for _, tc := range cases {
		_, err := snapshot.Write(ctx, st, fs, tc.group, asOf, tc.rows, snapshot.WriteOptions{})
		if !errors.Is(err, snapshot.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want ErrInvalid mentioning %q", tc.name, err, tc.want)
		}
	}
}
