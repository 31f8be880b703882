package retrieve

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lateSource blocks its first call, ignoring its deadline, until release
// is closed; then, on memory Retrieve no longer waits for, it reads the
// query, asks Exclude about items 0..99 and fills its buffer. Later calls
// answer at once.
type lateSource struct {
	release  chan struct{}
	finished chan struct{}
	calls    atomic.Int32
	// lateKept counts the items Exclude did not exclude after release:
	// Retrieve must have shut the caller's Exclude off by then.
	lateKept atomic.Int32
}

func (*lateSource) Name() string { return "late" }

func (s *lateSource) Retrieve(_ context.Context, q *Query, k int, dst []Hit) ([]Hit, error) {
	dst = dst[:0]
	if s.calls.Add(1) > 1 {
		return append(dst, Hit{Item: 0, Score: 1}), nil
	}
	<-s.release
	defer close(s.finished)
	var sum float32
	for _, v := range q.UserVector {
		sum += v
	}
	for i := range int32(100) {
		if q.Exclude != nil && !q.Exclude(i) {
			s.lateKept.Add(1)
		}
	}
	for i := range k {
		dst = append(dst, Hit{Item: int32(i), Score: sum})
	}
	return dst, nil
}

// TestRetrieveDropsLateSource checks that Retrieve returns at the deadline
// of a source that ignores it, counts it as timed out, and that the source,
// running on afterwards, touches none of the memory the caller and later
// calls reuse (run with -race: the caller rewrites its map, vector and
// result while the late source reads and writes).
func TestRetrieveDropsLateSource(t *testing.T) {
	t.Parallel()
	cat := testCatalog(t, 300, 5, 1)
	late := &lateSource{release: make(chan struct{}), finished: make(chan struct{})}
	const timeout = 50 * time.Millisecond
	r := newRetriever(t, Config{Sources: []SourceConfig{
		{Source: fixed("fast-late-test", hits(7, 8, 9)...), K: 3, Timeout: timeout},
		{Source: late, K: 20, Timeout: timeout},
	}})
	before := dropped(t, "late", "timeout")

	excluded := map[int32]bool{200: true}
	vec := []float32{1, 2, 3}
	q := &Query{Catalog: cat, UserVector: vec, Exclude: func(i int32) bool { return excluded[i] }}
	start := time.Now()
	out, st := r.Retrieve(t.Context(), q, nil)
	elapsed := time.Since(start)
	if elapsed < timeout || elapsed > timeout+time.Second {
		t.Errorf("Retrieve took %v with a source stuck past its %v deadline, want about the deadline", elapsed, timeout)
	}
	if st.Answered != 1 || st.TimedOut != 2 || st.Failed != 0 || st.Canceled != 0 {
		t.Errorf("stats answered %b timed out %b failed %b canceled %b, want answered 01, timed out 10", st.Answered, st.TimedOut, st.Failed, st.Canceled)
	}
	if got := items(out); !slices.Equal(got, []int32{7, 8, 9}) {
		t.Errorf("candidates %v, want the fast source's [7 8 9] alone", got)
	}
	if d := dropped(t, "late", "timeout") - before; d != 1 {
		t.Errorf("dropped{late,timeout} rose by %v, want 1", d)
	}

	// The caller reuses everything it owns while the late source runs on,
	// and other calls take states from the pool meanwhile.
	close(late.release)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			q := &Query{Catalog: cat, UserVector: []float32{1}}
			var dst []Candidate
			for range 20 {
				dst, _ = r.Retrieve(t.Context(), q, dst)
			}
		})
	}
	for i := range 100 {
		excluded[int32(i)] = true
		vec[0] = float32(i)
		for j := range out {
			out[j] = Candidate{Item: -1}
		}
	}
	<-late.finished
	wg.Wait()
	if n := late.lateKept.Load(); n != 0 {
		t.Errorf("after Retrieve returned, the late source's Exclude let %d items through, want 0 (the caller's Exclude switched off)", n)
	}
}

