package online

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Defaults of Options.
const (
	// DefaultKeyPrefix starts every Redis key.
	DefaultKeyPrefix = "adaptrec:fs:"
	// DefaultUserReadTimeout bounds a request's Redis round trip.
	DefaultUserReadTimeout = 2 * time.Millisecond
	// DefaultPointerInterval is how often snapshot pointers are checked.
	DefaultPointerInterval = 30 * time.Second
	// DefaultNearlineInterval is how often item nearline values refresh.
	DefaultNearlineInterval = 5 * time.Second
	// DefaultBackgroundDuty keeps refreshes to half a core: on two cores a
	// refresh run flat out (60 ms for a few thousand changed items) doubled
	// the tail latency of the requests in its second.
	DefaultBackgroundDuty = 0.5
	// DefaultNearlineOverlap is how far back each refresh looks again.
	DefaultNearlineOverlap = 2 * time.Second
	// DefaultBreakerFailures consecutive failures may open the breaker.
	DefaultBreakerFailures = 5
	// DefaultBreakerCooldown is how long failures must last before the
	// breaker opens, and how long it stays open.
	DefaultBreakerCooldown = 100 * time.Millisecond
)

// Options configure a Store. The zero value means every documented default;
// Validate reports every bad field at once.
type Options struct {
	// KeyPrefix starts every Redis key of the store (DefaultKeyPrefix when
	// empty). Several deployments can share a Redis by using different
	// prefixes. It must not contain '{' or '}': keys use a hash tag per
	// entity so that one user's keys share a Redis Cluster slot.
	KeyPrefix string
	// UserReadTimeout bounds the one Redis round trip of an Assemble call
	// (DefaultUserReadTimeout when 0); the caller's context deadline bounds
	// it too, whichever comes first. Past it the user's features take their
	// defaults and the result is Degraded.
	UserReadTimeout time.Duration
	// PointerInterval is how often Run checks every group's current
	// snapshot pointer (DefaultPointerInterval when 0). Snapshot events
	// make the check immediate; this bounds how long a lost event delays a
	// flip.
	PointerInterval time.Duration
	// NearlineInterval is how often Run refreshes the item nearline values
	// from Redis (DefaultNearlineInterval when 0). It should be well under
	// the item nearline features' freshness SLA.
	NearlineInterval time.Duration
	// NearlineOverlap is how far back before the newest change already
	// read each refresh reads again (DefaultNearlineOverlap when 0), so that
	// writes that commit out of order with their change time are not lost.
	NearlineOverlap time.Duration
	// BreakerFailures consecutive failed user reads, lasting at least
	// BreakerCooldown, open the breaker (DefaultBreakerFailures when 0):
	// while open, requests skip Redis and are Degraded at once instead of
	// each waiting for its timeout, and one request per BreakerCooldown
	// probes Redis again. A shorter burst of failures (a stall) does not
	// open it.
	BreakerFailures int
	// BreakerCooldown is how long failures must last to open the breaker
	// and how long it then stays open before a probe
	// (DefaultBreakerCooldown when 0).
	BreakerCooldown time.Duration
	// BatchTwins maps a nearline feature to the batch feature of the same
	// entity and type that stands in for it when the nearline value is
	// stale (see the package documentation). Nil means no twins.
	BatchTwins map[string]string
	// StaleIndicators maps a nearline group to an int or float feature of
	// the same entity, default 0, that the store sets to 1 on an entity
	// whose values of that group were stale, replaced by batch twins or
	// unavailable. The indicator is computed, never stored: its own group
	// is not read. Nil means no indicators.
	StaleIndicators map[string]string
	// ItemFilter, when set, keeps only the items it accepts in the item
	// caches: a command-line lookup of a few items need not hold the whole
	// catalogue. Serving leaves it nil.
	ItemFilter func(itemID string) bool
	// BackgroundDuty is the share of one core that refreshes of a serving
	// store (nearline values, snapshot switches) take at most: they rest
	// between slices of work so that requests find a free core
	// (DefaultBackgroundDuty when 0; 1 runs them unpaced). The first load
	// is never paced.
	BackgroundDuty float64
	// Logger receives background refresh problems; slog.Default when nil.
	Logger *slog.Logger
}

// Validate reports every invalid field; checks that need the feature
// definitions (twins, indicators) are done by New.
func (o Options) Validate() error {
	var errs []error
	if strings.ContainsAny(o.KeyPrefix, "{}") {
		errs = append(errs, fmt.Errorf("online: KeyPrefix %q must not contain '{' or '}'", o.KeyPrefix))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"UserReadTimeout", o.UserReadTimeout},
		{"PointerInterval", o.PointerInterval},
		{"NearlineInterval", o.NearlineInterval},
		{"NearlineOverlap", o.NearlineOverlap},
		{"BreakerCooldown", o.BreakerCooldown},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("online: %s must be >= 0 (0: default), got %s", d.name, d.v))
		}
	}
	if o.BackgroundDuty < 0 || o.BackgroundDuty > 1 {
		errs = append(errs, fmt.Errorf("online: BackgroundDuty must be in (0, 1] (0: default), got %g", o.BackgroundDuty))
	}
	if o.BreakerFailures < 0 {
		errs = append(errs, fmt.Errorf("online: BreakerFailures must be >= 0 (0: default), got %d", o.BreakerFailures))
	}
	return errors.Join(errs...)
}

func (o Options) withDefaults() Options {
	if o.KeyPrefix == "" {
		o.KeyPrefix = DefaultKeyPrefix
	}
	if o.UserReadTimeout == 0 {
		o.UserReadTimeout = DefaultUserReadTimeout
	}
	if o.PointerInterval == 0 {
		o.PointerInterval = DefaultPointerInterval
	}
	if o.NearlineInterval == 0 {
		o.NearlineInterval = DefaultNearlineInterval
	}
	if o.NearlineOverlap == 0 {
		o.NearlineOverlap = DefaultNearlineOverlap
	}
	if o.BreakerFailures == 0 {
		o.BreakerFailures = DefaultBreakerFailures
	}
	if o.BreakerCooldown == 0 {
		o.BreakerCooldown = DefaultBreakerCooldown
	}
	if o.BackgroundDuty == 0 {
		o.BackgroundDuty = DefaultBackgroundDuty
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}
