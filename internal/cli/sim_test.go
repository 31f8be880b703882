package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"google.golang.org/grpc"

	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/testenv"
	"github.com/adaptrec/adaptrec/sim"
)

// simTestNow is the clock of the sim command tests.
var simTestNow = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func simTestWorld() simWorldFlags {
	return simWorldFlags{seed: 3, users: 500, items: 1000, categories: 20, days: 10, shiftShare: 0.5}
}

func TestSimFlagValidation(t *testing.T) {
	t.Parallel()
	hist := func(mut func(*simHistoryOptions)) simHistoryOptions {
		o := simHistoryOptions{world: simTestWorld(), events: 1000, pageSize: 10, batch: 100, dryRun: true, now: simTestNow}
		mut(&o)
		return o
	}
	live := func(mut func(*simLiveOptions)) simLiveOptions {
		o := simLiveOptions{world: simTestWorld(), server: "127.0.0.1:1", users: 2, duration: time.Second,
			numItems: 10, surface: "home", priority: "normal", browseRate: 0.3, timeout: time.Second, now: simTestNow}
		mut(&o)
		return o
	}
	tests := []struct {
		name string
		run  func() error
		want []string
	}{
		{"events", func() error {
			return simHistory(t.Context(), &bytes.Buffer{}, &bytes.Buffer{}, config.Config{}, hist(func(o *simHistoryOptions) { o.events = -3 }))
		}, []string{"--events must be in 1..4294967295, got -3"}},
		{"every bad world flag at once", func() error {
			return simHistory(t.Context(), &bytes.Buffer{}, &bytes.Buffer{}, config.Config{}, hist(func(o *simHistoryOptions) {
				o.world.users, o.world.items, o.world.categories, o.world.days = 0, 300_000, 1, 0
				o.world.start, o.world.shiftAt, o.world.shiftShare = "yesterday", "2026-13-01", 0
			}))
		}, []string{"--users must be in 1..5000000, got 0", "--items must be in 1..200000, got 300000",
			"--categories must be in 2..200, got 1", "--days must be in 1..3650, got 0", `--start "yesterday"`,
			`--shift-at "2026-13-01"`, "--shift-share must be in (0, 1], got 0"}},
		{"page size and batch", func() error {
			return simHistory(t.Context(), &bytes.Buffer{}, &bytes.Buffer{}, config.Config{}, hist(func(o *simHistoryOptions) {
				o.pageSize, o.batch, o.workers = 0, 200_000, -1
			}))
		}, []string{"--page-size must be in 1..100, got 0", "--batch must be in 1..100000, got 200000", "--workers must be >= 0, got -1"}},
		{"future window", func() error {
			return simHistory(t.Context(), &bytes.Buffer{}, &bytes.Buffer{}, config.Config{}, hist(func(o *simHistoryOptions) {
				o.world.start = "2026-11-20"
			}))
		}, []string{"--start 2026-11-20T00:00:00Z plus --days 10 ends at 2026-11-30T00:00:00Z, in the future"}},
		{"missing catalogue file", func() error {
			return simHistory(t.Context(), &bytes.Buffer{}, &bytes.Buffer{}, config.Config{}, hist(func(o *simHistoryOptions) {
				o.world.catalogue = filepath.Join(t.TempDir(), "nope.bin")
			}))
		}, []string{"--catalogue", "nope.bin"}},
		{"movielens without dataset", func() error {
			return simMovieLens(t.Context(), &bytes.Buffer{}, &bytes.Buffer{}, config.Config{}, simMovieLensOptions{batch: 0, dryRun: true})
		}, []string{"--dataset is required", "--batch must be in 1..100000, got 0"}},
		{"movielens dataset not a dir", func() error {
			return simMovieLens(t.Context(), &bytes.Buffer{}, &bytes.Buffer{}, config.Config{}, simMovieLensOptions{dataset: "/no/such/dir", batch: 10, dryRun: true})
		}, []string{`--dataset "/no/such/dir" is not a directory`}},
		{"live flags", func() error {
			return simLive(t.Context(), &bytes.Buffer{}, &bytes.Buffer{}, live(func(o *simLiveOptions) {
				o.users, o.numItems, o.priority, o.browseRate, o.timeout, o.think = 0, 501, "urgent", 1.5, 0, -time.Second
				o.world.users = -2
			}))
		}, []string{"--users must be in 1..10000, got 0", "--num-items must be in 1..500, got 501", `--priority must be high, normal or low, got "urgent"`,
			"--browse-rate must be in 0..1, got 1.5", "--timeout must be > 0, got 0s", "--think must be >= 0, got -1s",
			"--population must be in 1..5000000, got -2"}},
		{"live without an end", func() error {
			return simLive(t.Context(), &bytes.Buffer{}, &bytes.Buffer{}, live(func(o *simLiveOptions) { o.duration = 0 }))
		}, []string{"--duration 0 needs --requests"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.run()
			if err == nil {
				t.Fatal("accepted bad flags")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestSimHelp(t *testing.T) {
	t.Parallel()
	for _, sub := range []string{"history", "movielens", "live"} {
		t.Run(sub, func(t *testing.T) {
			t.Parallel()
			cmd := newSimCmd()
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetArgs([]string{sub, "--help"})
			if err := cmd.Execute(); err != nil {
				t.Fatal(err)
			}
			for _, want := range map[string][]string{
				"history":   {"--events", "--users", "--items", "--days", "--seed", "--start", "--dry-run", "--catalogue-out"},
				"movielens": {"--dataset"},
				"live":      {"--server", "--users", "--duration", "--json", "--population", "--requests"},
			}[sub] {
				if !strings.Contains(out.String(), want) {
					t.Errorf("sim %s --help lacks %s:\n%s", sub, want, out.String())
				}
			}
		})
	}
}

// TestSimHistoryAndMovieLensPublish publishes to a real Kafka-protocol broker
// and reads the interactions topic back.
func TestSimHistoryAndMovieLensPublish(t *testing.T) {
	t.Parallel()
	env := testenv.New(t, testenv.Kafka)
	cfg := env.Config()
	catFile := filepath.Join(t.TempDir(), "catalogue.bin")
	o := simHistoryOptions{world: simTestWorld(), events: 20_000, pageSize: 10, batch: 3000, now: simTestNow,
		compression: "none", catalogueOut: catFile}
	var stdout, stderr bytes.Buffer
	if err := simHistory(t.Context(), &stdout, &stderr, cfg, o); err != nil {
		t.Fatalf("sim history: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "published 20000 events") || !strings.Contains(stderr.String(), "20000/20000 events") {
		t.Errorf("output lacks the summary or the final progress line:\n%s\n%s", stdout.String(), stderr.String())
	}

	// The topic holds exactly the log the generator makes for these flags.
	wc, err := o.validate()
	if err != nil {
		t.Fatal(err)
	}
	w, err := sim.NewWorld(wc)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{} // event id -> user id
	if _, err := sim.GenerateHistory(t.Context(), w, sim.HistoryConfig{Events: o.events}, func(_ context.Context, b []*adaptrecv1.Event) error {
		for _, e := range b {
			want[e.GetEnvelope().GetEventId()] = e.GetInteraction().GetUserId()
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got := simReadTopic(t, cfg, events.TopicInteractions, len(want))
	for id, e := range got {
		if want[id] != e.GetInteraction().GetUserId() {
			t.Fatalf("event %s on the topic is not in the generated log (user %s)", id, e.GetInteraction().GetUserId())
		}
	}

	// The catalogue file reads back to the world's catalogue.
	f, err := os.Open(catFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cat, err := sim.ReadCatalogue(f)
	if err != nil || cat.Len() != o.world.items {
		t.Fatalf("catalogue file: %v, %d items", err, cat.Len())
	}

	// MovieLens adds its 100,000 ratings to the same topic.
	dataset := testenv.Dataset(t, "ml-100k", "u.data", "u.item")
	stdout.Reset()
	if err := simMovieLens(t.Context(), &stdout, &stderr, cfg, simMovieLensOptions{dataset: dataset, batch: 5000, compression: "none"}); err != nil {
		t.Fatalf("sim movielens: %v", err)
	}
	if !strings.Contains(stdout.String(), "published 100000 ratings of 943 users on 1682 movies") {
		t.Errorf("movielens summary:\n%s", stdout.String())
	}
	all := simReadTopic(t, cfg, events.TopicInteractions, len(want)+100_000)
	rates := 0
	for _, e := range all {
		if e.GetInteraction().GetAction() == adaptrecv1.Action_ACTION_RATE {
			rates++
		}
	}
	if rates != 100_000 {
		t.Errorf("%d RATE events on the topic, want 100000", rates)
	}
}

// simReadTopic reads every partition of topic to its end, checks the key of
// each event and that there are exactly want distinct events.
func simReadTopic(t *testing.T, cfg config.Config, topic string, want int) map[string]*adaptrecv1.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	conn, err := events.Dialer(cfg.Kafka).DialContext(ctx, "tcp", cfg.Kafka.Brokers[0])
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions(topic)
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*adaptrecv1.Event{}
	total := 0
	for _, p := range parts {
		pc, err := events.Dialer(cfg.Kafka).DialLeader(ctx, "tcp", cfg.Kafka.Brokers[0], topic, p.ID)
		if err != nil {
			t.Fatal(err)
		}
		last, err := pc.ReadLastOffset()
		pc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if last == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Kafka.Brokers, Topic: topic, Partition: p.ID,
			Dialer: events.Dialer(cfg.Kafka), MaxWait: 100 * time.Millisecond})
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				r.Close()
				t.Fatalf("read %s/%d: %v", topic, p.ID, err)
			}
			e, err := events.Decode(m.Value, simTestNow.Add(time.Hour))
			if err != nil {
				t.Fatalf("message %d of partition %d: %v", m.Offset, p.ID, err)
			}
			if string(m.Key) != e.GetInteraction().GetUserId() {
				t.Fatalf("message key %q, user %q", m.Key, e.GetInteraction().GetUserId())
			}
			got[e.GetEnvelope().GetEventId()] = e
			total++
			if m.Offset == last-1 {
				break
			}
		}
		r.Close()
	}
	if total != want || len(got) != want {
		t.Fatalf("%s holds %d messages (%d distinct events), want %d", topic, total, len(got), want)
	}
	return got
}

// simTestServer answers every Recommend with the first items of the
// catalogue and accepts every Ingest.
type simTestServer struct {
	adaptrecv1.UnimplementedRecommendServiceServer
	mu       sync.Mutex
	ingested int
}

func (s *simTestServer) Recommend(_ context.Context, req *adaptrecv1.RecommendRequest) (*adaptrecv1.RecommendResponse, error) {
	resp := &adaptrecv1.RecommendResponse{RequestId: req.GetRequestId(), ModelVersion: "pop-1", ExperimentArm: "control",
		DegradationLevel: adaptrecv1.DegradationLevel_DEGRADATION_LEVEL_POPULARITY}
	for i := range int(req.GetNumItems()) {
		resp.Items = append(resp.Items, &adaptrecv1.ScoredItem{ItemId: sim.ItemID(i)})
	}
	return resp, nil
}

func (s *simTestServer) Ingest(_ context.Context, req *adaptrecv1.IngestRequest) (*adaptrecv1.IngestResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ingested += len(req.GetEvents())
	return &adaptrecv1.IngestResponse{Accepted: int32(len(req.GetEvents()))}, nil
}

func TestSimLive(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	fake := &simTestServer{}
	adaptrecv1.RegisterRecommendServiceServer(srv, fake)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	o := simLiveOptions{world: simTestWorld(), server: lis.Addr().String(), users: 3, requests: 60,
		numItems: 10, surface: "home", priority: "high", browseRate: 0.3, timeout: time.Second, now: time.Now()}
	var text, stderr bytes.Buffer
	if err := simLive(t.Context(), &text, &stderr, o); err != nil {
		t.Fatalf("sim live: %v", err)
	}
	for _, want := range []string{"sim live: 60 requests", "pop-1", "control", "latency ms (60 ok calls)",
		"degradation: POPULARITY 60", "errors by code: none"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, text.String())
		}
	}

	o.json = true
	var js bytes.Buffer
	if err := simLive(t.Context(), &js, &stderr, o); err != nil {
		t.Fatalf("sim live --json: %v", err)
	}
	var rep sim.LiveReport
	if err := json.Unmarshal(js.Bytes(), &rep); err != nil {
		t.Fatalf("--json output is not a report: %v\n%s", err, js.String())
	}
	if rep.Requests != 60 || len(rep.Arms) != 1 || rep.Arms[0].Impressions != 600 || rep.Latency.Count != 60 {
		t.Errorf("report %+v", rep)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if fake.ingested == 0 {
		t.Error("nothing was ingested")
	}

	// A server that is not there: the command fails, naming the address.
	o.server, o.requests, o.json = "127.0.0.1:1", 5, false
	err = simLive(t.Context(), &text, &stderr, o)
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") || !strings.Contains(err.Error(), "Unavailable") {
		t.Errorf("sim live against nothing = %v, want an error naming the address and Unavailable", err)
	}
}
