package baseline

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"log/slog"
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
  - name: item_clicks_7d
    entity: item
    type: int
    lane: batch
    default: 0
    freshness_sla: 26h
    ttl: 7d
    owner: test
    description: test feature
  - name: item_ctr_7d
    entity: item
    type: float
    lane: batch
    default: 0.03
    freshness_sla: 26h
    owner: test
    description: test feature
  - name: item_clicks_1h
    entity: item
    type: int
    lane: nearline
    default: 0
    ttl: 2h
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

// clicks maps item ids to their item_clicks_7d.
type clicks map[string]int64

// publish writes a snapshot of item_batch holding clicks (item_ctr_7d set
// too, so the column read is not the only one) and makes it current.
func publish(t *testing.T, st snapshot.Store, fs *features.FeatureSet, asOf time.Time, c clicks, opts snapshot.WriteOptions) string {
	t.Helper()
	m := write(t, st, fs, asOf, c, opts)
	if _, err := snapshot.Flip(t.Context(), st, "item_batch", m.Version); err != nil {
		t.Fatal(err)
	}
	return m.Version
}

func write(t *testing.T, st snapshot.Store, fs *features.FeatureSet, asOf time.Time, c clicks, opts snapshot.WriteOptions) snapshot.Manifest {
	t.Helper()
	names, _, width, _, err := snapshot.Layout(fs, "item_batch")
	if err != nil {
		t.Fatal(err)
	}
	col, ctr := slices.Index(names, Feature), slices.Index(names, "item_ctr_7d")
	var rows []snapshot.Row
	for id, n := range c {
		v := make([]float64, width)
		v[col], v[ctr] = float64(n), 0.5
		rows = append(rows, snapshot.Row{EntityID: id, Values: v})
	}
	m, err := snapshot.Write(t.Context(), st, fs, "item_batch", asOf, rows, opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// expect checks ClicksPer30m for every item of want; a negative value
// means the item must have none.
func expect(t *testing.T, b *Baseline, want map[string]float64) {
	t.Helper()
	for item, w := range want {
		got, ok := b.ClicksPer30m(item)
		switch {
		case w < 0 && ok:
			t.Errorf("ClicksPer30m(%q) = %g, true; want no value", item, got)
		case w >= 0 && (!ok || got != w):
			t.Errorf("ClicksPer30m(%q) = %g, %t; want %g, true", item, got, ok, w)
		}
	}
}

func wantVersion(t *testing.T, b *Baseline, want string) {
	t.Helper()
	if got, _ := b.Version(); got != want {
		t.Fatalf("Version() = %q, want %q", got, want)
	}
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// memStore is a bucket in memory with ETag conditions; it counts the
// Parquet parts read and can be told to fail reads.
type memStore struct {
	mu        sync.Mutex
	objects   map[string][]byte
	partReads int
	failGets  error
}

func newMemStore() *memStore { return &memStore{objects: map[string][]byte{}} }

var _ snapshot.Store = (*memStore)(nil)

func etagOf(b []byte) string {
	h := md5.Sum(b)
	return `"` + hex.EncodeToString(h[:]) + `"`
}

func (s *memStore) Put(_ context.Context, key string, body []byte, opts objstore.PutOptions) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, exists := s.objects[key]
	if (opts.IfNoneMatch == "*" && exists) || (opts.IfMatch != "" && (!exists || etagOf(cur) != opts.IfMatch)) {
		return "", fmt.Errorf("put %s: %w", key, objstore.ErrPreconditionFailed)
	}
	s.objects[key] = bytes.Clone(body)
	return etagOf(body), nil
}

func (s *memStore) Get(_ context.Context, key string) ([]byte, objstore.ObjectInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failGets != nil {
		return nil, objstore.ObjectInfo{}, fmt.Errorf("get %s: %w", key, s.failGets)
	}
	b, ok := s.objects[key]
	if !ok {
		return nil, objstore.ObjectInfo{}, fmt.Errorf("get %s: %w", key, objstore.ErrNotFound)
	}
	if strings.HasSuffix(key, ".parquet") {
		s.partReads++
	}
	return bytes.Clone(b), objstore.ObjectInfo{Key: key, Size: int64(len(b)), ETag: etagOf(b)}, nil
}

func (s *memStore) List(_ context.Context, prefix string, _ objstore.ListOptions) iter.Seq2[objstore.ObjectInfo, error] {
	s.mu.Lock()
	var keys []string
	for k := range s.objects {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	s.mu.Unlock()
	slices.Sort(keys)
	return func(yield func(objstore.ObjectInfo, error) bool) {
		for _, k := range keys {
			if !yield(objstore.ObjectInfo{Key: k}, nil) {
				return
			}
		}
	}
}

func (s *memStore) set(f func(s *memStore)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *memStore) reads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.partReads
}

// asOf is the data cutoff of test snapshots; clock is "now" for them,
// well inside item_clicks_7d's 7d ttl.
var (
	asOf  = time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	clock = func() time.Time { return asOf.Add(3 * time.Hour) }
)

func newTest(t *testing.T, st snapshot.Store) *Baseline {
	t.Helper()
	b, err := New(testSet(t), st, Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	b.now = clock
	return b
}

func TestNew(t *testing.T) {
	t.Parallel()
	project, err := features.Load("../features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(project, newMemStore(), Options{})
	if err != nil {
		t.Fatalf("New with the project's definitions: %v", err)
	}
	if b.Group() != "item_batch" {
		t.Errorf("Group() = %q, want item_batch", b.Group())
	}

	def := func(name, entity, typ, lane string) string {
		extra := "    freshness_sla: 26h\n"
		if lane == "nearline" {
			extra = "    ttl: 1h\n"
		}
		return fmt.Sprintf("version: 1\nfeatures:\n  - name: %s\n    entity: %s\n    type: %s\n    lane: %s\n    default: 0\n%s    owner: t\n    description: d\n",
			name, entity, typ, lane, extra)
	}
	for _, tt := range []struct {
		name, defs, want string
	}{
		{"undefined", def("item_clicks_30d", "item", "int", "batch"), "defines no feature item_clicks_7d"},
		{"user feature", def("item_clicks_7d", "user", "int", "batch"), "want an int or float item feature"},
		{"nearline", def("item_clicks_7d", "item", "int", "nearline"), "want an int or float item feature"},
		{"vector", strings.Replace(def("item_clicks_7d", "item", "vector[2]", "batch"), "default: 0", "default: [0, 0]", 1), "want an int or float item feature"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs, err := features.Parse("defs.yaml", []byte(tt.defs))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := New(fs, newMemStore(), Options{}); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
	if _, err := New(testSet(t), newMemStore(), Options{Interval: -time.Second}); err == nil {
		t.Error("New with a negative Interval succeeded")
	}
}

func TestNoSnapshot(t *testing.T) {
	t.Parallel()
	b := newTest(t, newMemStore())
	if got, ok := b.ClicksPer30m("i1"); ok {
		t.Errorf("before any Refresh: ClicksPer30m = %g, true", got)
	}
	if err := b.Refresh(t.Context()); err != nil {
		t.Fatalf("Refresh without a snapshot: %v", err)
	}
	wantVersion(t, b, "")
	if b.Items() != 0 {
		t.Errorf("Items() = %d, want 0", b.Items())
	}
	expect(t, b, map[string]float64{"i1": -1, "": -1})
}

func TestFlipReloadRollback(t *testing.T) {
	t.Parallel()
	st := newMemStore()
	fs := testSet(t)
	b := newTest(t, st)
	ctx := t.Context()

	v1 := publish(t, st, fs, asOf, clicks{"i1": 336, "i2": 0, "i3": 84}, snapshot.WriteOptions{})
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	wantVersion(t, b, v1)
	expect(t, b, map[string]float64{"i1": 1, "i2": 0, "i3": 0.25, "i4": -1})
	if b.Items() != 3 {
		t.Errorf("Items() = %d, want 3", b.Items())
	}

	// Nothing changed: no data read.
	reads := st.reads()
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if st.reads() != reads {
		t.Errorf("a Refresh with the same current version read %d parts", st.reads()-reads)
	}

	v2 := publish(t, st, fs, asOf.Add(time.Hour), clicks{"i1": 672, "i4": 3360}, snapshot.WriteOptions{})
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	wantVersion(t, b, v2)
	expect(t, b, map[string]float64{"i1": 2, "i2": -1, "i3": -1, "i4": 10})

	// A rollback swaps back to the table held before, without reading.
	if _, err := snapshot.Rollback(ctx, st, "item_batch"); err != nil {
		t.Fatal(err)
	}
	reads = st.reads()
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	wantVersion(t, b, v1)
	expect(t, b, map[string]float64{"i1": 1, "i2": 0, "i3": 0.25, "i4": -1})
	if st.reads() != reads {
		t.Errorf("rollback to the previous version read %d parts", st.reads()-reads)
	}
	// And forward again.
	if _, err := snapshot.Rollback(ctx, st, "item_batch"); err != nil {
		t.Fatal(err)
	}
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	wantVersion(t, b, v2)
	expect(t, b, map[string]float64{"i1": 2, "i4": 10})
}

func TestFailedLoadKeepsValues(t *testing.T) {
	t.Parallel()
	st := newMemStore()
	fs := testSet(t)
	b := newTest(t, st)
	ctx := t.Context()
	v1 := publish(t, st, fs, asOf, clicks{"i1": 336}, snapshot.WriteOptions{})
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}

	// The store fails.
	boom := errors.New("connection reset")
	st.set(func(s *memStore) { s.failGets = boom })
	if err := b.Refresh(ctx); !errors.Is(err, boom) {
		t.Fatalf("Refresh with a failing store = %v, want %v", err, boom)
	}
	wantVersion(t, b, v1)
	expect(t, b, map[string]float64{"i1": 1})
	st.set(func(s *memStore) { s.failGets = nil })

	// The new current snapshot's data does not match its manifest.
	v2 := publish(t, st, fs, asOf.Add(time.Hour), clicks{"i1": 672}, snapshot.WriteOptions{})
	st.set(func(s *memStore) {
		part := snapshot.VersionPrefix("item_batch", v2) + "part-00000.parquet"
		s.objects[part] = append(s.objects[part], 0)
	})
	if err := b.Refresh(ctx); !errors.Is(err, snapshot.ErrCorrupt) || !strings.Contains(err.Error(), v2) {
		t.Fatalf("Refresh of a corrupt snapshot = %v, want ErrCorrupt naming %s", err, v2)
	}
	wantVersion(t, b, v1)
	expect(t, b, map[string]float64{"i1": 1})
}

func TestFeatureNotComputed(t *testing.T) {
	t.Parallel()
	st := newMemStore()
	b := newTest(t, st)
	v := publish(t, st, testSet(t), asOf, clicks{"i1": 336}, snapshot.WriteOptions{NotComputed: map[string]string{Feature: "no event log"}})
	if err := b.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The snapshot is current: its (absent) values are the truth.
	wantVersion(t, b, v)
	expect(t, b, map[string]float64{"i1": -1})
}

func TestExpiresAfterTTL(t *testing.T) {
	t.Parallel()
	st := newMemStore()
	b := newTest(t, st)
	publish(t, st, testSet(t), asOf, clicks{"i1": 336}, snapshot.WriteOptions{})
	var now time.Time
	b.now = func() time.Time { return now }
	for _, step := range []struct {
		at   time.Duration
		want float64
	}{
		{time.Hour, 1},
		{7*24*time.Hour + time.Second, -1},
		// A clock step back (or a test) makes it usable again.
		{7 * 24 * time.Hour, 1},
	} {
		now = asOf.Add(step.at)
		if err := b.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		expect(t, b, map[string]float64{"i1": step.want})
	}
}

func TestRunFollowsPointer(t *testing.T) {
	t.Parallel()
	st := newMemStore()
	fs := testSet(t)
	b, err := New(fs, st, Options{Interval: 10 * time.Millisecond, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	b.now = clock
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()

	// Readers run throughout, for the race detector.
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			for ctx.Err() == nil {
				if v, ok := b.ClicksPer30m("i1"); ok && v != 1 && v != 2 {
					t.Errorf("ClicksPer30m(i1) = %g", v)
					return
				}
			}
		})
	}

	v1 := publish(t, st, fs, asOf, clicks{"i1": 336}, snapshot.WriteOptions{})
	testenv.Eventually(t, 5*time.Second, func() error { return versionIs(b, v1) })
	v2 := publish(t, st, fs, asOf.Add(time.Hour), clicks{"i1": 672}, snapshot.WriteOptions{})
	testenv.Eventually(t, 5*time.Second, func() error { return versionIs(b, v2) })
	expect(t, b, map[string]float64{"i1": 2})

	cancel()
	readers.Wait()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
}

func versionIs(b *Baseline, want string) error {
	if got, _ := b.Version(); got != want {
		return fmt.Errorf("version %q, want %q", got, want)
	}
	return nil
}

// TestS3 runs the baseline against a real S3 server: nothing published,
// a first snapshot, a second one picked up by Run, and a rollback.
func TestS3(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.S3)
	st, err := objstore.New(t.Context(), env.Config().S3)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.EnsureBucket(t.Context()); err != nil {
		t.Fatal(err)
	}
	fs := testSet(t)
	b, err := New(fs, st, Options{Interval: 50 * time.Millisecond, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	if err := b.Refresh(ctx); err != nil {
		t.Fatalf("Refresh before any snapshot: %v", err)
	}
	wantVersion(t, b, "")
	expect(t, b, map[string]float64{"i1": -1})

	// Recent cutoffs: Run uses the real clock against the 7d ttl.
	cutoff := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
	big := clicks{"i1": 336, "i2": 0}
	for i := range 5000 {
		big[fmt.Sprintf("x%05d", i)] = int64(i)
	}
	v1 := publish(t, st, fs, cutoff, big, snapshot.WriteOptions{})
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	wantVersion(t, b, v1)
	expect(t, b, map[string]float64{"i1": 1, "i2": 0, "x04200": 4200.0 / 336, "i3": -1})
	if b.Items() != 5002 {
		t.Errorf("Items() = %d, want 5002", b.Items())
	}

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
	}()

	v2 := publish(t, st, fs, cutoff.Add(time.Hour), clicks{"i1": 1008, "i3": 168}, snapshot.WriteOptions{})
	testenv.Eventually(t, 10*time.Second, func() error { return versionIs(b, v2) })
	expect(t, b, map[string]float64{"i1": 3, "i2": -1, "i3": 0.5, "x04200": -1})

	if _, err := snapshot.Rollback(ctx, st, "item_batch"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error { return versionIs(b, v1) })
	expect(t, b, map[string]float64{"i1": 1, "i2": 0, "i3": -1, "x04200": 4200.0 / 336})

	// A second flip after the rollback loads again from S3.
	v3 := publish(t, st, fs, cutoff.Add(90*time.Minute), clicks{"i9": 33600}, snapshot.WriteOptions{})
	testenv.Eventually(t, 10*time.Second, func() error { return versionIs(b, v3) })
	expect(t, b, map[string]float64{"i9": 100, "i1": -1})
}
