package nearline

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/adaptrec/adaptrec/features/windowed"
)

// shardScript records one partition's totals of one item and returns every
// partition's. KEYS[1] is the item's shard hash; ARGV: key ttl (ms), then
// field/value pairs (one per partition shard). A value is "at clicks1h
// impressions1h clicks30m" with at in unix ms, zero-padded to 15 digits so
// that comparing strings compares times: a shard older than the stored one
// (a replay, a zombie owner) is ignored.
var shardScript = redis.NewScript(`
local old = redis.call('HGET', KEYS[1], ARGV[2])
if (not old) or string.sub(old, 1, 15) <= string.sub(ARGV[3], 1, 15) then
  redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return redis.call('HVALS', KEYS[1])
`)

// encodeShard is the stored form of a shard: one partition's totals of one
// item (windowed.Items.Totals) as of its At.
func encodeShard(s windowed.Totals) string {
	return fmt.Sprintf("%015d %d %d %d", s.At, s.Clicks1h, s.Impressions1h, s.Clicks30m)
}

func decodeShard(v string) (windowed.Totals, error) {
	f := strings.Fields(v)
	if len(f) != 4 {
		return windowed.Totals{}, fmt.Errorf("shard value %q: want 4 fields", v)
	}
	var n [4]int64
	for i, s := range f {
		x, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return windowed.Totals{}, fmt.Errorf("shard value %q: %w", v, err)
		}
		n[i] = x
	}
	return windowed.Totals{At: n[0], Clicks1h: n[1], Impressions1h: n[2], Clicks30m: n[3]}, nil
}

// combine sums the shards that can still hold events of the hour before the
// newest shard's time; it returns that time and the sums.
func combine(shards []windowed.Totals) windowed.Totals {
	var out windowed.Totals
	for _, s := range shards {
		out.At = max(out.At, s.At)
	}
	for _, s := range shards {
		if s.At <= out.At-hour.Milliseconds() {
			continue // its owner has seen nothing for an hour
		}
		out.Clicks1h += s.Clicks1h
		out.Impressions1h += s.Impressions1h
		if s.At > out.At-windowed.TrendWindow.Milliseconds() {
			out.Clicks30m += s.Clicks30m
		}
	}
	return out
}

// shardKey is the item's shard hash. It carries the item id as a hash tag,
// like the store's own keys, so it lives in the item's cluster slot.
func shardKey(prefix, item string) string { return prefix + "{" + item + "}:nls" }

// shardPipeline is how many shard scripts go in one round trip.
const shardPipeline = 256

// publishShards records this partition's totals of items and returns the
// combined totals per item, in order.
func publishShards(ctx context.Context, rdb redis.UniversalClient, prefix, field string, ttlMs int64, items []string, totals []windowed.Totals) ([]windowed.Totals, error) {
	out := make([]windowed.Totals, len(items))
	for from := 0; from < len(items); from += shardPipeline {
		to := min(from+shardPipeline, len(items))
		pipe := rdb.Pipeline()
		cmds := make([]*redis.Cmd, 0, to-from)
		for i := from; i < to; i++ {
			cmds = append(cmds, shardScript.EvalSha(ctx, pipe, []string{shardKey(prefix, items[i])}, ttlMs, field, encodeShard(totals[i])))
		}
		if _, err := pipe.Exec(ctx); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
			if lerr := shardScript.Load(ctx, rdb).Err(); lerr != nil {
				return nil, fmt.Errorf("load shard script: %w", lerr)
			}
			pipe = rdb.Pipeline()
			cmds = cmds[:0]
			for i := from; i < to; i++ {
				cmds = append(cmds, shardScript.EvalSha(ctx, pipe, []string{shardKey(prefix, items[i])}, ttlMs, field, encodeShard(totals[i])))
			}
			if _, err := pipe.Exec(ctx); err != nil {
				return nil, fmt.Errorf("publish item shards: %w", err)
			}
		} else if err != nil {
			return nil, fmt.Errorf("publish item shards: %w", err)
		}
		for k, c := range cmds {
			vals, err := c.StringSlice()
			if err != nil {
				return nil, fmt.Errorf("publish shard of item %q: %w", items[from+k], err)
			}
			shards := make([]windowed.Totals, 0, len(vals))
			for _, v := range vals {
				s, err := decodeShard(v)
				if err != nil {
					return nil, fmt.Errorf("item %q: %w", items[from+k], err)
				}
				shards = append(shards, s)
			}
			out[from+k] = combine(shards)
		}
	}
	return out, nil
}
