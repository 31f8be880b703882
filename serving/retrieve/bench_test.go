package retrieve

import (
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/serving/ann"
)

// BenchmarkRetrieve measures a Recommend-sized retrieval on a 50,000-item
// catalogue: ANN (200 of a 50,000 × 64 random index), category (100),
// trending (100) and fresh (100), 50 recent items excluded through a map,
// merged into at most 500 candidates. The variants place the sources on
// goroutines or on the calling one; the per-source lines are each source
// alone, called directly.
func BenchmarkRetrieve(b *testing.B) {
	const n, d, users = 50_000, 64, 64
	c := testCatalog(b, n, 200, 21)
	rng := rand.New(rand.NewPCG(21, 3))
	ids := make([]int32, n)
	m := make([]int32, n)
	for i, p := range rng.Perm(n) {
		ids[i], m[i] = int32(i), int32(p)
	}
	vecs := make([]float32, n*d)
	for i := range vecs {
		vecs[i] = float32(rng.NormFloat64())
	}
	x, err := ann.Build(b.Context(), ids, vecs, d, ann.Config{Seed: 21})
	if err != nil {
		b.Fatal(err)
	}
	qs := make([]Query, users)
	for u := range qs {
		vec := make([]float32, d)
		for i := range vec {
			vec[i] = float32(rng.NormFloat64())
		}
		aff := make([]float32, c.Categories())
		for range 8 {
			aff[rng.IntN(len(aff))] = rng.Float32()
		}
		seen := make(map[int32]struct{}, 50)
		recent := make([]int32, 0, 50)
		for range 50 {
			i := int32(rng.IntN(n))
			seen[i] = struct{}{}
			recent = append(recent, i)
		}
		qs[u] = Query{Catalog: c, UserVector: vec, Recent: recent, CategoryAffinity: aff,
			Exclude: func(i int32) bool { _, ok := seen[i]; return ok }}
	}
	annSrc, cat, trend, fresh := &ANN{Index: x, Map: m, Catalog: c}, &CategoryAffinity{}, &Trending{}, &Fresh{}
	trend.Prepare(c)
	fresh.Prepare(c)
	config := func(inline ...bool) Config {
		srcs := []SourceConfig{
			{Source: annSrc, K: 200, Timeout: time.Second},
			{Source: cat, K: 100, Timeout: time.Second},
			{Source: trend, K: 100, Timeout: time.Second},
			{Source: fresh, K: 100, Timeout: time.Second},
		}
		for i := range srcs {
			srcs[i].Inline = inline[i]
		}
		return Config{Sources: srcs}
	}
	for _, v := range []struct {
		name string
		cfg  Config
	}{
		{"goroutines", config(false, false, false, false)},
		{"ann-inline", config(true, false, false, false)},
		{"catalogue-inline", config(false, true, true, true)},
		{"all-inline", config(true, true, true, true)},
	} {
		b.Run(v.name, func(b *testing.B) {
			r := newRetriever(b, v.cfg)
			var dst []Candidate
			var drops, cands int
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				var st Stats
				dst, st = r.Retrieve(b.Context(), &qs[i%users], dst)
				drops += popcount(st.Dropped())
				cands += len(dst)
				i++
			}
			b.ReportMetric(float64(drops)/float64(i), "drops/op")
			b.ReportMetric(float64(cands)/float64(i), "candidates/op")
		})
	}
	// Under load (more requests in flight than cores, as at 500 req/s) the
	// question is CPU per request rather than one request's latency.
	for _, v := range []struct {
		name string
		cfg  Config
	}{
		{"loaded/goroutines", config(false, false, false, false)},
		{"loaded/catalogue-inline", config(false, true, true, true)},
		{"loaded/all-inline", config(true, true, true, true)},
	} {
		b.Run(v.name, func(b *testing.B) {
			r := newRetriever(b, v.cfg)
			var next atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				var dst []Candidate
				for pb.Next() {
					dst, _ = r.Retrieve(b.Context(), &qs[next.Add(1)%users], dst)
				}
			})
		})
	}
	for _, s := range []struct {
		src Source
		k   int
	}{{annSrc, 200}, {cat, 100}, {trend, 100}, {fresh, 100}} {
		b.Run("alone/"+s.src.Name(), func(b *testing.B) {
			var dst []Hit
			i := 0
			b.ReportAllocs()
			for b.Loop() {
				dst, _ = s.src.Retrieve(b.Context(), &qs[i%users], s.k, dst)
				i++
			}
		})
	}
}

func popcount(m uint16) int {
	n := 0
	for ; m != 0; m &= m - 1 {
		n++
	}
	return n
}
