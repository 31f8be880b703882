package archiver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/adaptrec/adaptrec/internal/objstore"
)

// StatePrefix is where the archiver keeps one state object per partition.
// The key does not name the consumer group: the state describes what is in
// the event log, so it stays valid when the group is renamed or its
// offsets are lost.
const StatePrefix = "archiver/state/"

// StateKey is the key of a partition's state object.
func StateKey(topic string, partition int) string {
	return fmt.Sprintf("%s%s/p%03d.json", StatePrefix, topic, partition)
}

// partitionState is the per-partition state object. It is replaced with a
// compare-and-swap before every batch's data objects are written, so it
// always describes the newest batch that may have objects in the store.
type partitionState struct {
	Version   int    `json:"version"`
	Topic     string `json:"topic"`
	Partition int    `json:"partition"`
	Group     string `json:"group"`
	Member    string `json:"member"`
	// Generation is informational; fencing is by ETag.
	Generation int32     `json:"generation"`
	UpdatedAt  time.Time `json:"updated_at"`
	Pending    *pending  `json:"pending,omitempty"`
}

// pending is the batch whose objects are being written: the offsets it
// covers, the keys it writes and the offsets it dropped as duplicates.
// Rewriting exactly this batch reproduces exactly these objects.
type pending struct {
	First int64    `json:"first"`
	End   int64    `json:"end"`
	Keys  []string `json:"keys"`
	// Duplicates are [from, to) offset runs dropped as repeated event ids.
	Duplicates [][2]int64 `json:"duplicates,omitempty"`
}

const stateVersion = 1

// isDuplicate reports whether off was dropped as a duplicate.
func (p *pending) isDuplicate(off int64) bool {
	_, found := slices.BinarySearchFunc(p.Duplicates, off, func(r [2]int64, o int64) int {
		switch {
		case r[1] <= o:
			return -1
		case r[0] > o:
			return 1
		}
		return 0
	})
	return found
}

// offsetRuns compresses ascending offsets into [from, to) runs.
func offsetRuns(offs []int64) [][2]int64 {
	var out [][2]int64
	for _, o := range offs {
		if n := len(out); n > 0 && out[n-1][1] == o {
			out[n-1][1]++
			continue
		}
		out = append(out, [2]int64{o, o + 1})
	}
	return out
}

// stateStore reads and conditionally replaces one partition's state object.
type stateStore struct {
	store Store
	key   string
	etag  string // "" until the object exists
	last  []byte
}

// load reads the state; a missing object yields a nil state.
func (s *stateStore) load(ctx context.Context) (*partitionState, error) {
	b, info, err := s.store.Get(ctx, s.key)
	if errors.Is(err, objstore.ErrNotFound) {
		s.etag, s.last = "", nil
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read archiver state: %w", err)
	}
	var st partitionState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", errCorruptState, s.key, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("%w: %s has version %d, this build reads %d", errCorruptState, s.key, st.Version, stateVersion)
	}
	s.etag, s.last = info.ETag, b
	return &st, nil
}

// errCorruptState reports a state object this build cannot use; retrying
// cannot help, an operator must look.
var errCorruptState = errors.New("archiver state unreadable")

// errFenced reports that another writer replaced the state since this one
// read it: the partition now belongs to someone else (or a lost write of
// ours raced with a retry), so this worker must stop and recover.
var errFenced = errors.New("archiver state changed under us: partition fenced")

// save replaces the state if nobody else did since it was read or last
// saved. A retried PUT whose first attempt reached the server finds its
// own bytes and carries on.
func (s *stateStore) save(ctx context.Context, st *partitionState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode archiver state: %w", err)
	}
	opts := objstore.PutOptions{IfMatch: s.etag, ContentType: "application/json"}
	if s.etag == "" {
		opts = objstore.PutOptions{IfNoneMatch: "*", ContentType: "application/json"}
	}
	etag, err := s.store.Put(ctx, s.key, b, opts)
	if errors.Is(err, objstore.ErrPreconditionFailed) {
		cur, info, gerr := s.store.Get(ctx, s.key)
		if gerr == nil && bytes.Equal(cur, b) {
			s.etag, s.last = info.ETag, b
			return nil
		}
		return fmt.Errorf("%w: %w", errFenced, err)
	}
	if err != nil {
		return fmt.Errorf("write archiver state: %w", err)
	}
	s.etag, s.last = etag, b
	return nil
}
