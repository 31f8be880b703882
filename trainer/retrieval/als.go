package retrieval

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Config. Regularization and Alpha were chosen on validation
// splits of the MovieLens 100K training period (docs/evaluation.md); the
// best regularization grows with the data, so re-tune them for a new
// catalogue with eval.Options.ValidationFraction.
const (
	DefaultFactors        = 64
	DefaultIterations     = 15
	DefaultRegularization = 40
	DefaultAlpha          = 10
	DefaultInitScale      = 0.01
)

// Interaction is one observed user–item pair of implicit feedback. Users and
// items are dense indexes (0..users-1, 0..items-1); mapping ids to indexes
// is the caller's. Strength scales the confidence 1 + Alpha·Strength that
// the user prefers the item; pairs that appear twice have their strengths
// summed.
type Interaction struct {
	User     int32
	Item     int32
	Strength float32
}

// Progress reports one finished ALS iteration.
type Progress struct {
	// Iteration counts from 1 to Iterations.
	Iteration  int
	Iterations int
	// Loss is the implicit-ALS objective after the iteration: the
	// confidence-weighted squared error over every user–item cell plus the
	// L2 penalty. It falls monotonically.
	Loss float64
	// Elapsed is the time since Train started.
	Elapsed time.Duration
}

// Config configures Train. Zero values mean the documented defaults.
type Config struct {
	// Factors is the embedding dimension; 0 means 64.
	Factors int
	// Iterations is the number of ALS sweeps (items, then users); 0 means 15.
	Iterations int
	// Regularization is the L2 weight λ on every factor; 0 means 40.
	Regularization float64
	// Alpha is the confidence slope: an observed pair with strength s has
	// confidence 1 + Alpha·s, an unobserved one confidence 1; 0 means 10.
	Alpha float64
	// InitScale is the standard deviation of the random initial factors;
	// 0 means 0.01.
	InitScale float64
	// Seed fixes the initial factors, and with them the whole result: the
	// same seed and data give bit-identical factors whatever Workers is.
	Seed uint64
	// Workers is the number of goroutines solving rows; 0 means GOMAXPROCS.
	Workers int
	// Progress, if set, is called after every iteration from Train's
	// goroutine.
	Progress func(Progress)
}

func (c Config) withDefaults() Config {
	if c.Factors == 0 {
		c.Factors = DefaultFactors
	}
	if c.Iterations == 0 {
		c.Iterations = DefaultIterations
	}
	if c.Regularization == 0 {
		c.Regularization = DefaultRegularization
	}
	if c.Alpha == 0 {
		c.Alpha = DefaultAlpha
	}
	if c.InitScale == 0 {
		c.InitScale = DefaultInitScale
	}
	if c.Workers == 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	return c
}

// Validate reports the first configuration value out of range, after
// defaults are applied.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Factors < 1 || c.Factors > MaxDims:
		return fmt.Errorf("retrieval: factors %d, want 1..%d", c.Factors, MaxDims)
	case c.Iterations < 1:
		return fmt.Errorf("retrieval: iterations %d, want at least 1", c.Iterations)
	case !(c.Regularization > 0) || math.IsInf(c.Regularization, 0):
		return fmt.Errorf("retrieval: regularization %v, want a finite value > 0", c.Regularization)
	case !(c.Alpha > 0) || math.IsInf(c.Alpha, 0):
		return fmt.Errorf("retrieval: alpha %v, want a finite value > 0", c.Alpha)
	case !(c.InitScale > 0) || math.IsInf(c.InitScale, 0):
		return fmt.Errorf("retrieval: init scale %v, want a finite value > 0", c.InitScale)
	case c.Workers < 1:
		return fmt.Errorf("retrieval: workers %d, want at least 1", c.Workers)
	}
	return nil
}

// MaxDims bounds the embedding dimension: the solver's d×d float64 systems
// stay cache-sized and artifacts stay sane.
const MaxDims = 1024

// Model holds learned user and item embeddings: the score of item i for
// user u is the inner product of their factors.
type Model struct {
	// Dims is the embedding dimension.
	Dims int
	// Users and Items count the rows of UserFactors and ItemFactors.
	Users, Items int
	// UserFactors and ItemFactors hold the vectors row after row. A user or
	// item without interactions has a zero vector.
	UserFactors []float32
	ItemFactors []float32
	// Regularization and Alpha are the training values; folding a user in
	// needs them to reproduce the trained user vectors.
	Regularization float64
	Alpha          float64
}

