package online

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/adaptrec/adaptrec/features"
)

// Writer writes nearline values to Redis: what the nearline lane's stream
// consumers call. It is safe for concurrent use.
//
// The write contract, which serving stores rely on:
//   - A value is written with the time it is correct at (NearlineValue.At):
//     the event time up to which it accounts for the stream, not the
//     processing time. Readers judge freshness by it: past the feature's
//     freshness SLA it is stale, past its ttl it is gone. A windowed value
//     (clicks in the last hour) changes as time passes even without
//     events, so a consumer must rewrite it when its window moves (e.g. at
//     every bucket boundary), or readers will see it go stale.
//   - Writes are idempotent and ordered per value: a value older than the
//     stored one (a replay after a consumer restart) is ignored, one with
//     the same time overwrites. At-least-once consumers need no dedupe.
//   - Each write refreshes the entity's key expiry to the group's longest
//     ttl; an item write also records the item in the group's change set
//     (scored by Redis's clock) from which serving instances refresh their
//     item caches, and trims entries older than that ttl.
//   - Values of one entity and group in one call are applied atomically.
type Writer struct {
	rdb    redis.UniversalClient
	plan   *plan
	keys   keys
	script *redis.Script
}

// writeScript applies one entity's values of one group. KEYS[1] is the
// entity's nearline hash, KEYS[2] (items only) the group's change set.
// ARGV: key ttl (ms), entity id, change-set horizon (ms), then field/value
// pairs. Values start with their 8-byte big-endian time, so comparing the
// first 8 bytes as strings compares times.
var writeScript = redis.NewScript(`
local n = (#ARGV - 3) / 2
local fields = {}
for i = 1, n do fields[i] = ARGV[2 + 2 * i] end
local old = redis.call('HMGET', KEYS[1], unpack(fields))
local set = {}
for i = 1, n do
  local v = ARGV[3 + 2 * i]
  if (not old[i]) or string.sub(old[i], 1, 8) <= string.sub(v, 1, 8) then
    set[#set + 1] = fields[i]
    set[#set + 1] = v
  end
end
if #set > 0 then
  redis.call('HSET', KEYS[1], unpack(set))
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  if #KEYS > 1 then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('ZADD', KEYS[2], now, ARGV[2])
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ARGV[3]))
  end
end
return #set / 2
`)

// WriterOptions configure a Writer.
type WriterOptions struct {
	// KeyPrefix must be the serving stores' Options.KeyPrefix
	// (DefaultKeyPrefix when empty).
	KeyPrefix string
}

// NewWriter returns a Writer of the nearline features of fs.
func NewWriter(rdb redis.UniversalClient, fs *features.FeatureSet, opts WriterOptions) (*Writer, error) {
	if strings.ContainsAny(opts.KeyPrefix, "{}") {
		return nil, fmt.Errorf("online: KeyPrefix %q must not contain '{' or '}'", opts.KeyPrefix)
	}
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = DefaultKeyPrefix
	}
	p, err := newPlan(fs, nil, nil)
	if err != nil {
		return nil, err
	}
	return &Writer{rdb: rdb, plan: p, keys: keys{prefix: opts.KeyPrefix}, script: writeScript}, nil
}

// NearlineValue is one nearline feature value.
type NearlineValue struct {
	// Feature names a user or item nearline feature.
	Feature string
	// Value holds the field of the feature's type.
	Value features.Value
	// At is when the value is correct: the event time up to which it
	// accounts for the stream.
	At time.Time
}

// NearlineUpdate is the values of one entity (a user or an item).
type NearlineUpdate struct {
	// ID is the user or item id; the features say which entity.
	ID     string
	Values []NearlineValue
}

// WriteUserNearline writes nearline values of one user.
func (w *Writer) WriteUserNearline(ctx context.Context, userID string, values ...NearlineValue) error {
	return w.write(ctx, features.EntityUser, []NearlineUpdate{{ID: userID, Values: values}})
}

// WriteItemNearline writes nearline values of one item.
func (w *Writer) WriteItemNearline(ctx context.Context, itemID string, values ...NearlineValue) error {
	return w.write(ctx, features.EntityItem, []NearlineUpdate{{ID: itemID, Values: values}})
}

// WriteUsersNearline writes nearline values of many users in one pipeline.
func (w *Writer) WriteUsersNearline(ctx context.Context, updates []NearlineUpdate) error {
	return w.write(ctx, features.EntityUser, updates)
}

