package retrieval

import "math"

// The solver works in float64 on d×d row-major matrices: a normal-equation
// matrix sums up to thousands of rank-one terms, and a Cholesky factor in
// float32 would lose digits that a fold-in compared with training can see.

// dot returns the inner product of two equal-length vectors, four lanes at a
// time so the compiler keeps four independent accumulators.
func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// addOuterUpper adds c·y·yᵀ to the upper triangle of the d×d matrix a.
func addOuterUpper(a []float64, y []float32, c float64, d int) {
	for r := 0; r < d; r++ {
		cy := c * float64(y[r])
		row := a[r*d+r : r*d+d]
		ys := y[r:d]
		for k, v := range ys {
			row[k] += cy * float64(v)
		}
	}
}

// choleskySolve solves a·x = b for a symmetric positive definite d×d matrix
// whose upper triangle is filled; a is overwritten with its factor and b
// with the solution. It returns false when a is not positive definite.
func choleskySolve(a, b []float64, d int) bool {
	// Factor a = Uᵀ·U with U upper triangular, in place, right-looking so
	// every inner loop walks a contiguous row.
	for j := 0; j < d; j++ {
		rowJ := a[j*d : j*d+d]
		s := rowJ[j]
		if !(s > 0) {
			return false
		}
		ujj := math.Sqrt(s)
		rowJ[j] = ujj
		inv := 1 / ujj
		for i := j + 1; i < d; i++ {
			rowJ[i] *= inv
		}
		for i := j + 1; i < d; i++ {
			uji := rowJ[i]
			if uji == 0 {
				continue
			}
			axpy(a[i*d+i:i*d+d], rowJ[i:d], -uji)
		}
	}
	// Uᵀ·z = b (forward, row by row of U), then U·x = z (backward).
	for k := 0; k < d; k++ {
		row := a[k*d : k*d+d]
		z := b[k] / row[k]
		b[k] = z
		rest := b[k+1 : d]
		for i, u := range row[k+1 : d] {
			rest[i] -= u * z
		}
	}
	for i := d - 1; i >= 0; i-- {
		s := b[i]
		row := a[i*d : i*d+d]
		for k := i + 1; k < d; k++ {
			s -= row[k] * b[k]
		}
		b[i] = s / row[i]
	}
	return true
}

// axpy adds c·x to y, four lanes at a time.
func axpy(y, x []float64, c float64) {
	x = x[:len(y)]
	i := 0
	for ; i+4 <= len(y); i += 4 {
		y[i] += c * x[i]
		y[i+1] += c * x[i+1]
		y[i+2] += c * x[i+2]
		y[i+3] += c * x[i+3]
	}
	for ; i < len(y); i++ {
		y[i] += c * x[i]
	}
}
