package serving

import (
	"sync/atomic"
	"time"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/fnv1a"
)

// responseCache keeps the last good response per user: the last level of
// the degradation hierarchy, which answers when nothing else can. It is
// direct-mapped (a user hashes to one slot; a collision replaces the older
// entry), lock-free, and bounded by its slot count whatever the number of
// users.
type responseCache struct {
	slots []atomic.Pointer[cachedResponse]
	ttl   time.Duration
}

type cachedResponse struct {
	user    string
	items   []*adaptrecv1.ScoredItem
	version string
	at      time.Time
}

func newResponseCache(slots int, ttl time.Duration) *responseCache {
	return &responseCache{slots: make([]atomic.Pointer[cachedResponse], slots), ttl: ttl}
}

func (c *responseCache) slot(user string) *atomic.Pointer[cachedResponse] {
	return &c.slots[fnv1a.String(user)%uint64(len(c.slots))]
}

func (c *responseCache) put(user string, items []*adaptrecv1.ScoredItem, version string, at time.Time) {
	if c == nil || len(items) == 0 {
		return
	}
	c.slot(user).Store(&cachedResponse{user: user, items: items, version: version, at: at})
}

// get returns the user's cached response younger than the ttl.
func (c *responseCache) get(user string, now time.Time) (*cachedResponse, bool) {
	if c == nil {
		return nil, false
	}
	e := c.slot(user).Load()
	if e == nil || e.user != user || now.Sub(e.at) > c.ttl {
		return nil, false
	}
	return e, true
}
