package retrieval

import (
	"context"
	"math"
	"math/rand/v2"
)

// kmeans clusters the n×d vectors into k centroids by Lloyd's algorithm on
// squared Euclidean distance, deterministically for a seed: the initial
// centroids are distinct random points, every assignment is independent of
// scheduling, and centroid sums run in point order. An empty cluster takes
// half of the largest one (its centroid nudged apart), as FAISS does.
func kmeans(ctx context.Context, vecs []float32, d, k, iters int, seed uint64, workers int) ([]float32, error) {
	n := len(vecs) / d
	rng := rand.New(rand.NewPCG(seed, 0xda942042e4dd58b5))
	cent := make([]float32, k*d)
	for c, p := range rng.Perm(n)[:k] {
		copy(cent[c*d:(c+1)*d], vecs[p*d:(p+1)*d])
	}
	assign := make([]int32, n)
	sums := make([]float64, k*d)
	counts := make([]int, k)
	for range iters {
		if err := assignNearest(ctx, vecs, cent, d, assign, workers); err != nil {
			return nil, err
		}
		clear(sums)
		clear(counts)
		for p := 0; p < n; p++ {
			c := int(assign[p])
			counts[c]++
			s := sums[c*d : (c+1)*d]
			for j, v := range vecs[p*d : (p+1)*d] {
				s[j] += float64(v)
			}
		}
		for c := 0; c < k; c++ {
			if counts[c] == 0 {
				continue
			}
			inv := 1 / float64(counts[c])
			for j := 0; j < d; j++ {
				cent[c*d+j] = float32(sums[c*d+j] * inv)
			}
		}
		splitEmpty(cent, counts, d, rng)
	}
	return cent, nil
}

// splitEmpty gives every empty cluster a copy of a large cluster's
// centroid, the two pushed apart by a small relative step, and halves the
// large cluster's count so the next split picks another.
func splitEmpty(cent []float32, counts []int, d int, rng *rand.Rand) {
	const eps = 1.0 / 1024
	for c := range counts {
		if counts[c] > 0 {
			continue
		}
		// Pick a large cluster with probability proportional to its size
		// beyond one, so singletons are never split.
		total := 0
		for _, n := range counts {
			total += max(n-1, 0)
		}
		if total == 0 {
			return
		}
		r := rng.IntN(total)
		big := 0
		for i, n := range counts {
			if r < max(n-1, 0) {
				big = i
				break
			}
			r -= max(n-1, 0)
		}
		src, dst := cent[big*d:(big+1)*d], cent[c*d:(c+1)*d]
		for j := range src {
			if j%2 == 0 {
				dst[j] = src[j] * (1 + eps)
				src[j] *= 1 - eps
			} else {
				dst[j] = src[j] * (1 - eps)
				src[j] *= 1 + eps
			}
		}
		counts[c] = counts[big] / 2
		counts[big] -= counts[c]
	}
}

// assignNearest sets assign[p] to the centroid nearest vector p in squared
// Euclidean distance, ties to the lower centroid.
func assignNearest(ctx context.Context, vecs, cent []float32, d int, assign []int32, workers int) error {
	k := len(cent) / d
	half := make([]float32, k) // ‖c‖²/2: argmin ‖x−c‖² = argmax x·c − ‖c‖²/2
	for c := 0; c < k; c++ {
		cv := cent[c*d : (c+1)*d]
		half[c] = dot(cv, cv) / 2
	}
	return parallel(ctx, len(assign), workers, func(_, _, lo, hi int) {
		for p := lo; p < hi; p++ {
			x := vecs[p*d : (p+1)*d]
			best, bestScore := int32(0), float32(math.Inf(-1))
			for c := 0; c < k; c++ {
				s := dot(x, cent[c*d:(c+1)*d]) - half[c]
				if s > bestScore {
					best, bestScore = int32(c), s
				}
			}
			assign[p] = best
		}
	})
}

// randPerm returns a permutation of 0..n-1 fixed by seed.
func randPerm(n int, seed uint64) []int {
	return rand.New(rand.NewPCG(seed, 0x2545f4914f6cdd1d)).Perm(n)
}
