package retrieve

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/serving/catalog"
)

// allSources returns one of each source of the package over c, with an
// ANN index of its own.
func allSources(t testing.TB, c *catalog.Catalog) ([]SourceConfig, []float32) {
	t.Helper()
	x, m, vec := testANN(t, c, 1000, 16, 11)
	return []SourceConfig{
		{Source: &ANN{Index: x, Map: m, Catalog: c}, K: 60, Timeout: 10 * time.Second},
		{Source: &CategoryAffinity{}, K: 40, Timeout: 10 * time.Second, Inline: true},
		{Source: &Trending{}, K: 30, Timeout: 10 * time.Second},
		{Source: &Fresh{}, K: 30, Timeout: 10 * time.Second},
		{Source: Popular{}, K: 30, Timeout: 10 * time.Second},
	}, vec
}

// TestExcludeHonouredByEverySource checks no source, alone or merged,
// proposes an excluded or a flagged item, while each still answers.
func TestExcludeHonouredByEverySource(t *testing.T) {
	t.Parallel()
	c := testCatalog(t, 2000, 6, 12)
	srcs, vec := allSources(t, c)
	excluded := func(i int32) bool { return i%2 == 0 }
	q := &Query{Catalog: c, UserVector: vec, Recent: []int32{1, 3, 5, 7}, Exclude: excluded}
	for _, s := range srcs {
		hits, err := s.Source.Retrieve(t.Context(), q, s.K, nil)
		if err != nil {
			t.Fatalf("%s: %v", s.Source.Name(), err)
		}
		if len(hits) == 0 {
			t.Errorf("%s: no hits; the test should exercise it", s.Source.Name())
		}
		for _, h := range hits {
			if excluded(h.Item) || c.Flagged[h.Item] {
				t.Errorf("%s proposed item %d (excluded %v, flagged %v)", s.Source.Name(), h.Item, excluded(h.Item), c.Flagged[h.Item])
			}
		}
	}
	r := newRetriever(t, Config{Sources: srcs})
	out, st := r.Retrieve(t.Context(), q, nil)
	if st.Answered != 1<<len(srcs)-1 {
		t.Fatalf("answered %b, want every source: %v", st.Answered, st.Err)
	}
	for _, c := range out {
		if excluded(c.Item) {
			t.Errorf("merged list holds excluded item %d", c.Item)
		}
	}
}

// TestRetrieveDeterministic checks the merged list depends on nothing but
// the query: not on which source finishes first, on pooled state left by
// earlier calls, or on concurrent calls.
func TestRetrieveDeterministic(t *testing.T) {
	t.Parallel()
	c := testCatalog(t, 2000, 6, 13)
	srcs, vec := allSources(t, c)
	q := &Query{Catalog: c, UserVector: vec, CategoryAffinity: []float32{0, 2, 1, 0, 3}, Exclude: func(i int32) bool { return i%5 == 0 }}
	want, st := newRetriever(t, Config{Sources: srcs}).Retrieve(t.Context(), q, nil)
	if st.Answered != 1<<len(srcs)-1 || len(want) < 100 {
		t.Fatalf("answered %b with %d candidates; want every source and at least 100", st.Answered, len(want))
	}
	multi := 0
	for _, c := range want {
		if c.Sources&(c.Sources-1) != 0 {
			multi++
		}
	}
	if multi == 0 {
		t.Fatal("no candidate came from two sources; the test should exercise the merge")
	}
	r := newRetriever(t, Config{Sources: srcs})
	other := &Query{Catalog: c, UserVector: make([]float32, len(vec)), Recent: []int32{4, 8}}
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Go(func() {
			var dst []Candidate
			for i := range 10 {
				if (g+i)%2 == 0 { // leave other state in the pool
					dst, _ = r.Retrieve(t.Context(), other, dst)
					continue
				}
				dst, _ = r.Retrieve(t.Context(), q, dst)
				if !slices.Equal(dst, want) {
					t.Errorf("goroutine %d call %d: %d candidates differ from the first call's %d", g, i, len(dst), len(want))
					return
				}
			}
		})
	}
	wg.Wait()
}
