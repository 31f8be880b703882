package online

import (
	"strconv"

	"github.com/adaptrec/adaptrec/features"
)

// Source says where an assembled value came from: the lane that served it,
// a fallback, or a default and why.
type Source uint8

// Sources, in the order of GroupResult.Counts.
const (
	// SourceBatch is a value of the group's current batch snapshot.
	SourceBatch Source = iota
	// SourceBatchLate is a batch value whose snapshot is older than the
	// feature's freshness SLA but not its ttl: served, reported late.
	SourceBatchLate
	// SourceNearline is a nearline value younger than its freshness SLA.
	SourceNearline
	// SourceNearlineLate is a nearline value older than its freshness SLA
	// but younger than its ttl, without a batch twin to stand in: served,
	// and the group's staleness indicator is set.
	SourceNearlineLate
	// SourceBatchFallback is the batch twin's value standing in for a
	// nearline value older than its freshness SLA; the group's staleness
	// indicator is set.
	SourceBatchFallback
	// SourceRequest is a value computed from the request.
	SourceRequest
	// SourceComputed is a value the store computes: a staleness indicator.
	SourceComputed
	// SourceDefaultMissing is the default of a value never written, of an
	// unknown user or item, or of a request feature whose inputs are
	// missing.
	SourceDefaultMissing
	// SourceDefaultExpired is the default of a value older than its ttl.
	SourceDefaultExpired
	// SourceDefaultUnavailable is the default of a value that could not be
	// read: Redis failed or was too slow (the result is Degraded), or the
	// group has no snapshot or nearline data loaded yet.
	SourceDefaultUnavailable
	// SourceDefaultNotServed is the default of a group this store does not
	// serve (user×item groups).
	SourceDefaultNotServed

	numSources
)

var sourceNames = [numSources]string{
	"batch", "batch_late", "nearline", "nearline_late", "batch_fallback", "request", "computed",
	"default_missing", "default_expired", "default_unavailable", "default_not_served",
}

// String returns the source's name as metrics and reports write it.
func (s Source) String() string {
	if s < numSources {
		return sourceNames[s]
	}
	return "source(" + strconv.Itoa(int(s)) + ")"
}

// IsDefault reports whether the value is the feature's declared default.
func (s Source) IsDefault() bool { return s >= SourceDefaultMissing }

// IsFallback reports whether the value is not what the feature's own lane
// would serve when healthy: late, replaced by a twin, or a default other
// than for a value that does not exist.
func (s Source) IsFallback() bool {
	switch s {
	case SourceBatchLate, SourceNearlineLate, SourceBatchFallback, SourceDefaultExpired, SourceDefaultUnavailable:
		return true
	}
	return false
}

// Lane names what served the value: "batch", "nearline", "request",
// "computed" (staleness indicators) or "default".
func (s Source) Lane() string {
	switch s {
	case SourceBatch, SourceBatchLate, SourceBatchFallback:
		return "batch"
	case SourceNearline, SourceNearlineLate:
		return "nearline"
	case SourceRequest:
		return "request"
	case SourceComputed:
		return "computed"
	}
	return "default"
}

// Fallback describes the fallback behind a value; "" when there was none.
func (s Source) Fallback() string {
	switch s {
	case SourceBatchLate:
		return "snapshot older than its freshness SLA"
	case SourceNearlineLate:
		return "nearline value older than its freshness SLA, no batch twin"
	case SourceBatchFallback:
		return "batch twin of a stale nearline value"
	case SourceDefaultMissing:
		return "no value: default"
	case SourceDefaultExpired:
		return "value older than its ttl: default"
	case SourceDefaultUnavailable:
		return "store unavailable: default"
	case SourceDefaultNotServed:
		return "group not served online: default"
	}
	return ""
}

// Sources lists every source in order.
func Sources() []Source {
	out := make([]Source, numSources)
	for i := range out {
		out[i] = Source(i)
	}
	return out
}

// GroupResult is how one storage group was served in one Assemble call.
type GroupResult struct {
	// Group, Entity and Lane are the group's.
	Group  string
	Entity features.Entity
	Lane   features.Lane
	// Version is the batch snapshot version read; empty for other lanes or
	// when none is loaded.
	Version string
	// Stale is set when a value was late, replaced by its batch twin, or
	// unavailable: the group's staleness indicator, if declared, was set.
	Stale bool
	// Counts counts the values assembled, by Source: one per feature and
	// entity (the user, or each candidate item).
	Counts [numSources]int32
}

// Main returns the source that served most of the group's values.
func (g *GroupResult) Main() Source {
	best := SourceDefaultMissing
	for s, n := range g.Counts {
		if n > g.Counts[best] {
			best = Source(s)
		}
	}
	return best
}

// Result reports one Assemble call. Reuse one across calls to avoid
// allocating.
type Result struct {
	// Degraded is set when the user's stored features could not be read
	// (Redis failed, was slower than the deadline, or the breaker was
	// open): they took their defaults.
	Degraded bool
	// DegradedReason says why: "error", "timeout" or "breaker_open".
	DegradedReason string
	// Groups has one entry per group of the definitions, in
	// FeatureSet.Groups order.
	Groups []GroupResult
	// UnknownItems counts candidates absent from every item group.
	UnknownItems int
}

// Group returns the result of the named group.
func (r *Result) Group(name string) (*GroupResult, bool) {
	for i := range r.Groups {
		if r.Groups[i].Group == name {
			return &r.Groups[i], true
		}
	}
	return nil, false
}

func (r *Result) reset(p *plan) {
	r.Degraded, r.DegradedReason, r.UnknownItems = false, "", 0
	if cap(r.Groups) < len(p.groups) {
		r.Groups = make([]GroupResult, len(p.groups))
	}
	r.Groups = r.Groups[:len(p.groups)]
	for i, g := range p.groups {
		r.Groups[i] = GroupResult{Group: g.name, Entity: g.entity, Lane: g.lane}
	}
}
