package sim

import (
	"context"
	"errors"
	"maps"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

// fakeRecommender is a minimal RecommendService for the live tests: users
// with an even index get the oracle's best items ("v-oracle"/"oracle"),
// others random published items ("v-random"/"random"). It fails some calls
// on purpose and records everything it answered and ingested.
type fakeRecommender struct {
	adaptrecv1.UnimplementedRecommendServiceServer
	w     *World
	delay time.Duration
	// failEvery makes every n-th Recommend fail with the code.
	failEvery map[int]codes.Code
	// failIngest makes the first n Ingest calls fail with Unavailable.
	failIngest int
	// onCall, when set, is called with the call number before answering.
	onCall func(n int)

	mu          sync.Mutex
	calls       int
	failed      map[string]int64
	degradation map[string]int64
	served      map[string]*adaptrecv1.RecommendResponse
	ingestCalls int
	ingested    map[string]*adaptrecv1.Event
	invalid     []string
}

func newFakeRecommender(w *World) *fakeRecommender {
	return &fakeRecommender{
		w: w, failed: map[string]int64{}, degradation: map[string]int64{},
		served: map[string]*adaptrecv1.RecommendResponse{}, ingested: map[string]*adaptrecv1.Event{},
	}
}

func (f *fakeRecommender) Recommend(ctx context.Context, req *adaptrecv1.RecommendRequest) (*adaptrecv1.RecommendResponse, error) {
	f.mu.Lock()
	f.calls++
	n := f.calls
	for every, code := range f.failEvery {
		if n%every == 0 {
			f.failed[code.String()]++
			f.mu.Unlock()
			return nil, status.Errorf(code, "call %d fails on purpose", n)
		}
	}
	f.mu.Unlock()
	if f.onCall != nil {
		f.onCall(n)
	}
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	ui, ok := f.w.Users.Lookup(req.GetUserId())
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "unknown user %q", req.GetUserId())
	}
	if req.GetContext().GetSessionId() == "" || req.GetContext().GetTimeZone() == "" || req.GetContext().GetLocalTime() == nil {
		return nil, status.Error(codes.InvalidArgument, "context without session, time zone or local time")
	}
	u := &f.w.Users.Users[ui]
	at := req.GetContext().GetLocalTime().AsTime()
	resp := &adaptrecv1.RecommendResponse{RequestId: req.GetRequestId(), DegradationLevel: adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_FULL}
	if n%3 == 0 {
		resp.DegradationLevel = adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_POPULARITY
	}
	k := int(req.GetNumItems())
	if ui%2 == 0 {
		resp.ModelVersion, resp.ExperimentArm = "v-oracle", "oracle"
		for _, i := range f.w.Model.BestItems(u, at, k) {
			resp.Items = append(resp.Items, &adaptrecv1.ScoredItem{ItemId: f.w.Catalogue.Items[i].ID})
		}
	} else {
		resp.ModelVersion, resp.ExperimentArm = "v-random", "random"
		r := newRNG(uint64(n))
		for len(resp.Items) < k {
			if i := pickPublished(&r, f.w.Catalogue, f.w.Catalogue.byPublished, at.Unix()); i != noItem {
				resp.Items = append(resp.Items, &adaptrecv1.ScoredItem{ItemId: f.w.Catalogue.Items[i].ID})
			}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.degradation[strings.TrimPrefix(resp.DegradationLevel.String(), "DEGRADATION_LEVEL_")]++
	f.served[resp.RequestId] = resp
	return resp, nil
}

func (f *fakeRecommender) Ingest(ctx context.Context, req *adaptrecv1.IngestRequest) (*adaptrecv1.IngestResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ingestCalls++
	if f.ingestCalls <= f.failIngest {
		return nil, status.Error(codes.Unavailable, "event log down on purpose")
	}
	for _, e := range req.GetEvents() {
		if err := events.Validate(e, time.Now()); err != nil {
			f.invalid = append(f.invalid, err.Error())
			continue
		}
		f.ingested[e.GetEnvelope().GetEventId()] = e
	}
	return &adaptrecv1.IngestResponse{Accepted: int32(len(req.GetEvents()))}, nil
}

// serve starts f on a loopback listener and returns a client for it.
func serve(t *testing.T, f *fakeRecommender) adaptrecv1.RecommendServiceClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	adaptrecv1.RegisterRecommendServiceServer(srv, f)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return adaptrecv1.NewRecommendServiceClient(conn)
}