// TestRetrieveDropReasons checks how each way of not answering is counted.
func TestRetrieveDropReasons(t *testing.T) {
	t.Parallel()
	cat := testCatalog(t, 100, 3, 2)
	waitCtx := func(name string) *funcSource {
		return &funcSource{name: name, fn: func(ctx context.Context, _ *Query, _ int, dst []Hit) ([]Hit, error) {
			<-ctx.Done()
			return dst[:0], ctx.Err()
		}}
	}
	// ignoresDeadline answers in full, but only once its deadline passed.
	ignoresDeadline := &funcSource{name: "inline-late", fn: func(ctx context.Context, _ *Query, _ int, dst []Hit) ([]Hit, error) {
		<-ctx.Done()
		return append(dst[:0], Hit{Item: 1}), nil
	}}
	failing := &funcSource{name: "failing", fn: func(context.Context, *Query, int, []Hit) ([]Hit, error) {
		return nil, errors.New("store unavailable")
	}}
	panicking := &funcSource{name: "panicking", fn: func(context.Context, *Query, int, []Hit) ([]Hit, error) {
		panic("index out of range")
	}}
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	for _, tt := range []struct {
		name     string
		ctx      context.Context
		src      SourceConfig
		reason   string
		mask     func(*Stats) uint16
		errMatch string
	}{
		{"honours deadline", t.Context(), SourceConfig{Source: waitCtx("ctx-timeout"), K: 5, Timeout: 5 * time.Millisecond}, "timeout", func(s *Stats) uint16 { return s.TimedOut }, ""},
		{"inline, answers late", t.Context(), SourceConfig{Source: ignoresDeadline, K: 5, Timeout: 5 * time.Millisecond, Inline: true}, "timeout", func(s *Stats) uint16 { return s.TimedOut }, ""},
		{"error", t.Context(), SourceConfig{Source: failing, K: 5, Timeout: time.Second}, "error", func(s *Stats) uint16 { return s.Failed }, "store unavailable"},
		{"panic", t.Context(), SourceConfig{Source: panicking, K: 5, Timeout: time.Second}, "error", func(s *Stats) uint16 { return s.Failed }, "panicked: index out of range"},
		{"caller canceled", canceled, SourceConfig{Source: waitCtx("ctx-canceled"), K: 5, Timeout: time.Second}, "canceled", func(s *Stats) uint16 { return s.Canceled }, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			name := tt.src.Source.Name()
			r := newRetriever(t, Config{Sources: []SourceConfig{
				{Source: fixed("ok-"+name, hits(3)...), K: 1, Inline: true},
				tt.src,
			}})
			before := dropped(t, name, tt.reason)
			out, st := r.Retrieve(tt.ctx, &Query{Catalog: cat}, nil)
			if got := tt.mask(&st); got != 2 || st.Answered != 1 {
				t.Errorf("%s mask %b, answered %b; want 10 and 01", tt.reason, got, st.Answered)
			}
			if got := items(out); !slices.Equal(got, []int32{3}) {
				t.Errorf("candidates %v, want [3] from the healthy source", got)
			}
			if d := dropped(t, name, tt.reason) - before; d != 1 {
				t.Errorf("dropped{%s,%s} rose by %v, want 1", name, tt.reason, d)
			}
			if tt.errMatch != "" && (st.Err[1] == nil || !strings.Contains(st.Err[1].Error(), tt.errMatch)) {
				t.Errorf("Err[1] = %v, want one containing %q", st.Err[1], tt.errMatch)
			}
		})
	}
}

// TestRetrieveNoCatalogue checks a query without a catalogue fails every
// source rather than the call.
func TestRetrieveNoCatalogue(t *testing.T) {
	t.Parallel()
	r := newRetriever(t, Config{Sources: []SourceConfig{{Source: Popular{}, K: 5}}})
	out, st := r.Retrieve(t.Context(), &Query{}, nil)
	if len(out) != 0 || st.Failed != 1 || !errors.Is(st.Err[0], ErrNoCatalog) {
		t.Fatalf("got %d candidates, failed %b, err %v; want none, 1 and ErrNoCatalog", len(out), st.Failed, st.Err[0])
	}
}