// WriteItemsNearline writes nearline values of many items in one pipeline.
func (w *Writer) WriteItemsNearline(ctx context.Context, updates []NearlineUpdate) error {
	return w.write(ctx, features.EntityItem, updates)
}

type scriptCall struct {
	group *groupPlan
	keys  []string
	args  []any
}

func (w *Writer) write(ctx context.Context, e features.Entity, updates []NearlineUpdate) error {
	calls := make([]scriptCall, 0, len(updates))
	// One buffer for every encoded value of the call: the pipeline holds
	// slices of it until it is sent, and appending never moves bytes
	// already handed out.
	var buf []byte
	for _, u := range updates {
		if u.ID == "" {
			return fmt.Errorf("write %s nearline values: empty id", e)
		}
		first := len(calls)
		for _, v := range u.Values {
			f, ok := w.plan.fs.Lookup(v.Feature)
			if !ok {
				return fmt.Errorf("write nearline values of %s %q: %s is not defined in %s", e, u.ID, v.Feature, w.plan.fs.Source())
			}
			g := w.plan.featGroup[f.ID]
			if f.Entity != e || f.Lane != features.LaneNearline || g == nil || !g.served {
				return fmt.Errorf("write nearline values of %s %q: %s is a %s %s feature, not a %s nearline feature", e, u.ID, f.Name, f.Entity, f.Lane, e)
			}
			if v.At.IsZero() {
				return fmt.Errorf("write nearline values of %s %q: %s has no time (NearlineValue.At)", e, u.ID, f.Name)
			}
			n := len(buf)
			var err error
			if buf, err = appendNearline(buf, v.At.UnixMilli(), f, v.Value); err != nil {
				return fmt.Errorf("write nearline values of %s %q: %w", e, u.ID, err)
			}
			// An entity's values of one group go in one atomic call.
			var c *scriptCall
			for i := first; i < len(calls); i++ {
				if calls[i].group == g {
					c = &calls[i]
				}
			}
			if c == nil {
				calls = append(calls, scriptCall{group: g, keys: []string{w.keys.nearline(g.name, u.ID)}})
				c = &calls[len(calls)-1]
				if e == features.EntityItem {
					c.keys = append(c.keys, w.keys.changes(g.name))
				}
				ttl := g.maxTTL.Milliseconds()
				c.args = make([]any, 3, 3+2*len(g.feats))
				c.args[0], c.args[1], c.args[2] = ttl, u.ID, ttl
			}
			c.args = append(c.args, f.Name, buf[n:len(buf):len(buf)])
		}
	}
	if len(calls) == 0 {
		return nil
	}
	return w.runCalls(ctx, e.String(), calls)
}

// runCalls runs the script calls of one write, loading the script when
// Redis lost it.
func (w *Writer) runCalls(ctx context.Context, entity string, calls []scriptCall) error {
	err := w.run(ctx, calls)
	if err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
		// Redis restarted or was flushed since the script was loaded; the
		// calls are idempotent, so running them all again is safe.
		if lerr := w.script.Load(ctx, w.rdb).Err(); lerr != nil {
			return fmt.Errorf("write %s nearline values: load script: %w", entity, lerr)
		}
		err = w.run(ctx, calls)
	}
	if err != nil {
		return fmt.Errorf("write %s nearline values: %w", entity, err)
	}
	return nil
}

// writeChunk is how many entities one pipelined write carries. Redis runs
// a pipeline's scripts back to back while serving reads waits: small
// chunks keep the wait of a serving read queued behind them well under its
// 2 ms deadline (50 scripts in one pipeline made 2.5% of reads miss it).
const writeChunk = 16

func (w *Writer) run(ctx context.Context, calls []scriptCall) error {
	if len(calls) == 1 {
		return w.script.Run(ctx, w.rdb, calls[0].keys, calls[0].args...).Err()
	}
	for from := 0; from < len(calls); from += writeChunk {
		pipe := w.rdb.Pipeline()
		for _, c := range calls[from:min(from+writeChunk, len(calls))] {
			w.script.EvalSha(ctx, pipe, c.keys, c.args...)
		}
		cmds, err := pipe.Exec(ctx)
		if err != nil {
			for _, c := range cmds {
				if cerr := c.Err(); cerr != nil && !errors.Is(cerr, redis.Nil) {
					return cerr
				}
			}
			return err
		}
	}
	return nil
}
