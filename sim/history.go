package sim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

// Defaults of HistoryConfig.
const (
	DefaultPageSize        = 10
	DefaultHistoryBatch    = 5000
	DefaultHistoryProducer = "sim/history"
	// HistorySurface is the surface of organic feed impressions;
	// BrowseSurface is the surface of items users reached by themselves.
	HistorySurface = "home"
	BrowseSurface  = "browse"
)

// MaxHistoryEvents bounds one log: event ids hold a 32-bit sequence.
const MaxHistoryEvents = math.MaxUint32

// HistoryConfig configures GenerateHistory. Zero values mean the documented
// defaults.
type HistoryConfig struct {
	// Events is the exact number of events to generate; required.
	Events int64
	// Start is the start of the log's window; default the world's Start.
	Start time.Time
	// Window is the length of the log's window; default the world's. Session
	// start times fall in it; the last sessions' events may end a little
	// after it.
	Window time.Duration
	// PageSize is the number of items on an organic page, 1..100; default
	// DefaultPageSize.
	PageSize int
	// PagesPerSession is the mean number of pages a session loads; default 3.
	PagesPerSession float64
	// BrowseRate is the chance, before each page, that the user first opens
	// an item by themselves (a VIEW on the browse surface); default 0.3,
	// negative for none.
	BrowseRate float64
	// BatchSize is the number of events per emitted batch; default
	// DefaultHistoryBatch.
	BatchSize int
	// Workers generate sessions in parallel, sharded by user; default
	// GOMAXPROCS. The log does not depend on it.
	Workers int
	// Producer is written in every envelope; default DefaultHistoryProducer.
	Producer string
	// OnProgress, when set, is called from the emitting goroutine at most
	// every ProgressInterval and once at the end.
	OnProgress func(Progress)
	// ProgressInterval is the least time between progress calls; default 1s.
	ProgressInterval time.Duration
}

func (c HistoryConfig) withDefaults(w *World) HistoryConfig {
	if c.Start.IsZero() {
		c.Start = w.Start
	}
	if c.Window == 0 {
		c.Window = w.Window
	}
	if c.PageSize == 0 {
		c.PageSize = DefaultPageSize
	}
	if c.PagesPerSession == 0 {
		c.PagesPerSession = 3
	}
	c.BrowseRate = share(c.BrowseRate, 0.3)
	if c.BatchSize == 0 {
		c.BatchSize = DefaultHistoryBatch
	}
	if c.Workers == 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.Producer == "" {
		c.Producer = DefaultHistoryProducer
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = time.Second
	}
	return c
}

// Validate reports every invalid field (after defaults are applied).
func (c HistoryConfig) Validate() error {
	var errs []error
	if c.Events < 1 || c.Events > MaxHistoryEvents {
		errs = append(errs, fmt.Errorf("history events: %d is not in 1..%d", c.Events, int64(MaxHistoryEvents)))
	}
	if c.Window < time.Minute {
		errs = append(errs, fmt.Errorf("history window: must be >= 1m, got %s", c.Window))
	}
	if c.PageSize < 1 || c.PageSize > maxPageSize {
		errs = append(errs, fmt.Errorf("history page size: %d is not in 1..%d", c.PageSize, maxPageSize))
	}
	if c.PagesPerSession < 1 {
		errs = append(errs, fmt.Errorf("history pages per session: %g is less than 1", c.PagesPerSession))
	}
	if c.BrowseRate > 1 {
		errs = append(errs, fmt.Errorf("history browse rate: %g is more than 1", c.BrowseRate))
	}
	if c.BatchSize < 1 {
		errs = append(errs, fmt.Errorf("history batch size: must be >= 1, got %d", c.BatchSize))
	}
	if c.Workers < 1 {
		errs = append(errs, fmt.Errorf("history workers: must be >= 1, got %d", c.Workers))
	}
	return errors.Join(errs...)
}

// Progress reports how far a generation is.
type Progress struct {
	// Events emitted so far.
	Events int64
	// Elapsed wall time since the start.
	Elapsed time.Duration
	// EventsPerSecond is Events / Elapsed.
	EventsPerSecond float64
	// EventTime is the event time of the last event emitted.
	EventTime time.Time
}