// User returns user u's vector (a view, not a copy).
func (m *Model) User(u int) []float32 { return m.UserFactors[u*m.Dims : (u+1)*m.Dims] }

// Item returns item i's vector (a view, not a copy).
func (m *Model) Item(i int) []float32 { return m.ItemFactors[i*m.Dims : (i+1)*m.Dims] }

// Score returns the inner product of user u's and item i's vectors.
func (m *Model) Score(u, i int) float32 { return dot(m.User(u), m.Item(i)) }

// Embedder returns a fold-in embedder over the model's item factors.
func (m *Model) Embedder() (*Embedder, error) {
	return NewEmbedder(m.ItemFactors, m.Dims, m.Regularization, m.Alpha)
}

// csr is one side of the interaction matrix: for row r, cols[off[r]:off[r+1]]
// are its partners and w the matching Alpha·strength (confidence − 1).
type csr struct {
	off  []int
	cols []int32
	w    []float32
}

func (m *csr) rows() int { return len(m.off) - 1 }

// buildCSR groups interactions by row (user when byUser, else item), merging
// duplicate pairs, with partners in ascending order so the solve order, and
// with it every rounding, depends on the data only.
func buildCSR(data []Interaction, rows int, byUser bool, alpha float64) *csr {
	off := make([]int, rows+1)
	for _, it := range data {
		r := it.Item
		if byUser {
			r = it.User
		}
		off[r+1]++
	}
	for r := 0; r < rows; r++ {
		off[r+1] += off[r]
	}
	type entry struct {
		col int32
		s   float64
	}
	tmp := make([]entry, len(data))
	next := slices.Clone(off[:rows])
	for _, it := range data {
		r, c := it.Item, it.User
		if byUser {
			r, c = it.User, it.Item
		}
		tmp[next[r]] = entry{c, float64(it.Strength)}
		next[r]++
	}
	m := &csr{off: make([]int, rows+1), cols: make([]int32, 0, len(data)), w: make([]float32, 0, len(data))}
	for r := 0; r < rows; r++ {
		row := tmp[off[r]:off[r+1]]
		slices.SortStableFunc(row, func(a, b entry) int { return int(a.col) - int(b.col) })
		for i := 0; i < len(row); {
			j, s := i+1, row[i].s
			for j < len(row) && row[j].col == row[i].col {
				s += row[j].s
				j++
			}
			m.cols = append(m.cols, row[i].col)
			m.w = append(m.w, float32(alpha*s))
			i = j
		}
		m.off[r+1] = len(m.cols)
	}
	return m
}

