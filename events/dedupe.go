package events

// DedupeWindow remembers the event ids of the last size offsets of one
// partition, for consumers that must apply each event once. An event is a
// duplicate when a valid event with the same id was read at an offset in
// [off-size, off). Defining the window by offsets, not by arrival, makes the
// decision a pure function of the partition's log: a consumer rebuilds it
// after a restart by re-reading the size offsets before where it resumes.
type DedupeWindow struct {
	size int64
	last map[string]int64 // id -> latest offset
	// ring is a FIFO of the ids in the window, grown on demand up to
	// size+1 entries so idle partitions stay small.
	ring    []windowEntry
	head, n int
}

type windowEntry struct {
	off int64
	id  string
}

// NewDedupeWindow returns a window over the last size offsets; size <= 0
// disables deduplication.
func NewDedupeWindow(size int) *DedupeWindow {
	return &DedupeWindow{size: int64(size), last: make(map[string]int64)}
}

// Seen records id at offset off and reports whether it was already in the
// window. Offsets must be increasing.
func (w *DedupeWindow) Seen(id string, off int64) bool {
	if w.size <= 0 {
		return false
	}
	for w.n > 0 {
		e := w.ring[w.head]
		if e.off >= off-w.size {
			break
		}
		if w.last[e.id] == e.off {
			delete(w.last, e.id)
		}
		w.ring[w.head] = windowEntry{}
		w.head = (w.head + 1) % len(w.ring)
		w.n--
	}
	_, dup := w.last[id]
	w.last[id] = off
	w.push(windowEntry{off: off, id: id})
	return dup
}

func (w *DedupeWindow) push(e windowEntry) {
	if w.n == len(w.ring) {
		grown := make([]windowEntry, min(max(2*len(w.ring), 64), int(w.size)+1))
		for i := range w.n {
			grown[i] = w.ring[(w.head+i)%len(w.ring)]
		}
		w.ring, w.head = grown, 0
	}
	w.ring[(w.head+w.n)%len(w.ring)] = e
	w.n++
}

// Len is the number of ids held.
func (w *DedupeWindow) Len() int { return len(w.last) }
