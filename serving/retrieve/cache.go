package retrieve

import (
	"sync"
	"sync/atomic"

	"github.com/adaptrec/adaptrec/serving/catalog"
)

// perCatalog caches a value computed from a catalogue (a sorted item list)
// so it is computed once per catalogue rather than per request. It keeps
// the two most recent catalogues: while serving swaps one in, requests on
// the old and the new one overlap, and a single entry would recompute on
// every alternation.
type perCatalog[T any] struct {
	mu  sync.Mutex // serialises builds, so a swap computes each value once
	cur atomic.Pointer[catalogPair[T]]
}

type catalogPair[T any] struct {
	newest, older catalogEntry[T]
}

type catalogEntry[T any] struct {
	cat *catalog.Catalog
	v   T
}

// get returns build(c), computed at most once while c is one of the two
// most recent catalogues asked for.
func (p *perCatalog[T]) get(c *catalog.Catalog, build func(*catalog.Catalog) T) T {
	if v, ok := p.cur.Load().lookup(c); ok {
		return v
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := p.cur.Load()
	if v, ok := cur.lookup(c); ok {
		return v
	}
	next := &catalogPair[T]{newest: catalogEntry[T]{cat: c, v: build(c)}}
	if cur != nil {
		next.older = cur.newest
	}
	p.cur.Store(next)
	return next.newest.v
}

func (p *catalogPair[T]) lookup(c *catalog.Catalog) (T, bool) {
	var zero T
	switch {
	case p == nil || c == nil:
		return zero, false
	case p.newest.cat == c:
		return p.newest.v, true
	case p.older.cat == c:
		return p.older.v, true
	}
	return zero, false
}
