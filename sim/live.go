package sim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

// Defaults of LiveConfig.
const (
	DefaultLiveUsers      = 8
	DefaultLiveProducer   = "sim/live"
	DefaultIngestBatch    = 200
	DefaultRequestTimeout = 2 * time.Second
	DefaultIngestInterval = 200 * time.Millisecond
	DefaultBackoffBase    = 50 * time.Millisecond
	DefaultBackoffMax     = 2 * time.Second
	defaultIngestRetries  = 3
	maxRecentItems        = 10
)

// LiveConfig configures RunLive. Zero values mean the documented defaults.
type LiveConfig struct {
	// Users is the number of concurrent simulated users; default
	// DefaultLiveUsers. Each runs sessions of users drawn from the
	// population in proportion to their activity.
	Users int
	// Duration stops the run after this long; zero means no time limit.
	Duration time.Duration
	// Requests stops the run after this many Recommend calls; zero means no
	// limit. With neither limit the run lasts until ctx is cancelled.
	Requests int64
	// NumItems is the number of items asked per request; default 10.
	NumItems int
	// Surface is the placement named in requests; default HistorySurface.
	Surface string
	// Priority of the requests; default PRIORITY_NORMAL.
	Priority adaptrecv1.Priority
	// PagesPerSession is the mean number of requests per session; default 3.
	PagesPerSession float64
	// BrowseRate is the chance, before each request, that the user first
	// opens an item by themselves (an organic VIEW with no request id);
	// default 0.3, negative for none. It gives a server that learns
	// popularity from ingested events something to learn from.
	BrowseRate float64
	// ThinkTime is the mean pause between a user's requests; zero means none
	// (each simulated user calls as fast as the server answers).
	ThinkTime time.Duration
	// RequestTimeout bounds each Recommend and Ingest call; default
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
	// IngestBatch is the number of events per Ingest call; default
	// DefaultIngestBatch.
	IngestBatch int
	// IngestInterval is the longest a partial batch waits; default
	// DefaultIngestInterval.
	IngestInterval time.Duration
	// BackoffBase is the first pause after an Unavailable or
	// ResourceExhausted answer, doubled on each further one up to
	// BackoffMax; defaults DefaultBackoffBase and DefaultBackoffMax.
	BackoffBase time.Duration
	// BackoffMax caps the backoff.
	BackoffMax time.Duration
	// Producer is written in every envelope; default DefaultLiveProducer.
	Producer string
	// Seed drives the users' choices; 0 means the world's seed.
	Seed uint64
	// Now is the clock; default time.Now. Responses are decided at the
	// users' local time of day.
	Now func() time.Time
}

