package ann

import (
	"github.com/adaptrec/adaptrec/internal/artifact"
	"github.com/adaptrec/adaptrec/internal/topk"
)

// Names the tests use for what moved to internal/artifact and internal/topk.
const artifactHeaderSize = artifact.HeaderSize

// crcOf is the artifact checksum of a header's first 60 bytes and a
// payload, for tests that reseal edited bytes.
func crcOf(header, payload []byte) uint32 { return artifact.Checksum(header, payload) }

// hitAbove reports whether a ranks above b in search results.
func hitAbove(a, b Hit) bool { return topk.Hit(a).Above(topk.Hit(b)) }

// topHits is a top-k heap as the tests build it (topHits{k: k}), over
// internal/topk's.
type topHits struct {
	k    int
	heap *topk.Heap
}

func (t *topHits) push(x Hit) {
	if t.heap == nil {
		h := topk.New(nil, t.k)
		t.heap = &h
	}
	t.heap.Push(topk.Hit(x))
}

func (t *topHits) sorted() []Hit {
	var out []Hit
	if t.heap != nil {
		for _, h := range t.heap.Sorted() {
			out = append(out, Hit(h))
		}
	}
	return out
}
