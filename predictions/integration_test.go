package predictions_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/adaptrec/adaptrec/features/online"
	"github.com/adaptrec/adaptrec/internal/testenv"
	"github.com/adaptrec/adaptrec/predictions"
)

// list is a valid list of k items for user u in a version tagged v.
func list(v, u, k int) []predictions.Entry {
	out := make([]predictions.Entry, k)
	for i := range out {
		out[i] = predictions.Entry{ItemID: fmt.Sprintf("i%d-%d-%d", v, u, i), Score: float32(k-i) / float32(k)}
	}
	return out
}

// write writes a version of n users' lists, corrupting the list of user
// bad (-1: none) with a NaN, and closes it.
func write(t *testing.T, s *predictions.Store, tag, n, bad int, v predictions.Validation) predictions.Meta {
	t.Helper()
	ctx := t.Context()
	w, err := s.Begin(ctx, predictions.VersionInfo{Model: "ranker", ModelVersion: fmt.Sprintf("m%d", tag), K: 10})
	if err != nil {
		t.Fatal(err)
	}
	for u := range n {
		l := list(tag, u, 10)
		if u == bad {
			l[3].Score = float32(math.NaN())
		}
		if err := w.Add(ctx, fmt.Sprintf("u%03d", u), l); err != nil {
			t.Fatal(err)
		}
	}
	m, err := w.Close(ctx, n, v)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestVersionsFlipRejectRollbackPrune(t *testing.T) {
	env := testenv.New(t, testenv.Redis)
	ctx := t.Context()
	rdb := online.NewClient(env.Config().Redis)
	defer rdb.Close()
	const prefix = "test:fs:"
	s, err := predictions.NewStore(rdb, predictions.Options{KeyPrefix: prefix, Pipeline: 16})
	if err != nil {
		t.Fatal(err)
	}
	valid := predictions.Validation{MinCoverage: 0.99, MaxUserDrop: 0.5, MinUsers: 1}
	if _, err := s.Current(ctx); !errors.Is(err, predictions.ErrNotFound) {
		t.Fatalf("Current on an empty Redis: %v, want ErrNotFound", err)
	}

	// v1: 5000 users (two user-index chunks), flipped.
	m1 := write(t, s, 1, 5000, -1, valid)
	if m1.Version != 1 || m1.Users != 5000 || m1.Chunks != 2 || m1.Rejected() {
		t.Fatalf("v1 meta %+v", m1)
	}
	p, err := s.Flip(ctx, m1.Version)
	if err != nil || p.Current.Version != 1 || p.Previous != nil {
		t.Fatalf("flip v1: %+v %v", p, err)
	}

	// v2 with a NaN: rejected, naming the check, user and value; the
	// pointer does not move.
	m2 := write(t, s, 2, 5000, 17, valid)
	if !m2.Rejected() || m2.Users != 4999 {
		t.Fatalf("v2 with a NaN: %+v", m2)
	}
	if d := predictions.Describe(m2.Failures); !strings.Contains(d, "score: user u017: item i2-17-3 at position 3 scores NaN") {
		t.Errorf("failures %q do not name the bad score", d)
	}
	if _, err := s.Flip(ctx, m2.Version); !errors.Is(err, predictions.ErrRejected) {
		t.Fatalf("flip of a rejected version: %v, want ErrRejected", err)
	}
	if p, err := s.Current(ctx); err != nil || p.Current.Version != 1 {
		t.Fatalf("pointer after a refused flip: %+v %v", p, err)
	}
	// Too few users against v1: rejected on coverage and the drop.
	w, err := s.Begin(ctx, predictions.VersionInfo{Model: "ranker", ModelVersion: "m3", K: 10})
	if err != nil {
		t.Fatal(err)
	}
	for u := range 100 {
		if err := w.Add(ctx, fmt.Sprintf("u%03d", u), list(3, u, 10)); err != nil {
			t.Fatal(err)
		}
	}
	m3, err := w.Close(ctx, 5000, valid)
	if err != nil {
		t.Fatal(err)
	}
	if d := predictions.Describe(m3.Failures); !strings.Contains(d, "coverage: 100 of 5000 active users") || !strings.Contains(d, "against 5000 in the current version") {
		t.Errorf("v3 failures %q", d)
	}

	// v4 valid: flipped, v1 kept as previous.
	m4 := write(t, s, 4, 5000, -1, valid)
	p, err = s.Flip(ctx, m4.Version)
	if err != nil || p.Current.Version != 4 || p.Previous == nil || p.Previous.Version != 1 || p.Current.ModelVersion != "m4" {
		t.Fatalf("flip v4: %+v %v", p, err)
	}
	got, ok, err := s.Get(ctx, 4, "u042")
	if err != nil || !ok || got[0].ItemID != "i4-42-0" || len(got) != 10 {
		t.Fatalf("v4 list of u042: %v %v %v", got, ok, err)
	}

	// A flip from a stale pointer loses: compare-and-swap.
	m5 := write(t, s, 5, 5000, -1, valid)
	stale := p
	if _, err := s.Flip(ctx, m5.Version); err != nil {
		t.Fatal(err)
	}
	m6 := write(t, s, 6, 5000, -1, valid)
	if _, err := s.FlipFrom(ctx, stale, m6.Version); !errors.Is(err, predictions.ErrConflict) {
		t.Fatalf("flip from a stale pointer: %v, want ErrConflict", err)
	}
	if p, _ := s.Current(ctx); p.Current.Version != 5 || p.Previous.Version != 4 {
		t.Fatalf("pointer after a lost race: %+v", p)
	}

	// Rollback: v4 current again, v5 previous; twice rolls forward.
	p, err = s.Rollback(ctx)
	if err != nil || p.Current.Version != 4 || p.Previous.Version != 5 || !p.RolledBack {
		t.Fatalf("rollback: %+v %v", p, err)
	}

	// Prune keeping 2: v1, v2 (rejected), v3 (rejected) go; v4 (current),
	// v5 (previous) and v6 (newer than current) stay.
	rep, err := s.Prune(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rep.Deleted) != "[1 2 3]" || fmt.Sprint(rep.Kept) != "[4 5 6]" {
		t.Fatalf("prune: deleted %v kept %v", rep.Deleted, rep.Kept)
	}
	if n := countKeys(t, rdb, prefix+"{*}:pred:v1"); n != 0 {
		t.Errorf("%d user keys of v1 left after the prune", n)
	}
	if n := countKeys(t, rdb, prefix+"{*}:pred:v4"); n != 5000 {
		t.Errorf("%d user keys of v4, want 5000", n)
	}
	if _, err := s.Meta(ctx, 1); !errors.Is(err, predictions.ErrNotFound) {
		t.Errorf("meta of pruned v1: %v", err)
	}
	if vs, err := s.Versions(ctx); err != nil || fmt.Sprint(vs) != "[4 5 6]" {
		t.Errorf("versions after the prune: %v %v", vs, err)
	}
	// Nothing else under the prefix was touched.
	if err := rdb.Set(ctx, prefix+"{u001}:b:user_batch:x", "features", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Prune(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if v, err := rdb.Get(ctx, prefix+"{u001}:b:user_batch:x").Result(); err != nil || v != "features" {
		t.Errorf("a feature key was touched by the prune: %q %v", v, err)
	}
}

func countKeys(t *testing.T, rdb *redis.Client, pattern string) int {
	t.Helper()
	n := 0
	iter := rdb.Scan(t.Context(), 0, pattern, 1000).Iterator()
	for iter.Next(t.Context()) {
		n++
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestReaderFollowsThePointerAndFailsOpen(t *testing.T) {
	env := testenv.NewWithOptions(t, testenv.Options{Components: []testenv.Component{testenv.Redis}, Persist: true})
	ctx := t.Context()
	rdb := online.NewClient(env.Config().Redis)
	defer rdb.Close()
	s, err := predictions.NewStore(rdb, predictions.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := predictions.NewReader(rdb, predictions.ReaderOptions{ReadTimeout: 200 * time.Millisecond, CacheSlots: 64})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Lookup(ctx, "u001", time.Now()); ok {
		t.Fatal("a lookup answered with no version current")
	}
	m1 := write(t, s, 1, 50, -1, predictions.Validation{MinCoverage: 1})
	if _, err := s.Flip(ctx, m1.Version); err != nil {
		t.Fatal(err)
	}
	if err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	l, ok := r.Lookup(ctx, "u001", time.Now())
	if !ok || l.Version != 1 || l.ModelVersion != "m1" || l.Entries[0].ItemID != "i1-1-0" {
		t.Fatalf("lookup in v1: %+v %v", l, ok)
	}
	if _, ok := r.Lookup(ctx, "nobody", time.Now()); ok {
		t.Fatal("a user without a list got one")
	}
	// A flip is seen at the next refresh; the cached v1 list is not served.
	m2 := write(t, s, 2, 50, -1, predictions.Validation{MinCoverage: 1})
	if _, err := s.Flip(ctx, m2.Version); err != nil {
		t.Fatal(err)
	}
	if err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if l, ok := r.Lookup(ctx, "u001", time.Now()); !ok || l.Version != 2 || l.Entries[0].ItemID != "i2-1-0" {
		t.Fatalf("lookup after the flip: %+v %v", l, ok)
	}
	// Redis down: misses, never errors or hangs past the read timeout;
	// the known version is kept.
	env.StopComponent(testenv.Redis)
	start := time.Now()
	for u := range 20 {
		if _, ok := r.Lookup(ctx, fmt.Sprintf("u%03d", 10+u), time.Now()); ok {
			t.Fatalf("user %d answered with Redis down", 10+u)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("20 lookups with Redis down took %s", d)
	}
	if err := r.Refresh(ctx); err == nil {
		t.Error("refresh with Redis down reported no error")
	}
	if m, ok := r.Current(); !ok || m.Version != 2 {
		t.Errorf("version known after a failed refresh: %+v %v", m, ok)
	}
	env.StartComponent(testenv.Redis)
	testenv.Eventually(t, 30*time.Second, func() error {
		if _, ok := r.Lookup(context.WithoutCancel(ctx), "u033", time.Now()); !ok {
			return errors.New("no answer yet after Redis came back")
		}
		return nil
	})
}
