package online

import (
	"hash/maphash"
)

// idIndex maps item ids to dense indexes. It is built once per item view and
// read by every request 500 times, so it is laid out for the cache: an
// open-addressing table of 32-byte slots holding short ids inline, so a
// lookup usually costs one cache miss where a Go map of strings costs
// three (bucket, string header, string bytes).
type idIndex struct {
	slots []idSlot
	mask  uint64
	seed  maphash.Seed
	ids   []string // dense index → id, for ids too long to inline
	n     int
}

// inlineKey is the longest id held in a slot.
const inlineKey = 23

type idSlot struct {
	tag  uint32 // high half of the hash, to skip most mismatches cheaply
	d    int32  // dense index + 1; 0 marks an empty slot
	klen uint8  // length of an inline id; longKey when not inline
	key  [inlineKey]byte
}

const longKey = 0xff

func newIDIndex(ids []string) *idIndex {
	size := 16
	for size < 2*len(ids) {
		size *= 2
	}
	x := &idIndex{slots: make([]idSlot, size), mask: uint64(size - 1), seed: maphash.MakeSeed(), ids: ids, n: len(ids)}
	for d, id := range ids {
		x.insert(id, int32(d))
	}
	return x
}

func (x *idIndex) insert(id string, d int32) {
	h := maphash.String(x.seed, id)
	tag := uint32(h >> 32)
	for i := h & x.mask; ; i = (i + 1) & x.mask {
		s := &x.slots[i]
		if s.d != 0 {
			continue
		}
		s.tag, s.d = tag, d+1
		if len(id) <= inlineKey {
			s.klen = uint8(len(id))
			copy(s.key[:], id)
		} else {
			s.klen = longKey
		}
		return
	}
}

// hash returns id's hash for getHashed.
func (x *idIndex) hash(id string) uint64 { return maphash.String(x.seed, id) }

// touch reads the first slot of hash h's probe sequence, so that a loop of
// touches brings many slots into the cache at once before getHashed.
func (x *idIndex) touch(h uint64) uint32 {
	if x.n == 0 {
		return 0
	}
	return x.slots[h&x.mask].tag
}

// get returns the dense index of id.
func (x *idIndex) get(id string) (int32, bool) {
	return x.getHashed(id, maphash.String(x.seed, id))
}

// getHashed is get with id's hash already computed.
func (x *idIndex) getHashed(id string, h uint64) (int32, bool) {
	if x.n == 0 {
		return -1, false
	}
	tag := uint32(h >> 32)
	for i := h & x.mask; ; i = (i + 1) & x.mask {
		s := &x.slots[i]
		if s.d == 0 {
			return -1, false
		}
		if s.tag != tag {
			continue
		}
		if s.klen == longKey {
			if x.ids[s.d-1] == id {
				return s.d - 1, true
			}
			continue
		}
		if int(s.klen) == len(id) && string(s.key[:s.klen]) == id {
			return s.d - 1, true
		}
	}
}
