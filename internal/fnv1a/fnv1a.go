// Package fnv1a is 64-bit FNV-1a over a string without allocating
// (hash/fnv needs a []byte and an interface value): for hashes on the
// request path that must be the same in every process and release, such
// as session keys and canary routing.
package fnv1a

const (
	offset = 14695981039346656037
	prime  = 1099511628211
)

// String returns the 64-bit FNV-1a hash of s.
func String(s string) uint64 {
	h := uint64(offset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime
	}
	return h
}