// Train fits implicit-feedback matrix factorisation by alternating least
// squares (Hu, Koren and Volinsky 2008): every observed pair is a positive
// with confidence 1 + Alpha·strength, every other cell a negative with
// confidence 1, solved exactly row by row in closed form. Each iteration
// solves the items against the users, then the users against the items, so
// the returned user vectors are exactly what Embedder.Embed gives for the
// same interactions.
func Train(ctx context.Context, users, items int, data []Interaction, cfg Config) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if users < 1 || items < 1 {
		return nil, fmt.Errorf("retrieval: %d users and %d items, want at least one of each", users, items)
	}
	if users > math.MaxInt32 || items > math.MaxInt32 {
		return nil, errors.New("retrieval: more than 2^31-1 users or items")
	}
	for n, it := range data {
		switch {
		case it.User < 0 || int(it.User) >= users:
			return nil, fmt.Errorf("retrieval: interaction %d: user %d out of range 0..%d", n, it.User, users-1)
		case it.Item < 0 || int(it.Item) >= items:
			return nil, fmt.Errorf("retrieval: interaction %d: item %d out of range 0..%d", n, it.Item, items-1)
		case !(it.Strength >= 0) || math.IsInf(float64(it.Strength), 0):
			return nil, fmt.Errorf("retrieval: interaction %d: strength %v, want a finite value >= 0", n, it.Strength)
		}
	}
	start := time.Now()
	d := cfg.Factors
	byUser := buildCSR(data, users, true, cfg.Alpha)
	byItem := buildCSR(data, items, false, cfg.Alpha)

	m := &Model{
		Dims: d, Users: users, Items: items,
		UserFactors:    make([]float32, users*d),
		ItemFactors:    make([]float32, items*d),
		Regularization: cfg.Regularization,
		Alpha:          cfg.Alpha,
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x9e3779b97f4a7c15))
	for i := range m.UserFactors {
		m.UserFactors[i] = float32(rng.NormFloat64() * cfg.InitScale)
	}
	for i := range m.ItemFactors {
		m.ItemFactors[i] = float32(rng.NormFloat64() * cfg.InitScale)
	}

	s := newSolver(d, cfg.Workers)
	for it := 1; it <= cfg.Iterations; it++ {
		if err := s.sweep(ctx, m.ItemFactors, m.UserFactors, byItem, cfg.Regularization); err != nil {
			return nil, err
		}
		if err := s.sweep(ctx, m.UserFactors, m.ItemFactors, byUser, cfg.Regularization); err != nil {
			return nil, err
		}
		if cfg.Progress != nil {
			loss, err := s.loss(ctx, m, byUser)
			if err != nil {
				return nil, err
			}
			cfg.Progress(Progress{Iteration: it, Iterations: cfg.Iterations, Loss: loss, Elapsed: time.Since(start)})
		}
	}
	return m, nil
}

// chunkRows is the unit of parallel work and of ordered reduction: partial
// sums are per chunk and added in chunk order, so Workers never changes a
// bit of the result.
const chunkRows = 256

// solver holds per-worker scratch for the row solves.
type solver struct {
	d       int
	workers int
	gram    []float64
	scratch []rowScratch
}

type rowScratch struct {
	a, b []float64
}

func newSolver(d, workers int) *solver {
	s := &solver{d: d, workers: workers, gram: make([]float64, d*d), scratch: make([]rowScratch, workers)}
	for w := range s.scratch {
		s.scratch[w] = rowScratch{a: make([]float64, d*d), b: make([]float64, 2*d)}
	}
	return s
}

// parallel runs fn over [0, n) in chunks of chunkRows on the solver's
// workers; fn gets the worker number for its scratch and the chunk number.
// It stops handing out chunks once ctx is done and returns ctx's error.
func parallel(ctx context.Context, n, workers int, fn func(worker, chunk, lo, hi int)) error {
	chunks := (n + chunkRows - 1) / chunkRows
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range min(workers, max(chunks, 1)) {
		wg.Go(func() {
			for {
				c := int(next.Add(1) - 1)
				if c >= chunks || ctx.Err() != nil {
					return
				}
				lo := c * chunkRows
				fn(w, c, lo, min(lo+chunkRows, n))
			}
		})
	}
	wg.Wait()
	return ctx.Err()
}

// gramOf sets s.gram to FᵀF + reg·I for the n×d factors F (upper
// triangle), summing fixed chunks in order.
func (s *solver) gramOf(ctx context.Context, f []float32, reg float64) error {
	d := s.d
	n := len(f) / d
	partial := make([][]float64, (n+chunkRows-1)/chunkRows)
	err := parallel(ctx, n, s.workers, func(_, c, lo, hi int) {
		partial[c] = gramChunk(f, d, lo, hi)
	})
	if err != nil {
		return err
	}
	sumGram(s.gram, partial, d, reg, false)
	return nil
}

// gramChunk returns the upper triangle of Σ f_r·f_rᵀ over rows lo..hi-1.
func gramChunk(f []float32, d, lo, hi int) []float64 {
	g := make([]float64, d*d)
	for r := lo; r < hi; r++ {
		addOuterUpper(g, f[r*d:(r+1)*d], 1, d)
	}
	return g
}

// sumGram sets dst (adds to it, when add) to the chunk sums in order plus
// reg on the diagonal.
func sumGram(dst []float64, partial [][]float64, d int, reg float64, add bool) {
	if !add {
		clear(dst)
	}
	for _, g := range partial {
		for i, v := range g {
			dst[i] += v
		}
	}
	for i := 0; i < d; i++ {
		dst[i*d+i] += reg
	}
}