func liveWorld(t *testing.T) *World {
	t.Helper()
	start := time.Now().Add(-30 * 24 * time.Hour).Truncate(time.Hour)
	w, err := NewWorld(WorldConfig{
		Seed: 31, Start: start, Window: 30 * 24 * time.Hour,
		Catalogue:  CatalogueConfig{Items: 3000},
		Population: PopulationConfig{Users: 400},
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func TestRunLiveMeasuresArms(t *testing.T) {
	t.Parallel()
	w := liveWorld(t)
	f := newFakeRecommender(w)
	f.failEvery = map[int]codes.Code{10: codes.ResourceExhausted, 23: codes.Unavailable, 37: codes.Internal}
	f.failIngest = 1
	client := serve(t, f)
	const requests = 500
	rep, err := RunLive(t.Context(), w, client, LiveConfig{
		Users: 4, Requests: requests, IngestBatch: 50,
		BackoffBase: time.Millisecond, BackoffMax: 4 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("RunLive: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.invalid) > 0 {
		t.Fatalf("server rejected %d events, first: %s", len(f.invalid), f.invalid[0])
	}

	// Requests, errors, backoffs, degradation and latency.
	var failed int64
	for _, n := range f.failed {
		failed += n
	}
	if rep.Requests != requests || f.calls != requests || rep.Succeeded != requests-failed {
		t.Errorf("report: %d requests, %d succeeded; server: %d calls, %d failed", rep.Requests, rep.Succeeded, f.calls, failed)
	}
	if !maps.Equal(rep.Errors, f.failed) {
		t.Errorf("errors by code %v, server returned %v", rep.Errors, f.failed)
	}
	if want := f.failed["ResourceExhausted"] + f.failed["Unavailable"]; rep.Backoffs != want || want == 0 {
		t.Errorf("backoffs %d, want %d (ResourceExhausted + Unavailable)", rep.Backoffs, want)
	}
	if !maps.Equal(rep.Degradation, f.degradation) {
		t.Errorf("degradation %v, server answered %v", rep.Degradation, f.degradation)
	}
	if rep.Latency.Count != int(rep.Succeeded) || rep.Latency.P50 <= 0 || rep.Latency.P50 > rep.Latency.P99 || rep.Latency.P99 > rep.Latency.Max {
		t.Errorf("latency %+v", rep.Latency)
	}

	// Ingest: the first call failed and was retried with the same ids.
	if rep.Ingest.Retries < 1 || rep.Ingest.Errors["Unavailable"] != 1 || rep.Ingest.Dropped != 0 {
		t.Errorf("ingest %+v, want one Unavailable retried and nothing dropped", rep.Ingest)
	}
	if rep.Ingest.Events != int64(len(f.ingested)) || rep.Ingest.Accepted != rep.Ingest.Events {
		t.Errorf("ingest sent %d events (%d accepted), server holds %d distinct", rep.Ingest.Events, rep.Ingest.Accepted, len(f.ingested))
	}

	// Every interaction is attributed to what the server served.
	type counts struct{ requests, impressions, clicks int64 }
	server := map[armKey]*counts{}
	for _, resp := range f.served {
		k := armKey{resp.ModelVersion, resp.ExperimentArm}
		if server[k] == nil {
			server[k] = &counts{}
		}
		server[k].requests++
	}
	var organic int64
	for id, e := range f.ingested {
		in := e.GetInteraction()
		if in.GetRequestId() == "" {
			if in.GetPosition() != -1 || in.GetSurface() != BrowseSurface || in.GetModelVersion() != "" {
				t.Fatalf("organic event %s: %v", id, in)
			}
			organic++
			continue
		}
		resp, ok := f.served[in.GetRequestId()]
		if !ok {
			t.Fatalf("event %s names request %q the server never answered", id, in.GetRequestId())
		}
		pos := in.GetPosition()
		if in.GetModelVersion() != resp.ModelVersion || in.GetExperimentArm() != resp.ExperimentArm ||
			pos < 0 || int(pos) >= len(resp.Items) || resp.Items[pos].ItemId != in.GetItemId() {
			t.Fatalf("event %s: %v does not match response %v", id, in, resp)
		}
		c := server[armKey{resp.ModelVersion, resp.ExperimentArm}]
		switch in.GetAction() {
		case adaptrecv1.Action_ACTION_IMPRESSION:
			c.impressions++
		case adaptrecv1.Action_ACTION_CLICK:
			c.clicks++
		}
	}
	if organic == 0 || organic != rep.OrganicEvents {
		t.Errorf("organic events: report %d, server %d", rep.OrganicEvents, organic)
	}
	if len(rep.Arms) != 2 {
		t.Fatalf("arms %+v, want two", rep.Arms)
	}
	byArm := map[string]ArmReport{}
	for _, a := range rep.Arms {
		c := server[armKey{a.ModelVersion, a.ExperimentArm}]
		if c == nil || a.Requests != c.requests || a.Impressions != c.impressions || a.Clicks != c.clicks {
			t.Errorf("arm %s/%s: report %d requests %d impressions %d clicks, server saw %+v",
				a.ModelVersion, a.ExperimentArm, a.Requests, a.Impressions, a.Clicks, c)
		}
		if want := float64(a.Clicks) / float64(a.Impressions); a.CTR != want {
			t.Errorf("arm %s CTR %g, want clicks/impressions %g", a.ExperimentArm, a.CTR, want)
		}
		byArm[a.ExperimentArm] = a
	}
	oracle, random := byArm["oracle"], byArm["random"]
	if rep.Arms[0].ModelVersion != "v-oracle" {
		t.Errorf("arms not sorted by model version: %s first", rep.Arms[0].ModelVersion)
	}
	// The response model matters: the oracle's items are clicked far more.
	if oracle.CTR < 2*random.CTR || oracle.ExpectedCTR < 2*random.ExpectedCTR {
		t.Errorf("oracle CTR %.3f (expected %.3f), random CTR %.3f (expected %.3f): want the oracle at least twice as good",
			oracle.CTR, oracle.ExpectedCTR, random.CTR, random.ExpectedCTR)
	}
	t.Logf("oracle CTR %.3f (expected %.3f), random CTR %.3f (expected %.3f), latency p50 %.2fms p99 %.2fms",
		oracle.CTR, oracle.ExpectedCTR, random.CTR, random.ExpectedCTR, rep.Latency.P50, rep.Latency.P99)
}

func TestRunLiveStops(t *testing.T) {
	t.Parallel()
	t.Run("duration", func(t *testing.T) {
		t.Parallel()
		w := liveWorld(t)
		f := newFakeRecommender(w)
		f.delay = 3 * time.Millisecond
		client := serve(t, f)
		begin := time.Now()
		rep, err := RunLive(t.Context(), w, client, LiveConfig{Users: 3, Duration: 300 * time.Millisecond})
		if err != nil {
			t.Fatalf("RunLive: %v", err)
		}
		if took := time.Since(begin); took > 5*time.Second {
			t.Errorf("a 300ms run took %s", took)
		}
		if rep.Requests == 0 || len(rep.Errors) != 0 || rep.Ingest.Dropped != 0 {
			t.Errorf("report %+v: want requests, no errors (the run's end is not an error), nothing dropped", rep)
		}
		if rep.Latency.P50 < 3 {
			t.Errorf("p50 %.2fms below the server's 3ms delay", rep.Latency.P50)
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if int64(len(f.ingested)) != rep.Ingest.Events {
			t.Errorf("server holds %d events, report says %d were ingested", len(f.ingested), rep.Ingest.Events)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		t.Parallel()
		w := liveWorld(t)
		f := newFakeRecommender(w)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		f.onCall = func(n int) {
			if n == 20 {
				cancel()
			}
		}
		client := serve(t, f)
		done := make(chan struct{})
		var rep *LiveReport
		var err error
		go func() {
			defer close(done)
			rep, err = RunLive(ctx, w, client, LiveConfig{Users: 2})
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("RunLive did not stop after cancel")
		}
		// The cancel comes inside the 20th call; each of the 2 users has at
		// most one call in flight then, which may still complete or be cut
		// short. Calls cut short are not the server's failures and are not
		// counted, so the report holds 18 to 21 calls.
		if !errors.Is(err, context.Canceled) || rep == nil || rep.Requests < 18 || rep.Requests > 21 || len(rep.Errors) != 0 {
			t.Fatalf("RunLive = %+v, %v; want the report of 18-21 calls and context.Canceled", rep, err)
		}
	})
}

func TestLiveConfigValidate(t *testing.T) {
	t.Parallel()
	w := liveWorld(t)
	tests := []struct {
		cfg  LiveConfig
		want string
	}{
		{LiveConfig{Users: -1}, "live users: must be >= 1, got -1"},
		{LiveConfig{NumItems: 501}, "live num items: 501"},
		{LiveConfig{Duration: -time.Second}, "live duration"},
		{LiveConfig{Requests: -5}, "live requests: must be >= 0, got -5"},
		{LiveConfig{Priority: 42}, "live priority: unknown value 42"},
		{LiveConfig{BrowseRate: 1.5}, "live browse rate: 1.5"},
		{LiveConfig{BackoffBase: time.Second, BackoffMax: time.Millisecond}, "live backoff"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			_, err := RunLive(t.Context(), w, nil, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("RunLive = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	var lat []time.Duration
	for i := 100; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Millisecond)
	}
	got := summarize(lat)
	want := LatencyReport{Count: 100, Mean: 50.5, P50: 50, P90: 90, P95: 95, P99: 99, Max: 100}
	if got != want {
		t.Errorf("summarize = %+v, want %+v", got, want)
	}
	if got := summarize(nil); got != (LatencyReport{}) {
		t.Errorf("summarize(nil) = %+v", got)
	}
}
