package predictions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Errors of the store; test with errors.Is.
var (
	// ErrNotFound: no version is current yet, or a version does not exist.
	ErrNotFound = errors.New("predictions: not found")
	// ErrConflict: the pointer changed between reading and replacing it.
	ErrConflict = errors.New("predictions: pointer changed meanwhile")
	// ErrRejected: the version failed validation and cannot become current.
	ErrRejected = errors.New("predictions: version rejected by validation")
	// ErrNoPrevious: there is no previous version to roll back to.
	ErrNoPrevious = errors.New("predictions: no previous version")
	// ErrInvalid: a bad argument, named in the message.
	ErrInvalid = errors.New("predictions: invalid argument")
)

// Defaults of Options.
const (
	// DefaultKeyPrefix is the online feature store's default prefix
	// (online.DefaultKeyPrefix, config features.key_prefix).
	DefaultKeyPrefix = "adaptrec:fs:"
	// DefaultPipeline is how many commands a pipelined write carries.
	DefaultPipeline = 32
	// ChunkUsers is how many users one chunk of a version's user index
	// holds.
	ChunkUsers = 4096
)

// Options configure a Store. Zero values mean the documented defaults.
type Options struct {
	// KeyPrefix starts every key (DefaultKeyPrefix when empty): the online
	// feature store's, config features.key_prefix. It must not contain '{'
	// or '}'.
	KeyPrefix string
	// Pipeline is how many commands one pipelined write or delete carries
	// (DefaultPipeline when 0): small enough that a live Redis serving
	// requests is never stalled behind one.
	Pipeline int
	// Now is the clock for the times written in metas and pointers;
	// time.Now when nil.
	Now func() time.Time
}

// Meta describes one version. It is written last, once every list of the
// version is, so a version without a Meta is incomplete.
type Meta struct {
	// Version is N of predictions_vN.
	Version int64 `json:"version"`
	// Model and ModelVersion name the registry model version whose pipeline
	// produced the lists.
	Model        string `json:"model"`
	ModelVersion string `json:"model_version"`
	// CreatedAt is when the version was completed; AsOf the end of the
	// window in which a user's interactions made them active.
	CreatedAt time.Time `json:"created_at"`
	AsOf      time.Time `json:"as_of,omitzero"`
	// Users is how many lists were written; ActiveUsers how many users
	// were active (the expected count).
	Users       int `json:"users"`
	ActiveUsers int `json:"active_users"`
	// K bounds every list's length.
	K int `json:"k"`
	// Chunks is how many chunks the user index has.
	Chunks int `json:"chunks"`
	// Failures are the checks the version failed; a version with any is
	// rejected and never becomes current.
	Failures []Failure `json:"failures,omitempty"`
}

// Name returns the version's name, predictions_v<N>.
func (m Meta) Name() string { return VersionName(m.Version) }

// Rejected reports whether validation refused the version.
func (m Meta) Rejected() bool { return len(m.Failures) > 0 }

// VersionName returns the name of version n, predictions_v<n>.
func VersionName(n int64) string { return "predictions_v" + strconv.FormatInt(n, 10) }

// ParseVersion reads a version given as N, vN or predictions_vN.
func ParseVersion(s string) (int64, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(s, "predictions_"), "v")
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%w: version %q is not N, vN or predictions_vN with N >= 1", ErrInvalid, s)
	}
	return n, nil
}

// Pointer says which version serving answers from.
type Pointer struct {
	// Current is the version serving reads.
	Current Meta `json:"current"`
	// Previous is the version Current replaced, the target of Rollback;
	// nil when there was none.
	Previous *Meta `json:"previous,omitempty"`
	// UpdatedAt is when the pointer was written; RolledBack is true when
	// Current became current through Rollback.
	UpdatedAt  time.Time `json:"updated_at"`
	RolledBack bool      `json:"rolled_back,omitempty"`

	// raw is the stored value the pointer was read from, "" when none:
	// the compare-and-swap expects it unchanged.
	raw string
}

// keys builds the store's Redis keys.
type keys struct{ p string }