// TestRetrieveQuotas checks every source is asked for its own K and the
// merged list is capped at Total.
func TestRetrieveQuotas(t *testing.T) {
	t.Parallel()
	cat := testCatalog(t, 1000, 4, 3)
	var mu sync.Mutex
	asked := map[string]int{}
	recording := func(name string, first int32) *funcSource {
		return &funcSource{name: name, fn: func(_ context.Context, _ *Query, k int, dst []Hit) ([]Hit, error) {
			mu.Lock()
			asked[name] = k
			mu.Unlock()
			dst = dst[:0]
			for i := range int32(k) {
				dst = append(dst, Hit{Item: first + i, Score: -float32(i)})
			}
			return dst, nil
		}}
	}
	r := newRetriever(t, Config{Total: 25, Sources: []SourceConfig{
		{Source: recording("a", 0), K: 10},
		{Source: recording("b", 100), K: 7, Inline: true},
		{Source: recording("c", 200), K: 12},
	}})
	out, st := r.Retrieve(t.Context(), &Query{Catalog: cat}, nil)
	if want := map[string]int{"a": 10, "b": 7, "c": 12}; !mapsEqual(asked, want) {
		t.Errorf("sources were asked for %v, want %v", asked, want)
	}
	if len(out) != 25 || st.Distinct != 29 || st.Hits != [MaxSources]int32{10, 7, 12} {
		t.Errorf("%d candidates of %d distinct, hits %v; want 25 of 29, [10 7 12 ...]", len(out), st.Distinct, st.Hits[:3])
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func items(cs []Candidate) []int32 {
	out := make([]int32, len(cs))
	for i, c := range cs {
		out[i] = c.Item
	}
	return out
}

// TestConfigValidate checks each bad setting is reported by its key.
func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ok := SourceConfig{Source: Popular{}, K: 10}
	many := make([]SourceConfig, MaxSources+1)
	for i := range many {
		many[i] = SourceConfig{Source: fixed(string(rune('a' + i))), K: 1}
	}
	for _, tt := range []struct {
		name string
		cfg  Config
		want string // "" for valid
	}{
		{"valid", Config{Sources: []SourceConfig{ok}}, ""},
		{"no sources", Config{}, "sources: 0 configured"},
		{"too many", Config{Sources: many}, "sources: 17 configured"},
		{"negative total", Config{Total: -1, Sources: []SourceConfig{ok}}, "total: -1"},
		{"missing source", Config{Sources: []SourceConfig{{K: 1}}}, "sources[0].source: missing"},
		{"zero k", Config{Sources: []SourceConfig{{Source: Popular{}}}}, `sources[0].k: 0 (source "popular")`},
		{"duplicate name", Config{Sources: []SourceConfig{ok, ok}}, `sources[1].name: "popular" is also the name of sources[0]`},
		{"renamed twin", Config{Sources: []SourceConfig{ok, {Source: Popular{}, Name: "popular-2", K: 5}}}, ""},
		{"negative timeout", Config{Sources: []SourceConfig{{Source: Popular{}, K: 1, Timeout: -time.Second}}}, "sources[0].timeout: -1s"},
		{"negative weight", Config{Sources: []SourceConfig{{Source: Popular{}, K: 1, Weight: -1}}}, "sources[0].weight: -1"},
		{"bad source setting", Config{Sources: []SourceConfig{{Source: &CategoryAffinity{Categories: 40}, K: 1}}}, "CategoryAffinity.Categories is 40"},
		{"ann without index", Config{Sources: []SourceConfig{{Source: &ANN{}, K: 1}}}, "ANN.Index is nil"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