// HistoryStats summarises a generated log.
type HistoryStats struct {
	// Events counts the events emit accepted.
	Events int64
	// Sessions, Users and ByAction count what the generator handed to
	// emit (the same events unless emit failed).
	Sessions int64
	// Users is the number of distinct users.
	Users int
	// ByAction counts events per action.
	ByAction map[adaptrecv1.Action]int64
	// First and Last are the first and last event times.
	First, Last time.Time
	// Elapsed is the wall time of the whole generation, emitting included.
	Elapsed time.Duration
	// RunKey is the 48-bit key, derived from the seed and configuration,
	// that every event id of this log carries.
	RunKey uint64
}

// EmitFunc receives batches of events in event-time order. The batch and its
// events belong to the callee, which may keep them after returning. An error
// stops the generation and is returned by GenerateHistory.
type EmitFunc func(ctx context.Context, batch []*adaptrecv1.Event) error

// GenerateHistory generates cfg.Events interaction events of organic sessions
// over the window and passes them to emit in batches, in event-time order.
// Generation runs ahead of emit in other goroutines, so a slow emit (a
// publisher) overlaps with generation. The log, its event ids (time-ordered,
// unique, 32 hex characters like events.NewID) and its session ids depend
// only on the world and cfg. emit is called from the calling goroutine.
func GenerateHistory(ctx context.Context, w *World, cfg HistoryConfig, emit EmitFunc) (HistoryStats, error) {
	cfg = cfg.withDefaults(w)
	if err := cfg.Validate(); err != nil {
		return HistoryStats{}, err
	}
	begin := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	g := newGenerator(w, cfg)
	batches := make(chan []*adaptrecv1.Event, 4)
	genErr := make(chan error, 1)
	go func() {
		defer close(batches)
		genErr <- g.run(ctx, batches)
	}()

	stats := HistoryStats{ByAction: make(map[adaptrecv1.Action]int64), RunKey: g.runKey}
	lastProgress := begin
	var emitErr error
	for batch := range batches {
		if emitErr == nil && ctx.Err() != nil {
			emitErr = fmt.Errorf("generate history: %w", ctx.Err())
		}
		if emitErr != nil {
			continue // drain so the generator can exit
		}
		// Read the batch's times before emit: the batch belongs to emit,
		// which may change or reuse it.
		first := batch[0].GetEnvelope().GetEventTime().AsTime()
		last := batch[len(batch)-1].GetEnvelope().GetEventTime().AsTime()
		if err := emit(ctx, batch); err != nil {
			emitErr = fmt.Errorf("emit events %d..%d: %w", stats.Events, stats.Events+int64(len(batch))-1, err)
			cancel()
			continue
		}
		if stats.Events == 0 {
			stats.First = first
		}
		stats.Last = last
		stats.Events += int64(len(batch))
		if cfg.OnProgress != nil && time.Since(lastProgress) >= cfg.ProgressInterval {
			lastProgress = time.Now()
			cfg.OnProgress(progress(stats.Events, begin, stats.Last))
		}
	}
	err := <-genErr
	// The generator has finished: its counters are safe to read. They cover
	// every batch it handed over, which is every batch emitted unless emit
	// failed.
	stats.Sessions = g.sessionsStarted
	stats.Users = g.usersSeen
	for a, n := range g.byAction {
		if n > 0 {
			stats.ByAction[adaptrecv1.Action(a)] = n
		}
	}
	stats.Elapsed = time.Since(begin)
	if emitErr != nil {
		return stats, emitErr
	}
	if err != nil {
		return stats, fmt.Errorf("generate history: %w", err)
	}
	if cfg.OnProgress != nil {
		cfg.OnProgress(progress(stats.Events, begin, stats.Last))
	}
	return stats, nil
}

func progress(n int64, begin time.Time, last time.Time) Progress {
	el := time.Since(begin)
	return Progress{Events: n, Elapsed: el, EventsPerSecond: float64(n) / max(el.Seconds(), 1e-9), EventTime: last}
}

