package feedback

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"math"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/fnv1a"
)

// Reasons an interaction is not credited to a prediction, the reason label
// of adaptrec_feedback_interactions_unmatched_total.
const (
	// ReasonNoRequestID: the interaction names no request (organic).
	ReasonNoRequestID = "no_request_id"
	// ReasonNoPrediction: no served prediction of the request was read
	// before the stream passed the interaction's time plus the emit delay.
	ReasonNoPrediction = "no_prediction"
	// ReasonOutsideAttribution: the prediction was found, but more than the
	// attribution window away from the interaction in event time.
	ReasonOutsideAttribution = "outside_attribution_window"
	// ReasonItemNotServed: the prediction was found, but the item is not
	// one of the items it served.
	ReasonItemNotServed = "item_not_served"
)

// IsError reports whether a served prediction at degradation level l counts
// in ModelAccuracyEvent.errors: the model version did not rank the response
// itself, because it failed, was too slow or was not loaded, and a fallback
// answered (simple ranking, batch predictions, popularity, the user's cached
// last response). Full responses and responses ranked by the model with
// fallback features (STALE_FEATURES) are not errors, nor is UNSPECIFIED,
// which producers older than degradation levels wrote.
func IsError(l adaptrecv1.DegradationLevel) bool {
	return l >= adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_SIMPLE_RANKING
}

