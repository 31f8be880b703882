// Package serving implements RecommendService, the gRPC endpoint product
// backends call: Recommend for ranked items and Ingest for what users did.
package serving

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/predictions"
	"github.com/adaptrec/adaptrec/serving/admission"
)

// Request bounds. They keep one request from costing more than a fair share
// of a serving instance and are part of the API contract.
const (
	MaxNumItems     = 500
	DefaultNumItems = 20
	MaxRecentItems  = 200
	MaxIDLen        = 256
	MaxSurfaceLen   = 64
	MaxIngestBatch  = 1000
)

// PopularityModel is the model version reported when popularity answers.
const PopularityModel = "popularity"

var (
	responsesTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_serving_responses_total",
		Help: "Recommend responses by degradation level (unavailable: no level could answer).",
	}, []string{"level"})
	fallbackTotal = promauto.NewCounterVec(prometheus.CounterOpts{
		Name: "adaptrec_serving_pipeline_fallbacks_total",
		Help: "Requests the model pipeline did not answer, by reason (overload: admission had no room for a normal-priority request); a lower level answered them.",
	}, []string{"reason"})
)

// Options configures a Service. Zero values mean the documented defaults.
type Options struct {
	// Producer names this instance in the envelopes it writes; default "server".
	Producer string
	// IngestTimeout bounds how long Ingest waits for the event log; default 5s.
	IngestTimeout time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Pipeline ranks with models; nil serves popularity only.
	Pipeline *Pipeline
	// Admission bounds concurrent Recommend calls and sheds low-priority
	// ones under overload; nil admits everything.
	Admission *admission.Controller
	// Shadow scores mirrored requests with the shadow model; nil: none.
	Shadow *ShadowScorer
	// Predictions reads the users' batch predictions, the level answering
	// when the pipeline cannot (DEGRADATION_LEVEL_BATCH_PREDICTIONS);
	// nil: popularity answers at once. RunBackground refreshes its
	// pointer.
	Predictions *predictions.Reader
	// CacheSlots bounds the last-good-response cache (default 65536
	// users); CacheTTL is how old a cached response may be served
	// (default 1 hour).
	CacheSlots int
	CacheTTL   time.Duration
}

// Service implements adaptrecv1.RecommendServiceServer.
type Service struct {
	adaptrecv1.UnimplementedRecommendServiceServer

	log        *slog.Logger
	opts       Options
	events     Publisher       // synchronous: Ingest acknowledges durability
	async      *AsyncPublisher // PredictionEvents, off the request path
	popularity *Popularity

	cache *responseCache

	tzMu  sync.RWMutex
	tzMap map[string]*time.Location
}

var _ adaptrecv1.RecommendServiceServer = (*Service)(nil)

// NewService returns a service publishing ingested events through pub and
// prediction records through async.
func NewService(log *slog.Logger, pub Publisher, async *AsyncPublisher, opts Options) *Service {
	if opts.Producer == "" {
		opts.Producer = "server"
	}
	if opts.IngestTimeout == 0 {
		opts.IngestTimeout = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.CacheSlots == 0 {
		opts.CacheSlots = 1 << 16
	}
	if opts.CacheTTL == 0 {
		opts.CacheTTL = time.Hour
	}
	return &Service{
		log:        log,
		opts:       opts,
		events:     pub,
		async:      async,
		popularity: NewPopularity(time.Hour, 2*MaxNumItems),
		cache:      newResponseCache(opts.CacheSlots, opts.CacheTTL),
		tzMap:      make(map[string]*time.Location),
	}
}

// RunBackground refreshes rankings, and which batch predictions are
// current, until ctx is cancelled.
func (s *Service) RunBackground(ctx context.Context) {
	if r := s.opts.Predictions; r != nil {
		done := make(chan struct{})
		go func() { defer close(done); r.Run(ctx) }()
		defer func() { <-done }()
	}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.popularity.Refresh()
		}
	}
}

// badRequest builds an INVALID_ARGUMENT status listing every violation.
func badRequest(violations []*errdetails.BadRequest_FieldViolation) error {
	msg := "invalid request"
	for i, v := range violations {
		sep := "; "
		if i == 0 {
			sep = ": "
		}
		msg += sep + v.GetField() + ": " + v.GetDescription()
	}
	st := status.New(codes.InvalidArgument, msg)
	if detailed, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: violations}); err == nil {
		st = detailed
	}
	return st.Err()
}