// rawEvent is the compact form events take until they are sorted.
type rawEvent struct {
	t       int64 // unix nanoseconds
	value   float64
	session int32 // global session index
	seq     int32 // order within the session
	user    int32
	item    int32
	pos     int16
	action  adaptrecv1.Action
	device  adaptrecv1.Device
	browse  bool
}

func compareRaw(a, b rawEvent) int {
	if a.t != b.t {
		return cmpInt64(a.t, b.t)
	}
	if a.session != b.session {
		return cmpInt64(int64(a.session), int64(b.session))
	}
	return cmpInt64(int64(a.seq), int64(b.seq))
}

type plannedSession struct {
	t     int64 // unix nanoseconds
	user  int32
	index int32 // global session index
}

// generator holds the state of one history run. The log is cut into time
// chunks; each chunk's sessions are planned up front, generated by workers
// that each own a shard of users, sorted, and emitted up to the chunk end
// (later events wait for the next chunk, whose sessions all start after it).
type generator struct {
	w      *World
	cfg    HistoryConfig
	seed   uint64
	runKey uint64
	start  int64 // unix seconds
	end    int64

	recent    recentClicks
	clicks    []float64 // decayed click counts per item
	popWeight []float64
	pop       popularity
	meanFame  float64

	sessions int32 // sessions planned so far; the next session's index
	planned  int64 // sessions planned, for the events-per-session estimate
	workers  []*worker
	idPrefix [12]byte // hex of runKey

	// Counters of the events handed to the emitter.
	byAction        [16]int64
	userSeen        []uint64 // bitset
	usersSeen       int
	sessionSeen     []uint64 // bitset over session indexes
	sessionsStarted int64
}

func newGenerator(w *World, cfg HistoryConfig) *generator {
	start := cfg.Start.Unix()
	g := &generator{
		w:         w,
		cfg:       cfg,
		seed:      w.Seed,
		start:     start,
		end:       start + int64(cfg.Window/time.Second),
		recent:    newRecentClicks(w.Users.Len()),
		clicks:    make([]float64, w.Catalogue.Len()),
		popWeight: make([]float64, w.Catalogue.Len()),
		userSeen:  make([]uint64, (w.Users.Len()+63)/64),
	}
	g.runKey = mix(w.fingerprint, streamRunKey, uint64(start), uint64(cfg.Window), uint64(cfg.Events),
		uint64(cfg.PageSize), math.Float64bits(cfg.PagesPerSession), math.Float64bits(cfg.BrowseRate)) & (1<<48 - 1)
	const hexdigits = "0123456789abcdef"
	for i := range g.idPrefix {
		g.idPrefix[i] = hexdigits[(g.runKey>>(44-4*i))&0xf]
	}
	for _, f := range w.Catalogue.fame {
		g.meanFame += f
	}
	g.meanFame /= max(float64(len(w.Catalogue.fame)), 1)
	for range cfg.Workers {
		g.workers = append(g.workers, &worker{g: g})
	}
	return g
}

// Chunks hold about this many events: big enough to amortise the popularity
// rebuild and the worker fan-out, small enough to keep memory flat.
const targetChunkEvents = 40_000

