package covisit

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/internal/topk"
)

// randomTable is a table of n items with deg random neighbours each, as
// large as a production catalogue, without the cost of building one.
func randomTable(n, deg int) *Table {
	rng := rand.New(rand.NewPCG(1, 1))
	t := &Table{
		ids: make([]string, n), off: make([]int32, n+1),
		nbr: make([]int32, 0, n*deg), wt: make([]float32, 0, n*deg),
		window: DefaultWindow, maxDistance: DefaultMaxDistance, distanceDecay: DefaultDistanceDecay,
		neighbours: deg, recencyDecay: DefaultRecencyDecay,
	}
	list := make([]topk.Hit, 0, deg)
	for i := range n {
		t.ids[i] = fmt.Sprintf("item-%07d", i)
		list = list[:0]
		for len(list) < deg {
			j := int32(rng.IntN(n))
			if j != int32(i) && !slices.ContainsFunc(list, func(h topk.Hit) bool { return h.ID == j }) {
				list = append(list, topk.Hit{ID: j, Score: rng.Float32() + 0.01})
			}
		}
		slices.SortFunc(list, func(a, b topk.Hit) int {
			if a.Above(b) {
				return -1
			}
			return 1
		})
		for _, h := range list {
			t.nbr = append(t.nbr, h.ID)
			t.wt = append(t.wt, h.Score)
		}
		t.off[i+1] = int32(len(t.nbr))
	}
	t.init()
	return t
}

// BenchmarkRecommend: 20 recent items × 50 neighbours over 200,000 items,
// top 100, a tenth of the candidates excluded.
func BenchmarkRecommend(b *testing.B) {
	tb := randomTable(200_000, 50)
	rng := rand.New(rand.NewPCG(3, 3))
	const queries = 256
	recents := make([][]int32, queries)
	for q := range recents {
		recents[q] = make([]int32, 20)
		for k := range recents[q] {
			recents[q][k] = int32(rng.IntN(tb.Len()))
		}
	}
	exclude := func(i int32) bool { return i%10 == 0 }
	b.Run("Table", func(b *testing.B) {
		dst := make([]Hit, 0, 100)
		b.ReportAllocs()
		q := 0
		for b.Loop() {
			dst = tb.Recommend(dst, recents[q%queries], 100, exclude)
			q++
		}
	})
	b.Run("Scorer", func(b *testing.B) {
		s := tb.NewScorer()
		dst := make([]Hit, 0, 100)
		b.ReportAllocs()
		q := 0
		for b.Loop() {
			dst = s.Recommend(dst, recents[q%queries], 100, exclude)
			q++
		}
	})
}

// BenchmarkBuild: 200,000 interactions of 5,000 users on 20,000 items.
func BenchmarkBuild(b *testing.B) {
	in := sessions(5_000, 20_000, 200_000, 4)
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		tb, err := Build(b.Context(), in, Config{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(tb.Edges()), "edges")
		b.ReportMetric(time.Since(start).Seconds(), "s/build")
	}
}