// sweep solves every row of dst against the fixed factors: for row r with
// partners j and weights w (confidence − 1),
// (FᵀF + λI + Σ w·f_j·f_jᵀ)·x = Σ (1 + w)·f_j.
func (s *solver) sweep(ctx context.Context, dst, fixed []float32, m *csr, reg float64) error {
	if err := s.gramOf(ctx, fixed, reg); err != nil {
		return err
	}
	d := s.d
	var failed atomic.Int64
	failed.Store(-1)
	err := parallel(ctx, m.rows(), s.workers, func(w, _, lo, hi int) {
		sc := &s.scratch[w]
		for r := lo; r < hi; r++ {
			from, to := m.off[r], m.off[r+1]
			if !solveRow(dst[r*d:(r+1)*d], fixed, d, s.gram, m.cols[from:to], m.w[from:to], sc.a, sc.b) {
				failed.CompareAndSwap(-1, int64(r))
			}
		}
	})
	if err != nil {
		return err
	}
	if r := failed.Load(); r >= 0 {
		return fmt.Errorf("retrieval: normal equations of row %d are not positive definite (non-finite factors?)", r)
	}
	return nil
}

// solveRow writes into x the least-squares vector for partners cols with
// weights w (confidence − 1) against fixed; gramReg is FᵀF + λI with its
// upper triangle filled; a and b are d×d and d scratch.
func solveRow(x, fixed []float32, d int, gramReg []float64, cols []int32, w []float32, a, b []float64) bool {
	if len(cols) == 0 {
		clear(x)
		return true
	}
	copy(a, gramReg)
	clear(b)
	// The partner vector in float64 sits in the last d values of b's
	// backing array (b is allocated with 2d), so the d²/2 inner loop
	// converts nothing.
	y := b[d : 2*d : 2*d]
	b = b[:d]
	for k, j := range cols {
		f := fixed[int(j)*d : int(j)*d+d]
		for i, v := range f {
			y[i] = float64(v)
		}
		wk := float64(w[k])
		for r := 0; r < d; r++ {
			axpy(a[r*d+r:r*d+d], y[r:d], wk*y[r])
		}
		c := 1 + wk
		for i, v := range y {
			b[i] += c * v
		}
	}
	if !choleskySolve(a, b, d) {
		return false
	}
	for i := range x {
		x[i] = float32(b[i])
	}
	return true
}

// loss returns the implicit-ALS objective
// Σ_obs c·(1−s)² + Σ_unobs s² + λ(‖X‖² + ‖Y‖²), using
// Σ_all s² = Σ_u x_uᵀ(YᵀY)x_u so it costs one pass over the observed pairs.
func (s *solver) loss(ctx context.Context, m *Model, byUser *csr) (float64, error) {
	d := m.Dims
	if err := s.gramOf(ctx, m.ItemFactors, 0); err != nil {
		return 0, err
	}
	chunks := (m.Users + chunkRows - 1) / chunkRows
	partial := make([]float64, chunks)
	err := parallel(ctx, m.Users, s.workers, func(_, c, lo, hi int) {
		var sum float64
		for u := lo; u < hi; u++ {
			x := m.User(u)
			// xᵀGx from the upper triangle.
			for i := 0; i < d; i++ {
				xi := float64(x[i])
				row := s.gram[i*d : i*d+d]
				acc := row[i] * xi
				for j := i + 1; j < d; j++ {
					acc += 2 * row[j] * float64(x[j])
				}
				sum += xi * acc
			}
			for k := byUser.off[u]; k < byUser.off[u+1]; k++ {
				sc := float64(dot(x, m.Item(int(byUser.cols[k]))))
				c := 1 + float64(byUser.w[k])
				sum += c*(1-sc)*(1-sc) - sc*sc
			}
			for _, v := range x {
				sum += m.Regularization * float64(v) * float64(v)
			}
		}
		partial[c] = sum
	})
	if err != nil {
		return 0, err
	}
	var total float64
	for _, p := range partial {
		total += p
	}
	for _, v := range m.ItemFactors {
		total += m.Regularization * float64(v) * float64(v)
	}
	return total, nil
}