func (g *generator) run(ctx context.Context, out chan<- []*adaptrecv1.Event) error {
	n := g.cfg.Events
	window := g.end - g.start
	chunks := int((n + targetChunkEvents - 1) / targetChunkEvents)
	chunks = max(1, min(chunks, int(window/3600)))
	var (
		generated int64 // raw events generated so far
		emitted   int64
		carry     []rawEvent
		buf       []rawEvent
		batcher   = &batcher{g: g, size: g.cfg.BatchSize}
	)
	// Events per session, refined as we go.
	estimate := g.cfg.PagesPerSession * (1.3*float64(g.cfg.PageSize) + 2*g.cfg.BrowseRate)
	for c := 0; c < chunks && emitted < n; c++ {
		cStart := g.start + window*int64(c)/int64(chunks)
		cEnd := g.start + window*int64(c+1)/int64(chunks)
		last := c == chunks-1
		g.rebuildPopularity(cStart)
		target := n * int64(c+1) / int64(chunks)
		buf = append(buf[:0], carry...)
		for round := 0; ; round++ {
			need := float64(target - generated)
			if last {
				need *= 1.01 // overshoot slightly rather than run many rounds
			}
			sessions := int(math.Ceil(need / estimate))
			if sessions <= 0 {
				break
			}
			planned := g.plan(c, round, sessions, cStart, cEnd)
			made := g.generate(planned, &buf)
			generated += int64(made)
			if g.planned > 0 {
				estimate = max(float64(generated)/float64(g.planned), 1)
			}
			if made == 0 {
				return fmt.Errorf("history: no items are published before %s; move the window later",
					time.Unix(cEnd, 0).UTC().Format(time.RFC3339))
			}
			if !last || generated >= n || ctx.Err() != nil {
				break
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		slices.SortFunc(buf, compareRaw)
		final := len(buf)
		if !last {
			final, _ = slices.BinarySearchFunc(buf, cEnd*1e9, func(e rawEvent, t int64) int { return cmpInt64(e.t, t) })
		}
		if rest := n - emitted; int64(final) > rest {
			final = int(rest)
		}
		if err := batcher.emit(ctx, buf[:final], emitted, out); err != nil {
			return err
		}
		emitted += int64(final)
		carry = append(carry[:0], buf[final:]...)
		g.decayClicks(float64(cEnd - cStart))
	}
	return nil
}

// plan draws the sessions of one chunk: start times uniform in the chunk,
// users in proportion to activity, thinned by each user's daily rhythm.
func (g *generator) plan(chunk, round, n int, from, to int64) []plannedSession {
	r := newRNG(mix(g.seed, streamPlan, uint64(g.runKey), uint64(chunk), uint64(round)))
	out := make([]plannedSession, 0, n)
	span := float64((to - from) * 1e9)
	users := g.w.Users
	for len(out) < n {
		t := from*1e9 + int64(r.float64()*span)
		u := users.sampleUser(&r)
		if !r.bernoulli(users.Users[u].activityAt(t / 1e9)) {
			continue
		}
		out = append(out, plannedSession{t: t, user: u})
	}
	slices.SortFunc(out, func(a, b plannedSession) int {
		if a.t != b.t {
			return cmpInt64(a.t, b.t)
		}
		return cmpInt64(int64(a.user), int64(b.user))
	})
	for i := range out {
		out[i].index = g.sessions
		g.sessions++
	}
	g.planned += int64(n)
	return out
}

// generate runs the planned sessions on the workers, each owning the users
// whose index is its number modulo the worker count, and appends their events
// to buf. It returns the number of events made.
func (g *generator) generate(planned []plannedSession, buf *[]rawEvent) int {
	var wg sync.WaitGroup
	nw := len(g.workers)
	for i, wk := range g.workers {
		wk.out = wk.out[:0]
		wk.clicked = wk.clicked[:0]
		wg.Go(func() {
			for _, s := range planned {
				if int(s.user)%nw == i {
					wk.session(s)
				}
			}
		})
	}
	wg.Wait()
	made := 0
	for _, wk := range g.workers {
		*buf = append(*buf, wk.out...)
		made += len(wk.out)
		for _, it := range wk.clicked {
			g.clicks[it]++
		}
	}
	return made
}

// rebuildPopularity snapshots popularity at t: decayed clicks plus a prior
// from creator fame and promotion, over the items published by t.
func (g *generator) rebuildPopularity(t int64) {
	cat := g.w.Catalogue
	for i := range g.popWeight {
		if cat.pubUnix[i] > t {
			g.popWeight[i] = 0
			continue
		}
		g.popWeight[i] = 0.5*cat.fame[i]/g.meanFame + g.clicks[i]
	}
	g.pop.cum.reset(g.popWeight)
}

func (g *generator) decayClicks(seconds float64) {
	f := math.Exp2(-seconds / clickDecay)
	for i := range g.clicks {
		g.clicks[i] *= f
	}
}

// worker generates sessions for its shard of users.
type worker struct {
	g       *generator
	r       rng
	v       viewer
	out     []rawEvent
	clicked []int32
	page    [maxPageSize]int32
}

func (wk *worker) session(s plannedSession) {
	g := wk.g
	w := g.w
	u := &w.Users.Users[s.user]
	r := &wk.r
	r.seed(mix(g.seed, streamSession, g.runKey, uint64(s.index)))
	// Sessions of one user may overlap (two devices, two tabs); pushing
	// them apart would push heavy users' sessions past the window.
	t := s.t
	device := sessionDevice(r, u)
	seq := int32(0)
	add := func(at int64, item int32, pos int, a adaptrecv1.Action, value float64, browse bool) {
		wk.out = append(wk.out, rawEvent{
			t: at, value: value, session: s.index, seq: seq, user: s.user, item: item,
			pos: int16(pos), action: a, device: device, browse: browse,
		})
		seq++
	}
	respond := func(at int64, item int32, pos int, browse bool) int64 {
		it := &w.Catalogue.Items[item]
		resp := w.Model.respond(&wk.v, item)
		o := w.Model.sample(r, &resp, it, pos)
		if o.skip {
			at += int64((1 + 2*r.float64()) * 1e9)
			add(at, item, pos, adaptrecv1.Action_ACTION_SKIP, 0, browse)
		}
		if !o.click {
			return at
		}
		if pos >= 0 {
			at += int64((1 + r.exp(4)) * 1e9)
			add(at, item, pos, adaptrecv1.Action_ACTION_CLICK, 0, browse)
		}
		g.recent.add(s.user, item)
		wk.clicked = append(wk.clicked, item)
		if o.watch {
			at += int64(o.watched * 1e9)
			add(at, item, pos, adaptrecv1.Action_ACTION_WATCH, o.watched, browse)
			if o.complete {
				add(at, item, pos, adaptrecv1.Action_ACTION_COMPLETE, o.watched, browse)
			}
		}
		if o.purchase {
			at += int64((5 + r.exp(20)) * 1e9)
			add(at, item, pos, adaptrecv1.Action_ACTION_PURCHASE, float64(it.Price), browse)
		}
		return at
	}

	pages := r.geometric(g.cfg.PagesPerSession)
	for range pages {
		if r.bernoulli(g.cfg.BrowseRate) {
			w.Model.setViewer(&wk.v, u, t/1e9, device)
			if item := browseCategory(r, w.Catalogue, g.recent.pick(r, s.user), u, t/1e9); item != noItem {
				add(t, item, -1, adaptrecv1.Action_ACTION_VIEW, 0, true)
				t = respond(t+int64(time.Second), item, -1, true) + int64((2+r.exp(10))*1e9)
			}
		}
		w.Model.setViewer(&wk.v, u, t/1e9, device)
		page := wk.page[:g.cfg.PageSize]
		n := fillPage(r, w.Catalogue, &g.pop, &g.recent, u, t/1e9, page)
		for pos, item := range page[:n] {
			add(t, item, pos, adaptrecv1.Action_ACTION_IMPRESSION, 0, false)
		}
		cursor := t + int64(time.Second)
		for pos, item := range page[:n] {
			cursor = respond(cursor, item, pos, false)
		}
		t = cursor + int64((2+r.exp(8))*1e9)
	}
}

// eventSlab holds every message of one interaction event, so a batch costs
// one allocation for all its events instead of five per event.
type eventSlab struct {
	ev   adaptrecv1.Event
	env  adaptrecv1.EventEnvelope
	ts   timestamppb.Timestamp
	wrap adaptrecv1.Event_Interaction
	in   adaptrecv1.UserInteractionEvent
}

// batcher turns sorted raw events into batches of protobuf events.
type batcher struct {
	g    *generator
	size int
}

// emit sends raw (sorted) as batches; first is the sequence number of raw[0].
func (b *batcher) emit(ctx context.Context, raw []rawEvent, first int64, out chan<- []*adaptrecv1.Event) error {
	for len(raw) > 0 {
		n := min(len(raw), b.size)
		batch := b.build(raw[:n], first)
		select {
		case out <- batch:
		case <-ctx.Done():
			return ctx.Err()
		}
		raw, first = raw[n:], first+int64(n)
	}
	return nil
}

func (b *batcher) build(raw []rawEvent, first int64) []*adaptrecv1.Event {
	g := b.g
	slab := make([]eventSlab, len(raw))
	batch := make([]*adaptrecv1.Event, len(raw))
	// Event ids and session ids ("s-<run key>-<session index>") of the whole
	// batch live in one string that the events slice into.
	buf := make([]byte, 0, len(raw)*(32+26))
	sessionEnd := make([]int32, len(raw))
	for i := range raw {
		buf = appendEventID(buf, raw[i].t/1e6, g.runKey, uint32(first+int64(i)))
	}
	for i := range raw {
		buf = append(buf, "s-"...)
		buf = append(buf, g.idPrefix[:]...)
		buf = append(buf, '-')
		buf = strconv.AppendInt(buf, int64(raw[i].session), 10)
		sessionEnd[i] = int32(len(buf))
	}
	str := string(buf)
	sessionStart := int32(32 * len(raw))
	cat, users := g.w.Catalogue, g.w.Users
	for i := range raw {
		e := &raw[i]
		g.count(e)
		s := &slab[i]
		s.ts.Seconds, s.ts.Nanos = e.t/1e9, int32(e.t%1e9)
		s.env.EventId = str[32*i : 32*i+32]
		s.env.Type = adaptrecv1.EventType_EVENT_TYPE_INTERACTION
		s.env.SchemaVersion = events.SchemaVersion
		s.env.EventTime = &s.ts
		s.env.Producer = g.cfg.Producer
		s.in.UserId = users.Users[e.user].ID
		s.in.ItemId = cat.Items[e.item].ID
		s.in.Action = e.action
		s.in.Value = e.value
		s.in.SessionId = str[sessionStart:sessionEnd[i]]
		sessionStart = sessionEnd[i]
		s.in.Surface = HistorySurface
		if e.browse {
			s.in.Surface = BrowseSurface
		}
		s.in.Device = e.device
		s.in.TimeZone = users.Users[e.user].TimeZone.Name
		s.in.Position = int32(e.pos)
		s.wrap.Interaction = &s.in
		s.ev.Envelope = &s.env
		s.ev.Payload = &s.wrap
		batch[i] = &s.ev
	}
	return batch
}

func (g *generator) count(e *rawEvent) {
	if int(e.action) < len(g.byAction) {
		g.byAction[e.action]++
	}
	if w, bit := e.user/64, uint64(1)<<(e.user%64); g.userSeen[w]&bit == 0 {
		g.userSeen[w] |= bit
		g.usersSeen++
	}
	if w := int(e.session / 64); w >= len(g.sessionSeen) {
		g.sessionSeen = append(g.sessionSeen, make([]uint64, w+1-len(g.sessionSeen))...)
	}
	if w, bit := e.session/64, uint64(1)<<(e.session%64); g.sessionSeen[w]&bit == 0 {
		g.sessionSeen[w] |= bit
		g.sessionsStarted++
	}
}

// appendEventID appends the 32-hex-digit id used for deterministic events:
// 48 bits of event-time milliseconds, 48 bits of run key, 32 bits of
// sequence — the layout of events.NewID, so ids sort by event time.
func appendEventID(dst []byte, ms int64, key uint64, seq uint32) []byte {
	const hexdigits = "0123456789abcdef"
	hi := uint64(ms)<<16 | key>>32
	lo := key<<32 | uint64(seq)
	for s := 60; s >= 0; s -= 4 {
		dst = append(dst, hexdigits[(hi>>s)&0xf])
	}
	for s := 60; s >= 0; s -= 4 {
		dst = append(dst, hexdigits[(lo>>s)&0xf])
	}
	return dst
}