func (c LiveConfig) withDefaults(w *World) LiveConfig {
	if c.Users == 0 {
		c.Users = DefaultLiveUsers
	}
	if c.NumItems == 0 {
		c.NumItems = DefaultPageSize
	}
	if c.Surface == "" {
		c.Surface = HistorySurface
	}
	if c.Priority == adaptrecv1.Priority_PRIORITY_UNSPECIFIED {
		c.Priority = adaptrecv1.Priority_PRIORITY_NORMAL
	}
	if c.PagesPerSession == 0 {
		c.PagesPerSession = 3
	}
	c.BrowseRate = share(c.BrowseRate, 0.3)
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.IngestBatch == 0 {
		c.IngestBatch = DefaultIngestBatch
	}
	if c.IngestInterval == 0 {
		c.IngestInterval = DefaultIngestInterval
	}
	if c.BackoffBase == 0 {
		c.BackoffBase = DefaultBackoffBase
	}
	if c.BackoffMax == 0 {
		c.BackoffMax = DefaultBackoffMax
	}
	if c.Producer == "" {
		c.Producer = DefaultLiveProducer
	}
	if c.Seed == 0 {
		c.Seed = w.Seed
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports every invalid field (after defaults are applied).
func (c LiveConfig) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Users < 1 {
		bad("live users: must be >= 1, got %d", c.Users)
	}
	if c.Duration < 0 {
		bad("live duration: must be >= 0, got %s", c.Duration)
	}
	if c.Requests < 0 {
		bad("live requests: must be >= 0, got %d", c.Requests)
	}
	if c.NumItems < 1 || c.NumItems > 500 {
		bad("live num items: %d is not in 1..500", c.NumItems)
	}
	if _, ok := adaptrecv1.Priority_name[int32(c.Priority)]; !ok {
		bad("live priority: unknown value %d", c.Priority)
	}
	if c.PagesPerSession < 1 {
		bad("live pages per session: %g is less than 1", c.PagesPerSession)
	}
	if c.BrowseRate > 1 {
		bad("live browse rate: %g is more than 1", c.BrowseRate)
	}
	if c.ThinkTime < 0 {
		bad("live think time: must be >= 0, got %s", c.ThinkTime)
	}
	if c.RequestTimeout <= 0 {
		bad("live request timeout: must be > 0, got %s", c.RequestTimeout)
	}
	if c.IngestBatch < 1 {
		bad("live ingest batch: must be >= 1, got %d", c.IngestBatch)
	}
	if c.IngestInterval <= 0 {
		bad("live ingest interval: must be > 0, got %s", c.IngestInterval)
	}
	if c.BackoffBase <= 0 || c.BackoffMax < c.BackoffBase {
		bad("live backoff: need 0 < base <= max, got %s and %s", c.BackoffBase, c.BackoffMax)
	}
	return errors.Join(errs...)
}

// LiveReport is what a live run measured.
type LiveReport struct {
	// ElapsedSeconds is the run's wall time.
	ElapsedSeconds float64 `json:"elapsed_s"`
	// Requests counts Recommend calls made (calls cut short by the end of
	// the run excluded).
	Requests int64 `json:"requests"`
	// Succeeded counts calls answered OK.
	Succeeded int64 `json:"succeeded"`
	// RequestsPerSecond is Requests / ElapsedSeconds.
	RequestsPerSecond float64 `json:"requests_per_s"`
	// Arms holds CTR per model version and experiment arm, sorted.
	Arms []ArmReport `json:"arms"`
	// Latency summarises successful Recommend calls.
	Latency LatencyReport `json:"latency_ms"`
	// Errors counts failed Recommend calls by gRPC code name.
	Errors map[string]int64 `json:"errors_by_code"`
	// Degradation counts successful responses by degradation level
	// ("FULL", "POPULARITY", ...).
	Degradation map[string]int64 `json:"degradation"`
	// Backoffs counts pauses after Unavailable or ResourceExhausted.
	Backoffs int64 `json:"backoffs"`
	// UnknownItems counts returned item ids not in the catalogue; they are
	// ingested as impressions but never clicked.
	UnknownItems int64 `json:"unknown_items"`
	// OrganicEvents counts interactions users made without a recommendation.
	OrganicEvents int64 `json:"organic_events"`
	// Ingest reports the Ingest calls.
	Ingest IngestReport `json:"ingest"`
}

// ArmReport is the outcome of the items one model version and arm served.
type ArmReport struct {
	// ModelVersion and ExperimentArm are copied from the responses.
	ModelVersion  string `json:"model_version"`
	ExperimentArm string `json:"experiment_arm"`
	// Requests counts the successful responses of the arm.
	Requests int64 `json:"requests"`
	// Impressions counts items shown; the other counts are the users'
	// responses to them.
	Impressions int64 `json:"impressions"`
	Clicks      int64 `json:"clicks"`
	Watches     int64 `json:"watches"`
	Completes   int64 `json:"completes"`
	Purchases   int64 `json:"purchases"`
	Skips       int64 `json:"skips"`
	// CTR is Clicks / Impressions.
	CTR float64 `json:"ctr"`
	// ExpectedCTR is the mean oracle click probability of the impressions:
	// the CTR the arm earns on average, without sampling noise.
	ExpectedCTR float64 `json:"expected_ctr"`
	// WatchSeconds sums the seconds watched.
	WatchSeconds float64 `json:"watch_seconds"`
	expectedSum  float64
}

// LatencyReport summarises latencies in milliseconds: the mean, the
// nearest-rank percentiles and the maximum of Count calls.
type LatencyReport struct {
	Count int     `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// IngestReport counts Ingest calls and the events they carried.
type IngestReport struct {
	// Calls counts successful Ingest calls.
	Calls int64 `json:"calls"`
	// Events counts the events those calls carried.
	Events int64 `json:"events"`
	// Accepted sums the server's own counts.
	Accepted int64 `json:"accepted"`
	// Retries counts calls repeated after Unavailable or ResourceExhausted.
	Retries int64 `json:"retries"`
	// Dropped counts events never ingested (retries exhausted, a
	// non-retryable error, or the run cancelled).
	Dropped int64 `json:"dropped"`
	// Errors counts failed calls by gRPC code name.
	Errors map[string]int64 `json:"errors_by_code"`
}

// RunLive drives cfg.Users concurrent simulated users against a
// RecommendService: they ask for recommendations, respond to the items shown
// according to the world's response model, browse organically now and then,
// and report what they did through Ingest in batches. It returns when the
// duration or request budget is spent or ctx is cancelled (then with the
// report so far and ctx's error), after flushing pending events.
func RunLive(ctx context.Context, w *World, client adaptrecv1.RecommendServiceClient, cfg LiveConfig) (*LiveReport, error) {
	cfg = cfg.withDefaults(w)
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	begin := time.Now()
	runCtx, cancel := ctx, context.CancelFunc(func() {})
	if cfg.Duration > 0 {
		runCtx, cancel = context.WithTimeout(ctx, cfg.Duration)
	}
	defer cancel()

	l := &live{w: w, client: client, cfg: cfg, out: make(chan *adaptrecv1.Event, 4*cfg.IngestBatch)}
	// Ingest outlives the users: it drains what they sent under ctx, not
	// under the run's deadline.
	ing := &ingester{l: l, report: IngestReport{Errors: map[string]int64{}}}
	ingDone := make(chan struct{})
	go func() {
		defer close(ingDone)
		ing.run(ctx)
	}()

	users := make([]*liveUser, cfg.Users)
	var wg sync.WaitGroup
	for i := range users {
		lu := &liveUser{l: l, r: newRNG(mix(cfg.Seed, streamLive, uint64(i))), stats: newLiveStats()}
		users[i] = lu
		wg.Go(func() { lu.run(runCtx, ctx) })
	}
	wg.Wait()
	close(l.out)
	<-ingDone

	rep := &LiveReport{Errors: map[string]int64{}, Degradation: map[string]int64{}, Ingest: ing.report}
	rep.Ingest.Dropped += l.dropped.Load()
	arms := map[armKey]*ArmReport{}
	var lat []time.Duration
	for _, lu := range users {
		s := lu.stats
		rep.Requests += s.requests
		rep.Succeeded += s.succeeded
		rep.Backoffs += s.backoffs
		rep.UnknownItems += s.unknown
		rep.OrganicEvents += s.organic
		for k, v := range s.errors {
			rep.Errors[k] += v
		}
		for k, v := range s.degradation {
			rep.Degradation[k] += v
		}
		for k, a := range s.arms {
			m := arms[k]
			if m == nil {
				m = &ArmReport{ModelVersion: k.version, ExperimentArm: k.arm}
				arms[k] = m
			}
			m.Requests += a.Requests
			m.Impressions += a.Impressions
			m.Clicks += a.Clicks
			m.Watches += a.Watches
			m.Completes += a.Completes
			m.Purchases += a.Purchases
			m.Skips += a.Skips
			m.WatchSeconds += a.WatchSeconds
			m.expectedSum += a.expectedSum
		}
		lat = append(lat, s.latencies...)
	}
	for _, a := range arms {
		if a.Impressions > 0 {
			a.CTR = float64(a.Clicks) / float64(a.Impressions)
			a.ExpectedCTR = a.expectedSum / float64(a.Impressions)
		}
		rep.Arms = append(rep.Arms, *a)
	}
	slices.SortFunc(rep.Arms, func(a, b ArmReport) int {
		if c := strings.Compare(a.ModelVersion, b.ModelVersion); c != 0 {
			return c
		}
		return strings.Compare(a.ExperimentArm, b.ExperimentArm)
	})
	rep.Latency = summarize(lat)
	el := time.Since(begin)
	rep.ElapsedSeconds = el.Seconds()
	rep.RequestsPerSecond = float64(rep.Requests) / max(el.Seconds(), 1e-9)
	if err := ctx.Err(); err != nil {
		return rep, fmt.Errorf("live run: %w", err)
	}
	return rep, nil
}

// summarize returns nearest-rank percentiles of lat in milliseconds.
func summarize(lat []time.Duration) LatencyReport {
	if len(lat) == 0 {
		return LatencyReport{}
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	pct := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(lat)))) - 1
		return ms(lat[min(max(i, 0), len(lat)-1)])
	}
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	return LatencyReport{
		Count: len(lat),
		Mean:  ms(sum / time.Duration(len(lat))),
		P50:   pct(0.50), P90: pct(0.90), P95: pct(0.95), P99: pct(0.99),
		Max: ms(lat[len(lat)-1]),
	}
}

type armKey struct{ version, arm string }

// live is the state shared by a run's users.
type live struct {
	w       *World
	client  adaptrecv1.RecommendServiceClient
	cfg     LiveConfig
	out     chan *adaptrecv1.Event
	issued  atomic.Int64 // Recommend calls started
	dropped atomic.Int64 // events that could not be queued
}

// take reserves one Recommend call of the budget.
func (l *live) take() bool {
	n := l.issued.Add(1)
	return l.cfg.Requests == 0 || n <= l.cfg.Requests
}

type liveStats struct {
	requests, succeeded, backoffs, unknown, organic int64
	errors, degradation                             map[string]int64
	arms                                            map[armKey]*ArmReport
	latencies                                       []time.Duration
}

func newLiveStats() *liveStats {
	return &liveStats{errors: map[string]int64{}, degradation: map[string]int64{}, arms: map[armKey]*ArmReport{}}
}

// liveUser is one concurrent simulated user, playing a series of
// population users one session at a time.
type liveUser struct {
	l      *live
	r      rng
	v      viewer
	stats  *liveStats
	recent []string // item ids of this session, newest first
}

func retryable(c codes.Code) bool { return c == codes.Unavailable || c == codes.ResourceExhausted }

// run plays sessions until runCtx ends or the request budget is spent;
// events are queued under ctx so that the last ones still reach Ingest.
func (lu *liveUser) run(runCtx, ctx context.Context) {
	l := lu.l
	pop := l.w.Users
	backoff := time.Duration(0)
	for runCtx.Err() == nil {
		u := &pop.Users[pop.sampleUser(&lu.r)]
		session := "live-" + events.NewID()
		device := sessionDevice(&lu.r, u)
		lu.recent = lu.recent[:0]
		for range lu.r.geometric(l.cfg.PagesPerSession) {
			if runCtx.Err() != nil {
				return
			}
			if lu.r.bernoulli(l.cfg.BrowseRate) {
				lu.browse(ctx, u, session, device)
			}
			if !l.take() {
				return
			}
			ok, code := lu.page(runCtx, ctx, u, session, device)
			if !ok {
				if ended(runCtx) {
					return
				}
				// Back off on every failure, harder on overload signals,
				// so a struggling server is not hammered.
				if retryable(code) {
					lu.stats.backoffs++
					backoff = min(max(2*backoff, l.cfg.BackoffBase), l.cfg.BackoffMax)
				} else {
					backoff = l.cfg.BackoffBase
				}
				// Full jitter keeps the users from retrying in lockstep.
				if !sleep(runCtx, time.Duration(lu.r.float64()*float64(backoff))) {
					return
				}
				continue
			}
			backoff = 0
			if l.cfg.ThinkTime > 0 && !sleep(runCtx, time.Duration(lu.r.exp(float64(l.cfg.ThinkTime)))) {
				return
			}
		}
	}
}

// ended reports whether ctx is done or past its deadline: gRPC can fail a
// call with DeadlineExceeded a moment before the context's own timer fires.
func ended(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && !time.Now().Before(dl)
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// page makes one Recommend call and responds to what it returns.
func (lu *liveUser) page(runCtx, ctx context.Context, u *User, session string, device adaptrecv1.Device) (bool, codes.Code) {
	l := lu.l
	now := l.cfg.Now()
	req := &adaptrecv1.RecommendRequest{
		RequestId: events.NewID(),
		UserId:    u.ID,
		Context: &adaptrecv1.RequestContext{
			Device:        device,
			TimeZone:      u.TimeZone.Name,
			LocalTime:     timestamppb.New(now),
			SessionId:     session,
			RecentItemIds: slices.Clone(lu.recent),
		},
		NumItems: int32(l.cfg.NumItems),
		Surface:  l.cfg.Surface,
		Priority: l.cfg.Priority,
	}
	callCtx, cancel := context.WithTimeout(runCtx, l.cfg.RequestTimeout)
	start := time.Now()
	resp, err := l.client.Recommend(callCtx, req)
	took := time.Since(start)
	cancel()
	if err != nil {
		if ended(runCtx) {
			// The run ended under the call: not the server's failure.
			return false, codes.Canceled
		}
		lu.stats.requests++
		code := status.Code(err)
		lu.stats.errors[code.String()]++
		return false, code
	}
	lu.stats.requests++
	lu.stats.succeeded++
	lu.stats.latencies = append(lu.stats.latencies, took)
	lu.stats.degradation[strings.TrimPrefix(resp.GetDegradationLevel().String(), "DEGRADATION_LEVEL_")]++
	key := armKey{resp.GetModelVersion(), resp.GetExperimentArm()}
	arm := lu.stats.arms[key]
	if arm == nil {
		arm = &ArmReport{ModelVersion: key.version, ExperimentArm: key.arm}
		lu.stats.arms[key] = arm
	}
	arm.Requests++
	requestID := resp.GetRequestId()
	if requestID == "" {
		requestID = req.RequestId
	}
	m := l.w.Model
	m.setViewer(&lu.v, u, now.Unix(), device)
	for pos, si := range resp.GetItems() {
		in := func(a adaptrecv1.Action, value float64) *adaptrecv1.UserInteractionEvent {
			return &adaptrecv1.UserInteractionEvent{
				UserId: u.ID, ItemId: si.GetItemId(), Action: a, Value: value,
				SessionId: session, Surface: l.cfg.Surface, Device: device, Position: int32(pos),
				RequestId: requestID, ModelVersion: key.version, ExperimentArm: key.arm, TimeZone: u.TimeZone.Name,
			}
		}
		arm.Impressions++
		lu.send(ctx, now, in(adaptrecv1.Action_ACTION_IMPRESSION, 0))
		idx, ok := l.w.Catalogue.Lookup(si.GetItemId())
		if !ok {
			lu.stats.unknown++
			continue
		}
		it := &l.w.Catalogue.Items[idx]
		r := m.respond(&lu.v, int32(idx))
		arm.expectedSum += m.examination(pos) * r.attract
		o := m.sample(&lu.r, &r, it, pos)
		if o.skip {
			arm.Skips++
			lu.send(ctx, now, in(adaptrecv1.Action_ACTION_SKIP, 0))
		}
		if !o.click {
			continue
		}
		arm.Clicks++
		lu.send(ctx, now, in(adaptrecv1.Action_ACTION_CLICK, 0))
		lu.remember(it.ID)
		if o.watch {
			arm.Watches++
			arm.WatchSeconds += o.watched
			lu.send(ctx, now, in(adaptrecv1.Action_ACTION_WATCH, o.watched))
			if o.complete {
				arm.Completes++
				lu.send(ctx, now, in(adaptrecv1.Action_ACTION_COMPLETE, o.watched))
			}
		}
		if o.purchase {
			arm.Purchases++
			lu.send(ctx, now, in(adaptrecv1.Action_ACTION_PURCHASE, float64(it.Price)))
		}
	}
	return true, codes.OK
}

// browse opens an item the user found by themselves: from the category of
// something clicked in this session, a favourite category, or the famous
// items everyone hears of.
func (lu *liveUser) browse(ctx context.Context, u *User, session string, device adaptrecv1.Device) {
	l := lu.l
	cat := l.w.Catalogue
	now := l.cfg.Now()
	t := now.Unix()
	recent := noItem
	if len(lu.recent) > 0 {
		if i, ok := cat.Lookup(lu.recent[lu.r.intN(len(lu.recent))]); ok {
			recent = int32(i)
		}
	}
	item := browseCategory(&lu.r, cat, recent, u, t)
	if item == noItem {
		return
	}
	it := &cat.Items[item]
	in := func(a adaptrecv1.Action, value float64) *adaptrecv1.UserInteractionEvent {
		return &adaptrecv1.UserInteractionEvent{
			UserId: u.ID, ItemId: it.ID, Action: a, Value: value,
			SessionId: session, Surface: BrowseSurface, Device: device, Position: -1, TimeZone: u.TimeZone.Name,
		}
	}
	m := l.w.Model
	m.setViewer(&lu.v, u, t, device)
	r := m.respond(&lu.v, item)
	o := m.sample(&lu.r, &r, it, -1)
	lu.send(ctx, now, in(adaptrecv1.Action_ACTION_VIEW, 0))
	lu.stats.organic++
	lu.remember(it.ID)
	if o.watch {
		lu.send(ctx, now, in(adaptrecv1.Action_ACTION_WATCH, o.watched))
		lu.stats.organic++
		if o.complete {
			lu.send(ctx, now, in(adaptrecv1.Action_ACTION_COMPLETE, o.watched))
			lu.stats.organic++
		}
	}
	if o.purchase {
		lu.send(ctx, now, in(adaptrecv1.Action_ACTION_PURCHASE, float64(it.Price)))
		lu.stats.organic++
	}
}

func (lu *liveUser) remember(id string) {
	lu.recent = slices.Insert(lu.recent, 0, id)
	if len(lu.recent) > maxRecentItems {
		lu.recent = lu.recent[:maxRecentItems]
	}
}

// send queues an event for Ingest; it blocks while the ingester is behind.
func (lu *liveUser) send(ctx context.Context, at time.Time, in *adaptrecv1.UserInteractionEvent) {
	e := events.NewInteraction(events.NewID(), at, lu.l.cfg.Producer, in)
	select {
	case lu.l.out <- e:
	case <-ctx.Done():
		lu.l.dropped.Add(1)
	}
}

// ingester batches queued events into Ingest calls.
type ingester struct {
	l      *live
	report IngestReport
	batch  []*adaptrecv1.Event
}

func (ing *ingester) run(ctx context.Context) {
	tick := time.NewTicker(ing.l.cfg.IngestInterval)
	defer tick.Stop()
	for {
		select {
		case e, ok := <-ing.l.out:
			if !ok {
				ing.flush(ctx)
				return
			}
			ing.batch = append(ing.batch, e)
			if len(ing.batch) >= ing.l.cfg.IngestBatch {
				ing.flush(ctx)
			}
		case <-tick.C:
			ing.flush(ctx)
		}
	}
}

// flush sends the pending batch, retrying overload answers with backoff.
// Retries reuse the same events, hence the same event ids, so a batch that
// was written before its answer was lost is deduplicated downstream.
func (ing *ingester) flush(ctx context.Context) {
	if len(ing.batch) == 0 {
		return
	}
	cfg := ing.l.cfg
	defer func() { ing.batch = ing.batch[:0] }()
	backoff := cfg.BackoffBase
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			ing.report.Dropped += int64(len(ing.batch))
			return
		}
		callCtx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
		resp, err := ing.l.client.Ingest(callCtx, &adaptrecv1.IngestRequest{Events: ing.batch})
		cancel()
		if err == nil {
			ing.report.Calls++
			ing.report.Events += int64(len(ing.batch))
			ing.report.Accepted += int64(resp.GetAccepted())
			return
		}
		code := status.Code(err)
		ing.report.Errors[code.String()]++
		if !retryable(code) || attempt >= defaultIngestRetries {
			ing.report.Dropped += int64(len(ing.batch))
			return
		}
		ing.report.Retries++
		if !sleep(ctx, backoff) {
			ing.report.Dropped += int64(len(ing.batch))
			return
		}
		backoff = min(2*backoff, cfg.BackoffMax)
	}
}
