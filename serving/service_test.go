package serving

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

// recorder is an in-memory event log for unit tests; fail makes it refuse.
type recorder struct {
	mu   sync.Mutex
	evs  []*adaptrecv1.Event
	fail error
}

func (r *recorder) Publish(_ context.Context, evs ...*adaptrecv1.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.evs = append(r.evs, evs...)
	return nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.evs)
}

var testNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func startService(t *testing.T, pub Publisher) (*Service, adaptrecv1.RecommendServiceClient) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := NewService(log, pub, nil, Options{Now: func() time.Time { return testNow }})
	srv, _ := NewGRPCServer(svc)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return svc, adaptrecv1.NewRecommendServiceClient(conn)
}

func interaction(id, user, item string, a adaptrecv1.Action) *adaptrecv1.Event {
	return events.NewInteraction(id, testNow.Add(-time.Second), "", &adaptrecv1.UserInteractionEvent{UserId: user, ItemId: item, Action: a})
}

func fieldViolations(t *testing.T, err error) []string {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("code = %s (%v), want InvalidArgument", st.Code(), err)
	}
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	return fields
}

func TestIngestAndRecommend(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	svc, client := startService(t, rec)
	ctx := t.Context()

	_, err := client.Recommend(ctx, &adaptrecv1.RecommendRequest{UserId: "u1"})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("Recommend before any data = %v, want Unavailable", err)
	}

	batch := []*adaptrecv1.Event{
		interaction("e1", "u1", "hit", adaptrecv1.Action_ACTION_PURCHASE),
		interaction("e2", "u2", "hit", adaptrecv1.Action_ACTION_CLICK),
		interaction("e3", "u2", "ok", adaptrecv1.Action_ACTION_CLICK),
		events.NewFeedback("e4", testNow, "", &adaptrecv1.FeedbackEvent{UserId: "u1", ItemId: "ok", Kind: adaptrecv1.FeedbackKind_FEEDBACK_KIND_THUMBS_UP}),
	}
	resp, err := client.Ingest(ctx, &adaptrecv1.IngestRequest{Events: batch})
	if err != nil || resp.GetAccepted() != 4 || rec.count() != 4 {
		t.Fatalf("Ingest = %v, %v; recorded %d, want 4 accepted", resp, err, rec.count())
	}
	if p := rec.evs[0].GetEnvelope().GetProducer(); p != "server/ingest" {
		t.Errorf("producer filled as %q, want server/ingest", p)
	}
	svc.popularity.Refresh()

	got, err := client.Recommend(ctx, &adaptrecv1.RecommendRequest{UserId: "u3", NumItems: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.GetItems()) != 2 || got.GetItems()[0].GetItemId() != "hit" || got.GetRequestId() == "" ||
		got.GetDegradationLevel() != adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_POPULARITY || got.GetModelVersion() != PopularityModel {
		t.Fatalf("Recommend = %v, want [hit ok] from popularity with a request id", got)
	}
	got, err = client.Recommend(ctx, &adaptrecv1.RecommendRequest{UserId: "u3", RequestId: "r-1",
		Context: &adaptrecv1.RequestContext{RecentItemIds: []string{"hit"}, TimeZone: "Europe/Paris"}})
	if err != nil || len(got.GetItems()) != 1 || got.GetItems()[0].GetItemId() != "ok" || got.GetRequestId() != "r-1" {
		t.Fatalf("Recommend excluding recent = %v, %v; want [ok] echoing r-1", got, err)
	}
}

func TestRecommendValidation(t *testing.T) {
	t.Parallel()
	_, client := startService(t, &recorder{})
	tests := []struct {
		name string
		req  *adaptrecv1.RecommendRequest
		want []string
	}{
		{"no user", &adaptrecv1.RecommendRequest{}, []string{"user_id"}},
		{"too many items", &adaptrecv1.RecommendRequest{UserId: "u", NumItems: MaxNumItems + 1}, []string{"num_items"}},
		{"negative items", &adaptrecv1.RecommendRequest{UserId: "u", NumItems: -1}, []string{"num_items"}},
		{"bad zone and device", &adaptrecv1.RecommendRequest{UserId: "u", Context: &adaptrecv1.RequestContext{TimeZone: "Mars/Olympus", Device: 42}},
			[]string{"context.time_zone", "context.device"}},
		{"long user id", &adaptrecv1.RecommendRequest{UserId: strings.Repeat("u", MaxIDLen+1)}, []string{"user_id"}},
		{"too many recent", &adaptrecv1.RecommendRequest{UserId: "u", Context: &adaptrecv1.RequestContext{RecentItemIds: make([]string, MaxRecentItems+1)}},
			[]string{"context.recent_item_ids", "context.recent_item_ids[0]"}},
		{"bad priority", &adaptrecv1.RecommendRequest{UserId: "u", Priority: 9}, []string{"priority"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := client.Recommend(t.Context(), tt.req)
			if got := fieldViolations(t, err); strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("violations = %v, want %v (%v)", got, tt.want, err)
			}
		})
	}
}

