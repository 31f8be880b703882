package serving

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

// TestIngestThroughRealBroker sends events through Ingest into a real
// broker, stops the broker to prove Ingest fails fast with UNAVAILABLE and
// accepts nothing, and proves it recovers once the broker is back.
func TestIngestThroughRealBroker(t *testing.T) {
	env := testenv.NewWithOptions(t, testenv.Options{Components: []testenv.Component{testenv.Kafka}, Persist: true})
	cfg := env.Config()
	ctx := t.Context()
	if err := events.EnsureTopics(ctx, cfg.Kafka); err != nil {
		t.Fatal(err)
	}
	producer, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	svc := NewService(log, producer, nil, Options{IngestTimeout: 2 * time.Second})
	srv, _ := NewGRPCServer(svc)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := adaptrecv1.NewRecommendServiceClient(conn)

	if hs, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{
		Service: adaptrecv1.RecommendService_ServiceDesc.ServiceName,
	}); err != nil || hs.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v; want SERVING", hs, err)
	}

	batch := func(prefix string, n int) []*adaptrecv1.Event {
		evs := make([]*adaptrecv1.Event, n)
		for i := range evs {
			evs[i] = events.NewInteraction(fmt.Sprintf("%s-%d", prefix, i), time.Now(), "", &adaptrecv1.UserInteractionEvent{
				UserId: fmt.Sprintf("u%d", i%5), ItemId: "i1", Action: adaptrecv1.Action_ACTION_CLICK,
			})
		}
		return evs
	}
	if _, err := client.Ingest(ctx, &adaptrecv1.IngestRequest{Events: batch("a", 10)}); err != nil {
		t.Fatal(err)
	}
	if got := testenv.TopicMessages(t, cfg.Kafka.Brokers[0], events.TopicInteractions); got != 10 {
		t.Fatalf("topic holds %d messages after Ingest, want 10", got)
	}

	env.StopComponent(testenv.Kafka)
	start := time.Now()
	_, err = client.Ingest(ctx, &adaptrecv1.IngestRequest{Events: batch("b", 3)})
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "retry") {
		t.Fatalf("Ingest with the broker down = %v, want UNAVAILABLE asking for a retry", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("Ingest with the broker down took %s; the ingest timeout is 2s", waited)
	}

	env.StartComponent(testenv.Kafka)
	testenv.Eventually(t, 30*time.Second, func() error {
		_, err := client.Ingest(ctx, &adaptrecv1.IngestRequest{Events: batch("c", 5)})
		return err
	})
	// The first batch survived the restart and the retried one went in
	// (possibly more than once: retries reuse event ids for consumers to
	// dedupe).
	got := testenv.TopicMessages(t, cfg.Kafka.Brokers[0], events.TopicInteractions)
	if got < 15 {
		t.Fatalf("topic holds %d messages after recovery, want at least 10 + 5", got)
	}
}
