package sim

import (
	"math"
	"math/bits"
	"slices"
)

// Stream names keep the random numbers of each part of the simulator
// independent: adding a draw to the catalogue must not change the users.
const (
	streamCatalogue uint64 = iota + 1
	streamUsers
	streamPlan
	streamSession
	streamRunKey
	streamLive
)

// mix derives a well-spread 64-bit value from its inputs (SplitMix64
// finalizer applied in sequence). Seeding per session with it keeps the log
// independent of how sessions are spread over workers.
func mix(vals ...uint64) uint64 {
	h := uint64(0x9e3779b97f4a7c15)
	for _, v := range vals {
		h ^= v + 0x9e3779b97f4a7c15 + (h << 6) + (h >> 2)
		h = splitmix(h)
	}
	return h
}

func splitmix(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// rng is wyrand: tiny state, fast, good enough statistically for simulation,
// and a concrete type so calls inline instead of going through an interface.
type rng struct{ s uint64 }

func newRNG(seed uint64) rng { return rng{s: splitmix(seed)} }

func (r *rng) seed(seed uint64) { r.s = splitmix(seed) }

func (r *rng) uint64() uint64 {
	r.s += 0xa0761d6478bd642f
	hi, lo := bits.Mul64(r.s, r.s^0xe7037ed1a0b428db)
	return hi ^ lo
}

// float64 returns a uniform value in [0, 1).
func (r *rng) float64() float64 { return float64(r.uint64()>>11) * (1.0 / (1 << 53)) }

// intN returns a uniform value in [0, n); n must be > 0.
func (r *rng) intN(n int) int {
	hi, _ := bits.Mul64(r.uint64(), uint64(n))
	return int(hi)
}

// bernoulli reports true with probability p.
func (r *rng) bernoulli(p float64) bool { return r.float64() < p }

// norm returns a standard normal value (Box-Muller; used off the hot path).
func (r *rng) norm() float64 {
	u := 1 - r.float64() // (0, 1]
	v := r.float64()
	return math.Sqrt(-2*math.Log(u)) * math.Cos(2*math.Pi*v)
}

// exp returns an exponential value with the given mean.
func (r *rng) exp(mean float64) float64 { return -mean * math.Log(1-r.float64()) }

// geometric returns a value >= 1 with the given mean (>= 1).
func (r *rng) geometric(mean float64) int {
	if mean <= 1 {
		return 1
	}
	p := 1 / mean
	return 1 + int(math.Log(1-r.float64())/math.Log(1-p))
}

// cumulative samples indexes in proportion to non-negative weights by binary
// search over the running sums; cheap to rebuild, which popularity needs.
type cumulative struct{ sums []float64 }

func (c *cumulative) reset(weights []float64) {
	c.sums = slices.Grow(c.sums[:0], len(weights))
	total := 0.0
	for _, w := range weights {
		total += w
		c.sums = append(c.sums, total)
	}
}

func (c *cumulative) total() float64 {
	if len(c.sums) == 0 {
		return 0
	}
	return c.sums[len(c.sums)-1]
}

// sample returns an index, or -1 when every weight is zero.
func (c *cumulative) sample(r *rng) int {
	t := c.total()
	if t <= 0 {
		return -1
	}
	x := r.float64() * t
	i, _ := slices.BinarySearch(c.sums, x)
	// BinarySearch finds the first sum >= x; a sum equal to x belongs to a
	// zero-width slot only when x is exactly on a boundary, so step past it.
	for i < len(c.sums)-1 && c.sums[i] <= x {
		i++
	}
	return i
}

// alias samples indexes in proportion to fixed weights in O(1) (Vose).
type alias struct {
	prob  []float64
	alias []int32
}

func newAlias(weights []float64) *alias {
	n := len(weights)
	a := &alias{prob: make([]float64, n), alias: make([]int32, n)}
	total := 0.0
	for _, w := range weights {
		total += w
	}
	if n == 0 || total <= 0 {
		return a
	}
	scaled := make([]float64, n)
	small := make([]int32, 0, n)
	large := make([]int32, 0, n)
	for i, w := range weights {
		scaled[i] = w * float64(n) / total
		if scaled[i] < 1 {
			small = append(small, int32(i))
		} else {
			large = append(large, int32(i))
		}
	}
	for len(small) > 0 && len(large) > 0 {
		s, l := small[len(small)-1], large[len(large)-1]
		small = small[:len(small)-1]
		a.prob[s], a.alias[s] = scaled[s], l
		scaled[l] -= 1 - scaled[s]
		if scaled[l] < 1 {
			large = large[:len(large)-1]
			small = append(small, l)
		}
	}
	for _, i := range large {
		a.prob[i], a.alias[i] = 1, i
	}
	for _, i := range small {
		a.prob[i], a.alias[i] = 1, i
	}
	return a
}

func (a *alias) sample(r *rng) int {
	i := r.intN(len(a.prob))
	if r.float64() < a.prob[i] {
		return i
	}
	return int(a.alias[i])
}

// zipfWeights returns weights 1/(rank+1)^s for n ranks.
func zipfWeights(n int, s float64) []float64 {
	w := make([]float64, n)
	for i := range w {
		w[i] = 1 / math.Pow(float64(i+1), s)
	}
	return w
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// normalize scales v to unit length in place (a zero vector stays zero).
func normalize(v []float32) {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	if s == 0 {
		return
	}
	inv := float32(1 / math.Sqrt(s))
	for i := range v {
		v[i] *= inv
	}
}

func dot(a, b []float32) float64 {
	b = b[:len(a)]
	var s0, s1 float32
	i := 0
	for ; i+1 < len(a); i += 2 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
	}
	if i < len(a) {
		s0 += a[i] * b[i]
	}
	return float64(s0 + s1)
}

// randomUnit fills v with a uniformly random direction.
func randomUnit(r *rng, v []float32) {
	for i := range v {
		v[i] = float32(r.norm())
	}
	normalize(v)
}