func (k keys) user(v int64, user string) string {
	return k.p + "{" + user + "}:pred:v" + strconv.FormatInt(v, 10)
}
func (k keys) meta(v int64) string { return k.p + "pred:v" + strconv.FormatInt(v, 10) + ":meta" }
func (k keys) chunk(v int64, i int) string {
	return k.p + "pred:v" + strconv.FormatInt(v, 10) + ":users:" + strconv.Itoa(i)
}
func (k keys) pointer() string  { return k.p + "pred:pointer" }
func (k keys) seq() string      { return k.p + "pred:seq" }
func (k keys) versions() string { return k.p + "pred:versions" }

// Store reads and writes batch predictions in Redis. It is safe for
// concurrent use.
type Store struct {
	rdb  redis.UniversalClient
	keys keys
	pipe int
	now  func() time.Time
}

// NewStore returns a store over rdb.
func NewStore(rdb redis.UniversalClient, o Options) (*Store, error) {
	if o.KeyPrefix == "" {
		o.KeyPrefix = DefaultKeyPrefix
	}
	if strings.ContainsAny(o.KeyPrefix, "{}") {
		return nil, fmt.Errorf("%w: key prefix %q must not contain '{' or '}' (keys carry a hash tag per user)", ErrInvalid, o.KeyPrefix)
	}
	if o.Pipeline < 0 {
		return nil, fmt.Errorf("%w: pipeline must be >= 0 (0: %d), got %d", ErrInvalid, DefaultPipeline, o.Pipeline)
	}
	if o.Pipeline == 0 {
		o.Pipeline = DefaultPipeline
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Store{rdb: rdb, keys: keys{o.KeyPrefix}, pipe: o.Pipeline, now: o.Now}, nil
}

// Current returns the pointer. With no version current yet it returns a
// zero Pointer and an error wrapping ErrNotFound; that Pointer can still be
// passed to FlipFrom for the first flip.
func (s *Store) Current(ctx context.Context) (Pointer, error) {
	raw, err := s.rdb.Get(ctx, s.keys.pointer()).Result()
	if errors.Is(err, redis.Nil) {
		return Pointer{}, fmt.Errorf("%w: no batch predictions are current yet (%s)", ErrNotFound, s.keys.pointer())
	}
	if err != nil {
		return Pointer{}, fmt.Errorf("read predictions pointer: %w", err)
	}
	return parsePointer(raw)
}

func parsePointer(raw string) (Pointer, error) {
	var p Pointer
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		return Pointer{}, fmt.Errorf("%w: predictions pointer: %v", ErrCorrupt, err)
	}
	if p.Current.Version < 1 || (p.Previous != nil && p.Previous.Version < 1) {
		return Pointer{}, fmt.Errorf("%w: predictions pointer names version %d (previous %v)", ErrCorrupt, p.Current.Version, p.Previous)
	}
	p.raw = raw
	return p, nil
}

// Meta returns a complete version's meta; ErrNotFound when the version does
// not exist or was never completed.
func (s *Store) Meta(ctx context.Context, version int64) (Meta, error) {
	b, err := s.rdb.Get(ctx, s.keys.meta(version)).Bytes()
	if errors.Is(err, redis.Nil) {
		return Meta{}, fmt.Errorf("%w: %s is not a complete version", ErrNotFound, VersionName(version))
	}
	if err != nil {
		return Meta{}, fmt.Errorf("read meta of %s: %w", VersionName(version), err)
	}
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil || m.Version != version {
		return Meta{}, fmt.Errorf("%w: meta of %s is unreadable or names version %d (%v)", ErrCorrupt, VersionName(version), m.Version, err)
	}
	return m, nil
}