func TestIngestRejectsWholeBatch(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	_, client := startService(t, rec)
	noID := interaction("", "u1", "i1", adaptrecv1.Action_ACTION_CLICK)
	prediction := events.NewPrediction("p1", testNow, "x", &adaptrecv1.PredictionEvent{UserId: "u", RequestId: "r"})
	tests := []struct {
		name string
		evs  []*adaptrecv1.Event
		want []string
	}{
		{"empty", nil, []string{"events"}},
		{"too many", make([]*adaptrecv1.Event, MaxIngestBatch+1), []string{"events"}},
		{"one bad among good", []*adaptrecv1.Event{interaction("ok", "u1", "i1", adaptrecv1.Action_ACTION_CLICK), noID},
			[]string{"events[1].envelope.event_id"}},
		{"wrong payload", []*adaptrecv1.Event{prediction}, []string{"events[0].payload"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.Ingest(t.Context(), &adaptrecv1.IngestRequest{Events: tt.evs})
			if got := fieldViolations(t, err); strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("violations = %v, want %v (%v)", got, tt.want, err)
			}
		})
	}
	if n := rec.count(); n != 0 {
		t.Fatalf("%d events published from rejected batches, want 0", n)
	}
}

func TestIngestEventLogDown(t *testing.T) {
	t.Parallel()
	rec := &recorder{fail: errors.New("broker unreachable")}
	_, client := startService(t, rec)
	_, err := client.Ingest(t.Context(), &adaptrecv1.IngestRequest{Events: []*adaptrecv1.Event{interaction("e1", "u", "i", adaptrecv1.Action_ACTION_CLICK)}})
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "retry the same batch") {
		t.Fatalf("Ingest with the event log down = %v, want Unavailable telling the caller to retry", err)
	}
}

func TestAsyncPublisherDropsWhenFull(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rec := &recorder{}
	a := NewAsyncPublisher(rec, log, 2, 10, time.Second)
	e := interaction("e", "u", "i", adaptrecv1.Action_ACTION_CLICK)
	if !a.Offer(e) || !a.Offer(e) || a.Offer(e) {
		t.Fatal("Offer on a buffer of 2 should accept 2 then drop")
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	cancel()
	<-done
	if rec.count() != 2 {
		t.Fatalf("published %d events after drain, want 2", rec.count())
	}
}

// batchRecorder records the size of every publish.
type batchRecorder struct {
	mu      sync.Mutex
	batches []int
	got     chan struct{}
}

func (r *batchRecorder) Publish(_ context.Context, evs ...*adaptrecv1.Event) error {
	r.mu.Lock()
	r.batches = append(r.batches, len(evs))
	r.mu.Unlock()
	r.got <- struct{}{}
	return nil
}

func (r *batchRecorder) sizes() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.batches)
}

// TestAsyncPublisherLinger checks that a partial batch waits for more
// events, a full one goes at once, and shutdown publishes a lingering one.
func TestAsyncPublisherLinger(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rec := &batchRecorder{got: make(chan struct{}, 16)}
	a := NewAsyncPublisher(rec, log, 100, 4, time.Second)
	a.Linger = time.Hour // only a full batch or shutdown publishes
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	e := interaction("e", "u", "i", adaptrecv1.Action_ACTION_CLICK)
	for range 3 {
		a.Offer(e)
		time.Sleep(5 * time.Millisecond) // one at a time, as requests come
	}
	select {
	case <-rec.got:
		t.Fatalf("published %v before the batch filled or the linger ended", rec.sizes())
	case <-time.After(50 * time.Millisecond):
	}
	a.Offer(e) // the fourth fills the batch
	select {
	case <-rec.got:
	case <-time.After(5 * time.Second):
		t.Fatal("a full batch was not published while lingering")
	}
	a.Offer(e)
	a.Offer(e)
	cancel()
	<-done
	if got := rec.sizes(); !slices.Equal(got, []int{4, 2}) {
		t.Fatalf("publishes of %v events, want [4 2]: one full batch, then the lingering two at shutdown", got)
	}
}