// EventID is the event id of the ModelAccuracyEvent of a model version and
// arm over the window [start, end): a pure function of them, so that a
// window emitted again (after a restart, or by a standby that took over)
// carries the id of the first emission and readers keep one of them.
func EventID(version, arm string, start, end time.Time) string {
	h := sha256.New()
	for _, s := range []string{version, arm, strconv.FormatInt(start.UnixMilli(), 10), strconv.FormatInt(end.UnixMilli(), 10)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return "accuracy-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// tp names one topic partition.
type tp struct {
	topic     string
	partition int
}

// params are the engine's durations, in milliseconds.
type params struct {
	window, attribution, delay int64
	// retain is how long after its end an emitted window is remembered, so
	// that its data read again is recognised as late.
	retain int64
}

// winKey identifies one window of one model version and arm.
type winKey struct {
	version, arm string
	start        int64 // unix ms
}

// aggregate is the running total of one open window.
type aggregate struct {
	requests, impressions, clicks, conversions, errors int64
	engagement                                         float64
	latencies                                          []float64
}

// Item flags of a held prediction.
const (
	flagClicked uint8 = 1 << iota
	flagConverted
)

// prediction is a served prediction held for the join.
type prediction struct {
	key winKey
	t   int64 // event time, unix ms
	// items are the FNV-1a hashes of the served item ids, flags their
	// credited actions.
	items []uint64
	flags []uint8
}

// pendingInteraction waits for the prediction of its request until the
// stream time reaches due.
type pendingInteraction struct {
	t, due int64
	item   uint64
	action adaptrecv1.Action
	value  float64
	replay bool
	hold   holdRef
}

// expiry is a held prediction's request id and when it is dropped.
type expiry struct {
	id string
	at int64
}

// counts are what the engine observed since they were last drained. Events
// read again after a rebalance (replay) are not counted.
type counts struct {
	predictions, shadow, interactions int64
	joined, late, latePredictions     int64
	duplicates                        int64
	unmatched                         map[string]int64
}

// hold is a message that must be read again after a restart until the
// stream time reaches until: it contributes to a window not emitted yet.
type hold struct {
	off   int64
	until int64
}

// unresolved is the until of a hold whose outcome is not known yet.
const unresolved = math.MaxInt64

// holdQueue tracks one topic partition: the holds in offset order and the
// offset after the last message handled. Its commit point is the offset of
// the first hold not released, else next: every message below it has had
// its effect made durable (emitted or dead-lettered).
type holdQueue struct {
	q    []hold
	head int
	base int64 // absolute index of q[0]
	next int64 // offset after the last message handled; -1 before any
}

// holdRef addresses one hold for a later update.
type holdRef struct {
	q   *holdQueue
	abs int64
}

func newHoldQueue() *holdQueue { return &holdQueue{next: -1} }

// add holds off until the stream time reaches until.
func (h *holdQueue) add(off, until int64) holdRef {
	h.q = append(h.q, hold{off: off, until: until})
	return holdRef{q: h, abs: h.base + int64(len(h.q)-1)}
}

// set changes the release time of a hold still queued (an unresolved hold
// is never popped, so it always is).
func (r holdRef) set(until int64) {
	if r.q == nil {
		return
	}
	r.q.q[r.abs-r.q.base].until = until
}

// commitPoint pops the holds released at wm and returns the offset to
// commit, or -1 when nothing was handled.
func (h *holdQueue) commitPoint(wm int64) int64 {
	for h.head < len(h.q) && h.q[h.head].until <= wm {
		h.head++
	}
	if h.head > 1024 && h.head > len(h.q)/2 {
		n := copy(h.q, h.q[h.head:])
		h.q = h.q[:n]
		h.base += int64(h.head)
		h.head = 0
	}
	if h.head < len(h.q) {
		return h.q[h.head].off
	}
	return h.next
}

// engine joins predictions and interactions into windows. It is the
// consumer's state for one generation of the group and is used by one
// goroutine. Times are unix milliseconds; the stream time (watermark) only
// moves forward.
type engine struct {
	p       params
	windows map[winKey]*aggregate
	// emitted holds the windows emitted, with their end, for p.retain.
	emitted map[winKey]int64
	preds   map[string]*prediction
	expiry  []expiry
	expHead int
	pending map[string][]*pendingInteraction
	counts  counts
}

func newEngine(p params, emitted map[winKey]int64) *engine {
	if emitted == nil {
		emitted = map[winKey]int64{}
	}
	return &engine{p: p, windows: map[winKey]*aggregate{}, emitted: emitted, preds: map[string]*prediction{},
		pending: map[string][]*pendingInteraction{}, counts: counts{unmatched: map[string]int64{}}}
}

func (e *engine) windowStart(t int64) int64 {
	s := t - t%e.p.window
	if t < 0 && t%e.p.window != 0 {
		s -= e.p.window
	}
	return s
}

// closesAt is the stream time at which the window starting at start is
// emitted.
func (e *engine) closesAt(start int64) int64 { return start + e.p.window + e.p.delay }

// prediction applies a valid PredictionEvent read at off of h. Shadow
// predictions are skipped: they were never shown.
func (e *engine) prediction(h *holdQueue, off int64, t int64, p *adaptrecv1.PredictionEvent, replay bool) {
	h.next = off + 1
	if p.GetShadow() {
		if !replay {
			e.counts.shadow++
		}
		return
	}
	id := p.GetRequestId()
	if _, dup := e.preds[id]; dup {
		if !replay {
			e.counts.duplicates++
		}
		return
	}
	if !replay {
		e.counts.predictions++
	}
	k := winKey{version: p.GetModelVersion(), arm: p.GetExperimentArm(), start: e.windowStart(t)}
	pr := &prediction{key: k, t: t, items: make([]uint64, len(p.GetItems())), flags: make([]uint8, len(p.GetItems()))}
	for i, it := range p.GetItems() {
		pr.items[i] = fnv1a.String(it.GetItemId())
	}
	if _, done := e.emitted[k]; done {
		if !replay {
			e.counts.latePredictions++
		}
	} else {
		a := e.windows[k]
		if a == nil {
			a = &aggregate{}
			e.windows[k] = a
		}
		a.requests++
		a.impressions += int64(len(p.GetItems()))
		if IsError(p.GetDegradationLevel()) {
			a.errors++
		}
		a.latencies = append(a.latencies, p.GetLatencyMs())
		h.add(off, e.closesAt(k.start))
	}
	e.preds[id] = pr
	// Held for the attribution window, and at least until its window is
	// emitted, so that interactions read later are told late from unknown.
	e.expiry = append(e.expiry, expiry{id: id, at: max(t+e.p.attribution, k.start+e.p.window) + e.p.delay})
	if ps := e.pending[id]; ps != nil {
		delete(e.pending, id)
		for _, pi := range ps {
			if e.credit(pr, pi.t, pi.item, pi.action, pi.value, pi.replay) {
				pi.hold.set(e.closesAt(k.start))
			} else {
				pi.hold.set(0)
			}
		}
	}
}

// interaction applies a valid UserInteractionEvent read at off of h when
// the partition's progress was read (so that an event time in the future,
// from a client's clock, does not keep it waiting for its prediction).
func (e *engine) interaction(h *holdQueue, off int64, t, read int64, in *adaptrecv1.UserInteractionEvent, replay bool) {
	h.next = off + 1
	if !replay {
		e.counts.interactions++
	}
	id := in.GetRequestId()
	if id == "" {
		e.unmatched(ReasonNoRequestID, replay)
		return
	}
	item := fnv1a.String(in.GetItemId())
	if pr := e.preds[id]; pr != nil {
		if e.credit(pr, t, item, in.GetAction(), in.GetValue(), replay) {
			h.add(off, e.closesAt(pr.key.start))
		}
		return
	}
	// The prediction may not have been read yet: predictions are
	// published asynchronously, on another topic.
	e.pending[id] = append(e.pending[id], &pendingInteraction{t: t, due: min(t, read) + e.p.delay, item: item, action: in.GetAction(), value: in.GetValue(),
		replay: replay, hold: h.add(off, unresolved)})
}

// credit joins one interaction to its request's prediction and reports
// whether it went into a window not emitted yet (so its message must be
// held until the window is).
func (e *engine) credit(pr *prediction, t int64, item uint64, a adaptrecv1.Action, value float64, replay bool) bool {
	if d := t - pr.t; d > e.p.attribution || -d > e.p.attribution {
		e.unmatched(ReasonOutsideAttribution, replay)
		return false
	}
	i := slices.Index(pr.items, item)
	if i < 0 {
		e.unmatched(ReasonItemNotServed, replay)
		return false
	}
	agg := e.windows[pr.key]
	if _, done := e.emitted[pr.key]; done || agg == nil {
		if !replay {
			e.counts.late++
		}
		return false
	}
	if !replay {
		e.counts.joined++
	}
	switch a {
	case adaptrecv1.Action_ACTION_CLICK:
		if pr.flags[i]&flagClicked == 0 {
			pr.flags[i] |= flagClicked
			agg.clicks++
		}
	case adaptrecv1.Action_ACTION_PURCHASE:
		if pr.flags[i]&flagConverted == 0 {
			pr.flags[i] |= flagConverted
			agg.conversions++
		}
	case adaptrecv1.Action_ACTION_WATCH:
		agg.engagement += value
	}
	return true
}

func (e *engine) unmatched(reason string, replay bool) {
	if !replay {
		e.counts.unmatched[reason]++
	}
}

// due resolves the interactions still waiting for a prediction at stream
// time wm and returns the windows to emit at wm, in window order.
func (e *engine) due(wm int64) []*adaptrecv1.ModelAccuracyEvent {
	for id, ps := range e.pending {
		kept := ps[:0]
		for _, pi := range ps {
			if pi.due <= wm {
				e.unmatched(ReasonNoPrediction, pi.replay)
				pi.hold.set(0)
				continue
			}
			kept = append(kept, pi)
		}
		if len(kept) == 0 {
			delete(e.pending, id)
		} else {
			clear(ps[len(kept):])
			e.pending[id] = kept
		}
	}
	var keys []winKey
	for k := range e.windows {
		if e.closesAt(k.start) <= wm {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b winKey) int {
		return cmp.Or(cmp.Compare(a.start, b.start), cmp.Compare(a.version, b.version), cmp.Compare(a.arm, b.arm))
	})
	out := make([]*adaptrecv1.ModelAccuracyEvent, len(keys))
	for i, k := range keys {
		out[i] = e.windows[k].event(k, e.p.window)
	}
	return out
}

// emittedAt records that the windows of evs (from due) are durably
// emitted, forgets what the stream time wm has made useless, and returns
// each topic partition's commit point.
func (e *engine) emittedAt(wm int64, evs []*adaptrecv1.ModelAccuracyEvent, queues map[tp]*holdQueue) map[tp]int64 {
	for _, ev := range evs {
		k := winKey{version: ev.GetModelVersion(), arm: ev.GetExperimentArm(), start: ev.GetWindowStart().AsTime().UnixMilli()}
		delete(e.windows, k)
		e.emitted[k] = k.start + e.p.window
	}
	for e.expHead < len(e.expiry) && e.expiry[e.expHead].at <= wm {
		x := e.expiry[e.expHead]
		if pr := e.preds[x.id]; pr != nil && max(pr.t+e.p.attribution, pr.key.start+e.p.window)+e.p.delay == x.at {
			delete(e.preds, x.id)
		}
		e.expiry[e.expHead] = expiry{}
		e.expHead++
	}
	if e.expHead > 1024 && e.expHead > len(e.expiry)/2 {
		n := copy(e.expiry, e.expiry[e.expHead:])
		e.expiry = e.expiry[:n]
		e.expHead = 0
	}
	for k, end := range e.emitted {
		if end+e.p.retain < wm {
			delete(e.emitted, k)
		}
	}
	points := make(map[tp]int64, len(queues))
	for k, q := range queues {
		if off := q.commitPoint(wm); off >= 0 {
			points[k] = off
		}
	}
	return points
}

// event is the ModelAccuracyEvent of the window k of width window (ms).
func (a *aggregate) event(k winKey, window int64) *adaptrecv1.ModelAccuracyEvent {
	ctr := 0.0
	if a.impressions > 0 {
		ctr = float64(a.clicks) / float64(a.impressions)
	}
	return &adaptrecv1.ModelAccuracyEvent{
		ModelVersion: k.version, ExperimentArm: k.arm,
		WindowStart: timestamppb.New(time.UnixMilli(k.start)), WindowEnd: timestamppb.New(time.UnixMilli(k.start + window)),
		Requests: a.requests, Impressions: a.impressions, Clicks: a.clicks, Conversions: a.conversions,
		Ctr: ctr, EngagementSeconds: a.engagement, LatencyP99Ms: quantile(a.latencies, 0.99), Errors: a.errors,
	}
}

// quantile is the nearest-rank q-quantile (0 < q <= 1) of xs, 0 for none.
// It sorts xs in place.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	i := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}