// Versions returns the numbers of every version begun and not yet deleted
// (complete, rejected or abandoned), ascending.
func (s *Store) Versions(ctx context.Context) ([]int64, error) {
	ms, err := s.rdb.SMembers(ctx, s.keys.versions()).Result()
	if err != nil {
		return nil, fmt.Errorf("list prediction versions: %w", err)
	}
	out := make([]int64, 0, len(ms))
	for _, m := range ms {
		n, err := strconv.ParseInt(m, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: %s holds %q, not a version number", ErrCorrupt, s.keys.versions(), m)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// Get returns a user's list in a version; ok is false when the version has
// none for the user.
func (s *Store) Get(ctx context.Context, version int64, user string) (list []Entry, ok bool, err error) {
	b, err := s.rdb.Get(ctx, s.keys.user(version, user)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	list, err = Decode(b)
	if err != nil {
		return nil, false, fmt.Errorf("user %s in %s: %w", user, VersionName(version), err)
	}
	return list, true, nil
}

// casScript replaces KEYS[1] with ARGV[2] if it still holds ARGV[1] (""
// meaning absent): the pointer's compare-and-swap, one atomic step.
var casScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur == false then cur = '' end
if cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
`)

// flipped is the pointer that makes m current after from.
func flipped(from Pointer, m Meta, now time.Time) Pointer {
	next := Pointer{Current: m, UpdatedAt: now.UTC()}
	if from.Current.Version > 0 {
		prev := from.Current
		next.Previous = &prev
	}
	return next
}

// rolledBack is the pointer that makes from.Previous current again, with
// from.Current as its previous (a second rollback rolls forward).
func rolledBack(from Pointer, now time.Time) (Pointer, error) {
	if from.Current.Version < 1 {
		return Pointer{}, fmt.Errorf("%w: no batch predictions are current, nothing to roll back", ErrNotFound)
	}
	if from.Previous == nil {
		return Pointer{}, fmt.Errorf("%w: %s is the only version ever current", ErrNoPrevious, from.Current.Name())
	}
	cur := from.Current
	return Pointer{Current: *from.Previous, Previous: &cur, UpdatedAt: now.UTC(), RolledBack: true}, nil
}

// Flip makes a complete, accepted version current, keeping the current one
// as the previous. See FlipFrom.
func (s *Store) Flip(ctx context.Context, version int64) (Pointer, error) {
	cur, err := s.Current(ctx)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Pointer{}, err
	}
	return s.FlipFrom(ctx, cur, version)
}

// FlipFrom makes version current provided the pointer is still from (as
// read by Current): of two concurrent flips from one state exactly one wins
// and the other fails with ErrConflict, changing nothing. The version must
// be complete (ErrNotFound) and not rejected (ErrRejected). Flipping to the
// current version changes nothing.
func (s *Store) FlipFrom(ctx context.Context, from Pointer, version int64) (Pointer, error) {
	m, err := s.Meta(ctx, version)
	if err != nil {
		return Pointer{}, fmt.Errorf("make %s current: %w", VersionName(version), err)
	}
	if m.Rejected() {
		return Pointer{}, fmt.Errorf("make %s current: %w: %s", m.Name(), ErrRejected, Describe(m.Failures))
	}
	if from.Current.Version == version && from.raw != "" {
		return from, nil
	}
	return s.swap(ctx, from, flipped(from, m, s.now()))
}

// Rollback makes the previous version current again, with the current one
// as the new previous, in one compare-and-swap. It fails with ErrNoPrevious
// when there is none, and with ErrNotFound when the previous version's data
// is gone (it never is unless deleted by hand: Prune keeps it).
func (s *Store) Rollback(ctx context.Context) (Pointer, error) {
	cur, err := s.Current(ctx)
	if err != nil {
		return Pointer{}, err
	}
	next, err := rolledBack(cur, s.now())
	if err != nil {
		return Pointer{}, err
	}
	if _, err := s.Meta(ctx, next.Current.Version); err != nil {
		return Pointer{}, fmt.Errorf("roll back to %s: %w", next.Current.Name(), err)
	}
	return s.swap(ctx, cur, next)
}

func (s *Store) swap(ctx context.Context, from, next Pointer) (Pointer, error) {
	b, err := json.Marshal(next)
	if err != nil {
		return Pointer{}, fmt.Errorf("encode predictions pointer: %w", err)
	}
	ok, err := casScript.Run(ctx, s.rdb, []string{s.keys.pointer()}, from.raw, string(b)).Int()
	if err != nil {
		return Pointer{}, fmt.Errorf("write predictions pointer: %w", err)
	}
	if ok != 1 {
		was := "none"
		if from.Current.Version > 0 {
			was = from.Current.Name()
		}
		return Pointer{}, fmt.Errorf("%w: the pointer moved away from %s before %s could become current; read it again (adaptrec predictions status)",
			ErrConflict, was, next.Current.Name())
	}
	next.raw = string(b)
	return next, nil
}

// PruneReport says what Prune deleted and kept.
type PruneReport struct {
	Deleted []int64
	Kept    []int64
	// Keys is how many Redis keys were deleted.
	Keys int
}

// pruneTargets returns the versions to delete: every version but the newest
// keep complete accepted ones (complete tells which those are), never the
// pointer's current or previous one, nor any version newer than the current
// one (a run may be writing it).
func pruneTargets(versions []int64, complete map[int64]bool, ptr Pointer, keep int) (del, kept []int64) {
	protect := map[int64]bool{ptr.Current.Version: true}
	if ptr.Previous != nil {
		protect[ptr.Previous.Version] = true
	}
	n := len(protect)
	for i := len(versions) - 1; i >= 0; i-- {
		v := versions[i]
		switch {
		case protect[v] || v > ptr.Current.Version:
			kept = append(kept, v)
		case complete[v] && n < keep:
			kept = append(kept, v)
			n++
		default:
			del = append(del, v)
		}
	}
	slices.Sort(del)
	slices.Sort(kept)
	return del, kept
}

// Prune deletes old versions, keeping the newest keep complete accepted
// versions counting the current and the previous one (which are always
// kept), and every version newer than the current one. Rejected and
// abandoned versions older than the current one are deleted. It needs a
// current version (ErrNotFound otherwise) and keep >= 2.
func (s *Store) Prune(ctx context.Context, keep int) (PruneReport, error) {
	var rep PruneReport
	if keep < 2 {
		return rep, fmt.Errorf("%w: keep must be >= 2 (the current and the previous version), got %d", ErrInvalid, keep)
	}
	ptr, err := s.Current(ctx)
	if err != nil {
		return rep, err
	}
	versions, err := s.Versions(ctx)
	if err != nil {
		return rep, err
	}
	complete := map[int64]bool{}
	for _, v := range versions {
		m, err := s.Meta(ctx, v)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil && !errors.Is(err, ErrCorrupt):
			return rep, err
		case err == nil && !m.Rejected():
			complete[v] = true
		}
	}
	del, kept := pruneTargets(versions, complete, ptr, keep)
	rep.Kept = kept
	for _, v := range del {
		n, err := s.deleteVersion(ctx, v)
		rep.Keys += n
		if err != nil {
			return rep, err
		}
		rep.Deleted = append(rep.Deleted, v)
	}
	return rep, nil
}

// deleteVersion deletes a version: its meta first (so it can no longer
// become current), then its users chunk by chunk from the last (so the
// chunks left after an interruption are always 0..m and a later Prune
// finds them), then its entry in the set of versions.
func (s *Store) deleteVersion(ctx context.Context, v int64) (int, error) {
	deleted := 0
	if err := s.rdb.Del(ctx, s.keys.meta(v)).Err(); err != nil {
		return deleted, fmt.Errorf("delete %s: %w", VersionName(v), err)
	}
	deleted++
	chunks := 0
	for {
		n, err := s.rdb.Exists(ctx, s.keys.chunk(v, chunks)).Result()
		if err != nil {
			return deleted, fmt.Errorf("delete %s: %w", VersionName(v), err)
		}
		if n == 0 {
			break
		}
		chunks++
	}
	for i := chunks - 1; i >= 0; i-- {
		users, err := s.rdb.LRange(ctx, s.keys.chunk(v, i), 0, -1).Result()
		if err != nil {
			return deleted, fmt.Errorf("delete %s: read user chunk %d: %w", VersionName(v), i, err)
		}
		for lo := 0; lo < len(users); lo += s.pipe {
			hi := min(lo+s.pipe, len(users))
			pipe := s.rdb.Pipeline()
			for _, u := range users[lo:hi] {
				pipe.Del(ctx, s.keys.user(v, u))
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return deleted, fmt.Errorf("delete %s: users of chunk %d: %w", VersionName(v), i, err)
			}
			deleted += hi - lo
		}
		if err := s.rdb.Del(ctx, s.keys.chunk(v, i)).Err(); err != nil {
			return deleted, fmt.Errorf("delete %s: chunk %d: %w", VersionName(v), i, err)
		}
		deleted++
	}
	if err := s.rdb.SRem(ctx, s.keys.versions(), strconv.FormatInt(v, 10)).Err(); err != nil {
		return deleted, fmt.Errorf("delete %s: %w", VersionName(v), err)
	}
	return deleted, nil
}
