package fnv1a

import (
	"hash/fnv"
	"testing"
)

func TestStringMatchesHashFNV(t *testing.T) {
	for _, s := range []string{"", "a", "session-42", "user0000042", "éü\x00\xff"} {
		h := fnv.New64a()
		h.Write([]byte(s))
		if got, want := String(s), h.Sum64(); got != want {
			t.Errorf("String(%q) = %#x, hash/fnv says %#x", s, got, want)
		}
	}
}