func violation(field, format string, args ...any) *errdetails.BadRequest_FieldViolation {
	return &errdetails.BadRequest_FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)}
}

func checkID(field, v string, required bool) *errdetails.BadRequest_FieldViolation {
	switch {
	case v == "" && required:
		return violation(field, "required")
	case len(v) > MaxIDLen:
		return violation(field, "%d bytes, at most %d allowed", len(v), MaxIDLen)
	case !utf8.ValidString(v):
		return violation(field, "not valid UTF-8")
	}
	return nil
}

func (s *Service) location(name string) (*time.Location, error) {
	s.tzMu.RLock()
	loc, ok := s.tzMap[name]
	s.tzMu.RUnlock()
	if ok {
		return loc, nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	s.tzMu.Lock()
	s.tzMap[name] = loc
	s.tzMu.Unlock()
	return loc, nil
}

func (s *Service) validateRecommend(req *adaptrecv1.RecommendRequest) error {
	var vs []*errdetails.BadRequest_FieldViolation
	add := func(v *errdetails.BadRequest_FieldViolation) {
		if v != nil {
			vs = append(vs, v)
		}
	}
	add(checkID("user_id", req.GetUserId(), true))
	add(checkID("request_id", req.GetRequestId(), false))
	if n := req.GetNumItems(); n < 0 || n > MaxNumItems {
		add(violation("num_items", "%d is outside 0..%d (0 means %d)", n, MaxNumItems, DefaultNumItems))
	}
	if len(req.GetSurface()) > MaxSurfaceLen {
		add(violation("surface", "%d bytes, at most %d allowed", len(req.GetSurface()), MaxSurfaceLen))
	}
	if _, ok := adaptrecv1.Priority_name[int32(req.GetPriority())]; !ok {
		add(violation("priority", "unknown value %d", req.GetPriority()))
	}
	c := req.GetContext()
	if n := len(c.GetRecentItemIds()); n > MaxRecentItems {
		add(violation("context.recent_item_ids", "%d ids, at most %d allowed", n, MaxRecentItems))
	}
	for i, id := range c.GetRecentItemIds() {
		if v := checkID(fmt.Sprintf("context.recent_item_ids[%d]", i), id, true); v != nil {
			add(v)
			break
		}
	}
	add(checkID("context.session_id", c.GetSessionId(), false))
	if tz := c.GetTimeZone(); tz != "" {
		if _, err := s.location(tz); err != nil {
			add(violation("context.time_zone", "%q is not an IANA time zone such as Europe/Paris", tz))
		}
	}
	if _, ok := adaptrecv1.Device_name[int32(c.GetDevice())]; !ok {
		add(violation("context.device", "unknown value %d", c.GetDevice()))
	}
	if len(vs) > 0 {
		return badRequest(vs)
	}
	return nil
}

// Recommend ranks items for a user through the pipeline and, when the
// pipeline cannot answer, through the lower levels of the degradation
// hierarchy: full → stale features → simple ranking (inside the pipeline) →
// the user's batch predictions, else popularity → the user's last good
// response. It fails only when no level
// can answer, or when admission control sheds the request.
//
// A request the pipeline routed to a model version and arm (production or
// canary) but could not answer is answered by a fallback whose response
// names what answered and the arm, while its PredictionEvent names the
// routed version and arm at the fallback's level, which the feedback loop
// counts as that version's error (feedback.IsError).
func (s *Service) Recommend(ctx context.Context, req *adaptrecv1.RecommendRequest) (*adaptrecv1.RecommendResponse, error) {
	start := time.Now()
	if err := s.validateRecommend(req); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	// Admission: a request the server has no room for is shed when LOW;
	// a NORMAL one is answered by the model-free levels instead (a brownout:
	// a batch-predictions list costs one Redis GET and a popularity list
	// microseconds, the pipeline milliseconds), and shed only when those
	// cannot answer; HIGH is never shed for latency.
	brownout := false
	if s.opts.Admission != nil {
		prio := admission.FromProto(req.GetPriority())
		release, err := s.opts.Admission.Acquire(ctx, prio)
		switch {
		case err == nil:
			defer release()
		case prio == admission.Normal && status.Code(err) == codes.ResourceExhausted:
			brownout = true
		default:
			return nil, err
		}
	}
	n := int(req.GetNumItems())
	if n == 0 {
		n = DefaultNumItems
	}
	requestID := req.GetRequestId()
	if requestID == "" {
		requestID = events.NewID()
	}
	now := s.opts.Now()
	resp := &adaptrecv1.RecommendResponse{RequestId: requestID}
	pred := &adaptrecv1.PredictionEvent{
		RequestId: requestID, UserId: req.GetUserId(), Surface: req.GetSurface(),
		SessionId: req.GetContext().GetSessionId(), Device: req.GetContext().GetDevice(),
	}

	var out *outcome
	// routedVersion and routedArm are the model and arm a request that
	// the pipeline failed was routed to.
	var routedVersion, routedArm string
	if p := s.opts.Pipeline; p != nil && !brownout {
		var err error
		if out, err = p.safeRun(ctx, req, n, now); err != nil {
			if ctx.Err() != nil {
				return nil, status.FromContextError(ctx.Err()).Err()
			}
			fallbackTotal.WithLabelValues(reasonOf(err)).Inc()
			routedVersion, routedArm = routedTo(err)
			out = nil
		}
	}
	switch {
	case out != nil:
		resp.ModelVersion, resp.ExperimentArm, resp.DegradationLevel = out.version, out.arm, out.level
		resp.Items = make([]*adaptrecv1.ScoredItem, len(out.items))
		pred.Items = make([]*adaptrecv1.ServedItem, len(out.items))
		for i, it := range out.items {
			id := out.cat.ID(it.Item.ID)
			resp.Items[i] = &adaptrecv1.ScoredItem{ItemId: id, Score: it.Score}
			pred.Items[i] = &adaptrecv1.ServedItem{ItemId: id, Score: it.Score, Position: int32(i),
				Sources: s.opts.Pipeline.sourceNames(out.retriever, out.sources[i]), Features: out.itemValues[i]}
		}
		pred.FeatureSchemaHash = out.schemaHash
		pred.UserFeatureNames, pred.UserFeatures, pred.ItemFeatureNames = out.userNames, out.userValues, out.itemNames
		s.cache.put(req.GetUserId(), resp.Items, resp.ModelVersion, now)
	default:
		if brownout {
			fallbackTotal.WithLabelValues("overload").Inc()
		}
		if !s.answerWithoutModel(ctx, req, n, now, resp, pred) {
			if brownout {
				return nil, status.Error(codes.ResourceExhausted, "server overloaded and no fallback list available; retry with backoff")
			}
			responsesTotal.WithLabelValues("unavailable").Inc()
			return nil, status.Error(codes.Unavailable,
				"no recommendations available yet: no model is loaded, no item features are loaded and no interactions have been ingested; load a model (adaptrec models promote) or send interactions with Ingest, then retry")
		}
	}
	if routedVersion != "" {
		// The routed model failed and a fallback answered: the response
		// names what answered and the user's arm; the PredictionEvent is
		// the routed version's, at the fallback's level (an error to the
		// feedback loop), so that arm's guardrails count the failure.
		resp.ExperimentArm = routedArm
		pred.ModelVersion = routedVersion
	}
	if pred.ModelVersion == "" {
		pred.ModelVersion = resp.ModelVersion
	}
	pred.ExperimentArm, pred.DegradationLevel = resp.ExperimentArm, resp.DegradationLevel
	responsesTotal.WithLabelValues(resp.DegradationLevel.String()).Inc()
	latency := time.Since(start)
	pred.LatencyMs = float64(latency.Microseconds()) / 1000
	if s.async != nil {
		s.async.Offer(events.NewPrediction(events.NewID(), now, s.opts.Producer, pred))
	}
	if out != nil && s.opts.Shadow != nil {
		s.opts.Shadow.offer(req, requestID, out, now)
	}
	return resp, nil
}

// answerWithoutModel fills resp from the levels that rank nothing now: the
// user's batch predictions, else popularity from the catalogue's item
// features or from the interactions ingested here, then the user's last
// good response. It reports false when none can answer.
func (s *Service) answerWithoutModel(ctx context.Context, req *adaptrecv1.RecommendRequest, n int, now time.Time, resp *adaptrecv1.RecommendResponse, pred *adaptrecv1.PredictionEvent) bool {
	var exclude map[string]bool
	if recent := req.GetContext().GetRecentItemIds(); len(recent) > 0 {
		exclude = make(map[string]bool, len(recent))
		for _, id := range recent {
			exclude[id] = true
		}
	}
	if s.answerFromBatch(ctx, req, n, now, exclude, resp, pred) {
		return true
	}
	var ranked []ScoredItem
	if p := s.opts.Pipeline; p != nil {
		ranked = p.popular(n, exclude)
	}
	if len(ranked) == 0 {
		ranked = s.popularity.Top(make([]ScoredItem, 0, n), n, exclude)
	}
	if len(ranked) > 0 {
		resp.ModelVersion = PopularityModel
		resp.DegradationLevel = adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_POPULARITY
		resp.Items = make([]*adaptrecv1.ScoredItem, len(ranked))
		pred.Items = make([]*adaptrecv1.ServedItem, len(ranked))
		for i, it := range ranked {
			resp.Items[i] = &adaptrecv1.ScoredItem{ItemId: it.ItemID, Score: float32(it.Score)}
			pred.Items[i] = &adaptrecv1.ServedItem{ItemId: it.ItemID, Score: float32(it.Score), Position: int32(i), Sources: []string{"popularity"}}
		}
		return true
	}
	if c, ok := s.cache.get(req.GetUserId(), now); ok {
		resp.ModelVersion = c.version
		resp.DegradationLevel = adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_CACHED_RESPONSE
		resp.Items = c.items
		pred.Items = make([]*adaptrecv1.ServedItem, len(c.items))
		for i, it := range c.items {
			pred.Items[i] = &adaptrecv1.ServedItem{ItemId: it.GetItemId(), Score: it.GetScore(), Position: int32(i), Sources: []string{"cache"}}
		}
		return true
	}
	return false
}

// reasonOf names why the pipeline could not answer, for metrics.
func reasonOf(err error) string {
	switch {
	case errors.Is(err, errNoModel):
		return "no_model"
	case errors.Is(err, errNoCandidates):
		return "no_candidates"
	default:
		return "error"
	}
}

// Ingest validates a batch of interaction and feedback events and returns
// once all of them are durably in the event log. The batch is all or nothing.
func (s *Service) Ingest(ctx context.Context, req *adaptrecv1.IngestRequest) (*adaptrecv1.IngestResponse, error) {
	evs := req.GetEvents()
	switch {
	case len(evs) == 0:
		return nil, badRequest([]*errdetails.BadRequest_FieldViolation{violation("events", "empty batch: send 1..%d events", MaxIngestBatch)})
	case len(evs) > MaxIngestBatch:
		return nil, badRequest([]*errdetails.BadRequest_FieldViolation{violation("events", "%d events, at most %d per call: split the batch", len(evs), MaxIngestBatch)})
	}
	now := s.opts.Now()
	var vs []*errdetails.BadRequest_FieldViolation
	for i, e := range evs {
		switch e.GetPayload().(type) {
		case *adaptrecv1.Event_Interaction, *adaptrecv1.Event_Feedback:
		default:
			vs = append(vs, violation(fmt.Sprintf("events[%d].payload", i), "Ingest accepts interaction and feedback events only"))
			continue
		}
		if env := e.GetEnvelope(); env != nil && env.GetProducer() == "" {
			env.Producer = s.opts.Producer + "/ingest"
		}
		if err := events.Validate(e, now); err != nil {
			if verr, ok := err.(*events.ValidationError); ok {
				for _, f := range verr.Fields {
					vs = append(vs, violation(fmt.Sprintf("events[%d].%s", i, f.Field), "%s", f.Reason))
				}
			} else {
				vs = append(vs, violation(fmt.Sprintf("events[%d]", i), "%v", err))
			}
		}
	}
	if len(vs) > 0 {
		return nil, badRequest(vs)
	}
	pctx, cancel := context.WithTimeout(ctx, s.opts.IngestTimeout)
	defer cancel()
	if err := s.events.Publish(pctx, evs...); err != nil {
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		s.log.Warn("ingest: event log unavailable", "events", len(evs), "err", err)
		return nil, status.Errorf(codes.Unavailable,
			"event log unavailable, nothing was accepted: retry the same batch with the same event ids (%v)", err)
	}
	for _, e := range evs {
		if in := e.GetInteraction(); in != nil {
			s.popularity.Observe(in, e.GetEnvelope().GetEventTime().AsTime())
		}
	}
	return &adaptrecv1.IngestResponse{Accepted: int32(len(evs))}, nil
}
