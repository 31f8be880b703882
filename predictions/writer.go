package predictions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// VersionInfo describes a version about to be written.
type VersionInfo struct {
	// Model and ModelVersion name the registry model version producing
	// the lists (required).
	Model, ModelVersion string
	// K bounds every list's length (required, >= 1).
	K int
	// AsOf is the end of the active-user window.
	AsOf time.Time
}

// Writer writes one new version. Add validates each list and writes the
// valid ones in pipelines of Options.Pipeline commands; Close checks the
// totals and writes the version's meta. A Writer is safe for concurrent
// use: rankers on several goroutines may share one.
type Writer struct {
	s    *Store
	info VersionInfo
	n    int64

	mu      sync.Mutex
	users   []string
	vals    [][]byte
	chunk   int // index of the chunk being filled
	inChunk int // users pushed to it
	written int
	checks  tally
	closed  bool
	err     error // the first write error; every later call returns it
}

// Begin allocates the next version number and returns a writer for it. The
// version is recorded at once among the versions, so an abandoned one is
// found and deleted by a later Prune.
func (s *Store) Begin(ctx context.Context, info VersionInfo) (*Writer, error) {
	if info.Model == "" || info.ModelVersion == "" {
		return nil, fmt.Errorf("%w: a version needs the model and model version that produce it, got %q@%q", ErrInvalid, info.Model, info.ModelVersion)
	}
	if info.K < 1 {
		return nil, fmt.Errorf("%w: K must be >= 1, got %d", ErrInvalid, info.K)
	}
	n, err := s.rdb.Incr(ctx, s.keys.seq()).Result()
	if err != nil {
		return nil, fmt.Errorf("number a new predictions version: %w", err)
	}
	if err := s.rdb.SAdd(ctx, s.keys.versions(), strconv.FormatInt(n, 10)).Err(); err != nil {
		return nil, fmt.Errorf("record %s: %w", VersionName(n), err)
	}
	return &Writer{s: s, info: info, n: n}, nil
}

// Version returns the number of the version being written.
func (w *Writer) Version() int64 { return w.n }

// Add validates a user's list and, when valid, queues it for writing; a
// full pipeline is written before Add returns. An invalid list is counted
// against its check (Close reports it and rejects the version) and not
// written. The returned error is a Redis write error only.
func (w *Writer) Add(ctx context.Context, user string, list []Entry) error {
	check, detail := CheckList(list, w.info.K)
	if user == "" || len(user) > maxItemIDLen {
		check, detail = CheckItemID, fmt.Sprintf("user id of %d bytes", len(user))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return fmt.Errorf("%w: %s is closed", ErrInvalid, VersionName(w.n))
	}
	if check != "" {
		w.checks.add(check, user, detail)
		return nil
	}
	w.users = append(w.users, user)
	w.vals = append(w.vals, Encode(nil, list))
	if len(w.users) >= w.s.pipe {
		return w.flushLocked(ctx)
	}
	return nil
}

// flushLocked writes the queued lists in one pipeline: the users' names
// pushed to the user index first, then their lists.
func (w *Writer) flushLocked(ctx context.Context) error {
	if len(w.users) == 0 {
		return nil
	}
	pipe := w.s.rdb.Pipeline()
	for lo := 0; lo < len(w.users); {
		room := ChunkUsers - w.inChunk
		hi := min(lo+room, len(w.users))
		args := make([]any, hi-lo)
		for i, u := range w.users[lo:hi] {
			args[i] = u
		}
		pipe.RPush(ctx, w.s.keys.chunk(w.n, w.chunk), args...)
		w.inChunk += hi - lo
		if w.inChunk == ChunkUsers {
			w.chunk, w.inChunk = w.chunk+1, 0
		}
		lo = hi
	}
	for i, u := range w.users {
		pipe.Set(ctx, w.s.keys.user(w.n, u), w.vals[i], 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		w.err = fmt.Errorf("write %s: %w", VersionName(w.n), err)
		return w.err
	}
	w.written += len(w.users)
	w.users, w.vals = w.users[:0], w.vals[:0]
	return nil
}

// Written returns how many lists are written so far.
func (w *Writer) Written() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.written
}

// Close writes what is queued, validates the version (every list check,
// then v against activeUsers and the current version's user count) and
// writes its meta: the version is then complete, and rejected when a check
// failed (Meta.Failures). It does not move the pointer.
func (w *Writer) Close(ctx context.Context, activeUsers int, v Validation) (Meta, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return Meta{}, w.err
	}
	if w.closed {
		return Meta{}, fmt.Errorf("%w: %s is already closed", ErrInvalid, VersionName(w.n))
	}
	if err := w.flushLocked(ctx); err != nil {
		return Meta{}, err
	}
	previous := 0
	cur, err := w.s.Current(ctx)
	switch {
	case err == nil:
		previous = cur.Current.Users
	case !errors.Is(err, ErrNotFound):
		return Meta{}, err
	}
	chunks := w.chunk
	if w.inChunk > 0 {
		chunks++
	}
	m := Meta{
		Version: w.n, Model: w.info.Model, ModelVersion: w.info.ModelVersion,
		CreatedAt: w.s.now().UTC(), AsOf: w.info.AsOf.UTC(),
		Users: w.written, ActiveUsers: activeUsers, K: w.info.K, Chunks: chunks,
	}
	m.Failures = append(w.checks.failures(), CheckVersion(v, w.written, activeUsers, previous)...)
	b, err := json.Marshal(m)
	if err != nil {
		return Meta{}, fmt.Errorf("encode meta of %s: %w", m.Name(), err)
	}
	if err := w.s.rdb.Set(ctx, w.s.keys.meta(w.n), b, 0).Err(); err != nil {
		return Meta{}, fmt.Errorf("write meta of %s: %w", m.Name(), err)
	}
	w.closed = true
	return m, nil
}
