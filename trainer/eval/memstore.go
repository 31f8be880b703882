package eval

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"iter"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/features/snapshot"
	"github.com/adaptrec/adaptrec/internal/objstore"
)

// memStore is an object store in memory: the event log the batch lane reads
// and the snapshots it writes live here during an evaluation, so the
// ranker's features go through the same archive → batch job → snapshot →
// binding path as production without S3.
type memStore struct {
	mu   sync.Mutex
	objs map[string][]byte
	keys []string // sorted; nil when stale
}

var (
	_ eventlog.Source = (*memStore)(nil)
	_ eventlog.Putter = (*memStore)(nil)
	_ snapshot.Store  = (*memStore)(nil)
)

func newMemStore() *memStore { return &memStore{objs: make(map[string][]byte)} }

// Put implements eventlog.Putter and snapshot.Store. It honours
// IfNoneMatch "*" and IfMatch like S3's conditional writes.
func (s *memStore) Put(_ context.Context, key string, body []byte, opts objstore.PutOptions) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, exists := s.objs[key]
	switch {
	case opts.IfNoneMatch == "*" && exists:
		return "", fmt.Errorf("put %s: %w", key, objstore.ErrPreconditionFailed)
	case opts.IfMatch != "" && (!exists || etag(old) != opts.IfMatch):
		return "", fmt.Errorf("put %s: %w", key, objstore.ErrPreconditionFailed)
	}
	if !exists {
		s.keys = nil
	}
	s.objs[key] = slices.Clone(body)
	return etag(body), nil
}

// Get implements eventlog.Source and snapshot.Store.
func (s *memStore) Get(_ context.Context, key string) ([]byte, objstore.ObjectInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.objs[key]
	if !ok {
		return nil, objstore.ObjectInfo{}, fmt.Errorf("get %s: %w", key, objstore.ErrNotFound)
	}
	return b, objstore.ObjectInfo{Key: key, Size: int64(len(b)), ETag: etag(b)}, nil
}

// GetRange implements eventlog.Source.
func (s *memStore) GetRange(_ context.Context, key string, off, n int64) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.objs[key]
	if !ok {
		return nil, fmt.Errorf("get %s: %w", key, objstore.ErrNotFound)
	}
	if off < 0 || n < 0 || off > int64(len(b)) {
		return nil, fmt.Errorf("get %s: range %d+%d outside %d bytes", key, off, n, len(b))
	}
	return b[off:min(off+n, int64(len(b)))], nil
}

// List implements eventlog.Lister and snapshot.Store: keys under prefix in
// key order. Delimiters are not supported (nothing here lists with one).
func (s *memStore) List(_ context.Context, prefix string, opts objstore.ListOptions) iter.Seq2[objstore.ObjectInfo, error] {
	return func(yield func(objstore.ObjectInfo, error) bool) {
		if opts.Delimiter != "" {
			yield(objstore.ObjectInfo{}, errors.New("eval: the in-memory store lists without delimiters"))
			return
		}
		s.mu.Lock()
		if s.keys == nil {
			s.keys = make([]string, 0, len(s.objs))
			for k := range s.objs {
				s.keys = append(s.keys, k)
			}
			slices.Sort(s.keys)
		}
		keys := s.keys
		var infos []objstore.ObjectInfo
		i, _ := slices.BinarySearch(keys, prefix)
		for ; i < len(keys) && strings.HasPrefix(keys[i], prefix); i++ {
			if keys[i] <= opts.StartAfter {
				continue
			}
			infos = append(infos, objstore.ObjectInfo{Key: keys[i], Size: int64(len(s.objs[keys[i]])), LastModified: time.Unix(0, 0).UTC()})
		}
		s.mu.Unlock()
		for _, info := range infos {
			if !yield(info, nil) {
				return
			}
		}
	}
}

// etag is a cheap content tag: length and a 64-bit FNV-1a of the bytes.
func etag(b []byte) string {
	h := fnv.New64a()
	h.Write(b)
	return strconv.Itoa(len(b)) + "-" + strconv.FormatUint(h.Sum64(), 16)
}
